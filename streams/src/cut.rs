//! Cut scoring on every decoded frame at a tiny size. A frame starts a new scene when its colour
//! histogram and pixels differ sharply from the previous frame *and* the difference stands out
//! from the recent average (steady motion raises the average, a hard cut does not).

use std::collections::VecDeque;

const BINS: usize = 4; // per channel: 4x4x4 joint RGB histogram
const HISTORY: usize = 15;

#[derive(Debug, Clone)]
pub struct CutDetector {
    threshold: f32,
    ratio: f32,
    min_scene_ms: i64,
    prev_hist: Option<[f32; BINS * BINS * BINS]>,
    prev_pixels: Vec<u8>,
    recent: VecDeque<f32>,
    last_cut_ms: Option<i64>,
}

impl CutDetector {
    pub fn new(threshold: f32, ratio: f32, min_scene_ms: u64) -> Self {
        Self {
            threshold,
            ratio,
            min_scene_ms: min_scene_ms as i64,
            prev_hist: None,
            prev_pixels: Vec::new(),
            recent: VecDeque::with_capacity(HISTORY),
            last_cut_ms: None,
        }
    }

    /// Forget the previous frame (after a reconnect the first frame is not a cut).
    pub fn reset(&mut self) {
        self.prev_hist = None;
        self.prev_pixels.clear();
        self.recent.clear();
    }

    /// Scores one RGB24 frame; returns `Some(score)` when it is a cut.
    pub fn push(&mut self, rgb: &[u8], pts_ms: i64) -> Option<f32> {
        let hist = histogram(rgb);
        let Some(prev) = self.prev_hist.replace(hist) else {
            self.prev_pixels = rgb.to_vec();
            return None;
        };
        let hist_d = 0.5 * prev.iter().zip(&hist).map(|(a, b)| (a - b).abs()).sum::<f32>();
        let pix_d = if self.prev_pixels.len() == rgb.len() && !rgb.is_empty() {
            let sum: u64 = rgb.iter().zip(&self.prev_pixels).map(|(a, b)| a.abs_diff(*b) as u64).sum();
            sum as f32 / (rgb.len() as f32 * 255.0)
        } else {
            1.0
        };
        self.prev_pixels.clear();
        self.prev_pixels.extend_from_slice(rgb);
        let score = 0.75 * hist_d + 0.25 * pix_d;
        let avg = if self.recent.is_empty() {
            0.0
        } else {
            self.recent.iter().sum::<f32>() / self.recent.len() as f32
        };
        if self.recent.len() == HISTORY {
            self.recent.pop_front();
        }
        self.recent.push_back(score);
        let spaced = self.last_cut_ms.is_none_or(|t| pts_ms - t >= self.min_scene_ms);
        if score >= self.threshold && score >= self.ratio * avg && spaced {
            self.last_cut_ms = Some(pts_ms);
            Some(score)
        } else {
            None
        }
    }
}

fn histogram(rgb: &[u8]) -> [f32; BINS * BINS * BINS] {
    let mut h = [0f32; BINS * BINS * BINS];
    let shift = 8 - BINS.trailing_zeros();
    for px in rgb.chunks_exact(3) {
        let (r, g, b) = ((px[0] >> shift) as usize, (px[1] >> shift) as usize, (px[2] >> shift) as usize);
        h[(r * BINS + g) * BINS + b] += 1.0;
    }
    let n = (rgb.len() / 3).max(1) as f32;
    h.iter_mut().for_each(|v| *v /= n);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(r: u8, g: u8, b: u8) -> Vec<u8> {
        [r, g, b].repeat(64 * 36)
    }

    /// A gradient that moves one pixel per frame: motion, no cut.
    fn moving(t: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(64 * 36 * 3);
        for y in 0..36 {
            for x in 0..64 {
                let c = (((x + t) * 4) % 256) as u8;
                v.extend_from_slice(&[c, (y * 7) as u8, 255 - c]);
            }
        }
        v
    }

    #[test]
    fn finds_hard_cuts_and_ignores_motion() {
        let mut d = CutDetector::new(0.35, 3.0, 600);
        let mut cuts = Vec::new();
        for i in 0..90 {
            let pts = i as i64 * 33;
            let frame = if i < 30 {
                moving(i)
            } else if i < 60 {
                solid(10, 20, 200)
            } else {
                moving(i)
            };
            if let Some(s) = d.push(&frame, pts) {
                cuts.push((i, s));
            }
        }
        assert_eq!(cuts.iter().map(|c| c.0).collect::<Vec<_>>(), vec![30, 60], "{cuts:?}");
        assert!(cuts.iter().all(|c| c.1 > 0.35 && c.1 <= 1.0));
    }

    #[test]
    fn respects_minimum_scene_length_and_reset() {
        let mut d = CutDetector::new(0.35, 3.0, 600);
        let a = solid(0, 0, 0);
        let b = solid(255, 255, 255);
        assert!(d.push(&a, 0).is_none());
        assert!(d.push(&b, 33).is_some());
        assert!(d.push(&a, 66).is_none(), "too soon after the previous cut");
        d.reset();
        assert!(d.push(&b, 1000).is_none(), "first frame after reset is never a cut");
    }
}
