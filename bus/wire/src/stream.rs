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
