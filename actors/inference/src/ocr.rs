//! The OCR pool's model: on-screen text of frames that changed.

use crate::loading::runtime_for;
use crate::pool::{ItemError, ItemResult, MAX_TRACKED_STREAMS, Processor};
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
            ..OcrParams::default()
        }
        .batched_for(rt.provider(), o.batch_max);
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
        self.process_batch(&[bytes::Bytes::copy_from_slice(payload)]).pop().unwrap_or_else(|| Ok(Vec::new()))
    }

    /// Frames of several streams at once: which are due is decided in order (as one by one), the
    /// due ones are read in shared detector and recogniser runs, then each frame's new lines are
    /// found against the lines of its stream's previous read frame, in order again.
    fn process_batch(&mut self, payloads: &[bytes::Bytes]) -> Vec<ItemResult> {
        let mut results: Vec<ItemResult> = payloads.iter().map(|_| Ok(Vec::new())).collect();
        // (item, meta, pixels, hash) of the frames to read.
        let mut due = Vec::new();
        // Hash and media time of the last frame chosen per stream, this batch included.
        let mut chosen: std::collections::HashMap<&str, (u64, i64)> = Default::default();
        let decoded: Vec<_> = payloads.iter().map(|p| decode_frame(p)).collect();
        for (i, d) in decoded.iter().enumerate() {
            let (meta, pixels) = match d {
                Ok(d) => d,
                Err(e) => {
                    results[i] = Err(ItemError(e.to_string()));
                    continue;
                }
            };
            let (w, h) = (meta.width as usize, meta.height as usize);
            let Some(sig) = FrameSignature::of_rgb(pixels, w, h) else { continue };
            let previous = chosen
                .get(meta.stream_id.as_str())
                .copied()
                .or_else(|| self.last.get(&meta.stream_id).map(|l| (l.0, l.1)));
            let is_due = match previous {
                None => true,
                // A media clock that went backwards is a restarted stream.
                Some((hash, pts)) => {
                    meta.pts_ms < pts
                        || hamming(hash, sig.phash) > self.cfg.change_bits
                        || meta.pts_ms - pts >= self.cfg.max_interval_ms as i64
                }
            };
            if is_due {
                chosen.insert(meta.stream_id.as_str(), (sig.phash, meta.pts_ms));
                due.push((i, meta, *pixels, sig.phash));
            } else {
                self.metrics.ocr_frames_skipped.inc();
            }
        }
        let frames: Vec<(&[u8], usize, usize)> =
            due.iter().map(|(_, m, px, _)| (*px, m.width as usize, m.height as usize)).collect();
        let read = self.ocr.read_batch(&frames);
        for ((i, meta, _, phash), lines) in due.into_iter().zip(read) {
            let lines = match lines {
                Ok(l) => l,
                Err(e) => {
                    results[i] = Err(e.into());
                    continue;
                }
            };
            let previous = self.last.get(&meta.stream_id);
            let before: &[String] = previous.map(|p| p.2.as_slice()).unwrap_or(&[]);
            let events = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| !before.contains(&l.text))
                .map(|(k, l)| {
                    let mut e =
                        Event::new(EventKind::Ocr, meta.stream(), meta.pts_ms, meta.wall_ms, &self.model);
                    // Several lines can be read off one frame: the line's place makes the id unique.
                    e.id = format!("{}.{k}", e.id);
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
                (phash, meta.pts_ms, lines.into_iter().map(|l| l.text).collect()),
            );
            results[i] = Ok(events);
        }
        results
    }
}
