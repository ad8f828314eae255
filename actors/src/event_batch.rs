//! The batch cycle both event sinks share: fetch a batch from their durable consumer, decode the
//! events, write them, then ack them all; on a failed write nak them all with a doubling delay,
//! so the events wait in JetStream until the store is back. Undecodable messages are terminated
//! and counted, never retried forever.

use crate::inference::{WorkSpec, fetch_batch};
use crate::metrics::{Metrics, labels};
use async_nats::jetstream::{AckKind, Message, consumer::PullConsumer};
use sightline_wire::Event;
use std::time::{Duration, Instant};

/// One poll of a sink. `failures` counts consecutive failed writes (it sets the retry delay);
/// the new count is returned.
pub async fn sink_poll<E: std::fmt::Display>(
    consumer: &PullConsumer,
    work: &WorkSpec,
    metrics: &Metrics,
    sink: &'static str,
    retry_initial_ms: u64,
    failures: u32,
    write: impl AsyncFnOnce(&[Event], &[Message]) -> Result<(), E>,
) -> u32 {
    let l = labels(&[("sink", sink)]);
    let batch = match fetch_batch(consumer, work).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(sink, error = %e, "sink fetch failed");
            tokio::time::sleep(Duration::from_millis(500)).await;
            return failures;
        }
    };
    if batch.is_empty() {
        return failures;
    }
    let mut events = Vec::with_capacity(batch.len());
    let mut keep = Vec::with_capacity(batch.len());
    for m in batch {
        match serde_json::from_slice::<Event>(&m.payload) {
            Ok(e) => {
                events.push(e);
                keep.push(m);
            }
            Err(e) => {
                // Not an event any store can hold: out of the way, visibly.
                tracing::error!(sink, error = %e, subject = %m.subject, "undecodable event dropped");
                metrics.sink_errors.get_or_create(&l).inc();
                let _ = m.ack_with(AckKind::Term).await;
            }
        }
    }
    let started = Instant::now();
    match write(&events, &keep).await {
        Ok(()) => {
            metrics.sink_seconds.get_or_create(&l).observe(started.elapsed().as_secs_f64());
            metrics.sink_rows.get_or_create(&l).inc_by(events.len() as u64);
            for m in &keep {
                if let Err(e) = m.ack().await {
                    tracing::warn!(sink, error = %e, "ack failed; the write will be repeated (idempotent)");
                }
            }
            0
        }
        Err(e) => {
            let failures = failures + 1;
            metrics.sink_errors.get_or_create(&l).inc();
            let delay =
                Duration::from_millis((retry_initial_ms << failures.min(10).saturating_sub(1)).min(30_000));
            tracing::warn!(sink, error = %e, events = events.len(), retry_in_ms = delay.as_millis() as u64, "write failed; events stay in JetStream");
            for m in &keep {
                let _ = m.ack_with(AckKind::Nak(Some(delay))).await;
            }
            tokio::time::sleep(delay.min(Duration::from_secs(5))).await;
            failures
        }
    }
}

/// Exports a consumer's backlog (pending + unacknowledged) as `sightline_sink_lag{sink}`.
pub async fn export_lag(consumer: &PullConsumer, metrics: &Metrics, sink: &'static str) {
    let mut c = consumer.clone();
    if let Ok(info) = c.info().await {
        metrics
            .sink_lag
            .get_or_create(&labels(&[("sink", sink)]))
            .set(info.num_pending as i64 + info.num_ack_pending as i64);
    }
}
