//! The model registry: which model serves each task, its files, providers and fallback.

use crate::{ConfigError, expand_home};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a model does; each task's models take a fixed list of files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Voice activity (1 file).
    Vad,
    /// Speech-to-text (encoder, merged decoder, tokenizer).
    Stt,
    /// Text embeddings (model, tokenizer).
    TextEmbedding,
    /// On-screen text (detector, recogniser).
    Ocr,
    /// Image labels (model, class names).
    Labels,
    /// Shot boundaries (1 file).
    Shots,
    /// Image-text embeddings (image model, text model, CLIP BPE `tokenizer.json`).
    ImageText,
    /// Multilingual speech-to-text with language identification (Whisper as converted by
    /// scripts/convert-whisper.py: encoder, decoder, tokenizer, config.json).
    SttMultilingual,
}

impl Task {
    pub const ALL: [Task; 8] = [
        Task::Vad,
        Task::Stt,
        Task::TextEmbedding,
        Task::Ocr,
        Task::Labels,
        Task::Shots,
        Task::ImageText,
        Task::SttMultilingual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Task::Vad => "vad",
            Task::Stt => "stt",
            Task::TextEmbedding => "text_embedding",
            Task::Ocr => "ocr",
            Task::Labels => "labels",
            Task::Shots => "shots",
            Task::ImageText => "image_text",
            Task::SttMultilingual => "stt_multilingual",
        }
    }

    /// How many files a model of this task consists of.
    pub fn files(self) -> usize {
        match self {
            Task::Vad | Task::Shots => 1,
            Task::TextEmbedding | Task::Ocr | Task::Labels => 2,
            Task::Stt | Task::ImageText => 3,
            Task::SttMultilingual => 4,
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where ONNX Runtime runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    Cuda,
    Cpu,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// Folder the model files below are relative to.
    pub dir: PathBuf,
    /// ONNX Runtime shared library (libonnxruntime.so), as `make setup` places it.
    pub onnxruntime_lib: PathBuf,
    /// Execution providers in order of preference (`cuda`, `cpu`); the first one available is used.
    pub providers: Vec<ExecutionProvider>,
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
    /// Multilingual speech-to-text with language identification (used when `speech.languages`
    /// lists more than English).
    pub stt_multilingual: String,
    /// Every model Sightline may run.
    pub registry: Vec<ModelSpec>,
}

/// One model in the registry. `name` and `task` are required; the rest have defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    #[serde(default = "first_version")]
    pub version: String,
    /// `vad` (1 file), `stt` (encoder, merged decoder, tokenizer), `text_embedding` (model,
    /// tokenizer), `ocr` (detector, recogniser), `labels` (model, class names), `shots` (1 file),
    /// `image_text` (image model, text model, CLIP BPE `tokenizer.json`), `stt_multilingual`
    /// (encoder, decoder, tokenizer, config.json).
    pub task: Task,
    /// Files relative to `models.dir`, in the order the task lists them.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Files used instead of `files` where the model runs on the CPU, in the same order (empty:
    /// `files` everywhere): e.g. a detector quantised to 8 bits, several times faster on a CPU
    /// and no help on a GPU.
    #[serde(default)]
    pub cpu_files: Vec<PathBuf>,
    /// Execution providers in order for this model (empty: `models.providers`).
    #[serde(default)]
    pub providers: Vec<ExecutionProvider>,
    /// Most work items per batch (0: the pool's `batch_max`).
    #[serde(default)]
    pub batch_max: usize,
    /// A batch running longer than this sends the pool's work to the fallback for
    /// `fallback_cooldown_s` (0: no limit).
    #[serde(default)]
    pub timeout_ms: u64,
    /// Registry name of the model that takes over when this one fails to load, errors on an item,
    /// times out, or has more than `queue_threshold` items waiting ("": none).
    #[serde(default)]
    pub fallback: String,
    /// Work waiting for the pool above which batches go to the fallback (0: never).
    #[serde(default)]
    pub queue_threshold: u64,
    /// Seconds the fallback serves after a timeout.
    #[serde(default = "thirty_seconds")]
    pub fallback_cooldown_s: u64,
    /// On the CUDA provider, let this model multiply in TF32 (10-bit mantissa) on GPUs that have
    /// it: faster convolutions and matrix products, outputs further from the CPU's.
    #[serde(default)]
    pub cuda_tf32: bool,
}

fn first_version() -> String {
    "1".into()
}

fn thirty_seconds() -> u64 {
    30
}

impl ModelSpec {
    /// An entry for `name` serving `task`, every other field at its default.
    pub fn new(name: &str, task: Task) -> Self {
        Self {
            name: name.into(),
            version: first_version(),
            task,
            files: Vec::new(),
            cpu_files: Vec::new(),
            providers: Vec::new(),
            batch_max: 0,
            timeout_ms: 0,
            fallback: String::new(),
            queue_threshold: 0,
            fallback_cooldown_s: thirty_seconds(),
            cuda_tf32: false,
        }
    }

    /// The entry with TF32 allowed on the CUDA provider.
    pub fn tf32(self) -> Self {
        Self { cuda_tf32: true, ..self }
    }

    /// The entry with `files` as its `cpu_files`.
    pub fn on_cpu(self, files: &[&str]) -> Self {
        Self { cpu_files: files.iter().map(PathBuf::from).collect(), ..self }
    }

    /// `name@version`, as events record the model that produced them.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

pub(crate) fn spec(
    name: &str,
    task: Task,
    files: &[&str],
    fallback: &str,
    providers: &[ExecutionProvider],
) -> ModelSpec {
    ModelSpec {
        files: files.iter().map(PathBuf::from).collect(),
        fallback: fallback.into(),
        providers: providers.to_vec(),
        ..ModelSpec::new(name, task)
    }
}

impl Default for ModelsConfig {
    fn default() -> Self {
        let stt = [
            "moonshine-base-en/encoder_model.onnx",
            "moonshine-base-en/decoder_model_merged.onnx",
            "moonshine-base-en/tokenizer.json",
        ];
        // Moonshine's matrix multiplications in 8 bits where it runs on the CPU
        // (scripts/quantize-moonshine.py): 1.6 times faster, the same word errors (`make quality`).
        let stt_cpu = [
            "moonshine-base-en/encoder_model-int8.onnx",
            "moonshine-base-en/decoder_model_merged-int8.onnx",
            "moonshine-base-en/tokenizer.json",
        ];
        let ocr = ["ppocr/det.onnx", "ppocr/rec.onnx"];
        // The detector quantised to 8 bits at setup (scripts/quantize-ocr.py) where OCR runs on
        // the CPU: 2.5 times faster a frame, as many captions read exactly (`make quality`).
        let ocr_cpu = ["ppocr/det-int8.onnx", "ppocr/rec.onnx"];
        let labels = ["efficientnet-lite0/model.onnx", "efficientnet-lite0/labels.txt"];
        let whisper = [
            "whisper-base/encoder.onnx",
            "whisper-base/decoder.onnx",
            "whisper-base/tokenizer.json",
            "whisper-base/config.json",
        ];
        Self {
            dir: "~/.cache/sightline/models".into(),
            onnxruntime_lib: "~/.cache/sightline/lib/libonnxruntime.so".into(),
            providers: vec![ExecutionProvider::Cuda, ExecutionProvider::Cpu],
            cuda_device: 0,
            gpu_preprocess: true,
            vad: "silero-vad".into(),
            stt: "moonshine-base-en".into(),
            text_embedding: "minilm-l6-v2".into(),
            ocr: "pp-ocrv6-small".into(),
            labels: "efficientnet-lite0".into(),
            shots: "transnetv2".into(),
            image_text: String::new(),
            stt_multilingual: "whisper-base".into(),
            registry: vec![
                spec("silero-vad", Task::Vad, &["silero_vad.onnx"], "", &[]),
                spec("moonshine-base-en", Task::Stt, &stt, "moonshine-base-en-cpu", &[]).on_cpu(&stt_cpu),
                spec("moonshine-base-en-cpu", Task::Stt, &stt, "", &[ExecutionProvider::Cpu])
                    .on_cpu(&stt_cpu),
                // TF32 where it keeps the CPU's outputs within 1e-4 (an H200, 2026-12-04): MiniLM
                // 1.2-1.5 times faster in batches, TransNetV2 1.7-2.4 times.
                spec(
                    "minilm-l6-v2",
                    Task::TextEmbedding,
                    &["minilm/model.onnx", "minilm/tokenizer.json"],
                    "",
                    &[],
                )
                .tf32(),
                spec("pp-ocrv6-small", Task::Ocr, &ocr, "pp-ocrv6-small-cpu", &[]).on_cpu(&ocr_cpu),
                spec("pp-ocrv6-small-cpu", Task::Ocr, &ocr, "", &[ExecutionProvider::Cpu]).on_cpu(&ocr_cpu),
                spec("efficientnet-lite0", Task::Labels, &labels, "efficientnet-lite0-cpu", &[]),
                spec("efficientnet-lite0-cpu", Task::Labels, &labels, "", &[ExecutionProvider::Cpu]),
                spec("transnetv2", Task::Shots, &["transnetv2/model.onnx"], "transnetv2-cpu", &[]).tf32(),
                spec(
                    "transnetv2-cpu",
                    Task::Shots,
                    &["transnetv2/model.onnx"],
                    "",
                    &[ExecutionProvider::Cpu],
                ),
                spec("whisper-base", Task::SttMultilingual, &whisper, "whisper-base-cpu", &[]),
                spec("whisper-base-cpu", Task::SttMultilingual, &whisper, "", &[ExecutionProvider::Cpu]),
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

    /// The registry entry serving `task`.
    pub fn for_task(&self, task: Task) -> Result<&ModelSpec, ConfigError> {
        let name = match task {
            Task::Vad => &self.vad,
            Task::Stt => &self.stt,
            Task::TextEmbedding => &self.text_embedding,
            Task::Ocr => &self.ocr,
            Task::Labels => &self.labels,
            Task::Shots => &self.shots,
            Task::ImageText if self.image_text.is_empty() => {
                return Err(ConfigError::Invalid(
                    "no image-text model is configured (models.image_text)".into(),
                ));
            }
            Task::ImageText => &self.image_text,
            Task::SttMultilingual => &self.stt_multilingual,
        };
        self.model(name)
    }

    /// Full paths of the files of the model serving `task`, in the order the task lists them.
    pub fn task_files(&self, task: Task) -> Result<Vec<PathBuf>, ConfigError> {
        let spec = self.for_task(task)?;
        Ok(spec.files.iter().map(|f| self.path(f)).collect())
    }

    /// Full path of file `i` of a model (validated configurations have every file a task needs).
    pub fn file(&self, spec: &ModelSpec, i: usize) -> PathBuf {
        self.path(spec.files.get(i).map(PathBuf::as_path).unwrap_or(Path::new("")))
    }

    /// Full path of file `i` of a model where it runs on the CPU (`on_cpu`) or not: its
    /// `cpu_files` entry on the CPU when it has them, else its `files` entry.
    pub fn file_on(&self, spec: &ModelSpec, i: usize, on_cpu: bool) -> PathBuf {
        match spec.cpu_files.get(i) {
            Some(f) if on_cpu => self.path(f),
            _ => self.file(spec, i),
        }
    }

    /// Full paths of the files of the model serving `task` where it runs on the CPU or not.
    pub fn task_files_on(&self, task: Task, on_cpu: bool) -> Result<Vec<PathBuf>, ConfigError> {
        let spec = self.for_task(task)?;
        Ok((0..spec.files.len()).map(|i| self.file_on(spec, i, on_cpu)).collect())
    }

    /// Execution providers of a model: its own list, else `providers`.
    pub fn providers_of<'a>(&'a self, spec: &'a ModelSpec) -> &'a [ExecutionProvider] {
        if spec.providers.is_empty() { &self.providers } else { &spec.providers }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for (i, m) in self.registry.iter().enumerate() {
            let files = m.task.files();
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
            if !m.cpu_files.is_empty() && m.cpu_files.len() != files {
                return bad(format!(
                    "model `{}` ({}) needs {files} cpu_files (or none), has {}",
                    m.name,
                    m.task,
                    m.cpu_files.len()
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
        for task in Task::ALL {
            if task == Task::ImageText && self.image_text.is_empty() {
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

    /// Model files of the entries that allow TF32 on the CUDA provider (`cuda_tf32`).
    pub fn tf32_files(&self) -> Vec<PathBuf> {
        self.registry
            .iter()
            .filter(|s| s.cuda_tf32)
            .flat_map(|s| s.files.iter().map(|f| self.path(f)))
            .collect()
    }

    pub fn onnxruntime_lib(&self) -> PathBuf {
        expand_home(&self.onnxruntime_lib)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf32_is_allowed_per_model_and_only_where_measured() {
        let mut m = ModelsConfig { dir: "/models".into(), ..ModelsConfig::default() };
        // The shot and text models (within 1e-4 of the CPU in TF32 on an H200); PP-OCR, Silero VAD,
        // Moonshine and the labeller keep full fp32.
        assert_eq!(
            m.tf32_files(),
            [
                Path::new("/models/minilm/model.onnx"),
                Path::new("/models/minilm/tokenizer.json"),
                Path::new("/models/transnetv2/model.onnx")
            ]
        );
        for task in [Task::Ocr, Task::Vad, Task::Stt, Task::Labels] {
            assert!(!m.for_task(task).unwrap().cuda_tf32, "{task}");
        }
        let at = m.registry.iter().position(|s| s.name == "pp-ocrv6-small").unwrap();
        m.registry[at].cuda_tf32 = true;
        assert!(m.tf32_files().contains(&PathBuf::from("/models/ppocr/det.onnx")));
    }
}
