//! Evaluation sets for `make quality` and the quality tests: speech in several espeak-ng voices,
//! rates and acoustic conditions, and captions in several styles on many kinds of background, all
//! generated here from the line lists in `quality/` (never fetched, never in a code path). Also the
//! scoring: text normalisation, word and character error counts.

use crate::TestSourceError;
use std::path::{Path, PathBuf};

mod captions;
mod scoring;
mod speech;
mod transitions;

pub use captions::*;
pub use scoring::*;
pub(crate) use speech::pcm_16k;
pub use speech::*;
pub use transitions::*;

/// The repository's `quality/` folder (the evaluation sets' sentences and caption lines).
pub fn quality_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../quality")
}

/// The non-empty, non-comment lines of a file in `quality/`.
pub fn quality_lines(name: &str) -> Result<Vec<String>, TestSourceError> {
    let text = std::fs::read_to_string(quality_dir().join(name))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// Photographs and textures from scikit-image's data (extracted by `make setup` next to the
/// fixtures), by file name.
pub fn photo_path(name: &str) -> Option<PathBuf> {
    let fixtures = std::env::var_os("SIGHTLINE_FIXTURES")?;
    let p = Path::new(&fixtures).parent()?.join("images").join(name);
    p.exists().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::speech::{mix, music_bed, speech_rms, street_noise};
    use super::*;

    #[test]
    fn numbers_are_spelt_out_for_scoring() {
        assert_eq!(number_words(2026), "two thousand twenty six");
        assert_eq!(number_words(415), "four hundred fifteen");
        assert_eq!(number_words(90_000), "ninety thousand");
        assert_eq!(
            normalize_words("Gold up 1.2%, at 2,431 USD!"),
            [
                "gold", "up", "one", "point", "two", "percent", "at", "two", "thousand", "four", "hundred",
                "thirty", "one", "usd"
            ]
        );
        assert_eq!(
            normalize_words("four hundred and twenty, rock-and-roll"),
            ["four", "hundred", "twenty", "rock", "and", "roll"]
        );
        assert_eq!(normalize_words("The children's 6 ships"), ["the", "children's", "six", "ships"]);
    }

    #[test]
    fn british_and_american_spellings_score_as_one_word() {
        assert_eq!(
            normalize_words("The Theatre colour, by the harbour"),
            ["the", "theater", "color", "by", "the", "harbor"]
        );
        assert_eq!(
            scored_word_errors("a grey harbor at the center", "A gray harbour at the centre."),
            (0, 6)
        );
        // Only spellings: "hour", "four" and "our" are words of their own.
        assert_eq!(normalize_words("our four hours"), ["our", "four", "hours"]);
        assert_eq!(scored_word_errors("the colour", "the collar"), (1, 2));
    }

    #[test]
    fn plain_word_errors_count_edits_over_lower_cased_words() {
        assert_eq!(word_errors("a b c", "A x, c d."), (2, 3));
        assert_eq!(word_errors("the dog's bone", "The dog's bone!"), (0, 3));
        assert_eq!(word_errors("one two", ""), (2, 2));
        assert_eq!(word_errors("about four hundred", "about 400"), (2, 3), "numbers are not settled");
    }

    #[test]
    fn word_errors_settle_compounds_and_numbers() {
        assert_eq!(scored_word_errors("the lighthouse keeper", "The light house keeper."), (0, 3));
        assert_eq!(scored_word_errors("about four hundred people", "About 400 people"), (0, 4));
        assert_eq!(scored_word_errors("rain is expected", "rain in ecstatic"), (2, 3));
        assert_eq!(scored_word_errors("one two", ""), (2, 2));
        assert_eq!(scored_word_errors("doctor patel", "Dr. Patel"), (0, 2));
        // A whole hour is said without its minutes; other times with them.
        assert_eq!(scored_word_errors("every morning at five", "every morning at 5:00."), (0, 4));
        assert_eq!(scored_word_errors("at six fifteen", "at 6:15"), (0, 3));
        assert_eq!(scored_word_errors("at five", "at 5:0"), (1, 2), "not a whole hour");
        // A score or range between two numbers is said "to"; a hyphen elsewhere splits words.
        assert_eq!(scored_word_errors("voted five to two, three to one", "voted 5-2, 3–1"), (0, 7));
        assert_eq!(scored_word_errors("rock and roll", "rock-and-roll"), (0, 3));
        assert_eq!(scored_word_errors("the five two", "the 5-2"), (1, 3));
    }

    #[test]
    fn small_numbers_are_read_in_the_sentences_language() {
        assert_eq!(
            scored_word_errors_in("um acht uhr von gleis drei", "um 8 Uhr von Gleis 3.", "de"),
            (0, 6)
        );
        assert_eq!(scored_word_errors_in("à dix heures", "À 10 heures", "fr"), (0, 3));
        assert_eq!(scored_word_errors_in("dix-sept", "17", "fr"), (0, 2));
        // French hours as they are written.
        assert_eq!(scored_word_errors_in("à dix heures du soir", "À 10h du soir.", "fr"), (0, 5));
        assert_eq!(scored_word_errors_in("à une heure", "à 1h", "fr"), (0, 3));
        assert_eq!(scored_word_errors_in("à neuf heures", "à 9hz", "fr"), (1, 3), "not an hour");
        assert_eq!(scored_word_errors_in("um zehn heures", "um 10h", "de").0, 1, "French only");
        assert_eq!(scored_word_errors_in("a las nueve", "a las 9", "es"), (0, 3));
        // Larger numbers and decimals are left to the English spelling (and count as errors).
        assert_eq!(scored_word_errors_in("tres", "3,5", "es").0, 2);
        assert_eq!(scored_word_errors_in("at nine", "at 9", "en"), (0, 2));
        assert_eq!(scored_word_errors_in("acht", "8", "xx"), (1, 1));
    }

    #[test]
    fn character_errors_count_spaces() {
        assert_eq!(char_errors(&["AT NINE"], &["ATNINE"]), (1, 7));
        assert_eq!(char_errors(&["LIVE", "CITY HALL"], &["12:00:01", "CITY HALL", "LIVE"]), (0, 13));
        assert_eq!(char_errors(&["RISE"], &[]), (4, 4));
        assert_eq!(char_errors(&["New mayor sworn in"], &["New mayor sworn", "in"]), (3, 18));
    }

    #[test]
    fn changes_match_once_within_tolerance() {
        assert_eq!(match_changes(&[1000, 1040, 5000], &[1020, 3000], 50), (1, 2, 1));
        assert_eq!(match_changes(&[], &[10], 50), (0, 0, 1));
    }

    #[test]
    fn backgrounds_are_mixed_at_the_asked_level() {
        let voice: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let rms = speech_rms(&voice);
        let mut s = voice.clone();
        let n = s.len();
        mix(&mut s, &street_noise(n, 7), rms, 20.0);
        let noise: Vec<f32> = s.iter().zip(&voice).map(|(a, b)| a - b).collect();
        let n_rms = (noise.iter().map(|v| v * v).sum::<f32>() / noise.len() as f32).sqrt();
        let snr = 20.0 * (rms / n_rms).log10();
        assert!((snr - 20.0).abs() < 0.5, "SNR {snr}");
        assert_ne!(music_bed(1000, 1), music_bed(1000, 2));
    }
}
