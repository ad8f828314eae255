//! The ClickHouse sink: a durable consumer on the events stream, one INSERT per batch, ack only
//! after ClickHouse confirmed it. While ClickHouse is down nothing is acked: events wait in
//! JetStream (bounded by the stream's limits) and are redelivered with backoff.

use crate::bus::Bus;
use crate::inference::{WorkSpec, fetch_batch, work_consumer};
use crate::metrics::{Metrics, labels};
use async_nats::jetstream::{AckKind, consumer::PullConsumer};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use sightline_settings::SinkConfig;
use sightline_store::EventStore;
use sightline_wire::Event;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct ClickHouseSink;

pub struct SinkArgs {
    pub bus: Bus,
    pub store: EventStore,
    pub cfg: SinkConfig,
    pub metrics: Arc<Metrics>,
}

pub struct SinkState {
    args: SinkArgs,
    work: WorkSpec,
    consumer: PullConsumer,
    failures: u32,
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
            filter: n.events_all(),
            consumer: n.consumer("sink_clickhouse"),
            batch_max: args.cfg.batch_max,
            batch_deadline: Duration::from_millis(args.cfg.batch_deadline_ms),
            max_ack_pending: args.cfg.max_ack_pending,
            max_deliver: -1, // never give up on an event because a store was down
            ack_wait: Duration::from_secs(60),
        };
        let consumer = work_consumer(&args.bus, &work).await?;
        myself.send_message(SinkMsg::Poll)?;
        Ok(SinkState { args, work, consumer, failures: 0 })
    }

    async fn handle(
        &self,
        myself: ActorRef<SinkMsg>,
        _: SinkMsg,
        st: &mut SinkState,
    ) -> Result<(), ActorProcessingErr> {
        let l = labels(&[("sink", "clickhouse")]);
        let batch = match fetch_batch(&st.consumer, &st.work).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "sink fetch failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                Vec::new()
            }
        };
        if !batch.is_empty() {
            let mut events = Vec::with_capacity(batch.len());
            let mut keep = Vec::with_capacity(batch.len());
            for m in batch {
                match serde_json::from_slice::<Event>(&m.payload) {
                    Ok(e) => {
                        events.push(e);
                        keep.push(m);
                    }
                    Err(e) => {
                        // Not an event we can store: keep it out of the way, visibly.
                        tracing::error!(error = %e, subject = %m.subject, "undecodable event dropped by the sink");
                        st.args.metrics.sink_errors.get_or_create(&l).inc();
                        let _ = m.ack_with(AckKind::Term).await;
                    }
                }
            }
            let started = Instant::now();
            match st.args.store.insert_events(&events).await {
                Ok(()) => {
                    st.args.metrics.sink_seconds.get_or_create(&l).observe(started.elapsed().as_secs_f64());
                    st.args.metrics.sink_rows.get_or_create(&l).inc_by(events.len() as u64);
                    for m in &keep {
                        if let Err(e) = m.ack().await {
                            tracing::warn!(error = %e, "sink ack failed; the row will be rewritten (idempotent)");
                        }
                    }
                    st.failures = 0;
                }
                Err(e) => {
                    st.failures += 1;
                    st.args.metrics.sink_errors.get_or_create(&l).inc();
                    let delay = Duration::from_millis(
                        (st.args.cfg.retry_initial_ms << st.failures.min(10).saturating_sub(1)).min(30_000),
                    );
                    tracing::warn!(error = %e, rows = events.len(), retry_in_ms = delay.as_millis() as u64, "ClickHouse insert failed; events stay in JetStream");
                    for m in &keep {
                        let _ = m.ack_with(AckKind::Nak(Some(delay))).await;
                    }
                    tokio::time::sleep(delay.min(Duration::from_secs(5))).await;
                }
            }
        }
        myself.send_message(SinkMsg::Poll)?;
        Ok(())
    }
}
