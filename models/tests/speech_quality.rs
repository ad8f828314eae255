//! Speech-to-text quality on espeak-ng speech (the default voice at 150 words a minute, as the
//! project's test clips speak): Silero VAD finds the speech, Moonshine base transcribes it with the
//! configured beam search, as the speech inference actor does, and the word error rate over all
//! sentences must be at most 15 % (issue #4's goal).
//!
//! Measured: 14.1 % (10 errors in 71 words) at the default beam width 4; greedy decoding gives
//! 15.5 % and width 8 12.7 % (`make bench` sweeps the widths). The misses are espeak's "farmers
//! expect" and "a new exhibit", which Moonshine hears as "pharma neck spec" and "and you can't
//! leave it".

use sightline_models::{Moonshine, Runtime, SileroVad};
use sightline_settings::Config;
use sightline_settings::Task;
use sightline_testkit::quality::word_errors;
use sightline_testkit::{SPEECH_SENTENCES, speech_samples};

#[test]
fn word_error_rate_on_espeak_speech_is_at_most_15_percent() {
    let cfg = Config::load(None).unwrap();
    let m = &cfg.models;
    let rt = Runtime::load(&m.onnxruntime_lib()).unwrap();
    let mut vad = SileroVad::load(&rt, &m.task_files(Task::Vad).unwrap()[0]).unwrap();
    let stt_files = m.task_files(Task::Stt).unwrap();
    let mut stt = Moonshine::load(&rt, &stt_files[0], &stt_files[1], &stt_files[2], 2).unwrap();
    stt.set_beam_width(cfg.speech.beam_width);
    let (mut errors, mut total) = (0, 0);
    for sentence in SPEECH_SENTENCES {
        let samples = speech_samples(sentence).expect("espeak-ng and ffmpeg run (make setup installs them)");
        let regions =
            vad.speech_regions(&samples, cfg.speech.vad_threshold, cfg.speech.min_speech_ms).unwrap();
        assert!(!regions.is_empty(), "VAD found no speech in {sentence:?}");
        let heard: Vec<String> =
            regions.iter().map(|&(s, e)| stt.transcribe(&samples[s..e]).unwrap().text).collect();
        let heard = heard.join(" ");
        let (e, n) = word_errors(sentence, &heard);
        eprintln!("{e} of {n} words wrong: {sentence:?} heard as {heard:?}");
        errors += e;
        total += n;
    }
    let wer = errors as f64 / total as f64;
    eprintln!(
        "WER {:.1} % ({errors} errors in {total} words, beam width {})",
        wer * 100.0,
        cfg.speech.beam_width
    );
    assert!(wer <= 0.15, "word error rate {:.1} % is over the 15 % goal", wer * 100.0);
}
