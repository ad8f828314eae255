//! When a pool's work goes to its fallback model (the registry entry's `fallback`): a pure routing
//! decision, and typed reasons that are the `reason` label of `sightline_model_fallbacks_total`.

use sightline_settings::ModelSpec;
use std::time::Duration;

/// When work goes to the fallback model. The fallback also takes over when the primary fails to
/// load, and retries any item the primary failed on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FallbackPolicy {
    /// Work waiting above this sends batches to the fallback (0: never).
    pub queue_threshold: u64,
    /// A primary batch running longer than this hands the pool to the fallback for `cooldown`.
    pub timeout: Option<Duration>,
    pub cooldown: Duration,
}

/// Why work went to the fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    /// The primary model failed to load.
    Unavailable,
    /// The primary timed out recently; the fallback serves until the cooldown ends.
    CoolingDown,
    /// More work waits than the queue threshold.
    Queue,
    /// The primary ran past its time limit on this batch.
    Timeout,
    /// The primary failed on these items.
    Error,
}

impl FallbackReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Unavailable => "unavailable",
            FallbackReason::CoolingDown => "cooling_down",
            FallbackReason::Queue => "queue",
            FallbackReason::Timeout => "timeout",
            FallbackReason::Error => "error",
        }
    }
}

/// Which model runs a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Primary,
    Fallback(FallbackReason),
}

impl FallbackPolicy {
    pub fn of(spec: &ModelSpec) -> Self {
        Self {
            queue_threshold: spec.queue_threshold,
            timeout: (spec.timeout_ms > 0).then(|| Duration::from_millis(spec.timeout_ms)),
            cooldown: Duration::from_secs(spec.fallback_cooldown_s),
        }
    }

    /// Whether the queue needs looking at for this decision.
    pub fn watches_queue(&self) -> bool {
        self.queue_threshold > 0
    }

    /// The model for the next batch: the fallback while the primary is missing or cooling down,
    /// or while more than `queue_threshold` items wait (`waiting`, when known); else the primary.
    pub fn route(&self, primary_loaded: bool, cooling_down: bool, waiting: Option<u64>) -> Route {
        if !primary_loaded {
            Route::Fallback(FallbackReason::Unavailable)
        } else if cooling_down {
            Route::Fallback(FallbackReason::CoolingDown)
        } else if self.watches_queue() && waiting.is_some_and(|w| w > self.queue_threshold) {
            Route::Fallback(FallbackReason::Queue)
        } else {
            Route::Primary
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: FallbackPolicy =
        FallbackPolicy { queue_threshold: 10, timeout: None, cooldown: Duration::from_secs(30) };

    #[test]
    fn the_primary_serves_a_short_queue() {
        assert_eq!(POLICY.route(true, false, Some(10)), Route::Primary);
        assert_eq!(POLICY.route(true, false, None), Route::Primary);
    }

    #[test]
    fn a_long_queue_goes_to_the_fallback() {
        assert_eq!(POLICY.route(true, false, Some(11)), Route::Fallback(FallbackReason::Queue));
        let never = FallbackPolicy { queue_threshold: 0, ..POLICY };
        assert_eq!(never.route(true, false, Some(1_000_000)), Route::Primary);
        assert!(!never.watches_queue());
    }

    #[test]
    fn a_missing_primary_wins_over_every_other_reason() {
        assert_eq!(POLICY.route(false, true, Some(99)), Route::Fallback(FallbackReason::Unavailable));
    }

    #[test]
    fn cooling_down_after_a_timeout_uses_the_fallback() {
        assert_eq!(POLICY.route(true, true, Some(0)), Route::Fallback(FallbackReason::CoolingDown));
    }

    #[test]
    fn reasons_are_distinct_metric_labels() {
        use FallbackReason::*;
        let all = [Unavailable, CoolingDown, Queue, Timeout, Error].map(FallbackReason::as_str);
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
    }
}
