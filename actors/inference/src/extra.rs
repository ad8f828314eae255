//! Optional work a processor does only while a batch has room for it (speech: Whisper judging
//! re-heard English, copies heard at an utterance's own pace): what each kind did, per batch.

use std::time::Duration;

/// Optional work that stops short at the batch's room ([`crate::Processor::extra_work`]): items done,
/// items left for want of time, and the time the done ones took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtraWork {
    pub done: u64,
    pub no_room: u64,
    pub spent: Duration,
}

impl ExtraWork {
    /// What was done between `before` and `self` (both totals).
    pub fn since(self, before: ExtraWork) -> ExtraWork {
        ExtraWork {
            done: self.done.saturating_sub(before.done),
            no_room: self.no_room.saturating_sub(before.no_room),
            spent: self.spent.saturating_sub(before.spent),
        }
    }

    /// Both together.
    pub fn plus(self, other: ExtraWork) -> ExtraWork {
        ExtraWork {
            done: self.done + other.done,
            no_room: self.no_room + other.no_room,
            spent: self.spent + other.spent,
        }
    }
}

/// A processor's optional work by kind ([`crate::Processor::extra_work`]): each kind's name (the
/// `work` label of `sightline_extra_work_total`) and its totals.
pub type ExtraParts = Vec<(&'static str, ExtraWork)>;

/// What each kind of `now` did since `before` (both totals; a kind missing before counts from 0).
pub fn extra_since(now: &ExtraParts, before: &ExtraParts) -> ExtraParts {
    now.iter()
        .map(|&(kind, w)| {
            let was = before.iter().find(|(k, _)| *k == kind).map_or(ExtraWork::default(), |p| p.1);
            (kind, w.since(was))
        })
        .collect()
}
