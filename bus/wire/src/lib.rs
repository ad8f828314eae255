//! The JetStream wire contract between Sightline's roles: subject and stream names, the work
//! messages ingest publishes (sampled frames, audio segments), and the events inference emits.
//! Every message carries a deterministic id so redelivery and replays deduplicate.

use serde::{Deserialize, Serialize};

mod stream;
pub use stream::{RetryReason, StreamState};

pub const MAGIC: &[u8; 4] = b"SLW1";

/// Wall-clock time, Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A stable 64-bit hash (FNV-1a) of byte strings fed in order: for ids that must be the same on
/// every node and every run (names to stream ids, batches to deduplication tokens).
pub fn stable_hash<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    parts
        .into_iter()
        .flatten()
        .fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}
/// Audio sample rate on the wire (mono f32 little-endian).
pub const AUDIO_RATE: u32 = 16_000;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("message is not a Sightline work message (bad magic or too short)")]
    BadFrame,
    #[error("message metadata is not valid: {0}")]
    BadMeta(#[from] serde_json::Error),
    #[error("payload is {got} bytes, metadata says {want}")]
    PayloadSize { got: usize, want: usize },
}

/// Names of JetStream streams, buckets and subjects, all derived from one prefix so that several
/// deployments (or test runs) can share one NATS server without seeing each other.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
    root: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_ascii_uppercase(), root: prefix.to_ascii_lowercase() }
    }
    pub fn frames_stream(&self) -> String {
        format!("{}_FRAMES", self.prefix)
    }
    pub fn audio_stream(&self) -> String {
        format!("{}_AUDIO", self.prefix)
    }
    pub fn events_stream(&self) -> String {
        format!("{}_EVENTS", self.prefix)
    }
    pub fn dlq_stream(&self) -> String {
        format!("{}_DLQ", self.prefix)
    }
    /// Windows of tiny frames for the shot-boundary model (`ingest.cut_detector = "transnetv2"`).
    pub fn shots_stream(&self) -> String {
        format!("{}_SHOTS", self.prefix)
    }
    pub fn shots_subject(&self, stream_id: &str) -> String {
        format!("{}.shots.{stream_id}", self.root)
    }
    pub fn shots_all(&self) -> String {
        format!("{}.shots.*", self.root)
    }
    /// KV bucket holding stream specs (the registry).
    pub fn registry_bucket(&self) -> String {
        format!("{}_streams", self.prefix)
    }
    /// KV bucket holding live stream status, written by the ingest node that owns the stream.
    pub fn status_bucket(&self) -> String {
        format!("{}_stream_status", self.prefix)
    }
    pub fn consumer(&self, role: &str) -> String {
        format!("{}_{role}", self.prefix)
    }
    pub fn frames_subject(&self, stream_id: &str) -> String {
        format!("{}.frames.{stream_id}", self.root)
    }
    pub fn frames_all(&self) -> String {
        format!("{}.frames.*", self.root)
    }
    pub fn audio_subject(&self, stream_id: &str) -> String {
        format!("{}.audio.{stream_id}", self.root)
    }
    pub fn audio_all(&self) -> String {
        format!("{}.audio.*", self.root)
    }
    pub fn event_subject(&self, kind: EventKind, stream_id: &str) -> String {
        format!("{}.events.{}.{stream_id}", self.root, kind.as_str())
    }
    pub fn events_all(&self) -> String {
        format!("{}.events.>", self.root)
    }
    /// Subject filter for the feed: one kind and/or one stream, or everything.
    pub fn events_filter(&self, kind: Option<EventKind>, stream_id: Option<&str>) -> String {
        let k = kind.map(|k| k.as_str()).unwrap_or("*");
        let s = stream_id.unwrap_or("*");
        format!("{}.events.{k}.{s}", self.root)
    }
    pub fn dlq_subject(&self, kind: &str) -> String {
        format!("{}.dlq.{kind}", self.root)
    }
    /// Redis key of a vector set ("text", "frames", "image_text").
    pub fn vector_set(&self, space: &str) -> String {
        format!("{}:vectors:{space}", self.root)
    }
    /// Redis key of a frame's thumbnail.
    pub fn thumbnail_key(&self, frame_id: &str) -> String {
        format!("{}:thumbs:{frame_id}", self.root)
    }
    /// Redis key naming a stream's latest kept frame.
    pub fn latest_frame_key(&self, stream_id: &str) -> String {
        format!("{}:latest_frame:{stream_id}", self.root)
    }
    /// Subjects of one kind of event, every stream.
    pub fn events_of_kind(&self, kind: EventKind) -> String {
        format!("{}.events.{}.*", self.root, kind.as_str())
    }
    pub fn dlq_all(&self) -> String {
        format!("{}.dlq.>", self.root)
    }
    /// Request/reply subject of a service one stage offers the others (plain NATS, not JetStream).
    pub fn rpc_subject(&self, service: Service) -> String {
        format!("{}.rpc.{}", self.root, service.as_str())
    }
}

/// Services stages offer each other over request/reply, so the gateway needs neither the media
/// nor the model stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Inference: embed a search query in a vector space (`EmbedRequest` -> `EmbedReply`).
    Embed,
    /// Ingest: fetch and check an HLS playlist before a stream is registered
    /// (`CheckSourceRequest` -> `CheckSourceReply`).
    CheckSource,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Embed => "embed",
            Service::CheckSource => "check_source",
        }
    }
}

/// Which embedding model a query is embedded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryModel {
    /// MiniLM: the `text` vector set (transcripts, on-screen text, labels).
    Text,
    /// The CLIP-like model's text side: the `image_text` vector set.
    ImageText,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbedRequest {
    pub model: QueryModel,
    pub text: String,
}

/// A query's vector, or why there is none.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbedReply {
    Vector(Vec<f32>),
    /// No model of that kind is configured on the inference nodes.
    NoModel(String),
    Failed(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckSourceRequest {
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckSourceReply {
    Accepted,
    /// The playlist breaks a limit; the reason says which.
    Refused(String),
}

/// A cut found by ingest on the full-rate, tiny-size scoring path.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CutCandidate {
    pub pts_ms: i64,
    pub score: f32,
}

/// Metadata of one sampled frame; the RGB24 pixels follow it in the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameMeta {
    pub stream_id: String,
    /// Position on the stream's media clock (monotonic across reconnects), milliseconds.
    pub pts_ms: i64,
    /// Wall-clock time the frame was decoded, Unix milliseconds.
    pub wall_ms: i64,
    pub width: u32,
    pub height: u32,
    /// Cuts detected since the previous sampled frame, exact to the decoded frame.
    pub cuts: Vec<CutCandidate>,
}

impl FrameMeta {
    /// A sampled frame with no cuts before it.
    pub fn still(stream_id: &str, pts_ms: i64, wall_ms: i64, width: u32, height: u32) -> Self {
        Self { stream_id: stream_id.to_string(), pts_ms, wall_ms, width, height, cuts: Vec::new() }
    }
    pub fn msg_id(&self) -> String {
        format!("{}.frame.{}", self.stream_id, self.pts_ms)
    }
    pub fn payload_len(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }
}

/// Metadata of one audio segment (sound between silences); mono f32 LE at 16 kHz follows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioMeta {
    pub stream_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub wall_ms: i64,
    pub samples: usize,
}

impl AudioMeta {
    pub fn msg_id(&self) -> String {
        format!("{}.audio.{}", self.stream_id, self.start_ms)
    }
    pub fn payload_len(&self) -> usize {
        self.samples * 4
    }
}

trait PayloadLen {
    fn expected_len(&self) -> usize;
}
impl PayloadLen for FrameMeta {
    fn expected_len(&self) -> usize {
        self.payload_len()
    }
}
impl PayloadLen for AudioMeta {
    fn expected_len(&self) -> usize {
        self.payload_len()
    }
}
impl PayloadLen for ShotWindowMeta {
    fn expected_len(&self) -> usize {
        self.pts_ms.len() * self.width as usize * self.height as usize * 3
    }
}

/// Metadata of a window of consecutive decoded frames at the shot model's size (every frame, not
/// sampled ones); the frames' RGB24 pixels follow it, one after another. The model reads the
/// frames `read_from..read_to` of it; the others are context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShotWindowMeta {
    pub stream_id: String,
    /// Media time of each frame, milliseconds.
    pub pts_ms: Vec<i64>,
    /// Wall-clock time the last frame was decoded, Unix milliseconds.
    pub wall_ms: i64,
    pub width: u32,
    pub height: u32,
    pub read_from: usize,
    pub read_to: usize,
}

impl ShotWindowMeta {
    /// Named by the first frame it is read for, so each window is published once.
    pub fn msg_id(&self) -> String {
        format!("{}.shots.{}", self.stream_id, self.pts_ms.get(self.read_from).copied().unwrap_or_default())
    }
}

/// Decodes a shot window into its metadata and frames.
pub fn decode_shot_window(msg: &[u8]) -> Result<(ShotWindowMeta, &[u8]), WireError> {
    decode(msg)
}

/// Work message layout: `SLW1`, u32 LE metadata length, metadata JSON, raw payload.
pub fn encode<M: Serialize>(meta: &M, payload: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(meta).expect("metadata serialises");
    let mut out = Vec::with_capacity(8 + json.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(payload);
    out
}

fn decode<'a, M: serde::de::DeserializeOwned + PayloadLen>(
    msg: &'a [u8],
) -> Result<(M, &'a [u8]), WireError> {
    if msg.len() < 8 || &msg[..4] != MAGIC {
        return Err(WireError::BadFrame);
    }
    let n = u32::from_le_bytes(msg[4..8].try_into().unwrap()) as usize;
    let body = msg.get(8..8 + n).ok_or(WireError::BadFrame)?;
    let meta: M = serde_json::from_slice(body)?;
    let payload = &msg[8 + n..];
    if payload.len() != meta.expected_len() {
        return Err(WireError::PayloadSize { got: payload.len(), want: meta.expected_len() });
    }
    Ok((meta, payload))
}

pub fn decode_frame(msg: &[u8]) -> Result<(FrameMeta, &[u8]), WireError> {
    decode(msg)
}

/// Decodes an audio message into its metadata and samples.
pub fn decode_audio(msg: &[u8]) -> Result<(AudioMeta, Vec<f32>), WireError> {
    let (meta, raw): (AudioMeta, &[u8]) = decode(msg)?;
    let samples = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    Ok((meta, samples))
}

pub fn audio_bytes(samples: &[f32]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_validation() {
        let meta = FrameMeta {
            stream_id: "s1".into(),
            pts_ms: 1500,
            wall_ms: 1,
            width: 4,
            height: 2,
            cuts: vec![CutCandidate { pts_ms: 1466, score: 0.8 }],
        };
        let pixels: Vec<u8> = (0..24).collect();
        let msg = encode(&meta, &pixels);
        let (back, px) = decode_frame(&msg).unwrap();
        assert_eq!(back, meta);
        assert_eq!(px, &pixels[..]);
        assert!(matches!(decode_frame(&msg[..msg.len() - 1]), Err(WireError::PayloadSize { .. })));
        assert!(matches!(decode_frame(b"nope"), Err(WireError::BadFrame)));
        let mut bad = msg.clone();
        bad[4] = 200;
        assert!(decode_frame(&bad).is_err());
    }

    #[test]
    fn audio_round_trip() {
        let samples = vec![0.5f32, -0.25, 1.0];
        let meta = AudioMeta { stream_id: "s".into(), start_ms: 0, end_ms: 1, wall_ms: 0, samples: 3 };
        let (m, s) = decode_audio(&encode(&meta, &audio_bytes(&samples))).unwrap();
        assert_eq!(m, meta);
        assert_eq!(s, samples);
    }

    #[test]
    fn names_are_scoped_by_prefix() {
        let n = Names::new("T1");
        assert_eq!(n.frames_subject("abc"), "t1.frames.abc");
        assert_eq!(n.event_subject(EventKind::Scene, "abc"), "t1.events.scene.abc");
        assert_eq!(n.events_filter(None, Some("abc")), "t1.events.*.abc");
        assert_eq!(n.events_stream(), "T1_EVENTS");
        assert_eq!(Event::make_id("abc", EventKind::Transcript, 42), "abc.transcript.42");
        assert_eq!(EventKind::parse("scene"), Some(EventKind::Scene));
        assert_eq!(EventKind::parse("bogus"), None);
    }
}
