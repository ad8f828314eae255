//! Continuous speech through ingest's audio segmenter, as a live stream delivers it: sentences
//! back to back a quarter of a second apart, clean, over street noise and over a music bed. How
//! long each sentence waits for its segment to close (the part of a transcript's delay that comes
//! before the speech pool), and the word error rate of the whole as the pool hears it (Silero VAD
//! per segment, `speech.denoise`, Moonshine per utterance).

use super::{bar, english_sentences, english_speech_models};
use anyhow::Result;
use sightline_models::Runtime;
use sightline_settings::Config;
use sightline_streams::AudioSegmenter;
use sightline_testkit::quality::{Acoustic, continuous_speech, scored_word_errors};
use std::fmt::Write as _;

const VOICE: &str = "pico-en-US";
const GAP_MS: usize = 250;

pub(super) fn continuous_section(rt: &Runtime, cfg: &Config, every: usize) -> Result<String> {
    let (mut vad, mut stt, denoiser) = english_speech_models(rt, cfg)?;
    let sentences = english_sentences(every)?;
    let reference = sentences.join(" ");
    let i = &cfg.ingest;
    // The configured soft length, and none (segments end on the hangover's pause or the maximum).
    let softs = [i.audio_soft_segment_ms, i.audio_max_segment_ms];
    let backgrounds = [Acoustic::Clean, Acoustic::Noise(15.0), Acoustic::Music(15.0)];
    let pb = bar(backgrounds.len() * softs.len(), "continuous");
    let mut rows = String::new();
    for acoustic in backgrounds {
        let (audio, ends) = continuous_speech(&sentences, VOICE, GAP_MS, acoustic, 11)?;
        for soft in softs {
            let mut gate = AudioSegmenter::new(
                i.audio_gate_level,
                i.audio_gate_hangover_ms,
                soft,
                i.audio_max_segment_ms,
            );
            let mut segments = Vec::new();
            // 64 ms buffers, as GStreamer hands them over.
            for (k, chunk) in audio.chunks(1024).enumerate() {
                segments.extend(gate.push(k as i64 * 64, chunk));
            }
            segments.extend(gate.flush());
            let mut waits: Vec<i64> = ends
                .iter()
                .filter_map(|&e| {
                    segments.iter().find(|s| s.start_ms <= e && e < s.end_ms).map(|s| s.end_ms - e)
                })
                .collect();
            waits.sort_unstable();
            let mut heard = Vec::new();
            for seg in &segments {
                let regions =
                    vad.speech_regions(&seg.samples, cfg.speech.vad_threshold, cfg.speech.min_speech_ms)?;
                if regions.is_empty() {
                    continue;
                }
                let samples = if cfg.speech.denoise {
                    denoiser.denoise_around(&seg.samples, &regions)
                } else {
                    seg.samples.clone()
                };
                for (s, e) in regions {
                    heard.push(stt.transcribe(&samples[s..e])?.text);
                }
            }
            let (errors, words) = scored_word_errors(&reference, &heard.join(" "));
            let longest = segments.iter().map(|s| s.end_ms - s.start_ms).max().unwrap_or(0);
            let q = |p: f64| {
                waits.get(((waits.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(0)
            };
            let _ = writeln!(
                rows,
                "| {} | {} | {} | {:.1} s | {} / {} / {} ms | {} | {:.1} % |",
                acoustic.label(),
                if soft >= i.audio_max_segment_ms { "none".to_string() } else { format!("{soft} ms") },
                segments.len(),
                longest as f64 / 1000.0,
                q(0.5),
                q(0.95),
                waits.last().copied().unwrap_or(0),
                ends.len() - waits.len(),
                100.0 * errors as f64 / words.max(1) as f64
            );
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    Ok(format!(
        "## Continuous speech through ingest's segmenter\n\n{} sentences spoken back to back by {VOICE} \
         ({GAP_MS} ms apart), cut into segments by ingest's audio gate (`ingest.audio_soft_segment_ms` \
         as configured, and with no soft length), each segment heard as the speech pool hears it. \
         \"Wait\" is from the end of a sentence's voice to the end of the segment holding it: what a \
         transcript waits before the pool can start on it. \"Closed before its end\" counts \
         sentences whose voice ended in a gap between segments (nothing waited).\n\n\
         | background | soft length | segments | longest | wait p50 / p95 / max | closed before its end | WER |\n\
         |---|---|---|---|---|---|---|\n{rows}\n",
        sentences.len()
    ))
}
