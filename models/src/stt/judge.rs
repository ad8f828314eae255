//! Extra work on re-heard English (Whisper as the judge, the copies heard at an utterance's own
//! pace): the time bound each runs under and what it did ([`crate::Moonshine::set_extra_until`]).

use std::time::{Duration, Instant};

/// Whisper as the judge of re-heard English ([`crate::Moonshine::set_judge`]), with its time bound.
pub(super) struct WhisperJudge {
    pub(super) whisper: crate::Whisper,
    /// The window it hears an utterance over, samples (the Whisper's when the judge was set).
    pub(super) window: usize,
    pub(super) weight: f32,
    pub(super) top: usize,
    pub(super) bound: ExtraBound,
}

/// The time bound of one kind of extra work, what one utterance's share of it is expected to
/// cost (the longest recent cost per utterance, decaying by a tenth an utterance done or left
/// undone), and what it did.
#[derive(Debug, Default)]
pub(crate) struct ExtraBound {
    pub until: Option<Instant>,
    cost: Option<Duration>,
    pub stats: JudgeStats,
}

impl ExtraBound {
    /// How many of `n` utterances' work is expected to be done before the bound (all without
    /// one; before the first run, all while any time is left).
    pub fn fits(&self, n: usize) -> usize {
        let Some(until) = self.until else { return n };
        let left = until.saturating_duration_since(Instant::now());
        match self.cost {
            _ if left.is_zero() => 0,
            None => n,
            Some(c) if c.is_zero() => n,
            Some(c) => n.min((left.as_secs_f64() / c.as_secs_f64()) as usize),
        }
    }

    /// The expected cost of one utterance's work and the time left before the bound, for a log.
    pub fn outlook(&self) -> (Option<Duration>, Option<Duration>) {
        (self.cost, self.until.map(|u| u.saturating_duration_since(Instant::now())))
    }

    /// `n` utterances' work done in `took`.
    pub fn ran(&mut self, n: usize, took: Duration) {
        let each = took / n.max(1) as u32;
        self.cost = Some(self.cost.map_or(each, |c| each.max(c.mul_f32(DECAY.powi(n as i32)))));
        self.stats.judged += n as u64;
        self.stats.spent += took;
    }

    /// `n` utterances left without the work: counted, and the expected cost decays as after a
    /// run, so that one slow run (a loaded machine) does not keep the work out for good.
    pub fn skipped(&mut self, n: usize) {
        self.stats.no_room += n as u64;
        self.cost = self.cost.map(|c| c.mul_f32(DECAY.powi(n as i32)));
    }
}

/// What the expected cost keeps of itself from one utterance to the next.
const DECAY: f32 = 0.9;

/// What one kind of extra work did ([`crate::Moonshine::judge_stats`],
/// [`crate::Moonshine::paced_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JudgeStats {
    /// Utterances it was done for.
    pub judged: u64,
    /// Utterances left without it because its cost did not fit before
    /// [`crate::Moonshine::set_extra_until`].
    pub no_room: u64,
    /// The time it took.
    pub spent: Duration,
}

#[cfg(test)]
mod tests {
    use super::ExtraBound;
    use std::time::{Duration, Instant};

    #[test]
    fn extra_work_fits_the_time_left() {
        let mut b = ExtraBound::default();
        assert_eq!(b.fits(3), 3, "no bound: all");
        b.until = Some(Instant::now() + Duration::from_secs(10));
        assert_eq!(b.fits(3), 3, "cost unknown, time left: all");
        b.ran(2, Duration::from_secs(4));
        assert_eq!(b.fits(5), 4, "2 s each, under 10 s left: four");
        b.skipped(1);
        assert_eq!((b.stats.judged, b.stats.no_room, b.stats.spent), (2, 1, Duration::from_secs(4)));
        b.until = Some(Instant::now() + Duration::from_millis(2_500));
        assert_eq!(b.fits(3), 1, "1.8 s expected now (decayed): one in 2.5 s");
        b.until = Some(Instant::now());
        assert_eq!(b.fits(3), 0, "no time left: none");
        b.ran(1, Duration::from_secs(3));
        b.until = Some(Instant::now() + Duration::from_millis(2_500));
        assert_eq!(b.fits(3), 0, "a slower run raises what one is expected to cost");
        assert_eq!(b.outlook().0, Some(Duration::from_secs(3)));
    }
}
