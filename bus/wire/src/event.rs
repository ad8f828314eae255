//! Events: what inference found, as the sinks store it and the feed delivers it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Scene,
    Transcript,
    /// A sampled frame worth keeping: a keyframe after a cut, or one that changed visibly.
    Frame,
    /// A keyframe nearly identical to one seen on another stream.
    Duplicate,
    /// A line of on-screen text read off a frame.
    Ocr,
}

impl EventKind {
    pub const ALL: [EventKind; 5] =
        [EventKind::Scene, EventKind::Transcript, EventKind::Frame, EventKind::Duplicate, EventKind::Ocr];
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Scene => "scene",
            EventKind::Transcript => "transcript",
            EventKind::Frame => "frame",
            EventKind::Duplicate => "duplicate",
            EventKind::Ocr => "ocr",
        }
    }
    /// Kinds whose text is embedded for search.
    pub fn is_text(self) -> bool {
        matches!(self, EventKind::Transcript | EventKind::Ocr | EventKind::Frame)
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One thing Sightline found in a stream. Its `id` is derived from stream, kind and media time, so
/// the same finding always has the same id, whoever computes it and however often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub kind: EventKind,
    pub stream_id: String,
    /// Media time the event starts at, milliseconds on the stream's media clock.
    pub pts_ms: i64,
    /// Media time it ends at (transcript segments), when it has a duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<i64>,
    /// Wall-clock time of the media it describes, Unix milliseconds.
    pub wall_ms: i64,
    /// Text of a transcript segment or of an on-screen line; a frame's confident labels; empty for
    /// scenes.
    #[serde(default)]
    pub text: String,
    /// Cut score for scenes, confidence for transcripts and on-screen text (0..1).
    pub score: f32,
    /// Model (name@version) that produced the event.
    pub model: String,
    /// Frame details (kind `frame`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<FrameInfo>,
    /// What this keyframe duplicates (kind `duplicate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<DuplicateInfo>,
    /// The keyframe of a scene (kind `scene`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<SceneInfo>,
    /// Where on the frame a line of text was read (kind `ocr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocr: Option<OcrInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcrInfo {
    /// x0, y0, x1, y1 as fractions of the frame's width and height.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneInfo {
    /// Event id of the scene's first sampled frame (kind `frame`).
    pub keyframe_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameInfo {
    /// First sampled frame after a scene cut (or of the stream).
    pub keyframe: bool,
    /// 64-bit perceptual hash (dHash), hex.
    pub phash: String,
    /// Image vector (frame signature); carried on the bus for the sinks, left out of the feed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vector: Vec<f32>,
    /// Image labels with scores, best first, when a labelling model runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<Label>,
    /// Image features of the labelling model (EfficientNet-Lite0, 1280-d); carried on the bus for
    /// the sinks, left out of the feed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<f32>,
    /// Image-text embedding (a CLIP-like model, when one is configured): in the space of
    /// sentences, so a description finds the frame. Carried for the sinks, left out of the feed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_text: Vec<f32>,
    /// A small picture of the frame (BMP, base64); stored by the vector sink, left out of the feed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub thumbnail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub name: String,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuplicateInfo {
    /// The keyframe (event id) on this stream.
    pub frame_id: String,
    /// The earlier keyframe it matches, on another stream.
    pub other_frame_id: String,
    pub other_stream_id: String,
    pub other_pts_ms: i64,
    /// Vector-set similarity of the two frames (1 is identical).
    pub similarity: f32,
}

impl Event {
    pub fn make_id(stream_id: &str, kind: EventKind, pts_ms: i64) -> String {
        format!("{stream_id}.{}.{pts_ms}", kind.as_str())
    }

    /// An event with the common fields set and no kind-specific details.
    pub fn new(kind: EventKind, stream_id: &str, pts_ms: i64, wall_ms: i64, model: &str) -> Self {
        Event {
            id: Event::make_id(stream_id, kind, pts_ms),
            kind,
            stream_id: stream_id.to_string(),
            pts_ms,
            end_ms: None,
            wall_ms,
            text: String::new(),
            score: 0.0,
            model: model.to_string(),
            frame: None,
            duplicate: None,
            scene: None,
            ocr: None,
        }
    }

    /// Kind-specific details as one JSON object (stored beside the common fields), without the
    /// frame vector.
    pub fn detail_json(&self) -> String {
        let v = match (&self.frame, &self.duplicate, &self.scene, &self.ocr) {
            (Some(f), ..) => {
                serde_json::json!({"keyframe": f.keyframe, "phash": f.phash, "labels": f.labels})
            }
            (_, Some(d), ..) => serde_json::to_value(d).unwrap_or_default(),
            (_, _, Some(s), _) => serde_json::to_value(s).unwrap_or_default(),
            (.., Some(o)) => serde_json::to_value(o).unwrap_or_default(),
            _ => return String::new(),
        };
        v.to_string()
    }

    /// Restores the details [`Event::detail_json`] stored.
    pub fn set_detail_json(&mut self, detail: &str) {
        if detail.is_empty() {
            return;
        }
        match self.kind {
            EventKind::Frame => {
                #[derive(Deserialize)]
                struct F {
                    keyframe: bool,
                    phash: String,
                    #[serde(default)]
                    labels: Vec<Label>,
                }
                if let Ok(f) = serde_json::from_str::<F>(detail) {
                    self.frame = Some(FrameInfo {
                        keyframe: f.keyframe,
                        phash: f.phash,
                        vector: Vec::new(),
                        labels: f.labels,
                        features: Vec::new(),
                        image_text: Vec::new(),
                        thumbnail: String::new(),
                    });
                }
            }
            EventKind::Duplicate => self.duplicate = serde_json::from_str(detail).ok(),
            EventKind::Scene => self.scene = serde_json::from_str(detail).ok(),
            EventKind::Ocr => self.ocr = serde_json::from_str(detail).ok(),
            EventKind::Transcript => {}
        }
    }

    /// The event as clients see it: without bulky vectors.
    pub fn for_clients(mut self) -> Self {
        if let Some(f) = self.frame.as_mut() {
            f.vector = Vec::new();
            f.features = Vec::new();
            f.image_text = Vec::new();
            f.thumbnail = String::new();
        }
        self
    }
}

/// An event as the feed delivers it: the JetStream sequence lets a client resume after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedItem {
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
}
