//! The worker runtime against a real JetStream: a batch that takes longer than its consumer's
//! `ack_wait` is not redelivered while it runs (progress acks), and a message whose every delivery
//! ended without an answer (the worker crashed each time) reaches the dead-letter subject instead
//! of being dropped by the server after its last delivery; a consumer with a linger (the
//! ClickHouse sink's) gathers a trickle of messages into one batch.

mod common;

use async_nats::jetstream::{AckKind, Message};
use common::test_config;
use futures::StreamExt;
use sightline_actors::Bus;
use sightline_bus::{WorkSpec, fetch_batch, work_consumer};
use sightline_runtime::worker::{Batches, WorkerError, run};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records each delivery it sees, takes `work` per batch, then acks.
struct Slow {
    seen: Arc<Mutex<Vec<(String, i64)>>>,
    work: Duration,
}

impl Batches for Slow {
    fn name(&self) -> &str {
        "slowtest"
    }

    async fn batch(&mut self, batch: Vec<Message>) -> Result<Option<Duration>, WorkerError> {
        for m in &batch {
            let delivered = m.info().map(|i| i.delivered).unwrap_or(0);
            self.seen.lock().unwrap().push((m.subject.to_string(), delivered));
        }
        tokio::time::sleep(self.work).await;
        for m in &batch {
            m.ack_with(AckKind::Ack).await.unwrap();
        }
        Ok(None)
    }
}

async fn setup(max_deliver: i64) -> (Bus, WorkSpec) {
    let cfg = test_config();
    let bus = Bus::connect(&cfg.nats).await.unwrap();
    bus.ensure().await.unwrap();
    let n = &bus.names;
    let work = WorkSpec {
        max_deliver,
        ack_wait: Duration::from_secs(1),
        ..WorkSpec::new(n.frames_stream(), n.frames_all(), n.consumer("slowtest"))
    };
    (bus, work)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_longer_than_ack_wait_is_not_redelivered_while_it_runs() {
    let (bus, work) = setup(3).await;
    bus.publish(bus.names.frames_subject("long"), "long.frame.1", b"x".to_vec()).await.unwrap();
    let consumer = work_consumer(&bus, &work).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    // Two workers share the consumer, as a pool's do: a message the server thinks abandoned would
    // go to the idle one.
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let worker = Slow { seen: seen.clone(), work: Duration::from_millis(3500) };
            tokio::spawn(run(worker, bus.clone(), consumer.clone(), work.clone(), stop.clone()))
        })
        .collect();
    // Three and a half ack waits of work, then a while for any redelivery to show.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, vec![(bus.names.frames_subject("long"), 1)], "delivered once, and only once");
    let mut consumer = consumer;
    let info = consumer.info().await.unwrap();
    assert_eq!((info.num_ack_pending, info.num_redelivered), (0, 0), "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_that_crashed_its_worker_on_every_try_is_dead_lettered_not_dropped() {
    let (bus, work) = setup(2).await;
    let subject = bus.names.frames_subject("crashy");
    bus.publish(subject.clone(), "crashy.frame.1", b"takes the worker down".to_vec()).await.unwrap();
    let consumer = work_consumer(&bus, &work).await.unwrap();
    // Two deliveries that end without an answer, as a worker killed mid-batch leaves them.
    for attempt in 1..=2 {
        let mut batch =
            consumer.fetch().max_messages(1).expires(Duration::from_secs(3)).messages().await.unwrap();
        let m = batch.next().await.expect("delivered").unwrap();
        assert_eq!(m.info().unwrap().delivered, attempt);
        drop(m);
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    // The server delivers once more (max_deliver + 1); the worker dead-letters it unprocessed.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let worker = Slow { seen: seen.clone(), work: Duration::ZERO };
    let task = tokio::spawn(run(worker, bus.clone(), consumer.clone(), work, stop));
    let dlq = bus.js.get_stream(bus.names.dlq_stream()).await.unwrap();
    let mut found = None;
    for _ in 0..50 {
        if let Ok(m) = dlq.get_last_raw_message_by_subject(&bus.names.dlq_subject("slowtest")).await {
            found = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(true);
    task.await.unwrap().unwrap();
    let m = found.expect("the message reached the dead-letter subject");
    let headers = format!("{:?}", m.headers);
    assert!(headers.contains("none of its 2 deliveries was answered"), "{headers}");
    assert!(headers.contains(&subject), "the original subject is kept: {headers}");
    assert_eq!(&m.payload[..], b"takes the worker down");
    assert!(seen.lock().unwrap().is_empty(), "it never reached the batch again");
}

/// Publishes `n` messages on `stream`'s frames subject, `gap` apart, the first at once.
async fn trickle(bus: Bus, stream: &'static str, n: usize, gap: Duration) {
    for i in 0..n {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        let subject = bus.names.frames_subject(stream);
        bus.publish(subject, &format!("{stream}.frame.{i}"), b"x".to_vec()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linger_gathers_a_trickle_into_one_batch() {
    let (bus, work) = setup(-1).await;
    // A linger counts against the ack wait (at most half of it is used): a long one here.
    let work = WorkSpec { batch_max: 100, ack_wait: Duration::from_secs(60), ..work };
    let consumer = work_consumer(&bus, &work).await.unwrap();
    // Without a linger a batch is what is waiting: the first of ten messages 50 ms apart.
    let publisher = tokio::spawn(trickle(bus.clone(), "eager", 10, Duration::from_millis(50)));
    let first = fetch_batch(&consumer, &work).await.unwrap();
    assert!(first.len() < 10, "a batch without a linger waited for the trickle: {}", first.len());
    publisher.await.unwrap();
    let mut drained = first.len();
    while drained < 10 {
        let more = fetch_batch(&consumer, &work).await.unwrap();
        assert!(!more.is_empty(), "messages lost: {drained} of 10");
        drained += more.len();
        for m in more {
            m.ack().await.unwrap();
        }
    }
    for m in first {
        m.ack().await.unwrap();
    }
    // With a linger of 2 s the same trickle (450 ms long) is one batch.
    let lingering = WorkSpec { linger: Duration::from_secs(2), ..work.clone() };
    let publisher = tokio::spawn(trickle(bus.clone(), "lingering", 10, Duration::from_millis(50)));
    let batch = fetch_batch(&consumer, &lingering).await.unwrap();
    publisher.await.unwrap();
    let subjects: Vec<String> = batch.iter().map(|m| m.subject.to_string()).collect();
    assert_eq!(subjects, vec![bus.names.frames_subject("lingering"); 10]);
    for m in batch {
        m.ack().await.unwrap();
    }
    // A batch that fills does not wait out its linger (30 s here).
    let full = WorkSpec { batch_max: 5, linger: Duration::from_secs(30), ..work };
    trickle(bus.clone(), "full", 5, Duration::ZERO).await;
    let started = std::time::Instant::now();
    let batch = fetch_batch(&consumer, &full).await.unwrap();
    assert_eq!(batch.len(), 5);
    assert!(started.elapsed() < Duration::from_secs(20), "a full batch waited for its linger");
}
