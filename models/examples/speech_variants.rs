//! Debug aid: every sentence of the English set (clean, 150 words a minute) through Silero VAD and
//! Moonshine heard once per copy, one TSV row each: voice, sentence, copy, confidence (mean token
//! probability), word errors, words, transcript. A copy is `STRETCH:LEAD_MS:TRAIL_MS` (resampled
//! to STRETCH times its length, heard with that much silence before and after), listed in
//! `VARIANTS` (default `1:300:1000,1.05:300:1000,1.1:300:1000`), so that ways of choosing among
//! re-heard copies can be compared on the rows without hearing them again:
//! `cargo run --release -p sightline-models --example speech_variants -- en-us en-gb-scotland`.
use sightline_models::stt::stretch;
use sightline_models::{DenoiseParams, Denoiser, Moonshine, Runtime, SileroVad};
use sightline_settings::{Config, Task};
use sightline_testkit::quality::{
    Acoustic, SpeechCase, quality_lines, scored_word_errors_in, speech_case_samples,
};

/// A copy of `a` as `spec` says: a stretch factor (1: as it came).
fn variant(a: &[f32], spec: &str) -> Vec<f32> {
    let k: f32 = spec.parse().expect("a stretch factor");
    if k == 1.0 { a.to_vec() } else { stretch(a, k) }
}

fn main() {
    let voices: Vec<String> = std::env::args().skip(1).collect();
    let variants: Vec<(String, usize, usize)> = std::env::var("VARIANTS")
        .unwrap_or("1:300:1000,1.05:300:1000,1.1:300:1000".into())
        .split(',')
        .map(|v| {
            let p: Vec<&str> = v.split(':').collect();
            (p[0].to_string(), p[1].parse().unwrap(), p[2].parse().unwrap())
        })
        .collect();
    let cfg = Config::load(None).unwrap();
    let rt = Runtime::load(&cfg.models.onnxruntime_lib()).unwrap();
    let m = &cfg.models;
    let mut vad = SileroVad::load(&rt, &m.task_files(Task::Vad).unwrap()[0]).unwrap();
    let files = m.task_files_on(Task::Stt, true).unwrap();
    let mut stt = Moonshine::load(&rt, &files[0], &files[1], &files[2], 1).unwrap();
    stt.configure(&cfg.speech);
    stt.set_rehearing(&[], 0.0);
    let denoiser = Denoiser::new(DenoiseParams::default());
    let speech = cfg.speech.clone();
    let lines = quality_lines("sentences.txt").unwrap();
    for voice in &voices {
        let case = SpeechCase { voice: voice.clone(), rate: 150, acoustic: Acoustic::Clean };
        for (i, line) in lines.iter().enumerate() {
            let samples = speech_case_samples(line, &case, i as u64 + 1).unwrap();
            let regions = vad.speech_regions(&samples, speech.vad_threshold, speech.min_speech_ms).unwrap();
            let samples = if speech.denoise { denoiser.denoise_around(&samples, &regions) } else { samples };
            for (k, lead, trail) in &variants {
                let (lead, trail) = (*lead, *trail);
                stt.set_silence(lead * 16, trail * 16, trail * 16);
                let mut texts = Vec::new();
                let (mut conf, mut n) = (0.0, 0);
                for &(s, e) in &regions {
                    let a = variant(&samples[s..e], k);
                    let t = stt.transcribe(&a).unwrap();
                    conf += t.confidence * t.tokens.len() as f32;
                    n += t.tokens.len();
                    texts.push(t.text);
                }
                let text = texts.join(" ");
                let (e, w) = scored_word_errors_in(line, &text, "en");
                println!("{voice}\t{i}\t{k}:{lead}:{trail}\t{:.4}\t{e}\t{w}\t{text}", conf / n.max(1) as f32);
            }
        }
    }
}
