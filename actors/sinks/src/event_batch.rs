//! The batch cycle both event sinks share: decode the events, write them, then ack them all; on a
//! failed write nak them all with a doubling delay, so the events wait in JetStream until the
//! store is back. Undecodable messages are terminated and counted, never retried forever.

use async_nats::jetstream::{AckKind, Message};
use sightline_bus::Bus;
use sightline_bus::retention::{LossCounter, WARN_FILL, events_retention};
use sightline_runtime::worker::ack;
use sightline_runtime::{Action, Outcome, RetryPolicy, decide};
use sightline_telemetry::{Metrics, labels};
use sightline_wire::Event;
use std::time::{Duration, Instant};

/// Longest pause before the next fetch while a store is down (the naks carry the full delay).
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Writes one fetched batch with `write`. `failures` counts consecutive failed writes (it sets the
/// retry delay). Returns how long the worker should pause before fetching again.
pub async fn write_events<E: std::fmt::Display>(
    batch: Vec<Message>,
    metrics: &Metrics,
    sink: &'static str,
    policy: &RetryPolicy,
    failures: &mut u32,
    write: impl AsyncFnOnce(&[Event], &[Message]) -> Result<(), E>,
) -> Option<Duration> {
    let l = labels(&[("sink", sink)]);
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
                if decide(Outcome::Undecodable, 1, policy) == Action::Term {
                    ack(&m, AckKind::Term).await;
                }
            }
        }
    }
    if events.is_empty() {
        return None;
    }
    let started = Instant::now();
    match write(&events, &keep).await {
        Ok(()) => {
            metrics.sink_seconds.get_or_create(&l).observe(started.elapsed().as_secs_f64());
            metrics.sink_rows.get_or_create(&l).inc_by(events.len() as u64);
            *failures = 0;
            for m in &keep {
                // A lost ack means the write is repeated: the sinks' writes are idempotent.
                ack(m, AckKind::Ack).await;
            }
            None
        }
        Err(e) => {
            *failures += 1;
            metrics.sink_errors.get_or_create(&l).inc();
            let Action::Nak(delay) = decide(Outcome::StoreDown { failures: *failures }, 1, policy) else {
                unreachable!("a store outage is always retried")
            };
            tracing::warn!(sink, error = %e, events = events.len(), retry_in_ms = delay.as_millis() as u64, "write failed; events stay in JetStream");
            for m in &keep {
                ack(m, AckKind::Nak(Some(delay))).await;
            }
            Some(delay.min(MAX_PAUSE))
        }
    }
}

/// Exports a sink's backlog (pending + unacknowledged) as `sightline_sink_lag{sink}`, how full
/// the events stream is with it (`sightline_events_retention_fill{sink}`), and the events the
/// stream discarded before the sink had them (`sightline_events_discarded_unsunk_total{sink}`,
/// logged as an error: that is data lost).
pub async fn export_lag(
    bus: &Bus,
    consumer: &str,
    metrics: &Metrics,
    sink: &'static str,
    losses: &mut LossCounter,
) {
    let l = labels(&[("sink", sink)]);
    match events_retention(bus, consumer).await {
        Ok(r) => {
            metrics.sink_lag.get_or_create(&l).set(r.unsunk as i64);
            metrics.events_retention_fill.get_or_create(&l).set(r.fill);
            let lost = losses.observe(&r);
            if lost > 0 {
                metrics.events_discarded_unsunk.get_or_create(&l).inc_by(lost);
                tracing::error!(
                    sink,
                    lost,
                    "the events stream discarded events this sink never wrote (its byte or age limit was reached during an outage)"
                );
            } else if r.fill >= WARN_FILL {
                tracing::warn!(
                    sink,
                    fill = r.fill,
                    unsunk = r.unsunk,
                    "unsunk events near the events stream's limit; the oldest will be discarded at 100 %"
                );
            }
        }
        Err(e) => tracing::debug!(sink, error = %e, "cannot read the events stream's retention"),
    }
}
