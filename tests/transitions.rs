//! Gradual transitions live: a clip with a 1 s dissolve, a 1 s fade through black, a 0.5 s wipe
//! and a 0.5 s fade between textured scenes, and hard cuts between them, played as live HLS. Each
//! transition reaches the feed as one `scene` event at its midpoint (within 0.5 s) carrying its
//! start and end; each hard cut stays exact to the decoded frame; nothing else is a scene. The
//! media-to-feed delay of each scene event is printed (targets live in `make quality`/`make
//! loadtest`, not here).

mod common;

use common::{TestSystem, test_config};
use futures::StreamExt;
use sightline_actors::Roles;
use sightline_testkit::{ClipSpec, LiveHls};
use sightline_wire::{EventKind, FeedItem};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dissolves_fades_and_wipes_are_one_scene_event_each() {
    let sys = TestSystem::start(test_config(), Roles::ALL).await;
    let clip = ClipSpec::transitions();
    let file = clip.render(&std::env::temp_dir().join("sightline-test-clips")).await.expect("clip renders");
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/feed", sys.addr)).await.expect("feed connects");
    let live = LiveHls::start(&file, &std::env::temp_dir().join(common::unique("sl-transitions")), 1)
        .await
        .expect("live HLS starts");
    let body = serde_json::json!({ "url": live.url, "name": "transitions" }).to_string();
    let (status, created) = sys.http("POST", "/v1/streams", Some(&body)).await;
    assert_eq!(status, 201, "{created}");

    let expected = clip.changes_ms();
    let mut feed: Vec<(FeedItem, i64)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while tokio::time::Instant::now() < deadline {
        let last_seen =
            feed.iter().filter(|(f, _)| f.event.kind == EventKind::Frame).map(|(f, _)| f.event.pts_ms).max();
        if last_seen.is_some_and(|t| t >= clip.duration_ms() - 600) {
            break; // one pass seen (frames up to its end)
        }
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_secs(1), ws.next()).await
        {
            feed.push((serde_json::from_str(&t).expect("feed item parses"), sightline_wire::now_ms()));
        }
    }
    let scenes: Vec<&(FeedItem, i64)> = feed
        .iter()
        .filter(|(f, _)| f.event.kind == EventKind::Scene && f.event.pts_ms < clip.duration_ms() - 100)
        .collect();
    for (s, at) in &scenes {
        eprintln!(
            "scene at {} ms, score {:.3}, transition {:?}, on the feed {} ms after its media time",
            s.event.pts_ms,
            s.event.score,
            s.event.scene().and_then(|i| i.transition),
            at - s.event.wall_ms
        );
    }
    assert_eq!(
        scenes.len(),
        expected.len(),
        "scenes {:?}, generated {expected:?}",
        scenes.iter().map(|s| s.0.event.pts_ms).collect::<Vec<_>>()
    );
    for ((s, _), &(start, end)) in scenes.iter().zip(&expected) {
        let e = &s.event;
        if start == end {
            assert!((e.pts_ms - start).abs() <= 40, "hard cut at {} ms, generated at {start} ms", e.pts_ms);
            assert!(e.scene().is_none_or(|i| i.transition.is_none()), "{e:?}");
        } else {
            let mid = (start + end) / 2;
            assert!(
                (e.pts_ms - mid).abs() <= 500,
                "transition at {} ms, generated {start}–{end} ms",
                e.pts_ms
            );
            let t = e.scene().and_then(|i| i.transition).unwrap_or_else(|| panic!("no span on {e:?}"));
            assert!(t.start_ms <= e.pts_ms && e.pts_ms <= t.end_ms && t.end_ms - t.start_ms <= 1500, "{t:?}");
        }
    }
    drop(live);
    sys.shutdown().await;
}
