//! The speech pool's model: voice activity, then speech-to-text.

use crate::loading::runtime_for;
use crate::pool::{ItemResult, Processor};
use sightline_models::{ModelError, Moonshine, SileroVad};
use sightline_settings::Task;
use sightline_settings::{Config, ModelSpec, SpeechConfig};
use sightline_wire::{Event, EventKind, decode_audio};

/// Most utterances in one speech-to-text run.
const MAX_UTTERANCES: usize = 8;

/// Speech: Silero VAD finds the speech inside each audio segment, Moonshine transcribes it.
pub struct SpeechProcessor {
    vad: SileroVad,
    stt: Moonshine,
    cfg: SpeechConfig,
    model: String,
}

impl SpeechProcessor {
    /// With the speech-to-text model `stt` (a registry entry of task `stt`) and `models.vad`.
    pub fn load(cfg: &Config, stt: &ModelSpec) -> Result<Self, ModelError> {
        let m = &cfg.models;
        let vad_spec = m.for_task(Task::Vad).map_err(|e| ModelError::Input(e.to_string()))?;
        let vad = SileroVad::load(&runtime_for(cfg, vad_spec)?, &m.file(vad_spec, 0))?;
        let rt = runtime_for(cfg, stt)?;
        let mut model =
            Moonshine::load(&rt, &m.file(stt, 0), &m.file(stt, 1), &m.file(stt, 2), cfg.speech.threads)?;
        model.set_beam_width(cfg.speech.beam_width);
        model.set_batching(MAX_UTTERANCES, cfg.speech.max_pad_ms as usize * 16);
        Ok(Self { vad, stt: model, cfg: cfg.speech.clone(), model: stt.id() })
    }
}

impl Processor for SpeechProcessor {
    fn kind(&self) -> &'static str {
        "speech"
    }
    fn model(&self) -> &str {
        &self.model
    }
    /// Behind its lag target the speech pool never drops an utterance: it decodes greedily (beam
    /// width 1, about two thirds of the beam search's time on the espeak set, a point or so more
    /// word errors) until it has caught up.
    fn set_behind(&mut self, behind: bool) -> bool {
        let coarse = behind && self.cfg.beam_width > 1;
        self.stt.set_beam_width(if coarse { 1 } else { self.cfg.beam_width });
        coarse
    }

    fn process(&mut self, payload: &[u8]) -> ItemResult {
        self.process_batch(&[bytes::Bytes::copy_from_slice(payload)]).pop().unwrap_or_else(|| Ok(Vec::new()))
    }

    /// The segments of several streams at once: VAD runs their windows side by side, then every
    /// utterance found in any of them goes to Moonshine together.
    fn process_batch(&mut self, payloads: &[bytes::Bytes]) -> Vec<ItemResult> {
        let mut results: Vec<ItemResult> = payloads.iter().map(|_| Ok(Vec::new())).collect();
        let mut decoded = Vec::with_capacity(payloads.len());
        for (i, p) in payloads.iter().enumerate() {
            match decode_audio(p) {
                Ok(d) => decoded.push((i, d)),
                Err(e) => results[i] = Err(e.into()),
            }
        }
        let segments: Vec<&[f32]> = decoded.iter().map(|(_, (_, s))| s.as_slice()).collect();
        let regions =
            match self.vad.speech_regions_batch(&segments, self.cfg.vad_threshold, self.cfg.min_speech_ms) {
                Ok(r) => r,
                Err(e) => {
                    decoded.iter().for_each(|(i, _)| results[*i] = Err(e.clone().into()));
                    return results;
                }
            };
        // Every utterance: (its segment's place in `decoded`, start and end sample).
        let utterances: Vec<(usize, usize, usize)> =
            regions.iter().enumerate().flat_map(|(d, r)| r.iter().map(move |&(s, e)| (d, s, e))).collect();
        let audio: Vec<&[f32]> = utterances.iter().map(|&(d, s, e)| &segments[d][s..e]).collect();
        let transcripts = self.stt.transcribe_batch(&audio);
        for (&(d, s, e), t) in utterances.iter().zip(transcripts) {
            let (i, (meta, _)) = &decoded[d];
            let t = match t {
                Ok(t) => t,
                Err(ModelError::Input(_)) => continue, // too short to say anything
                Err(err) => {
                    results[*i] = Err(err.into());
                    continue;
                }
            };
            let Ok(events) = &mut results[*i] else { continue };
            if t.text.is_empty() {
                continue;
            }
            let start = meta.start_ms + (s as i64 * 1000 / 16_000);
            let end = meta.start_ms + (e as i64 * 1000 / 16_000);
            let mut ev = Event::new(
                EventKind::Transcript,
                meta.stream(),
                start,
                meta.wall_ms + (start - meta.start_ms),
                &self.model,
            );
            ev.end_ms = Some(end);
            ev.text = t.text;
            ev.score = t.confidence;
            events.push(ev);
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_its_target_speech_decodes_greedily_then_returns_to_the_beam() {
        let cfg = Config::load(None).unwrap();
        let spec = cfg.models.for_task(Task::Stt).unwrap().clone();
        let mut p = SpeechProcessor::load(&cfg, &spec).unwrap();
        assert!(cfg.speech.beam_width > 1, "the shipped config searches a beam");
        assert!(p.set_behind(true), "behind: coarser, and it says so");
        assert_eq!(p.stt.beam_width(), 1);
        assert!(!p.set_behind(false));
        assert_eq!(p.stt.beam_width(), cfg.speech.beam_width, "caught up: the beam again");
        let mut greedy = cfg.clone();
        greedy.speech.beam_width = 1;
        let mut g = SpeechProcessor::load(&greedy, &spec).unwrap();
        assert!(!g.set_behind(true), "nothing is coarser than greedy: not counted as coarse");
    }
}
