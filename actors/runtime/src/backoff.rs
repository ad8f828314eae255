//! Exponential backoff, the one used for every retry in Sightline: restarts of streams and
//! actors, naks of failed work, sinks waiting for a store.

use std::time::Duration;

/// `initial × 2^(attempt-1)`, capped at `max`, optionally spread by ± `jitter` (a fraction) so
/// that many clients retrying at once do not retry in step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// Fraction of the delay added or removed at random (0: deterministic).
    pub jitter: f32,
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, jitter: 0.0 }
    }

    pub const fn with_jitter(mut self, jitter: f32) -> Self {
        self.jitter = jitter;
        self
    }

    /// The delay before retry number `attempt` (1 for the first retry; 0 is treated as 1),
    /// without jitter.
    pub fn base(&self, attempt: u32) -> Duration {
        let doublings = attempt.max(1) - 1;
        // Past 2^20 the cap always wins; stop shifting before the multiplication overflows.
        let factor = 1u32 << doublings.min(20);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry number `attempt`, with jitter applied (never above `max`).
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.base(attempt);
        if self.jitter <= 0.0 {
            return base;
        }
        let spread = 1.0 + self.jitter as f64 * (fastrand::f64() * 2.0 - 1.0);
        base.mul_f64(spread.max(0.0)).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_from_initial_and_stops_at_the_cap() {
        let b = Backoff::new(MS(200), MS(1500));
        let got: Vec<u64> = (0..6).map(|a| b.base(a).as_millis() as u64).collect();
        assert_eq!(got, [200, 200, 400, 800, 1500, 1500]);
    }

    #[test]
    fn huge_attempts_do_not_overflow() {
        let b = Backoff::new(MS(250), Duration::from_secs(30));
        assert_eq!(b.base(u32::MAX), Duration::from_secs(30));
        assert_eq!(b.delay(10_000), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_the_cap() {
        let b = Backoff::new(MS(1000), MS(10_000)).with_jitter(0.2);
        for _ in 0..200 {
            let d = b.delay(2).as_millis();
            assert!((1600..=2400).contains(&d), "{d}");
            assert!(b.delay(9) <= MS(10_000));
        }
    }
}
