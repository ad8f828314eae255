//! Slow inference: the stream's backlog grows, it samples less, counts what it sheds and shows
//! `degraded`, its memory stays bounded; when the slow worker is replaced by a normal one it
//! returns to the full rate and `running`.

mod common;

use common::{TestSystem, status_until, test_config};
use sightline_actors::{Metrics, Node, Roles};
use sightline_testkit::{ClipSpec, LiveHls};
use std::time::Duration;
use tokio::time::Instant;

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_inference_degrades_then_recovers() {
    let cfg = test_config();
    let sys =
        TestSystem::start(cfg.clone(), Roles { gateway: true, ingest: true, inference: false, sink: false })
            .await;
    // A scene worker that needs 1.5 s per frame, while the stream samples 2 frames a second.
    let mut slow_cfg = cfg.clone();
    slow_cfg.scenes.throttle_ms = 1500;
    slow_cfg.scenes.batch_max = 1;
    // This test is about the source slowing down; the pool's own shedding is tests/lag.rs's.
    slow_cfg.scenes.lag_target_ms = 0;
    slow_cfg.scenes.max_lag_ms = 0;
    let only_inference = Roles { gateway: false, ingest: false, inference: true, sink: false };
    let slow = Node::start(&slow_cfg, only_inference, Metrics::new()).await.unwrap();

    let file = ClipSpec::standard().render(&std::env::temp_dir().join("sightline-test-clips")).await.unwrap();
    let live = LiveHls::start(&file, &std::env::temp_dir().join(common::unique("sl-bp")), 0).await.unwrap();
    let (s, v) = sys.http("POST", "/v1/streams", Some(&format!(r#"{{"url": "{}"}}"#, live.url))).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();

    let degraded = status_until(&sys, &id, Duration::from_secs(40), |v| {
        v["status"] == "degraded" && v["detail"]["sample_fps_target"].as_f64().unwrap_or(2.0) < 2.0
    })
    .await;
    eprintln!("degraded: {degraded}");
    assert!(degraded["detail"]["sample_fps_target"].as_f64().unwrap() < 2.0, "{degraded}");
    // Stay slow a while: drops are counted, memory does not grow with the backlog. The baseline
    // is taken 5 s in, once the first segments and frames have been through every model of this
    // process (their first runs allocate ONNX Runtime's buffers for those shapes).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_start = rss_mb();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (_, later) = sys.http("GET", &format!("/v1/streams/{id}"), None).await;
    let rss_later = rss_mb();
    eprintln!("after 15 s slow: {later}\nRSS {rss_start:.0} MB → {rss_later:.0} MB");
    assert_eq!(later["status"], "degraded", "{later}");
    assert!(later["detail"]["dropped_frames"].as_u64().unwrap() >= 10, "{later}");
    assert!(later["detail"]["backlog_frames"].as_u64().unwrap() <= 40, "backlog must stay bounded: {later}");
    assert!(rss_later - rss_start < 40.0, "RSS grew {rss_start:.0} → {rss_later:.0} MB");

    // The throttle lifts: a normal worker takes over.
    slow.shutdown().await;
    let fast = Node::start(&cfg, only_inference, Metrics::new()).await.unwrap();
    let lifted = Instant::now();
    let back = status_until(&sys, &id, Duration::from_secs(45), |v| {
        v["status"] == "running" && v["detail"]["sample_fps_target"].as_f64() == Some(2.0)
    })
    .await;
    eprintln!("running again after {:.1} s: {back}", lifted.elapsed().as_secs_f64());
    assert!(back["detail"]["backlog_frames"].as_u64().unwrap() <= 2, "{back}");

    fast.shutdown().await;
    drop(live);
    sys.shutdown().await;
}
