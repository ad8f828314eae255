//! The ClickHouse sink: a durable consumer on the events stream, one INSERT per batch, ack only
//! after ClickHouse confirmed it. While ClickHouse is down nothing is acked: events wait in
//! JetStream (bounded by the stream's limits) and are redelivered with backoff. A redelivered
//! event that is already stored (the insert landed but the ack was lost, or the process died in
//! between) is acked without writing it again, so even raw counts see each event once.
//!
//! Every `status_interval_s` the sink also copies dead letters into `dlq`, and snapshots stream
//! registrations and health into `streams` and `pipeline_metrics`.

use crate::event_batch::{export_lag, write_events};
use async_nats::jetstream::{Message, consumer::PullConsumer};
use sightline_bus::retention::LossCounter;
use sightline_bus::{Bus, BusError, Registry, WorkSpec, fetch_batch, work_consumer};
use sightline_runtime::{Batches, RetryPolicy, WorkerError};
use sightline_settings::SinkConfig;
use sightline_store::{DlqRow, EventStore, PipelineRow, StoreError, StreamRow};
use sightline_telemetry::Metrics;
use sightline_wire::Event;
use std::sync::Arc;
use std::time::Duration;

pub struct ClickHouseSink {
    store: EventStore,
    registry: Registry,
    cfg: SinkConfig,
    metrics: Arc<Metrics>,
    retry: RetryPolicy,
    /// The durable consumer this sink reads (made at start; the lag is measured on it).
    consumer: String,
    dlq_work: WorkSpec,
    dlq: PullConsumer,
    failures: u32,
    /// Streams present at the last snapshot, to mark deleted ones.
    known_streams: std::collections::HashSet<String>,
    bus: Bus,
    losses: LossCounter,
}

#[derive(Debug, thiserror::Error)]
enum TickError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ClickHouseSink {
    /// The events consumer this sink reads.
    pub fn work(bus: &Bus, cfg: &SinkConfig) -> WorkSpec {
        let n = &bus.names;
        WorkSpec {
            batch_max: cfg.batch_max,
            batch_deadline: Duration::from_millis(cfg.batch_deadline_ms),
            linger: Duration::from_millis(cfg.linger_ms),
            max_ack_pending: cfg.max_ack_pending,
            ..WorkSpec::new(n.events_stream(), n.events_all(), n.consumer("sink_clickhouse"))
        }
    }

    pub async fn new(
        bus: &Bus,
        store: EventStore,
        registry: Registry,
        cfg: SinkConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, WorkerError> {
        let n = &bus.names;
        let work = Self::work(bus, &cfg);
        work_consumer(bus, &work).await?;
        let dlq_work = WorkSpec {
            batch_max: 200,
            batch_deadline: Duration::from_millis(20),
            ..WorkSpec::new(n.dlq_stream(), n.dlq_all(), n.consumer("sink_dlq"))
        };
        let dlq = work_consumer(bus, &dlq_work).await?;
        Ok(Self {
            retry: RetryPolicy::sink(Duration::from_millis(cfg.retry_initial_ms)),
            store,
            registry,
            cfg,
            metrics,
            consumer: work.consumer,
            dlq_work,
            dlq,
            failures: 0,
            known_streams: Default::default(),
            bus: bus.clone(),
            losses: LossCounter::default(),
        })
    }
}

impl Batches for ClickHouseSink {
    fn name(&self) -> &str {
        "clickhouse"
    }

    fn tick_every(&self) -> Option<Duration> {
        Some(Duration::from_secs(self.cfg.status_interval_s.max(1)))
    }

    async fn tick(&mut self) {
        if let Err(e) = copy_dead_letters(self).await {
            tracing::warn!(error = %e, "copying dead letters to ClickHouse failed; will retry");
        }
        if let Err(e) = snapshot_status(self).await {
            tracing::warn!(error = %e, "stream status snapshot failed; will retry");
        }
        export_lag(&self.bus, &self.consumer, &self.metrics, "clickhouse", &mut self.losses).await;
    }

    async fn batch(&mut self, batch: Vec<Message>) -> Result<Option<Duration>, WorkerError> {
        let store = &self.store;
        Ok(write_events(
            batch,
            &self.metrics,
            "clickhouse",
            &self.retry,
            &mut self.failures,
            async |events: &[Event], msgs: &[Message]| insert_new(store, events, msgs).await,
        )
        .await)
    }
}

/// Inserts the events not stored yet. Only redelivered messages can be stored already, so only
/// their ids are looked up.
pub async fn insert_new(store: &EventStore, events: &[Event], msgs: &[Message]) -> Result<(), StoreError> {
    let redelivered: Vec<String> = events
        .iter()
        .zip(msgs)
        .filter(|(_, m)| m.info().map(|i| i.delivered > 1).unwrap_or(true))
        .map(|(e, _)| e.id.clone())
        .collect();
    let stored = store.stored_ids(&redelivered).await?;
    if stored.is_empty() {
        return store.insert_events(events).await;
    }
    tracing::info!(
        already_stored = stored.len(),
        "redelivered events already in ClickHouse are not written again"
    );
    let fresh: Vec<Event> = events.iter().filter(|e| !stored.contains(&e.id)).cloned().collect();
    store.insert_events(&fresh).await
}

use sightline_wire::now_ms;

fn datetime(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Copies new dead letters from JetStream into the `dlq` table.
async fn copy_dead_letters(st: &mut ClickHouseSink) -> Result<(), TickError> {
    loop {
        let batch = fetch_batch(&st.dlq, &st.dlq_work).await?;
        if batch.is_empty() {
            return Ok(());
        }
        let rows: Vec<DlqRow> = batch
            .iter()
            .map(|m| {
                let h = |k: &str| {
                    m.headers
                        .as_ref()
                        .and_then(|h| h.get(k))
                        .map(|v| v.as_str().to_string())
                        .unwrap_or_default()
                };
                let headers: std::collections::BTreeMap<String, String> = m
                    .headers
                    .iter()
                    .flat_map(|h| h.iter())
                    .map(|(k, v)| {
                        (k.to_string(), v.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", "))
                    })
                    .collect();
                let info = m.info().ok();
                DlqRow {
                    seq: info.as_ref().map(|i| i.stream_sequence).unwrap_or(0),
                    kind: m.subject.rsplit('.').next().unwrap_or("").to_string(),
                    original_subject: h("Sl-Original-Subject"),
                    error: h("Sl-Error"),
                    delivered: h("Sl-Delivered").parse().unwrap_or(0),
                    headers: serde_json::to_string(&headers).unwrap_or_default(),
                    payload_bytes: m.payload.len() as u32,
                    wall_time: datetime(
                        info.map(|i| (i.published.unix_timestamp_nanos() / 1_000_000) as i64)
                            .unwrap_or_else(now_ms),
                    ),
                }
            })
            .collect();
        st.store.insert_rows("dlq", &rows).await?;
        for m in &batch {
            let _ = m.ack().await;
        }
    }
}

/// Writes the registered streams and their health into `streams` and `pipeline_metrics`.
async fn snapshot_status(st: &mut ClickHouseSink) -> Result<(), TickError> {
    let now = datetime(now_ms());
    let specs = st.registry.list().await?;
    let mut streams = Vec::with_capacity(specs.len());
    let mut health = Vec::with_capacity(specs.len());
    for spec in &specs {
        let status = st.registry.status(&spec.id).await.ok().flatten();
        let state = status.as_ref().map(|s| s.state.as_str()).unwrap_or("starting").to_string();
        streams.push(StreamRow {
            id: spec.id.clone(),
            name: spec.name.clone(),
            // Shown to every SQL reader: credentials masked.
            url: sightline_policy::redact_url(&spec.url),
            state: state.clone(),
            created_at: datetime(spec.created_ms),
            updated_at: now,
            deleted: 0,
        });
        if let Some(s) = status {
            health.push(PipelineRow {
                ts: now,
                stream_id: spec.id.clone(),
                state,
                decoded_fps: s.decoded_fps,
                sampled_fps: s.sampled_fps,
                target_fps: s.sample_fps_target,
                dropped_frames: s.dropped_frames,
                backlog_frames: s.backlog_frames.unwrap_or(0),
                reconnects: s.reconnects as u32,
                media_ms: s.media_ms,
            });
        }
    }
    let present: std::collections::HashSet<String> = specs.iter().map(|s| s.id.clone()).collect();
    for gone in st.known_streams.difference(&present) {
        streams.push(StreamRow {
            id: gone.clone(),
            name: String::new(),
            url: String::new(),
            state: "stopped".into(),
            created_at: now,
            updated_at: now,
            deleted: 1,
        });
    }
    st.store.insert_rows("streams", &streams).await?;
    st.store.insert_rows("pipeline_metrics", &health).await?;
    st.known_streams = present;
    Ok(())
}
