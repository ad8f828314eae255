//! The OCR pool's model: on-screen text of frames that changed.

use crate::loading::{model_file, runtime_for};
use crate::pool::{ItemError, ItemResult, MAX_TRACKED_STREAMS, Processor};
use sightline_models::{FrameSignature, ModelError, Ocr, OcrParams, hamming};
use sightline_settings::{Config, ModelSpec, OcrConfig};
use sightline_telemetry::Metrics;
use sightline_wire::{Detail, Event, EventKind, OcrInfo, decode_frame};
use std::sync::Arc;

/// On-screen text: reads sampled frames that changed visibly since the stream's last read frame
/// (perceptual hash), or whose text regions changed (a caption's words on the same background),
/// and emits one `ocr` event per line not already on that previous frame.
pub struct OcrProcessor {
    ocr: Ocr,
    cfg: OcrConfig,
    metrics: Arc<Metrics>,
    /// Per stream: the last read frame.
    last: std::collections::HashMap<String, LastRead>,
    model: String,
}

/// What is kept of a stream's last read frame.
struct LastRead {
    phash: u64,
    pts_ms: i64,
    /// The lines read on it, and where they were.
    lines: Vec<String>,
    regions: Vec<[f32; 4]>,
    /// Its grey thumbnail ([`THUMB_W`] × [`THUMB_H`]).
    luma: Vec<u8>,
}

const THUMB_W: usize = 96;
const THUMB_H: usize = 54;

/// A grey `THUMB_W` × `THUMB_H` thumbnail of an RGB frame (cell means).
fn luma_thumb(rgb: &[u8], width: usize, height: usize) -> Vec<u8> {
    let mut out = vec![0u8; THUMB_W * THUMB_H];
    for ty in 0..THUMB_H {
        let (y0, y1) = (ty * height / THUMB_H, ((ty + 1) * height / THUMB_H).max(ty * height / THUMB_H + 1));
        for tx in 0..THUMB_W {
            let (x0, x1) = (tx * width / THUMB_W, ((tx + 1) * width / THUMB_W).max(tx * width / THUMB_W + 1));
            let (mut sum, mut n) = (0u32, 0u32);
            for y in y0..y1.min(height) {
                for x in x0..x1.min(width) {
                    let p = &rgb[(y * width + x) * 3..(y * width + x) * 3 + 3];
                    sum += (77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32) >> 8;
                    n += 1;
                }
            }
            out[ty * THUMB_W + tx] = (sum / n.max(1)) as u8;
        }
    }
    out
}

/// Mean absolute difference of two thumbnails inside `bbox` (fractions of the frame), grown by a
/// thumbnail pixel on each side.
fn region_change(a: &[u8], b: &[u8], bbox: [f32; 4]) -> f32 {
    let px = |f: f32, n: usize| ((f * n as f32) as isize).clamp(0, n as isize) as usize;
    let (x0, x1) = (px(bbox[0], THUMB_W).saturating_sub(1), (px(bbox[2], THUMB_W) + 1).min(THUMB_W));
    let (y0, y1) = (px(bbox[1], THUMB_H).saturating_sub(1), (px(bbox[3], THUMB_H) + 1).min(THUMB_H));
    let (mut sum, mut n) = (0u32, 0u32);
    for y in y0..y1 {
        for x in x0..x1 {
            sum += a[y * THUMB_W + x].abs_diff(b[y * THUMB_W + x]) as u32;
            n += 1;
        }
    }
    if n == 0 { 0.0 } else { sum as f32 / n as f32 }
}

impl OcrProcessor {
    /// With the OCR model `spec` (a registry entry of task `ocr`).
    pub fn load(cfg: &Config, metrics: Arc<Metrics>, spec: &ModelSpec) -> Result<Self, ModelError> {
        let o = &cfg.ocr;
        let rt = runtime_for(cfg, spec)?;
        let params = OcrParams::from_config(o).batched_for(rt.provider(), o.batch_max);
        let f = |i| model_file(cfg, spec, &rt, i);
        let ocr = Ocr::load(&rt, &f(0), &f(1), o.threads, params)?;
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
                .or_else(|| self.last.get(&meta.stream_id).map(|l| (l.phash, l.pts_ms)));
            let luma = luma_thumb(pixels, w, h);
            // Where the last read frame had text, did it change? (Its words, on the same
            // background, hardly move the whole frame's hash.)
            let text_changed = self.cfg.region_change > 0.0
                && self.last.get(&meta.stream_id).is_some_and(|l| {
                    l.regions.iter().any(|r| region_change(&l.luma, &luma, *r) > self.cfg.region_change)
                });
            let is_due = match previous {
                None => true,
                // A media clock that went backwards is a restarted stream.
                Some((hash, pts)) => {
                    meta.pts_ms < pts
                        || text_changed
                        || hamming(hash, sig.phash) > self.cfg.change_bits
                        || meta.pts_ms - pts >= self.cfg.max_interval_ms as i64
                }
            };
            if is_due {
                chosen.insert(meta.stream_id.as_str(), (sig.phash, meta.pts_ms));
                due.push((i, meta, *pixels, (sig.phash, luma)));
            } else {
                self.metrics.ocr_frames_skipped.inc();
            }
        }
        let frames: Vec<(&[u8], usize, usize)> =
            due.iter().map(|(_, m, px, _)| (*px, m.width as usize, m.height as usize)).collect();
        let read = self.ocr.read_batch(&frames);
        for ((i, meta, _, (phash, luma)), lines) in due.into_iter().zip(read) {
            let lines = match lines {
                Ok(l) => l,
                Err(e) => {
                    results[i] = Err(e.into());
                    continue;
                }
            };
            let previous = self.last.get(&meta.stream_id);
            let before: &[String] = previous.map(|p| p.lines.as_slice()).unwrap_or(&[]);
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
            let regions = lines.iter().map(|l| l.bbox).collect();
            let lines = lines.into_iter().map(|l| l.text).collect();
            self.last.insert(
                meta.stream_id.clone(),
                LastRead { phash, pts_ms: meta.pts_ms, lines, regions, luma },
            );
            results[i] = Ok(events);
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: usize, h: usize, paint: impl Fn(usize, usize) -> u8) -> Vec<u8> {
        let paint = &paint;
        (0..h).flat_map(|y| (0..w).flat_map(move |x| [paint(x, y); 3])).collect()
    }

    #[test]
    fn new_words_in_a_text_region_count_and_the_rest_of_the_frame_does_not() {
        let (w, h) = (384, 216);
        // Grey background; "text" is a pattern of white bars in the lower third.
        let words = |phase: usize| {
            move |x: usize, y: usize| {
                if (150..170).contains(&y) && (100..280).contains(&x) && (x + phase) % 12 < 5 {
                    250
                } else {
                    60
                }
            }
        };
        let a = luma_thumb(&frame(w, h, words(0)), w, h);
        let b = luma_thumb(&frame(w, h, words(6)), w, h);
        let caption = [100.0 / 384.0, 150.0 / 216.0, 280.0 / 216.0 * 216.0 / 384.0, 170.0 / 216.0];
        assert!(region_change(&a, &b, caption) > 6.0, "{}", region_change(&a, &b, caption));
        assert_eq!(region_change(&a, &a, caption), 0.0);
        // A change elsewhere (top of the frame) leaves the caption's region alone.
        let c = luma_thumb(&frame(w, h, |x, y| if y < 40 { 200 } else { words(0)(x, y) }), w, h);
        assert!(region_change(&a, &c, caption) < 1.0);
    }
}
