//! Store outages while a stream plays: ClickHouse, then Redis, are killed for 60 s and started
//! again. Events wait in JetStream meanwhile; afterwards every event id is stored exactly once.
//! Each test runs its own private ClickHouse or Redis, so the shared services stay up.

mod common;

use common::{Service, TestSystem, free_port, test_config};
use futures::StreamExt;
use sightline_actors::Roles;
use sightline_testkit::{ClipSpec, LiveHls};
use sightline_wire::{EventKind, FeedItem};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const OUTAGE: Duration = Duration::from_secs(60);

/// Collects the feed in the background.
async fn collect_feed(sys: &TestSystem) -> (Arc<Mutex<Vec<FeedItem>>>, tokio::task::JoinHandle<()>) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/feed", sys.addr)).await.unwrap();
    let feed = Arc::new(Mutex::new(Vec::new()));
    let f = feed.clone();
    let task = tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                f.lock().unwrap().push(serde_json::from_str::<FeedItem>(&t).unwrap());
            }
        }
    });
    (feed, task)
}

/// Plays the standard clip live on a new stream; returns the source and the stream id.
async fn play(sys: &TestSystem, tag: &str) -> (LiveHls, String) {
    let clip = ClipSpec::standard().render(&std::env::temp_dir().join("sightline-test-clips")).await.unwrap();
    let live = LiveHls::start(&clip, &std::env::temp_dir().join(common::unique(tag)), 0).await.unwrap();
    let body = serde_json::json!({ "url": live.url, "name": tag }).to_string();
    let (status, created) = sys.http("POST", "/v1/streams", Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    (live, created["id"].as_str().unwrap().to_string())
}

/// Stops the stream and waits until no event has arrived for 4 s; returns the feed.
async fn stop_and_settle(sys: &TestSystem, id: &str, feed: &Arc<Mutex<Vec<FeedItem>>>) -> Vec<FeedItem> {
    assert_eq!(sys.http("DELETE", &format!("/v1/streams/{id}"), None).await.0, 204);
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let n = feed.lock().unwrap().len();
        if n == last {
            return feed.lock().unwrap().clone();
        }
        last = n;
    }
}

fn lag(metrics: &str, sink: &str) -> i64 {
    metrics
        .lines()
        .find(|l| l.starts_with("sightline_sink_lag") && l.contains(&format!("sink=\"{sink}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_outage_loses_and_duplicates_nothing() {
    let port = free_port();
    let dir = std::env::temp_dir().join(common::unique("sl-ch"));
    let mut ch = Service::clickhouse(port, &dir).await;
    let mut cfg = test_config();
    cfg.clickhouse.url = format!("http://127.0.0.1:{port}");
    cfg.sink.status_interval_s = 2;
    let sys = TestSystem::start(cfg, Roles::ALL).await;
    let store = sys.node.as_ref().unwrap().store.clone();
    let (feed, feed_task) = collect_feed(&sys).await;
    let (_live, id) = play(&sys, "ch-outage").await;

    // Events reach ClickHouse before the outage.
    let count = async || store.client().query("SELECT count() FROM events").fetch_one::<u64>().await;
    let mut before = 0;
    for _ in 0..60 {
        before = count().await.unwrap_or(0);
        if before >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(before >= 3, "no events stored before the outage");

    ch.kill().await;
    let fed_at_kill = feed.lock().unwrap().len();
    eprintln!("ClickHouse killed with {before} rows stored; down for {} s", OUTAGE.as_secs());
    tokio::time::sleep(Duration::from_secs(20)).await;
    // During the outage: the stream keeps playing, reads fail with a clear 503, lag is visible.
    let (status, body) = sys.http("GET", &format!("/v1/streams/{id}/events"), None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("not reachable"), "{body}");
    let (_, view) = sys.http("GET", &format!("/v1/streams/{id}"), None).await;
    assert_eq!(view["status"], "running", "{view}");
    let (status, ready) = sys.http("GET", "/readyz", None).await;
    assert_eq!(status, 503, "{ready}");
    tokio::time::sleep(OUTAGE - Duration::from_secs(20)).await;
    let (_, metrics) = sys.http("GET", "/metrics", None).await;
    let lag_during = lag(metrics.as_str().unwrap_or(""), "clickhouse");
    let fed_during = feed.lock().unwrap().len() - fed_at_kill;
    eprintln!("during the outage: {fed_during} events on the feed, sink lag {lag_during}");
    assert!(fed_during > 5, "the stream kept producing events during the outage");

    ch.start().await;
    let feed = stop_and_settle(&sys, &id, &feed).await;
    let feed_ids: BTreeSet<String> = feed.iter().map(|f| f.event.id.clone()).collect();
    let (rows, distinct, ids) =
        common::settled_events(&sys.node.as_ref().unwrap().bus, &store, feed_ids.len()).await;
    eprintln!("after: feed {} ids, ClickHouse {rows} rows, {distinct} distinct", feed_ids.len());
    assert_eq!(rows, distinct, "a row was written twice");
    assert_eq!(ids, feed_ids, "ClickHouse and the feed disagree");
    // The typed tables agree too (materialized views saw each event once).
    let transcripts = feed.iter().filter(|f| f.event.kind == EventKind::Transcript).count() as u64;
    let t = store.client().query("SELECT count() FROM transcripts").fetch_one::<u64>().await.unwrap();
    assert_eq!(t, transcripts);
    feed_task.abort();
    sys.shutdown().await;
    ch.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_loses_and_duplicates_nothing() {
    let port = free_port();
    let dir = std::env::temp_dir().join(common::unique("sl-redis"));
    let mut redis = Service::redis(port, &dir).await;
    let mut cfg = test_config();
    cfg.redis.url = format!("redis://127.0.0.1:{port}");
    let sys = TestSystem::start(cfg, Roles::ALL).await;
    let (feed, feed_task) = collect_feed(&sys).await;
    let (_live, id) = play(&sys, "redis-outage").await;
    let names = sys.node.as_ref().unwrap().bus.names.clone();
    let (text_set, frame_set) = (
        names.vector_set(sightline_wire::VectorSpace::Text),
        names.vector_set(sightline_wire::VectorSpace::Frames),
    );
    let vectors = sightline_store::VectorStore::connect(&sys.cfg.redis.url).await.unwrap();
    let mut before = 0;
    for _ in 0..60 {
        before = vectors.len(&frame_set).await.unwrap_or(0);
        if before >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(before >= 2, "no vectors before the outage");

    redis.kill().await;
    eprintln!("Redis killed with {before} frames stored; down for {} s", OUTAGE.as_secs());
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (status, body) = sys.http("GET", "/v1/search?q=news", None).await;
    assert_eq!(status, 503, "{body}");
    let (status, ready) = sys.http("GET", "/readyz", None).await;
    assert_eq!(status, 503, "{ready}");
    tokio::time::sleep(OUTAGE - Duration::from_secs(20)).await;
    let (_, metrics) = sys.http("GET", "/metrics", None).await;
    eprintln!("sink lag at the end of the outage: {}", lag(metrics.as_str().unwrap_or(""), "redis"));

    redis.start().await;
    let feed = stop_and_settle(&sys, &id, &feed).await;
    let want = |kind: EventKind| -> BTreeSet<String> {
        feed.iter().filter(|f| f.event.kind == kind).map(|f| f.event.id.clone()).collect()
    };
    let (texts, frames) = (want(EventKind::Transcript), want(EventKind::Frame));
    let mut card = (0, 0);
    for _ in 0..120 {
        card = (vectors.len(&text_set).await.unwrap_or(0), vectors.len(&frame_set).await.unwrap_or(0));
        if card.0 >= texts.len() as u64 && card.1 >= frames.len() as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "after: feed {} transcripts / {} frames; Redis {} / {}",
        texts.len(),
        frames.len(),
        card.0,
        card.1
    );
    assert!(texts.len() >= 3 && frames.len() >= 5);
    assert_eq!(card, (texts.len() as u64, frames.len() as u64), "element counts differ from the feed");
    for (set, ids) in [(&text_set, &texts), (&frame_set, &frames)] {
        let list: Vec<String> = ids.iter().cloned().collect();
        let attrs = vectors.attrs(set, &list).await.unwrap();
        let missing: Vec<&String> =
            list.iter().zip(&attrs).filter(|(_, a)| a.is_none()).map(|(i, _)| i).collect();
        assert!(missing.is_empty(), "missing from {set}: {missing:?}");
    }
    let (status, body) = sys.http("GET", "/v1/search?q=news%20from%20the%20city&k=3", None).await;
    assert_eq!(status, 200, "{body}");
    feed_task.abort();
    sys.shutdown().await;
    redis.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}
