//! Image labels and features: EfficientNet-Lite0 (ImageNet, converted to ONNX at setup by
//! scripts/convert-efficientnet.py). A frame is scaled to 224x224, normalised as (x − 127) / 128,
//! and gives a 1280-d pooled feature vector and the top ImageNet classes with their probabilities.

use crate::ocr::resize_bilinear;
use crate::runtime::run_err;
use crate::{GpuPreprocessor, InputLayout, ModelError, Runtime};
use ort::session::Session;
use ort::value::Tensor;
use std::path::Path;

pub const LABEL_INPUT: usize = 224;
pub const IMAGE_FEATURES: usize = 1280;

/// What the labeller saw in one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageLabels {
    /// Pooled features (1280-d, as the network gives them).
    pub features: Vec<f32>,
    /// The most probable classes, best first, with softmax probabilities.
    pub top: Vec<(String, f32)>,
}

pub struct ImageLabeler {
    session: Session,
    names: Vec<String>,
    /// Resizes and normalises frames on the GPU (when the model runs there).
    gpu: Option<GpuPreprocessor>,
}

/// EfficientNet-Lite0's input: RGB 224x224, (x − 127) / 128.
pub const LABEL_LAYOUT: InputLayout = InputLayout {
    width: LABEL_INPUT,
    height: LABEL_INPUT,
    scale: [1.0 / 128.0; 3],
    offset: [-127.0 / 128.0; 3],
    bgr: false,
};

impl ImageLabeler {
    pub fn load(rt: &Runtime, model: &Path, labels: &Path, threads: usize) -> Result<Self, ModelError> {
        let session = rt.session(model, threads)?;
        let text = std::fs::read_to_string(labels).map_err(|e| ModelError::Load {
            path: labels.to_path_buf(),
            reason: format!("cannot read the class names: {e}"),
        })?;
        let names: Vec<String> = text.lines().map(str::to_string).collect();
        if names.len() != 1000 {
            return Err(ModelError::Load {
                path: labels.to_path_buf(),
                reason: format!("{} class names, expected 1000", names.len()),
            });
        }
        Ok(Self { session, names, gpu: None })
    }

    /// Preprocesses frames with `gpu` from now on (falling back to the CPU if a launch fails).
    pub fn with_gpu(mut self, gpu: GpuPreprocessor) -> Self {
        self.gpu = Some(gpu);
        self
    }

    /// Labels a batch of packed RGB images (any size; each is scaled to 224x224).
    pub fn label(
        &mut self,
        images: &[(&[u8], usize, usize)],
        top_k: usize,
    ) -> Result<Vec<ImageLabels>, ModelError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let gpu_input = self.gpu.as_ref().and_then(|g| match g.preprocess(images, &LABEL_LAYOUT) {
            Ok(input) => Some(input),
            Err(e) => {
                tracing::warn!(error = %e, "GPU preprocessing failed; this batch is preprocessed on the CPU");
                None
            }
        });
        if let Some(input) = gpu_input {
            let (features, logits) = self.run(input, images.len())?;
            return Ok(self.labels_of(&features, &logits, top_k));
        }
        let plane = LABEL_INPUT * LABEL_INPUT;
        let mut input = vec![0f32; images.len() * 3 * plane];
        for (i, &(rgb, w, h)) in images.iter().enumerate() {
            if w == 0 || h == 0 || rgb.len() != w * h * 3 {
                return Err(ModelError::Input(format!("image {w}x{h} with {} bytes", rgb.len())));
            }
            let scaled;
            let px = if (w, h) == (LABEL_INPUT, LABEL_INPUT) {
                rgb
            } else {
                scaled = resize_bilinear(rgb, w, h, LABEL_INPUT, LABEL_INPUT);
                &scaled
            };
            let dst = &mut input[i * 3 * plane..(i + 1) * 3 * plane];
            for (j, p) in px.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    dst[c * plane + j] = (p[c] as f32 - 127.0) / 128.0;
                }
            }
        }
        let (features, logits) = self.run(input, images.len())?;
        Ok(self.labels_of(&features, &logits, top_k))
    }

    fn labels_of(&self, features: &[f32], logits: &[f32], top_k: usize) -> Vec<ImageLabels> {
        features
            .chunks_exact(IMAGE_FEATURES)
            .zip(logits.chunks_exact(self.names.len()))
            .map(|(f, l)| ImageLabels { features: f.to_vec(), top: self.top(l, top_k) })
            .collect()
    }

    /// Features and logits for a normalised NCHW batch of 224x224 images.
    pub fn run(&mut self, input: Vec<f32>, batch: usize) -> Result<(Vec<f32>, Vec<f32>), ModelError> {
        let err = run_err("efficientnet-lite0");
        let x = Tensor::from_array(([batch, 3, LABEL_INPUT, LABEL_INPUT], input)).map_err(&err)?;
        let out = self.session.run(ort::inputs!["image" => x]).map_err(&err)?;
        let (_, features) = out["features"].try_extract_tensor::<f32>().map_err(&err)?;
        let (_, logits) = out["logits"].try_extract_tensor::<f32>().map_err(&err)?;
        if features.len() != batch * IMAGE_FEATURES || logits.len() != batch * self.names.len() {
            return Err(ModelError::Run {
                model: "efficientnet-lite0",
                reason: "unexpected output sizes".into(),
            });
        }
        Ok((features.to_vec(), logits.to_vec()))
    }

    /// The `k` most probable classes of one image's logits.
    pub fn top(&self, logits: &[f32], k: usize) -> Vec<(String, f32)> {
        let max = logits.iter().copied().fold(f32::MIN, f32::max);
        let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        order.into_iter().take(k).map(|i| (self.names[i].clone(), (logits[i] - max).exp() / sum)).collect()
    }
}
