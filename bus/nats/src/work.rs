//! Durable pull consumers for work: how a pool or a sink names its consumer and bounds it, how it
//! pulls a batch, and how results and dead letters go back onto the bus.

use crate::connection::{Bus, BusError, js_err};
use async_nats::jetstream::{self, consumer::PullConsumer, consumer::pull};
use futures::StreamExt;
use sightline_telemetry::{Metrics, labels};
use sightline_wire::Event;
use std::time::Duration;

/// How a worker pulls its work.
#[derive(Debug, Clone)]
pub struct WorkSpec {
    pub stream: String,
    /// Subjects to consume (one or several).
    pub filters: Vec<String>,
    pub consumer: String,
    pub batch_max: usize,
    /// How long a pull waits for the first message when none is waiting (see [`fetch_batch`]).
    pub batch_deadline: Duration,
    /// Once a batch has its first message, how long to keep gathering more before handing it
    /// over short of `batch_max` (zero: hand over what was waiting at once). For sinks, where
    /// fewer, larger writes matter more than a second of delay (ClickHouse makes a part per
    /// INSERT); never for the pools, where it would add to every kind's latency. At most half of
    /// `ack_wait` is used.
    pub linger: Duration,
    pub max_ack_pending: i64,
    /// Tries before a failed item is dead-lettered; -1: never give up.
    pub max_deliver: i64,
    pub ack_wait: Duration,
    /// Inference pools: above this age of the oldest waiting item, shed what the pool's policy
    /// gives up first; past `max_lag`, shed everything that old (None: never).
    pub lag_target: Option<Duration>,
    pub max_lag: Option<Duration>,
}

impl WorkSpec {
    /// A consumer of one stream's subjects, with the bounds every worker sets.
    pub fn new(stream: String, filter: String, consumer: String) -> Self {
        Self {
            stream,
            filters: vec![filter],
            consumer,
            batch_max: 1,
            batch_deadline: Duration::from_millis(100),
            linger: Duration::ZERO,
            max_ack_pending: 1000,
            max_deliver: -1,
            ack_wait: Duration::from_secs(60),
            lag_target: None,
            max_lag: None,
        }
    }
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

/// Pulls up to `batch_max` messages: what is waiting, at once, without waiting for the batch to
/// fill; when nothing is waiting, it waits up to `batch_deadline` for the first (and returns
/// empty after it). A batch grows with the backlog, so a busy worker runs larger batches. With a
/// `linger`, a batch short of `batch_max` keeps taking what arrives until `linger` after its
/// first message (or until it is full).
pub async fn fetch_batch(consumer: &PullConsumer, w: &WorkSpec) -> Result<Vec<jetstream::Message>, BusError> {
    let mut out = Vec::with_capacity(w.batch_max);
    pull(consumer, w.batch_max, w.batch_deadline, &mut out).await?;
    let first = std::time::Instant::now();
    // Messages in hand are not acknowledged yet: a linger near `ack_wait` would have the server
    // deliver the first ones again while the batch is still gathering.
    let linger = w.linger.min(w.ack_wait / 2);
    while !out.is_empty() && out.len() < w.batch_max {
        let left = linger.saturating_sub(first.elapsed());
        // The server's shortest useful wait; below it, hand over what there is.
        if left < Duration::from_millis(10) {
            break;
        }
        pull(consumer, w.batch_max - out.len(), left, &mut out).await?;
    }
    Ok(out)
}

/// One pull request: up to `max` messages, returned as soon as any are there (or empty after
/// `expires`), appended to `out`.
async fn pull(
    consumer: &PullConsumer,
    max: usize,
    expires: Duration,
    out: &mut Vec<jetstream::Message>,
) -> Result<(), BusError> {
    let mut batch =
        consumer.fetch().max_messages(max).expires(expires).messages().await.map_err(js_err("fetch"))?;
    while let Some(m) = batch.next().await {
        match m {
            Ok(m) => out.push(m),
            Err(e) => {
                tracing::debug!(error = %e, "fetch ended early");
                break;
            }
        }
    }
    Ok(())
}

/// Publishes events to their subjects (message id: the event id, so a repeat is dropped).
pub async fn publish_events(bus: &Bus, metrics: &Metrics, events: &[Event]) -> Result<(), BusError> {
    for e in events {
        let payload = serde_json::to_vec(e).expect("event serialises");
        bus.publish(bus.names.event_subject(e.kind, &e.stream_id), &e.id, payload).await?;
        metrics.events.get_or_create(&labels(&[("kind", e.kind.as_str())])).inc();
        if let Some(t) = e.transcript() {
            metrics
                .transcripts
                .get_or_create(&labels(&[("language", &t.language), ("model", &e.model)]))
                .inc();
        }
    }
    Ok(())
}

/// Copies a failed message to `dlq.<kind>` with the error, the subject it came from and how often
/// it was delivered (headers `Sl-Error`, `Sl-Original-Subject`, `Sl-Delivered`).
pub async fn dead_letter(
    bus: &Bus,
    kind: &str,
    msg: &jetstream::Message,
    error: &str,
    delivered: i64,
) -> Result<(), BusError> {
    let mut headers = msg.headers.clone().unwrap_or_default();
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

/// How often a message was delivered (1 on the first try).
pub fn delivered(msg: &jetstream::Message) -> i64 {
    msg.info().map(|i| i.delivered).unwrap_or(1)
}
