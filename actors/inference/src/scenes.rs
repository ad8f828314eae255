//! The scene pool's model: confirms the cut candidates ingest found and keeps the frames worth
//! keeping (keyframes and visibly changed frames), labelled and embedded in one run per batch.

use crate::loading::{gpu_preprocessor, load_image_text, model_file, runtime_for};
use crate::pool::{ItemResult, Processor};
use base64::Engine;
use sightline_models::{FrameSignature, ImageLabeler, ImageTextModel, ModelError, hamming, thumbnail_bmp};
use sightline_settings::Task;
use sightline_settings::{Config, CutDetector, ModelSpec};
use sightline_telemetry::Metrics;
use sightline_wire::{Detail, Event, EventKind, FrameInfo, FrameMeta, Label, SceneInfo, decode_frame};
use std::sync::Arc;
use std::time::Duration;

/// Scene cuts and frames: confirms the frame-exact cut candidates ingest attached to sampled
/// frames, and emits a `frame` event (with its signature) for keyframes and for frames that changed
/// visibly since the stream's last emitted frame. Unchanged frames are skipped and counted.
pub struct SceneProcessor {
    pub min_score: f32,
    /// Artificial delay per message (load tests).
    pub throttle: std::time::Duration,
    /// A frame differing from the last emitted one by more than this many hash bits is emitted.
    pub change_bits: u32,
    /// A frame is emitted at least this often per stream, milliseconds (0: only on change).
    pub max_interval_ms: i64,
    pub metrics: Arc<Metrics>,
    /// Last emitted frame per stream: perceptual hash and media time.
    pub last: std::collections::HashMap<String, (u64, i64)>,
    /// Labels emitted frames (EfficientNet-Lite0) when `scenes.labels` is on.
    pub labeler: Option<ImageLabeler>,
    /// Model recorded on labelled frames: the signature and the labeller.
    pub labeled_model: String,
    pub label_top_k: usize,
    /// Labels at least this probable become the frame event's searchable text.
    pub label_min_score: f32,
    /// Emit `scene` events for the fast detector's cuts (`ingest.cut_detector = "fast"`); with
    /// TransNetV2 the shots pool emits them and the fast cuts only mark keyframes.
    pub emit_cuts: bool,
    /// Embeds kept frames in the image-text space when `models.image_text` names a model.
    pub image_text: Option<ImageTextModel>,
}

/// Streams whose last frame is remembered; past this the memory is cleared (bounded state).
const MAX_TRACKED_STREAMS: usize = 4096;

impl SceneProcessor {
    /// Without the labeller (no model files needed).
    pub fn new(cfg: &Config, metrics: Arc<Metrics>) -> Self {
        Self {
            min_score: cfg.ingest.cut_threshold,
            throttle: Duration::from_millis(cfg.scenes.throttle_ms),
            change_bits: cfg.scenes.frame_change_bits,
            max_interval_ms: cfg.scenes.frame_max_interval_ms as i64,
            metrics,
            last: Default::default(),
            labeler: None,
            labeled_model: FRAME_MODEL.to_string(),
            label_top_k: cfg.scenes.label_top_k,
            label_min_score: cfg.scenes.label_min_score,
            emit_cuts: cfg.ingest.cut_detector == CutDetector::Fast,
            image_text: None,
        }
    }

    /// With the labeller `labels` (a registry entry of task `labels`) when `scenes.labels` is on.
    pub fn load(cfg: &Config, metrics: Arc<Metrics>, labels: &ModelSpec) -> Result<Self, ModelError> {
        let mut p = Self::new(cfg, metrics);
        if cfg.scenes.labels {
            let rt = runtime_for(cfg, labels)?;
            let f = |i| model_file(cfg, labels, &rt, i);
            let mut labeler = ImageLabeler::load(&rt, &f(0), &f(1), 1)?;
            if let Some(gpu) = gpu_preprocessor(cfg, &rt) {
                labeler = labeler.with_gpu(gpu);
            }
            p.labeler = Some(labeler);
            p.labeled_model = format!("{FRAME_MODEL}+{}", labels.id());
        }
        if let Ok(spec) = cfg.models.for_task(Task::ImageText) {
            p.image_text = Some(load_image_text(cfg, spec)?);
            p.labeled_model = format!("{}+{}", p.labeled_model, spec.id());
        }
        Ok(p)
    }

    fn frame_event(&mut self, meta: &FrameMeta, pixels: &[u8], keyframe: bool) -> Option<Event> {
        let sig = FrameSignature::of_rgb(pixels, meta.width as usize, meta.height as usize)?;
        let previous = self.last.get(&meta.stream_id).copied();
        // A media clock that went backwards is a restarted stream: its next frame is a keyframe.
        let keyframe = keyframe || previous.is_none_or(|(_, pts)| meta.pts_ms < pts);
        let due = match previous {
            _ if keyframe => true,
            Some((hash, pts)) => {
                hamming(hash, sig.phash) > self.change_bits
                    || (self.max_interval_ms > 0 && meta.pts_ms - pts >= self.max_interval_ms)
            }
            None => true,
        };
        if !due {
            self.metrics.frames_unchanged.inc();
            return None;
        }
        if self.last.len() >= MAX_TRACKED_STREAMS && previous.is_none() {
            self.last.clear();
        }
        self.last.insert(meta.stream_id.clone(), (sig.phash, meta.pts_ms));
        let mut e =
            Event::new(EventKind::Frame, meta.stream(), meta.pts_ms, meta.wall_ms, &self.labeled_model);
        e.score = if keyframe { 1.0 } else { 0.0 };
        let thumbnail = thumbnail_bmp(pixels, meta.width as usize, meta.height as usize, THUMB_W, THUMB_H)
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
            .unwrap_or_default();
        e.detail = Some(Detail::Frame(FrameInfo {
            keyframe,
            phash: format!("{:016x}", sig.phash),
            vector: sig.vector,
            labels: Vec::new(),
            features: Vec::new(),
            image_text: Vec::new(),
            thumbnail,
        }));
        Some(e)
    }
}

pub const FRAME_MODEL: &str = "frame-signature@1";

/// Size of the thumbnails kept for frames.
const THUMB_W: usize = 96;
const THUMB_H: usize = 54;

impl Processor for SceneProcessor {
    fn kind(&self) -> &'static str {
        "scenes"
    }
    /// Behind its target, the scene pool keeps every frame that carries a cut (the scene events and
    /// their keyframes) and gives up the frames in between (fewer frame events per scene).
    fn sheddable(h: &sightline_wire::WorkHeader) -> bool {
        !h.has_cuts()
    }
    fn model(&self) -> &str {
        "cut-detector@1"
    }
    fn process(&mut self, payload: &[u8]) -> ItemResult {
        self.process_batch(&[bytes::Bytes::copy_from_slice(payload)]).pop().unwrap_or_else(|| Ok(Vec::new()))
    }

    /// Cuts and frame events message by message, then one labeller run (and one image-text run)
    /// over every frame kept in the batch, whichever streams they come from.
    fn process_batch(&mut self, payloads: &[bytes::Bytes]) -> Vec<ItemResult> {
        let mut results: Vec<ItemResult> = payloads.iter().map(|p| self.unlabelled(p)).collect();
        if self.labeler.is_none() && self.image_text.is_none() {
            return results;
        }
        // (message, event) of each kept frame, and its pixels.
        let mut at = Vec::new();
        let mut images = Vec::new();
        for (i, r) in results.iter().enumerate() {
            let Ok(events) = r else { continue };
            if let Some(j) = events.iter().position(|e| e.kind == EventKind::Frame)
                && let Ok((meta, pixels)) = decode_frame(&payloads[i])
            {
                at.push((i, j));
                images.push((pixels, meta.width as usize, meta.height as usize));
            }
        }
        if images.is_empty() {
            return results;
        }
        let frame = kept_frame;
        if let Some(model) = self.image_text.as_mut() {
            match model.embed_images(&images) {
                Ok(vectors) => {
                    for (&ij, v) in at.iter().zip(vectors) {
                        if let Some(f) = frame(&mut results, ij).and_then(|e| e.frame_mut()) {
                            f.image_text = v;
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, frames = images.len(), "image-text embedding failed; frames kept without it")
                }
            }
        }
        let Some(labeler) = self.labeler.as_mut() else { return results };
        let labelled = match labeler.label(&images, self.label_top_k) {
            Ok(l) => l,
            Err(err) => {
                tracing::warn!(error = %err, frames = images.len(), "labelling failed; frames kept without labels");
                return results;
            }
        };
        for (ij, found) in at.into_iter().zip(labelled) {
            let Some(e) = frame(&mut results, ij) else { continue };
            let labels: Vec<Label> =
                found.top.into_iter().map(|(name, score)| Label { name, score }).collect();
            // Confident labels are the frame's text, so search finds frames by what they show.
            e.text = labels
                .iter()
                .filter(|l| l.score >= self.label_min_score)
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            if let Some(f) = e.frame_mut() {
                f.labels = labels;
                f.features = found.features;
            }
        }
        results
    }
}

impl SceneProcessor {
    /// One message's cut and frame events, without labels.
    fn unlabelled(&mut self, payload: &[u8]) -> ItemResult {
        let (meta, pixels) = decode_frame(payload)?;
        if !self.throttle.is_zero() {
            std::thread::sleep(self.throttle);
        }
        let mut events: Vec<Event> = meta
            .cuts
            .iter()
            .filter(|c| c.score >= self.min_score)
            .map(|c| {
                let mut e = Event::new(
                    EventKind::Scene,
                    meta.stream(),
                    c.pts_ms,
                    meta.wall_ms - (meta.pts_ms - c.pts_ms),
                    self.model(),
                );
                e.score = c.score;
                if c.transition.is_some() {
                    e.detail = Some(Detail::Scene(SceneInfo {
                        keyframe_id: String::new(),
                        transition: c.transition,
                    }));
                }
                e
            })
            .collect();
        let keyframe = !events.is_empty();
        if !self.emit_cuts {
            events.clear();
        }
        if let Some(frame) = self.frame_event(&meta, pixels, keyframe) {
            if frame.frame().is_some_and(|f| f.keyframe) {
                for scene in &mut events {
                    let transition = match &scene.detail {
                        Some(Detail::Scene(info)) => info.transition,
                        _ => None,
                    };
                    scene.detail =
                        Some(Detail::Scene(SceneInfo { keyframe_id: frame.id.clone(), transition }));
                }
            }
            events.push(frame);
        }
        Ok(events)
    }
}

/// The event `j` of message `i`'s results, when that message succeeded.
fn kept_frame(results: &mut [ItemResult], (i, j): (usize, usize)) -> Option<&mut Event> {
    results[i].as_mut().ok().map(|events| &mut events[j])
}
