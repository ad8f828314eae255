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
    pub cluster: ClusterConfig,
}

mod cluster;
mod gateway;
mod ingest;
mod models;
mod pools;
mod services;
mod speech_checks;

pub use cluster::*;
pub use gateway::*;
pub use ingest::*;
pub use models::*;
pub use pools::*;
pub use services::*;

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

    /// The longest an item can take from its first delivery to its last in any pool:
    /// `max_deliver + 1` deliveries (the server's one extra, for the dead-letter decision), each
    /// ending by its ack wait or a nak of at most [`pools::MAX_RETRY_DELAY_S`]. Pools that retry
    /// forever (`max_deliver` ≤ 0) are left out: no window covers them.
    pub fn retry_horizon_s(&self) -> u64 {
        [
            ("scenes", self.scenes.max_deliver),
            ("speech", self.speech.max_deliver),
            ("shots", self.shots.max_deliver),
            ("ocr", self.ocr.max_deliver),
        ]
        .iter()
        .filter(|(_, d)| *d > 0)
        .map(|(k, d)| (*d as u64 + 1) * (pools::ack_wait_s(k) + pools::MAX_RETRY_DELAY_S))
        .max()
        .unwrap_or(0)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let horizon = self.retry_horizon_s();
        if self.nats.events_duplicate_window_s < horizon {
            return Err(ConfigError::Invalid(format!(
                "nats.events_duplicate_window_s ({}) is shorter than the pools' retries take ({horizon} s: (max_deliver + 1) × (ack wait + {} s)); raise it, or lower max_deliver",
                self.nats.events_duplicate_window_s,
                pools::MAX_RETRY_DELAY_S
            )));
        }
        if self.nats.events_duplicate_window_s > self.nats.events_max_age_s {
            return Err(ConfigError::Invalid(
                "nats.events_duplicate_window_s cannot exceed nats.events_max_age_s".into(),
            ));
        }
        self.models.validate()?;
        self.cluster.validate()?;
        if !(1..=5).contains(&self.nats.replicas) {
            return Err(ConfigError::Invalid(
                "nats.replicas must be 1..=5 (3 on a three-server cluster)".into(),
            ));
        }
        let i = &self.ingest;
        if i.sample_fps == 0 || i.sample_fps > 30 {
            return Err(ConfigError::Invalid("ingest.sample_fps must be 1..=30".into()));
        }
        if !(0.0..=1.0).contains(&i.gradual_threshold) || !(200..=10_000).contains(&i.gradual_max_ms) {
            return Err(ConfigError::Invalid(
                "ingest.gradual_threshold must be 0..=1 (0: off) and ingest.gradual_max_ms 200..=10000"
                    .into(),
            ));
        }
        if !i.analysis_width.is_multiple_of(2)
            || !i.analysis_height.is_multiple_of(2)
            || i.analysis_width < 16
        {
            return Err(ConfigError::Invalid("ingest.analysis_width/height must be even and ≥ 16".into()));
        }
        if !(0.0..=1.0).contains(&self.vectors.duplicate_min_similarity) {
            return Err(ConfigError::Invalid("vectors.duplicate_min_similarity must be within 0..=1".into()));
        }
        self.speech.validate()?;
        if i.audio_soft_segment_ms > i.audio_max_segment_ms {
            return Err(ConfigError::Invalid(
                "ingest.audio_soft_segment_ms must be at most ingest.audio_max_segment_ms".into(),
            ));
        }
        if self.speech.uses_multilingual_model() && i.audio_max_segment_ms > 30_000 {
            return Err(ConfigError::Invalid(
                "ingest.audio_max_segment_ms must be at most 30000 with several speech.languages (Whisper hears 30 s at a time)".into(),
            ));
        }
        if self.sink.linger_ms > 10_000 {
            return Err(ConfigError::Invalid(
                "sink.linger_ms must be at most 10000 (the events it gathers wait unacknowledged)".into(),
            ));
        }
        sightline_policy::AllowList::parse(&i.allow_hosts)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
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
    use crate::models::spec;

    #[test]
    fn the_sinks_linger_is_bounded() {
        let mut cfg = Config::default();
        assert_eq!(cfg.sink.linger_ms, 1000);
        cfg.sink.linger_ms = 10_001;
        assert!(cfg.validate().unwrap_err().to_string().contains("sink.linger_ms"));
        cfg.sink.linger_ms = 0;
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn the_silence_around_utterances_is_bounded() {
        let mut cfg = Config::default();
        assert_eq!((cfg.speech.lead_silence_ms, cfg.speech.trail_silence_ms), (300, 1000));
        cfg.speech.trail_silence_ms = 2001;
        assert!(cfg.validate().unwrap_err().to_string().contains("speech.trail_silence_ms"));
        cfg.speech.trail_silence_ms = 0;
        cfg.speech.lead_silence_ms = 5000;
        assert!(cfg.validate().unwrap_err().to_string().contains("speech.lead_silence_ms"));
        cfg.speech.lead_silence_ms = 2000;
        assert!(cfg.validate().is_ok());
        cfg.speech.rehear_trail_silence_ms = 2500;
        assert!(cfg.validate().unwrap_err().to_string().contains("speech.rehear_trail_silence_ms"));
        cfg.speech.rehear_trail_silence_ms = 1500;
        assert_eq!(cfg.speech.silence_samples(), (32_000, 0, 24_000), "16 samples a millisecond");
    }

    #[test]
    fn the_duplicate_window_outlasts_every_pools_retries() {
        let cfg = Config::default();
        // Speech: 6 deliveries of at most 120 s ack wait + 26 s nak delay.
        assert_eq!(cfg.retry_horizon_s(), 6 * 146);
        assert!(cfg.validate().is_ok());
        let mut more = Config::default();
        more.speech.max_deliver = 10;
        let err = more.validate().unwrap_err().to_string();
        assert!(err.contains("events_duplicate_window_s") && err.contains("1606"), "{err}");
        more.nats.events_duplicate_window_s = 1606;
        assert!(more.validate().is_ok());
        // Retrying forever cannot be covered, and is not counted.
        more.speech.max_deliver = -1;
        assert_eq!(more.retry_horizon_s(), 6 * 86);
        let mut short = Config::default();
        short.nats.events_max_age_s = 600;
        assert!(short.validate().unwrap_err().to_string().contains("events_max_age_s"));
    }

    #[test]
    fn malformed_allow_list_entries_are_config_errors() {
        let err = Config::load_with_env(
            None,
            [("SIGHTLINE_INGEST__ALLOW_HOSTS".into(), r#"["10.0.0.0/40"]"#.into())],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("10.0.0.0/40"), "{err}");
    }

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
        // An unknown task never gets into the registry: the file is refused where it is read.
        let asr = "[models]\nregistry = [{ name = \"x\", task = \"asr\", files = [\"a.onnx\"] }]\n";
        let err = toml::from_str::<Config>(asr).unwrap_err().to_string();
        assert!(err.contains("unknown variant `asr`"), "{err}");
        let m = ModelsConfig::default();
        let ocr = m.for_task(Task::Ocr).unwrap();
        assert_eq!(
            (ocr.id().as_str(), m.providers_of(ocr)),
            ("pp-ocrv6-small@1", &[ExecutionProvider::Cuda, ExecutionProvider::Cpu][..])
        );
        assert_eq!(m.providers_of(m.model("pp-ocrv6-small-cpu").unwrap()), &[ExecutionProvider::Cpu][..]);
        // The image-text model is optional; when named, it must be an image_text entry.
        assert!(m.for_task(Task::ImageText).unwrap_err().to_string().contains("models.image_text"));
        let err = check(&|m| m.image_text = "transnetv2".into()).unwrap_err();
        assert!(err.contains("models.image_text names `transnetv2`, a shots model"), "{err}");
        let clip = |m: &mut ModelsConfig| {
            m.registry.push(spec("clip", Task::ImageText, &["i.onnx", "t.onnx", "tokenizer.json"], "", &[]));
            m.image_text = "clip".into();
        };
        assert_eq!(check(&clip), Ok(()));
    }

    #[test]
    fn cpu_files_replace_files_on_the_cpu_only() {
        let mut m = ModelsConfig { dir: "/models".into(), ..ModelsConfig::default() };
        let ocr = m.for_task(Task::Ocr).unwrap().clone();
        assert_eq!(m.file_on(&ocr, 0, true), Path::new("/models/ppocr/det-int8.onnx"));
        assert_eq!(m.file_on(&ocr, 0, false), Path::new("/models/ppocr/det.onnx"));
        assert_eq!(m.file_on(&ocr, 1, true), Path::new("/models/ppocr/rec.onnx"));
        assert_eq!(
            m.task_files_on(Task::Ocr, true).unwrap(),
            [Path::new("/models/ppocr/det-int8.onnx"), Path::new("/models/ppocr/rec.onnx")]
        );
        // An entry without them uses its files everywhere.
        let vad = m.for_task(Task::Vad).unwrap().clone();
        assert!(vad.cpu_files.is_empty());
        assert_eq!(m.file_on(&vad, 0, true), m.file(&vad, 0));
        // When given, they list what the task needs.
        let at = m.registry.iter().position(|s| s.name == "pp-ocrv6-small").unwrap();
        m.registry[at].cpu_files.pop();
        let err = m.validate().unwrap_err().to_string();
        assert!(err.contains("needs 2 cpu_files (or none), has 1"), "{err}");
    }

    #[test]
    fn shipped_config_file_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/sightline.toml");
        let from_file = Config::load_with_env(Some(&path), []).unwrap();
        let defaults = Config::default();
        // The documented file must agree with the code's defaults, key for key.
        assert_eq!(toml::to_string(&from_file).unwrap(), toml::to_string(&defaults).unwrap());
    }

    #[test]
    fn typed_settings_refuse_unknown_values_and_take_them_from_the_environment() {
        for (file, bad) in [
            ("[ingest]\ncut_detector = \"slow\"\n", "slow"),
            ("[vectors]\nquantization = \"q4\"\n", "q4"),
            ("[models]\nproviders = [\"tpu\"]\n", "tpu"),
        ] {
            let err = toml::from_str::<Config>(file).unwrap_err().to_string();
            assert!(err.contains(&format!("unknown variant `{bad}`")), "{err}");
        }
        let env = [
            ("SIGHTLINE_INGEST__CUT_DETECTOR".to_string(), "transnetv2".to_string()),
            ("SIGHTLINE_VECTORS__QUANTIZATION".to_string(), "bin".to_string()),
        ];
        let cfg = Config::load_with_env(None, env).unwrap();
        assert_eq!(
            (cfg.ingest.cut_detector, cfg.vectors.quantization),
            (CutDetector::Transnetv2, Quantization::Bin)
        );
    }

    #[test]
    fn speech_languages_are_codes_and_several_need_segments_whisper_can_hear() {
        let mut cfg = Config::default();
        assert!(!cfg.speech.multilingual(), "English alone by default");
        cfg.speech.languages = vec!["en".into(), "de".into()];
        assert!(cfg.speech.multilingual() && cfg.validate().is_ok());
        for bad in [vec![], vec!["English".to_string()], vec!["DE".to_string()]] {
            cfg.speech.languages = bad;
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains("speech.languages must list ISO 639-1 codes"), "{err}");
        }
        cfg.speech.languages = vec!["fr".into()];
        cfg.ingest.audio_max_segment_ms = 40_000;
        assert!(
            cfg.validate().unwrap_err().to_string().contains("audio_max_segment_ms must be at most 30000")
        );
        cfg.speech.languages = vec!["en".into()];
        assert!(cfg.validate().is_ok(), "Moonshine alone takes longer segments");
        cfg.ingest.audio_soft_segment_ms = 50_000;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("audio_soft_segment_ms must be at most ingest.audio_max_segment_ms"), "{err}");
        cfg.speech.english_model = EnglishModel::Multilingual;
        assert!(cfg.validate().is_err(), "English by Whisper: 30 s at most");
        // Which model hears English.
        let mut sp = SpeechConfig::default();
        assert!(sp.english_to_stt() && !sp.uses_multilingual_model(), "English alone: Moonshine");
        sp.languages = vec!["en".into(), "es".into()];
        assert!(!sp.english_to_stt() && sp.uses_multilingual_model(), "with Spanish: Whisper hears all");
        sp.english_model = EnglishModel::Stt;
        assert!(sp.english_to_stt() && sp.uses_multilingual_model());
    }
}
