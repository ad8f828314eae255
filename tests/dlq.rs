//! Poison work: a frame message no model can read is retried `max_deliver` times with backoff,
//! then moved to `dlq.scenes` with its error and original headers, listed by `GET /v1/dlq`, copied
//! into ClickHouse's `dlq` table, and counted in metrics. Good work behind it is not held up.

mod common;

use common::{TestSystem, test_config};
use sightline_actors::Roles;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_ends_in_the_dead_letter_subject_with_its_error() {
    let mut cfg = test_config();
    cfg.scenes.max_deliver = 3;
    cfg.sink.status_interval_s = 1;
    let sys =
        TestSystem::start(cfg, Roles { gateway: true, ingest: false, inference: true, sink: true }).await;
    let bus = sys.node.as_ref().unwrap().bus.clone();
    // Not a framed work message at all.
    bus.publish(bus.names.frames_subject("poison"), "poison.frame.1", b"garbage, not SLW1".to_vec())
        .await
        .unwrap();
    // A well-formed frame after it still gets through.
    let meta = sightline_wire::FrameMeta {
        stream_id: "healthy".into(),
        pts_ms: 1000,
        wall_ms: sightline_wire::now_ms(),
        width: 16,
        height: 9,
        cuts: vec![sightline_wire::CutCandidate { pts_ms: 980, score: 0.9, transition: None }],
        incarnation: 0,
        lease: 0,
    };
    let good = sightline_wire::encode(&meta, &vec![90u8; 16 * 9 * 3]);
    bus.publish(bus.names.frames_subject("healthy"), "healthy.frame.1000", good).await.unwrap();

    let mut dlq = serde_json::Value::Null;
    for _ in 0..60 {
        let (status, j) = sys.http("GET", "/v1/dlq?kind=scenes", None).await;
        assert_eq!(status, 200, "{j}");
        if j["total"].as_u64() == Some(1) {
            dlq = j;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("{dlq:#}");
    let item = &dlq["dead_letters"][0];
    assert_eq!(item["kind"], "scenes", "{dlq}");
    assert_eq!(item["delivered"], 3, "tried max_deliver times");
    assert_eq!(item["original_subject"], bus.names.frames_subject("poison").as_str());
    assert_eq!(item["msg_id"], "poison.frame.1", "original headers kept");
    assert!(
        item["error"].as_str().unwrap().contains("not a Sightline work message"),
        "the error says what was wrong: {item}"
    );

    // The good frame made its events; the poison one made none.
    let store = sys.node.as_ref().unwrap().store.clone();
    let mut kinds = Vec::new();
    for _ in 0..40 {
        kinds = store
            .client()
            .query("SELECT kind FROM events WHERE stream_id = 'healthy' ORDER BY kind")
            .fetch_all::<String>()
            .await
            .unwrap();
        if kinds.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(kinds, vec!["frame", "scene"]);
    // Copied into ClickHouse, and counted.
    let mut rows = 0;
    for _ in 0..40 {
        rows = store
            .client()
            .query("SELECT count() FROM dlq WHERE kind = 'scenes'")
            .fetch_one::<u64>()
            .await
            .unwrap();
        if rows == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(rows, 1, "the dead letter reaches ClickHouse");
    let (_, metrics) = sys.http("GET", "/metrics", None).await;
    let text = metrics.as_str().unwrap_or("").to_string();
    assert!(text.lines().any(|l| l.starts_with("sightline_dlq_total{kind=\"scenes\"} 1")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("sightline_inference_errors_total") && !l.ends_with(" 0")));
    sys.shutdown().await;
}
