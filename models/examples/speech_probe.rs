//! Debug aid: an evaluation set through the speech models as `make quality` runs them, printing
//! what was said and heard where they differ, and the word error rate per voice.
//!
//! English through Silero VAD + Moonshine (the CPU's files, `speech.denoise` as configured):
//! `cargo run --release -p sightline-models --example speech_probe -- moonshine EVERY VOICE[@RATE][,noise|,music]...`
//! e.g. `-- moonshine 2 en-us en-gb-scotland en-us,noise`; with `SIGHTLINE_SPEECH__REHEAR_BELOW=0`
//! each utterance heard once; `SIGHTLINE_SPEECH__REHEAR_JUDGE_WEIGHT=0` without Whisper judging
//! the re-heard ones. `OFFSET=1` starts at the 2nd sentence (every n-th from there).
//! Any language through Whisper base (the language identified among en/es/de/fr; unsure
//! utterances re-heard as configured, `SIGHTLINE_SPEECH__REHEAR_BELOW=0` heard once):
//! `... -- whisper EVERY BEAM WINDOW_S LANG:VOICE[@RATE]...`, e.g. `-- whisper 2 4 15 fr:mb-fr1@130`.
use sightline_models::{DenoiseParams, Denoiser, Moonshine, Runtime, SileroVad, Whisper};
use sightline_settings::{Config, Task};
use sightline_testkit::quality::{
    Acoustic, SpeechCase, quality_lines, scored_word_errors_in, speech_case_samples,
};

/// "voice[@rate][,noise|,music]" as a case (rate 150 words a minute unless given).
fn case(spec: &str) -> SpeechCase {
    let (voice_rate, acoustic) = match spec.split_once(',') {
        Some((v, "noise")) => (v, Acoustic::Noise(15.0)),
        Some((v, "music")) => (v, Acoustic::Music(15.0)),
        _ => (spec, Acoustic::Clean),
    };
    let (voice, rate) =
        voice_rate.split_once('@').map_or((voice_rate, 150), |(v, r)| (v, r.parse().unwrap()));
    SpeechCase { voice: voice.into(), rate, acoustic }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let every: usize = args[1].parse().unwrap();
    let cfg = Config::load(None).unwrap();
    let rt = Runtime::load(&cfg.models.onnxruntime_lib()).unwrap();
    let m = &cfg.models;
    // Per spec: (language, case); and a transcriber of one case's audio segments.
    type Transcriber = Box<dyn FnMut(&[Vec<f32>]) -> Vec<String>>;
    let (specs, mut transcribe): (Vec<(String, SpeechCase)>, Transcriber) = if args[0] == "whisper" {
        let f = m.task_files(Task::SttMultilingual).unwrap();
        let mut whisper = Whisper::load(&rt, &f[0], &f[1], &f[2], &f[3], 1).unwrap();
        whisper.configure(&cfg.speech);
        whisper.set_beam_width(args[2].parse().unwrap());
        whisper.set_window(args[3].parse().unwrap());
        let allowed: Vec<String> = ["en", "es", "de", "fr"].map(String::from).to_vec();
        let specs = args[4..].iter().map(|s| {
            let (lang, voice) = s.split_once(':').expect("LANG:VOICE");
            (lang.to_string(), case(voice))
        });
        let run = move |audio: &[Vec<f32>]| -> Vec<String> {
            let mut heard = Vec::new();
            for chunk in audio.chunks(4) {
                let segs: Vec<&[f32]> = chunk.iter().map(Vec::as_slice).collect();
                let out = whisper.transcribe_batch(&segs, &allowed).unwrap();
                heard.extend(out.into_iter().map(|(t, l)| format!("[{}] {}", l.code, t.text)));
            }
            heard
        };
        (specs.collect(), Box::new(run))
    } else {
        let mut vad = SileroVad::load(&rt, &m.task_files(Task::Vad).unwrap()[0]).unwrap();
        let files = m.task_files_on(Task::Stt, true).unwrap();
        let mut stt = Moonshine::load(&rt, &files[0], &files[1], &files[2], 1).unwrap();
        stt.configure(&cfg.speech);
        if cfg.speech.judges_rehearing() {
            let f = m.task_files(Task::SttMultilingual).unwrap();
            let mut judge = Whisper::load(&rt, &f[0], &f[1], &f[2], &f[3], 1).unwrap();
            judge.configure_as_judge(&cfg.speech);
            stt.set_judge(Some(judge), cfg.speech.rehear_judge_weight, cfg.speech.rehear_judge_candidates);
        }
        let denoiser = Denoiser::new(DenoiseParams::default());
        let speech = cfg.speech.clone();
        let run = move |audio: &[Vec<f32>]| -> Vec<String> {
            audio
                .iter()
                .map(|samples| {
                    let regions =
                        vad.speech_regions(samples, speech.vad_threshold, speech.min_speech_ms).unwrap();
                    let samples = if speech.denoise {
                        denoiser.denoise_around(samples, &regions)
                    } else {
                        samples.clone()
                    };
                    let heard: Vec<String> =
                        regions.iter().map(|&(s, e)| stt.transcribe(&samples[s..e]).unwrap().text).collect();
                    heard.join(" | ")
                })
                .collect()
        };
        (args[2..].iter().map(|s| ("en".to_string(), case(s))).collect(), Box::new(run))
    };
    let (mut all_e, mut all_n) = (0, 0);
    for (lang, case) in &specs {
        let file = if lang == "en" { "sentences.txt".to_string() } else { format!("sentences-{lang}.txt") };
        let lines: Vec<String> = quality_lines(&file)
            .unwrap()
            .into_iter()
            .skip(std::env::var("OFFSET").map_or(0, |o| o.parse().expect("OFFSET: a number")))
            .step_by(every)
            .collect();
        let audio: Vec<Vec<f32>> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| speech_case_samples(l, case, i as u64 + 1).unwrap())
            .collect();
        let started = std::time::Instant::now();
        let heard = transcribe(&audio);
        let spent = started.elapsed().as_secs_f64();
        let label = format!("{lang}:{}@{} {}", case.voice, case.rate, case.acoustic.label());
        let (mut errors, mut words) = (0, 0);
        for (line, text) in lines.iter().zip(&heard) {
            let plain = text.replace(" | ", " ");
            let plain =
                plain.strip_prefix('[').and_then(|t| t.split_once("] ")).map_or(plain.as_str(), |t| t.1);
            let (e, n) = scored_word_errors_in(line, plain, lang);
            if e > 0 {
                println!("{label} [{e}] {line:?}\n    {text:?}");
            }
            errors += e;
            words += n;
        }
        println!(
            "== {label}: WER {:.1} % ({errors}/{words}), {spent:.1} s",
            100.0 * errors as f64 / words as f64
        );
        all_e += errors;
        all_n += words;
    }
    println!("== all: WER {:.1} % ({all_e}/{all_n})", 100.0 * all_e as f64 / all_n.max(1) as f64);
}
