//! The languages part of `make quality`: Whisper base's language identification and word error
//! rate in English, German, French and Spanish (MBROLA and espeak-ng voices, clean and for English
//! under noise and music), greedy and beam search, Moonshine beside it on English, the real
//! recordings alsa-utils ships, a real recorded reading (moonshine-voice's demo file), and what
//! each costs.

use super::{Tally, bar};
use anyhow::Result;
use sightline_models::{Moonshine, Runtime, SileroVad, Whisper};
use sightline_settings::{Config, Task};
use sightline_testkit::quality::{
    Acoustic, SpeechCase, quality_lines, recorded_passages, recorded_speech, scored_word_errors,
    scored_word_errors_in, speech_case_samples,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

/// Which model transcribes a row of the languages table.
#[derive(Clone, Copy, PartialEq)]
enum Engine {
    Moonshine,
    Whisper(usize),
}

pub(super) fn languages_section(rt: &Runtime, cfg: &Config, every: usize) -> Result<String> {
    let m = &cfg.models;
    let f = m.task_files(Task::SttMultilingual)?;
    let threads = cfg.speech.threads.max(1);
    let mut whisper = Whisper::load(rt, &f[0], &f[1], &f[2], &f[3], threads)?;
    whisper.configure(&cfg.speech);
    let files = m.task_files_on(Task::Stt, rt.provider().is_cpu())?;
    let mut moonshine = Moonshine::load(rt, &files[0], &files[1], &files[2], threads)?;
    moonshine.configure(&cfg.speech);
    let allowed: Vec<String> = ["en", "es", "de", "fr"].map(String::from).to_vec();
    let (g, b4, ms) = (Engine::Whisper(1), Engine::Whisper(4), Engine::Moonshine);
    // (language, set, voice, words a minute, engine)
    let rows: Vec<(&str, &str, &str, u32, Engine)> = vec![
        ("en", "sentences.txt", "mb-us1", 130, ms),
        ("en", "sentences.txt", "mb-us1", 130, g),
        ("en", "sentences.txt", "mb-us1", 130, b4),
        ("en", "sentences.txt", "mb-en1", 130, ms),
        ("en", "sentences.txt", "mb-en1", 130, g),
        ("en", "sentences.txt", "mb-en1", 130, b4),
        ("en", "sentences.txt", "en-us", 150, ms),
        ("en", "sentences.txt", "en-us", 150, g),
        ("en", "sentences.txt", "en-us", 150, b4),
        ("de", "sentences-de.txt", "mb-de2", 130, g),
        ("de", "sentences-de.txt", "mb-de2", 130, b4),
        ("de", "sentences-de.txt", "mb-de4", 130, g),
        ("de", "sentences-de.txt", "mb-de4", 130, b4),
        ("de", "sentences-de.txt", "de", 150, g),
        ("fr", "sentences-fr.txt", "mb-fr1", 130, g),
        ("fr", "sentences-fr.txt", "mb-fr1", 130, b4),
        ("fr", "sentences-fr.txt", "mb-fr4", 130, g),
        ("fr", "sentences-fr.txt", "mb-fr4", 130, b4),
        ("fr", "sentences-fr.txt", "fr", 150, g),
        ("es", "sentences-es.txt", "mb-es1", 130, g),
        ("es", "sentences-es.txt", "mb-es1", 130, b4),
        ("es", "sentences-es.txt", "mb-es2", 130, g),
        ("es", "sentences-es.txt", "mb-es2", 130, b4),
        ("es", "sentences-es.txt", "es", 130, g),
        ("es", "sentences-es.txt", "es", 130, b4),
        ("es", "sentences-es.txt", "es-419", 130, g),
        ("en", "sentences.txt", "pico-en-US", 150, ms),
        ("en", "sentences.txt", "pico-en-US", 150, b4),
        ("en", "sentences.txt", "pico-en-GB", 150, ms),
        ("en", "sentences.txt", "pico-en-GB", 150, b4),
        ("de", "sentences-de.txt", "pico-de-DE", 150, g),
        ("de", "sentences-de.txt", "pico-de-DE", 150, b4),
        ("fr", "sentences-fr.txt", "pico-fr-FR", 150, g),
        ("fr", "sentences-fr.txt", "pico-fr-FR", 150, b4),
        ("es", "sentences-es.txt", "pico-es-ES", 150, g),
        ("es", "sentences-es.txt", "pico-es-ES", 150, b4),
    ];
    // English over street noise and a music bed (15 dB), Whisper beside Moonshine.
    let noisy: Vec<(&str, &str, &str, u32, Engine, Acoustic)> =
        [Acoustic::Noise(15.0), Acoustic::Music(15.0)]
            .into_iter()
            .flat_map(|a| [(ms, a), (b4, a)])
            .map(|(e, a)| ("en", "sentences.txt", "en-us", 150, e, a))
            .collect();
    let rows: Vec<(&str, &str, &str, u32, Engine, Acoustic)> =
        rows.into_iter().map(|(l, f, v, r, e)| (l, f, v, r, e, Acoustic::Clean)).chain(noisy).collect();
    let mut sets: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (_, file, ..) in &rows {
        if !sets.contains_key(file) {
            let lines = quality_lines(file)?.into_iter().step_by(every).collect();
            sets.insert(file, lines);
        }
    }
    let pb = bar(rows.iter().map(|r| sets[r.1].len()).sum(), "languages");
    let (mut table, mut worst) = (String::new(), Vec::new());
    // Per language: Whisper with beam 4 (the shipped multilingual_beam_width) on the MBROLA voices
    // (errors, words, language right, items), for the summary.
    let mut summary: BTreeMap<&str, (usize, usize, usize, usize)> = BTreeMap::new();
    let mut pico = summary.clone();
    for (lang, file, voice, rate, engine, acoustic) in &rows {
        let lines = &sets[file];
        let case = SpeechCase { voice: voice.to_string(), rate: *rate, acoustic: *acoustic };
        let audio: Vec<Vec<f32>> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| speech_case_samples(l, &case, i as u64 + 1))
            .collect::<Result<_, sightline_testkit::TestSourceError>>()?;
        let audio_s: f64 = audio.iter().map(|a| a.len() as f64 / 16000.0).sum();
        let started = Instant::now();
        let mut heard: Vec<(String, String)> = Vec::new();
        for chunk in audio.chunks(4) {
            let segs: Vec<&[f32]> = chunk.iter().map(Vec::as_slice).collect();
            match engine {
                Engine::Moonshine => {
                    for t in moonshine.transcribe_batch(&segs) {
                        heard.push((t?.text, "en".into()));
                    }
                }
                Engine::Whisper(beam) => {
                    // The beam re-hears its unsure utterances as the pool does with room to
                    // spare; greedy (the pool behind its target) hears each once.
                    whisper.set_beam_width(*beam);
                    let (stretches, below) = match beam {
                        1 => (&[][..], 0.0),
                        _ => (&cfg.speech.multilingual_rehear_stretches[..], cfg.speech.rehear_below),
                    };
                    whisper.set_rehearing(stretches, below);
                    for (t, l) in whisper.transcribe_batch(&segs, &allowed)? {
                        heard.push((t.text, l.code));
                    }
                }
            }
            pb.inc(chunk.len() as u64);
        }
        let spent = started.elapsed().as_secs_f64();
        let mut t = Tally::default();
        let mut right = 0;
        for (line, (text, code)) in lines.iter().zip(&heard) {
            let (e, n) = scored_word_errors_in(line, text, lang);
            t.add(e == 0, e, n);
            right += (code == lang) as usize;
            if e > 0 && worst.len() < 30 && *engine == b4 && *lang != "en" {
                worst.push(format!("| {lang} {voice} | {line:?} | {text:?} |"));
            }
        }
        if *engine == b4 && *acoustic == Acoustic::Clean {
            let synth = if voice.starts_with("pico-") { &mut pico } else { &mut summary };
            if voice.starts_with("mb-") || voice.starts_with("pico-") {
                let s = synth.entry(lang).or_default();
                *s = (s.0 + t.errors, s.1 + t.total, s.2 + right, s.3 + lines.len());
            }
        }
        let (model, lid) = match engine {
            Engine::Moonshine => (format!("Moonshine base, beam {}", cfg.speech.beam_width), "—".to_string()),
            Engine::Whisper(1) => ("Whisper base, greedy".to_string(), format!("{right}/{}", lines.len())),
            Engine::Whisper(b) => (format!("Whisper base, beam {b}"), format!("{right}/{}", lines.len())),
        };
        let _ = writeln!(
            table,
            "| {lang} | {voice}{} | {rate} | {model} | {} | {lid} | {:.1} % | {:.0} % | {:.3} |",
            if *acoustic == Acoustic::Clean { String::new() } else { format!(", {}", acoustic.label()) },
            lines.len(),
            t.rate(),
            t.exact_pct(),
            spent / audio_s
        );
    }
    pb.finish_and_clear();
    let line = |m: &BTreeMap<&str, (usize, usize, usize, usize)>| -> String {
        m.iter()
            .map(|(l, (e, n, r, items))| {
                format!("{l} {:.1} % (language right {r}/{items})", 100.0 * *e as f64 / (*n).max(1) as f64)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let window_s = whisper.window() as f64 / 16000.0;
    let mut s = format!(
        "## Languages (Whisper base, language identification among en/es/de/fr)\n\n\
         Sentences from `quality/sentences*.txt` spoken by MBROLA diphone voices (closer to \
         natural speech than espeak-ng's own), by espeak-ng's voices and by SVOX Pico's \
         (`pico-*`), 0.4 s of silence either \
         side, transcribed in batches of four as the speech actor does: Whisper identifies the \
         language (among en, es, de, fr), then decodes in it. Scored after the same normalisation \
         as the English set, with numbers up to twenty read in the sentence's language (\"8 Uhr\" \
         = \"acht Uhr\"). **Whisper beam 4, MBROLA voices: {}; \
         Pico's voices: {}.** RTF is processing time ÷ audio time on {threads} thread(s); Whisper \
         hears a window of at least {window_s:.0} s (`speech.multilingual_window_s`), so its cost \
         per utterance is nearly constant.\n\n\
         | language | voice | words/min | model | sentences | language right | WER | sentences exact | RTF |\n\
         |---|---|---|---|---|---|---|---|---|\n{table}\n",
        line(&summary),
        line(&pico)
    );
    // Real recorded speech: the only recordings a registry package here ships with a known text.
    let recorded = recorded_speech()?;
    let segs: Vec<&[f32]> = recorded.iter().map(|(_, a)| a.as_slice()).collect();
    let audio_s: f64 = segs.iter().map(|a| a.len() as f64 / 16000.0).sum();
    let started = Instant::now();
    let heard_m: Vec<String> =
        moonshine.transcribe_batch(&segs).into_iter().map(|t| t.map(|t| t.text)).collect::<Result<_, _>>()?;
    let rtf_m = started.elapsed().as_secs_f64() / audio_s;
    whisper.set_beam_width(4);
    let started = Instant::now();
    let mut heard_w = Vec::new();
    for chunk in segs.chunks(4) {
        heard_w.extend(whisper.transcribe_batch(chunk, &allowed)?);
    }
    let rtf_w = started.elapsed().as_secs_f64() / audio_s;
    let (mut tm, mut tw, mut right) = (Tally::default(), Tally::default(), 0);
    let mut lines = String::new();
    for (((said, _), m), (w, l)) in recorded.iter().zip(&heard_m).zip(&heard_w) {
        let (em, n) = scored_word_errors(said, m);
        let (ew, _) = scored_word_errors(said, &w.text);
        tm.add(em == 0, em, n);
        tw.add(ew == 0, ew, n);
        right += (l.code == "en") as usize;
        let _ = writeln!(lines, "| {said} | {m:?} | {:?} ({}) |", w.text, l.code);
    }
    s += &format!(
        "Real recorded speech: the eight spoken channel names alsa-utils ships (a woman's voice, \
         two words each; a longer reading follows). \
         **Moonshine (beam {}) WER {:.1} %, Whisper beam 4 {:.1} %** (language right {right}/{}); \
         RTF {rtf_m:.3} and {rtf_w:.3}.\n\n| said | Moonshine | Whisper (language) |\n|---|---|---|\n{lines}\n",
        cfg.speech.beam_width,
        tm.rate(),
        tw.rate(),
        recorded.len()
    );
    s += &passages_section(rt, cfg, &mut moonshine, &mut whisper, &allowed)?;
    if !worst.is_empty() {
        s += "Whisper beam 4 errors outside English (first 30):\n\n| case | said | heard |\n|---|---|---|\n";
        s += &worst.join("\n");
        s += "\n\n";
    }
    Ok(s)
}

/// Real recorded readings, heard the way the speech pool hears a stream: cut into ingest's
/// segments, Silero VAD's utterances in each, every utterance transcribed; the transcripts joined
/// and scored against the text as one.
fn passages_section(
    rt: &Runtime,
    cfg: &Config,
    moonshine: &mut Moonshine,
    whisper: &mut Whisper,
    allowed: &[String],
) -> Result<String> {
    let mut vad = SileroVad::load(rt, &cfg.models.task_files(Task::Vad)?[0])?;
    let sp = &cfg.speech;
    whisper.set_beam_width(sp.multilingual_beam_width);
    let mut rows = String::new();
    let mut heard_lines = String::new();
    for (file, text, audio) in recorded_passages()? {
        let segments = crate::bare::segment_audio(&audio, cfg);
        let mut utterances: Vec<Vec<f32>> = Vec::new();
        for seg in &segments {
            for (a, b) in vad.speech_regions(seg, sp.vad_threshold, sp.min_speech_ms)? {
                utterances.push(seg[a..b].to_vec());
            }
        }
        let audio_s = audio.len() as f64 / 16000.0;
        let refs: Vec<&[f32]> = utterances.iter().map(Vec::as_slice).collect();
        let started = Instant::now();
        let mut heard_m = Vec::new();
        for u in &refs {
            heard_m.push(moonshine.transcribe(u)?.text);
        }
        let rtf_m = started.elapsed().as_secs_f64() / audio_s;
        let started = Instant::now();
        let mut heard_w = Vec::new();
        let mut english = 0;
        for chunk in refs.chunks(4) {
            for (t, l) in whisper.transcribe_batch(chunk, allowed)? {
                heard_w.push(t.text);
                english += (l.code == "en") as usize;
            }
        }
        let rtf_w = started.elapsed().as_secs_f64() / audio_s;
        for (model, heard, rtf) in [
            (format!("Moonshine base, beam {}", sp.beam_width), heard_m.join(" "), rtf_m),
            (format!("Whisper base, beam {}", sp.multilingual_beam_width), heard_w.join(" "), rtf_w),
        ] {
            let (errors, words) = scored_word_errors(&text, &heard);
            let _ = writeln!(
                rows,
                "| {file} | {audio_s:.1} s | {} | {} | {model} | {:.1} % | {rtf:.3} |",
                segments.len(),
                utterances.len(),
                100.0 * errors as f64 / words.max(1) as f64
            );
            let _ = writeln!(heard_lines, "- {model}: {heard:?}");
        }
        let _ = writeln!(
            heard_lines,
            "- Whisper's language: English for {english} of {} utterances",
            utterances.len()
        );
    }
    Ok(format!(
        "Real recorded readings (`quality/passages.txt`): cut into ingest's audio segments, Silero VAD's \
         utterances in each, every utterance transcribed, the transcripts joined and scored against the text \
         as one (Whisper identifies the language among en, es, de, fr).\n\n\
         | recording | length | segments | utterances | model | WER | RTF |\n|---|---|---|---|---|---|---|\n{rows}\n\
         What was heard:\n\n{heard_lines}\n"
    ))
}
