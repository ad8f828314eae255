//! The Redis vector-set sink: a durable consumer on transcript, OCR and frame events. Their text is
//! embedded (MiniLM) into the text set; frame signatures go into the frames set, and the labelling
//! model's image features (when it runs) into the features set, and image-text embeddings (when a
//! CLIP-like model is configured) into the image_text set. Each keyframe is
//! first compared with recent keyframes of *other* streams: a near-identical one makes a
//! `duplicate` event linking the two. Everything is acked only after Redis (and, for duplicates,
//! JetStream) confirmed it; while Redis is down events wait in JetStream and are redelivered.
//! Writes are idempotent: the element is the event id, so a redelivery replaces itself.

use crate::event_batch::{export_lag, write_events};
use async_nats::jetstream::{Message, consumer::PullConsumer};
use base64::Engine;
use sightline_bus::{Bus, WorkSpec, publish_events, work_consumer};
use sightline_models::TextEmbedder;
use sightline_runtime::{Batches, RetryPolicy, WorkerError};
use sightline_settings::{Config, VectorsConfig};
use sightline_store::{Query, VectorAttrs, VectorItem, VectorStore, filter_string};
use sightline_telemetry::Metrics;
use sightline_wire::{DuplicateInfo, Event, EventKind, FrameInfo, VectorSpace};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest text snippet kept in an element's attributes, characters.
const SNIPPET_CHARS: usize = 200;
/// Elements removed per retention step.
const SWEEP_STEP: usize = 1000;

type SinkError = Box<dyn std::error::Error + Send + Sync>;

pub struct VectorSink {
    bus: Bus,
    cfg: VectorsConfig,
    metrics: Arc<Metrics>,
    retry: RetryPolicy,
    consumer: PullConsumer,
    store: VectorStore,
    embedder: Arc<Mutex<TextEmbedder>>,
    text_set: String,
    frame_set: String,
    /// Frames by their labelling model's features (what they show, not how they look).
    features_set: String,
    /// Frames by their image-text embedding (found by a description of what they show).
    image_text_set: String,
    failures: u32,
    last_sweep: Instant,
}

fn attrs_of(e: &Event) -> VectorAttrs {
    VectorAttrs {
        stream: e.stream_id.clone(),
        kind: e.kind.as_str().to_string(),
        pts_ms: e.pts_ms,
        wall_ms: e.wall_ms,
        text: e.text.chars().take(SNIPPET_CHARS).collect(),
        keyframe: e.frame.as_ref().is_some_and(|f| f.keyframe),
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
        let consumer = work_consumer(bus, &Self::work(bus, v)).await?;
        let store = VectorStore::connect(&cfg.redis.url).await.map_err(|e| start(e.into()))?;
        let full = cfg.clone();
        let embedder = tokio::task::spawn_blocking(move || sightline_inference::load_embedder(&full))
            .await
            .map_err(|e| start(e.into()))?
            .map_err(|e| start(e.into()))?;
        Ok(Self {
            text_set: n.vector_set(VectorSpace::Text),
            frame_set: n.vector_set(VectorSpace::Frames),
            features_set: n.vector_set(VectorSpace::Features),
            image_text_set: n.vector_set(VectorSpace::ImageText),
            bus: bus.clone(),
            cfg: v.clone(),
            retry: RetryPolicy::sink(Duration::from_millis(v.retry_initial_ms)),
            metrics,
            consumer,
            store,
            embedder: Arc::new(Mutex::new(embedder)),
            failures: 0,
            last_sweep: Instant::now(),
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
        export_lag(&self.consumer, &self.metrics, "redis").await;
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
    // Text: one embedding batch for every transcript in the message batch.
    let texts: Vec<&Event> =
        events.iter().filter(|e| e.kind.is_text() && !e.text.trim().is_empty()).collect();
    if !texts.is_empty() {
        let strings: Vec<String> = texts.iter().map(|e| e.text.clone()).collect();
        let embedder = st.embedder.clone();
        let vectors = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = strings.iter().map(String::as_str).collect();
            embedder.lock().unwrap_or_else(|e| e.into_inner()).embed(&refs)
        })
        .await??;
        let items: Vec<VectorItem> = texts
            .iter()
            .zip(vectors)
            .map(|(e, vector)| VectorItem { id: e.id.clone(), vector, attrs: attrs_of(e) })
            .collect();
        st.store.add(&st.text_set, &items, st.cfg.quantization).await?;
    }
    // Frames: keyframes one by one (each is compared with what came before it, including earlier
    // keyframes of this batch), the rest in one round trip.
    let mut plain = Vec::new();
    for e in events.iter().filter(|e| e.kind == EventKind::Frame) {
        let Some(f) = e.frame.as_ref().filter(|f| !f.vector.is_empty()) else { continue };
        let item = VectorItem { id: e.id.clone(), vector: f.vector.clone(), attrs: attrs_of(e) };
        if f.keyframe {
            if let Some(dup) = find_duplicate(st, e, &f.vector).await? {
                publish_events(&st.bus, &st.metrics, &[dup]).await?;
            }
            st.store.add(&st.frame_set, &[item], st.cfg.quantization).await?;
        } else {
            plain.push(item);
        }
    }
    st.store.add(&st.frame_set, &plain, st.cfg.quantization).await?;
    for (set, vector) in [
        (&st.features_set, (|f: &FrameInfo| &f.features) as fn(&FrameInfo) -> &Vec<f32>),
        (&st.image_text_set, |f: &FrameInfo| &f.image_text),
    ] {
        let items: Vec<VectorItem> = events
            .iter()
            .filter(|e| e.kind == EventKind::Frame)
            .filter_map(|e| {
                let f = e.frame.as_ref().filter(|f| !vector(f).is_empty())?;
                Some(VectorItem { id: e.id.clone(), vector: vector(f).clone(), attrs: attrs_of(e) })
            })
            .collect();
        st.store.add(set, &items, st.cfg.quantization).await?;
    }
    // Thumbnails, and each stream's latest frame, for the dashboard and search results.
    let mut blobs = Vec::new();
    let mut latest: std::collections::HashMap<&str, &Event> = Default::default();
    for e in events.iter().filter(|e| e.kind == EventKind::Frame) {
        let Some(f) = e.frame.as_ref() else { continue };
        if let Ok(bmp) = base64::engine::general_purpose::STANDARD.decode(&f.thumbnail) {
            blobs.push((st.bus.names.thumbnail_key(&e.id), bmp));
            let cur = latest.entry(e.stream_id.as_str()).or_insert(e);
            if e.pts_ms > cur.pts_ms {
                *cur = e;
            }
        }
    }
    for (stream, e) in latest {
        blobs.push((st.bus.names.latest_frame_key(stream), e.id.clone().into_bytes()));
    }
    st.store.put_blobs(&blobs, st.cfg.retention_s).await?;
    Ok(())
}

/// The most similar recent keyframe of another stream, as a `duplicate` event, when it reaches
/// the threshold.
async fn find_duplicate(st: &VectorSink, e: &Event, vector: &[f32]) -> Result<Option<Event>, SinkError> {
    let since = e.wall_ms - (st.cfg.duplicate_window_s as i64) * 1000;
    let filter = format!(".keyframe and .stream != {} and .wall_ms >= {since}", filter_string(&e.stream_id));
    let hits = st.store.similar(&st.frame_set, Query::Vector(vector), 1, Some(&filter)).await?;
    let Some(best) = hits.into_iter().next().filter(|h| h.score >= st.cfg.duplicate_min_similarity) else {
        return Ok(None);
    };
    let Some(other) = best.attrs else { return Ok(None) };
    let mut dup =
        Event::new(EventKind::Duplicate, &e.stream_id, e.pts_ms, e.wall_ms, sightline_inference::FRAME_MODEL);
    dup.score = best.score;
    dup.text = format!("same picture as {} at {} ms", other.stream, other.pts_ms);
    dup.duplicate = Some(DuplicateInfo {
        frame_id: e.id.clone(),
        other_frame_id: best.id,
        other_stream_id: other.stream,
        other_pts_ms: other.pts_ms,
        similarity: best.score,
    });
    tracing::info!(stream = %e.stream_id, pts_ms = e.pts_ms, other = ?dup.duplicate, "duplicate keyframe");
    Ok(Some(dup))
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
