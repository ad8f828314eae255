//! One ONNX Runtime environment per process, loaded from a shared library path.

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[derive(Debug, thiserror::Error)]
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

#[derive(Clone)]
pub struct Runtime {
    env: Environment,
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
            Ok(Runtime { env })
        });
        res.clone().map_err(|reason| ModelError::Library { path: lib.to_path_buf(), reason })
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
        Session::builder(&self.env)
            .map_err(|e| load(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| load(e.to_string()))?
            .with_intra_threads(threads.max(1))
            .map_err(|e| load(e.to_string()))?
            .commit_from_file(path)
            .map_err(|e| load(e.to_string()))
    }
}

pub(crate) fn run_err(model: &'static str) -> impl Fn(ort::Error) -> ModelError {
    move |e| ModelError::Run { model, reason: e.to_string() }
}
