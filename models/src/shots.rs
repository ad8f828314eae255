//! Shot boundaries: TransNetV2 (converted to ONNX at setup by scripts/convert-transnetv2.py) over
//! windows of 100 consecutive decoded frames at 48x27 RGB. For each frame it gives the probability
//! that a shot ends on it. Windows overlap: each is read for its middle 50 frames, with 25 frames of
//! context on either side.

use crate::ocr::resize_bilinear;
use crate::runtime::run_err;
use crate::{ModelError, Runtime};
use ort::session::Session;
use ort::value::Tensor;
use std::path::Path;

pub const SHOT_W: usize = 48;
pub const SHOT_H: usize = 27;
/// Bytes of one 48x27 RGB frame.
pub const SHOT_FRAME_BYTES: usize = SHOT_W * SHOT_H * 3;
/// Frames in one window.
pub const SHOT_WINDOW: usize = 100;
/// Frames of context before (and after) the frames a window is read for.
pub const SHOT_CONTEXT: usize = 25;
/// Frames a window is read for: windows start this many frames apart.
pub const SHOT_STEP: usize = SHOT_WINDOW - 2 * SHOT_CONTEXT;

pub struct ShotDetector {
    session: Session,
}

impl ShotDetector {
    pub fn load(rt: &Runtime, model: &Path, threads: usize) -> Result<Self, ModelError> {
        Ok(Self { session: rt.session(model, threads)? })
    }

    /// Per-frame shot-end probabilities of each window (100 frames of 48x27 RGB, 388,800 bytes).
    pub fn predict(&mut self, windows: &[&[u8]]) -> Result<Vec<Vec<f32>>, ModelError> {
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        let size = SHOT_WINDOW * SHOT_FRAME_BYTES;
        let mut input = Vec::with_capacity(windows.len() * size);
        for w in windows {
            if w.len() != size {
                return Err(ModelError::Input(format!("a shot window has {} bytes, not {size}", w.len())));
            }
            input.extend_from_slice(w);
        }
        let err = run_err("transnetv2");
        let x = Tensor::from_array(([windows.len(), SHOT_WINDOW, SHOT_H, SHOT_W, 3], input)).map_err(&err)?;
        let out = self.session.run(ort::inputs!["frames" => x]).map_err(&err)?;
        let (_, cut) = out["cut"].try_extract_tensor::<f32>().map_err(&err)?;
        if cut.len() != windows.len() * SHOT_WINDOW {
            return Err(ModelError::Run { model: "transnetv2", reason: "unexpected output size".into() });
        }
        Ok(cut.chunks_exact(SHOT_WINDOW).map(<[f32]>::to_vec).collect())
    }

    /// Per-frame probabilities for a whole clip (frames of 48x27 RGB, concatenated): windows
    /// stepping by 50, the clip's first and last frames repeated as context at its ends, `batch`
    /// windows a model run.
    pub fn scan(&mut self, frames: &[u8], batch: usize) -> Result<Vec<f32>, ModelError> {
        let n = frames.len() / SHOT_FRAME_BYTES;
        if n == 0 || !frames.len().is_multiple_of(SHOT_FRAME_BYTES) {
            return Err(ModelError::Input(format!("{} bytes is not a whole number of frames", frames.len())));
        }
        let frame = |i: usize| &frames[i * SHOT_FRAME_BYTES..(i + 1) * SHOT_FRAME_BYTES];
        let windows: Vec<Vec<u8>> = (0..n.div_ceil(SHOT_STEP))
            .map(|w| {
                let start = (w * SHOT_STEP) as i64 - SHOT_CONTEXT as i64;
                (start..start + SHOT_WINDOW as i64)
                    .flat_map(|i| frame(i.clamp(0, n as i64 - 1) as usize).iter().copied())
                    .collect()
            })
            .collect();
        let mut probs = Vec::with_capacity(windows.len() * SHOT_STEP);
        for chunk in windows.chunks(batch.max(1)) {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            for p in self.predict(&refs)? {
                probs.extend_from_slice(&p[SHOT_CONTEXT..SHOT_CONTEXT + SHOT_STEP]);
            }
        }
        probs.truncate(n);
        Ok(probs)
    }
}

/// Shot boundaries in per-frame probabilities: for each run of frames at or above `threshold`
/// (a transition), the index of the first frame after it (where the next shot starts) and the
/// run's highest probability.
pub fn shot_starts(probs: &[f32], threshold: f32) -> Vec<(usize, f32)> {
    let mut out = Vec::new();
    let mut run: Option<f32> = None;
    for (i, &p) in probs.iter().enumerate() {
        match (p >= threshold, run) {
            (true, r) => run = Some(r.map_or(p, |m| m.max(p))),
            (false, Some(m)) => {
                out.push((i, m));
                run = None;
            }
            (false, None) => {}
        }
    }
    if let Some(m) = run {
        out.push((probs.len(), m));
    }
    out
}

/// A packed RGB frame scaled to TransNetV2's 48x27 input.
pub fn shot_frame(rgb: &[u8], width: usize, height: usize) -> Vec<u8> {
    if (width, height) == (SHOT_W, SHOT_H) {
        rgb.to_vec()
    } else {
        resize_bilinear(rgb, width, height, SHOT_W, SHOT_H)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shot_starts_follow_each_transition() {
        let p = [0.0, 0.9, 0.0, 0.0, 0.6, 0.8, 0.1, 0.7];
        assert_eq!(shot_starts(&p, 0.5), vec![(2, 0.9), (6, 0.8), (8, 0.7)]);
        assert!(shot_starts(&[0.1, 0.2], 0.5).is_empty());
    }

    #[test]
    fn frames_are_scaled_to_the_model_input() {
        let grey = vec![128u8; 64 * 36 * 3];
        let f = shot_frame(&grey, 64, 36);
        assert_eq!(f.len(), SHOT_FRAME_BYTES);
        assert!(f.iter().all(|&v| v == 128));
    }
}
