//! Loading a registry entry's model on the execution providers it asks for.

use sightline_models::{GpuPreprocessor, ImageTextModel, ModelError, Runtime, TextEmbedder};
use sightline_settings::Task;
use sightline_settings::{Config, ModelSpec};

/// The GPU preprocessing kernel, when `rt` runs models on CUDA and `models.gpu_preprocess` is on;
/// otherwise (or when the kernel cannot load, which is logged with the reason) the CPU does it.
pub fn gpu_preprocessor(cfg: &Config, rt: &Runtime) -> Option<GpuPreprocessor> {
    let sightline_models::Provider::Cuda { device } = rt.provider() else { return None };
    if !cfg.models.gpu_preprocess {
        return None;
    }
    match GpuPreprocessor::new(device.max(0) as usize) {
        Ok(g) => {
            tracing::info!(device = g.device(), "frames are preprocessed on the GPU");
            Some(g)
        }
        Err(why) => {
            tracing::warn!(%why, "GPU preprocessing unavailable; frames are preprocessed on the CPU");
            None
        }
    }
}

/// The image-text model of registry entry `spec` (task `image_text`), one thread.
pub fn load_image_text(cfg: &Config, spec: &ModelSpec) -> Result<ImageTextModel, ModelError> {
    let rt = runtime_for(cfg, spec)?;
    let f = |i| model_file(cfg, spec, &rt, i);
    ImageTextModel::load(&rt, &f(0), &f(1), &f(2), 1)
}

/// File `i` of registry entry `spec` as `rt` loads it: its `cpu_files` entry where `rt` runs on
/// the CPU and the entry has them, else its `files` entry. Every pool loads its files this way.
pub fn model_file(cfg: &Config, spec: &ModelSpec, rt: &Runtime, i: usize) -> std::path::PathBuf {
    cfg.models.file_on(spec, i, rt.provider().is_cpu())
}

/// ONNX Runtime on the execution providers a registry entry asks for.
pub fn runtime_for(cfg: &Config, spec: &ModelSpec) -> Result<Runtime, ModelError> {
    let m = &cfg.models;
    Ok(Runtime::load(&m.onnxruntime_lib())?
        .with_providers(m.providers_of(spec), m.cuda_device)?
        .with_tf32(if spec.cuda_tf32 { spec.files.iter().map(|f| m.path(f)).collect() } else { Vec::new() }))
}

/// A registry entry the configuration validated (it exists): a panic otherwise names it.
pub fn registered<'a>(cfg: &'a Config, name: &str) -> &'a ModelSpec {
    cfg.models.model(name).unwrap_or_else(|e| panic!("{e}"))
}

/// The text embedder (task `text_embedding`) named in the config.
pub fn load_embedder(cfg: &Config) -> Result<TextEmbedder, ModelError> {
    let m = &cfg.models;
    let spec = m.for_task(Task::TextEmbedding).map_err(|e| ModelError::Input(e.to_string()))?;
    let rt = runtime_for(cfg, spec)?;
    TextEmbedder::load(
        &rt,
        &model_file(cfg, spec, &rt, 0),
        &model_file(cfg, spec, &rt, 1),
        cfg.vectors.threads,
    )
}
