//! A stream deleted and registered again under the same name (so the same id) starts its media
//! clock at 0 again. Its events must not collide with the first registration's: JetStream would
//! drop them as duplicates within its window, and ClickHouse would replace the old history.

mod common;

use common::{TestSystem, test_config};
use sightline_actors::Roles;
use sightline_testkit::{ClipSpec, LiveHls};
use std::time::Duration;

/// The stream's event ids in ClickHouse (scene and frame events), once at least `n` are there.
async fn ids(sys: &TestSystem, stream: &str, n: usize) -> Vec<String> {
    let store = sys.node.as_ref().unwrap().store.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ids: Vec<String> = store
            .client()
            .query("SELECT id FROM events FINAL WHERE stream_id = ? AND kind IN ('scene', 'frame') ORDER BY pts_ms")
            .bind(stream)
            .fetch_all()
            .await
            .unwrap();
        if ids.len() >= n {
            return ids;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {} events: {ids:?}", ids.len());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_registered_again_keeps_its_old_events_and_gets_new_ones() {
    let mut cfg = test_config();
    cfg.speech.workers = 0;
    let sys =
        TestSystem::start(cfg, Roles { gateway: true, ingest: true, inference: true, sink: true }).await;
    let clip = ClipSpec::standard().render(&std::env::temp_dir().join("sightline-test-clips")).await.unwrap();
    let live =
        LiveHls::start(&clip, &std::env::temp_dir().join(common::unique("sl-rereg")), 0).await.unwrap();
    let body = format!(r#"{{"url": "{}", "name": "again"}}"#, live.url);

    let (s, first) = sys.http("POST", "/v1/streams", Some(&body)).await;
    assert_eq!(s, 201, "{first}");
    let id = first["id"].as_str().unwrap().to_string();
    let before = ids(&sys, &id, 4).await;
    assert_eq!(sys.http("DELETE", &format!("/v1/streams/{id}"), None).await.0, 204);

    let (s, second) = sys.http("POST", "/v1/streams", Some(&body)).await;
    assert_eq!(s, 201, "{second}");
    assert_eq!(second["id"], first["id"], "a name maps to one id");
    assert_ne!(second["incarnation"], first["incarnation"], "a new registration, a new incarnation");
    let new_suffix = format!(".r{:x}", second["incarnation"].as_u64().unwrap());
    // Events of the first registration still in flight may land after `before` was read: wait for
    // the second registration's own.
    let mut all = ids(&sys, &id, before.len() + 4).await;
    for _ in 0..240 {
        if all.iter().filter(|i| i.ends_with(&new_suffix)).count() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        all = ids(&sys, &id, 0).await;
    }

    // Every event of the first registration is still there, and the second one's are new rows,
    // though its media clock started at 0 again.
    for old in &before {
        assert!(all.contains(old), "{old} was replaced: {all:?}");
    }
    let suffix = |v: &serde_json::Value| format!(".r{:x}", v["incarnation"].as_u64().unwrap());
    let old_suffix = suffix(&first);
    assert!(before.iter().all(|i| i.ends_with(&old_suffix)), "{before:?}");
    let new: Vec<&String> = all.iter().filter(|i| i.ends_with(&new_suffix)).collect();
    assert!(new.len() >= 4, "{all:?}");
    let pts = |i: &str| i.split('.').nth(2).unwrap().parse::<i64>().unwrap();
    let first_new = new.iter().map(|i| pts(i)).min().unwrap();
    let last_old = before.iter().map(|i| pts(i)).max().unwrap();
    assert!(first_new < last_old, "the new media clock started at 0 again: {before:?} then {new:?}");
    sys.shutdown().await;
}
