//! A live source that goes away and comes back: the stream shows `reconnecting` with the reason,
//! returns to `running` within 5 s of the source's return, counts one outage, and events resume.

mod common;

use common::{TestSystem, test_config};
use futures::StreamExt;
use sightline_actors::Roles;
use sightline_testkit::{ClipSpec, LiveHls};
use sightline_wire::FeedItem;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

async fn wait_for_status(
    sys: &TestSystem,
    id: &str,
    want: &str,
    within: Duration,
) -> (serde_json::Value, Instant) {
    let deadline = Instant::now() + within;
    loop {
        let (_, v) = sys.http("GET", &format!("/v1/streams/{id}"), None).await;
        if v["status"] == want {
            return (v, Instant::now());
        }
        assert!(Instant::now() < deadline, "stream never became {want}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_outage_reconnects_and_resumes() {
    let mut cfg = test_config();
    cfg.ingest.stall_timeout_s = 4;
    // The 5 s bound below is the user's expectation; a 2 s backoff cap leaves room for a slow
    // machine's pipeline start (the default cap, 4 s, also keeps it under 5 s).
    cfg.ingest.backoff_max_ms = 2000;
    let sys =
        TestSystem::start(cfg, Roles { gateway: true, ingest: true, inference: true, sink: false }).await;
    let file = ClipSpec::standard().render(&std::env::temp_dir().join("sightline-test-clips")).await.unwrap();
    let dir = std::env::temp_dir().join(common::unique("sl-reconnect"));
    let mut live = LiveHls::start(&file, &dir, 0).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/feed?kinds=scene", sys.addr)).await.unwrap();
    let (s, v) = sys.http("POST", "/v1/streams", Some(&format!(r#"{{"url": "{}"}}"#, live.url))).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    wait_for_status(&sys, &id, "running", Duration::from_secs(15)).await;

    // The source disappears (encoder and server); ten seconds later it is back.
    live.stop().await;
    let (down, _) = wait_for_status(&sys, &id, "reconnecting", Duration::from_secs(15)).await;
    assert!(down["detail"]["last_error"].is_string(), "{down}");
    eprintln!("down: {down}");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (_, still) = sys.http("GET", &format!("/v1/streams/{id}"), None).await;
    assert_eq!(still["status"], "reconnecting", "{still}");
    let media_before = still["detail"]["media_ms"].as_i64().unwrap();

    live.restart().await.unwrap();
    let back_at = Instant::now();
    let (up, running_at) = wait_for_status(&sys, &id, "running", Duration::from_secs(10)).await;
    let took = running_at - back_at;
    eprintln!("running again {:.1} s after the source came back: {up}", took.as_secs_f64());
    assert!(took <= Duration::from_secs(5), "took {took:?}");
    assert_eq!(up["detail"]["reconnects"], 1, "{up}");
    assert_eq!(up["detail"]["retry_attempt"], 0, "{up}");

    // Events resume: the restarted clip's first cut (5 s in) arrives, later on the media clock.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut resumed = None;
    while Instant::now() < deadline && resumed.is_none() {
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_secs(1), ws.next()).await
        {
            let item: FeedItem = serde_json::from_str(&t).unwrap();
            if item.event.pts_ms > media_before {
                resumed = Some(item.event.pts_ms);
            }
        }
    }
    assert!(resumed.is_some(), "no scene event after the source came back");
    drop(live);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_streams_resume_after_a_restart() {
    let roles = Roles { gateway: true, ingest: true, inference: false, sink: false };
    let sys = TestSystem::start(test_config(), roles).await;
    let file = ClipSpec::standard().render(&std::env::temp_dir().join("sightline-test-clips")).await.unwrap();
    let live =
        LiveHls::start(&file, &std::env::temp_dir().join(common::unique("sl-resume")), 0).await.unwrap();
    let (s, v) =
        sys.http("POST", "/v1/streams", Some(&format!(r#"{{"url": "{}", "name": "kept"}}"#, live.url))).await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    wait_for_status(&sys, &id, "running", Duration::from_secs(15)).await;
    // Two seconds of media into the stream.
    let before = common::status_until(&sys, &id, Duration::from_secs(15), |v| {
        v["detail"]["media_ms"].as_i64() >= Some(2000)
    })
    .await;
    let media_before = before["detail"]["media_ms"].as_i64().unwrap();

    // Sightline stops and starts again; nobody registers anything.
    let sys = sys.restart(roles).await;
    let restarted_ms = sightline_wire::now_ms();
    // The new run's own status (the bucket still holds the old run's until it reports): running,
    // with frames decoded.
    let after2 = common::status_until(&sys, &id, Duration::from_secs(20), |v| {
        v["status"] == "running"
            && v["detail"]["updated_ms"].as_i64() > Some(restarted_ms)
            && v["detail"]["decoded_frames"].as_u64() > Some(0)
    })
    .await;
    let after = &after2;
    eprintln!("before: {before}\nafter: {after2}");
    assert_eq!(after["name"], "kept");
    // The media clock continues past where the previous run left it: no event id can repeat.
    assert!(after2["detail"]["media_ms"].as_i64().unwrap() > media_before, "{after2}");
    assert!(after2["detail"]["decoded_frames"].as_u64().unwrap() > 0);
    let (_, list) = sys.http("GET", "/v1/streams", None).await;
    assert_eq!(list["streams"].as_array().unwrap().len(), 1);
    drop(live);
    sys.shutdown().await;
}
