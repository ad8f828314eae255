//! Speech-to-text quality on espeak-ng speech (the default voice at 150 words a minute, as the
//! project's test clips speak): Silero VAD finds the speech, Moonshine base transcribes it, as the
//! speech inference actor does, and the word error rate over all sentences is measured.
//!
//! Issue #4 sets the goal at 15 %. Measured here: 15.5 % (11 errors in 71 words; Moonshine hears
//! espeak's "farmers expect" as "pharma-spec" and "a new exhibit" as "and you can't leave it").
//! The assertion guards against regressions at 20 % rather than claiming the goal; the rate is
//! printed on every run.

use sightline_models::{Moonshine, Runtime, SileroVad};
use sightline_settings::Config;
use sightline_streams::testsrc::speech_samples;

const SENTENCES: [&str; 10] = [
    "the quick brown fox jumps over the lazy dog",
    "live video becomes searchable while it plays",
    "we report the news from the city",
    "the orchestra played a quiet song",
    "farmers expect rain later this week",
    "the museum opens a new exhibit",
    "the council will vote on the new budget tomorrow",
    "heavy traffic is slowing the morning commute",
    "our reporter is standing outside the stadium",
    "scientists discovered water on a distant planet",
];

fn words(s: &str) -> Vec<String> {
    s.to_lowercase()
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Word-level edit distance (substitutions, insertions, deletions).
fn edits(reference: &[String], hypothesis: &[String]) -> usize {
    let mut row: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let sub = prev + (r != h) as usize;
            prev = row[j + 1];
            row[j + 1] = sub.min(row[j] + 1).min(prev + 1);
        }
    }
    row[hypothesis.len()]
}

#[test]
fn word_error_rate_on_espeak_speech_stays_below_20_percent() {
    assert_eq!(edits(&words("a b c"), &words("a x c d")), 2);
    let cfg = Config::load(None).unwrap();
    let m = &cfg.models;
    let rt = Runtime::load(&m.onnxruntime_lib()).unwrap();
    let mut vad = SileroVad::load(&rt, &m.task_files("vad").unwrap()[0]).unwrap();
    let stt_files = m.task_files("stt").unwrap();
    let mut stt = Moonshine::load(&rt, &stt_files[0], &stt_files[1], &stt_files[2], 2).unwrap();
    let (mut errors, mut total) = (0, 0);
    for sentence in SENTENCES {
        let samples = speech_samples(sentence).expect("espeak-ng and ffmpeg run (make setup installs them)");
        let regions =
            vad.speech_regions(&samples, cfg.speech.vad_threshold, cfg.speech.min_speech_ms).unwrap();
        assert!(!regions.is_empty(), "VAD found no speech in {sentence:?}");
        let heard: Vec<String> =
            regions.iter().map(|&(s, e)| stt.transcribe(&samples[s..e]).unwrap().text).collect();
        let heard = heard.join(" ");
        let (r, h) = (words(sentence), words(&heard));
        let e = edits(&r, &h);
        eprintln!("{e} of {} words wrong: {sentence:?} heard as {heard:?}", r.len());
        errors += e;
        total += r.len();
    }
    let wer = errors as f64 / total as f64;
    eprintln!("WER {:.1} % ({errors} errors in {total} words)", wer * 100.0);
    assert!(wer <= 0.20, "word error rate {:.1} %", wer * 100.0);
}
