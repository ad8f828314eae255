//! Silero VAD: speech probability for each 32 ms window of 16 kHz audio, turned into speech
//! regions.

use crate::runtime::run_err;
use crate::{ModelError, Runtime};
use ort::session::Session;
use ort::value::Tensor;
use std::path::Path;

const WINDOW: usize = 512;
const CONTEXT: usize = 64;
/// Recurrent state per row and layer.
const STATE: usize = 128;

pub struct SileroVad {
    session: Session,
}

impl SileroVad {
    pub fn load(rt: &Runtime, path: &Path) -> Result<Self, ModelError> {
        Ok(Self { session: rt.session(path, 1)? })
    }

    /// Speech probability of each 512-sample window (the last partial window is zero-padded).
    pub fn probabilities(&mut self, samples: &[f32]) -> Result<Vec<f32>, ModelError> {
        Ok(self.probabilities_batch(&[samples])?.pop().unwrap_or_default())
    }

    /// [`Self::probabilities`] of several segments at once: each run takes the next window of
    /// every segment that still has one (one batch row each, with its own recurrent state), so
    /// the runs are as many as the longest segment has windows.
    pub fn probabilities_batch(&mut self, segments: &[&[f32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        let err = run_err("silero-vad");
        // Longest first: the rows still running at any step are a prefix.
        let windows = |i: usize| segments[i].len().div_ceil(WINDOW);
        let mut order: Vec<usize> = (0..segments.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(windows(i)));
        let mut probs: Vec<Vec<f32>> =
            segments.iter().map(|s| Vec::with_capacity(s.len() / WINDOW + 1)).collect();
        let mut rows = order.iter().take_while(|&&i| windows(i) > 0).count();
        let mut state = vec![0f32; 2 * rows * STATE];
        let mut context = vec![0f32; rows * CONTEXT];
        let mut step = 0;
        while rows > 0 {
            let mut input = vec![0f32; rows * (CONTEXT + WINDOW)];
            for (r, &i) in order[..rows].iter().enumerate() {
                let row = &mut input[r * (CONTEXT + WINDOW)..(r + 1) * (CONTEXT + WINDOW)];
                row[..CONTEXT].copy_from_slice(&context[r * CONTEXT..(r + 1) * CONTEXT]);
                let chunk = &segments[i][step * WINDOW..((step + 1) * WINDOW).min(segments[i].len())];
                row[CONTEXT..CONTEXT + chunk.len()].copy_from_slice(chunk);
                context[r * CONTEXT..(r + 1) * CONTEXT].copy_from_slice(&row[WINDOW..]);
            }
            let x = Tensor::from_array(([rows, CONTEXT + WINDOW], input)).map_err(&err)?;
            let s = Tensor::from_array(([2usize, rows, STATE], std::mem::take(&mut state))).map_err(&err)?;
            let sr = Tensor::from_array((Vec::<usize>::new(), vec![16_000i64])).map_err(&err)?;
            let out = self.session.run(ort::inputs!["input" => x, "state" => s, "sr" => sr]).map_err(&err)?;
            let (_, p) = out["output"].try_extract_tensor::<f32>().map_err(&err)?;
            for (r, &i) in order[..rows].iter().enumerate() {
                probs[i].push(p[r]);
            }
            let (_, st) = out["stateN"].try_extract_tensor::<f32>().map_err(&err)?;
            step += 1;
            // Rows whose segment ended leave the batch (the tail of each state layer).
            let next = order[..rows].iter().take_while(|&&i| windows(i) > step).count();
            state = st[..rows * STATE]
                .iter()
                .take(next * STATE)
                .chain(st[rows * STATE..].iter().take(next * STATE))
                .copied()
                .collect();
            context.truncate(next * CONTEXT);
            rows = next;
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
        Ok(self.speech_regions_batch(&[samples], threshold, min_speech_ms)?.pop().unwrap_or_default())
    }

    /// [`Self::speech_regions`] of several segments, their windows run in one batch.
    pub fn speech_regions_batch(
        &mut self,
        segments: &[&[f32]],
        threshold: f32,
        min_speech_ms: u64,
    ) -> Result<Vec<Vec<(usize, usize)>>, ModelError> {
        let probs = self.probabilities_batch(segments)?;
        Ok(probs.iter().zip(segments).map(|(p, s)| regions(p, s.len(), threshold, min_speech_ms)).collect())
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
