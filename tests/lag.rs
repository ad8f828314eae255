//! A pool that falls behind keeps its lag bounded by shedding what its policy gives up first (for
//! the scene pool: frames that carry no cut), counts it per stream and reason, and the stream shows
//! `degraded` with the reason, on `/v1/streams/{id}`, on the feed (a `state` event) and in metrics;
//! the frames that carry cuts are still run, so scene events keep coming.

mod common;

use common::{TestSystem, status_until, test_config};
use futures::StreamExt;
use sightline_actors::Roles;
use sightline_testkit::{ClipSpec, LiveHls};
use sightline_wire::{EventKind, FeedItem};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_behind_its_target_sheds_frames_without_cuts_and_says_so() {
    let mut cfg = test_config();
    // 800 ms a frame against 2 frames a second: the scene pool falls behind at once.
    cfg.scenes.throttle_ms = 800;
    cfg.scenes.batch_max = 1;
    cfg.scenes.lag_target_ms = 1000;
    cfg.speech.workers = 0;
    // The source does not slow down here: the pool's shedding alone keeps the lag bounded.
    cfg.ingest.lag_high_frames = 10_000;
    let sys =
        TestSystem::start(cfg, Roles { gateway: true, ingest: true, inference: true, sink: false }).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/feed?kinds=scene,state", sys.addr))
            .await
            .unwrap();
    let clip = ClipSpec::standard().render(&std::env::temp_dir().join("sightline-test-clips")).await.unwrap();
    let live = LiveHls::start(&clip, &std::env::temp_dir().join(common::unique("sl-lag")), 0).await.unwrap();
    let (s, v) = sys.http("POST", "/v1/streams", Some(&format!(r#"{{"url": "{}"}}"#, live.url))).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();

    let degraded = status_until(&sys, &id, Duration::from_secs(40), |v| {
        v["status"] == "degraded" && v["detail"]["shed"]["scenes.lag"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let why = degraded["detail"]["degraded_reason"].as_str().unwrap_or_default().to_string();
    assert!(why.contains("scenes is") && why.contains("behind"), "{degraded}");

    // The feed says so, and scene events (frames with cuts are never shed for lag) keep coming.
    let (mut states, mut scenes) = (Vec::new(), 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while tokio::time::Instant::now() < deadline
        && (scenes < 2 || !states.iter().any(|t: &String| t.starts_with("degraded: scenes")))
    {
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_secs(1), ws.next()).await
        {
            let item: FeedItem = serde_json::from_str(&t).unwrap();
            match item.event.kind {
                EventKind::State => states.push(item.event.text.clone()),
                EventKind::Scene => scenes += 1,
                _ => {}
            }
        }
    }
    assert!(states.iter().any(|t| t.starts_with("degraded: scenes")), "{states:?}");
    assert!(scenes >= 2, "scene events kept coming: {scenes}");

    let (_, metrics) = sys.http("GET", "/metrics", None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    let shed = metrics
        .lines()
        .find(|l| {
            l.starts_with("sightline_shed_total{")
                && l.contains("pool=\"scenes\"")
                && l.contains("reason=\"lag\"")
        })
        .unwrap_or_else(|| panic!("no shed counter:\n{metrics}"));
    assert!(shed.rsplit(' ').next().unwrap().parse::<f64>().unwrap() > 0.0, "{shed}");
    assert!(metrics.contains("sightline_pool_lag_seconds{pool=\"scenes\"}"), "lag exported");
    sys.shutdown().await;
}
