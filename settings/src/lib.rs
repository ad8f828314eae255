//! Sightline's configuration: one struct per component, read from `config/sightline.toml` and
//! overridden by `SIGHTLINE_<SECTION>__<KEY>` environment variables. Every field has a default so
//! a missing key never stops the system; `config/sightline.toml` documents each one.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid TOML: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub nats: NatsConfig,
    pub redis: RedisConfig,
    pub clickhouse: ClickHouseConfig,
    pub gateway: GatewayConfig,
    pub ingest: IngestConfig,
    pub scenes: ScenesConfig,
    pub speech: SpeechConfig,
    pub ocr: OcrConfig,
    pub shots: ShotsConfig,
    pub sink: SinkConfig,
    pub vectors: VectorsConfig,
    pub models: ModelsConfig,
}

/// NATS JetStream: the bus between every role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    pub url: String,
    /// Prefix for stream, bucket and consumer names, so several deployments can share a server.
    pub prefix: String,
    /// Replicas for streams and buckets (1 on a single server, 3 on a cluster).
    pub replicas: usize,
    /// Work streams (frames, audio) keep at most this many messages per subject (one subject per
    /// stream); older ones are discarded first so a slow consumer never grows a backlog.
    pub work_max_msgs_per_subject: i64,
    /// Work messages older than this are discarded, seconds.
    pub work_max_age_s: u64,
    /// Byte bound on each work stream.
    pub work_max_bytes: i64,
    /// Events are kept this long for replay (feed resume, sink catch-up), seconds.
    pub events_max_age_s: u64,
    /// Byte bound on the events stream.
    pub events_max_bytes: i64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            prefix: "SL".into(),
            replicas: 1,
            work_max_msgs_per_subject: 120,
            work_max_age_s: 60,
            work_max_bytes: 256 << 20,
            events_max_age_s: 7 * 24 * 3600,
            events_max_bytes: 1 << 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    pub url: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self { url: "redis://127.0.0.1:6379".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP interface of ClickHouse (a real server or the bundled chDB adapter).
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    /// Folder holding the numbered `*.sql` migrations applied at start.
    pub migrations_dir: PathBuf,
    /// Rows older than this many days are deleted by ClickHouse (TTL); 0 keeps them forever.
    pub retention_days: u32,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "sightline".into(),
            user: "default".into(),
            password: String::new(),
            migrations_dir: "config/migrations".into(),
            retention_days: 90,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    pub listen: String,
    /// Folder with the web dashboard's files, served at `/`.
    pub dashboard_dir: PathBuf,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
    /// Events buffered for one websocket client before it is closed as too slow.
    pub feed_buffer: usize,
    /// Seconds between websocket heartbeats.
    pub feed_heartbeat_s: u64,
    /// `POST /v1/sql`: rows returned at most, and seconds a query may run.
    pub sql_max_rows: u64,
    pub sql_max_seconds: u64,
    /// Largest `k` accepted by search and similar-frame lookups.
    pub search_max_k: usize,
    /// API keys; none configured leaves the API open (the gateway warns at start).
    pub api_keys: Vec<ApiKeyConfig>,
    /// Requests per second per key (per client address while the API is open); 0 turns limits off.
    pub rate_limit_per_s: f64,
    /// Requests a key may make in a burst above that rate.
    pub rate_limit_burst: u32,
}

/// One API key, stored as the SHA-256 of the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub name: String,
    /// Lower-case hex SHA-256 of the key (`printf %s KEY | sha256sum`).
    pub sha256: String,
    /// "read" (queries, search, feeds) or "admin" (also creating, deleting, pausing streams).
    pub scope: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            dashboard_dir: "dashboards/web".into(),
            max_body_bytes: 64 * 1024,
            feed_buffer: 1024,
            feed_heartbeat_s: 15,
            sql_max_rows: 10_000,
            sql_max_seconds: 10,
            search_max_k: 100,
            api_keys: Vec::new(),
            rate_limit_per_s: 50.0,
            rate_limit_burst: 100,
        }
    }
}

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
    /// Allow URLs whose host is (or resolves to) a private, loopback or link-local address.
    pub allow_private_hosts: bool,
    /// HLS playlists checked at registration: at most this many bytes, segments and variants.
    pub max_playlist_bytes: usize,
    pub max_playlist_segments: usize,
    pub max_playlist_variants: usize,
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
    /// Audio: RMS level (0..1) above which a 30 ms window counts as sound.
    pub audio_gate_level: f32,
    /// Audio: a segment ends after this much quiet, milliseconds.
    pub audio_gate_hangover_ms: u64,
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

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            allowed_schemes: ["rtmp", "rtmps", "rtsp", "http", "https"].map(String::from).to_vec(),
            allow_private_hosts: false,
            max_playlist_bytes: 1 << 20,
            max_playlist_segments: 10_000,
            max_playlist_variants: 32,
            sample_fps: 2,
            analysis_width: 384,
            analysis_height: 216,
            cut_detector: CutDetector::Fast,
            cut_width: 64,
            cut_height: 36,
            cut_threshold: 0.35,
            cut_ratio: 3.0,
            min_scene_ms: 600,
            audio_gate_level: 0.01,
            audio_gate_hangover_ms: 500,
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

/// The scene actor: confirms cut candidates from ingest and emits `scene` events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScenesConfig {
    pub workers: usize,
    pub batch_max: usize,
    pub batch_deadline_ms: u64,
    pub max_ack_pending: i64,
    pub max_deliver: i64,
    /// Artificial delay per message, milliseconds: for load and backpressure tests; 0 otherwise.
    pub throttle_ms: u64,
    /// A sampled frame is emitted as a `frame` event when it is a keyframe or differs from the
    /// stream's last emitted frame by more than this many of its 64 perceptual-hash bits.
    pub frame_change_bits: u32,
    /// A frame is emitted at least this often per stream even when nothing changes, ms (0: never).
    pub frame_max_interval_ms: u64,
    /// Label emitted frames with EfficientNet-Lite0 (top `label_top_k` ImageNet classes).
    pub labels: bool,
    pub label_top_k: usize,
    /// Labels at least this probable (0..1) become the frame's searchable text.
    pub label_min_score: f32,
}

impl Default for ScenesConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            batch_max: 32,
            batch_deadline_ms: 100,
            max_ack_pending: 256,
            max_deliver: 5,
            throttle_ms: 0,
            frame_change_bits: 10,
            frame_max_interval_ms: 30_000,
            labels: true,
            label_top_k: 5,
            label_min_score: 0.2,
        }
    }
}

/// How an inference pool pulls its work: the part its consumer is made from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerConfig {
    pub batch_max: usize,
    pub batch_deadline_ms: u64,
    pub max_ack_pending: i64,
    pub max_deliver: i64,
}

macro_rules! worker_config {
    ($($t:ty),*) => {$(
        impl $t {
            pub fn worker(&self) -> WorkerConfig {
                WorkerConfig {
                    batch_max: self.batch_max,
                    batch_deadline_ms: self.batch_deadline_ms,
                    max_ack_pending: self.max_ack_pending,
                    max_deliver: self.max_deliver,
                }
            }
        }
    )*};
}
worker_config!(ScenesConfig, SpeechConfig, OcrConfig, ShotsConfig);

/// The shot-boundary pool: TransNetV2 over windows of 100 decoded frames, used when
/// `ingest.cut_detector` is `transnetv2`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShotsConfig {
    /// Workers on this node (0: none here); each loads its own copy of the model.
    pub workers: usize,
    /// Windows per model run, across streams.
    pub batch_max: usize,
    pub batch_deadline_ms: u64,
    pub max_ack_pending: i64,
    pub max_deliver: i64,
    /// A run of frames whose shot-end probability reaches this is a transition; the next shot
    /// starts on the frame after it.
    pub threshold: f32,
    /// ONNX Runtime intra-op threads per model.
    pub threads: usize,
}

impl Default for ShotsConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            batch_max: 4,
            batch_deadline_ms: 200,
            max_ack_pending: 16,
            max_deliver: 5,
            threshold: 0.5,
            threads: 1,
        }
    }
}

/// The speech actor: VAD then speech-to-text on audio segments.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpeechConfig {
    pub workers: usize,
    pub batch_max: usize,
    pub batch_deadline_ms: u64,
    pub max_ack_pending: i64,
    pub max_deliver: i64,
    /// Silero speech probability above which a 32 ms window is speech.
    pub vad_threshold: f32,
    /// A segment with less speech than this is skipped, milliseconds.
    pub min_speech_ms: u64,
    /// ONNX Runtime intra-op threads per model.
    pub threads: usize,
    /// Beam width of Moonshine's decoder search (1: greedy). The beams share one decoder run a
    /// step (one batch row each).
    pub beam_width: usize,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            batch_max: 4,
            batch_deadline_ms: 200,
            max_ack_pending: 16,
            max_deliver: 5,
            vad_threshold: 0.5,
            min_speech_ms: 250,
            threads: 1,
            beam_width: 4,
        }
    }
}

/// On-screen text: PP-OCR over sampled frames that changed since the stream's last read frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcrConfig {
    /// OCR workers on this node (0: none here); each loads its own copy of the models.
    pub workers: usize,
    pub batch_max: usize,
    pub batch_deadline_ms: u64,
    pub max_ack_pending: i64,
    pub max_deliver: i64,
    /// A frame is read when its perceptual hash differs from the stream's last read frame by more
    /// than this many bits (out of 64), or when `max_interval_ms` has passed.
    pub change_bits: u32,
    pub max_interval_ms: u64,
    /// Detector and recogniser knobs, as `sightline_models::OcrParams` documents them.
    pub det_short_side: usize,
    pub det_threshold: f32,
    pub box_threshold: f32,
    pub unclip_ratio: f32,
    pub min_confidence: f32,
    pub max_lines: usize,
    /// ONNX Runtime intra-op threads per model.
    pub threads: usize,
}

impl Default for OcrConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            batch_max: 4,
            batch_deadline_ms: 200,
            max_ack_pending: 16,
            max_deliver: 5,
            change_bits: 6,
            max_interval_ms: 10_000,
            det_short_side: 480,
            det_threshold: 0.3,
            box_threshold: 0.5,
            unclip_ratio: 1.6,
            min_confidence: 0.6,
            max_lines: 32,
            threads: 1,
        }
    }
}

/// The ClickHouse sink: events from JetStream into ClickHouse, in batches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    pub batch_max: usize,
    pub batch_deadline_ms: u64,
    pub max_ack_pending: i64,
    /// Delay before retrying a failed insert (doubles up to 30 s).
    pub retry_initial_ms: u64,
    /// Seconds between snapshots of stream registrations and status into `streams` and
    /// `pipeline_metrics`.
    pub status_interval_s: u64,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            batch_max: 1000,
            batch_deadline_ms: 500,
            max_ack_pending: 5000,
            retry_initial_ms: 500,
            status_interval_s: 10,
        }
    }
}

/// The Redis vector-set sink, search and duplicate detection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VectorsConfig {
    pub batch_max: usize,
    pub batch_deadline_ms: u64,
    pub max_ack_pending: i64,
    /// Delay before retrying a failed Redis write (doubles up to 30 s).
    pub retry_initial_ms: u64,
    /// Element quantisation: "q8" (default: 4x smaller than fp32, recall close to it), "bin"
    /// (1 bit per dimension) or "noquant".
    pub quantization: String,
    /// Elements older than this many seconds are removed from the sets (0 keeps them forever).
    pub retention_s: u64,
    /// Seconds between retention sweeps.
    pub sweep_interval_s: u64,
    /// A keyframe at least this similar (vector-set score, 1 = identical) to a keyframe of another
    /// stream is reported as a duplicate.
    pub duplicate_min_similarity: f32,
    /// Only keyframes seen within this many seconds (wall clock) are compared for duplicates.
    pub duplicate_window_s: u64,
    /// ONNX Runtime threads of the text embedder.
    pub threads: usize,
}

impl Default for VectorsConfig {
    fn default() -> Self {
        Self {
            batch_max: 256,
            batch_deadline_ms: 200,
            max_ack_pending: 2000,
            retry_initial_ms: 500,
            quantization: "q8".into(),
            retention_s: 7 * 24 * 3600,
            sweep_interval_s: 60,
            duplicate_min_similarity: 0.98,
            duplicate_window_s: 3600,
            threads: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// Folder the model files below are relative to.
    pub dir: PathBuf,
    /// ONNX Runtime shared library (libonnxruntime.so), as `make setup` places it.
    pub onnxruntime_lib: PathBuf,
    /// Execution providers in order of preference (`cuda`, `cpu`); the first one available is used.
    pub providers: Vec<String>,
    /// GPU used by the CUDA provider.
    pub cuda_device: i32,
    /// When a model runs on the CUDA provider, resize and normalise its frames on the same GPU
    /// (cudarc/NVRTC kernel) instead of the CPU.
    pub gpu_preprocess: bool,
    /// The registry entry (by name) serving each task.
    pub vad: String,
    pub stt: String,
    pub text_embedding: String,
    pub ocr: String,
    pub labels: String,
    /// Shot boundaries (used when `ingest.cut_detector` is `transnetv2`).
    pub shots: String,
    /// Image-text embeddings (a CLIP-like model the user supplies; "" = none).
    pub image_text: String,
    /// Every model Sightline may run.
    pub registry: Vec<ModelSpec>,
}

/// One model in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    pub version: String,
    /// `vad` (1 file), `stt` (encoder, merged decoder, tokenizer), `text_embedding` (model,
    /// tokenizer), `ocr` (detector, recogniser), `labels` (model, class names), `shots` (1 file),
    /// `image_text` (image model, text model, CLIP BPE `tokenizer.json`).
    pub task: String,
    /// Files relative to `models.dir`, in the order the task lists them.
    pub files: Vec<PathBuf>,
    /// Execution providers in order for this model (empty: `models.providers`).
    pub providers: Vec<String>,
    /// Most work items per batch (0: the pool's `batch_max`).
    pub batch_max: usize,
    /// A batch running longer than this sends the pool's work to the fallback for
    /// `fallback_cooldown_s` (0: no limit).
    pub timeout_ms: u64,
    /// Registry name of the model that takes over when this one fails to load, errors on an item,
    /// times out, or has more than `queue_threshold` items waiting ("": none).
    pub fallback: String,
    /// Work waiting for the pool above which batches go to the fallback (0: never).
    pub queue_threshold: u64,
    /// Seconds the fallback serves after a timeout.
    pub fallback_cooldown_s: u64,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            version: "1".into(),
            task: String::new(),
            files: Vec::new(),
            providers: Vec::new(),
            batch_max: 0,
            timeout_ms: 0,
            fallback: String::new(),
            queue_threshold: 0,
            fallback_cooldown_s: 30,
        }
    }
}

impl ModelSpec {
    /// `name@version`, as events record the model that produced them.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Files each task's models consist of.
pub const MODEL_TASKS: [(&str, usize); 7] = [
    ("vad", 1),
    ("stt", 3),
    ("text_embedding", 2),
    ("ocr", 2),
    ("labels", 2),
    ("shots", 1),
    ("image_text", 3),
];

fn spec(name: &str, task: &str, files: &[&str], fallback: &str, providers: &[&str]) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        task: task.into(),
        files: files.iter().map(PathBuf::from).collect(),
        fallback: fallback.into(),
        providers: providers.iter().map(|p| p.to_string()).collect(),
        ..ModelSpec::default()
    }
}

impl Default for ModelsConfig {
    fn default() -> Self {
        let stt = [
            "moonshine-base-en/encoder_model.ort",
            "moonshine-base-en/decoder_model_merged.ort",
            "moonshine-base-en/tokenizer.json",
        ];
        let ocr = ["ppocr/det.onnx", "ppocr/rec.onnx"];
        let labels = ["efficientnet-lite0/model.onnx", "efficientnet-lite0/labels.txt"];
        Self {
            dir: "~/.cache/sightline/models".into(),
            onnxruntime_lib: "~/.cache/sightline/lib/libonnxruntime.so".into(),
            providers: vec!["cuda".into(), "cpu".into()],
            cuda_device: 0,
            gpu_preprocess: true,
            vad: "silero-vad".into(),
            stt: "moonshine-base-en".into(),
            text_embedding: "minilm-l6-v2".into(),
            ocr: "pp-ocrv6-small".into(),
            labels: "efficientnet-lite0".into(),
            shots: "transnetv2".into(),
            image_text: String::new(),
            registry: vec![
                spec("silero-vad", "vad", &["silero_vad.onnx"], "", &[]),
                spec("moonshine-base-en", "stt", &stt, "moonshine-base-en-cpu", &[]),
                spec("moonshine-base-en-cpu", "stt", &stt, "", &["cpu"]),
                spec(
                    "minilm-l6-v2",
                    "text_embedding",
                    &["minilm/model.onnx", "minilm/tokenizer.json"],
                    "",
                    &[],
                ),
                spec("pp-ocrv6-small", "ocr", &ocr, "pp-ocrv6-small-cpu", &[]),
                spec("pp-ocrv6-small-cpu", "ocr", &ocr, "", &["cpu"]),
                spec("efficientnet-lite0", "labels", &labels, "efficientnet-lite0-cpu", &[]),
                spec("efficientnet-lite0-cpu", "labels", &labels, "", &["cpu"]),
                spec("transnetv2", "shots", &["transnetv2/model.onnx"], "transnetv2-cpu", &[]),
                spec("transnetv2-cpu", "shots", &["transnetv2/model.onnx"], "", &["cpu"]),
            ],
        }
    }
}

impl ModelsConfig {
    /// The registry entry named `name`.
    pub fn model(&self, name: &str) -> Result<&ModelSpec, ConfigError> {
        self.registry
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ConfigError::Invalid(format!("no model named `{name}` in models.registry")))
    }

    /// The registry entry serving `task` (`vad`, `stt`, `text_embedding`, `ocr`, `labels`, `shots`,
    /// `image_text`).
    pub fn for_task(&self, task: &str) -> Result<&ModelSpec, ConfigError> {
        let name = match task {
            "vad" => &self.vad,
            "stt" => &self.stt,
            "text_embedding" => &self.text_embedding,
            "ocr" => &self.ocr,
            "labels" => &self.labels,
            "shots" => &self.shots,
            "image_text" if self.image_text.is_empty() => {
                return Err(ConfigError::Invalid(
                    "no image-text model is configured (models.image_text)".into(),
                ));
            }
            "image_text" => &self.image_text,
            other => return Err(ConfigError::Invalid(format!("unknown model task `{other}`"))),
        };
        self.model(name)
    }

    /// Full paths of the files of the model serving `task`, in the order the task lists them.
    pub fn task_files(&self, task: &str) -> Result<Vec<PathBuf>, ConfigError> {
        let spec = self.for_task(task)?;
        Ok(spec.files.iter().map(|f| self.path(f)).collect())
    }

    /// Full path of file `i` of a model (validated configurations have every file a task needs).
    pub fn file(&self, spec: &ModelSpec, i: usize) -> PathBuf {
        self.path(spec.files.get(i).map(PathBuf::as_path).unwrap_or(Path::new("")))
    }

    /// Execution providers of a model: its own list, else `providers`.
    pub fn providers_of<'a>(&'a self, spec: &'a ModelSpec) -> &'a [String] {
        if spec.providers.is_empty() { &self.providers } else { &spec.providers }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for (i, m) in self.registry.iter().enumerate() {
            let Some(&(_, files)) = MODEL_TASKS.iter().find(|(t, _)| *t == m.task) else {
                return bad(format!("model `{}`: unknown task `{}`", m.name, m.task));
            };
            if m.name.is_empty() || self.registry[..i].iter().any(|o| o.name == m.name) {
                return bad(format!("models.registry: empty or repeated name `{}`", m.name));
            }
            if m.files.len() != files {
                return bad(format!(
                    "model `{}` ({}) needs {files} files, has {}",
                    m.name,
                    m.task,
                    m.files.len()
                ));
            }
            // The fallback chain: same task, ends, no loops.
            let (mut cur, mut seen) = (m, vec![m.name.as_str()]);
            while !cur.fallback.is_empty() {
                let next = self.model(&cur.fallback)?;
                if next.task != m.task {
                    return bad(format!(
                        "model `{}` falls back to `{}`, a {} model",
                        cur.name, next.name, next.task
                    ));
                }
                if seen.contains(&next.name.as_str()) {
                    return bad(format!("models.registry: fallbacks of `{}` loop", m.name));
                }
                seen.push(&next.name);
                cur = next;
            }
        }
        for (task, _) in MODEL_TASKS {
            if task == "image_text" && self.image_text.is_empty() {
                continue; // optional: only when the user supplies one
            }
            let m = self.for_task(task)?;
            if m.task != task {
                return bad(format!("models.{task} names `{}`, a {} model", m.name, m.task));
            }
        }
        Ok(())
    }

    /// A model file's full path: relative names are under `dir`; `~/` is the home folder.
    pub fn path(&self, file: &Path) -> PathBuf {
        if file.is_absolute() { file.to_path_buf() } else { expand_home(&self.dir).join(file) }
    }

    pub fn onnxruntime_lib(&self) -> PathBuf {
        expand_home(&self.onnxruntime_lib)
    }
}

/// Expands a leading `~/` to `$HOME/`.
pub fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

impl Config {
    /// Reads the file (if given), then applies `SIGHTLINE_*` overrides from the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut root = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|source| ConfigError::Read { path: p.to_path_buf(), source })?;
                text.parse::<toml::Table>()
                    .map_err(|source| ConfigError::Parse { path: p.to_path_buf(), source })?
            }
            None => toml::Table::new(),
        };
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("SIGHTLINE_") else { continue };
            let Some((section, key)) = rest.split_once("__") else { continue };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let entry = root.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(table) = entry else {
                return Err(ConfigError::Env { var, reason: format!("[{section}] is not a table") });
            };
            table.insert(key, parse_env_value(&value));
        }
        let cfg: Config = toml::Value::Table(root)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.models.validate()?;
        let i = &self.ingest;
        if i.sample_fps == 0 || i.sample_fps > 30 {
            return Err(ConfigError::Invalid("ingest.sample_fps must be 1..=30".into()));
        }
        if i.analysis_width % 2 != 0 || i.analysis_height % 2 != 0 || i.analysis_width < 16 {
            return Err(ConfigError::Invalid("ingest.analysis_width/height must be even and ≥ 16".into()));
        }
        if !["q8", "bin", "noquant"].contains(&self.vectors.quantization.as_str()) {
            return Err(ConfigError::Invalid("vectors.quantization must be q8, bin or noquant".into()));
        }
        if !(0.0..=1.0).contains(&self.vectors.duplicate_min_similarity) {
            return Err(ConfigError::Invalid("vectors.duplicate_min_similarity must be within 0..=1".into()));
        }
        if !(1..=16).contains(&self.speech.beam_width) {
            return Err(ConfigError::Invalid("speech.beam_width must be 1..=16".into()));
        }
        if i.queue_capacity == 0 || self.gateway.feed_buffer == 0 {
            return Err(ConfigError::Invalid("queue sizes must be ≥ 1".into()));
        }
        Ok(())
    }
}

/// An override is parsed as a TOML value when it is one (numbers, booleans, arrays), else taken as
/// a string, so `SIGHTLINE_INGEST__SAMPLE_FPS=4` is a number and `SIGHTLINE_NATS__URL=nats://…` a
/// string.
fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_keeps_types() {
        let dir = std::env::temp_dir().join(format!("sl-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[ingest]\nsample_fps = 3\n[nats]\nurl = \"nats://a:1\"\n").unwrap();
        let env = [
            ("SIGHTLINE_NATS__URL".to_string(), "nats://b:2".to_string()),
            ("SIGHTLINE_INGEST__CUT_THRESHOLD".to_string(), "0.5".to_string()),
            ("SIGHTLINE_INGEST__ALLOWED_SCHEMES".to_string(), "[\"rtmp\"]".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let cfg = Config::load_with_env(Some(&file), env).unwrap();
        assert_eq!(cfg.nats.url, "nats://b:2");
        assert_eq!(cfg.ingest.sample_fps, 3);
        assert_eq!(cfg.ingest.cut_threshold, 0.5);
        assert_eq!(cfg.ingest.allowed_schemes, vec!["rtmp"]);
        assert_eq!(cfg.ingest.min_scene_ms, IngestConfig::default().min_scene_ms);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_reported() {
        let err =
            Config::load_with_env(None, [("SIGHTLINE_INGEST__SAMPLE_FSP".into(), "2".into())]).unwrap_err();
        assert!(err.to_string().contains("sample_fsp"), "{err}");
        let err =
            Config::load_with_env(None, [("SIGHTLINE_INGEST__SAMPLE_FPS".into(), "0".into())]).unwrap_err();
        assert!(err.to_string().contains("sample_fps"), "{err}");
    }

    #[test]
    fn model_registry_is_checked() {
        let check = |edit: &dyn Fn(&mut ModelsConfig)| {
            let mut m = ModelsConfig::default();
            edit(&mut m);
            m.validate().map_err(|e| e.to_string())
        };
        assert_eq!(check(&|_| {}), Ok(()));
        let err = check(&|m| m.ocr = "nope".into()).unwrap_err();
        assert!(err.contains("no model named `nope`"), "{err}");
        let err = check(&|m| m.stt = "pp-ocrv6-small".into()).unwrap_err();
        assert!(err.contains("models.stt names `pp-ocrv6-small`, a ocr model"), "{err}");
        let err = check(&|m| m.registry[0].files.push("extra.onnx".into())).unwrap_err();
        assert!(err.contains("needs 1 files, has 2"), "{err}");
        let err = check(&|m| m.registry[4].fallback = "moonshine-base-en".into()).unwrap_err();
        assert!(err.contains("a stt model"), "{err}");
        let err = check(&|m| m.registry[5].fallback = "pp-ocrv6-small".into()).unwrap_err();
        assert!(err.contains("loop"), "{err}");
        let err = check(&|m| m.registry[1].task = "asr".into()).unwrap_err();
        assert!(err.contains("unknown task `asr`"), "{err}");
        let m = ModelsConfig::default();
        let ocr = m.for_task("ocr").unwrap();
        assert_eq!(
            (ocr.id().as_str(), m.providers_of(ocr)),
            ("pp-ocrv6-small@1", &["cuda".to_string(), "cpu".to_string()][..])
        );
        assert_eq!(m.providers_of(m.model("pp-ocrv6-small-cpu").unwrap()), &["cpu".to_string()][..]);
        // The image-text model is optional; when named, it must be an image_text entry.
        assert!(m.for_task("image_text").unwrap_err().to_string().contains("models.image_text"));
        let err = check(&|m| m.image_text = "transnetv2".into()).unwrap_err();
        assert!(err.contains("models.image_text names `transnetv2`, a shots model"), "{err}");
        let clip = |m: &mut ModelsConfig| {
            m.registry.push(spec("clip", "image_text", &["i.onnx", "t.onnx", "tokenizer.json"], "", &[]));
            m.image_text = "clip".into();
        };
        assert_eq!(check(&clip), Ok(()));
    }

    #[test]
    fn shipped_config_file_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/sightline.toml");
        let from_file = Config::load_with_env(Some(&path), []).unwrap();
        let defaults = Config::default();
        // The documented file must agree with the code's defaults, key for key.
        assert_eq!(toml::to_string(&from_file).unwrap(), toml::to_string(&defaults).unwrap());
    }
}
