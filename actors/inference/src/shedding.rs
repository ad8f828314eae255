//! What a pool gives up to keep its lag bounded ([`shed_decision`]), and what it tells the
//! streams' ingest nodes it finished with after each batch ([`Settled`]).

use async_nats::jetstream::Message;
use sightline_bus::Bus;
use sightline_wire::{SettledNotice, ShedReason, WorkHeader};
use std::time::Duration;

/// Batches whose durations bound how long the next one may take (see [`shed_decision`]).
pub(crate) const RECENT_BATCHES: usize = 8;

/// How long the last few batches took and how many items each ran: what the next batch may take.
#[derive(Debug, Default)]
pub(crate) struct RecentBatches(std::collections::VecDeque<(i64, usize)>);

impl RecentBatches {
    pub(crate) fn record(&mut self, ms: i64, items: usize) {
        if self.0.len() == RECENT_BATCHES {
            self.0.pop_front();
        }
        self.0.push_back((ms.max(0), items.max(1)));
    }

    /// What a batch of `items` may take, ms: the longest recent batch, or the slowest recent
    /// time per item times `items` when that is longer (a batch larger than the recent ones takes
    /// longer than any of them; batching makes the per-item time a bound from above).
    pub(crate) fn expected_ms(&self, items: usize) -> i64 {
        let longest = self.0.iter().map(|&(ms, _)| ms).max().unwrap_or(0);
        let per_item = self.0.iter().map(|&(ms, n)| ms / n as i64).max().unwrap_or(0);
        longest.max(per_item * items.max(1) as i64)
    }
}

/// What to do with one item of a batch, by its age, how long the batch may take (`run_ms`:
/// [`RecentBatches::expected_ms`]) and the pool's lag settings: past the hard limit by the time it
/// would be done, any item is shed; behind the target, the items the pool's policy gives up first.
/// The hard limit is `max_lag` less a tenth, left for what comes after the model (publishing,
/// sinks, the feed) and, for speech, the silence that closes a segment after its last word, so
/// what reaches the feed stays within `max_lag` of its media.
pub fn shed_decision(
    age_ms: i64,
    run_ms: i64,
    sheddable: bool,
    lag_target: Option<Duration>,
    max_lag: Option<Duration>,
) -> Option<ShedReason> {
    let over = |age: i64, d: Option<Duration>| d.is_some_and(|d| age > d.as_millis() as i64);
    if over(age_ms + run_ms.max(0), max_lag.map(|d| d.mul_f64(0.9))) {
        Some(ShedReason::TooLate)
    } else if sheddable && over(age_ms, lag_target) {
        Some(ShedReason::Lag)
    } else {
        None
    }
}

/// When JetStream stored `msg` (Unix ms, the server's clock); `or` when it does not say.
pub(crate) fn published_ms(msg: &Message, or: i64) -> i64 {
    msg.info().map(|i| (i.published.unix_timestamp_nanos() / 1_000_000) as i64).unwrap_or(or)
}

/// Per stream, the sequences of the messages a batch finished with (answered, shed or
/// dead-lettered): sent to the streams' ingest nodes after the batch ([`SettledNotice`]).
#[derive(Default)]
pub(crate) struct Settled(std::collections::BTreeMap<String, Vec<u64>>);

impl Settled {
    pub(crate) fn add(&mut self, msg: &Message) {
        let (Some(h), Ok(info)) = (WorkHeader::read(&msg.payload), msg.info()) else { return };
        self.0.entry(h.stream_id).or_default().push(info.stream_sequence);
    }

    pub(crate) async fn send(self, bus: &Bus, pool: &str) {
        for (stream, seqs) in self.0 {
            let payload =
                serde_json::to_vec(&SettledNotice { pool: pool.into(), seqs }).expect("notice serialises");
            if let Err(e) = bus.client.publish(bus.names.settled_subject(&stream), payload.into()).await {
                tracing::debug!(error = %e, "cannot send a settled notice");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shedding_keeps_what_matters_until_the_hard_limit() {
        let (target, max) = (Some(Duration::from_secs(2)), Some(Duration::from_secs(10)));
        assert_eq!(shed_decision(1_500, 0, true, target, max), None, "within the target");
        assert_eq!(shed_decision(2_500, 0, true, target, max), Some(ShedReason::Lag));
        assert_eq!(shed_decision(2_500, 0, false, target, max), None, "a keyframe is kept while behind");
        assert_eq!(shed_decision(10_500, 0, false, target, max), Some(ShedReason::TooLate));
        // A tenth of the limit is left for publishing and the feed: 9.5 s old is too late.
        assert_eq!(shed_decision(9_500, 0, false, target, max), Some(ShedReason::TooLate));
        assert_eq!(shed_decision(8_900, 0, false, target, max), None);
        assert_eq!(shed_decision(60_000, 0, true, None, None), None, "no bounds, no shedding");
        // A batch takes 3 s: an item 7 s old would be done 10 s late, past the 9 s hard limit.
        assert_eq!(shed_decision(7_000, 3_000, false, target, max), Some(ShedReason::TooLate));
        assert_eq!(shed_decision(5_500, 3_000, false, target, max), None);
    }

    #[test]
    fn a_batch_larger_than_the_recent_ones_is_expected_to_take_longer() {
        let mut recent = RecentBatches::default();
        assert_eq!(recent.expected_ms(4), 0, "nothing ran yet");
        recent.record(2_000, 1);
        recent.record(2_400, 2);
        assert_eq!(recent.expected_ms(1), 2_400, "the longest recent batch");
        assert_eq!(recent.expected_ms(2), 4_000, "two items at the slowest 2 s an item");
        assert_eq!(recent.expected_ms(4), 8_000);
        // Only the last eight count: a slow batch long ago no longer does.
        recent.record(9_000, 1);
        for _ in 0..RECENT_BATCHES {
            recent.record(500, 1);
        }
        assert_eq!(recent.expected_ms(1), 500);
        assert_eq!(recent.expected_ms(3), 1_500);
        // An item 6 s old in a batch of three after 2 s items would be done at 12 s: too late.
        let (target, max) = (Some(Duration::from_secs(3)), Some(Duration::from_secs(10)));
        let mut slow = RecentBatches::default();
        slow.record(2_000, 1);
        assert_eq!(shed_decision(6_000, slow.expected_ms(1), false, target, max), None);
        assert_eq!(shed_decision(6_000, slow.expected_ms(3), false, target, max), Some(ShedReason::TooLate));
    }
}
