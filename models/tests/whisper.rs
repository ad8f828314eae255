//! Whisper base (multilingual, converted from the CTranslate2 weights by scripts/convert-whisper.py)
//! on a fixed subset of the speech evaluation sets: every fifth sentence of the German, French and
//! Spanish sets and every tenth of the English one, spoken at 130 words a minute by MBROLA voices
//! (us1, de2, fr4; Spanish es1 on every second sentence, its unstressed vowels mapped by the test
//! kit so MBROLA speaks them), by espeak-ng's own Spanish voice and by SVOX Pico's Spanish voice. Language identification among the four languages,
//! then the transcript in the identified language, greedy, over the configured window (15 s), as
//! the speech actor runs them. `make quality` measures every
//! sentence, voice, decoding mode and Moonshine beside it.
//!
//! Measured here (15 s window): language right 38 of 38 but one Spanish item (heard as English);
//! WER German 5.3 %, French 13.2 %, English 35.6 % (six MBROLA us1 sentences, greedy), Spanish
//! 60.5 % on espeak-ng's voice (hard to understand), 8.1 % on Pico's, and on MBROLA es1 (beam 4,
//! ten sentences) what `make quality` reports. Re-hearing, on every second French sentence of
//! both MBROLA voices at beam 4: 45 → 39 word errors in 182 words.

use sightline_models::{Runtime, Whisper};
use sightline_settings::{Config, Task};
use sightline_testkit::quality::{quality_lines, scored_word_errors_in, speak};

fn whisper() -> Whisper {
    let cfg = Config::load(None).unwrap();
    let m = &cfg.models;
    let rt = Runtime::load(&m.onnxruntime_lib()).unwrap();
    let f = m.task_files(Task::SttMultilingual).unwrap();
    let mut w = Whisper::load(&rt, &f[0], &f[1], &f[2], &f[3], 2).expect("Whisper converted by make setup");
    // The window the speech pool gives it (`speech.multilingual_window_s`).
    w.set_window(cfg.speech.multilingual_window_s);
    w
}

/// A sentence in `voice` with 0.4 s of silence either side.
fn spoken(text: &str, voice: &str) -> Vec<f32> {
    let quiet = vec![0f32; 6400];
    let voice = speak(text, voice, 130).expect("espeak-ng with the MBROLA voices (make setup)");
    quiet.iter().chain(&voice).chain(&quiet).copied().collect()
}

#[test]
fn languages_are_identified_and_transcribed_in_them() {
    let mut w = whisper();
    let allowed: Vec<String> = ["en", "es", "de", "fr"].map(String::from).to_vec();
    // (language, voice, set, every nth sentence, beam width, most word errors, fewest right
    // identifications)
    let sets = [
        ("en", "mb-us1", "sentences.txt", 10, 1, 0.45, 1.0),
        ("de", "mb-de2", "sentences-de.txt", 5, 1, 0.20, 1.0),
        ("fr", "mb-fr4", "sentences-fr.txt", 5, 1, 0.20, 1.0),
        // espeak-ng's own Spanish voice: not at the 20 % goal, a regression guard.
        ("es", "es", "sentences-es.txt", 5, 1, 0.70, 0.75),
        // MBROLA's es1, as the speech pool hears it (`speech.multilingual_beam_width` 4): the 20 %
        // goal (make quality: 11.8 % on these ten sentences, 18.3 % greedy).
        ("es", "mb-es1", "sentences-es.txt", 2, 4, 0.20, 1.0),
        // SVOX Pico's Spanish voice, closer to natural speech.
        ("es", "pico-es-ES", "sentences-es.txt", 5, 1, 0.20, 1.0),
    ];
    for (lang, voice, file, every, beam, max_wer, min_lid) in sets {
        w.set_beam_width(beam);
        let lines: Vec<String> = quality_lines(file).unwrap().into_iter().step_by(every).collect();
        let audio: Vec<Vec<f32>> = lines.iter().map(|l| spoken(l, voice)).collect();
        let segs: Vec<&[f32]> = audio.iter().map(Vec::as_slice).collect();
        let out = w.transcribe_batch(&segs, &allowed).unwrap();
        assert_eq!(out.len(), lines.len(), "one result per utterance");
        let (mut errors, mut words, mut right) = (0, 0, 0);
        for (line, (t, l)) in lines.iter().zip(&out) {
            let (e, n) = scored_word_errors_in(line, &t.text, lang);
            eprintln!("{lang} heard as {} ({:.2}), {e}/{n} wrong: {:?}", l.code, l.probability, t.text);
            assert!((0.0..=1.0).contains(&l.probability) && (0.0..=1.0).contains(&t.confidence));
            errors += e;
            words += n;
            right += (l.code == lang) as usize;
        }
        let wer = errors as f64 / words as f64;
        let lid = right as f64 / lines.len() as f64;
        eprintln!("{lang}: language right {right}/{}, WER {:.1} %", lines.len(), wer * 100.0);
        assert!(lid >= min_lid, "{lang}: language identified in {right} of {} items", lines.len());
        assert!(wer <= max_wer, "{lang}: word error rate {:.1} % over {:.0} %", wer * 100.0, max_wer * 100.0);
    }
}

#[test]
fn a_single_allowed_language_is_taken_as_given_and_bad_input_is_refused() {
    let mut w = whisper();
    assert!(w.knows("de") && w.knows("fr") && !w.knows("xx"));
    assert!(w.languages().count() >= 99, "Whisper's 99 languages");
    let line = &quality_lines("sentences-de.txt").unwrap()[2];
    let audio = spoken(line, "mb-de2");
    let out = w.transcribe_batch(&[&audio], &["de".to_string()]).unwrap();
    assert_eq!((out[0].1.code.as_str(), out[0].1.probability), ("de", 1.0));
    assert!(scored_word_errors_in(line, &out[0].0.text, "de").0 <= 2, "{:?}", out[0].0.text);
    // Beam search gives a transcript at least as close here.
    w.set_beam_width(4);
    let beam = w.transcribe_batch(&[&audio], &["de".to_string()]).unwrap();
    assert!(scored_word_errors_in(line, &beam[0].0.text, "de").0 <= 2, "{:?}", beam[0].0.text);
    let short = vec![0f32; 1000];
    let long = vec![0f32; 31 * 16_000];
    for bad in [&short[..], &long[..]] {
        let err = w.transcribe_batch(&[bad], &[]).expect_err("refused").to_string();
        assert!(err.contains("0.25 s to 30 s"), "{err}");
    }
    let err = w.transcribe_batch(&[&audio], &["xx".to_string(), "yy".to_string()]).err().unwrap().to_string();
    assert!(err.contains("none of the languages"), "{err}");
    // Re-hearing an utterance near the 30 s limit hears the stretched copies that fit, and
    // leaves out the one that would not (1.1 × 29 s), instead of failing the utterance.
    w.set_rehearing(&[0.9, 1.1], 1.0);
    let near_limit: Vec<f32> = audio.iter().cycle().take(29 * 16_000).copied().collect();
    let out = w.transcribe_batch(&[&near_limit], &["de".to_string()]).expect("heard, re-heard where it fits");
    assert!(!out[0].0.text.is_empty());
    // One encoding per utterance, or a clear error.
    let enc = w.encode(&[&audio]).unwrap();
    let err = w.decode_segments(&[&audio, &audio], &enc, &["de", "de"]).err().unwrap().to_string();
    assert!(err.contains("one encoding per utterance"), "{err}");
}

/// Re-hearing (`speech.multilingual_rehear_stretches` below `speech.rehear_below`, as the
/// speech pool hears with room to spare): French on
/// MBROLA's two French voices, every second sentence, beam 4, heard once and then with each
/// unsure utterance heard again at 0.9 and 1.1 times its length. `make quality` over all twenty
/// sentences: 19.7 → 17.6 %.
#[test]
fn rehearing_takes_errors_out_of_french() {
    let cfg = Config::load(None).unwrap();
    let mut w = whisper();
    w.set_beam_width(4);
    let lines: Vec<String> = quality_lines("sentences-fr.txt").unwrap().into_iter().step_by(2).collect();
    let audio: Vec<Vec<f32>> =
        ["mb-fr1", "mb-fr4"].iter().flat_map(|v| lines.iter().map(|l| spoken(l, v))).collect();
    let segs: Vec<&[f32]> = audio.iter().map(Vec::as_slice).collect();
    let french = ["fr".to_string()];
    let errors = |w: &mut Whisper| -> (usize, usize) {
        let heard = w.transcribe_batch(&segs, &french).unwrap();
        assert_eq!(heard.len(), segs.len(), "one result per utterance");
        lines.iter().cycle().zip(&heard).fold((0, 0), |(e, n), (line, (t, _))| {
            let (le, ln) = scored_word_errors_in(line, &t.text, "fr");
            eprintln!("{le}/{ln} wrong ({:.2}): {:?}", t.confidence, t.text);
            (e + le, n + ln)
        })
    };
    let (once, words) = errors(&mut w);
    let (stretches, below) = (&cfg.speech.multilingual_rehear_stretches[..], cfg.speech.rehear_below);
    assert!(!stretches.is_empty() && below > 0.0, "the shipped config re-hears");
    w.set_rehearing(stretches, below);
    assert_eq!(w.rehearing(), (stretches, below));
    let (again, _) = errors(&mut w);
    eprintln!("French, {words} words: heard once {once} errors, re-heard {again}");
    assert!(again + 4 <= once, "re-hearing: {once} -> {again} errors in {words} words");
}

/// Whisper as a judge of another model's transcripts (`speech.rehear_judge_weight`): a text in
/// Whisper's own tokens (its transcripts re-encoded give their tokens back), scored by forcing
/// the decoder through it; what was said scores above a transcript one word off, and that above
/// another sentence.
#[test]
fn transcripts_are_judged_by_forcing_whisper_through_them() {
    let mut w = whisper();
    let lines: Vec<String> = quality_lines("sentences.txt").unwrap().into_iter().step_by(14).collect();
    let english = ["en".to_string()];
    for (k, line) in lines.iter().enumerate() {
        let audio = spoken(line, "pico-en-US");
        let (heard, _) = w.transcribe_batch(&[&audio], &english).unwrap().remove(0);
        assert_eq!(w.text_tokens(&heard.text), heard.tokens, "{:?} re-encoded", heard.text);
        // One word changed: its first letter moved to the end ("planning" -> "lanningp").
        let words: Vec<&str> = line.split(' ').collect();
        let swapped = format!("{}{}", &words[1][1..], &words[1][..1]);
        let one_off =
            [words[0], &swapped].into_iter().chain(words[2..].iter().copied()).collect::<Vec<_>>().join(" ");
        let other = lines[(k + 1) % lines.len()].clone();
        let texts = [line.clone(), one_off.clone(), other, String::new()];
        let s = w.score_texts(&audio, "en", &texts).unwrap();
        eprintln!("{line:?}: {s:?} ({one_off:?})");
        assert!(
            s[0] > s[1] && s[1] > s[2],
            "said {:.3}, one word off {:.3}, another sentence {:.3}",
            s[0],
            s[1],
            s[2]
        );
        assert!(s[0] > 0.5 && s[2] < 0.5, "{s:?}");
        assert_eq!(s[3], 0.0, "an empty text scores 0");
    }
    let err = w.score_texts(&[0.0; 100], "en", &["a".into()]).unwrap_err().to_string();
    assert!(err.contains("0.25 s to 30 s"), "{err}");
    assert!(w.score_texts(&[0.0; 8000], "xx", &["a".into()]).is_err(), "an unknown language");
}
