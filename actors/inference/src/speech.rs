//! The speech pool's model: voice activity, then speech-to-text.

use crate::loading::runtime_for;
use crate::pool::{ItemResult, Processor};
use sightline_models::{ModelError, Moonshine, SileroVad};
use sightline_settings::Task;
use sightline_settings::{Config, ModelSpec, SpeechConfig};
use sightline_wire::{Event, EventKind, decode_audio};

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
    fn process(&mut self, payload: &[u8]) -> ItemResult {
        let (meta, samples) = decode_audio(payload)?;
        let regions = self.vad.speech_regions(&samples, self.cfg.vad_threshold, self.cfg.min_speech_ms)?;
        let mut events = Vec::new();
        for (s, e) in regions {
            let t = match self.stt.transcribe(&samples[s..e]) {
                Ok(t) => t,
                Err(ModelError::Input(_)) => continue, // too short to say anything
                Err(err) => return Err(err.into()),
            };
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
                self.model(),
            );
            ev.end_ms = Some(end);
            ev.text = t.text;
            ev.score = t.confidence;
            events.push(ev);
        }
        Ok(events)
    }
}
