//! The inference pools and the sinks: workers, batches, thresholds.

use serde::{Deserialize, Serialize};

/// The scene actor: confirms cut candidates from ingest and emits `scene` events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScenesConfig {
    pub workers: usize,
    pub batch_max: usize,
    pub batch_deadline_ms: u64,
    pub max_ack_pending: i64,
    pub max_deliver: i64,
    /// Lag target: the age of the oldest waiting item plus what its batch typically takes, above
    /// which the pool sheds the items its policy gives up first (frames without a cut; speech and
    /// shot windows are never shed for it), milliseconds; 0 turns it off.
    pub lag_target_ms: u64,
    /// Items older than this are shed whatever they are (no result is worth more than this much
    /// lag), milliseconds; 0 turns it off.
    pub max_lag_ms: u64,
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
            lag_target_ms: 1000,
            max_lag_ms: 10_000,
            throttle_ms: 0,
            frame_change_bits: 10,
            frame_max_interval_ms: 30_000,
            labels: true,
            label_top_k: 5,
            label_min_score: 0.2,
        }
    }
}

/// How long a pool's worker may hold a message without a word before JetStream redelivers it,
/// seconds (progress acks extend it while a batch runs): scenes, speech, shots, OCR.
pub const ACK_WAIT_S: [(&str, u64); 4] = [("scenes", 30), ("speech", 120), ("shots", 60), ("ocr", 60)];

/// A pool's ack wait, seconds (60 for a kind not listed).
pub fn ack_wait_s(kind: &str) -> u64 {
    ACK_WAIT_S.iter().find(|(k, _)| *k == kind).map(|(_, s)| *s).unwrap_or(60)
}

/// Longest delay between two tries of a failed item (the inference retry backoff's cap, rounded up).
pub const MAX_RETRY_DELAY_S: u64 = 26;

/// How an inference pool pulls its work: the part its consumer is made from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerConfig {
    pub batch_max: usize,
    pub batch_deadline_ms: u64,
    pub max_ack_pending: i64,
    pub max_deliver: i64,
    pub lag_target_ms: u64,
    pub max_lag_ms: u64,
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
                    lag_target_ms: self.lag_target_ms,
                    max_lag_ms: self.max_lag_ms,
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
    /// Lag target: the age of the oldest waiting item plus what its batch typically takes, above
    /// which the pool sheds the items its policy gives up first (frames without a cut; speech and
    /// shot windows are never shed for it), milliseconds; 0 turns it off.
    pub lag_target_ms: u64,
    /// Items older than this are shed whatever they are (no result is worth more than this much
    /// lag), milliseconds; 0 turns it off.
    pub max_lag_ms: u64,
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
            lag_target_ms: 1000,
            max_lag_ms: 10_000,
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
    /// Lag target: the age of the oldest waiting item plus what its batch typically takes, above
    /// which the pool is behind (speech is never shed for it: it decodes coarser), milliseconds;
    /// 0 turns it off.
    pub lag_target_ms: u64,
    /// Items older than this are shed whatever they are (no result is worth more than this much
    /// lag), milliseconds; 0 turns it off.
    pub max_lag_ms: u64,
    /// Silero speech probability above which a 32 ms window is speech.
    pub vad_threshold: f32,
    /// A segment with less speech than this is skipped, milliseconds.
    pub min_speech_ms: u64,
    /// Take each segment's steady background noise out (spectral subtraction of the noise
    /// measured where VAD heard no speech) before Moonshine hears it; Whisper hears it as it came.
    pub denoise: bool,
    /// ONNX Runtime intra-op threads per model.
    pub threads: usize,
    /// Beam width of Moonshine's decoder search (1: greedy). The beams share one decoder run a
    /// step (one batch row each).
    pub beam_width: usize,
    /// Re-hearing: an utterance Moonshine transcribes with a confidence (mean token probability)
    /// below `rehear_below` is transcribed again resampled to each of these times its length
    /// (1.1: a tenth slower and lower), and one transcript is kept (`rehear_candidates`); only while
    /// the pool's batch comes out within a third of its lag target (spare-time work). Empty: each
    /// utterance heard once. At most 4, each within 0.5..=2. Moonshine's; Whisper's are
    /// `multilingual_rehear_stretches`.
    pub rehear_stretches: Vec<f32>,
    /// More stretches for fast speech: an utterance re-heard (as `rehear_stretches`) whose
    /// first transcript runs faster than `rehear_fast_above` letters a second is heard at each of
    /// these too (at most 4, each within 0.5..=2). Empty: none.
    pub rehear_fast_stretches: Vec<f32>,
    /// The pace above which an utterance is fast (`rehear_fast_stretches`), letters and digits
    /// of its first transcript a second of its audio, 5..=40.
    pub rehear_fast_above: f32,
    /// More stretches for slow speech (as `rehear_fast_stretches`): for an utterance re-heard
    /// whose first transcript runs slower than `rehear_slow_below` letters a second.
    pub rehear_slow_stretches: Vec<f32>,
    /// The pace below which an utterance is slow (`rehear_slow_stretches`), letters a second,
    /// 0..=40, below `rehear_fast_above` (0: none is).
    pub rehear_slow_below: f32,
    /// The stretches Whisper re-hears its unsure utterances at (as `rehear_stretches`, below
    /// the same `rehear_below`). The two models gain from different ones.
    pub multilingual_rehear_stretches: Vec<f32>,
    /// Confidence below which an utterance is re-heard, 0..=1 (0: never, 1: always).
    pub rehear_below: f32,
    /// How Moonshine chooses among an utterance's hearings: the best this many finished
    /// transcripts of each hearing's beam are scored under every hearing and the one with the
    /// highest mean token probability over them all is kept, 0..=8 (0: the most confident
    /// hearing's transcript, unscored). Each transcript is scored with the end token after it.
    /// 2, the default, with `rehear_hybrids`: re-heard speech about 2.05× heard once.
    pub rehear_candidates: usize,
    /// With candidates scored, at most this many hybrids of them are scored too, 0..=64: one
    /// candidate with one stretch where it differs from another taken from the other, the
    /// best-scored candidates' first (0: none).
    pub rehear_hybrids: usize,
    /// With candidates scored, Whisper (`models.stt_multilingual`) judges them too, 0..=1: it
    /// hears the utterance once and scores the `rehear_judge_candidates` best (decoder forced
    /// through each, the end included), and each one's score becomes `1 - weight` times the
    /// hearings' mean plus `weight` times Whisper's. A second model mishears in other places, so
    /// it can outvote a mistake all of Moonshine's hearings share. Only while its recent cost
    /// still fits in the re-heard batch's room; otherwise the hearings' choice stands. 0: no
    /// judge (Whisper is not loaded for it).
    pub rehear_judge_weight: f32,
    /// How many of the best-scored candidates the judge scores, 2..=16.
    pub rehear_judge_candidates: usize,
    /// The window Whisper's encoder hears a judged utterance over, seconds, 1..=30 (as
    /// `multilingual_window_s`; a longer utterance is heard whole). Its encoder's cost grows with it.
    pub rehear_judge_window_s: f32,
    /// Utterances of a batch (of any streams) are transcribed together when their lengths differ
    /// by at most this much: the shorter ones are padded with this much trailing silence at most,
    /// milliseconds (0: only utterances of the same length share a run).
    pub max_pad_ms: u64,
    /// Silence Moonshine hears before each utterance, milliseconds (at most 2000): VAD cuts
    /// close to the speech, and the model loses a first sound at the very start of its input.
    pub lead_silence_ms: u64,
    /// Silence Moonshine hears after each utterance, milliseconds (at most 2000): the model
    /// guesses a last word that ends at the very end of its input.
    pub trail_silence_ms: u64,
    /// Silence Moonshine hears after each re-heard copy of an utterance (`rehear_stretches`),
    /// milliseconds (at most 2000): heard with a different ending as well as a different pace,
    /// the copies differ more in where the model goes wrong.
    pub rehear_trail_silence_ms: u64,
    /// Languages the streams speak (ISO 639-1 codes). `["en"]`: Moonshine alone, every transcript
    /// English. More (or another): `models.stt_multilingual` (Whisper) identifies each
    /// utterance's language among these and transcribes it; a single code is taken as given.
    pub languages: Vec<String>,
    /// Which model transcribes English: `auto` (Moonshine when English is the only language;
    /// with others, Whisper, whose encoder has already run to identify the language), `stt`
    /// (always `models.stt`), `multilingual` (always Whisper, even with English alone).
    pub english_model: EnglishModel,
    /// Beam width of Whisper's decoder search (1: greedy, every utterance of a batch one row of a
    /// decoder run; wider: one utterance's beams a run).
    pub multilingual_beam_width: usize,
    /// The shortest window Whisper's encoder hears, seconds (1..=30): each encoder batch is
    /// zero-padded to this or to its longest utterance, whichever is longer. Whisper was trained
    /// on 30 s; a shorter window costs less (the encoder's time grows with it) and may cost words
    /// (15 s: half the CPU of 30 s, about the same word errors on `make quality`'s sets).
    pub multilingual_window_s: f32,
    /// Whisper's window while the pool is behind its lag target, seconds (1..=30): how the pool
    /// catches up. Shorter than `multilingual_window_s`: heard with the beam; not shorter: the
    /// full window is decoded greedily instead.
    pub multilingual_behind_window_s: f32,
}

/// Which model transcribes English (`speech.english_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnglishModel {
    Auto,
    Stt,
    Multilingual,
}

impl SpeechConfig {
    /// The silence Moonshine hears around an utterance, in 16 kHz samples: before it, after it
    /// heard once, and after a re-heard copy (`lead_silence_ms`, `trail_silence_ms`,
    /// `rehear_trail_silence_ms`).
    pub fn silence_samples(&self) -> (usize, usize, usize) {
        let samples = |ms: u64| ms as usize * 16;
        (samples(self.lead_silence_ms), samples(self.trail_silence_ms), samples(self.rehear_trail_silence_ms))
    }

    /// Whether the languages are more than English alone (Whisper identifies each utterance's).
    pub fn multilingual(&self) -> bool {
        self.languages.iter().any(|l| l != "en")
    }

    /// Whether the multilingual model (Whisper) is loaded at all.
    pub fn uses_multilingual_model(&self) -> bool {
        self.multilingual() || self.english_model == EnglishModel::Multilingual
    }

    /// Whether Whisper judges what Moonshine's hearings of an utterance agree on
    /// (`rehear_judge_weight`): only where Moonshine hears English and re-hears with candidates
    /// scored.
    pub fn judges_rehearing(&self) -> bool {
        self.rehear_judge_weight > 0.0
            && self.rehear_candidates > 0
            && self.rehear_below > 0.0
            && ![&self.rehear_stretches, &self.rehear_fast_stretches, &self.rehear_slow_stretches]
                .iter()
                .all(|s| s.is_empty())
            && self.english_to_stt()
    }

    /// Whether English utterances go to `models.stt` (Moonshine) rather than Whisper.
    pub fn english_to_stt(&self) -> bool {
        match self.english_model {
            EnglishModel::Stt => true,
            EnglishModel::Multilingual => false,
            EnglishModel::Auto => !self.multilingual(),
        }
    }
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            batch_max: 4,
            batch_deadline_ms: 200,
            max_ack_pending: 16,
            max_deliver: 5,
            lag_target_ms: 3000,
            max_lag_ms: 10_000,
            vad_threshold: 0.5,
            min_speech_ms: 250,
            threads: 1,
            beam_width: 8,
            rehear_stretches: vec![1.05],
            rehear_fast_stretches: vec![1.4],
            rehear_fast_above: 14.5,
            rehear_slow_stretches: Vec::new(),
            rehear_slow_below: 11.0,
            multilingual_rehear_stretches: vec![0.9, 1.1],
            rehear_below: 0.9,
            rehear_candidates: 2,
            rehear_hybrids: 8,
            rehear_judge_weight: 0.3,
            rehear_judge_candidates: 4,
            rehear_judge_window_s: 8.0,
            max_pad_ms: 1000,
            lead_silence_ms: 300,
            trail_silence_ms: 1000,
            rehear_trail_silence_ms: 1500,
            languages: vec!["en".into()],
            english_model: EnglishModel::Auto,
            multilingual_beam_width: 4,
            multilingual_window_s: 15.0,
            multilingual_behind_window_s: 10.0,
            denoise: true,
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
    /// Lag target: the age of the oldest waiting item plus what its batch typically takes, above
    /// which the pool sheds the items its policy gives up first (frames without a cut; speech and
    /// shot windows are never shed for it), milliseconds; 0 turns it off.
    pub lag_target_ms: u64,
    /// Items older than this are shed whatever they are (no result is worth more than this much
    /// lag), milliseconds; 0 turns it off.
    pub max_lag_ms: u64,
    /// A frame is read when its perceptual hash differs from the stream's last read frame by more
    /// than this many bits (out of 64), or when `max_interval_ms` has passed.
    pub change_bits: u32,
    pub max_interval_ms: u64,
    /// A frame is also read when, inside a text region of the stream's last read frame, its
    /// brightness differs on average by more than this (0–255 grey levels, on a 96×54 thumbnail):
    /// a caption or lower third whose words change on an unchanged background. 0 turns it off.
    pub region_change: f32,
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
            lag_target_ms: 2000,
            max_lag_ms: 10_000,
            change_bits: 6,
            max_interval_ms: 10_000,
            region_change: 6.0,
            det_short_side: 320,
            det_threshold: 0.2,
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
    /// Once events are waiting, how long the sink keeps gathering more before one INSERT (unless
    /// `batch_max` come first): fewer, larger INSERTs (ClickHouse makes a part of each), the rows
    /// at most this much later. The live feed does not wait for it. 0: insert what is waiting.
    pub linger_ms: u64,
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
            linger_ms: 1000,
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
    pub quantization: Quantization,
    /// Elements older than this many seconds are removed from the sets (0 keeps them forever).
    pub retention_s: u64,
    /// Seconds between retention sweeps.
    pub sweep_interval_s: u64,
    /// A keyframe at least this similar (vector-set score, 1 = identical) to a keyframe of another
    /// stream is reported as a duplicate.
    pub duplicate_min_similarity: f32,
    /// Only keyframes seen within this many seconds (wall clock) are compared for duplicates.
    pub duplicate_window_s: u64,
    /// ONNX Runtime threads of the text embedder (run by the scenes, speech and OCR pools and the
    /// query service).
    pub threads: usize,
}

impl Default for VectorsConfig {
    fn default() -> Self {
        Self {
            batch_max: 256,
            batch_deadline_ms: 200,
            max_ack_pending: 2000,
            retry_initial_ms: 500,
            quantization: Quantization::Q8,
            retention_s: 7 * 24 * 3600,
            sweep_interval_s: 60,
            duplicate_min_similarity: 0.98,
            duplicate_window_s: 3600,
            threads: 1,
        }
    }
}

/// How a vector set stores its elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// 8 bits per dimension: 4x smaller than fp32, recall close to it.
    Q8,
    /// 1 bit per dimension.
    Bin,
    /// fp32.
    Noquant,
}

impl Quantization {
    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::Q8 => "q8",
            Quantization::Bin => "bin",
            Quantization::Noquant => "noquant",
        }
    }
}
