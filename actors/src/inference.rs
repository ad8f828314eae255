//! Shared inference actors. Each worker pulls batches from one durable JetStream consumer shared
//! by every worker on every node (so N workers split the work), runs its model on a blocking
//! thread, publishes the resulting events, and only then acks. Failed items are nak'd with backoff
//! and, after `max_deliver` tries, moved to `dlq.<kind>` with the error. A panicking model fails
//! the actor; its supervisor restarts it and the unacked work is redelivered.

use crate::bus::{Bus, BusError, js_err};
use crate::metrics::{Metrics, labels};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer, consumer::pull};
use base64::Engine;
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use sightline_models::{
    FrameSignature, GpuPreprocessor, ImageLabeler, ImageTextModel, ModelError, Moonshine, Ocr, OcrParams,
    Runtime, SHOT_FRAME_BYTES, ShotDetector, SileroVad, hamming, shot_starts, thumbnail_bmp,
};
use sightline_settings::{Config, ModelSpec, OcrConfig, SpeechConfig};
use sightline_wire::{
    Event, EventKind, FrameInfo, FrameMeta, Label, OcrInfo, SceneInfo, ShotWindowMeta, decode_audio,
    decode_frame, decode_shot_window,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A model behind an inference actor: turns one work message into events.
pub trait Processor: Send + 'static {
    /// Work kind, used for consumer, DLQ subject and metric names ("scenes", "speech").
    fn kind(&self) -> &'static str;
    /// Model name@version recorded in events.
    fn model(&self) -> &str;
    fn process(&mut self, payload: &[u8]) -> Result<Vec<Event>, String>;
    /// A whole batch (messages of several streams); models that can batch their inference across
    /// the messages override this.
    fn process_batch(&mut self, payloads: &[bytes::Bytes]) -> Vec<Result<Vec<Event>, String>> {
        payloads.iter().map(|p| self.process(p)).collect()
    }
}

/// How a worker pulls its work.
#[derive(Debug, Clone)]
pub struct WorkSpec {
    pub stream: String,
    /// Subjects to consume (one or several).
    pub filters: Vec<String>,
    pub consumer: String,
    pub batch_max: usize,
    pub batch_deadline: Duration,
    pub max_ack_pending: i64,
    pub max_deliver: i64,
    pub ack_wait: Duration,
}

pub async fn work_consumer(bus: &Bus, w: &WorkSpec) -> Result<PullConsumer, BusError> {
    let stream = bus.js.get_stream(&w.stream).await.map_err(js_err(format!("stream {}", w.stream)))?;
    let config = pull::Config {
        durable_name: Some(w.consumer.clone()),
        filter_subject: if w.filters.len() == 1 { w.filters[0].clone() } else { String::new() },
        filter_subjects: if w.filters.len() == 1 { Vec::new() } else { w.filters.clone() },
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        max_ack_pending: w.max_ack_pending,
        // Redeliveries beyond this are stopped by the server; we move the message to the
        // DLQ ourselves on the last try, so the server's limit is one higher.
        max_deliver: if w.max_deliver > 0 { w.max_deliver + 1 } else { -1 },
        ack_wait: w.ack_wait,
        ..Default::default()
    };
    let what = format!("consumer {}", w.consumer);
    let mut consumer: PullConsumer =
        stream.get_or_create_consumer(&w.consumer, config.clone()).await.map_err(js_err(what.clone()))?;
    // A consumer made by an older version keeps its old settings; bring the ones we set up to date
    // (a new event kind to consume, a changed bound) without losing its position.
    let have = &consumer.cached_info().config;
    if have.filter_subject != config.filter_subject
        || have.filter_subjects != config.filter_subjects
        || have.max_ack_pending != config.max_ack_pending
        || have.max_deliver != config.max_deliver
        || have.ack_wait != config.ack_wait
    {
        tracing::info!(consumer = %w.consumer, "updating the consumer's settings");
        consumer = stream.update_consumer(config).await.map_err(js_err(what))?;
    }
    Ok(consumer)
}

/// Pulls up to `batch_max` messages, waiting at most `batch_deadline` for the batch to fill.
pub async fn fetch_batch(consumer: &PullConsumer, w: &WorkSpec) -> Result<Vec<jetstream::Message>, BusError> {
    let mut batch = consumer
        .fetch()
        .max_messages(w.batch_max)
        .expires(w.batch_deadline)
        .messages()
        .await
        .map_err(js_err("fetch"))?;
    let mut out = Vec::with_capacity(w.batch_max);
    while let Some(m) = batch.next().await {
        match m {
            Ok(m) => out.push(m),
            Err(e) => {
                tracing::debug!(error = %e, "fetch ended early");
                break;
            }
        }
    }
    Ok(out)
}

pub struct InferenceActor<P: Processor>(std::marker::PhantomData<fn() -> P>);

impl<P: Processor> Default for InferenceActor<P> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

pub type MakeProcessor<P> = Arc<dyn Fn() -> Result<P, ModelError> + Send + Sync>;

pub struct InferenceArgs<P> {
    pub bus: Bus,
    pub work: WorkSpec,
    pub metrics: Arc<Metrics>,
    /// Builds the model (on a blocking thread; loading can take a while).
    pub make: MakeProcessor<P>,
    /// The registry's fallback for the model, and when it takes over.
    pub fallback: Option<(MakeProcessor<P>, FallbackPolicy)>,
}

/// When a pool's work goes to the fallback model (from the primary's registry entry). The
/// fallback also takes over when the primary fails to load, and retries any item the primary
/// failed on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FallbackPolicy {
    /// Work waiting above this sends batches to the fallback (0: never).
    pub queue_threshold: u64,
    /// A primary batch running longer than this hands the pool to the fallback for `cooldown`.
    pub timeout: Option<Duration>,
    pub cooldown: Duration,
}

impl FallbackPolicy {
    pub fn of(spec: &ModelSpec) -> Self {
        Self {
            queue_threshold: spec.queue_threshold,
            timeout: (spec.timeout_ms > 0).then(|| Duration::from_millis(spec.timeout_ms)),
            cooldown: Duration::from_secs(spec.fallback_cooldown_s),
        }
    }
}

pub struct InferenceState<P> {
    bus: Bus,
    work: WorkSpec,
    metrics: Arc<Metrics>,
    consumer: PullConsumer,
    /// None when the primary failed to load and the fallback serves alone.
    primary: Option<Arc<Mutex<P>>>,
    fallback: Option<(Arc<Mutex<P>>, FallbackPolicy)>,
    kind: &'static str,
    model: String,
    /// The fallback serves until then (after a primary timeout).
    fallback_until: Option<Instant>,
    /// Whether the queue was over the threshold at the last look, and when that was.
    queue_over: (bool, Option<Instant>),
}

pub enum InferenceMsg {
    Poll,
}

impl<P: Processor> Actor for InferenceActor<P> {
    type Msg = InferenceMsg;
    type State = InferenceState<P>;
    type Arguments = InferenceArgs<P>;

    async fn pre_start(
        &self,
        myself: ActorRef<InferenceMsg>,
        args: InferenceArgs<P>,
    ) -> Result<InferenceState<P>, ActorProcessingErr> {
        let make = args.make.clone();
        let primary = tokio::task::spawn_blocking(move || make()).await?;
        let fallback = match (&args.fallback, &primary) {
            (Some((make, policy)), _) => {
                let (make, policy) = (make.clone(), *policy);
                match tokio::task::spawn_blocking(move || make()).await? {
                    Ok(p) => Some((p, policy)),
                    Err(e) if primary.is_ok() => {
                        tracing::warn!(error = %e, "fallback model failed to load; running without one");
                        None
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            (None, _) => None,
        };
        let primary = match primary {
            Ok(p) => Some(p),
            Err(e) if fallback.is_some() => {
                tracing::error!(error = %e, "model failed to load; its fallback serves instead");
                None
            }
            Err(e) => return Err(e.into()),
        };
        let consumer = work_consumer(&args.bus, &args.work).await?;
        let first = primary.as_ref().or(fallback.as_ref().map(|f| &f.0)).expect("one model loaded");
        let (kind, model) = (first.kind(), first.model().to_string());
        let fallback_model = fallback.as_ref().map(|f| f.0.model().to_string());
        tracing::info!(kind, %model, fallback = ?fallback_model, consumer = %args.work.consumer, "inference worker ready");
        myself.send_message(InferenceMsg::Poll)?;
        Ok(InferenceState {
            bus: args.bus,
            work: args.work,
            metrics: args.metrics,
            consumer,
            primary: primary.map(|p| Arc::new(Mutex::new(p))),
            fallback: fallback.map(|(p, policy)| (Arc::new(Mutex::new(p)), policy)),
            kind,
            model,
            fallback_until: None,
            queue_over: (false, None),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<InferenceMsg>,
        _msg: InferenceMsg,
        st: &mut InferenceState<P>,
    ) -> Result<(), ActorProcessingErr> {
        let batch = match fetch_batch(&st.consumer, &st.work).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(kind = st.kind, error = %e, "fetch failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                myself.send_message(InferenceMsg::Poll)?;
                return Ok(());
            }
        };
        if !batch.is_empty() {
            process_batch(st, batch).await?;
        }
        myself.send_message(InferenceMsg::Poll)?;
        Ok(())
    }
}

/// How often a pool with a queue threshold asks JetStream how much work waits.
const QUEUE_LOOK_EVERY: Duration = Duration::from_millis(250);

/// Runs `payloads` on one model on a blocking thread; None when it ran past `timeout` (the thread
/// finishes on its own; its results are dropped). A panic surfaces as a JoinError.
async fn run_model<P: Processor>(
    processor: &Arc<Mutex<P>>,
    payloads: Vec<bytes::Bytes>,
    timeout: Option<Duration>,
) -> Result<Option<(Vec<Result<Vec<Event>, String>>, String)>, tokio::task::JoinError> {
    let processor = processor.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut p = processor.lock().unwrap_or_else(|e| e.into_inner());
        (p.process_batch(&payloads), p.model().to_string())
    });
    match timeout {
        Some(t) => match tokio::time::timeout(t, task).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        },
        None => task.await.map(Some),
    }
}

impl<P: Processor> InferenceState<P> {
    /// Whether this batch goes to the fallback: the primary is missing or cooling down after a
    /// timeout, or the work waiting is over the threshold (looked up at most every 250 ms).
    async fn use_fallback(&mut self) -> bool {
        let Some((_, policy)) = self.fallback.as_ref() else { return false };
        let policy = *policy;
        if self.primary.is_none() || self.fallback_until.is_some_and(|t| Instant::now() < t) {
            return true;
        }
        if policy.queue_threshold == 0 {
            return false;
        }
        if self.queue_over.1.is_none_or(|t| t.elapsed() >= QUEUE_LOOK_EVERY) {
            let waiting = self.consumer.info().await.map(|i| i.num_pending).unwrap_or(0);
            self.queue_over = (waiting > policy.queue_threshold, Some(Instant::now()));
        }
        self.queue_over.0
    }

    fn count_fallback(&self, reason: &str, n: usize) {
        let l = labels(&[("model", &self.model), ("reason", reason)]);
        self.metrics.model_fallbacks.get_or_create(&l).inc_by(n as u64);
    }
}

async fn process_batch<P: Processor>(
    st: &mut InferenceState<P>,
    batch: Vec<jetstream::Message>,
) -> Result<(), ActorProcessingErr> {
    let l = labels(&[("model", &st.model)]);
    st.metrics.batch_size.get_or_create(&l).observe(batch.len() as f64);
    let again = batch.iter().filter(|m| m.info().is_ok_and(|i| i.delivered > 1)).count();
    if again > 0 {
        st.metrics.redelivered.get_or_create(&labels(&[("kind", st.kind)])).inc_by(again as u64);
    }
    let payloads: Vec<bytes::Bytes> = batch.iter().map(|m| m.payload.clone()).collect();
    let started = Instant::now();
    let on_fallback = st.use_fallback().await;
    let fallback = st.fallback.as_ref().map(|(p, policy)| (p.clone(), *policy));
    // A panic in a model surfaces as a JoinError (`?`): the actor fails, its supervisor restarts
    // it, and the unacked batch is redelivered.
    let ran = match (on_fallback, &st.primary, &fallback) {
        (true, _, Some((fb, _))) => {
            st.count_fallback("queue_or_unavailable", batch.len());
            run_model(fb, payloads.clone(), None).await?
        }
        (_, Some(primary), fb) => {
            run_model(primary, payloads.clone(), fb.as_ref().and_then(|f| f.1.timeout)).await?
        }
        _ => unreachable!("a worker has a primary or a fallback"),
    };
    let Some((mut results, model)) = ran else {
        // The primary ran past its timeout: the fallback serves for a while, and this batch is
        // redelivered to it.
        let cooldown = fallback.map(|f| f.1.cooldown).unwrap_or_default();
        st.fallback_until = Some(Instant::now() + cooldown);
        st.count_fallback("timeout", batch.len());
        tracing::warn!(kind = st.kind, model = %st.model, cooldown_s = cooldown.as_secs(), "model timed out; its fallback serves");
        for msg in &batch {
            ack(msg, AckKind::Nak(Some(Duration::from_millis(100)))).await;
        }
        return Ok(());
    };
    // Items the primary failed on are retried on the fallback at once.
    if let (false, Some((fb, _))) = (on_fallback, &fallback) {
        let failed: Vec<usize> =
            results.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| i).collect();
        if !failed.is_empty() {
            st.count_fallback("error", failed.len());
            let retry: Vec<bytes::Bytes> = failed.iter().map(|&i| payloads[i].clone()).collect();
            if let Some((again, _)) = run_model(fb, retry, None).await? {
                for (i, r) in failed.into_iter().zip(again) {
                    results[i] = match (&results[i], r) {
                        (Err(first), Err(second)) => Err(format!("{first}; fallback: {second}")),
                        (_, r) => r,
                    };
                }
            }
        }
    }
    // Latency is the model's that ran the batch.
    st.metrics
        .inference_seconds
        .get_or_create(&labels(&[("model", &model)]))
        .observe(started.elapsed().as_secs_f64());

    for (msg, result) in batch.into_iter().zip(results) {
        match result {
            Ok(events) => match publish_events(&st.bus, &st.metrics, &events).await {
                Ok(()) => ack(&msg, AckKind::Ack).await,
                Err(e) => {
                    tracing::warn!(kind = st.kind, error = %e, "cannot publish events; will retry");
                    ack(&msg, AckKind::Nak(Some(Duration::from_secs(1)))).await;
                }
            },
            Err(error) => {
                st.metrics.inference_errors.get_or_create(&l).inc();
                let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
                if st.work.max_deliver > 0 && delivered >= st.work.max_deliver {
                    tracing::warn!(kind = st.kind, %error, delivered, "moving work to the dead-letter subject");
                    match dead_letter(&st.bus, st.kind, &msg, &error, delivered).await {
                        Ok(()) => {
                            st.metrics.dlq.get_or_create(&labels(&[("kind", st.kind)])).inc();
                            ack(&msg, AckKind::Term).await
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot write to the DLQ; leaving the message for redelivery");
                            ack(&msg, AckKind::Nak(Some(Duration::from_secs(5)))).await
                        }
                    }
                } else {
                    let delay = Duration::from_millis(200u64 << (delivered.clamp(1, 8) - 1));
                    tracing::debug!(kind = st.kind, %error, delivered, "nak with backoff");
                    ack(&msg, AckKind::Nak(Some(delay))).await;
                }
            }
        }
    }
    Ok(())
}

async fn ack(msg: &jetstream::Message, kind: AckKind) {
    if let Err(e) = msg.ack_with(kind).await {
        tracing::warn!(error = %e, "ack failed; the message will be redelivered");
    }
}

pub async fn publish_events(bus: &Bus, metrics: &Metrics, events: &[Event]) -> Result<(), BusError> {
    for e in events {
        let payload = serde_json::to_vec(e).expect("event serialises");
        bus.publish(bus.names.event_subject(e.kind, &e.stream_id), &e.id, payload).await?;
        metrics.events.get_or_create(&labels(&[("kind", e.kind.as_str())])).inc();
    }
    Ok(())
}

async fn dead_letter(
    bus: &Bus,
    kind: &str,
    msg: &jetstream::Message,
    error: &str,
    delivered: i64,
) -> Result<(), BusError> {
    let mut headers = msg.headers.clone().unwrap_or_else(HeaderMap::new);
    let one_line: String = error.chars().filter(|c| !c.is_control()).take(1000).collect();
    headers.insert("Sl-Error", one_line.as_str());
    headers.insert("Sl-Original-Subject", msg.subject.as_str());
    headers.insert("Sl-Delivered", delivered.to_string().as_str());
    let publish = jetstream::message::PublishMessage::build().payload(msg.payload.clone()).headers(headers);
    let subject = bus.names.dlq_subject(kind);
    let ack =
        bus.js.send_publish(subject.clone(), publish).await.map_err(js_err(format!("publish {subject}")))?;
    ack.await.map_err(js_err(format!("publish ack {subject}")))?;
    Ok(())
}

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
            emit_cuts: cfg.ingest.cut_detector == "fast",
            image_text: None,
        }
    }

    /// With the labeller `labels` (a registry entry of task `labels`) when `scenes.labels` is on.
    pub fn load(cfg: &Config, metrics: Arc<Metrics>, labels: &ModelSpec) -> Result<Self, ModelError> {
        let mut p = Self::new(cfg, metrics);
        if cfg.scenes.labels {
            let m = &cfg.models;
            let rt = runtime_for(cfg, labels)?;
            let mut labeler = ImageLabeler::load(&rt, &m.file(labels, 0), &m.file(labels, 1), 1)?;
            if let Some(gpu) = gpu_preprocessor(cfg, &rt) {
                labeler = labeler.with_gpu(gpu);
            }
            p.labeler = Some(labeler);
            p.labeled_model = format!("{FRAME_MODEL}+{}", labels.id());
        }
        if let Ok(spec) = cfg.models.for_task("image_text") {
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
            Event::new(EventKind::Frame, &meta.stream_id, meta.pts_ms, meta.wall_ms, &self.labeled_model);
        e.score = if keyframe { 1.0 } else { 0.0 };
        let thumbnail = thumbnail_bmp(pixels, meta.width as usize, meta.height as usize, THUMB_W, THUMB_H)
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
            .unwrap_or_default();
        e.frame = Some(FrameInfo {
            keyframe,
            phash: format!("{:016x}", sig.phash),
            vector: sig.vector,
            labels: Vec::new(),
            features: Vec::new(),
            image_text: Vec::new(),
            thumbnail,
        });
        Some(e)
    }
}

pub const FRAME_MODEL: &str = "frame-signature@1";

/// The GPU preprocessing kernel, when `rt` runs models on CUDA and `models.gpu_preprocess` is on;
/// otherwise (or when the kernel cannot load, which is logged with the reason) the CPU does it.
pub fn gpu_preprocessor(cfg: &Config, rt: &Runtime) -> Option<GpuPreprocessor> {
    let sightline_models::Provider::Cuda { device } = rt.provider() else { return None };
    if !cfg.models.gpu_preprocess {
        return None;
    }
    match GpuPreprocessor::new(device.max(0) as usize) {
        Ok(g) => {
            tracing::info!(device = g.device(), "frames are preprocessed on the GPU");
            Some(g)
        }
        Err(why) => {
            tracing::warn!(%why, "GPU preprocessing unavailable; frames are preprocessed on the CPU");
            None
        }
    }
}

/// The image-text model of registry entry `spec` (task `image_text`), one thread.
pub fn load_image_text(cfg: &Config, spec: &ModelSpec) -> Result<ImageTextModel, ModelError> {
    let m = &cfg.models;
    ImageTextModel::load(&runtime_for(cfg, spec)?, &m.file(spec, 0), &m.file(spec, 1), &m.file(spec, 2), 1)
}

/// ONNX Runtime on the execution providers a registry entry asks for.
pub fn runtime_for(cfg: &Config, spec: &ModelSpec) -> Result<Runtime, ModelError> {
    let m = &cfg.models;
    Runtime::load(&m.onnxruntime_lib())?.with_providers(m.providers_of(spec), m.cuda_device)
}

/// A registry entry the configuration validated (it exists): a panic otherwise names it.
pub fn registered<'a>(cfg: &'a Config, name: &str) -> &'a ModelSpec {
    cfg.models.model(name).unwrap_or_else(|e| panic!("{e}"))
}
/// Size of the thumbnails kept for frames.
const THUMB_W: usize = 96;
const THUMB_H: usize = 54;

impl Processor for SceneProcessor {
    fn kind(&self) -> &'static str {
        "scenes"
    }
    fn model(&self) -> &str {
        "cut-detector@1"
    }
    fn process(&mut self, payload: &[u8]) -> Result<Vec<Event>, String> {
        self.process_batch(&[bytes::Bytes::copy_from_slice(payload)]).pop().unwrap_or_else(|| Ok(Vec::new()))
    }

    /// Cuts and frame events message by message, then one labeller run (and one image-text run)
    /// over every frame kept in the batch, whichever streams they come from.
    fn process_batch(&mut self, payloads: &[bytes::Bytes]) -> Vec<Result<Vec<Event>, String>> {
        let mut results: Vec<Result<Vec<Event>, String>> =
            payloads.iter().map(|p| self.unlabelled(p)).collect();
        if self.labeler.is_none() && self.image_text.is_none() {
            return results;
        }
        // (message, event) of each kept frame, and its pixels.
        let mut at = Vec::new();
        let mut images = Vec::new();
        for (i, r) in results.iter().enumerate() {
            let Ok(events) = r else { continue };
            if let Some(j) = events.iter().position(|e| e.kind == EventKind::Frame) {
                if let Ok((meta, pixels)) = decode_frame(&payloads[i]) {
                    at.push((i, j));
                    images.push((pixels, meta.width as usize, meta.height as usize));
                }
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
                        if let Some(f) = frame(&mut results, ij).and_then(|e| e.frame.as_mut()) {
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
            if let Some(f) = e.frame.as_mut() {
                f.labels = labels;
                f.features = found.features;
            }
        }
        results
    }
}

impl SceneProcessor {
    /// One message's cut and frame events, without labels.
    fn unlabelled(&mut self, payload: &[u8]) -> Result<Vec<Event>, String> {
        let (meta, pixels) = decode_frame(payload).map_err(|e| e.to_string())?;
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
                    &meta.stream_id,
                    c.pts_ms,
                    meta.wall_ms - (meta.pts_ms - c.pts_ms),
                    self.model(),
                );
                e.score = c.score;
                e
            })
            .collect();
        let keyframe = !events.is_empty();
        if !self.emit_cuts {
            events.clear();
        }
        if let Some(frame) = self.frame_event(&meta, pixels, keyframe) {
            if frame.frame.as_ref().is_some_and(|f| f.keyframe) {
                for scene in &mut events {
                    scene.scene = Some(SceneInfo { keyframe_id: frame.id.clone() });
                }
            }
            events.push(frame);
        }
        Ok(events)
    }
}

/// The event `j` of message `i`'s results, when that message succeeded.
fn kept_frame(results: &mut [Result<Vec<Event>, String>], (i, j): (usize, usize)) -> Option<&mut Event> {
    results[i].as_mut().ok().map(|events| &mut events[j])
}

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
        let detector = ShotDetector::load(&rt, &cfg.models.file(spec, 0), cfg.shots.threads)?;
        Ok(Self { detector, threshold: cfg.shots.threshold, model: spec.id() })
    }

    /// A window's metadata and frames, checked against the model's input.
    fn window(payload: &[u8]) -> Result<(ShotWindowMeta, &[u8]), String> {
        let (meta, frames) = decode_shot_window(payload).map_err(|e| e.to_string())?;
        let n = meta.pts_ms.len();
        if n != sightline_models::shots::SHOT_WINDOW || frames.len() != n * SHOT_FRAME_BYTES {
            return Err(format!(
                "a shot window must hold {} frames of 48x27; this one has {n} of {}x{}",
                sightline_models::shots::SHOT_WINDOW,
                meta.width,
                meta.height
            ));
        }
        if meta.read_from >= meta.read_to || meta.read_to > n {
            return Err(format!("read range {}..{} is not within the window", meta.read_from, meta.read_to));
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
                    &meta.stream_id,
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
    fn process(&mut self, payload: &[u8]) -> Result<Vec<Event>, String> {
        self.process_batch(&[bytes::Bytes::copy_from_slice(payload)]).pop().unwrap_or_else(|| Ok(Vec::new()))
    }

    /// One model run over every valid window of the batch, whichever streams they come from.
    fn process_batch(&mut self, payloads: &[bytes::Bytes]) -> Vec<Result<Vec<Event>, String>> {
        let windows: Vec<Result<(ShotWindowMeta, &[u8]), String>> =
            payloads.iter().map(|p| Self::window(p)).collect();
        let frames: Vec<&[u8]> = windows.iter().filter_map(|w| w.as_ref().ok().map(|(_, f)| *f)).collect();
        let mut probs = match self.detector.predict(&frames) {
            Ok(p) => p.into_iter(),
            Err(e) => {
                let e = e.to_string();
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
        let vad_spec = m.for_task("vad").map_err(|e| ModelError::Input(e.to_string()))?;
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
    fn process(&mut self, payload: &[u8]) -> Result<Vec<Event>, String> {
        let (meta, samples) = decode_audio(payload).map_err(|e| e.to_string())?;
        let regions = self
            .vad
            .speech_regions(&samples, self.cfg.vad_threshold, self.cfg.min_speech_ms)
            .map_err(|e| e.to_string())?;
        let mut events = Vec::new();
        for (s, e) in regions {
            let t = match self.stt.transcribe(&samples[s..e]) {
                Ok(t) => t,
                Err(ModelError::Input(_)) => continue, // too short to say anything
                Err(err) => return Err(err.to_string()),
            };
            if t.text.is_empty() {
                continue;
            }
            let start = meta.start_ms + (s as i64 * 1000 / 16_000);
            let end = meta.start_ms + (e as i64 * 1000 / 16_000);
            let mut ev = Event::new(
                EventKind::Transcript,
                &meta.stream_id,
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
    fn model(&self) -> &str {
        &self.model
    }
    fn process(&mut self, payload: &[u8]) -> Result<Vec<Event>, String> {
        let (meta, pixels) = decode_frame(payload).map_err(|e| e.to_string())?;
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
        let lines = self.ocr.read(pixels, w, h).map_err(|e| e.to_string())?;
        let before: &[String] = previous.map(|p| p.2.as_slice()).unwrap_or(&[]);
        let events = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !before.contains(&l.text))
            .map(|(i, l)| {
                let mut e =
                    Event::new(EventKind::Ocr, &meta.stream_id, meta.pts_ms, meta.wall_ms, &self.model);
                // Several lines can be read off one frame: the line's place makes the id unique.
                e.id = format!("{}.{i}", e.id);
                e.text = l.text.clone();
                e.score = l.confidence;
                e.ocr = Some(OcrInfo { bbox: l.bbox });
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
