//! Cut scoring on every decoded frame at a tiny size. A frame starts a new scene when its colour
//! histogram and pixels differ sharply from the previous frame *and* the difference stands out
//! from the recent average (steady motion raises the average, a hard cut does not).
//!
//! Gradual transitions (dissolves, fades, wipes) change the picture a little on each of many
//! frames, so no single frame stands out. A second stage compares colour histograms across time
//! instead ("twin comparison"): a run of frames whose histogram keeps moving, bounded by steady
//! frames on both sides, is a transition when the steady picture after it differs from the one
//! before it by at least the gradual threshold. Its midpoint is where the histogram has covered
//! half of that distance; start and end where it covered 10 % and 90 %. Black or white frames (the
//! middle of a fade through black) do not end a run, so a fade out and in is one transition. Motion moves
//! pixels but hardly the histogram, so it neither starts runs nor passes the threshold.

use std::collections::VecDeque;

const BINS: usize = 4; // per channel: 4x4x4 joint RGB histogram
const HISTORY: usize = 15;
type Hist = [f32; BINS * BINS * BINS];
/// A frame whose histogram moved less than this since the previous frame is steady.
const STEADY_HIST: f32 = 0.008;
/// Steady frames in a row that close a run that changed nothing.
const STEADY_FRAMES: usize = 3;
/// A run ends when its distance from the anchor moved less than `PLATEAU_MOVE` over the last
/// `PLATEAU_FRAMES` frames (the picture arrived; motion may go on).
const PLATEAU_FRAMES: usize = 4;
const PLATEAU_MOVE: f32 = 0.04;
/// A hard cut also moves the pixels themselves by at least this much (mean absolute difference,
/// 0..1): a brightness step during a fade moves whole histogram bins of a plain picture at once,
/// but its pixels only by the step.
const MIN_CUT_PIXELS: f32 = 0.06;
/// A cut candidate moving the pixels less than this inside a transition under way is a step of
/// that transition.
const STEP_PIXELS: f32 = 0.12;
/// A frame with this much of its histogram in the darkest (or brightest) bin is black (white).
const UNIFORM: f32 = 0.9;
/// Black or white frames end a run only after this long (the black between a fade out and in
/// is shorter; a black scene is longer).
const UNIFORM_HOLD_MS: i64 = 800;

/// A scene change: a hard cut (start = end = `pts_ms`) or a gradual transition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SceneChange {
    /// The cut frame, or the transition's midpoint.
    pub pts_ms: i64,
    /// 0..1: the cut score, or the histogram distance across the transition.
    pub score: f32,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl SceneChange {
    pub fn gradual(&self) -> bool {
        self.end_ms > self.start_ms
    }
}

/// The gradual stage's state: recent frames (time, histogram), the open run, steady frames in a
/// row.
#[derive(Debug, Clone, Default)]
struct Gradual {
    threshold: f32,
    max_ms: i64,
    frames: VecDeque<(i64, Hist)>,
    /// Index in `frames` of the run's anchor (the frame before it began), when a run is open.
    run_from: Option<usize>,
    steady: usize,
}

#[derive(Debug, Clone)]
pub struct CutDetector {
    threshold: f32,
    ratio: f32,
    min_scene_ms: i64,
    prev_hist: Option<[f32; BINS * BINS * BINS]>,
    prev_pixels: Vec<u8>,
    recent: VecDeque<f32>,
    last_cut_ms: Option<i64>,
    gradual: Option<Gradual>,
    /// The last frame's pixel difference from the one before.
    last_pixels: f32,
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
            gradual: None,
            last_pixels: 0.0,
        }
    }

    /// Also finds gradual transitions up to `max_ms` long whose two sides' histograms differ by
    /// at least `threshold` (0 leaves the stage off).
    pub fn with_gradual(mut self, threshold: f32, max_ms: u64) -> Self {
        self.gradual =
            (threshold > 0.0).then(|| Gradual { threshold, max_ms: max_ms as i64, ..Default::default() });
        self
    }

    /// Forget the previous frame (after a reconnect the first frame is not a cut).
    pub fn reset(&mut self) {
        self.prev_hist = None;
        self.prev_pixels.clear();
        self.recent.clear();
        if let Some(g) = &mut self.gradual {
            g.frames.clear();
            g.run_from = None;
            g.steady = 0;
        }
    }

    /// Scores one RGB24 frame; returns the scene change it completes: a hard cut at this frame, or
    /// a gradual transition that ended just before it (at most one per `min_scene_ms`).
    pub fn push_change(&mut self, rgb: &[u8], pts_ms: i64) -> Option<SceneChange> {
        let hist = histogram(rgb);
        let before = self.last_cut_ms;
        let mut cut = self.score(rgb, hist, pts_ms);
        // A small-pixel jump in the middle of a transition already under way (a fast fade's
        // brightness step) is part of that transition, not a cut of its own.
        if cut.is_some()
            && self.last_pixels < STEP_PIXELS
            && self.gradual.as_ref().is_some_and(Gradual::under_way)
        {
            cut = None;
            self.last_cut_ms = before;
        }
        let last_cut = self.last_cut_ms;
        let gradual = self.gradual.as_mut().and_then(|g| g.push(pts_ms, hist, cut.is_some()));
        if let Some(score) = cut {
            return Some(SceneChange { pts_ms, score, start_ms: pts_ms, end_ms: pts_ms });
        }
        let g = gradual?;
        if last_cut.is_some_and(|l| g.start_ms - l < self.min_scene_ms) {
            return None;
        }
        self.last_cut_ms = Some(g.end_ms);
        Some(g)
    }

    /// Every change in a run of frames at `fps` (media time from 0), each with the media time of
    /// the frame that completed it.
    pub fn scan(&mut self, frames: &[Vec<u8>], fps: f64) -> Vec<(SceneChange, i64)> {
        frames
            .iter()
            .enumerate()
            .filter_map(|(n, f)| {
                let pts = (n as f64 * 1000.0 / fps).round() as i64;
                self.push_change(f, pts).map(|c| (c, pts))
            })
            .collect()
    }

    /// Scores one RGB24 frame; returns `Some(score)` when it is a hard cut.
    pub fn push(&mut self, rgb: &[u8], pts_ms: i64) -> Option<f32> {
        self.score(rgb, histogram(rgb), pts_ms)
    }

    fn score(&mut self, rgb: &[u8], hist: Hist, pts_ms: i64) -> Option<f32> {
        let Some(prev) = self.prev_hist.replace(hist) else {
            self.prev_pixels = rgb.to_vec();
            return None;
        };
        let hist_d = distance(&prev, &hist);
        let pix_d = if self.prev_pixels.len() == rgb.len() && !rgb.is_empty() {
            let sum: u64 = rgb.iter().zip(&self.prev_pixels).map(|(a, b)| a.abs_diff(*b) as u64).sum();
            sum as f32 / (rgb.len() as f32 * 255.0)
        } else {
            1.0
        };
        self.prev_pixels.clear();
        self.prev_pixels.extend_from_slice(rgb);
        self.last_pixels = pix_d;
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
        if score >= self.threshold && score >= self.ratio * avg && pix_d >= MIN_CUT_PIXELS && spaced {
            self.last_cut_ms = Some(pts_ms);
            Some(score)
        } else {
            None
        }
    }
}

impl Gradual {
    /// Whether an open run has already moved a third of the threshold from its anchor.
    fn under_way(&self) -> bool {
        match (self.run_from, self.frames.back()) {
            (Some(from), Some((_, last))) => distance(&self.frames[from].1, last) >= self.threshold / 3.0,
            _ => false,
        }
    }

    /// One frame's histogram; a transition when this frame completes one. A hard cut closes any
    /// run (the cut is the change).
    fn push(&mut self, pts_ms: i64, hist: Hist, hard_cut: bool) -> Option<SceneChange> {
        let moved = self.frames.back().map_or(0.0, |(_, prev)| distance(prev, &hist));
        self.frames.push_back((pts_ms, hist));
        self.steady = if moved < STEADY_HIST { self.steady + 1 } else { 0 };
        let last = self.frames.len() - 1;
        let found = match self.run_from {
            _ if hard_cut => {
                self.run_from = None;
                None
            }
            None => {
                if moved >= STEADY_HIST && last > 0 {
                    self.run_from = Some(last - 1);
                }
                None
            }
            Some(mut from) => {
                // The anchor slides so it is never more than max_ms old: motion keeps a run open
                // without a change, and a transition inside it is measured against the recent past.
                while from < last && pts_ms - self.frames[from].0 > self.max_ms {
                    from += 1;
                }
                self.run_from = Some(from);
                let anchor = &self.frames[from].1;
                let now = distance(anchor, &hist);
                let still_since = |frames: usize| {
                    let back = last.saturating_sub(frames).max(from);
                    (now - distance(anchor, &self.frames[back].1)).abs() < PLATEAU_MOVE
                };
                // Arrived: steady again, or (on moving pictures) no nearer nor further for longer.
                let plateau =
                    still_since(PLATEAU_FRAMES) && self.steady >= 2 || still_since(3 * PLATEAU_FRAMES);
                let held_ms = pts_ms - self.frames[last.saturating_sub(self.steady)].0;
                let uniform_hold = blank(&hist) && held_ms < UNIFORM_HOLD_MS;
                if now >= self.threshold && plateau && last - from > PLATEAU_FRAMES && !uniform_hold {
                    self.run_from = None;
                    self.transition(from, last)
                } else {
                    if self.steady >= STEADY_FRAMES && now < self.threshold {
                        self.run_from = None; // settled back where it was: nothing happened
                    }
                    None
                }
            }
        };
        self.trim();
        found
    }

    /// Keeps the frames an open run (or the next) can need: `max_ms` and a second more.
    fn trim(&mut self) {
        let newest = self.frames.back().map_or(0, |f| f.0);
        while self.frames.len() > 2 && newest - self.frames[0].0 > self.max_ms + 1000 {
            if self.run_from == Some(0) {
                break;
            }
            self.frames.pop_front();
            self.run_from = self.run_from.map(|i| i - 1);
        }
    }

    /// The change from frame `from` to frame `to`: it ends at the last frame still 10 % of the
    /// way away from `to`, and starts after the last frame before that still 90 % away that is not
    /// black or white (so drift before it does not stretch it, and a fade through black spans both
    /// halves); None when it took longer than max_ms (drift).
    fn transition(&self, from: usize, to: usize) -> Option<SceneChange> {
        let (before, after) = (&self.frames[from].1, &self.frames[to].1);
        let total = distance(before, after);
        let away = |i: usize| distance(after, &self.frames[i].1);
        let end = (from..=to).rev().find(|&i| away(i) >= 0.1 * total).unwrap_or(from);
        let start = (from..=end)
            .rev()
            .find(|&i| away(i) >= 0.9 * total && !blank(&self.frames[i].1))
            .map_or(from, |i| (i + 1).min(end));
        // The midpoint: the first frame at least as near the picture after as the one before
        // (around the black of a fade through black; unmoved by drift on either side).
        let mid = (from..=to)
            .find(|&i| distance(before, &self.frames[i].1) >= away(i))
            .unwrap_or((start + end) / 2)
            .clamp(start, end);
        let (start_ms, end_ms) = (self.frames[start].0, self.frames[end].0.max(self.frames[start].0 + 1));
        (end_ms - start_ms <= self.max_ms).then_some(SceneChange {
            pts_ms: self.frames[mid].0,
            score: total.min(1.0),
            start_ms,
            end_ms,
        })
    }
}

/// Half the L1 distance between two normalised histograms (0..1).
fn distance(a: &Hist, b: &Hist) -> f32 {
    0.5 * a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>()
}

/// Black or white all over: the middle of a fade through black or white.
fn blank(h: &Hist) -> bool {
    h[0] >= UNIFORM || h[h.len() - 1] >= UNIFORM
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

    /// Frame `i` of a clip: scene `a` until `from`, then a transition of `len` frames made by
    /// `mix(a, b, progress)`, then scene `b`.
    fn transition(
        a: &[u8],
        b: &[u8],
        from: usize,
        len: usize,
        i: usize,
        mix: fn(&[u8], &[u8], f32) -> Vec<u8>,
    ) -> Vec<u8> {
        if i < from {
            a.to_vec()
        } else if i >= from + len {
            b.to_vec()
        } else {
            mix(a, b, (i - from) as f32 / len as f32)
        }
    }

    fn dissolve(a: &[u8], b: &[u8], t: f32) -> Vec<u8> {
        a.iter().zip(b).map(|(&x, &y)| (x as f32 * (1.0 - t) + y as f32 * t) as u8).collect()
    }

    fn through_black(a: &[u8], b: &[u8], t: f32) -> Vec<u8> {
        let (src, level) = if t < 0.5 { (a, 1.0 - 2.0 * t) } else { (b, 2.0 * t - 1.0) };
        src.iter().map(|&x| (x as f32 * level) as u8).collect()
    }

    fn wipe(a: &[u8], b: &[u8], t: f32) -> Vec<u8> {
        let edge = (64.0 * t) as usize;
        let mut out = a.to_vec();
        for y in 0..36 {
            for x in 0..edge {
                let k = (y * 64 + x) * 3;
                out[k..k + 3].copy_from_slice(&b[k..k + 3]);
            }
        }
        out
    }

    fn run(frames: impl Iterator<Item = Vec<u8>>) -> Vec<SceneChange> {
        let mut d = CutDetector::new(0.35, 3.0, 600).with_gradual(0.35, 2500);
        frames.enumerate().filter_map(|(i, f)| d.push_change(&f, i as i64 * 33)).collect()
    }

    #[test]
    fn gradual_transitions_are_one_change_at_their_midpoint() {
        let a = moving(0);
        // Another gradient, unlike `a` (a flat colour fading crosses histogram bins all at once,
        // which the hard-cut score sees).
        let b: Vec<u8> =
            (0..64 * 36).flat_map(|i| [(i / 64 * 7) as u8, 255 - (i % 64 * 4) as u8, 200]).collect();
        for (name, mix, len) in [
            ("dissolve 1 s", dissolve as fn(&[u8], &[u8], f32) -> Vec<u8>, 30),
            ("dissolve 0.5 s", dissolve, 15),
            ("fade through black", through_black, 30),
            ("wipe", wipe, 20),
        ] {
            let found = run((0..120).map(|i| transition(&a, &b, 40, len, i, mix)));
            assert_eq!(found.len(), 1, "{name}: {found:?}");
            let c = found[0];
            assert!(c.gradual(), "{name}: {c:?}");
            let mid = (40 + len / 2) as i64 * 33;
            // Within the evaluation's tolerance (0.5 s): a pixel blend of two gradients moves the
            // coarse histogram unevenly.
            assert!((c.pts_ms - mid).abs() <= 350, "{name}: midpoint {} vs {mid}", c.pts_ms);
            assert!(c.start_ms >= 40 * 33 - 100 && c.end_ms <= (40 + len) as i64 * 33 + 100, "{name}: {c:?}");
        }
    }

    #[test]
    fn motion_is_no_transition_and_hard_cuts_stay_exact() {
        // A moving pattern for 4 s, a hard cut to a flat colour, another moving stretch.
        let found =
            run((0..240).map(|i| if (120..150).contains(&i) { solid(10, 20, 200) } else { moving(i) }));
        assert_eq!(
            found.iter().map(|c| (c.pts_ms, c.gradual())).collect::<Vec<_>>(),
            vec![(120 * 33, false), (150 * 33, false)]
        );
    }
}
