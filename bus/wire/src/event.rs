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
    /// The stream changed state (`text`: the new state and why, e.g. `degraded: ocr is 4.2 s
    /// behind (target 2.0 s): 12 item(s) without a cut shed`). Published by ingest.
    State,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::Scene,
        EventKind::Transcript,
        EventKind::Frame,
        EventKind::Duplicate,
        EventKind::Ocr,
        EventKind::State,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Scene => "scene",
            EventKind::Transcript => "transcript",
            EventKind::Frame => "frame",
            EventKind::Duplicate => "duplicate",
            EventKind::Ocr => "ocr",
            EventKind::State => "state",
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
    /// The stream registration's incarnation, part of the id ([`crate::StreamRef`]).
    #[serde(default, skip_serializing_if = "crate::work::is_zero")]
    pub incarnation: u32,
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
    /// What only this kind of event carries; on the wire a field named after the kind
    /// (`"frame": {…}`, `"duplicate": {…}`, `"scene": {…}`, `"ocr": {…}`).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Detail>,
    /// The text's embedding (MiniLM, 384-d), computed by the inference pool that made the event,
    /// for the vector sink's `text` set. Not stored in ClickHouse, not sent to feed clients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub text_vector: Vec<f32>,
    /// When the work behind the event moved through inference, Unix ms (the per-stage latency
    /// split; not stored in ClickHouse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
}

/// Kind-specific details of an event, tagged by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Detail {
    /// A kept frame (kind `frame`).
    Frame(FrameInfo),
    /// What this keyframe duplicates (kind `duplicate`).
    Duplicate(DuplicateInfo),
    /// The keyframe of a scene (kind `scene`).
    Scene(SceneInfo),
    /// Where on the frame a line of text was read (kind `ocr`).
    Ocr(OcrInfo),
    /// The language a transcript segment is in (kind `transcript`).
    Transcript(TranscriptInfo),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptInfo {
    /// ISO 639-1 code of the language spoken (`en`, `de`, ...).
    pub language: String,
    /// How sure the language identification is (0..1; 1 when the stream's only configured
    /// language was taken as given).
    pub language_score: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcrInfo {
    /// x0, y0, x1, y1 as fractions of the frame's width and height.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneInfo {
    /// Event id of the scene's first sampled frame (kind `frame`); empty when it was not kept.
    pub keyframe_id: String,
    /// A gradual transition's start and end (the event's `pts_ms` is its midpoint); absent for a
    /// hard cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<crate::Transition>,
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

impl FrameInfo {
    /// Drops the vectors and the thumbnail (what clients and ClickHouse's `detail` do without).
    pub fn strip(&mut self) {
        self.vector = Vec::new();
        self.features = Vec::new();
        self.image_text = Vec::new();
        self.thumbnail = String::new();
    }

    /// Without the vectors and the thumbnail.
    pub fn stripped(mut self) -> Self {
        self.strip();
        self
    }
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

/// The stages of an event's work after decoding (its `wall_ms`): when ingest's work message was
/// stored in JetStream, when an inference worker took it, and when the model was done with it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub queued_ms: i64,
    pub started_ms: i64,
    pub done_ms: i64,
}

impl Event {
    pub fn make_id<'a>(stream: impl Into<crate::StreamRef<'a>>, kind: EventKind, pts_ms: i64) -> String {
        stream.into().id_for(kind.as_str(), pts_ms)
    }

    /// An event with the common fields set and no kind-specific details. `stream` is the work's
    /// [`crate::StreamRef`] (a plain id means incarnation 0).
    pub fn new<'a>(
        kind: EventKind,
        stream: impl Into<crate::StreamRef<'a>>,
        pts_ms: i64,
        wall_ms: i64,
        model: &str,
    ) -> Self {
        let stream = stream.into();
        Event {
            id: stream.id_for(kind.as_str(), pts_ms),
            kind,
            stream_id: stream.id.to_string(),
            incarnation: stream.incarnation,
            pts_ms,
            end_ms: None,
            wall_ms,
            text: String::new(),
            score: 0.0,
            model: model.to_string(),
            detail: None,
            text_vector: Vec::new(),
            timing: None,
        }
    }

    pub fn frame(&self) -> Option<&FrameInfo> {
        match &self.detail {
            Some(Detail::Frame(f)) => Some(f),
            _ => None,
        }
    }

    pub fn frame_mut(&mut self) -> Option<&mut FrameInfo> {
        match &mut self.detail {
            Some(Detail::Frame(f)) => Some(f),
            _ => None,
        }
    }

    pub fn duplicate(&self) -> Option<&DuplicateInfo> {
        match &self.detail {
            Some(Detail::Duplicate(d)) => Some(d),
            _ => None,
        }
    }

    pub fn scene(&self) -> Option<&SceneInfo> {
        match &self.detail {
            Some(Detail::Scene(s)) => Some(s),
            _ => None,
        }
    }

    pub fn transcript(&self) -> Option<&TranscriptInfo> {
        match &self.detail {
            Some(Detail::Transcript(t)) => Some(t),
            _ => None,
        }
    }

    pub fn ocr(&self) -> Option<&OcrInfo> {
        match &self.detail {
            Some(Detail::Ocr(o)) => Some(o),
            _ => None,
        }
    }

    /// Kind-specific details as one JSON object (stored beside the common fields), without the
    /// frame's vectors and thumbnail.
    pub fn detail_json(&self) -> String {
        let stored = match self.detail.clone() {
            Some(Detail::Frame(f)) => serde_json::to_value(f.stripped()),
            Some(Detail::Duplicate(d)) => serde_json::to_value(d),
            Some(Detail::Scene(s)) => serde_json::to_value(s),
            Some(Detail::Ocr(o)) => serde_json::to_value(o),
            Some(Detail::Transcript(t)) => serde_json::to_value(t),
            None => return String::new(),
        };
        stored.map(|v| v.to_string()).unwrap_or_default()
    }

    /// Restores the details [`Event::detail_json`] stored.
    pub fn set_detail_json(&mut self, detail: &str) {
        if detail.is_empty() {
            return;
        }
        let parsed = match self.kind {
            EventKind::Frame => serde_json::from_str(detail).map(Detail::Frame),
            EventKind::Duplicate => serde_json::from_str(detail).map(Detail::Duplicate),
            EventKind::Scene => serde_json::from_str(detail).map(Detail::Scene),
            EventKind::Ocr => serde_json::from_str(detail).map(Detail::Ocr),
            EventKind::Transcript => serde_json::from_str(detail).map(Detail::Transcript),
            EventKind::State => return,
        };
        self.detail = parsed.ok();
    }

    /// The event as clients see it: without bulky vectors.
    pub fn for_clients(mut self) -> Self {
        self.text_vector = Vec::new();
        if let Some(Detail::Frame(f)) = self.detail.as_mut() {
            f.strip();
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
