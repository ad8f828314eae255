//! The vocabulary of a stream's lifecycle, shared by ingest (which drives it), the registry (which
//! stores it), the gateway (which shows it) and the metrics (which label by it).

use serde::{Deserialize, Serialize};

/// A stream's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    /// Pipeline starting, no media yet.
    Starting,
    /// Media flowing, nothing dropped.
    Running,
    /// Media flowing, but work is being dropped to keep lag bounded.
    Degraded,
    /// The source failed; a restart is scheduled with backoff.
    Reconnecting,
    /// Gave up after the configured number of retries.
    Failed,
    /// Ended (a finite source reached its end, or the stream was stopped).
    Stopped,
    /// Paused by a user; resumes on request.
    Paused,
}

impl StreamState {
    /// Every state, in lifecycle order (metric labels, the API's documentation).
    pub const ALL: [StreamState; 7] = [
        StreamState::Starting,
        StreamState::Running,
        StreamState::Degraded,
        StreamState::Reconnecting,
        StreamState::Failed,
        StreamState::Stopped,
        StreamState::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Starting => "starting",
            StreamState::Running => "running",
            StreamState::Degraded => "degraded",
            StreamState::Reconnecting => "reconnecting",
            StreamState::Failed => "failed",
            StreamState::Stopped => "stopped",
            StreamState::Paused => "paused",
        }
    }
}

/// Why a pool shed a work item instead of running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShedReason {
    /// The pool is behind its lag target and the item is one its policy gives up first (a frame
    /// that carries no cut).
    Lag,
    /// The item is older than the pool's `max_lag_ms` (or would be by the time its batch is done):
    /// whatever it is, its result would be too late.
    TooLate,
    /// Not shed but run coarser: the pool is behind its lag target and runs the item with less
    /// effort (speech: greedy decoding instead of the beam search).
    Coarse,
}

impl ShedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::Lag => "lag",
            ShedReason::TooLate => "too_late",
            ShedReason::Coarse => "coarse",
        }
    }
}

/// Work of one stream that a pool has finished with (answered, shed or dead-lettered), by its
/// sequence in its JetStream stream; sent after each batch to the stream's ingest node (core NATS,
/// `<p>.settled.<stream>`), which counts the stream's own backlog exactly from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettledNotice {
    pub pool: String,
    pub seqs: Vec<u64>,
}

/// What a pool shed of one stream's work in one batch, sent to the stream's ingest node (core NATS,
/// `<p>.shed.<stream>`), which shows the stream `degraded` with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShedNotice {
    pub pool: String,
    pub reason: ShedReason,
    pub count: u64,
    /// Age of the oldest item the pool saw in that batch, ms.
    pub lag_ms: i64,
    /// The pool's lag target, ms.
    pub target_ms: i64,
}

impl ShedNotice {
    /// One line for the stream's status.
    pub fn describe(&self) -> String {
        let secs = |ms: i64| ms as f64 / 1000.0;
        match self.reason {
            ShedReason::Lag => format!(
                "{} is {:.1} s behind (target {:.1} s): {} item(s) without a cut shed",
                self.pool,
                secs(self.lag_ms),
                secs(self.target_ms),
                self.count
            ),
            ShedReason::TooLate => format!(
                "{} is {:.1} s behind: {} item(s) past the lag limit shed",
                self.pool,
                secs(self.lag_ms),
                self.count
            ),
            ShedReason::Coarse => format!(
                "{} is {:.1} s behind (target {:.1} s): {} item(s) run coarser to catch up",
                self.pool,
                secs(self.lag_ms),
                secs(self.target_ms),
                self.count
            ),
        }
    }
}

/// Why a pipeline was restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryReason {
    Error,
    Eos,
    Stall,
    StateChange,
    /// The source broke the source policy or a limit (an internal address, a playlist over its
    /// bounds, a resolution over the maximum): the stream fails with the reason, no retry.
    Refused,
}

impl RetryReason {
    pub const ALL: [RetryReason; 5] = [
        RetryReason::Error,
        RetryReason::Eos,
        RetryReason::Stall,
        RetryReason::StateChange,
        RetryReason::Refused,
    ];

    /// The metric label and API value.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::Error => "error",
            RetryReason::Eos => "eos",
            RetryReason::Stall => "stall",
            RetryReason::StateChange => "state_change",
            RetryReason::Refused => "refused",
        }
    }
}
