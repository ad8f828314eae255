//! The Redis vector-set sink, write only: a durable consumer on transcript, OCR and frame events.
//! Each event brings its vectors, computed in the inference stage: the text
//! embedding into the text set, frame signatures into the frames set, the labelling model's image
//! features into the features set, image-text embeddings into the image_text set; with thumbnails
//! and each stream's latest frame beside them. Everything is acked only after Redis confirmed it;
//! while Redis is down events wait in JetStream and are redelivered. Writes are idempotent: the
//! element is the event id, so a redelivery replaces itself.

use crate::event_batch::{export_lag, write_events};
use async_nats::jetstream::Message;
use base64::Engine;
use sightline_bus::{Bus, WorkSpec, work_consumer};
use sightline_runtime::{Batches, RetryPolicy, WorkerError};
use sightline_settings::{Config, VectorsConfig};
use sightline_store::{VectorAttrs, VectorItem, VectorStore};
use sightline_telemetry::Metrics;
use sightline_wire::{Event, EventKind, FrameInfo, VectorSpace};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest text snippet kept in an element's attributes, characters.
const SNIPPET_CHARS: usize = 200;
/// Elements removed per retention step.
const SWEEP_STEP: usize = 1000;

type SinkError = Box<dyn std::error::Error + Send + Sync>;

pub struct VectorSink {
    names: sightline_wire::Names,
    cfg: VectorsConfig,
    metrics: Arc<Metrics>,
    retry: RetryPolicy,
    /// The durable consumer this sink reads (made at start; the lag is measured on it).
    consumer: String,
    store: VectorStore,
    text_set: String,
    frame_set: String,
    /// Frames by their labelling model's features (what they show, not how they look).
    features_set: String,
    /// Frames by their image-text embedding (found by a description of what they show).
    image_text_set: String,
    failures: u32,
    last_sweep: Instant,
    bus: Bus,
    losses: sightline_bus::retention::LossCounter,
}

fn attrs_of(e: &Event) -> VectorAttrs {
    VectorAttrs {
        stream: e.stream_id.clone(),
        kind: e.kind.as_str().to_string(),
        pts_ms: e.pts_ms,
        wall_ms: e.wall_ms,
        text: e.text.chars().take(SNIPPET_CHARS).collect(),
        keyframe: e.frame().is_some_and(|f| f.keyframe),
    }
}

impl VectorSink {
    /// The events consumer this sink reads: transcripts, on-screen text and frames.
    pub fn work(bus: &Bus, v: &VectorsConfig) -> WorkSpec {
        let n = &bus.names;
        WorkSpec {
            filters: vec![
                n.events_of_kind(EventKind::Transcript),
                n.events_of_kind(EventKind::Ocr),
                n.events_of_kind(EventKind::Frame),
            ],
            batch_max: v.batch_max,
            batch_deadline: Duration::from_millis(v.batch_deadline_ms),
            max_ack_pending: v.max_ack_pending,
            ..WorkSpec::new(n.events_stream(), n.events_all(), n.consumer("sink_vectors"))
        }
    }

    pub async fn new(bus: &Bus, cfg: &Config, metrics: Arc<Metrics>) -> Result<Self, WorkerError> {
        let start = |e: SinkError| WorkerError::Start { worker: "redis".into(), source: e };
        let n = &bus.names;
        let v = &cfg.vectors;
        work_consumer(bus, &Self::work(bus, v)).await?;
        let store = VectorStore::connect(&cfg.redis.url).await.map_err(|e| start(e.into()))?;
        Ok(Self {
            text_set: n.vector_set(VectorSpace::Text),
            frame_set: n.vector_set(VectorSpace::Frames),
            features_set: n.vector_set(VectorSpace::Features),
            image_text_set: n.vector_set(VectorSpace::ImageText),
            names: bus.names.clone(),
            cfg: v.clone(),
            retry: RetryPolicy::sink(Duration::from_millis(v.retry_initial_ms)),
            metrics,
            consumer: Self::work(bus, v).consumer,
            store,
            failures: 0,
            last_sweep: Instant::now(),
            bus: bus.clone(),
            losses: Default::default(),
        })
    }
}

impl Batches for VectorSink {
    fn name(&self) -> &str {
        "redis"
    }

    fn tick_every(&self) -> Option<Duration> {
        Some(Duration::from_secs(5))
    }

    async fn tick(&mut self) {
        if self.cfg.retention_s > 0
            && self.last_sweep.elapsed() >= Duration::from_secs(self.cfg.sweep_interval_s)
        {
            self.last_sweep = Instant::now();
            if let Err(e) = sweep(self).await {
                tracing::warn!(error = %e, "vector retention sweep failed; will retry");
            }
        }
        export_lag(&self.bus, &self.consumer, &self.metrics, "redis", &mut self.losses).await;
    }

    async fn batch(&mut self, batch: Vec<Message>) -> Result<Option<Duration>, WorkerError> {
        let (retry, metrics) = (self.retry, self.metrics.clone());
        let mut failures = self.failures;
        let state = &*self;
        let pause = write_events(
            batch,
            &metrics,
            "redis",
            &retry,
            &mut failures,
            async |events: &[Event], _: &[Message]| write_batch(state, events).await,
        )
        .await;
        self.failures = failures;
        Ok(pause)
    }
}

async fn write_batch(st: &VectorSink, events: &[Event]) -> Result<(), SinkError> {
    // Text: the embeddings the inference pools attached.
    let items: Vec<VectorItem> = events
        .iter()
        .filter(|e| e.kind.is_text() && !e.text_vector.is_empty())
        .map(|e| VectorItem { id: e.id.clone(), vector: e.text_vector.clone(), attrs: attrs_of(e) })
        .collect();
    st.store.add(&st.text_set, &items, st.cfg.quantization).await?;
    // Frames: their signatures (duplicates were decided in the inference stage).
    let frames: Vec<VectorItem> = events
        .iter()
        .filter(|e| e.kind == EventKind::Frame)
        .filter_map(|e| {
            let f = e.frame().filter(|f| !f.vector.is_empty())?;
            Some(VectorItem { id: e.id.clone(), vector: f.vector.clone(), attrs: attrs_of(e) })
        })
        .collect();
    st.store.add(&st.frame_set, &frames, st.cfg.quantization).await?;
    for (set, vector) in [
        (&st.features_set, (|f: &FrameInfo| &f.features) as fn(&FrameInfo) -> &Vec<f32>),
        (&st.image_text_set, |f: &FrameInfo| &f.image_text),
    ] {
        let items: Vec<VectorItem> = events
            .iter()
            .filter(|e| e.kind == EventKind::Frame)
            .filter_map(|e| {
                let f = e.frame().filter(|f| !vector(f).is_empty())?;
                Some(VectorItem { id: e.id.clone(), vector: vector(f).clone(), attrs: attrs_of(e) })
            })
            .collect();
        st.store.add(set, &items, st.cfg.quantization).await?;
    }
    // Thumbnails, and each stream's latest frame, for the dashboard and search results.
    let mut blobs = Vec::new();
    let mut latest: std::collections::HashMap<&str, &Event> = Default::default();
    for e in events.iter().filter(|e| e.kind == EventKind::Frame) {
        let Some(f) = e.frame() else { continue };
        if let Ok(bmp) = base64::engine::general_purpose::STANDARD.decode(&f.thumbnail) {
            blobs.push((st.names.thumbnail_key(&e.id), bmp));
            let cur = latest.entry(e.stream_id.as_str()).or_insert(e);
            if e.pts_ms > cur.pts_ms {
                *cur = e;
            }
        }
    }
    for (stream, e) in latest {
        blobs.push((st.names.latest_frame_key(stream), e.id.clone().into_bytes()));
    }
    st.store.put_blobs(&blobs, st.cfg.retention_s).await?;
    Ok(())
}

async fn sweep(st: &VectorSink) -> Result<(), SinkError> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let cutoff = now - (st.cfg.retention_s as i64) * 1000;
    for set in [&st.text_set, &st.frame_set, &st.features_set, &st.image_text_set] {
        let mut removed = 0;
        // Bounded work per sweep: at most 20 steps, the rest next time.
        for _ in 0..20 {
            let n = st.store.remove_older_than(set, cutoff, SWEEP_STEP).await?;
            removed += n;
            if n < SWEEP_STEP {
                break;
            }
        }
        if removed > 0 {
            tracing::info!(set = %set, removed, "vector retention removed old elements");
        }
    }
    Ok(())
}
