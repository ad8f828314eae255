//! Adaptive sampling under load. The stream actor reads how many of its sampled frames wait
//! unprocessed (its backlog on the shared inference consumer) once a second; above the high
//! watermark the sampling rate halves (down to a floor), and once the backlog has stayed at or
//! below the low watermark for a few seconds it doubles again, back up to the configured rate.
//! Frames not sampled because of a reduced rate are counted as shed.

/// Sampling rate as a fraction of frames per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub num: u32,
    pub den: u32,
}

impl Rate {
    pub fn fps(self) -> f32 {
        self.num as f32 / self.den as f32
    }
}

#[derive(Debug, Clone)]
pub struct Backpressure {
    full: u32,
    /// 0 = the configured rate; each level halves it.
    level: u32,
    max_level: u32,
    high: u64,
    low: u64,
    recover_ticks: u32,
    calm: u32,
    since_change: u32,
}

impl Backpressure {
    /// `fps`: configured rate; `max_level`: how many halvings at most; watermarks in frames.
    pub fn new(fps: u32, max_level: u32, high: u64, low: u64, recover_ticks: u32) -> Self {
        Self { full: fps, level: 0, max_level, high, low, recover_ticks, calm: 0, since_change: u32::MAX }
    }

    pub fn rate(&self) -> Rate {
        Rate { num: self.full, den: 1 << self.level }
    }

    /// Whether sampling is reduced.
    pub fn reduced(&self) -> bool {
        self.level > 0
    }

    /// Frames per second not sampled because of the reduction.
    pub fn shed_fps(&self) -> f32 {
        self.full as f32 - self.rate().fps()
    }

    /// One observation per tick; returns the new rate when it changed.
    pub fn observe(&mut self, backlog: u64) -> Option<Rate> {
        self.since_change = self.since_change.saturating_add(1);
        if backlog > self.high {
            self.calm = 0;
            // Give a change two ticks to take effect before the next step down.
            if self.level < self.max_level && self.since_change >= 2 {
                self.level += 1;
                self.since_change = 0;
                return Some(self.rate());
            }
        } else if backlog <= self.low {
            self.calm += 1;
            if self.level > 0 && self.calm >= self.recover_ticks {
                self.level -= 1;
                self.calm = 0;
                self.since_change = 0;
                return Some(self.rate());
            }
        } else {
            self.calm = 0;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_down_under_lag_and_back_up_when_calm() {
        let mut b = Backpressure::new(2, 3, 8, 1, 3);
        assert_eq!(b.rate(), Rate { num: 2, den: 1 });
        assert_eq!(b.observe(3), None);
        assert_eq!(b.observe(20), Some(Rate { num: 2, den: 2 }));
        assert_eq!(b.observe(20), None, "waits before the next step");
        assert_eq!(b.observe(20), Some(Rate { num: 2, den: 4 }));
        b.observe(20);
        assert_eq!(b.observe(20), Some(Rate { num: 2, den: 8 }));
        b.observe(50);
        assert_eq!(b.observe(50), None, "floor reached");
        assert!(b.reduced());
        assert!((b.shed_fps() - 1.75).abs() < 1e-6);
        // Calm for three ticks per step back up.
        assert_eq!(b.observe(0), None);
        assert_eq!(b.observe(5), None, "not calm: counting restarts");
        assert_eq!(b.observe(0), None);
        assert_eq!(b.observe(1), None);
        assert_eq!(b.observe(0), Some(Rate { num: 2, den: 4 }));
        for _ in 0..2 {
            b.observe(0);
        }
        assert_eq!(b.observe(0), Some(Rate { num: 2, den: 2 }));
        for _ in 0..2 {
            b.observe(0);
        }
        assert_eq!(b.observe(0), Some(Rate { num: 2, den: 1 }));
        assert!(!b.reduced());
        assert_eq!(b.shed_fps(), 0.0);
    }
}
