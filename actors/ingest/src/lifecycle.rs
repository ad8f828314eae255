//! A stream's lifecycle as a pure state machine: what a (re)start, the pipeline's end and each
//! second's media counters do to the stream's state, retry count and errors. The `StreamActor`
//! only carries out what it decides (tear down, schedule a restart, report a stall), so every
//! transition is tested here without GStreamer, NATS or a clock.

use sightline_bus::{RetryReason, StreamState, StreamStatus};
use sightline_settings::IngestConfig;

/// Quiet seconds (media flowing, nothing dropped, full rate) before `degraded` clears.
const QUIET_TICKS_TO_RECOVER: u32 = 5;

/// What the actor does after the pipeline ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterEnd {
    /// A finite source reached its end: the stream is `stopped`.
    Stopped,
    /// Out of retries: the stream is `failed`.
    Failed { retries: u32 },
    /// Restart after the backoff delay of try `attempt` (1 for the first retry of an outage).
    Retry { attempt: u32 },
}

/// One second of a running pipeline, as the actor measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Second {
    /// Frames decoded or audio segmented since the last tick.
    pub flowing: bool,
    /// Frames dropped since the last tick (a full queue, shed by a reduced rate).
    pub dropped: bool,
    /// Backpressure holds the sampling rate below the configured one.
    pub reduced: bool,
    /// Milliseconds since the last media arrived.
    pub idle_ms: i64,
}

/// The lifecycle's own memory beside the published status.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    /// The stream's id, for the log of its transitions.
    stream: String,
    live: bool,
    max_retries: u32,
    stall_ms: i64,
    /// Consecutive failed attempts (reset once media flows).
    attempt: u32,
    /// Seconds since the last drop (leaves `degraded` after a quiet spell).
    quiet_ticks: u32,
}

impl Lifecycle {
    pub fn new(stream: &str, cfg: &IngestConfig, live: bool) -> Self {
        Self {
            stream: stream.to_string(),
            live,
            max_retries: cfg.max_retries,
            stall_ms: cfg.stall_timeout_s as i64 * 1000,
            attempt: 0,
            quiet_ticks: 0,
        }
    }

    fn set_state(&self, status: &mut StreamStatus, state: StreamState, now_ms: i64) {
        if status.state != state {
            tracing::info!(stream = %self.stream, from = ?status.state, to = ?state, "stream state");
            status.state = state;
            status.since_ms = now_ms;
        }
    }

    /// Failed attempts in the current outage.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The pipeline is (re)starting.
    pub fn starting(&mut self, status: &mut StreamStatus, now_ms: i64) {
        self.set_state(status, StreamState::Starting, now_ms);
    }

    /// The pipeline ended for `reason`.
    pub fn ended(
        &mut self,
        status: &mut StreamStatus,
        reason: RetryReason,
        detail: &str,
        now_ms: i64,
    ) -> AfterEnd {
        if reason == RetryReason::Eos && !self.live {
            self.set_state(status, StreamState::Stopped, now_ms);
            status.last_error = None;
            return AfterEnd::Stopped;
        }
        self.attempt += 1;
        status.last_error = Some(detail.to_string());
        status.last_retry_reason = Some(reason);
        if reason == RetryReason::Refused {
            self.set_state(status, StreamState::Failed, now_ms);
            return AfterEnd::Failed { retries: self.attempt - 1 };
        }
        if self.max_retries > 0 && self.attempt > self.max_retries {
            self.set_state(status, StreamState::Failed, now_ms);
            return AfterEnd::Failed { retries: self.max_retries };
        }
        // One outage, however many attempts it takes.
        if self.attempt == 1 {
            status.reconnects += 1;
        }
        status.retry_attempt = self.attempt;
        self.set_state(status, StreamState::Reconnecting, now_ms);
        AfterEnd::Retry { attempt: self.attempt }
    }

    /// A second of a running pipeline. Returns the reason when the stream stalled (the actor ends
    /// the pipeline with [`RetryReason::Stall`]).
    pub fn tick(&mut self, status: &mut StreamStatus, s: Second, now_ms: i64) -> Option<String> {
        if s.idle_ms > self.stall_ms {
            return Some(format!("no media for {} s", s.idle_ms / 1000));
        }
        if s.dropped || s.reduced {
            self.quiet_ticks = 0;
            self.set_state(status, StreamState::Degraded, now_ms);
        } else if s.flowing {
            self.attempt = 0;
            status.retry_attempt = 0;
            self.quiet_ticks += 1;
            let recovered =
                status.state == StreamState::Degraded && self.quiet_ticks >= QUIET_TICKS_TO_RECOVER;
            if status.state == StreamState::Starting || recovered {
                self.set_state(status, StreamState::Running, now_ms);
                status.last_error = None;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_retries: u32) -> IngestConfig {
        IngestConfig { max_retries, stall_timeout_s: 10, ..Default::default() }
    }

    const FLOWING: Second = Second { flowing: true, dropped: false, reduced: false, idle_ms: 0 };

    fn running(life: &mut Lifecycle) -> StreamStatus {
        let mut st = StreamStatus::new(0);
        life.starting(&mut st, 0);
        life.tick(&mut st, FLOWING, 1);
        assert_eq!(st.state, StreamState::Running);
        st
    }

    #[test]
    fn media_takes_a_starting_stream_to_running_and_clears_the_error() {
        let mut life = Lifecycle::new("s", &cfg(0), true);
        let mut st = StreamStatus::new(0);
        st.last_error = Some("old".into());
        life.starting(&mut st, 5);
        assert_eq!((st.state, st.since_ms), (StreamState::Starting, 0), "same state keeps its since");
        // No media yet: still starting.
        assert_eq!(life.tick(&mut st, Second::default(), 10), None);
        assert_eq!(st.state, StreamState::Starting);
        assert_eq!(life.tick(&mut st, FLOWING, 20), None);
        assert_eq!((st.state, st.since_ms, st.last_error.clone()), (StreamState::Running, 20, None));
    }

    #[test]
    fn a_finite_source_that_ends_is_stopped() {
        let mut life = Lifecycle::new("s", &cfg(3), false);
        let mut st = running(&mut life);
        st.last_error = Some("x".into());
        assert_eq!(life.ended(&mut st, RetryReason::Eos, "end of stream", 9), AfterEnd::Stopped);
        assert_eq!((st.state, st.last_error.clone()), (StreamState::Stopped, None));
        assert_eq!(st.reconnects, 0);
    }

    #[test]
    fn a_live_source_that_ends_reconnects() {
        let mut life = Lifecycle::new("s", &cfg(3), true);
        let mut st = running(&mut life);
        assert_eq!(life.ended(&mut st, RetryReason::Eos, "end of stream", 9), AfterEnd::Retry { attempt: 1 });
        assert_eq!(st.state, StreamState::Reconnecting);
        assert_eq!(st.last_retry_reason, Some(RetryReason::Eos));
    }

    #[test]
    fn one_outage_counts_once_however_many_attempts_it_takes() {
        let mut life = Lifecycle::new("s", &cfg(0), true);
        let mut st = running(&mut life);
        for attempt in 1..=4 {
            let after = life.ended(&mut st, RetryReason::Error, "refused", attempt as i64);
            assert_eq!(after, AfterEnd::Retry { attempt });
            assert_eq!(st.retry_attempt, attempt);
            life.starting(&mut st, 100);
        }
        assert_eq!(st.reconnects, 1);
        assert_eq!(st.last_error.as_deref(), Some("refused"));
        // Media flows again: the outage is over, the next failure is a new one.
        life.tick(&mut st, FLOWING, 200);
        assert_eq!((st.state, st.retry_attempt, life.attempt()), (StreamState::Running, 0, 0));
        assert_eq!(life.ended(&mut st, RetryReason::Stall, "no media", 300), AfterEnd::Retry { attempt: 1 });
        assert_eq!(st.reconnects, 2);
    }

    #[test]
    fn retries_run_out_into_failed() {
        let mut life = Lifecycle::new("s", &cfg(2), true);
        let mut st = StreamStatus::new(0);
        assert_eq!(life.ended(&mut st, RetryReason::StateChange, "bad", 1), AfterEnd::Retry { attempt: 1 });
        assert_eq!(life.ended(&mut st, RetryReason::Error, "bad", 2), AfterEnd::Retry { attempt: 2 });
        assert_eq!(life.ended(&mut st, RetryReason::Error, "worse", 3), AfterEnd::Failed { retries: 2 });
        assert_eq!((st.state, st.last_error.as_deref()), (StreamState::Failed, Some("worse")));
    }

    #[test]
    fn a_refused_source_fails_at_once_even_with_retries_left() {
        let mut life = Lifecycle::new("s", &cfg(0), true);
        let mut st = StreamStatus::new(0);
        let why = "segment host resolves to 127.0.0.2";
        assert_eq!(life.ended(&mut st, RetryReason::Refused, why, 1), AfterEnd::Failed { retries: 0 });
        assert_eq!((st.state, st.last_error.as_deref()), (StreamState::Failed, Some(why)));
        assert_eq!(st.last_retry_reason, Some(RetryReason::Refused));
    }

    #[test]
    fn silence_past_the_stall_timeout_is_a_stall() {
        let mut life = Lifecycle::new("s", &cfg(0), true);
        let mut st = running(&mut life);
        assert_eq!(life.tick(&mut st, Second { idle_ms: 10_000, ..Second::default() }, 5), None);
        let stalled = life.tick(&mut st, Second { idle_ms: 12_500, ..Second::default() }, 6);
        assert_eq!(stalled.as_deref(), Some("no media for 12 s"));
        assert_eq!(st.state, StreamState::Running, "the actor ends the pipeline; the state follows that");
    }

    #[test]
    fn drops_or_a_reduced_rate_degrade_until_five_quiet_seconds() {
        let mut life = Lifecycle::new("s", &cfg(0), true);
        let mut st = running(&mut life);
        life.tick(&mut st, Second { dropped: true, ..FLOWING }, 10);
        assert_eq!((st.state, st.since_ms), (StreamState::Degraded, 10));
        for t in 11..15 {
            life.tick(&mut st, FLOWING, t);
            assert_eq!(st.state, StreamState::Degraded, "second {t}");
        }
        // A reduced rate restarts the quiet spell.
        life.tick(&mut st, Second { reduced: true, ..FLOWING }, 15);
        for t in 16..20 {
            life.tick(&mut st, FLOWING, t);
        }
        assert_eq!(st.state, StreamState::Degraded);
        life.tick(&mut st, FLOWING, 20);
        assert_eq!((st.state, st.since_ms), (StreamState::Running, 20));
    }

    #[test]
    fn a_quiet_second_without_media_changes_nothing() {
        let mut life = Lifecycle::new("s", &cfg(0), true);
        let mut st = running(&mut life);
        life.ended(&mut st, RetryReason::Error, "x", 2);
        life.starting(&mut st, 3);
        life.tick(&mut st, Second::default(), 4);
        assert_eq!((st.state, life.attempt()), (StreamState::Starting, 1));
    }
}
