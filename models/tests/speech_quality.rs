//! Speech-to-text quality on espeak-ng speech (the default voice at 150 words a minute, as the
//! project's test clips speak): Silero VAD finds the speech, Moonshine base transcribes it with the
//! configured beam search, as the speech inference actor does, and the word error rate over all
//! sentences must be at most 15 % (issue #4's goal).
//!
//! Measured: 5.6 % (4 errors in 71 words) at the default beam width 8 with re-hearing (below);
//! heard once 11.3 % (8 errors), 14.1 % at width 4, greedy decoding 15.5 % (`make bench` sweeps
//! the widths). Heard once, the misses were espeak's "farmers expect" and "a new exhibit", which
//! Moonshine heard as "pharma neck spec" and "and you can't leave it".
//!
//! And on a real recorded reading (the opening of "A Tale of Two Cities", 44 s, from
//! moonshine-voice's package; `make setup` fetches it), scored after `make quality`'s
//! normalisation: at most 8 % (issue #13's English goal). Measured: 0.0 % (0 errors in 119 words;
//! 1.7 % before the silence around utterances, below: "the season" heard twice as "a season");
//! `make quality`, which cuts the audio into ingest's segments first as the pool gets it, 3.4 %.
//!
//! And on `make quality`'s English sentences (every fifth) spoken by SVOX Pico's American and
//! British voices, a synthesiser closer to natural speech than espeak-ng: at most 8 %. Measured:
//! 4.3 % re-heard (10 errors in 234 words); heard once 5.1 % (12 errors; "rescued a cat from a
//! tree" heard as "rescue the cat from the tree" by both voices).
//!
//! And with `speech.denoise`'s spectral subtraction (the noise measured outside what VAD heard),
//! Pico's American voice over street noise (15 dB SNR, every fifth sentence) is heard with at least
//! 3 fewer word errors than without. Measured: 17.9 % → 13.7 % re-heard (21 → 16 errors in 117
//! words; before the silence around utterances 31.6 % → 21.4 %).
//!
//! And re-hearing (`speech.rehear_stretches`: an unsure utterance transcribed again 1.05 times
//! as long, with `speech.rehear_trail_silence_ms` after it) and choosing what the hearings agree
//! on (`speech.rehear_candidates`: each hearing's best transcripts scored under every hearing)
//! takes at least 6 word errors out of espeak-ng's five voices (every fifth sentence of `make
//! quality`'s set), at least 3 more than keeping the most confident hearing's transcript, and
//! Whisper judging the candidates too (`speech.rehear_judge_weight` 0.3) takes out at least one
//! more; with no time left for the judge, the hearings' choice stands. Measured as shipped: 46
//! errors in 585 words heard once, 44 keeping the most confident, 35 agreed, 33 judged (7.9 /
//! 7.5 / 6.0 / 5.6 %); with the copies 1.05 and 1.1, 46 / 42 / 37 (36 with each hearing's best 4). A hearing scores its own transcript, forced through
//! the decoder, as its beam did (0.820 against 0.825), and the transcript reversed far lower.
//! Before the agreement: 7.9 % → 7.2 % (46 → 42 errors in 585 words; the same with
//! the stretches 0.9 and 1.1, the default until 2026-12-04, which over all 56 sentences make
//! 10.9 % against 10.0 %). Before utterances were heard with silence around them
//! (below), it took 34 → 25 errors out of the Scottish and Caribbean voices alone (the two
//! Moonshine hears worst); the silence takes out most of what re-hearing did there (22 → 20).
//!
//! And fast speech heard again slowed further (`speech.rehear_fast_stretches`: an utterance
//! re-heard whose first transcript runs faster than `speech.rehear_fast_above` letters a second is
//! heard 1.4 times as long too) takes at least 4 word errors out of espeak-ng's five voices at 190
//! words a minute (every fifth sentence, Whisper judging as the pool does when ahead). Measured:
//! 59 → 52 errors in 585 words (10.1 → 8.9 %); over all 56 sentences 352 → 297 in 2635.
//!
//! And the silence Moonshine hears around each utterance (`speech.lead_silence_ms`,
//! `speech.trail_silence_ms`) takes at least 10 word errors out of espeak-ng's five voices heard
//! once (every fifth sentence). Measured: 10.6 % → 7.9 % (62 → 46 errors in 585 words).

use sightline_models::{DenoiseParams, Denoiser, Moonshine, Runtime, SileroVad, Whisper};
use sightline_settings::Config;
use sightline_settings::Task;
use sightline_testkit::quality::{
    Acoustic, SpeechCase, quality_lines, recorded_passages, scored_word_errors, speech_case_samples,
    word_errors,
};
use sightline_testkit::{SPEECH_SENTENCES, speech_samples};

/// The shipped configuration, Silero VAD and Moonshine at its beam width, as the speech pool runs them.
fn speech_models() -> (Config, SileroVad, Moonshine) {
    let cfg = Config::load(None).unwrap();
    let m = &cfg.models;
    let rt = Runtime::load(&m.onnxruntime_lib()).unwrap();
    let vad = SileroVad::load(&rt, &m.task_files(Task::Vad).unwrap()[0]).unwrap();
    // The files the speech pool hears with on this runtime (8-bit matrix multiplications on the CPU).
    let stt_files = m.task_files_on(Task::Stt, rt.provider().is_cpu()).unwrap();
    let mut stt = Moonshine::load(&rt, &stt_files[0], &stt_files[1], &stt_files[2], 2).unwrap();
    stt.configure(&cfg.speech);
    (cfg, vad, stt)
}

#[test]
fn word_error_rate_on_espeak_speech_is_at_most_15_percent() {
    let (cfg, mut vad, mut stt) = speech_models();
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

#[test]
fn word_error_rate_on_a_real_recorded_reading_is_at_most_8_percent() {
    let (cfg, mut vad, mut stt) = speech_models();
    let passages = recorded_passages().expect("the recorded reading (make setup fetches it)");
    assert!(!passages.is_empty());
    for (file, text, audio) in passages {
        let regions = vad.speech_regions(&audio, cfg.speech.vad_threshold, cfg.speech.min_speech_ms).unwrap();
        assert!(
            regions.len() > 3,
            "{file}: a reading of {} s is more than a few utterances",
            audio.len() / 16000
        );
        let heard: Vec<String> =
            regions.iter().map(|&(s, e)| stt.transcribe(&audio[s..e]).unwrap().text).collect();
        let heard = heard.join(" ");
        let (errors, words) = scored_word_errors(&text, &heard);
        let wer = errors as f64 / words as f64;
        eprintln!("{file}: WER {:.1} % ({errors} of {words} words), heard {heard:?}", wer * 100.0);
        assert!(wer <= 0.08, "{file}: word error rate {:.1} % is over the 8 % goal", wer * 100.0);
    }
}

#[test]
fn word_error_rate_on_pico_voices_is_at_most_8_percent() {
    let (cfg, mut vad, mut stt) = speech_models();
    let lines: Vec<String> = quality_lines("sentences.txt").unwrap().into_iter().step_by(5).collect();
    let (mut errors, mut total) = (0, 0);
    for voice in ["pico-en-US", "pico-en-GB"] {
        let case = SpeechCase { voice: voice.into(), rate: 150, acoustic: Acoustic::Clean };
        for (i, line) in lines.iter().enumerate() {
            let audio =
                speech_case_samples(line, &case, i as u64 + 1).expect("SVOX Pico (make setup fetches it)");
            let regions =
                vad.speech_regions(&audio, cfg.speech.vad_threshold, cfg.speech.min_speech_ms).unwrap();
            let heard: Vec<String> =
                regions.iter().map(|&(s, e)| stt.transcribe(&audio[s..e]).unwrap().text).collect();
            let (e, n) = scored_word_errors(line, &heard.join(" "));
            if e > 0 {
                eprintln!("{voice}: {e} of {n} words wrong: {line:?} heard as {heard:?}");
            }
            errors += e;
            total += n;
        }
    }
    let wer = errors as f64 / total as f64;
    eprintln!("Pico voices: WER {:.1} % ({errors} errors in {total} words)", wer * 100.0);
    assert!(total > 200, "{total} words heard: the subset is the sentences of both voices");
    assert!(wer <= 0.08, "word error rate {:.1} % on Pico's voices is over the 8 % goal", wer * 100.0);
}

#[test]
fn rehearing_takes_errors_out_of_espeak_ngs_voices() {
    let (cfg, mut vad, mut stt) = speech_models();
    assert!(!cfg.speech.rehear_stretches.is_empty(), "the shipped config re-hears");
    assert!(cfg.speech.rehear_candidates > 0, "the shipped config scores the hearings' transcripts");
    assert!(cfg.speech.judges_rehearing(), "the shipped config judges re-heard English with Whisper");
    let rt = Runtime::load(&cfg.models.onnxruntime_lib()).unwrap();
    let f = cfg.models.task_files(Task::SttMultilingual).unwrap();
    let mut judge = Some(Whisper::load(&rt, &f[0], &f[1], &f[2], &f[3], 2).unwrap());
    judge.as_mut().unwrap().configure_as_judge(&cfg.speech);
    let (weight, top) = (cfg.speech.rehear_judge_weight, cfg.speech.rehear_judge_candidates);
    let (mut once, mut confident, mut agreed, mut judged, mut total) = (0, 0, 0, 0, 0);
    let (mut runs, mut late) = (0, None);
    five_espeak_voices(&cfg, &mut vad, |voice, line, audio, regions| {
        stt.set_judge(judge.take(), weight, top);
        let (j, n) = heard_errors(&mut stt, line, audio, regions);
        runs += stt.judge_stats().judged;
        // With no time left for the judge (until one sentence is re-heard so): the hearings'
        // choice stands, counted.
        let past = late.is_none().then(|| {
            stt.set_extra_until(Some(std::time::Instant::now()));
            let before = stt.judge_stats();
            let (e, _) = heard_errors(&mut stt, line, audio, regions);
            let after = stt.judge_stats();
            (e, after.judged - before.judged, after.no_room - before.no_room)
        });
        judge = stt.take_judge();
        let (a, _) = heard_errors(&mut stt, line, audio, regions);
        if let Some((e, ran, no_room)) = past.filter(|p| p.2 > 0) {
            late = Some((e, a, ran, no_room));
        }
        stt.set_rehear_candidates(0);
        let (c, _) = heard_errors(&mut stt, line, audio, regions);
        stt.set_rehearing(&[], 0.0);
        let (o, _) = heard_errors(&mut stt, line, audio, regions);
        stt.configure(&cfg.speech);
        eprintln!(
            "{voice}: {o} / {c} / {a} / {j} of {n} words wrong heard once / re-heard, most confident / \
             re-heard, agreed / agreed and judged by Whisper: {line:?}"
        );
        (once, confident, agreed, judged, total) =
            (once + o, confident + c, agreed + a, judged + j, total + n);
    });
    let rate = |e: usize| e as f64 * 100.0 / total as f64;
    // Measured 46 / 44 / 35 / 33 of 585 words as shipped since 2026-12-04 23:45 UTC (one copy
    // 1.05 times as long, two candidates a hearing and their hybrids; Whisper judging the best 4
    // at weight 0.3 over an 8 s window); with the copies 1.05 and 1.1 and a 15 s window,
    // 46 / 42 / 36 / 34. On all 56 sentences: 228 errors in 2635 words then, 212 now.
    eprintln!(
        "espeak-ng's five voices: WER {:.1} % heard once, {:.1} % re-heard keeping the most \
         confident hearing, {:.1} % keeping what the hearings agree on, {:.1} % judged by Whisper too",
        rate(once),
        rate(confident),
        rate(agreed),
        rate(judged)
    );
    assert!(total > 500, "{total} words");
    assert!(confident <= once, "re-hearing: {confident} errors against {once} of {total} words");
    assert!(agreed + 6 <= once, "re-hearing, agreed: {agreed} errors against {once} of {total} heard once");
    assert!(agreed + 3 <= confident, "agreement: {agreed} errors against {confident} most confident");
    assert!(judged < agreed, "Whisper judging: {judged} errors against {agreed} agreed");
    assert!(runs > 0, "the judge ran without a time bound");
    let (e, a, ran, no_room) = late.expect("a sentence re-heard with no time left for the judge, counted");
    assert_eq!(
        (ran, e),
        (0, a),
        "no time left ({no_room} utterances): the judge does not run, the hearings' choice stands"
    );
}

#[test]
fn a_hearing_bears_out_its_own_transcript_and_not_a_garbled_one() {
    let (cfg, mut vad, mut stt) = speech_models();
    stt.set_rehearing(&[], 0.0);
    let sentence = SPEECH_SENTENCES[0];
    let samples = speech_samples(sentence).expect("espeak-ng and ffmpeg run (make setup installs them)");
    let (s, e) = vad.speech_regions(&samples, cfg.speech.vad_threshold, cfg.speech.min_speech_ms).unwrap()[0];
    let heard = stt.transcribe(&samples[s..e]).unwrap();
    assert!(heard.tokens.len() >= 4, "{heard:?}");
    let reversed: Vec<u32> = heard.tokens.iter().rev().copied().collect();
    let short = heard.tokens[..heard.tokens.len() - 2].to_vec();
    let scores = stt.score(&samples[s..e], &[heard.tokens.clone(), reversed, Vec::new(), short]).unwrap();
    eprintln!("{:?}: confidence {:.3}, forced {scores:?}", heard.text, heard.confidence);
    // The same hearing, step by step in the beam or forced through all at once: the same
    // probabilities up to the 8-bit decoder's rounding (its activations are quantised per run),
    // the end token's (which the beam's confidence leaves out) with them.
    assert!((scores[0] - heard.confidence).abs() < 0.05, "{} against {}", scores[0], heard.confidence);
    assert!(scores[1] + 0.3 < scores[0], "the reversed transcript scored {}", scores[1]);
    assert_eq!(scores[2], 0.0, "an empty transcript");
    // Stopping two tokens short: what is left is as likely as before, but the end comes early.
    assert!(
        scores[3] + 0.02 < scores[0],
        "the transcript cut short scored {} against {}",
        scores[3],
        scores[0]
    );
    let err = stt.score(&samples[s..e], &[vec![heard.tokens[0], u32::MAX]]).unwrap_err().to_string();
    assert!(err.contains("outside the vocabulary"), "{err}");
}

#[test]
fn denoising_takes_street_noise_out_of_what_moonshine_hears() {
    let (cfg, mut vad, mut stt) = speech_models();
    let denoiser = Denoiser::new(DenoiseParams::default());
    let lines: Vec<String> = quality_lines("sentences.txt").unwrap().into_iter().step_by(5).collect();
    let case = SpeechCase { voice: "pico-en-US".into(), rate: 150, acoustic: Acoustic::Noise(15.0) };
    let (mut raw, mut clean, mut total) = (0, 0, 0);
    for (i, line) in lines.iter().enumerate() {
        let audio =
            speech_case_samples(line, &case, i as u64 + 1).expect("SVOX Pico (make setup fetches it)");
        // As the speech pool: VAD on the audio as it came, each utterance transcribed from the
        // audio as it came or denoised (the noise measured outside the utterances).
        let regions = vad.speech_regions(&audio, cfg.speech.vad_threshold, cfg.speech.min_speech_ms).unwrap();
        let (e, n) = heard_errors(&mut stt, line, &audio, &regions);
        let (d, _) = heard_errors(&mut stt, line, &denoiser.denoise_around(&audio, &regions), &regions);
        eprintln!("{e} / {d} of {n} words wrong without / with denoising: {line:?}");
        (raw, clean, total) = (raw + e, clean + d, total + n);
    }
    let rate = |e: usize| e as f64 * 100.0 / total as f64;
    eprintln!("Pico en-US over street noise: WER {:.1} % raw, {:.1} % denoised", rate(raw), rate(clean));
    assert!(total > 100, "{total} words");
    assert!(clean + 3 <= raw, "denoising: {clean} errors against {raw} of {total} words, not 3 fewer");
}

#[test]
fn silence_around_each_utterance_takes_errors_out_of_what_moonshine_hears() {
    let (cfg, mut vad, mut stt) = speech_models();
    assert!(cfg.speech.lead_silence_ms > 0 && cfg.speech.trail_silence_ms > 0, "the shipped config pads");
    // Heard once, as the pool hears when it is not ahead, so that re-hearing does not hide it.
    stt.set_rehearing(&[], 0.0);
    let silence = cfg.speech.silence_samples();
    let (padded, bare, total) = errors_with_and_without(
        &cfg,
        (&mut vad, &mut stt),
        (&FIVE_VOICES, 150),
        ("as cut", |stt| stt.set_silence(0, 0, 0)),
        ("with silence around", |stt| stt.set_silence(silence.0, silence.1, silence.2)),
    );
    assert!(total > 500, "{total} words");
    assert!(
        padded + 10 <= bare,
        "silence around: {padded} errors against {bare} of {total} words, not 10 fewer"
    );
}

#[test]
fn fast_speech_is_heard_better_slowed_further() {
    let (cfg, mut vad, mut stt) = speech_models();
    let s = &cfg.speech;
    assert!(!s.rehear_fast_stretches.is_empty(), "the shipped config hears fast speech more");
    // As the pool hears when ahead: Whisper judges the re-heard utterances (without a time bound).
    let rt = Runtime::load(&cfg.models.onnxruntime_lib()).unwrap();
    let f = cfg.models.task_files(Task::SttMultilingual).unwrap();
    let mut judge = Whisper::load(&rt, &f[0], &f[1], &f[2], &f[3], 2).unwrap();
    judge.configure_as_judge(s);
    stt.set_judge(Some(judge), s.rehear_judge_weight, s.rehear_judge_candidates);
    let (paced, unpaced, total) = errors_with_and_without(
        &cfg,
        (&mut vad, &mut stt),
        (&FIVE_VOICES, 190),
        ("re-heard", |stt| stt.set_paced_rehearing(&[], 0.0, &[], 0.0)),
        ("slowed further too", |stt| stt.configure(s)),
    );
    assert!(total > 500, "{total} words");
    assert!(
        paced + 4 <= unpaced,
        "fast speech: {paced} errors slowed further too against {unpaced}, not 4 fewer"
    );
}

/// Word errors over every fifth sentence of `voices` at `rate` words a minute as `stt` hears
/// them configured, and after `without` changes it (`with` changing it back), each sentence
/// heard both ways: (errors configured, errors without, words). Both rates are printed.
fn errors_with_and_without(
    cfg: &Config,
    (vad, stt): (&mut SileroVad, &mut Moonshine),
    (voices, rate): (&[&str], u32),
    (without_name, without): (&str, impl Fn(&mut Moonshine)),
    (with_name, with): (&str, impl Fn(&mut Moonshine)),
) -> (usize, usize, usize) {
    let (mut on, mut off, mut total) = (0, 0, 0);
    espeak_voices(cfg, vad, voices, rate, |voice, line, audio, regions| {
        let (e, n) = heard_errors(stt, line, audio, regions);
        without(stt);
        let (o, _) = heard_errors(stt, line, audio, regions);
        with(stt);
        eprintln!("{voice}@{rate}: {o} / {e} of {n} words wrong {without_name} / {with_name}: {line:?}");
        (on, off, total) = (on + e, off + o, total + n);
    });
    let wer = |e: usize| e as f64 * 100.0 / total as f64;
    eprintln!("{voices:?} at {rate}: WER {:.1} % {without_name}, {:.1} % {with_name}", wer(off), wer(on));
    (on, off, total)
}

/// The espeak-ng voices of `make quality`'s English set.
const FIVE_VOICES: [&str; 5] = ["en-us", "en-gb", "en-us+f3", "en-gb-scotland", "en-029"];

/// Every fifth of `make quality`'s English sentences in each of espeak-ng's five voices, clean,
/// at 150 words a minute: see [`espeak_voices`].
fn five_espeak_voices(
    cfg: &Config,
    vad: &mut SileroVad,
    each: impl FnMut(&str, &str, &[f32], &[(usize, usize)]),
) {
    espeak_voices(cfg, vad, &FIVE_VOICES, 150, each);
}

/// Every fifth of `make quality`'s English sentences in each of espeak-ng's `voices`, clean, at
/// `rate` words a minute: `each` gets the voice, the sentence, its audio (denoised when
/// `speech.denoise` is on, as the speech pool hears it) and the utterances Silero VAD found in it.
fn espeak_voices(
    cfg: &Config,
    vad: &mut SileroVad,
    voices: &[&str],
    rate: u32,
    mut each: impl FnMut(&str, &str, &[f32], &[(usize, usize)]),
) {
    let denoiser = cfg.speech.denoise.then(|| Denoiser::new(DenoiseParams::default()));
    let lines: Vec<String> = quality_lines("sentences.txt").unwrap().into_iter().step_by(5).collect();
    for &voice in voices {
        let case = SpeechCase { voice: voice.into(), rate, acoustic: Acoustic::Clean };
        for (i, line) in lines.iter().enumerate() {
            let audio = speech_case_samples(line, &case, i as u64 + 1).expect("espeak-ng (make setup)");
            let regions =
                vad.speech_regions(&audio, cfg.speech.vad_threshold, cfg.speech.min_speech_ms).unwrap();
            let audio = match &denoiser {
                Some(d) => d.denoise_around(&audio, &regions),
                None => audio,
            };
            each(voice, line, &audio, &regions);
        }
    }
}

/// Word errors in `line` as `stt` hears the utterances `regions` of `audio`, and its words.
fn heard_errors(
    stt: &mut Moonshine,
    line: &str,
    audio: &[f32],
    regions: &[(usize, usize)],
) -> (usize, usize) {
    let heard: Vec<String> =
        regions.iter().map(|&(s, e)| stt.transcribe(&audio[s..e]).unwrap().text).collect();
    scored_word_errors(line, &heard.join(" "))
}
