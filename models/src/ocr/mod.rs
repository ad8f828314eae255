//! On-screen text: PP-OCR's DB text detector finds text regions in a frame, its CTC recogniser
//! reads each region. The recogniser's character set travels inside the ONNX file (metadata key
//! `character`); index 0 is the CTC blank and a space is appended, as PaddleOCR trains it.
//!
//! Simplifications, chosen for broadcast captions and tickers: regions are axis-aligned boxes
//! (the component's bounding box grown by the DB "unclip" distance), not rotated rectangles, and
//! vertical text is not turned before reading.

use crate::runtime::run_err;
use crate::{ModelError, Runtime};
use ort::session::Session;
use ort::value::Tensor;
use std::path::{Path, PathBuf};

mod post;
pub use post::*;

/// Knobs of the detector and recogniser (defaults follow PaddleOCR's own).
#[derive(Debug, Clone)]
pub struct OcrParams {
    /// The frame is scaled so its shorter side is this many pixels (rounded to a multiple of 32)
    /// before detection. Larger finds smaller text and costs quadratically more.
    pub det_short_side: usize,
    /// Pixels whose text probability exceeds this belong to a text region.
    pub det_threshold: f32,
    /// Regions whose mean probability is below this are dropped.
    pub box_threshold: f32,
    /// How far a region is grown (area × ratio ÷ perimeter), as DB's "unclip".
    pub unclip_ratio: f32,
    /// Lines read with a mean character confidence below this are dropped.
    pub min_confidence: f32,
    /// At most this many regions are read per frame (largest first).
    pub max_lines: usize,
    /// Most frames in one detector run (frames of one size share a run).
    pub det_batch: usize,
    /// Most text lines in one recogniser run.
    pub rec_batch: usize,
}

impl Default for OcrParams {
    fn default() -> Self {
        Self {
            det_short_side: 320,
            det_threshold: 0.2,
            box_threshold: 0.5,
            unclip_ratio: 1.6,
            min_confidence: 0.5,
            max_lines: 32,
            det_batch: 8,
            rec_batch: 16,
        }
    }
}

impl OcrParams {
    /// The detector and recogniser settings of `[ocr]` (batch sizes stay at their defaults; see
    /// [`OcrParams::batched_for`]).
    pub fn from_config(o: &sightline_settings::OcrConfig) -> Self {
        Self {
            det_short_side: o.det_short_side,
            det_threshold: o.det_threshold,
            box_threshold: o.box_threshold,
            unclip_ratio: o.unclip_ratio,
            min_confidence: o.min_confidence,
            max_lines: o.max_lines,
            ..Self::default()
        }
    }

    /// Batch sizes for where the models run: on the GPU the frames of a work batch (up to
    /// `batch`) share detector runs and their lines share recogniser runs; on the CPU one run per
    /// frame and per line is faster (`make bench`: the detector's frames/s fall from 9.9 alone to
    /// 8.5 in batches of 8, the recogniser's lines/s from 62 to 51 in batches of 16: the work is
    /// the same and bigger tensors cache worse), so there each frame and line runs alone.
    pub fn batched_for(self, provider: crate::Provider, batch: usize) -> Self {
        let (det_batch, rec_batch) = match provider {
            crate::Provider::Cuda { .. } => (batch.max(1), 16),
            crate::Provider::Cpu => (1, 1),
        };
        Self { det_batch, rec_batch, ..self }
    }
}

/// One line of text read off a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct OcrLine {
    pub text: String,
    /// Mean probability of the characters read, 0..1.
    pub confidence: f32,
    /// x0, y0, x1, y1 as fractions of the frame's width and height.
    pub bbox: [f32; 4],
}

/// A text region cut out of a frame, ready for the recogniser.
struct Crop {
    pixels: Vec<u8>,
    width: usize,
    height: usize,
    /// Its recogniser input width (at height 48).
    rec_width: usize,
    /// x0, y0, x1, y1 as fractions of the frame.
    bbox: [f32; 4],
}

/// Input height of the recogniser.
pub const REC_HEIGHT: usize = 48;
/// Widest recogniser input (a crop wider than 40 × its height is squeezed).
pub(crate) const REC_MAX_WIDTH: usize = REC_HEIGHT * 40;

pub struct Ocr {
    det: Session,
    rec: Session,
    det_in: String,
    rec_in: String,
    charset: Vec<String>,
    params: OcrParams,
    path: PathBuf,
}

impl Ocr {
    pub fn load(
        rt: &Runtime,
        det: &Path,
        rec: &Path,
        threads: usize,
        params: OcrParams,
    ) -> Result<Self, ModelError> {
        let det_s = rt.session(det, threads)?;
        let rec_s = rt.session(rec, threads)?;
        let load = |reason: String| ModelError::Load { path: rec.to_path_buf(), reason };
        let chars = rec_s
            .metadata()
            .map_err(|e| load(e.to_string()))?
            .custom("character")
            .ok_or_else(|| load("no `character` list in the model's metadata".into()))?;
        let mut charset = vec![String::new()]; // CTC blank
        charset.extend(chars.lines().map(str::to_string));
        charset.push(" ".into());
        let det_in = det_s.inputs()[0].name().to_string();
        let rec_in = rec_s.inputs()[0].name().to_string();
        Ok(Self { det: det_s, rec: rec_s, det_in, rec_in, charset, params, path: det.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Characters the recogniser can emit, blank first.
    pub fn charset_len(&self) -> usize {
        self.charset.len()
    }

    /// Reads every line of text in an RGB frame.
    pub fn read(&mut self, rgb: &[u8], width: usize, height: usize) -> Result<Vec<OcrLine>, ModelError> {
        self.read_batch(&[(rgb, width, height)]).pop().expect("one result per frame")
    }

    /// Reads several RGB frames (of one stream or many), one result each, in order. Frames of the
    /// same size share detector runs (up to `det_batch` a run); the lines found on all of them
    /// are read together, sorted by width so little of a batch is padding (up to `rec_batch` a
    /// run).
    pub fn read_batch(&mut self, frames: &[(&[u8], usize, usize)]) -> Vec<Result<Vec<OcrLine>, ModelError>> {
        let mut failed: Vec<Option<ModelError>> = vec![None; frames.len()];
        let mut sizes: std::collections::BTreeMap<(usize, usize), Vec<usize>> = Default::default();
        for (i, &(rgb, width, height)) in frames.iter().enumerate() {
            if width < 8 || height < 8 || rgb.len() != width * height * 3 {
                failed[i] =
                    Some(ModelError::Input(format!("frame {width}x{height} with {} bytes", rgb.len())));
            } else {
                sizes.entry(det_size(width, height, self.params.det_short_side)).or_default().push(i);
            }
        }
        // Every line to read: (frame, place in the frame's reading order, crop).
        let mut crops: Vec<(usize, usize, Crop)> = Vec::new();
        for ((dw, dh), idx) in sizes {
            for chunk in idx.chunks(self.params.det_batch.max(1)) {
                let mut input = Vec::with_capacity(chunk.len() * 3 * dw * dh);
                for &i in chunk {
                    let (rgb, w, h) = frames[i];
                    input.extend(normalize_chw(&resize_bilinear(rgb, w, h, dw, dh), dw, dh));
                }
                match self.detect_batch(input, chunk.len(), dw, dh) {
                    Ok(maps) => {
                        for (&i, prob) in chunk.iter().zip(maps.chunks_exact(dw * dh)) {
                            let found = self.crops(frames[i], prob, (dw, dh));
                            crops.extend(found.into_iter().enumerate().map(|(k, c)| (i, k, c)));
                        }
                    }
                    Err(e) => chunk.iter().for_each(|&i| failed[i] = Some(e.clone())),
                }
            }
        }
        crops.sort_by_key(|(_, _, c)| c.rec_width);
        let mut lines: Vec<(usize, usize, OcrLine)> = Vec::new();
        for chunk in crops.chunks(self.params.rec_batch.max(1)) {
            match self.recognize_crops(chunk.iter().map(|(_, _, c)| c)) {
                Ok(read) => lines
                    .extend(chunk.iter().zip(read).filter_map(|((i, k, _), line)| line.map(|l| (*i, *k, l)))),
                Err(e) => chunk.iter().for_each(|(i, _, _)| failed[*i] = Some(e.clone())),
            }
        }
        lines.sort_by_key(|(i, k, _)| (*i, *k));
        let mut out: Vec<Result<Vec<OcrLine>, ModelError>> =
            failed.into_iter().map(|f| f.map_or(Ok(Vec::new()), Err)).collect();
        for (i, _, line) in lines {
            if let Ok(v) = &mut out[i] {
                v.push(line);
            }
        }
        out
    }

    /// The regions of one frame's probability map (at detector size `dw` x `dh`), largest
    /// `max_lines` kept, cut out of the frame in reading order: top to bottom, then left to right.
    fn crops(
        &self,
        (rgb, width, height): (&[u8], usize, usize),
        prob: &[f32],
        (dw, dh): (usize, usize),
    ) -> Vec<Crop> {
        let mut boxes = join_lines(text_boxes(prob, dw, dh, &self.params));
        let area = |b: &(f32, f32, f32, f32)| (b.2 - b.0) * (b.3 - b.1);
        boxes.sort_by(|a, b| area(b).total_cmp(&area(a)));
        boxes.truncate(self.params.max_lines);
        boxes.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.total_cmp(&b.0)));
        let (sx, sy) = (width as f32 / dw as f32, height as f32 / dh as f32);
        boxes
            .iter()
            .filter_map(|&(x0, y0, x1, y1)| {
                let (x0, y0) = ((x0 * sx).floor().max(0.0) as usize, (y0 * sy).floor().max(0.0) as usize);
                let x1 = ((x1 * sx).ceil() as usize).min(width);
                let y1 = ((y1 * sy).ceil() as usize).min(height);
                (x1 > x0 + 2 && y1 > y0 + 2).then(|| {
                    let (cw, ch) = (x1 - x0, y1 - y0);
                    let mut pixels = Vec::with_capacity(cw * ch * 3);
                    for y in y0..y1 {
                        pixels.extend_from_slice(&rgb[(y * width + x0) * 3..(y * width + x1) * 3]);
                    }
                    let bbox = [
                        x0 as f32 / width as f32,
                        y0 as f32 / height as f32,
                        x1 as f32 / width as f32,
                        y1 as f32 / height as f32,
                    ];
                    Crop { pixels, width: cw, height: ch, rec_width: rec_width(cw, ch), bbox }
                })
            })
            .collect()
    }

    /// Reads a batch of crops (padded on the right to the widest): per crop its line, or None when
    /// nothing was read with enough confidence.
    fn recognize_crops<'a>(
        &mut self,
        crops: impl ExactSizeIterator<Item = &'a Crop> + Clone,
    ) -> Result<Vec<Option<OcrLine>>, ModelError> {
        let n = crops.len();
        let batch_w = crops.clone().map(|c| c.rec_width).max().unwrap_or(REC_HEIGHT);
        let plane = REC_HEIGHT * batch_w;
        let mut batch = vec![0f32; n * 3 * plane];
        for (i, c) in crops.clone().enumerate() {
            let w = c.rec_width;
            let resized = resize_bilinear(&c.pixels, c.width, c.height, w, REC_HEIGHT);
            let dst = &mut batch[i * 3 * plane..(i + 1) * 3 * plane];
            for y in 0..REC_HEIGHT {
                for x in 0..w {
                    let p = &resized[(y * w + x) * 3..];
                    for ch in 0..3 {
                        // BGR planes, as PaddleOCR's models were trained on OpenCV images.
                        dst[ch * plane + y * batch_w + x] = p[2 - ch] as f32 / 127.5 - 1.0;
                    }
                }
            }
        }
        let (steps, classes, probs) = self.recognize_tensor(batch, n, batch_w)?;
        Ok(crops
            .enumerate()
            .map(|(i, c)| {
                let (text, confidence) =
                    self.ctc_decode(&probs[i * steps * classes..(i + 1) * steps * classes], classes);
                let text = text.trim().to_string();
                (!text.is_empty() && confidence >= self.params.min_confidence).then_some(OcrLine {
                    text,
                    confidence,
                    bbox: c.bbox,
                })
            })
            .collect())
    }

    /// The detector's text-probability map for one normalised CHW image (height × width values).
    pub fn detect_tensor(
        &mut self,
        input: Vec<f32>,
        width: usize,
        height: usize,
    ) -> Result<Vec<f32>, ModelError> {
        self.detect_batch(input, 1, width, height)
    }

    /// The detector's probability maps for `batch` normalised CHW images of one size, one after
    /// another (height × width values each).
    pub fn detect_batch(
        &mut self,
        input: Vec<f32>,
        batch: usize,
        width: usize,
        height: usize,
    ) -> Result<Vec<f32>, ModelError> {
        let err = run_err("ppocr-det");
        let x = Tensor::from_array(([batch, 3, height, width], input)).map_err(&err)?;
        let out = self.det.run(ort::inputs![self.det_in.as_str() => x]).map_err(&err)?;
        let (shape, prob) = out[0].try_extract_tensor::<f32>().map_err(&err)?;
        if prob.len() != batch * width * height {
            return Err(ModelError::Run { model: "ppocr-det", reason: format!("output shape {shape:?}") });
        }
        Ok(prob.to_vec())
    }

    /// The recogniser's per-step character probabilities for a batch of normalised 48-high CHW
    /// crops: (steps, classes, values).
    pub fn recognize_tensor(
        &mut self,
        input: Vec<f32>,
        batch: usize,
        width: usize,
    ) -> Result<(usize, usize, Vec<f32>), ModelError> {
        let err = run_err("ppocr-rec");
        let x = Tensor::from_array(([batch, 3, REC_HEIGHT, width], input)).map_err(&err)?;
        let out = self.rec.run(ort::inputs![self.rec_in.as_str() => x]).map_err(&err)?;
        let (shape, probs) = out[0].try_extract_tensor::<f32>().map_err(&err)?;
        if shape.len() != 3 || shape[0] as usize != batch || shape[2] as usize != self.charset.len() {
            return Err(ModelError::Run {
                model: "ppocr-rec",
                reason: format!("output shape {shape:?}, expected [{batch}, T, {}]", self.charset.len()),
            });
        }
        Ok((shape[1] as usize, shape[2] as usize, probs.to_vec()))
    }

    /// Greedy CTC: best class per step, repeats merged, blanks dropped; confidence is the mean
    /// probability of the characters kept. A space is also kept where the recogniser saw one but
    /// let the blank win: between two characters, a blank step whose space probability reaches
    /// [`SPACE_MIN_PROB`] (tight word gaps in bold or outlined captions read as "ATNINE"
    /// otherwise; inside words the space probability stays below 0.1).
    pub fn ctc_decode(&self, probs: &[f32], classes: usize) -> (String, f32) {
        ctc_decode(&self.charset, probs, classes)
    }
}
