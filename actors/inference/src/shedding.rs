//! What a pool gives up to keep its lag bounded ([`shed_decision`]), and what it tells the
//! streams' ingest nodes it finished with after each batch ([`Settled`]).

use async_nats::jetstream::Message;
use sightline_bus::Bus;
use sightline_wire::{SettledNotice, ShedReason, WorkHeader};
use std::time::{Duration, Instant};

/// Batches whose durations bound how long the next one may take (see [`shed_decision`]).
pub(crate) const RECENT_BATCHES: usize = 8;

/// A pool busy at most this share of the time, ‰, is quiet: its extra work has half the lag
/// target to come out in rather than a third ([`Pace::of`]). Speech re-heard costs about 2.5× its
/// baseline, so a pool busy a quarter of the time stays under two thirds while it re-hears.
pub(crate) const QUIET_BUSY_PERMILLE: i64 = 250;

/// The share of an ahead batch's room ([`Pace::extra_until`]) that extra work stopped short may
/// fill (the rest left to publishing the results). Such work is left out of the batch durations
/// that forecast the next batches ([`crate::Processor::extra_work`]): it fits whatever room the
/// next batch has rather than taking it away.
pub(crate) const EXTRA_ROOM_SHARE: f64 = 0.9;

/// How long a batch whose oldest item is `age_ms` old may take and still come out within the
/// share of `target` an ahead batch must come out within (a third, or half while the pool is
/// quiet: [`QUIET_BUSY_PERMILLE`]), ms.
fn room_ms(age_ms: i64, run: Run, target: Duration) -> i64 {
    let share = if run.busy_permille <= QUIET_BUSY_PERMILLE { 2 } else { 3 };
    target.as_millis() as i64 / share - age_ms
}

/// How long the last few batches took, how many items each ran, when each ended and whether it
/// ran at [`Pace::Ahead`] (with room for extra work): what the next batch may take, and how busy
/// the pool has been.
#[derive(Debug, Default)]
pub(crate) struct RecentBatches(std::collections::VecDeque<Batch>);

/// One recent batch: what it took without the extra work it stopped short (what forecasts the
/// next batches) and that extra work (which kept the pool busy all the same), ms.
#[derive(Debug, Clone, Copy)]
struct Batch {
    ms: i64,
    extra_ms: i64,
    items: usize,
    ended: Instant,
    ahead: bool,
}

impl RecentBatches {
    /// A batch that ended now: `ms` without its extra work, `extra_ms` of extra work.
    pub(crate) fn record(&mut self, ms: i64, extra_ms: i64, items: usize, ahead: bool) {
        self.record_at(ms, extra_ms, items, Instant::now(), ahead);
    }

    /// [`Self::record`] of a batch that ended at `ended`.
    pub(crate) fn record_at(&mut self, ms: i64, extra_ms: i64, items: usize, ended: Instant, ahead: bool) {
        if self.0.len() == RECENT_BATCHES {
            self.0.pop_front();
        }
        self.0.push_back(Batch {
            ms: ms.max(0),
            extra_ms: extra_ms.max(0),
            items: items.max(1),
            ended,
            ahead,
        });
    }

    /// The share of the time since the oldest recent batch began that the pool spent running
    /// batches, their extra work included, ‰ (0 before any batch, 1000 never idle).
    pub(crate) fn busy_permille(&self, now: Instant) -> i64 {
        let Some(first) = self.0.front() else { return 0 };
        let window =
            now.saturating_duration_since(first.ended).as_millis() as i64 + first.ms + first.extra_ms;
        let busy: i64 = self.0.iter().map(|b| b.ms + b.extra_ms).sum();
        (busy * 1000 / window.max(1)).min(1000)
    }

    /// What a batch of `items` may take, ms: the longest recent batch, or the slowest recent
    /// time per item times `items` when that is longer (a batch larger than the recent ones takes
    /// longer than any of them; batching makes the per-item time a bound from above).
    pub(crate) fn expected_ms(&self, items: usize) -> i64 {
        Self::worst(self.0.iter(), items)
    }

    /// [`Self::expected_ms`] over the recent batches that ran without room for extra work (all of
    /// them when none did): what a batch takes when the pool is too far behind for extra work,
    /// which is when the hard limit's forecast matters.
    pub(crate) fn expected_plain_ms(&self, items: usize) -> i64 {
        let plain = self.0.iter().filter(|b| !b.ahead);
        if plain.clone().next().is_none() { self.expected_ms(items) } else { Self::worst(plain, items) }
    }

    fn worst<'a>(batches: impl Iterator<Item = &'a Batch> + Clone, items: usize) -> i64 {
        let longest = batches.clone().map(|b| b.ms).max().unwrap_or(0);
        let per_item = batches.map(|b| b.ms / b.items as i64).max().unwrap_or(0);
        longest.max(per_item * items.max(1) as i64)
    }

    /// What a batch of `items` typically takes, ms: the recent batches' mean time per item times
    /// `items`. What the lag target is checked with (the hard limit takes [`Self::expected_ms`]).
    pub(crate) fn typical_ms(&self, items: usize) -> i64 {
        let (ms, n) = self.0.iter().fold((0i64, 0i64), |(ms, n), b| (ms + b.ms, n + b.items as i64));
        if n == 0 { 0 } else { ms * items.max(1) as i64 / n }
    }

    /// Both estimates for a batch of `items`, and how busy the pool has been until now.
    pub(crate) fn run(&self, items: usize) -> Run {
        Run {
            worst_ms: self.expected_ms(items),
            typical_ms: self.typical_ms(items),
            busy_permille: self.busy_permille(Instant::now()),
            plain_worst_ms: self.expected_plain_ms(items),
        }
    }
}

/// How long a batch may take ([`RecentBatches::expected_ms`]) and typically takes
/// ([`RecentBatches::typical_ms`]), ms, the share of the recent time the pool was running
/// batches ([`RecentBatches::busy_permille`]), ‰, and how long a batch without extra work may take
/// ([`RecentBatches::expected_plain_ms`]), ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Run {
    pub worst_ms: i64,
    pub typical_ms: i64,
    pub busy_permille: i64,
    pub plain_worst_ms: i64,
}

/// Whether an item `age_ms` old, in a batch that typically takes `run.typical_ms`, reaches the
/// feed after the lag target: the target bounds what the user sees, so a pool is behind as soon as
/// what it is about to run would come out late, not only once its queue is older than the target.
pub fn behind_target(age_ms: i64, run: Run, lag_target: Option<Duration>) -> bool {
    lag_target.is_some_and(|t| age_ms + run.typical_ms.max(0) > t.as_millis() as i64)
}

/// How a pool stands against its lag target before a batch (what [`crate::Processor::set_pace`]
/// is told).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// The batch would come out within a third of the lag target even if it took as long as the
    /// longest recent batch, or within half of it when the pool has been quiet (busy at most
    /// [`QUIET_BUSY_PERMILLE`] of the recent time: no queue for the extra work to delay), or the
    /// pool has no target: room for the optional extra work a processor may do with spare time
    /// (speech: re-hearing), which lengthens batches.
    Ahead,
    /// Within the target, without that much room: the configured work, nothing extra.
    OnTime,
    /// Past the target ([`behind_target`]): coarser work to catch up.
    Behind,
}

impl Pace {
    /// Where an item `age_ms` old stands in a batch that typically takes `run.typical_ms` and may
    /// take `run.worst_ms`.
    pub fn of(age_ms: i64, run: Run, lag_target: Option<Duration>) -> Self {
        match lag_target {
            _ if behind_target(age_ms, run, lag_target) => Pace::Behind,
            Some(t) => {
                let room = room_ms(age_ms, run, t);
                if run.worst_ms.max(run.typical_ms).max(0) > room { Pace::OnTime } else { Pace::Ahead }
            }
            None => Pace::Ahead,
        }
    }

    /// While [`Pace::Ahead`], when the batch started at `started` should be out: by
    /// [`EXTRA_ROOM_SHARE`] of the time left before the share of the lag target an ahead batch
    /// must come out within. What bounds the extra work a processor can stop short (speech:
    /// Whisper judging re-heard English). At any other pace `started` (no time for it); without a
    /// target None (no bound).
    pub fn extra_until(
        self,
        started: Instant,
        age_ms: i64,
        run: Run,
        lag_target: Option<Duration>,
    ) -> Option<Instant> {
        match (self, lag_target) {
            (Pace::Ahead, Some(t)) => {
                let room = room_ms(age_ms, run, t).max(0) as f64 * EXTRA_ROOM_SHARE;
                Some(started + Duration::from_millis(room as u64))
            }
            (Pace::Ahead, None) => None,
            _ => Some(started),
        }
    }

    /// The label of `sightline_pool_batches_total{pace}`.
    pub fn label(self) -> &'static str {
        match self {
            Pace::Ahead => "ahead",
            Pace::OnTime => "on_time",
            Pace::Behind => "behind",
        }
    }
}

/// What to do with one item of a batch, by its age, how long the batch may take (`run`) and the
/// pool's lag settings: past the hard limit by the time it would be done (the worst estimate over
/// batches without extra work: an item that near the limit leaves no room for extra work, so its
/// batch runs without it), any item is shed; behind the target ([`behind_target`]), the items the pool's
/// policy gives up first. The hard limit is `max_lag` less a tenth, left for what comes after the
/// model (publishing, sinks, the feed) and, for speech, the silence that closes a segment after
/// its last word, so what reaches the feed stays within `max_lag` of its media.
pub fn shed_decision(
    age_ms: i64,
    run: Run,
    sheddable: bool,
    lag_target: Option<Duration>,
    max_lag: Option<Duration>,
) -> Option<ShedReason> {
    let over = |age: i64, d: Option<Duration>| d.is_some_and(|d| age > d.as_millis() as i64);
    if over(age_ms + run.plain_worst_ms.max(0), max_lag.map(|d| d.mul_f64(0.9))) {
        Some(ShedReason::TooLate)
    } else if sheddable && behind_target(age_ms, run, lag_target) {
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
        let idle = Run::default();
        assert_eq!(shed_decision(1_500, idle, true, target, max), None, "within the target");
        assert_eq!(shed_decision(2_500, idle, true, target, max), Some(ShedReason::Lag));
        assert_eq!(shed_decision(2_500, idle, false, target, max), None, "a keyframe is kept while behind");
        assert_eq!(shed_decision(10_500, idle, false, target, max), Some(ShedReason::TooLate));
        // A tenth of the limit is left for publishing and the feed: 9.5 s old is too late.
        assert_eq!(shed_decision(9_500, idle, false, target, max), Some(ShedReason::TooLate));
        assert_eq!(shed_decision(8_900, idle, false, target, max), None);
        assert_eq!(shed_decision(60_000, idle, true, None, None), None, "no bounds, no shedding");
        // A batch may take 3 s: an item 7 s old would be done 10 s late, past the 9 s hard limit.
        let slow = Run { worst_ms: 3_000, typical_ms: 1_000, busy_permille: 1000, plain_worst_ms: 3_000 };
        assert_eq!(shed_decision(7_000, slow, false, target, max), Some(ShedReason::TooLate));
        assert_eq!(shed_decision(5_500, slow, false, target, max), None);
        // The target is checked with the typical time: 1.5 s old + 1 s typical is 2.5 s, late.
        assert_eq!(shed_decision(1_500, slow, true, target, max), Some(ShedReason::Lag));
        assert_eq!(shed_decision(900, slow, true, target, max), None);
    }

    #[test]
    fn a_pool_is_behind_when_what_it_runs_would_come_out_past_the_target() {
        let target = Some(Duration::from_secs(3));
        let mut recent = RecentBatches::default();
        assert!(!behind_target(2_900, recent.run(4), target), "nothing ran yet: its age alone");
        assert!(behind_target(3_100, recent.run(1), target));
        // Speech batches of 1 s an utterance: a batch of four 0.5 s old is out 4.5 s after it.
        recent.record(1_000, 0, 1, false);
        recent.record(2_000, 0, 2, false);
        assert!(!behind_target(500, recent.run(2), target), "out at 2.5 s");
        assert!(behind_target(500, recent.run(4), target), "out at 4.5 s");
        assert!(behind_target(2_100, recent.run(1), target), "a single one 2.1 s old: out at 3.1 s");
        assert!(!behind_target(60_000, recent.run(1), None), "no target, never behind");
        assert_eq!(Pace::of(500, recent.run(4), target), Pace::Behind, "out at 4.5 s");
        // A third of the target is the line between room to spare and on time, by the longest
        // recent batch: extra work lengthens batches, and the room must hold one such batch.
        let mut recent = RecentBatches::default();
        recent.record(800, 0, 1, false);
        recent.record(800, 0, 1, false);
        assert_eq!(Pace::of(100, recent.run(1), target), Pace::Ahead, "out by 0.9 s at worst");
        assert_eq!(Pace::of(300, recent.run(1), target), Pace::OnTime, "out by 1.1 s");
        recent.record(3_000, 0, 1, false);
        assert_eq!(Pace::of(0, recent.run(1), target), Pace::OnTime, "a recent batch took 3 s");
        assert_eq!(Pace::of(60_000, recent.run(1), None), Pace::Ahead, "no target: always room");
    }

    #[test]
    fn extra_work_stops_within_the_ahead_batchs_room() {
        let target = Some(Duration::from_secs(3));
        let started = Instant::now();
        let quiet = Run { worst_ms: 600, typical_ms: 500, busy_permille: 100, plain_worst_ms: 600 };
        // Quiet: half the target, 1.5 s, less the oldest item's 300 ms, 0.9 of what is left.
        assert_eq!(Pace::of(300, quiet, target), Pace::Ahead);
        assert_eq!(
            Pace::Ahead.extra_until(started, 300, quiet, target),
            Some(started + Duration::from_millis(1_080))
        );
        // Busy: a third, 1 s: 630 ms.
        let busy = Run { busy_permille: 900, ..quiet };
        assert_eq!(Pace::of(300, busy, target), Pace::Ahead);
        assert_eq!(
            Pace::Ahead.extra_until(started, 300, busy, target),
            Some(started + Duration::from_millis(630))
        );
        // Not ahead: none; no target: no bound.
        assert_eq!(Pace::OnTime.extra_until(started, 300, busy, target), Some(started));
        assert_eq!(Pace::Behind.extra_until(started, 5_000, busy, target), Some(started));
        assert_eq!(Pace::Ahead.extra_until(started, 300, busy, None), None);
    }

    #[test]
    fn a_quiet_pool_has_half_the_target_for_extra_work() {
        let target = Some(Duration::from_secs(3));
        let now = Instant::now();
        let ago = |s: u64| now - Duration::from_secs(s);
        // One stream's speech: a 1.1 s batch (re-heard) every 6 s, the last ended 2 s ago.
        let mut quiet = RecentBatches::default();
        for i in (0..RECENT_BATCHES as u64).rev() {
            quiet.record_at(1_100, 0, 1, ago(2 + 6 * i), true);
        }
        let busy = quiet.busy_permille(now);
        assert!((150..=200).contains(&busy), "8.8 s of batches in 45.1 s: {busy} ‰");
        let run = Run { busy_permille: busy, ..quiet.run(1) };
        assert_eq!(Pace::of(300, run, target), Pace::Ahead, "out by 1.4 s: within half the target");
        assert_eq!(Pace::of(500, run, target), Pace::OnTime, "out by 1.6 s: past half");
        // The same batches back to back (many streams): a third, as for any busy pool.
        let mut busy_pool = RecentBatches::default();
        for i in (0..RECENT_BATCHES as u32).rev() {
            busy_pool.record_at(1_100, 0, 1, now - Duration::from_millis(1_100) * i, true);
        }
        let run = Run { busy_permille: busy_pool.busy_permille(now), ..busy_pool.run(1) };
        assert_eq!(run.busy_permille, 1000, "never idle");
        assert_eq!(Pace::of(300, run, target), Pace::OnTime, "out by 1.4 s: past a third");
        assert_eq!(RecentBatches::default().busy_permille(now), 0, "nothing ran: idle");
    }

    #[test]
    fn extra_work_keeps_the_pool_busy_but_does_not_forecast_the_next_batch() {
        let now = Instant::now();
        // A 400 ms batch that went on judging for 600 ms more, every 2 s.
        let (mut judged, mut plain) = (RecentBatches::default(), RecentBatches::default());
        for i in (0..RECENT_BATCHES as u32).rev() {
            judged.record_at(400, 600, 1, now - Duration::from_secs(2) * i, true);
            plain.record_at(400, 0, 1, now - Duration::from_secs(2) * i, true);
        }
        let (busy, idle) = (judged.busy_permille(now), plain.busy_permille(now));
        assert!((520..=550).contains(&busy), "8 s of work in 15 s: {busy} ‰");
        assert!((210..=235).contains(&idle), "3.2 s of work in 14.4 s: {idle} ‰");
        assert!(busy > QUIET_BUSY_PERMILLE && idle <= QUIET_BUSY_PERMILLE, "judging ends the quiet");
        let (run, plain_run) = (judged.run(1), plain.run(1));
        assert_eq!((run.worst_ms, run.typical_ms), (400, 400), "the judging is not forecast");
        assert_eq!((run.worst_ms, run.typical_ms), (plain_run.worst_ms, plain_run.typical_ms));
        // So the busy pool gets a third of the target for extra work, the quiet one half.
        let target = Some(Duration::from_secs(3));
        assert_eq!(Pace::of(700, plain_run, target), Pace::Ahead, "out by 1.1 s: within half");
        assert_eq!(Pace::of(700, run, target), Pace::OnTime, "out by 1.1 s: past a third");
    }

    #[test]
    fn a_batch_larger_than_the_recent_ones_is_expected_to_take_longer() {
        let mut recent = RecentBatches::default();
        assert_eq!(recent.expected_ms(4), 0, "nothing ran yet");
        assert_eq!(recent.typical_ms(4), 0);
        recent.record(2_000, 0, 1, false);
        recent.record(2_400, 0, 2, false);
        assert_eq!(recent.expected_ms(1), 2_400, "the longest recent batch");
        assert_eq!(recent.expected_ms(2), 4_000, "two items at the slowest 2 s an item");
        assert_eq!(recent.expected_ms(4), 8_000);
        assert_eq!(recent.typical_ms(1), 1_466, "4.4 s for three items");
        assert_eq!(recent.typical_ms(3), 4_400);
        // Only the last eight count: a slow batch long ago no longer does.
        recent.record(9_000, 0, 1, false);
        for _ in 0..RECENT_BATCHES {
            recent.record(500, 0, 1, false);
        }
        assert_eq!(recent.expected_ms(1), 500);
        assert_eq!(recent.expected_ms(3), 1_500);
        assert_eq!(recent.typical_ms(3), 1_500);
        // An item 6 s old in a batch of three after 2 s items would be done at 12 s: too late.
        let (target, max) = (Some(Duration::from_secs(3)), Some(Duration::from_secs(10)));
        let mut slow = RecentBatches::default();
        slow.record(2_000, 0, 1, false);
        assert_eq!(shed_decision(6_000, slow.run(1), false, target, max), None);
        assert_eq!(shed_decision(6_000, slow.run(3), false, target, max), Some(ShedReason::TooLate));
    }

    #[test]
    fn the_hard_limit_is_forecast_from_batches_without_extra_work() {
        let (target, max) = (Some(Duration::from_secs(3)), Some(Duration::from_secs(10)));
        let mut recent = RecentBatches::default();
        // A re-heard batch (extra work, at room to spare) took 3.5 s; the plain ones 1 s.
        recent.record(1_000, 0, 1, false);
        recent.record(3_500, 0, 1, true);
        recent.record(1_000, 0, 1, false);
        let run = recent.run(1);
        assert_eq!((run.worst_ms, run.plain_worst_ms), (3_500, 1_000));
        // 6 s old: 9.5 s with the re-heard batch's time, but a pool this far behind does not
        // re-hear, so it is out by 7 s, within the 9 s hard limit.
        assert_eq!(shed_decision(6_000, run, false, target, max), None);
        assert_eq!(shed_decision(8_500, run, false, target, max), Some(ShedReason::TooLate));
        // The room for extra work is still judged by the longest batch, extra work included.
        assert_eq!(Pace::of(0, run, target), Pace::OnTime);
        // Only batches with extra work: they are all there is to go by.
        let mut ahead = RecentBatches::default();
        ahead.record(3_500, 0, 1, true);
        assert_eq!(ahead.run(1).plain_worst_ms, 3_500);
        assert_eq!(shed_decision(6_000, ahead.run(1), false, target, max), Some(ShedReason::TooLate));
    }
}
