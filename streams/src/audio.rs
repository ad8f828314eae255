//! Splits a continuous 16 kHz mono signal into segments of sound between silences (a cheap energy
//! gate; the speech actor's VAD decides what is speech). Segments are bounded in length, so a
//! stream that never falls silent still yields work at a steady pace and memory stays bounded.

use std::collections::VecDeque;

const RATE: i64 = 16_000;
const WINDOW: usize = 480; // 30 ms
const PREROLL_WINDOWS: usize = 10; // 300 ms kept before the gate opens

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
    max_samples: usize,
    /// Media time of the next sample that will be pushed, in samples.
    clock: Option<i64>,
    pending: Vec<f32>,
    preroll: VecDeque<Vec<f32>>,
    current: Option<(i64, Vec<f32>)>,
    quiet: usize,
}

impl AudioSegmenter {
    pub fn new(level: f32, hangover_ms: u64, max_segment_ms: u64) -> Self {
        Self {
            level,
            hangover_windows: (hangover_ms as usize).div_ceil(30).max(1),
            max_samples: (max_segment_ms as usize * RATE as usize / 1000).max(WINDOW),
            clock: None,
            pending: Vec::with_capacity(WINDOW),
            preroll: VecDeque::with_capacity(PREROLL_WINDOWS),
            current: None,
            quiet: 0,
        }
    }

    /// Pushes samples starting at `pts_ms`; returns the segments that closed.
    pub fn push(&mut self, pts_ms: i64, samples: &[f32]) -> Vec<AudioSegment> {
        let at = pts_ms * RATE / 1000;
        let expected = self.clock.map(|c| c + self.pending.len() as i64);
        // A jump in timestamps (reconnect, lost buffers) closes what was open.
        let mut out = Vec::new();
        if let Some(e) = expected {
            if (at - e).abs() > RATE / 10 {
                out.extend(self.flush());
            }
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
        self.clock = None;
        self.quiet = 0;
        self.current.take().map(|(start, s)| segment(start, s))
    }

    fn window(&mut self, start: i64, w: Vec<f32>) -> Option<AudioSegment> {
        let rms = (w.iter().map(|s| s * s).sum::<f32>() / w.len() as f32).sqrt();
        let loud = rms >= self.level;
        match &mut self.current {
            None if loud => {
                let pre: Vec<f32> = self.preroll.drain(..).flatten().collect();
                let seg_start = start - pre.len() as i64;
                let mut buf = Vec::with_capacity(self.max_samples);
                buf.extend(pre);
                buf.extend(w);
                self.current = Some((seg_start, buf));
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
            Some((seg_start, buf)) => {
                buf.extend(w);
                self.quiet = if loud { 0 } else { self.quiet + 1 };
                if self.quiet >= self.hangover_windows || buf.len() >= self.max_samples {
                    let (s, b) = (*seg_start, std::mem::take(buf));
                    self.current = None;
                    self.quiet = 0;
                    Some(segment(s, b))
                } else {
                    None
                }
            }
        }
    }
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
        let mut g = AudioSegmenter::new(0.01, 500, 15_000);
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

    #[test]
    fn long_sound_is_cut_at_the_maximum() {
        let mut g = AudioSegmenter::new(0.01, 500, 2_000);
        let segs = g.push(0, &tone(5000));
        assert_eq!(segs.len(), 2);
        assert!(segs.iter().all(|s| s.samples.len() <= 2_000 * 16 + 480));
        assert_eq!(segs[1].start_ms, segs[0].end_ms);
        let rest = g.flush().unwrap();
        assert_eq!(rest.start_ms, segs[1].end_ms);
    }
}
