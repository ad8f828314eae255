//! The OCR pool's model: on-screen text of frames that changed.

use crate::loading::runtime_for;
use crate::pool::{ItemResult, MAX_TRACKED_STREAMS, Processor};
use sightline_models::{FrameSignature, ModelError, Ocr, OcrParams, hamming};
use sightline_settings::{Config, ModelSpec, OcrConfig};
use sightline_telemetry::Metrics;
use sightline_wire::{Detail, Event, EventKind, OcrInfo, decode_frame};
use std::sync::Arc;

/// On-screen text: reads sampled frames that changed visibly since the stream's last read frame
/// (perceptual hash), and emits one `ocr` event per line not already on that previous frame.
pub struct OcrProcessor {
    ocr: Ocr,
    cfg: OcrConfig,
    metrics: Arc<Metrics>,
    /// Per stream: hash and media time of the last read frame, and the lines read on it.
    last: std::collections::HashMap<String, (u64, i64, Vec<String>)>,
    model: String,
}

impl OcrProcessor {
    /// With the OCR model `spec` (a registry entry of task `ocr`).
    pub fn load(cfg: &Config, metrics: Arc<Metrics>, spec: &ModelSpec) -> Result<Self, ModelError> {
        let m = &cfg.models;
        let o = &cfg.ocr;
        let rt = runtime_for(cfg, spec)?;
        let params = OcrParams {
            det_short_side: o.det_short_side,
            det_threshold: o.det_threshold,
            box_threshold: o.box_threshold,
            unclip_ratio: o.unclip_ratio,
            min_confidence: o.min_confidence,
            max_lines: o.max_lines,
        };
        let ocr = Ocr::load(&rt, &m.file(spec, 0), &m.file(spec, 1), o.threads, params)?;
        Ok(Self { ocr, cfg: o.clone(), metrics, last: Default::default(), model: spec.id() })
    }
}

impl Processor for OcrProcessor {
    fn kind(&self) -> &'static str {
        "ocr"
    }
    /// Behind its target, OCR reads keyframes (a new scene, where captions change) and gives up
    /// the frames in between first.
    fn sheddable(h: &sightline_wire::WorkHeader) -> bool {
        !h.has_cuts()
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn process(&mut self, payload: &[u8]) -> ItemResult {
        let (meta, pixels) = decode_frame(payload)?;
        let (w, h) = (meta.width as usize, meta.height as usize);
        let Some(sig) = FrameSignature::of_rgb(pixels, w, h) else { return Ok(Vec::new()) };
        let previous = self.last.get(&meta.stream_id);
        let due = match previous {
            None => true,
            // A media clock that went backwards is a restarted stream.
            Some(&(hash, pts, _)) => {
                meta.pts_ms < pts
                    || hamming(hash, sig.phash) > self.cfg.change_bits
                    || meta.pts_ms - pts >= self.cfg.max_interval_ms as i64
            }
        };
        if !due {
            self.metrics.ocr_frames_skipped.inc();
            return Ok(Vec::new());
        }
        let lines = self.ocr.read(pixels, w, h)?;
        let before: &[String] = previous.map(|p| p.2.as_slice()).unwrap_or(&[]);
        let events = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !before.contains(&l.text))
            .map(|(i, l)| {
                let mut e = Event::new(EventKind::Ocr, meta.stream(), meta.pts_ms, meta.wall_ms, &self.model);
                // Several lines can be read off one frame: the line's place makes the id unique.
                e.id = format!("{}.{i}", e.id);
                e.text = l.text.clone();
                e.score = l.confidence;
                e.detail = Some(Detail::Ocr(OcrInfo { bbox: l.bbox }));
                e
            })
            .collect();
        if self.last.len() >= MAX_TRACKED_STREAMS && previous.is_none() {
            self.last.clear();
        }
        self.last.insert(
            meta.stream_id.clone(),
            (sig.phash, meta.pts_ms, lines.into_iter().map(|l| l.text).collect()),
        );
        Ok(events)
    }
}
