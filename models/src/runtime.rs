//! One ONNX Runtime environment per process, loaded from a shared library path, and the execution
//! providers sessions run on: CUDA when it is asked for and present (detected at start), otherwise
//! the CPU. A provider that is asked for but missing is reported once and the CPU takes over, so
//! the same configuration runs on a GPU machine and on one without.

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use sightline_settings::ExecutionProvider;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    #[error("ONNX Runtime library {path} could not be loaded: {reason}")]
    Library { path: PathBuf, reason: String },
    #[error("model file {0} does not exist (run `make setup`)")]
    Missing(PathBuf),
    #[error("model {path} failed to load: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("inference failed in {model}: {reason}")]
    Run { model: &'static str, reason: String },
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("bad input: {0}")]
    Input(String),
}

/// Where a session's work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Cuda { device: i32 },
    Cpu,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cuda { .. } => "cuda",
            Provider::Cpu => "cpu",
        }
    }

    /// Runs on the CPU (models with `cpu_files` load those).
    pub fn is_cpu(self) -> bool {
        matches!(self, Provider::Cpu)
    }
}

#[derive(Clone)]
pub struct Runtime {
    env: Environment,
    provider: Provider,
    /// Model files the CUDA provider may multiply in TF32 for (ONNX Runtime's own default is all).
    tf32: std::sync::Arc<[PathBuf]>,
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

impl Runtime {
    /// Loads ONNX Runtime from `lib` (first call wins; later calls share the same environment).
    pub fn load(lib: &Path) -> Result<Runtime, ModelError> {
        let res = RUNTIME.get_or_init(|| {
            if !lib.exists() {
                return Err(format!("{} does not exist (run `make setup`)", lib.display()));
            }
            let builder = ort::init_from(lib).map_err(|e| e.to_string())?;
            let env = builder.with_name("sightline").build().map_err(|e| e.to_string())?;
            Ok(Runtime { env, provider: Provider::Cpu, tf32: Vec::new().into() })
        });
        res.clone().map_err(|reason| ModelError::Library { path: lib.to_path_buf(), reason })
    }

    /// The first provider of `preferred` (in order, e.g. CUDA then CPU) that this machine and
    /// this ONNX Runtime build offer; the CPU when none does.
    pub fn with_providers(
        mut self,
        preferred: &[ExecutionProvider],
        cuda_device: i32,
    ) -> Result<Runtime, ModelError> {
        self.provider = Provider::Cpu;
        for choice in preferred {
            match choice {
                ExecutionProvider::Cuda => match cuda_available() {
                    Ok(()) => {
                        self.provider = Provider::Cuda { device: cuda_device };
                        break;
                    }
                    Err(why) => warn_once(&format!(
                        "CUDA execution provider unavailable ({why}); models run on the CPU"
                    )),
                },
                ExecutionProvider::Cpu => break,
            }
        }
        Ok(self)
    }

    /// The model files whose CUDA sessions may multiply in TF32; every other file runs in full
    /// fp32 there (the CPU's results within 1e-3).
    pub fn with_tf32(mut self, files: Vec<PathBuf>) -> Runtime {
        self.tf32 = files.into();
        self
    }

    /// The provider new sessions run on.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// ONNX Runtime's version string, for `sightline check`.
    pub fn version(&self) -> String {
        ort::info().to_string()
    }

    pub fn session(&self, path: &Path, threads: usize) -> Result<Session, ModelError> {
        if !path.exists() {
            return Err(ModelError::Missing(path.to_path_buf()));
        }
        let load = |reason: String| ModelError::Load { path: path.to_path_buf(), reason };
        let mut builder = Session::builder(&self.env).map_err(|e| load(e.to_string()))?;
        if let Provider::Cuda { device } = self.provider {
            let cuda = ort::ep::CUDA::default()
                .with_device_id(device)
                .with_tf32(self.tf32.iter().any(|f| f == path))
                .build()
                .error_on_failure();
            builder =
                builder.with_execution_providers([cuda]).map_err(|e| load(format!("CUDA provider: {e}")))?;
        }
        builder
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| load(e.to_string()))?
            .with_intra_threads(threads.max(1))
            .map_err(|e| load(e.to_string()))?
            .commit_from_file(path)
            .map_err(|e| load(e.to_string()))
    }
}

/// Why the GPU path is not available (no driver, no CUDA provider, a kernel that did not compile):
/// the caller runs on the CPU instead and logs this.
#[derive(Debug, Clone, Default, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct GpuUnavailable(pub String);

impl From<String> for GpuUnavailable {
    fn from(why: String) -> Self {
        Self(why)
    }
}

impl From<&str> for GpuUnavailable {
    fn from(why: &str) -> Self {
        Self(why.to_string())
    }
}

/// Whether the loaded ONNX Runtime offers the CUDA provider (a GPU build, with its CUDA libraries
/// found); the error says what is missing.
pub fn cuda_available() -> Result<(), GpuUnavailable> {
    use ort::ep::ExecutionProvider;
    match ort::ep::CUDA::is_available() {
        Ok(true) => Ok(()),
        Ok(false) => Err("this ONNX Runtime build has no CUDA provider".into()),
        Err(e) => Err(e.to_string().into()),
    }
}

fn warn_once(msg: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| tracing::warn!("{msg}"));
}

pub(crate) fn run_err(model: &'static str) -> impl Fn(ort::Error) -> ModelError {
    move |e| ModelError::Run { model, reason: e.to_string() }
}
