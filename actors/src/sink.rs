//! The ClickHouse sink: a durable consumer on the events stream, one INSERT per batch, ack only
//! after ClickHouse confirmed it. While ClickHouse is down nothing is acked: events wait in
//! JetStream (bounded by the stream's limits) and are redelivered with backoff. A redelivered
//! event that is already stored (the insert landed but the ack was lost, or the process died in
//! between) is acked without writing it again, so even raw counts see each event once.
//!
//! The sink also copies dead letters into `dlq`, and every `status_interval_s` snapshots stream
//! registrations and health into `streams` and `pipeline_metrics`.

use crate::bus::Bus;
use crate::event_batch::{export_lag, sink_poll};
use crate::inference::{WorkSpec, fetch_batch, work_consumer};
use crate::metrics::Metrics;
use crate::registry::Registry;
use async_nats::jetstream::consumer::PullConsumer;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use sightline_settings::SinkConfig;
use sightline_store::{DlqRow, EventStore, PipelineRow, StreamRow};
use sightline_wire::Event;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct ClickHouseSink;

pub struct SinkArgs {
    pub bus: Bus,
    pub store: EventStore,
    pub registry: Registry,
    pub cfg: SinkConfig,
    pub metrics: Arc<Metrics>,
}

pub struct SinkState {
    args: SinkArgs,
    work: WorkSpec,
    consumer: PullConsumer,
    dlq_work: WorkSpec,
    dlq: PullConsumer,
    failures: u32,
    last_status: Instant,
    /// Streams present at the last snapshot, to mark deleted ones.
    known_streams: std::collections::HashSet<String>,
}

pub enum SinkMsg {
    Poll,
}

impl Actor for ClickHouseSink {
    type Msg = SinkMsg;
    type State = SinkState;
    type Arguments = SinkArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SinkMsg>,
        args: SinkArgs,
    ) -> Result<SinkState, ActorProcessingErr> {
        let n = &args.bus.names;
        let work = WorkSpec {
            stream: n.events_stream(),
            filters: vec![n.events_all()],
            consumer: n.consumer("sink_clickhouse"),
            batch_max: args.cfg.batch_max,
            batch_deadline: Duration::from_millis(args.cfg.batch_deadline_ms),
            max_ack_pending: args.cfg.max_ack_pending,
            max_deliver: -1, // never give up on an event because a store was down
            ack_wait: Duration::from_secs(60),
        };
        let consumer = work_consumer(&args.bus, &work).await?;
        let dlq_work = WorkSpec {
            stream: n.dlq_stream(),
            filters: vec![n.dlq_all()],
            consumer: n.consumer("sink_dlq"),
            batch_max: 200,
            batch_deadline: Duration::from_millis(20),
            max_ack_pending: 1000,
            max_deliver: -1,
            ack_wait: Duration::from_secs(60),
        };
        let dlq = work_consumer(&args.bus, &dlq_work).await?;
        myself.send_message(SinkMsg::Poll)?;
        Ok(SinkState {
            args,
            work,
            consumer,
            dlq_work,
            dlq,
            failures: 0,
            last_status: Instant::now() - Duration::from_secs(3600),
            known_streams: Default::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SinkMsg>,
        _: SinkMsg,
        st: &mut SinkState,
    ) -> Result<(), ActorProcessingErr> {
        if st.last_status.elapsed() >= Duration::from_secs(st.args.cfg.status_interval_s.max(1)) {
            st.last_status = Instant::now();
            if let Err(e) = copy_dead_letters(st).await {
                tracing::warn!(error = %e, "copying dead letters to ClickHouse failed; will retry");
            }
            if let Err(e) = snapshot_status(st).await {
                tracing::warn!(error = %e, "stream status snapshot failed; will retry");
            }
            export_lag(&st.consumer, &st.args.metrics, "clickhouse").await;
        }
        let store = &st.args.store;
        st.failures = sink_poll(
            &st.consumer,
            &st.work,
            &st.args.metrics,
            "clickhouse",
            st.args.cfg.retry_initial_ms,
            st.failures,
            async |events: &[Event], msgs: &[async_nats::jetstream::Message]| {
                insert_new(store, events, msgs).await
            },
        )
        .await;
        myself.send_message(SinkMsg::Poll)?;
        Ok(())
    }
}

/// Inserts the events not stored yet. Only redelivered messages can be stored already, so only
/// their ids are looked up.
pub async fn insert_new(
    store: &EventStore,
    events: &[Event],
    msgs: &[async_nats::jetstream::Message],
) -> Result<(), sightline_store::StoreError> {
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn datetime(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Copies new dead letters from JetStream into the `dlq` table.
async fn copy_dead_letters(st: &mut SinkState) -> Result<(), ActorProcessingErr> {
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
        st.args.store.insert_rows("dlq", &rows).await?;
        for m in &batch {
            let _ = m.ack().await;
        }
    }
}

/// Writes the registered streams and their health into `streams` and `pipeline_metrics`.
async fn snapshot_status(st: &mut SinkState) -> Result<(), ActorProcessingErr> {
    let now = datetime(now_ms());
    let specs = st.args.registry.list().await?;
    let mut streams = Vec::with_capacity(specs.len());
    let mut health = Vec::with_capacity(specs.len());
    for spec in &specs {
        let status = st.args.registry.status(&spec.id).await.ok().flatten();
        let state = status.as_ref().map(|s| s.state.as_str()).unwrap_or("starting").to_string();
        streams.push(StreamRow {
            id: spec.id.clone(),
            name: spec.name.clone(),
            url: spec.url.clone(),
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
    st.args.store.insert_rows("streams", &streams).await?;
    st.args.store.insert_rows("pipeline_metrics", &health).await?;
    st.known_streams = present;
    Ok(())
}
