//! Work messages: what ingest publishes for the inference pools (sampled frames, audio segments,
//! shot windows), framed as `SLW1`, metadata length, metadata JSON, raw payload.

use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8; 4] = b"SLW1";
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

/// A stream as ids name it: its id and its registration's incarnation. A stream deleted and
/// registered again under the same id gets a new incarnation, so its media clock restarting at 0
/// never reuses an earlier registration's message and event ids (JetStream would drop the new
/// messages as duplicates; ClickHouse would replace the old history). Incarnation 0 (streams
/// registered before incarnations existed) keeps the original id format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRef<'a> {
    pub id: &'a str,
    pub incarnation: u32,
}

impl<'a> StreamRef<'a> {
    pub fn new(id: &'a str, incarnation: u32) -> Self {
        Self { id, incarnation }
    }

    /// The incarnation an id names (0 when it names none): the `r<hex>` part after the media time.
    pub fn incarnation_of(id: &str) -> u32 {
        id.rsplit('.')
            .take(2)
            .find_map(|part| part.strip_prefix('r').and_then(|h| u32::from_str_radix(h, 16).ok()))
            .unwrap_or(0)
    }

    /// `<stream>.<what>.<ms>`, with `.r<incarnation in hex>` after it when the incarnation is set.
    pub fn id_for(&self, what: &str, ms: i64) -> String {
        match self.incarnation {
            0 => format!("{}.{what}.{ms}", self.id),
            n => format!("{}.{what}.{ms}.r{n:x}", self.id),
        }
    }
}

impl<'a> From<&'a str> for StreamRef<'a> {
    fn from(id: &'a str) -> Self {
        Self { id, incarnation: 0 }
    }
}

impl<'a> From<&'a String> for StreamRef<'a> {
    fn from(id: &'a String) -> Self {
        Self { id, incarnation: 0 }
    }
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

pub(crate) fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A cut found by ingest on the full-rate, tiny-size scoring path: a hard cut at `pts_ms`, or a
/// gradual transition (dissolve, fade, wipe) with its midpoint at `pts_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CutCandidate {
    pub pts_ms: i64,
    pub score: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<Transition>,
}

/// Where a gradual transition starts and ends (media milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub start_ms: i64,
    pub end_ms: i64,
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
    /// The registration's incarnation ([`StreamRef`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub incarnation: u32,
    /// The fencing token of the ingest node's lease on the stream when it published this
    /// ([`crate::Lease`]); work from an owner whose lease was taken over is refused downstream.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub lease: u64,
}

impl FrameMeta {
    /// A sampled frame with no cuts before it.
    pub fn still(stream_id: &str, pts_ms: i64, wall_ms: i64, width: u32, height: u32) -> Self {
        Self {
            stream_id: stream_id.to_string(),
            pts_ms,
            wall_ms,
            width,
            height,
            cuts: Vec::new(),
            incarnation: 0,
            lease: 0,
        }
    }
    pub fn stream(&self) -> StreamRef<'_> {
        StreamRef::new(&self.stream_id, self.incarnation)
    }
    pub fn msg_id(&self) -> String {
        self.stream().id_for("frame", self.pts_ms)
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
    #[serde(default, skip_serializing_if = "is_zero")]
    pub incarnation: u32,
    /// The fencing token of the ingest node's lease on the stream when it published this
    /// ([`crate::Lease`]); work from an owner whose lease was taken over is refused downstream.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub lease: u64,
    /// The languages the stream was registered with (empty: the speech pool's configured ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
}

impl AudioMeta {
    pub fn stream(&self) -> StreamRef<'_> {
        StreamRef::new(&self.stream_id, self.incarnation)
    }
    pub fn msg_id(&self) -> String {
        self.stream().id_for("audio", self.start_ms)
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
    #[serde(default, skip_serializing_if = "is_zero")]
    pub incarnation: u32,
    /// The fencing token of the ingest node's lease on the stream when it published this
    /// ([`crate::Lease`]); work from an owner whose lease was taken over is refused downstream.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub lease: u64,
}

impl ShotWindowMeta {
    pub fn stream(&self) -> StreamRef<'_> {
        StreamRef::new(&self.stream_id, self.incarnation)
    }
    /// Named by the first frame it is read for, so each window is published once.
    pub fn msg_id(&self) -> String {
        self.stream().id_for("shots", self.pts_ms.get(self.read_from).copied().unwrap_or_default())
    }
}

/// What every work message's metadata says, read without its payload: whose it is, when its media
/// was decoded, and whether it carries cuts (a keyframe).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WorkHeader {
    pub stream_id: String,
    pub wall_ms: i64,
    #[serde(default)]
    pub start_ms: Option<i64>,
    #[serde(default)]
    pub end_ms: Option<i64>,
    #[serde(default)]
    cuts: Vec<serde::de::IgnoredAny>,
    /// The publisher's lease token (0: published without a lease).
    #[serde(default)]
    pub lease: u64,
}

impl WorkHeader {
    /// Reads the header of a framed work message.
    pub fn read(msg: &[u8]) -> Option<Self> {
        if msg.len() < 8 || &msg[..4] != MAGIC {
            return None;
        }
        let len = u32::from_le_bytes(msg[4..8].try_into().ok()?) as usize;
        serde_json::from_slice(msg.get(8..8 + len)?).ok()
    }

    /// Whether cuts were found up to this frame.
    pub fn has_cuts(&self) -> bool {
        !self.cuts.is_empty()
    }

    /// How old the item's media is at `now_ms`: from its end (an audio segment's last sample).
    pub fn age_ms(&self, now_ms: i64) -> i64 {
        let span = match (self.start_ms, self.end_ms) {
            (Some(s), Some(e)) => (e - s).max(0),
            _ => 0,
        };
        now_ms - (self.wall_ms + span)
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

fn decode<M: serde::de::DeserializeOwned + PayloadLen>(msg: &[u8]) -> Result<(M, &[u8]), WireError> {
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
