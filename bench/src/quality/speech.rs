//! English speech against the evaluation sentences: word error rate per espeak-ng voice, speaking
//! rate and background (noise, music bed), MBROLA and Pico voices beside them, Silero VAD +
//! Moonshine as the speech pool runs them (beam and greedy, `speech.denoise` both ways, re-heard
//! and heard once), and the real-time factor.

use super::{Tally, bar};
use anyhow::Result;
use sightline_models::{DenoiseParams, Denoiser, Moonshine, Runtime, SileroVad, Whisper};
use sightline_settings::{Config, Task};
use sightline_testkit::quality::{
    Acoustic, SpeechCase, quality_lines, scored_word_errors, speech_case_samples,
};
use std::fmt::Write as _;
use std::time::Instant;

fn speech_cases() -> Vec<(SpeechCase, &'static str)> {
    let c = |voice: &str, rate, acoustic| SpeechCase { voice: voice.into(), rate, acoustic };
    vec![
        (c("en-us", 150, Acoustic::Clean), "voices"),
        (c("en-gb", 150, Acoustic::Clean), "voices"),
        (c("en-gb-scotland", 150, Acoustic::Clean), "voices"),
        (c("en-029", 150, Acoustic::Clean), "voices"),
        (c("en-us+f3", 150, Acoustic::Clean), "voices"),
        (c("en-us", 120, Acoustic::Clean), "rates"),
        (c("en-us", 190, Acoustic::Clean), "rates"),
        (c("en-us", 150, Acoustic::Noise(15.0)), "backgrounds"),
        (c("en-gb", 150, Acoustic::Noise(15.0)), "backgrounds"),
        (c("en-us", 150, Acoustic::Music(15.0)), "backgrounds"),
        (c("en-gb", 150, Acoustic::Music(15.0)), "backgrounds"),
        (c("pico-en-US", 150, Acoustic::Clean), "other synthesisers"),
        (c("pico-en-GB", 150, Acoustic::Clean), "other synthesisers"),
        (c("mb-us1", 150, Acoustic::Clean), "other synthesisers"),
        (c("mb-en1", 150, Acoustic::Clean), "other synthesisers"),
        (c("pico-en-US", 150, Acoustic::Noise(15.0)), "other backgrounds"),
        (c("pico-en-GB", 150, Acoustic::Music(15.0)), "other backgrounds"),
    ]
}

/// The speech pool's English models as configured (Silero VAD, Moonshine) and its denoiser.
pub(super) fn english_speech_models(rt: &Runtime, cfg: &Config) -> Result<(SileroVad, Moonshine, Denoiser)> {
    let m = &cfg.models;
    let vad = SileroVad::load(rt, &m.task_files(Task::Vad)?[0])?;
    let files = m.task_files_on(Task::Stt, rt.provider().is_cpu())?;
    let mut stt = Moonshine::load(rt, &files[0], &files[1], &files[2], cfg.speech.threads.max(1))?;
    stt.configure(&cfg.speech);
    if cfg.speech.judges_rehearing() {
        let f = m.task_files_on(Task::SttMultilingual, rt.provider().is_cpu())?;
        let mut judge = Whisper::load(rt, &f[0], &f[1], &f[2], &f[3], cfg.speech.threads.max(1))?;
        judge.configure_as_judge(&cfg.speech);
        stt.set_judge(Some(judge), cfg.speech.rehear_judge_weight, cfg.speech.rehear_judge_candidates);
    }
    Ok((vad, stt, Denoiser::new(DenoiseParams::default())))
}

/// Every `every`-th of the English evaluation sentences.
pub(super) fn english_sentences(every: usize) -> Result<Vec<String>> {
    Ok(quality_lines("sentences.txt")?
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(_, s)| s)
        .collect())
}

pub(super) fn speech_section(rt: &Runtime, cfg: &Config, every: usize) -> Result<String> {
    let (mut vad, mut stt, denoiser) = english_speech_models(rt, cfg)?;
    let sentences = english_sentences(every)?;
    // (case, group, beam width, denoised, re-heard): as configured; then greedy heard once (as
    // the pool behind its lag target); then the rows with a background again with
    // `speech.denoise` the other way, and espeak-ng's rows heard once when `speech.rehear_*`
    // re-hears (the same sentences, side by side).
    let on = cfg.speech.denoise;
    let beam = cfg.speech.beam_width;
    let mut runs: Vec<(SpeechCase, &str, usize, bool, bool)> =
        speech_cases().into_iter().map(|(c, g)| (c, g, beam, on, true)).collect();
    runs.push((speech_cases()[0].0.clone(), "decoding", 1, on, false));
    let noisy = speech_cases().into_iter().filter(|(c, _)| !matches!(c.acoustic, Acoustic::Clean));
    let other_way = if on { "not denoised" } else { "denoised" };
    runs.extend(noisy.map(|(c, _)| (c, other_way, beam, !on, true)));
    let rehears = !cfg.speech.rehear_stretches.is_empty() && cfg.speech.rehear_below > 0.0;
    if rehears {
        let espeak = speech_cases().into_iter().filter(|(_, g)| *g == "voices" || *g == "backgrounds");
        runs.extend(espeak.map(|(c, _)| (c, "heard once", beam, on, false)));
    }
    let pb = bar(runs.len() * sentences.len(), "speech");
    let mut rows = String::new();
    let mut worst = Vec::new();
    let mut clean_en = Tally::default();
    let mut noisy_en = Tally::default();
    // The same sentences from MBROLA's diphone voices and SVOX Pico, apart from espeak-ng's.
    let mut clean_other = Tally::default();
    let mut noisy_other = Tally::default();
    let (mut denoised_en, mut denoised_other) = (Tally::default(), Tally::default());
    let (mut once_clean, mut once_noisy) = (Tally::default(), Tally::default());
    for (case, group, beam, denoise, rehear) in &runs {
        stt.set_beam_width(*beam);
        match rehear {
            true => stt.set_rehearing(&cfg.speech.rehear_stretches, cfg.speech.rehear_below),
            false => stt.set_rehearing(&[], 0.0),
        }
        let mut t = Tally::default();
        let (mut audio_s, mut spent) = (0.0, 0.0);
        for (i, sentence) in sentences.iter().enumerate() {
            let samples = speech_case_samples(sentence, case, i as u64 + 1)?;
            audio_s += samples.len() as f64 / 16000.0;
            let started = Instant::now();
            // As the speech pool: VAD on the audio as it came, Moonshine on it denoised (the noise
            // measured outside the utterances) when `speech.denoise` is on.
            let regions = vad.speech_regions(&samples, cfg.speech.vad_threshold, cfg.speech.min_speech_ms)?;
            let samples = if *denoise { denoiser.denoise_around(&samples, &regions) } else { samples };
            let mut heard = Vec::new();
            for (s, e) in regions {
                heard.push(stt.transcribe(&samples[s..e])?.text);
            }
            spent += started.elapsed().as_secs_f64();
            let heard = heard.join(" ");
            let (e, n) = scored_word_errors(sentence, &heard);
            t.add(e == 0, e, n);
            if e > 0 && worst.len() < 40 {
                worst.push(format!(
                    "| {} {} wpm, {} | {sentence:?} | {heard:?} |",
                    case.voice,
                    case.rate,
                    case.acoustic.label()
                ));
            }
            pb.inc(1);
        }
        let other =
            group.starts_with("other") || case.voice.starts_with("pico") || case.voice.starts_with("mb");
        match (*group, case.acoustic) {
            ("decoding", _) => {}
            ("heard once", Acoustic::Clean) => once_clean = sum(once_clean, t),
            ("heard once", _) => once_noisy = sum(once_noisy, t),
            (g, _) if g == other_way && other => denoised_other = sum(denoised_other, t),
            (g, _) if g == other_way => denoised_en = sum(denoised_en, t),
            (_, Acoustic::Clean) if other => clean_other = sum(clean_other, t),
            (_, _) if other => noisy_other = sum(noisy_other, t),
            (_, Acoustic::Clean) => clean_en = sum(clean_en, t),
            (_, _) => noisy_en = sum(noisy_en, t),
        }
        let decoding = format!(
            "{}{}",
            if *beam == 1 { "greedy".to_string() } else { format!("beam {beam}") },
            if rehears && !rehear { ", heard once" } else { "" }
        );
        let _ = writeln!(
            rows,
            "| {group} | {} | {} | {}{} | {decoding} | {} | {:.1} % | {:.0} % | {:.3} |",
            case.voice,
            case.rate,
            case.acoustic.label(),
            if *denoise { ", denoised" } else { "" },
            t.items,
            t.rate(),
            t.exact_pct(),
            spent / audio_s
        );
    }
    pb.finish_and_clear();
    let denoising = format!(
        "`speech.denoise` is {}; with it {} (the \"{other_way}\" rows), noise or music: \
         espeak-ng's voices {:.1} %, Pico's {:.1} %. ",
        if on { "on" } else { "off" },
        if on { "off" } else { "on" },
        denoised_en.rate(),
        denoised_other.rate()
    );
    let mut s = format!(
        "## Speech (Silero VAD + Moonshine base, English)\n\n{} sentences (names, numbers, places) \
         per row, spoken by espeak-ng (its own voices), by MBROLA diphone voices (`mb-*`) and by \
         SVOX Pico (`pico-*`); scored after normalisation (case, punctuation, numbers spelt out, \
         compounds). **English WER, espeak-ng's voices: clean {:.1} %, with noise or music \
         {:.1} %; MBROLA and Pico voices: clean {:.1} %, with noise or music {:.1} %.** {denoising}{}RTF \
         is processing time ÷ audio time on {} thread(s).\n\n\
         | set | voice | words/min | background | decoding | sentences | WER | sentences exact | RTF |\n\
         |---|---|---|---|---|---|---|---|---|\n{rows}\n",
        sentences.len(),
        clean_en.rate(),
        noisy_en.rate(),
        clean_other.rate(),
        noisy_other.rate(),
        match rehears {
            true => format!(
                "Re-hearing (`speech.rehear_stretches` {:?} below confidence {}) on; espeak-ng's \
                 voices heard once (the \"heard once\" rows): clean {:.1} %, with noise or music \
                 {:.1} %. ",
                cfg.speech.rehear_stretches,
                cfg.speech.rehear_below,
                once_clean.rate(),
                once_noisy.rate()
            ),
            false => "Re-hearing off. ".to_string(),
        },
        cfg.speech.threads.max(1)
    );
    if !worst.is_empty() {
        s += "Sentences with errors (first 40):\n\n| case | said | heard |\n|---|---|---|\n";
        s += &worst.join("\n");
        s += "\n\n";
    }
    Ok(s)
}

fn sum(a: Tally, b: Tally) -> Tally {
    Tally {
        items: a.items + b.items,
        exact: a.exact + b.exact,
        errors: a.errors + b.errors,
        total: a.total + b.total,
    }
}
