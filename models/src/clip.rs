//! Image-text embeddings from a CLIP-like model the user supplies as ONNX files: an image model,
//! a text model and CLIP's byte-level BPE tokenizer (`tokenizer.json`, as ONNX exports of CLIP ship
//! it). Pictures and sentences land in one vector space, so a sentence finds the frames that show
//! it. Inputs and outputs are taken by position (the first of each), so exports that name them
//! `pixel_values`/`image` or `input_ids`/`text` all load.

use crate::bpe::BytePairs;
use crate::ocr::resize_bilinear;
use crate::runtime::run_err;
use crate::{ModelError, Runtime};
use ort::session::Session;
use ort::value::Tensor;
use std::path::Path;

/// Tokens per sentence (CLIP's context length).
pub const CLIP_CONTEXT: usize = 77;
/// CLIP's normalisation of RGB in 0..1.
const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// CLIP's tokenizer: lower-cased, whitespace-collapsed text split into words, numbers and
/// punctuation, each word's UTF-8 bytes mapped to printable characters and merged by BPE rank,
/// its last piece marked with `</w>`; start and end tokens around, at most 77 tokens.
pub struct ClipTokenizer {
    pairs: BytePairs,
    split: regex::Regex,
    start: i64,
    end: i64,
}

impl ClipTokenizer {
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let err = |reason: String| ModelError::Tokenizer { path: path.to_path_buf(), reason };
        let pairs = BytePairs::from_file(path)?;
        let special = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| pairs.vocab.get(*n).copied())
                .ok_or_else(|| err(format!("no {} token", names[0])))
        };
        let start = special(["<|startoftext|>", "<start_of_text>"])?;
        let end = special(["<|endoftext|>", "<end_of_text>"])?;
        let split = regex::Regex::new(
            r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+",
        )
        .map_err(|e| err(e.to_string()))?;
        Ok(Self { pairs, split, start, end })
    }

    /// Token ids of `text`: start, the text's tokens, end (cut to 77 with the end kept).
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let clean = text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        let mut ids = vec![self.start];
        for word in self.split.find_iter(&clean) {
            ids.extend(self.pairs.ids(word.as_str(), "</w>"));
        }
        ids.truncate(CLIP_CONTEXT - 1);
        ids.push(self.end);
        ids
    }
}

pub struct ImageTextModel {
    image: Session,
    text: Session,
    tokenizer: ClipTokenizer,
    /// Square input size of the image model (from its input shape; 224 when dynamic).
    size: usize,
}

impl ImageTextModel {
    pub fn load(
        rt: &Runtime,
        image: &Path,
        text: &Path,
        tokenizer: &Path,
        threads: usize,
    ) -> Result<Self, ModelError> {
        let image_s = rt.session(image, threads)?;
        let text_s = rt.session(text, threads)?;
        let size = image_s
            .inputs()
            .first()
            .and_then(|i| i.dtype().tensor_shape().map(|s| s.last().copied().unwrap_or(-1)))
            .filter(|&s| s > 0)
            .unwrap_or(224) as usize;
        Ok(Self { image: image_s, text: text_s, tokenizer: ClipTokenizer::from_file(tokenizer)?, size })
    }

    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    /// Unit-length embeddings of packed RGB images (any size; each is scaled to the model's
    /// square input, CLIP-normalised).
    pub fn embed_images(&mut self, images: &[(&[u8], usize, usize)]) -> Result<Vec<Vec<f32>>, ModelError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let s = self.size;
        let plane = s * s;
        let mut input = vec![0f32; images.len() * 3 * plane];
        for (i, &(rgb, w, h)) in images.iter().enumerate() {
            if w == 0 || h == 0 || rgb.len() != w * h * 3 {
                return Err(ModelError::Input(format!("image {w}x{h} with {} bytes", rgb.len())));
            }
            let scaled = resize_bilinear(rgb, w, h, s, s);
            let dst = &mut input[i * 3 * plane..(i + 1) * 3 * plane];
            for (j, p) in scaled.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    dst[c * plane + j] = (p[c] as f32 / 255.0 - MEAN[c]) / STD[c];
                }
            }
        }
        let err = run_err("image-text image model");
        let x = Tensor::from_array(([images.len(), 3, s, s], input)).map_err(&err)?;
        let (input, output) =
            (self.image.inputs()[0].name().to_string(), self.image.outputs()[0].name().to_string());
        let inputs: Vec<(std::borrow::Cow<str>, ort::session::SessionInputValue)> =
            vec![(input.into(), x.into())];
        let out = self.image.run(inputs).map_err(&err)?;
        rows(&out[output.as_str()], images.len(), &err)
    }

    /// Unit-length embeddings of sentences.
    pub fn embed_texts(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = vec![0i64; texts.len() * CLIP_CONTEXT];
        let mut mask = vec![0i64; texts.len() * CLIP_CONTEXT];
        for (i, t) in texts.iter().enumerate() {
            let tokens = self.tokenizer.encode(t);
            ids[i * CLIP_CONTEXT..i * CLIP_CONTEXT + tokens.len()].copy_from_slice(&tokens);
            mask[i * CLIP_CONTEXT..i * CLIP_CONTEXT + tokens.len()].fill(1);
        }
        let err = run_err("image-text text model");
        let shape = [texts.len(), CLIP_CONTEXT];
        let mut inputs: Vec<(std::borrow::Cow<str>, ort::session::SessionInputValue)> = Vec::new();
        for (k, input) in self.text.inputs().iter().enumerate() {
            let values = if k > 0 && input.name().contains("mask") { mask.clone() } else { ids.clone() };
            inputs.push((
                input.name().to_string().into(),
                Tensor::from_array((shape, values)).map_err(&err)?.into(),
            ));
        }
        let output = self.text.outputs()[0].name().to_string();
        let out = self.text.run(inputs).map_err(&err)?;
        rows(&out[output.as_str()], texts.len(), &err)
    }
}

/// An [N, D] output as N unit-length rows.
fn rows(
    value: &ort::value::DynValue,
    n: usize,
    err: &impl Fn(ort::Error) -> ModelError,
) -> Result<Vec<Vec<f32>>, ModelError> {
    let (_, data) = value.try_extract_tensor::<f32>().map_err(err)?;
    if n == 0 || data.len() % n != 0 || data.is_empty() {
        return Err(ModelError::Run {
            model: "image-text",
            reason: format!("{} values for {n} inputs", data.len()),
        });
    }
    Ok(data
        .chunks_exact(data.len() / n)
        .map(|r| {
            let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            r.iter().map(|v| v / norm).collect()
        })
        .collect())
}
