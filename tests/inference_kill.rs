//! Killing an inference actor mid-batch: its unacked work is redelivered to the restarted actor,
//! and ClickHouse ends with every event exactly once.

mod common;

use common::{TestSystem, test_config};
use sightline_actors::Roles;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_inference_actor_mid_batch_loses_and_duplicates_nothing() {
    let mut cfg = test_config();
    cfg.scenes.workers = 1;
    cfg.scenes.batch_max = 4;
    // Each frame takes 150 ms, so a batch is in flight about 600 ms of every 600.
    cfg.scenes.throttle_ms = 150;
    // Redelivered work comes back after the ack wait: this test is about delivery, not lag.
    cfg.scenes.lag_target_ms = 0;
    cfg.scenes.max_lag_ms = 0;
    cfg.speech.workers = 0;
    let sys =
        TestSystem::start(cfg, Roles { gateway: true, ingest: false, inference: true, sink: true }).await;
    let node = sys.node.as_ref().unwrap();
    let (bus, store) = (node.bus.clone(), node.store.clone());

    // 40 sampled frames, each after a cut: 40 `scene` and 40 `frame` events.
    let n = 40i64;
    for i in 0..n {
        let meta = sightline_wire::FrameMeta {
            stream_id: "killdrill".into(),
            pts_ms: 1000 + i * 500,
            wall_ms: sightline_wire::now_ms() + i * 500,
            width: 16,
            height: 9,
            cuts: vec![sightline_wire::CutCandidate { pts_ms: 990 + i * 500, score: 0.9, transition: None }],
            incarnation: 0,
            lease: 0,
        };
        let pixels: Vec<u8> = (0..16 * 9 * 3).map(|p| ((p as i64 * 7 + i * 31) % 256) as u8).collect();
        bus.publish_frame(&meta, &pixels).await.unwrap();
    }
    let count = async || -> (u64, u64) {
        store
            .client()
            .query("SELECT count(), uniqExact(id) FROM events WHERE stream_id = 'killdrill'")
            .fetch_one::<(u64, u64)>()
            .await
            .unwrap_or_else(|e| panic!("count query: {e}"))
    };
    // Once two batches are stored, the third is being processed: kill the worker then.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while count().await.0 < 16 {
        assert!(tokio::time::Instant::now() < deadline, "the first batches never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = count().await.0;
    node.kill_actor("scenes-0");
    eprintln!("killed scenes-0 with {before} of {} events stored", 2 * n);

    // The abandoned batch comes back after the consumer's ack wait (30 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    while tokio::time::Instant::now() < deadline && count().await.0 < 2 * n as u64 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Any late duplicate has landed once the scene pool and the sink have nothing left in flight.
    common::consumer_drained(&bus, &bus.names.frames_stream(), "scenes").await;
    common::sink_drained(&bus, "sink_clickhouse").await;
    let last = count().await;
    eprintln!("after the kill: count {} distinct {}", last.0, last.1);
    assert_eq!(last, (2 * n as u64, 2 * n as u64), "every event once: (count, distinct)");
    let scenes: Vec<i64> = store
        .client()
        .query("SELECT pts_ms FROM events WHERE stream_id = 'killdrill' AND kind = 'scene' ORDER BY pts_ms")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(scenes, (0..n).map(|i| 990 + i * 500).collect::<Vec<_>>(), "no scene lost");
    // The kill caught work in flight: it came back to the restarted actor as a redelivery.
    let (_, metrics) = sys.http("GET", "/metrics", None).await;
    let text = metrics.as_str().unwrap_or("").to_string();
    let redelivered: f64 = text
        .lines()
        .find(|l| l.starts_with("sightline_redelivered_total{kind=\"scenes\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(redelivered >= 1.0, "the killed batch was redelivered: {text}");
    sys.shutdown().await;
}
