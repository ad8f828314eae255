//! RTMP and RTSP through the whole system: registered over the API, scene events on the feed at
//! the generated cut times, within one decoded frame.

mod common;

use common::{TestSystem, test_config};
use futures::StreamExt;
use sightline_actors::Roles;
use sightline_testkit::{ClipSpec, RtmpServer, RtspServer};
use sightline_wire::FeedItem;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// The stream's scene cut times; the stream is deleted afterwards, so it does not go on
/// reconnecting to a server the test is about to stop.
async fn scene_times(sys: &TestSystem, url: &str, before_media: impl FnOnce()) -> Vec<i64> {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/feed?kinds=scene", sys.addr)).await.unwrap();
    let (s, v) = sys.http("POST", "/v1/streams", Some(&format!(r#"{{"url": "{url}"}}"#))).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    before_media();
    let mut cuts = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while cuts.len() < 3 && tokio::time::Instant::now() < deadline {
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_secs(1), ws.next()).await
        {
            let item: FeedItem = serde_json::from_str(&t).unwrap();
            cuts.push(item.event.pts_ms);
        }
    }
    eprintln!("{url}: cuts {cuts:?}");
    assert_eq!(sys.http("DELETE", &format!("/v1/streams/{id}"), None).await.0, 204);
    cuts
}

fn assert_cuts(cuts: &[i64], clip: &ClipSpec) {
    assert_eq!(cuts.len(), clip.cuts_ms().len(), "{cuts:?}");
    for (got, want) in cuts.iter().zip(clip.cuts_ms()) {
        assert!((got - want).abs() <= 34, "cut at {got} ms, generated at {want} ms");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_and_rtsp_streams_give_frame_exact_cuts() {
    let mut cfg = test_config();
    cfg.speech.workers = 0;
    let sys =
        TestSystem::start(cfg, Roles { gateway: true, ingest: true, inference: true, sink: false }).await;
    let clip = ClipSpec::standard();
    let file = clip.render(&std::env::temp_dir().join("sightline-test-clips")).await.unwrap();

    let mut rtmp = RtmpServer::start(&std::env::temp_dir().join(common::unique("sl-rtmp"))).await.unwrap();
    let url = rtmp.url("cam");
    // Subscribe first, then publish, so media time 0 is the clip's start.
    let cuts = scene_times(&sys, &url, || {
        std::thread::sleep(Duration::from_millis(500));
        rtmp.push(&file, "cam", 1).unwrap();
    })
    .await;
    assert_cuts(&cuts, &clip);
    drop(rtmp);

    let rtsp = RtspServer::start(&file).await.unwrap();
    let cuts = scene_times(&sys, &rtsp.url, || {}).await;
    assert_cuts(&cuts, &clip);
    drop(rtsp);
    sys.shutdown().await;
}
