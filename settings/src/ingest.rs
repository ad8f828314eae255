//! Ingest: sources, sampling, cut scoring, audio gating, reconnects, backpressure.

use serde::{Deserialize, Serialize};

/// Which model finds scene cuts (`ingest.cut_detector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CutDetector {
    /// A colour-histogram and pixel-difference score on every decoded frame, in ingest.
    Fast,
    /// Ingest publishes windows of every decoded frame at 48x27; the `shots` pool runs TransNetV2.
    Transnetv2,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// URL schemes a stream may use.
    pub allowed_schemes: Vec<String>,
    /// Internal addresses a source may reach after all: each an address, CIDR block or host name
    /// with an optional port (`127.0.0.1:8080`, `10.0.0.0/8`, `[::1]:1935`, `cams.lan:554`).
    /// Every other private or special-purpose address is refused.
    pub allow_hosts: Vec<String>,
    /// HTTP redirects followed for a source, each checked like the source itself.
    pub max_redirects: u32,
    /// Largest HLS segment, key or init section fetched, bytes.
    pub max_media_bytes: u64,
    /// HLS playlists, checked at registration and on every refresh: at most this many bytes,
    /// segments and variants.
    pub max_playlist_bytes: usize,
    pub max_playlist_segments: usize,
    pub max_playlist_variants: usize,
    /// Largest video accepted: pixels per frame, and pixels per side. A larger stream fails with
    /// the reason before a frame of it is decoded.
    pub max_pixels: u64,
    pub max_dimension: u32,
    /// Threads each software video decoder may use (0: one per core, GStreamer's default).
    pub decoder_threads: u32,
    /// A stream whose pipeline got stuck this many times (each leaves a GStreamer 1.22 HLS
    /// demuxer behind, see the README) fails with the reason instead of leaking one per retry.
    pub max_quarantined_demuxers: u32,
    /// Streams that may be registered at once; a registration beyond it is refused (409).
    pub max_streams: usize,
    /// Frames per second sampled for analysis.
    pub sample_fps: u32,
    /// Size of sampled frames (RGB), pixels.
    pub analysis_width: u32,
    pub analysis_height: u32,
    /// Which model finds scene cuts: `fast` (a colour-histogram and pixel-difference score on
    /// every decoded frame, in ingest) or `transnetv2` (ingest publishes windows of every decoded
    /// frame at 48x27 and the `shots` pool runs TransNetV2 on them).
    pub cut_detector: CutDetector,
    /// Size at which every decoded frame is scored for cuts.
    pub cut_width: u32,
    pub cut_height: u32,
    /// Cut score (0..1) above which a frame starts a new scene.
    pub cut_threshold: f32,
    /// A cut must also be this many times the recent average score (rejects steady motion).
    pub cut_ratio: f32,
    /// No two cuts closer than this, milliseconds.
    pub min_scene_ms: u64,
    /// Gradual transitions (dissolves, fades, wipes): the colour-histogram distance (0..1)
    /// between the steady pictures before and after a run of changing frames from which the run
    /// is a scene change (0: hard cuts only).
    pub gradual_threshold: f32,
    /// Longest gradual transition, milliseconds (slower changes are drift, not transitions).
    pub gradual_max_ms: u64,
    /// Audio: RMS level (0..1) above which a 30 ms window counts as sound.
    pub audio_gate_level: f32,
    /// Audio: a segment ends after this much quiet, milliseconds.
    pub audio_gate_hangover_ms: u64,
    /// Audio: past this length a shorter pause (300 ms down to 150 ms) ends a segment, milliseconds.
    pub audio_soft_segment_ms: u64,
    /// Audio: segments are cut at this length, milliseconds.
    pub audio_max_segment_ms: u64,
    /// Media buffered between GStreamer and the publisher; when full, frames are dropped (counted).
    pub queue_capacity: usize,
    /// No media for this long restarts the pipeline, seconds.
    pub stall_timeout_s: u64,
    /// RTSP jitter-buffer latency, milliseconds (GStreamer's default of 2000 hides 2 s of lag).
    pub rtsp_latency_ms: u32,
    /// Backpressure: sampled frames waiting for inference above which the sampling rate halves,
    pub lag_high_frames: u64,
    /// at or below which (for `lag_recover_s` seconds) it doubles again,
    pub lag_low_frames: u64,
    pub lag_recover_s: u32,
    /// and how many halvings at most (3: 2 fps → 0.25 fps).
    pub max_rate_halvings: u32,
    /// Reconnect backoff: first delay, cap, milliseconds; attempts before `failed` (0 = forever).
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub max_retries: u32,
}

impl IngestConfig {
    /// `allow_hosts`, parsed (a loaded configuration has been checked; a malformed entry in a
    /// hand-built one allows nothing).
    pub fn allow_list(&self) -> sightline_policy::AllowList {
        sightline_policy::AllowList::parse(&self.allow_hosts).unwrap_or_default()
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            allowed_schemes: ["rtmp", "rtmps", "rtsp", "http", "https"].map(String::from).to_vec(),
            allow_hosts: Vec::new(),
            max_redirects: 3,
            max_media_bytes: 64 << 20,
            max_playlist_bytes: 1 << 20,
            max_playlist_segments: 10_000,
            max_playlist_variants: 32,
            max_streams: 1000,
            max_pixels: 3840 * 2160,
            max_dimension: 4096,
            decoder_threads: 2,
            max_quarantined_demuxers: 3,
            sample_fps: 2,
            analysis_width: 384,
            analysis_height: 216,
            cut_detector: CutDetector::Fast,
            cut_width: 64,
            cut_height: 36,
            cut_threshold: 0.35,
            cut_ratio: 3.0,
            min_scene_ms: 600,
            gradual_threshold: 0.35,
            gradual_max_ms: 2000,
            audio_gate_level: 0.01,
            audio_gate_hangover_ms: 500,
            audio_soft_segment_ms: 3_000,
            audio_max_segment_ms: 15_000,
            queue_capacity: 64,
            stall_timeout_s: 10,
            rtsp_latency_ms: 200,
            lag_high_frames: 8,
            lag_low_frames: 1,
            lag_recover_s: 3,
            max_rate_halvings: 3,
            backoff_initial_ms: 500,
            backoff_max_ms: 4_000,
            max_retries: 0,
        }
    }
}
