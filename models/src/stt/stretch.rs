//! What is heard again, and how: an utterance's audio resampled to a stretch of its length
//! ([`stretch`]), and which stretches each utterance gets ([`Rehearing`]).

use super::Transcript;

/// The stretches worth re-hearing at: finite, positive and not 1 (which would hear it as it was).
pub(crate) fn rehear_factors(stretches: &[f32]) -> Vec<f32> {
    stretches.iter().copied().filter(|s| s.is_finite() && *s > 0.0 && *s != 1.0).collect()
}

/// Which utterances are heard again and at which stretches ([`super::Moonshine::set_rehearing`],
/// [`super::Moonshine::set_paced_rehearing`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rehearing {
    /// The stretches an unsure utterance is heard again at.
    pub stretches: Vec<f32>,
    /// The confidence below which an utterance is unsure.
    pub below: f32,
    /// More stretches for an unsure utterance faster than `fast_above` letters a second.
    pub fast: Vec<f32>,
    pub fast_above: f32,
    /// More stretches for an unsure utterance slower than `slow_below` letters a second.
    pub slow: Vec<f32>,
    pub slow_below: f32,
}

impl Default for Rehearing {
    fn default() -> Self {
        Self {
            stretches: Vec::new(),
            below: 0.0,
            fast: Vec::new(),
            fast_above: f32::INFINITY,
            slow: Vec::new(),
            slow_below: 0.0,
        }
    }
}

impl Rehearing {
    /// Whether any utterance may be heard again.
    pub fn any(&self) -> bool {
        !(self.stretches.is_empty() && self.fast.is_empty() && self.slow.is_empty())
    }

    /// The stretches an utterance of `samples` first heard as `heard` is heard again at: none
    /// when it was heard with confidence, else the configured ones; and apart, those of its pace
    /// (the fast or slow ones not among the configured) when its transcript runs faster or
    /// slower than their bound.
    pub fn stretches_for(&self, samples: usize, heard: &Transcript) -> (Vec<f32>, Vec<f32>) {
        if heard.confidence >= self.below {
            return (Vec::new(), Vec::new());
        }
        let pace = letters_per_second(&heard.text, samples);
        let paced: &[f32] = if pace > self.fast_above {
            &self.fast
        } else if pace < self.slow_below {
            &self.slow
        } else {
            &[]
        };
        let own = paced.iter().copied().filter(|k| !self.stretches.contains(k)).collect();
        (self.stretches.clone(), own)
    }
}

/// How fast a transcript of `samples` (16 kHz) runs: its letters and digits a second.
fn letters_per_second(text: &str, samples: usize) -> f32 {
    let letters = text.chars().filter(|c| c.is_alphanumeric()).count();
    letters as f32 * 16_000.0 / samples.max(1) as f32
}

/// `samples` resampled (linear interpolation) to `k` times as many: played back at the same rate,
/// `k` above 1 is slower and lower, below 1 faster and higher.
pub fn stretch(samples: &[f32], k: f32) -> Vec<f32> {
    let Some(&last) = samples.last() else { return Vec::new() };
    let n = (samples.len() as f64 * k as f64).round() as usize;
    (0..n)
        .map(|i| {
            let x = i as f64 / k as f64;
            let j = x as usize;
            let t = (x - j as f64) as f32;
            let a = samples.get(j).copied().unwrap_or(last);
            let b = samples.get(j + 1).copied().unwrap_or(last);
            a + (b - a) * t
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{Rehearing, letters_per_second, stretch};
    use crate::Transcript;

    #[test]
    fn fast_and_slow_speech_are_heard_at_their_own_stretches_too() {
        let r = Rehearing {
            stretches: vec![1.05],
            below: 0.9,
            fast: vec![1.4, 1.05],
            fast_above: 14.5,
            slow: vec![0.85],
            slow_below: 11.0,
        };
        let heard = |text: &str, confidence| Transcript { text: text.into(), confidence, tokens: Vec::new() };
        let of = |samples, confidence| r.stretches_for(samples, &heard(said(), confidence));
        fn said() -> &'static str {
            "The 7 ships left Dover at dawn, in a fog!"
        }
        // 30 letters and digits (punctuation and spaces not counted) in two seconds: 15 a second.
        assert_eq!(letters_per_second(said(), 32_000), 15.0);
        let none: Vec<f32> = Vec::new();
        assert_eq!(of(32_000, 0.8), (vec![1.05], vec![1.4]), "fast and unsure: 1.05 once");
        assert_eq!(of(34_000, 0.8), (vec![1.05], none.clone()), "14.1 a second: ordinary");
        assert_eq!(of(43_000, 0.8), (vec![1.05], none.clone()), "11.2 a second: ordinary");
        assert_eq!(of(48_000, 0.8), (vec![1.05], vec![0.85]), "10 a second: slow");
        assert_eq!(of(32_000, 0.95), (none.clone(), none.clone()), "sure: heard once");
        assert_eq!(of(48_000, 0.95), (none.clone(), none.clone()), "sure: heard once");
        let unpaced = Rehearing { fast: Vec::new(), slow: Vec::new(), ..r.clone() };
        assert_eq!(unpaced.stretches_for(32_000, &heard(said(), 0.8)), (vec![1.05], none.clone()));
        let paced_only = Rehearing { stretches: Vec::new(), ..r.clone() };
        assert!(paced_only.any() && !Rehearing::default().any());
        assert_eq!(paced_only.stretches_for(34_000, &heard(said(), 0.8)), (none.clone(), none.clone()));
        assert_eq!(paced_only.stretches_for(32_000, &heard(said(), 0.8)), (none, vec![1.4, 1.05]));
        assert_eq!(letters_per_second("", 0), 0.0, "no audio, no letters");
    }

    #[test]
    fn a_stretch_lowers_the_pitch_and_lengthens_by_its_factor() {
        // 200 Hz for a second at 16 kHz; stretched 1.25 times it lasts 1.25 s at 160 Hz.
        let tone: Vec<f32> =
            (0..16_000).map(|i| (std::f32::consts::TAU * 200.0 * i as f32 / 16_000.0).sin()).collect();
        let crossings = |x: &[f32]| x.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        let slow = stretch(&tone, 1.25);
        assert_eq!(slow.len(), 20_000);
        assert_eq!(crossings(&tone), 199);
        assert!((crossings(&slow) as i32 - 200).abs() <= 1, "{} upward crossings", crossings(&slow));
        let fast = stretch(&tone, 0.8);
        assert_eq!(fast.len(), 12_800);
        assert!((crossings(&fast) as i32 - 200).abs() <= 1, "{} upward crossings", crossings(&fast));
        assert!(stretch(&[], 1.1).is_empty());
        assert_eq!(stretch(&[0.5; 10], 0.9), vec![0.5; 9], "a constant stays what it was");
    }
}
