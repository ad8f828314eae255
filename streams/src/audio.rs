//! Splits a continuous 16 kHz mono signal into segments of sound between pauses (a cheap energy
//! gate; the speech actor's VAD decides what is speech). Segments are bounded in length, so a
//! stream that never falls silent still yields work at a steady pace and memory stays bounded.
//!
//! A pause is a run of quiet 30 ms windows: under the gate's level, or under twice the background
//! (a low percentile of the last 3 s of windows), so that speech over traffic or a music bed is
//! still cut between phrases instead of running to the maximum length, and steady noise alone
//! opens no segment (only a window that is not quiet does). A segment closes after the
//! hangover's length of pause; once it is longer than the soft length, a short pause closes it
//! (300 ms, 30 ms shorter for every second past the soft length, 150 ms at least), which bounds how
//! long a phrase of continuous speech waits for its segment to end.
//! A segment that reaches the maximum is cut at the quietest point of its last two seconds, not
//! in the middle of a word, and what follows that point opens the next segment.

use std::collections::VecDeque;

const RATE: i64 = 16_000;
const WINDOW: usize = 480; // 30 ms
const PREROLL_WINDOWS: usize = 10; // 300 ms kept before the gate opens
/// Windows of recent level the background is measured over (3 s).
const BACKGROUND_WINDOWS: usize = 100;
/// The background is this quantile of the recent windows' RMS,
const BACKGROUND_QUANTILE: f32 = 0.1;
/// and a window under this many times it is quiet (6 dB).
const OVER_BACKGROUND: f32 = 2.0;
/// At the soft length this many quiet windows close a segment (300 ms), one fewer for every second
/// past it, down to the least (150 ms): the longer a segment, the shorter the pause that ends it.
const SHORT_PAUSE_WINDOWS: usize = 10;
const LEAST_PAUSE_WINDOWS: usize = 5;
/// At the maximum length the cut goes to the quietest point of this many last windows (2 s).
const CUT_SEARCH_WINDOWS: usize = 66;

#[derive(Debug, Clone, PartialEq)]
pub struct AudioSegment {
    pub start_ms: i64,
    pub end_ms: i64,
    pub samples: Vec<f32>,
}

#[derive(Debug)]
pub struct AudioSegmenter {
    level: f32,
    hangover_windows: usize,
    soft_samples: usize,
    max_samples: usize,
    /// Media time of the next sample that will be pushed, in samples.
    clock: Option<i64>,
    pending: Vec<f32>,
    preroll: VecDeque<Vec<f32>>,
    /// The open segment: its start (samples), its samples, and each of its windows' RMS.
    current: Option<(i64, Vec<f32>, Vec<f32>)>,
    quiet: usize,
    /// RMS of the last windows, open segment or not, and a scratch copy to take the quantile of.
    recent: VecDeque<f32>,
    scratch: Vec<f32>,
}

impl AudioSegmenter {
    /// `level`: RMS (0..1) under which a window is quiet whatever the background; a segment
    /// closes after `hangover_ms` of pause, or after a short pause once it is `soft_segment_ms`
    /// long, and is cut at `max_segment_ms` at the latest.
    pub fn new(level: f32, hangover_ms: u64, soft_segment_ms: u64, max_segment_ms: u64) -> Self {
        let max_samples = (max_segment_ms as usize * RATE as usize / 1000).max(WINDOW);
        Self {
            level,
            hangover_windows: (hangover_ms as usize).div_ceil(30).max(1),
            soft_samples: (soft_segment_ms as usize * RATE as usize / 1000).min(max_samples),
            max_samples,
            clock: None,
            pending: Vec::with_capacity(WINDOW),
            preroll: VecDeque::with_capacity(PREROLL_WINDOWS),
            current: None,
            quiet: 0,
            recent: VecDeque::with_capacity(BACKGROUND_WINDOWS),
            scratch: Vec::with_capacity(BACKGROUND_WINDOWS),
        }
    }

    /// Pushes samples starting at `pts_ms`; returns the segments that closed.
    pub fn push(&mut self, pts_ms: i64, samples: &[f32]) -> Vec<AudioSegment> {
        let at = pts_ms * RATE / 1000;
        let expected = self.clock.map(|c| c + self.pending.len() as i64);
        // A jump in timestamps (reconnect, lost buffers) closes what was open.
        let mut out = Vec::new();
        if let Some(e) = expected
            && (at - e).abs() > RATE / 10
        {
            out.extend(self.flush());
        }
        if self.clock.is_none() || self.pending.is_empty() && self.current.is_none() {
            self.clock = Some(at - self.pending.len() as i64);
        }
        for &s in samples {
            self.pending.push(s);
            if self.pending.len() == WINDOW {
                let window = std::mem::replace(&mut self.pending, Vec::with_capacity(WINDOW));
                let start = self.clock.unwrap();
                self.clock = Some(start + WINDOW as i64);
                if let Some(seg) = self.window(start, window) {
                    out.push(seg);
                }
            }
        }
        out
    }

    /// Closes the open segment, if any (end of stream).
    pub fn flush(&mut self) -> Option<AudioSegment> {
        self.preroll.clear();
        self.pending.clear();
        self.recent.clear();
        self.clock = None;
        self.quiet = 0;
        self.current.take().map(|(start, s, _)| segment(start, s))
    }

    /// The background level: a low quantile of the recent windows' RMS.
    fn background(&mut self) -> f32 {
        if self.recent.len() < BACKGROUND_WINDOWS / 4 {
            return 0.0; // too little heard yet: the gate's level alone
        }
        self.scratch.clear();
        self.scratch.extend(self.recent.iter().copied());
        let rank = ((self.scratch.len() - 1) as f32 * BACKGROUND_QUANTILE) as usize;
        *self.scratch.select_nth_unstable_by(rank, f32::total_cmp).1
    }

    fn window(&mut self, start: i64, w: Vec<f32>) -> Option<AudioSegment> {
        let rms = window_rms(&w);
        if self.recent.len() == BACKGROUND_WINDOWS {
            self.recent.pop_front();
        }
        self.recent.push_back(rms);
        let quiet = rms < self.level || rms < OVER_BACKGROUND * self.background();
        match &mut self.current {
            None if !quiet => {
                let pre: Vec<Vec<f32>> = self.preroll.drain(..).collect();
                let seg_start = start - (pre.len() * WINDOW) as i64;
                let mut buf = Vec::with_capacity(self.max_samples);
                let mut levels: Vec<f32> = pre.iter().map(|p| window_rms(p)).collect();
                pre.into_iter().for_each(|p| buf.extend(p));
                buf.extend(w);
                levels.push(rms);
                self.current = Some((seg_start, buf, levels));
                self.quiet = 0;
                None
            }
            None => {
                if self.preroll.len() == PREROLL_WINDOWS {
                    self.preroll.pop_front();
                }
                self.preroll.push_back(w);
                None
            }
            Some((_, buf, levels)) => {
                buf.extend_from_slice(&w);
                levels.push(rms);
                self.quiet = if quiet { self.quiet + 1 } else { 0 };
                let pause = if buf.len() >= self.soft_samples {
                    let past_s = (buf.len() - self.soft_samples) / RATE as usize;
                    SHORT_PAUSE_WINDOWS
                        .saturating_sub(past_s)
                        .max(LEAST_PAUSE_WINDOWS)
                        .min(self.hangover_windows)
                } else {
                    self.hangover_windows
                };
                if self.quiet >= pause {
                    let (s, b, _) = self.current.take().expect("open");
                    // The pause's tail is the next segment's pre-roll: a soft onset right after
                    // a short pause is not lost.
                    let tail = self.quiet.min(PREROLL_WINDOWS);
                    self.preroll.clear();
                    for i in (1..=tail).rev() {
                        self.preroll.push_back(b[b.len() - i * WINDOW..b.len() - (i - 1) * WINDOW].to_vec());
                    }
                    self.quiet = 0;
                    Some(segment(s, b))
                } else if buf.len() >= self.max_samples {
                    Some(self.cut_at_quietest())
                } else {
                    None
                }
            }
        }
    }

    /// Closes the open segment (at its maximum length) after the quietest 90 ms of its last two
    /// seconds (of its second half at most), when that is clearly quieter than the rest of them;
    /// what follows stays open as the next segment. Sound with no such dip is cut at the end.
    fn cut_at_quietest(&mut self) -> AudioSegment {
        let (start, mut buf, mut levels) = self.current.take().expect("open");
        let n = levels.len();
        let from = n.saturating_sub(CUT_SEARCH_WINDOWS).max(n / 2).max(1);
        // Window i's level with its neighbours'; the cut goes after the quietest (the latest of
        // equals), when it is under half the stretch's mean.
        let around = |i: usize| levels[i - 1] + levels[i] + levels.get(i + 1).copied().unwrap_or(levels[i]);
        let mean = (from..n).map(around).sum::<f32>() / (n - from).max(1) as f32;
        let cut = (from..n)
            .rev()
            .min_by(|&a, &b| around(a).total_cmp(&around(b)))
            .filter(|&i| around(i) < 0.5 * mean)
            .map_or(n, |i| i + 1);
        let rest = buf.split_off(cut * WINDOW);
        let rest_levels = levels.split_off(cut);
        let closed = segment(start, buf);
        if !rest.is_empty() {
            self.quiet = 0;
            let mut next = Vec::with_capacity(self.max_samples);
            next.extend(rest);
            self.current = Some((start + (cut * WINDOW) as i64, next, rest_levels));
        }
        closed
    }
}

fn window_rms(w: &[f32]) -> f32 {
    (w.iter().map(|s| s * s).sum::<f32>() / w.len().max(1) as f32).sqrt()
}

fn segment(start: i64, samples: Vec<f32>) -> AudioSegment {
    let start_ms = start * 1000 / RATE;
    AudioSegment { start_ms, end_ms: start_ms + samples.len() as i64 * 1000 / RATE, samples }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(ms: usize) -> Vec<f32> {
        (0..ms * 16).map(|i| (i as f32 * 0.3).sin() * 0.3).collect()
    }

    #[test]
    fn segments_sound_between_silences_with_times() {
        let mut g = AudioSegmenter::new(0.01, 500, 3_000, 15_000);
        let mut signal = vec![0.0; 16 * 1000]; // 1 s silence
        signal.extend(tone(2000)); // 1.0..3.0 s
        signal.extend(vec![0.0; 16 * 1500]); // quiet
        signal.extend(tone(1000)); // 4.5..5.5 s
        signal.extend(vec![0.0; 16 * 1000]);
        // Feed in uneven buffers, as GStreamer does.
        let mut segs = Vec::new();
        let mut pos = 0usize;
        for chunk in signal.chunks(1234) {
            segs.extend(g.push(10_000 + (pos as i64 * 1000 / 16_000), chunk));
            pos += chunk.len();
        }
        assert_eq!(segs.len(), 2, "{:?}", segs.iter().map(|s| (s.start_ms, s.end_ms)).collect::<Vec<_>>());
        // Each starts up to 300 ms (pre-roll) before the sound and ends within the hangover after it.
        assert!((10_690..=11_000).contains(&segs[0].start_ms), "{}", segs[0].start_ms);
        assert!((13_000..=13_600).contains(&segs[0].end_ms), "{}", segs[0].end_ms);
        assert!((14_190..=14_500).contains(&segs[1].start_ms), "{}", segs[1].start_ms);
        assert_eq!(segs[0].samples.len() as i64, (segs[0].end_ms - segs[0].start_ms) * 16);
    }

    /// Speech-like sound: 150 ms syllables at 0.3 and 60 ms dips at 0.05, for `ms`.
    fn syllables(ms: usize) -> Vec<f32> {
        (0..ms * 16)
            .map(|i| {
                let a = if i % (210 * 16) < 150 * 16 { 0.3 } else { 0.05 };
                (i as f32 * 0.3).sin() * a
            })
            .collect()
    }

    /// Low-passed pseudo-random noise at about this RMS.
    fn noise(ms: usize, rms: f32, seed: u32) -> Vec<f32> {
        let mut x = seed | 1;
        let mut lp = 0f32;
        (0..ms * 16)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                lp += 0.5 * ((x as f32 / u32::MAX as f32) * 2.0 - 1.0 - lp);
                lp * rms * 3.0
            })
            .collect()
    }

    fn push_all(g: &mut AudioSegmenter, signal: &[f32]) -> Vec<AudioSegment> {
        let mut segs = Vec::new();
        for (i, chunk) in signal.chunks(1024).enumerate() {
            segs.extend(g.push(i as i64 * 64, chunk));
        }
        segs.extend(g.flush());
        segs
    }

    #[test]
    fn long_sound_is_cut_at_the_maximum() {
        let mut g = AudioSegmenter::new(0.01, 500, 2_000, 2_000);
        let segs = g.push(0, &syllables(5000));
        assert_eq!(segs.len(), 2);
        assert!(segs.iter().all(|s| s.samples.len() <= 2_000 * 16 + 480));
        assert_eq!(segs[1].start_ms, segs[0].end_ms);
        let rest = g.flush().unwrap();
        assert_eq!(rest.start_ms, segs[1].end_ms);
    }

    #[test]
    fn a_segment_at_the_maximum_is_cut_in_its_quietest_stretch() {
        // Continuous syllables with one 150 ms gap at 1.5 s (too short to end a segment).
        let mut signal = syllables(1500);
        signal.extend(vec![0.0; 150 * 16]);
        signal.extend(syllables(3000));
        let mut g = AudioSegmenter::new(0.01, 500, 2_000, 2_000);
        let segs = push_all(&mut g, &signal);
        assert!((1_500..=1_680).contains(&segs[0].end_ms), "cut at {} ms", segs[0].end_ms);
        assert_eq!(segs[1].start_ms, segs[0].end_ms, "nothing lost at the cut");
        let total: usize = segs.iter().map(|s| s.samples.len()).sum();
        assert_eq!(total, signal.len() / 480 * 480, "every window in exactly one segment");
    }

    #[test]
    fn continuous_speech_over_noise_is_cut_at_short_pauses() {
        // Phrases of 2.52 s with 300 ms pauses, all over noise 17 dB under the voice: the noise is
        // above the gate's level, so only the background-relative pause can end a segment.
        let mut signal = Vec::new();
        let mut pauses = Vec::new();
        for _ in 0..8 {
            signal.extend(syllables(2520));
            let at = (signal.len() / 16) as i64;
            pauses.push(at..at + 300);
            signal.extend(vec![0.0; 300 * 16]);
        }
        for (s, n) in signal.iter_mut().zip(noise(22_560, 0.03, 7)) {
            *s += n;
        }
        let mut g = AudioSegmenter::new(0.01, 500, 3_000, 15_000);
        let segs = push_all(&mut g, &signal);
        assert!(segs.len() >= 4, "{:?}", segs.iter().map(|s| (s.start_ms, s.end_ms)).collect::<Vec<_>>());
        for s in &segs[..segs.len() - 1] {
            assert!(s.end_ms - s.start_ms <= 6_000, "{} ms", s.end_ms - s.start_ms);
            assert!(
                pauses.iter().any(|p| p.contains(&s.end_ms)),
                "segment ends at {} ms, not in a pause",
                s.end_ms
            );
        }
    }

    #[test]
    fn steady_noise_alone_opens_no_segment_after_the_first_second() {
        let mut g = AudioSegmenter::new(0.01, 500, 3_000, 15_000);
        let segs = push_all(&mut g, &noise(10_000, 0.03, 3));
        assert!(
            segs.iter().all(|s| s.start_ms < 1_000 && s.end_ms < 2_500),
            "{:?}",
            segs.iter().map(|s| (s.start_ms, s.end_ms)).collect::<Vec<_>>()
        );
        // A voice that starts over it later is heard.
        let mut signal = noise(10_000, 0.03, 3);
        signal[6_000 * 16..8_000 * 16].iter_mut().zip(syllables(2_000)).for_each(|(s, v)| *s += v);
        let mut g = AudioSegmenter::new(0.01, 500, 3_000, 15_000);
        let segs = push_all(&mut g, &signal);
        let voice = segs.iter().find(|s| s.start_ms >= 2_500).expect("the voice opens a segment");
        assert!(
            (5_600..=6_050).contains(&voice.start_ms) && voice.end_ms >= 8_000,
            "{:?}",
            (voice.start_ms, voice.end_ms)
        );
    }
}
