//! Continuous speech through ingest's audio segmenter, as a live stream delivers it: sentences
//! back to back a quarter of a second apart, clean, over street noise and over a music bed, and
//! the real recorded reading. How long each sentence waits for its segment to close (the part of
//! a transcript's delay that comes before the speech pool), and the word error rate of the whole
//! as the pool hears it (Silero VAD per segment, `speech.denoise`, Moonshine per utterance).

use super::{bar, english_sentences, english_speech_models};
use anyhow::Result;
use sightline_models::{Denoiser, Moonshine, Runtime, SileroVad};
use sightline_settings::Config;
use sightline_streams::{AudioSegment, AudioSegmenter};
use sightline_testkit::quality::{Acoustic, continuous_speech, recorded_passages, scored_word_errors};
use std::fmt::Write as _;

const VOICE: &str = "pico-en-US";
const GAP_MS: usize = 250;

/// What the English speech pool needs to hear a segment.
struct Pool<'a> {
    cfg: &'a Config,
    vad: SileroVad,
    stt: Moonshine,
    denoiser: Denoiser,
}

impl Pool<'_> {
    /// `audio` cut as ingest cuts it, with `soft` as the soft length, in 64 ms buffers as
    /// GStreamer hands them over.
    fn segments(&self, audio: &[f32], soft: u64) -> Vec<AudioSegment> {
        let i = &self.cfg.ingest;
        let mut gate =
            AudioSegmenter::new(i.audio_gate_level, i.audio_gate_hangover_ms, soft, i.audio_max_segment_ms);
        let mut segments = Vec::new();
        for (k, chunk) in audio.chunks(1024).enumerate() {
            segments.extend(gate.push(k as i64 * 64, chunk));
        }
        segments.extend(gate.flush());
        segments
    }

    /// Every utterance of every segment transcribed, joined.
    fn hear(&mut self, segments: &[AudioSegment]) -> Result<String> {
        let sp = &self.cfg.speech;
        let mut heard = Vec::new();
        for seg in segments {
            let regions = self.vad.speech_regions(&seg.samples, sp.vad_threshold, sp.min_speech_ms)?;
            if regions.is_empty() {
                continue;
            }
            let samples = if sp.denoise {
                self.denoiser.denoise_around(&seg.samples, &regions)
            } else {
                seg.samples.clone()
            };
            for (s, e) in regions {
                heard.push(self.stt.transcribe(&samples[s..e])?.text);
            }
        }
        Ok(heard.join(" "))
    }
}

pub(super) fn continuous_section(rt: &Runtime, cfg: &Config, every: usize) -> Result<String> {
    let (vad, stt, denoiser) = english_speech_models(rt, cfg)?;
    let mut pool = Pool { cfg, vad, stt, denoiser };
    let sentences = english_sentences(every)?;
    let reference = sentences.join(" ");
    let i = &cfg.ingest;
    // The configured soft length, and none (segments end on the hangover's pause or the maximum).
    let softs = [i.audio_soft_segment_ms, i.audio_max_segment_ms];
    let soft_label =
        |soft: u64| if soft >= i.audio_max_segment_ms { "none".to_string() } else { format!("{soft} ms") };
    let backgrounds = [Acoustic::Clean, Acoustic::Noise(15.0), Acoustic::Music(15.0)];
    let passages = recorded_passages()?;
    let pb = bar((backgrounds.len() + passages.len()) * softs.len(), "continuous");
    let mut rows = String::new();
    for acoustic in backgrounds {
        let (audio, ends) = continuous_speech(&sentences, VOICE, GAP_MS, acoustic, 11)?;
        for soft in softs {
            let segments = pool.segments(&audio, soft);
            let mut waits: Vec<i64> = ends
                .iter()
                .filter_map(|&e| {
                    segments.iter().find(|s| s.start_ms <= e && e < s.end_ms).map(|s| s.end_ms - e)
                })
                .collect();
            waits.sort_unstable();
            let (errors, words) = scored_word_errors(&reference, &pool.hear(&segments)?);
            let longest = segments.iter().map(|s| s.end_ms - s.start_ms).max().unwrap_or(0);
            let q = |p: f64| {
                waits.get(((waits.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(0)
            };
            let _ = writeln!(
                rows,
                "| {VOICE}, {} | {} | {} | {:.1} s | {} / {} / {} ms | {} | {:.1} % |",
                acoustic.label(),
                soft_label(soft),
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
    // The real reading: no sentence ends to wait from, only what the segments make of it.
    for (file, text, audio) in &passages {
        for soft in softs {
            let segments = pool.segments(audio, soft);
            let (errors, words) = scored_word_errors(text, &pool.hear(&segments)?);
            let longest = segments.iter().map(|s| s.end_ms - s.start_ms).max().unwrap_or(0);
            let _ = writeln!(
                rows,
                "| {file} (real reading) | {} | {} | {:.1} s | — | — | {:.1} % ({errors} of {words} words) |",
                soft_label(soft),
                segments.len(),
                longest as f64 / 1000.0,
                100.0 * errors as f64 / words.max(1) as f64
            );
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    Ok(format!(
        "## Continuous speech through ingest's segmenter\n\n{} sentences spoken back to back by {VOICE} \
         ({GAP_MS} ms apart), and the real recorded reading, cut into segments by ingest's audio gate \
         (`ingest.audio_soft_segment_ms` as configured, and with no soft length), each segment heard as \
         the English speech pool hears it. \"Wait\" is from the end of a sentence's voice to the end of \
         the segment holding it: what a transcript waits before the pool can start on it. \"Closed \
         before its end\" counts sentences whose voice ended in a gap between segments (nothing \
         waited).\n\n\
         | speech | soft length | segments | longest | wait p50 / p95 / max | closed before its end | WER |\n\
         |---|---|---|---|---|---|---|\n{rows}\n",
        sentences.len()
    ))
}
