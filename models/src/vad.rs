//! Silero VAD: speech probability for each 32 ms window of 16 kHz audio, turned into speech
//! regions.

use crate::runtime::run_err;
use crate::{ModelError, Runtime};
use ort::session::Session;
use ort::value::Tensor;
use std::path::Path;

const WINDOW: usize = 512;
const CONTEXT: usize = 64;

pub struct SileroVad {
    session: Session,
}

impl SileroVad {
    pub fn load(rt: &Runtime, path: &Path) -> Result<Self, ModelError> {
        Ok(Self { session: rt.session(path, 1)? })
    }

    /// Speech probability of each 512-sample window (the last partial window is zero-padded).
    pub fn probabilities(&mut self, samples: &[f32]) -> Result<Vec<f32>, ModelError> {
        let err = run_err("silero-vad");
        let mut state = vec![0f32; 2 * 128];
        let mut context = vec![0f32; CONTEXT];
        let mut probs = Vec::with_capacity(samples.len() / WINDOW + 1);
        for chunk in samples.chunks(WINDOW) {
            let mut input = Vec::with_capacity(CONTEXT + WINDOW);
            input.extend_from_slice(&context);
            input.extend_from_slice(chunk);
            input.resize(CONTEXT + WINDOW, 0.0);
            context.copy_from_slice(&input[WINDOW..]);
            let x = Tensor::from_array(([1usize, CONTEXT + WINDOW], input)).map_err(&err)?;
            let s = Tensor::from_array(([2usize, 1, 128], std::mem::take(&mut state))).map_err(&err)?;
            let sr = Tensor::from_array((Vec::<usize>::new(), vec![16_000i64])).map_err(&err)?;
            let out = self.session.run(ort::inputs!["input" => x, "state" => s, "sr" => sr]).map_err(&err)?;
            let (_, p) = out["output"].try_extract_tensor::<f32>().map_err(&err)?;
            probs.push(p[0]);
            let (_, st) = out["stateN"].try_extract_tensor::<f32>().map_err(&err)?;
            state = st.to_vec();
        }
        Ok(probs)
    }

    /// Sample ranges that hold speech: windows above `threshold`, padded by 100 ms, merged across
    /// gaps shorter than 300 ms, and dropped when shorter than `min_speech_ms`.
    pub fn speech_regions(
        &mut self,
        samples: &[f32],
        threshold: f32,
        min_speech_ms: u64,
    ) -> Result<Vec<(usize, usize)>, ModelError> {
        let probs = self.probabilities(samples)?;
        Ok(regions(&probs, samples.len(), threshold, min_speech_ms))
    }
}

fn regions(probs: &[f32], len: usize, threshold: f32, min_speech_ms: u64) -> Vec<(usize, usize)> {
    let pad = 1600; // 100 ms
    let merge_gap = 4800; // 300 ms
    let min_len = min_speech_ms as usize * 16;
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, &p) in probs.iter().enumerate() {
        if p < threshold {
            continue;
        }
        let (s, e) = ((i * WINDOW).saturating_sub(pad), ((i + 1) * WINDOW + pad).min(len));
        match out.last_mut() {
            Some(last) if s <= last.1 + merge_gap => last.1 = e.max(last.1),
            _ => out.push((s, e)),
        }
    }
    out.retain(|(s, e)| e - s >= min_len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_merge_pad_and_filter() {
        // windows 10..20 speech, a 2-window gap, 22..30 speech, a lone blip at 60.
        let mut probs = vec![0.0; 80];
        for i in (10..20).chain(22..30) {
            probs[i] = 0.9;
        }
        probs[60] = 0.9;
        let r = regions(&probs, 80 * 512, 0.5, 250);
        assert_eq!(r, vec![(10 * 512 - 1600, 30 * 512 + 1600)]);
    }
}
