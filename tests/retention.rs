//! A long store outage against a bounded events stream: `/readyz` says `degraded` while unsunk
//! events near the limit (before anything is lost), and once JetStream discards events no sink
//! wrote, they are counted (`sightline_events_discarded_unsunk_total`) and reported.

mod common;

use common::{TestSystem, test_config};
use sightline_actors::{Metrics, Roles};
use sightline_bus::retention::LossCounter;
use sightline_bus::{publish_events, work_consumer};
use sightline_sinks::{ClickHouseSink, VectorSink, event_batch::export_lag};
use sightline_wire::{Event, EventKind};

async fn publish(bus: &sightline_actors::Bus, from: i64, n: i64) {
    let metrics = Metrics::new();
    let events: Vec<Event> = (from..from + n)
        .map(|i| {
            let mut e = Event::new(EventKind::Transcript, "outage", i * 1000, 1_795_000_000_000, "test@1");
            e.text = "x".repeat(2000);
            e
        })
        .collect();
    publish_events(bus, &metrics, &events).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsunk_events_near_the_limit_degrade_readyz_and_discarded_ones_are_counted() {
    let mut cfg = test_config();
    cfg.nats.events_max_bytes = 256 * 1024;
    // The sinks' consumers exist (as after a first start), but no sink runs: ClickHouse is "down".
    let sys =
        TestSystem::start(cfg.clone(), Roles { gateway: true, ingest: false, inference: false, sink: false })
            .await;
    let bus = sys.node.as_ref().unwrap().bus.clone();
    work_consumer(&bus, &ClickHouseSink::work(&bus, &cfg.sink)).await.unwrap();
    work_consumer(&bus, &VectorSink::work(&bus, &cfg.vectors)).await.unwrap();

    let (s, ready) = sys.http("GET", "/readyz", None).await;
    assert_eq!((s, ready["status"].as_str()), (200, Some("ok")), "{ready}");

    // About 85 % of the byte limit, unsunk: degraded, nothing lost yet.
    publish(&bus, 0, 100).await;
    let (s, ready) = sys.http("GET", "/readyz", None).await;
    assert_eq!((s, ready["status"].as_str()), (200, Some("degraded")), "{ready}");
    let ch = &ready["events"]["clickhouse"];
    assert!(ch["state"].as_str().unwrap().contains("of the events stream's limit"), "{ready}");
    assert_eq!((ch["unsunk"].as_u64(), ch["discarded_unsunk"].as_u64()), (Some(100), Some(0)), "{ready}");
    assert!(ch["fill"].as_f64().unwrap() >= 0.8, "{ready}");

    // Past the limit: JetStream discards the oldest, which no sink wrote.
    let metrics = Metrics::new();
    let consumer = bus.names.consumer("sink_clickhouse");
    let mut losses = LossCounter::default();
    export_lag(&bus, &consumer, &metrics, "clickhouse", &mut losses).await;
    publish(&bus, 100, 60).await;
    let (s, ready) = sys.http("GET", "/readyz", None).await;
    assert_eq!((s, ready["status"].as_str()), (200, Some("degraded")), "{ready}");
    let lost = ready["events"]["clickhouse"]["discarded_unsunk"].as_u64().unwrap();
    assert!(lost >= 40, "{ready}");
    assert!(ready["events"]["clickhouse"]["state"].as_str().unwrap().contains("discarded"), "{ready}");
    export_lag(&bus, &consumer, &metrics, "clickhouse", &mut losses).await;
    export_lag(&bus, &consumer, &metrics, "clickhouse", &mut losses).await;
    let text = metrics.encode();
    let counted = text
        .lines()
        .find(|l| l.starts_with("sightline_events_discarded_unsunk_total{sink=\"clickhouse\"}"))
        .unwrap_or_else(|| panic!("no loss counter in:\n{text}"));
    assert_eq!(counted.rsplit(' ').next().unwrap().parse::<u64>().unwrap(), lost, "counted once: {counted}");
    sys.shutdown().await;
}
