//! Whisper as the judge of Moonshine's re-heard English: its time bound and what it did
//! ([`crate::Moonshine::set_judge`]).

/// Whisper as the judge of re-heard English ([`crate::Moonshine::set_judge`]), with its time bound.
pub(super) struct WhisperJudge {
    pub(super) whisper: crate::Whisper,
    /// The window it hears an utterance over, samples (the Whisper's when the judge was set).
    pub(super) window: usize,
    pub(super) weight: f32,
    pub(super) top: usize,
    pub(super) until: Option<std::time::Instant>,
    /// What a run is expected to cost: the longest recent run, decaying by a tenth an utterance
    /// judged or not.
    pub(super) cost: Option<std::time::Duration>,
    pub(super) stats: JudgeStats,
}

impl WhisperJudge {
    /// Whether a run expected to cost `self.cost` ends before `self.until`. Before its first run
    /// the cost is unknown: it runs when any time is left.
    pub(super) fn has_time(&self) -> bool {
        self.until.is_none_or(|u| std::time::Instant::now() + self.cost.unwrap_or_default() <= u)
    }

    pub(super) fn ran(&mut self, took: std::time::Duration) {
        self.stats.judged += 1;
        self.stats.spent += took;
        self.cost = Some(self.cost.map_or(took, |c| took.max(c.mul_f32(DECAY))));
    }

    /// Left unjudged: counted, and the expected cost decays as after a run, so that one slow
    /// run (a loaded machine) does not keep the judge out for good.
    pub(super) fn skipped(&mut self) {
        self.stats.no_room += 1;
        self.cost = self.cost.map(|c| c.mul_f32(DECAY));
    }
}

/// What the judge's expected cost keeps of itself from one utterance to the next.
const DECAY: f32 = 0.9;

/// How often the judge ran ([`crate::Moonshine::judge_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JudgeStats {
    /// Utterances the judge scored.
    pub judged: u64,
    /// Utterances left to the hearings because the judge's cost did not fit before
    /// [`crate::Moonshine::set_extra_until`].
    pub no_room: u64,
    /// The time the judge's runs took.
    pub spent: std::time::Duration,
}
