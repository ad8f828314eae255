//! The shots pool's model: TransNetV2 shot boundaries over windows of every decoded frame.

use crate::loading::{model_file, runtime_for};
use crate::pool::{ItemError, ItemResult, Processor};
use sightline_models::{ModelError, SHOT_FRAME_BYTES, ShotDetector, shot_starts};
use sightline_settings::{Config, ModelSpec};
use sightline_wire::{Event, EventKind, ShotWindowMeta, decode_shot_window};

/// Shot boundaries: TransNetV2 over windows of every decoded frame at 48x27, batched across
/// streams (`ingest.cut_detector = "transnetv2"`). Each window gives the `scene` events of the
/// frames it is read for.
pub struct ShotProcessor {
    detector: ShotDetector,
    threshold: f32,
    model: String,
}

impl ShotProcessor {
    /// With the shot model `spec` (a registry entry of task `shots`).
    pub fn load(cfg: &Config, spec: &ModelSpec) -> Result<Self, ModelError> {
        let rt = runtime_for(cfg, spec)?;
        let detector = ShotDetector::load(&rt, &model_file(cfg, spec, &rt, 0), cfg.shots.threads)?;
        Ok(Self { detector, threshold: cfg.shots.threshold, model: spec.id() })
    }

    /// A window's metadata and frames, checked against the model's input.
    fn window(payload: &[u8]) -> Result<(ShotWindowMeta, &[u8]), ItemError> {
        let (meta, frames) = decode_shot_window(payload)?;
        let n = meta.pts_ms.len();
        if n != sightline_models::shots::SHOT_WINDOW || frames.len() != n * SHOT_FRAME_BYTES {
            return Err(ItemError(format!(
                "a shot window must hold {} frames of 48x27; this one has {n} of {}x{}",
                sightline_models::shots::SHOT_WINDOW,
                meta.width,
                meta.height
            )));
        }
        if meta.read_from >= meta.read_to || meta.read_to > n {
            return Err(ItemError(format!(
                "read range {}..{} is not within the window",
                meta.read_from, meta.read_to
            )));
        }
        Ok((meta, frames))
    }

    /// `scene` events of the frames a window is read for: where each new shot starts.
    fn scenes(&self, meta: &ShotWindowMeta, probs: &[f32]) -> Vec<Event> {
        let last = meta.pts_ms.last().copied().unwrap_or_default();
        shot_starts(probs, self.threshold)
            .into_iter()
            .filter(|(i, _)| (meta.read_from..meta.read_to).contains(i))
            .map(|(i, p)| {
                let pts = meta.pts_ms[i];
                let mut e = Event::new(
                    EventKind::Scene,
                    meta.stream(),
                    pts,
                    meta.wall_ms - (last - pts),
                    &self.model,
                );
                e.score = p;
                e
            })
            .collect()
    }
}

impl Processor for ShotProcessor {
    fn kind(&self) -> &'static str {
        "shots"
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn process(&mut self, payload: &[u8]) -> ItemResult {
        self.process_batch(&[bytes::Bytes::copy_from_slice(payload)]).pop().unwrap_or_else(|| Ok(Vec::new()))
    }

    /// One model run over every valid window of the batch, whichever streams they come from.
    fn process_batch(&mut self, payloads: &[bytes::Bytes]) -> Vec<ItemResult> {
        let windows: Vec<Result<(ShotWindowMeta, &[u8]), ItemError>> =
            payloads.iter().map(|p| Self::window(p)).collect();
        let frames: Vec<&[u8]> = windows.iter().filter_map(|w| w.as_ref().ok().map(|(_, f)| *f)).collect();
        let mut probs = match self.detector.predict(&frames) {
            Ok(p) => p.into_iter(),
            Err(e) => {
                let e = ItemError::from(e);
                return windows.into_iter().map(|w| w.and(Err(e.clone()))).collect();
            }
        };
        windows
            .into_iter()
            .map(|w| {
                let (meta, _) = w?;
                let p = probs.next().ok_or("the model returned fewer windows than it was given")?;
                Ok(self.scenes(&meta, &p))
            })
            .collect()
    }
}
