//! The TransNetV2 cut detector end to end (`ingest.cut_detector = "transnetv2"`): ingest publishes
//! windows of every decoded frame at 48x27 over JetStream, the shots pool runs the model on them,
//! and the clip's cuts come out as `scene` events from `transnetv2@1`, exact to the decoded frame,
//! on the feed and in ClickHouse's `scenes` table, while the fast score still marks keyframes.

mod common;

use common::{TestSystem, test_config};
use futures::StreamExt;
use sightline_actors::Roles;
use sightline_testkit::{ClipSpec, LiveHls};
use sightline_wire::{EventKind, FeedItem};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transnetv2_cuts_come_out_as_scene_events() {
    let mut cfg = test_config();
    cfg.ingest.cut_detector = sightline_settings::CutDetector::Transnetv2;
    // Every sampled frame is looked at: with TransNetV2 the frames carry no cut of their own, so a
    // scene pool behind its lag target (a busy machine) may shed the frame right after a cut, and
    // the keyframe mark below would land one sample later (`tests/lag.rs` tests the shedding).
    cfg.scenes.lag_target_ms = 0;
    let sys = TestSystem::start(cfg, Roles::ALL).await;
    let clip = ClipSpec::standard();
    let file = clip.render(&std::env::temp_dir().join("sightline-test-clips")).await.expect("clip renders");
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/feed", sys.addr)).await.expect("feed connects");
    let live = LiveHls::start(&file, &std::env::temp_dir().join(common::unique("sl-shots")), 1)
        .await
        .expect("live HLS starts");
    let body = serde_json::json!({ "url": live.url, "name": "shots" }).to_string();
    let (status, created) = sys.http("POST", "/v1/streams", Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    let expected = clip.cuts_ms();
    let mut feed: Vec<FeedItem> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let cuts = feed.iter().filter(|f| f.event.kind == EventKind::Scene).count();
        if cuts >= expected.len() {
            // A little longer, to catch a spurious cut after the last expected one.
            let _ = tokio::time::timeout(Duration::from_secs(3), async {
                while let Some(Ok(Message::Text(t))) = ws.next().await {
                    feed.push(serde_json::from_str(&t).unwrap());
                }
            })
            .await;
            break;
        }
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_secs(1), ws.next()).await
        {
            feed.push(serde_json::from_str(&t).expect("feed item parses"));
        }
    }
    let scenes: Vec<&FeedItem> = feed.iter().filter(|f| f.event.kind == EventKind::Scene).collect();
    for s in &scenes {
        eprintln!("scene at {} ms, score {:.3}, model {}", s.event.pts_ms, s.event.score, s.event.model);
    }
    // Each generated cut, exact to the decoded frame (30 fps: 33 ms; one frame of slack), no others.
    let cuts: Vec<i64> = scenes.iter().map(|s| s.event.pts_ms).collect();
    assert_eq!(cuts.len(), expected.len(), "cuts {cuts:?}, generated {expected:?}");
    for (got, want) in cuts.iter().zip(&expected) {
        assert!((got - want).abs() <= 40, "cut at {got} ms, generated at {want} ms");
    }
    assert!(scenes.iter().all(|s| s.event.model == "transnetv2@1" && s.event.score > 0.8));
    // The fast score still marks a keyframe right after each cut: the first sampled frame at or
    // after it that reaches the feed is one. (A busy machine may drop the sample right after a cut
    // at ingest's leaky queue, by design; the cut then rides on the next sample delivered, and a
    // cut that missed its frame would show as a changed frame that is not a keyframe.)
    let mut frames: Vec<(i64, bool)> =
        feed.iter().filter_map(|f| f.event.frame().map(|fr| (f.event.pts_ms, fr.keyframe))).collect();
    frames.sort_unstable();
    for c in &expected {
        let first = frames.iter().find(|(pts, _)| pts >= c);
        assert!(
            first.is_some_and(|&(pts, keyframe)| keyframe && pts - c <= 1_500),
            "the first frame after the cut at {c} ms is not a keyframe within 1.5 s: {frames:?}"
        );
    }

    // ClickHouse's scenes table holds the same cuts, with the model that found them.
    let store = sys.node.as_ref().unwrap().store.clone();
    let sql = format!(
        "SELECT start_ms FROM scenes FINAL WHERE stream_id = '{id}' AND model = 'transnetv2@1' ORDER BY start_ms"
    );
    let mut stored = Vec::new();
    for _ in 0..40 {
        stored = store.client().query(&sql).fetch_all::<i64>().await.unwrap_or_default();
        if stored.len() >= cuts.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(stored, cuts);
    // The work went through the shots pool (its model's batches are measured).
    let (_, metrics) = sys.http("GET", "/metrics", None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sightline_inference_batch_size_count") && l.contains("transnetv2")),
        "no TransNetV2 batches in /metrics"
    );
    drop(live);
    sys.shutdown().await;
}
