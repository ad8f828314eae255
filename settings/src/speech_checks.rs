//! The speech section's own bounds ([`SpeechConfig::validate`]); the checks that involve other
//! sections stay in `Config::validate`.

use crate::{ConfigError, SpeechConfig};
use std::fmt::Display;
use std::ops::RangeInclusive;

/// `speech.{key}` within `range`, or an error that names the key, the range and the value.
fn bounded<T: PartialOrd + Display>(
    key: &str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(ConfigError::Invalid(format!(
        "speech.{key} must be within {}..={}, got {value}",
        range.start(),
        range.end()
    )))
}

impl SpeechConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=16).contains(&self.beam_width) {
            return Err(ConfigError::Invalid("speech.beam_width must be 1..=16".into()));
        }
        for (key, st) in [
            ("rehear_stretches", &self.rehear_stretches),
            ("rehear_fast_stretches", &self.rehear_fast_stretches),
            ("rehear_slow_stretches", &self.rehear_slow_stretches),
            ("multilingual_rehear_stretches", &self.multilingual_rehear_stretches),
        ] {
            if st.len() > 4 || !st.iter().all(|k| (0.5..=2.0).contains(k)) {
                return Err(ConfigError::Invalid(format!(
                    "speech.{key} must list at most 4 factors within 0.5..=2, got {st:?}"
                )));
            }
        }
        if !(0.0..=1.0).contains(&self.rehear_below) {
            return Err(ConfigError::Invalid("speech.rehear_below must be within 0..=1".into()));
        }
        bounded("rehear_fast_above", self.rehear_fast_above, 5.0..=40.0)?;
        bounded("rehear_slow_below", self.rehear_slow_below, 0.0..=self.rehear_fast_above)?;
        bounded("rehear_candidates", self.rehear_candidates, 0..=8)?;
        bounded("rehear_hybrids", self.rehear_hybrids, 0..=64)?;
        bounded("rehear_judge_weight", self.rehear_judge_weight, 0.0..=1.0)?;
        bounded("rehear_judge_candidates", self.rehear_judge_candidates, 2..=16)?;
        bounded("rehear_judge_window_s", self.rehear_judge_window_s, 1.0..=30.0)?;
        if !(1..=16).contains(&self.multilingual_beam_width) {
            return Err(ConfigError::Invalid("speech.multilingual_beam_width must be 1..=16".into()));
        }
        if !(1.0..=30.0).contains(&self.multilingual_window_s) {
            return Err(ConfigError::Invalid("speech.multilingual_window_s must be 1..=30 seconds".into()));
        }
        if !(1.0..=30.0).contains(&self.multilingual_behind_window_s) {
            return Err(ConfigError::Invalid(
                "speech.multilingual_behind_window_s must be 1..=30 seconds".into(),
            ));
        }
        let code = |l: &String| (2..=3).contains(&l.len()) && l.chars().all(|c| c.is_ascii_lowercase());
        if self.languages.is_empty() || !self.languages.iter().all(code) {
            return Err(ConfigError::Invalid(format!(
                "speech.languages must list ISO 639-1 codes such as \"en\" or \"de\", got {:?}",
                self.languages
            )));
        }
        if self.max_pad_ms > 5000 {
            return Err(ConfigError::Invalid(
                "speech.max_pad_ms must be at most 5000 (longer silence changes what Moonshine hears)".into(),
            ));
        }
        let s = self;
        if s.lead_silence_ms.max(s.trail_silence_ms).max(s.rehear_trail_silence_ms) > 2000 {
            return Err(ConfigError::Invalid(
                "speech.lead_silence_ms, speech.trail_silence_ms and speech.rehear_trail_silence_ms must be at most 2000 (Moonshine hears the silence too)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn rehearing_is_bounded() {
        let mut cfg = Config::default();
        let refused = |cfg: &Config, what: &str| cfg.validate().unwrap_err().to_string().contains(what);
        assert_eq!((cfg.speech.rehear_stretches.as_slice(), cfg.speech.rehear_below), (&[1.05][..], 0.9));
        assert!(cfg.speech.judges_rehearing(), "Whisper judges re-heard English by default");
        assert_eq!((cfg.speech.rehear_judge_weight, cfg.speech.rehear_judge_window_s), (0.3, 8.0));
        assert_eq!(cfg.speech.multilingual_rehear_stretches, [0.9, 1.1]);
        cfg.speech.multilingual_rehear_stretches = vec![2.5];
        assert!(refused(&cfg, "speech.multilingual_rehear_stretches"));
        cfg.speech.multilingual_rehear_stretches = vec![0.9, 1.1];
        cfg.speech.rehear_stretches = vec![0.9, 1.1, 0.8, 1.2, 1.3];
        assert!(refused(&cfg, "at most 4"));
        cfg.speech.rehear_stretches = vec![0.4];
        assert!(refused(&cfg, "speech.rehear_stretches"));
        assert_eq!(
            (cfg.speech.rehear_fast_stretches.as_slice(), cfg.speech.rehear_fast_above),
            (&[1.4][..], 14.5)
        );
        cfg.speech.rehear_stretches = Vec::new();
        assert!(cfg.speech.judges_rehearing(), "fast speech alone is re-heard, and judged");
        cfg.speech.rehear_fast_stretches = vec![2.1];
        assert!(refused(&cfg, "speech.rehear_fast_stretches must list at most 4 factors within 0.5..=2"));
        cfg.speech.rehear_fast_stretches = Vec::new();
        assert!(cfg.speech.rehear_slow_stretches.is_empty(), "slow speech is not heard more by default");
        assert!(!cfg.speech.judges_rehearing(), "nothing re-heard, nothing judged");
        cfg.speech.rehear_slow_stretches = vec![0.85];
        assert!(cfg.speech.judges_rehearing(), "slow speech alone is re-heard, and judged");
        cfg.speech.rehear_slow_stretches = vec![0.85, 0.9, 0.95, 0.8, 0.75];
        assert!(refused(&cfg, "speech.rehear_slow_stretches must list at most 4 factors"));
        cfg.speech.rehear_slow_stretches = Vec::new();
        assert_eq!(cfg.speech.rehear_slow_below, 11.0);
        cfg.speech.rehear_fast_above = 4.0;
        assert!(refused(&cfg, "speech.rehear_fast_above must be within 5..=40, got 4"));
        cfg.speech.rehear_fast_above = 10.0;
        assert!(refused(&cfg, "speech.rehear_slow_below must be within 0..=10, got 11"));
        cfg.speech.rehear_fast_above = 14.5;
        cfg.speech.rehear_stretches = Vec::new();
        cfg.speech.rehear_below = 1.5;
        assert!(refused(&cfg, "speech.rehear_below"));
        cfg.speech.rehear_below = 0.0;
        assert!(cfg.validate().is_ok());
        assert_eq!((cfg.speech.rehear_candidates, cfg.speech.rehear_hybrids), (2, 8));
        cfg.speech.rehear_candidates = 9;
        assert!(refused(&cfg, "speech.rehear_candidates must be within 0..=8"));
        cfg.speech.rehear_candidates = 0;
        assert!(cfg.validate().is_ok());
        cfg.speech.rehear_hybrids = 65;
        assert!(refused(&cfg, "speech.rehear_hybrids must be within 0..=64, got 65"));
        cfg.speech.rehear_hybrids = 0;
        assert!(cfg.validate().is_ok());
        cfg.speech.rehear_judge_weight = 1.2;
        assert!(refused(&cfg, "speech.rehear_judge_weight must be within 0..=1, got 1.2"));
        cfg.speech.rehear_judge_weight = 0.0;
        cfg.speech.rehear_judge_candidates = 1;
        assert!(refused(&cfg, "speech.rehear_judge_candidates must be within 2..=16, got 1"));
        cfg.speech.rehear_judge_candidates = 16;
        assert!(cfg.validate().is_ok());
        cfg.speech.rehear_judge_window_s = 0.5;
        assert!(refused(&cfg, "speech.rehear_judge_window_s must be within 1..=30"));
        cfg.speech.rehear_judge_window_s = 30.0;
        assert!(cfg.validate().is_ok());
    }
}
