//! The API refuses what a hostile caller or page would send, and stays whole afterwards: JSON
//! bodies must say they are JSON (a form or text/plain POST is 415), `since=` at the top of the u64
//! range is a 400, an API key in a URL counts only on the feeds, registrations stop at
//! `ingest.max_streams`, and a gateway with no keys refuses to listen beyond loopback.

mod common;

use common::{TestSystem, test_config};
use futures::StreamExt;
use sightline_actors::Roles;
use sightline_settings::{ApiKeyConfig, Scope};
use std::time::Duration;

const ADMIN: &str = "guards-admin-key";
const GATEWAY_ONLY: Roles = Roles { gateway: true, ingest: false, inference: false, sink: false };

async fn post(sys: &TestSystem, path: &str, ctype: &str, body: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}{path}", sys.addr))
        .bearer_auth(ADMIN)
        .header("content-type", ctype)
        .body(body.to_string())
        .send()
        .await
        .expect("the gateway answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

fn keyed(max_streams: usize) -> sightline_settings::Config {
    let mut cfg = test_config();
    cfg.gateway.api_keys = vec![ApiKeyConfig {
        name: "ops".into(),
        sha256: sightline_gateway::sha256_hex(ADMIN),
        scope: Scope::Admin,
    }];
    cfg.ingest.max_streams = max_streams;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_must_be_json_and_registrations_stop_at_the_cap() {
    let sys = TestSystem::start(keyed(2), GATEWAY_ONLY).await;
    let stream =
        |name: &str| serde_json::json!({ "url": "http://127.0.0.1:9/live.m3u8", "name": name }).to_string();
    for ctype in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""] {
        let (status, body) = post(&sys, "/v1/streams", ctype, &stream("a")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (415, Some("unsupported_media_type")),
            "{ctype}: {body}"
        );
        let (status, _) = post(&sys, "/v1/sql", ctype, r#"{"sql": "SELECT 1"}"#).await;
        assert_eq!(status, 415, "{ctype}");
    }
    let (status, _) = post(&sys, "/v1/streams", "application/json; charset=utf-8", &stream("a")).await;
    assert_eq!(status, 201);
    let (status, _) = post(&sys, "/v1/streams", "application/json", &stream("b")).await;
    assert_eq!(status, 201);
    let (status, body) = post(&sys, "/v1/streams", "application/json", &stream("c")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("too_many_streams")), "{body}");
    // Asking again for a registered stream still answers with it.
    let (status, again) = post(&sys, "/v1/streams", "application/json", &stream("a")).await;
    assert_eq!((status, again["name"].as_str()), (200, Some("a")), "{again}");
    let (_, _, list) = common::http_full(sys.addr, "GET", "/v1/streams", None, Some(ADMIN)).await;
    let names: Vec<&str> =
        list["streams"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["a", "b"], "nothing registered by the refused requests");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_urls_count_only_on_the_feeds_and_since_is_bounded() {
    let sys = TestSystem::start(keyed(10), GATEWAY_ONLY).await;
    let (status, _, _) =
        common::http_full(sys.addr, "GET", &format!("/v1/streams?access_token={ADMIN}"), None, None).await;
    assert_eq!(status, 401, "a key in the URL of a non-feed endpoint is not a key");
    let feed = format!("ws://{}/v1/feed?access_token={ADMIN}", sys.addr);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(&feed).await.expect("the feed takes the key in its URL");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), ws.next()).await.is_err(),
        "an open, quiet feed"
    );
    drop(ws);
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/v1/feed", sys.addr)).await;
    assert!(refused.is_err(), "no key, no feed");

    let max = u64::MAX;
    let (status, _, body) =
        common::http_full(sys.addr, "GET", &format!("/v1/feed/sse?since={max}"), None, Some(ADMIN)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_since")), "{body}");
    match tokio_tungstenite::connect_async(format!("{feed}&since={max}")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 400),
        other => panic!("since={max} opened a feed: {other:?}"),
    }
    let (status, _) = sys.http("GET", "/healthz", None).await;
    assert_eq!(status, 200, "the node is intact");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_api_listens_on_loopback_only() {
    let sys = TestSystem::start(test_config(), GATEWAY_ONLY).await;
    let node = sys.node.as_ref().unwrap();
    let mut open = test_config();
    for (listen, refused) in [("0.0.0.0:8080", true), ("[::]:8080", true), ("127.0.0.1:8080", false)] {
        open.gateway.listen = listen.into();
        let state = sightline_gateway::AppState::new(
            &open,
            node.bus.clone(),
            node.registry.clone(),
            node.store.clone(),
            node.metrics.clone(),
        );
        match state {
            Err(e) => {
                assert!(refused, "{listen}: {e}");
                assert!(e.to_string().contains("no API keys"), "{e}");
            }
            Ok(_) => assert!(!refused, "{listen} with no keys was accepted"),
        }
    }
    sys.shutdown().await;
}

/// Bodies and URLs as a hostile caller writes them: wrong types, unknown fields, deep nesting,
/// invalid UTF-8, oversized bodies, and internal addresses in every spelling a resolver accepts.
/// Each is a 4xx that says what was wrong, and afterwards nothing was registered and the node
/// still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_and_url_spellings_are_refused_and_nothing_changes() {
    let mut cfg = keyed(10);
    cfg.gateway.max_body_bytes = 64 * 1024;
    let sys = TestSystem::start(cfg, GATEWAY_ONLY).await;
    let json = "application/json";
    let deep = format!("{{\"url\": {}\"x\"{}}}", "[".repeat(5000), "]".repeat(5000));
    let huge = format!("{{\"url\": \"http://example.com/{}\"}}", "a".repeat(100 * 1024));
    for (body, want) in [
        (r#"{"url": 42}"#.to_string(), "invalid_field"),
        (r#"{"url": ["http://example.com/x.m3u8"]}"#.into(), "invalid_field"),
        (r#"{"url": "http://example.com/x.m3u8", "name": {"a": 1}}"#.into(), "invalid_field"),
        (r#"{"url": "http://example.com/x.m3u8", "admin": true}"#.into(), "invalid_field"),
        (r#"{"url": "http://127.0.0.1:9/x.m3u8", "id": "../../etc"}"#.into(), "invalid_id"),
        (r#"{"url": "http://127.0.0.1:9/x.m3u8", "id": "ｉｄ"}"#.into(), "invalid_id"),
        (r#"{"url": "http://127.0.0.1:9/x.m3u8", "name": "a\u0000b"}"#.into(), "invalid_name"),
        ("[]".into(), "invalid_field"),
        ("null".into(), "invalid_field"),
        ("{\"url\": \"http://example.com/x.m3u8\"".into(), "invalid_json"),
        (deep, "invalid_field"),
    ] {
        let (status, answer) = post(&sys, "/v1/streams", json, &body).await;
        let shown: String = body.chars().take(60).collect();
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some(want)), "{shown}: {answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
    }
    let (status, _) = post(&sys, "/v1/streams", json, &huge).await;
    assert_eq!(status, 413);
    let invalid_utf8 = reqwest::Client::new()
        .post(format!("http://{}/v1/streams", sys.addr))
        .bearer_auth(ADMIN)
        .header("content-type", json)
        .body(b"{\"url\": \"http://h/\xff\xfe.m3u8\"}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(invalid_utf8.status().as_u16(), 400);

    // 127.0.0.2 (not in the tests' allow-list) in every spelling a resolver reads as it.
    for url in [
        "http://127.0.0.2/x.m3u8",
        "http://2130706434/x.m3u8",
        "http://0x7f000002/x.m3u8",
        "http://0177.0.0.2/x.m3u8",
        "http://127.2/x.m3u8",
        "http://[::ffff:127.0.0.2]/x.m3u8",
        "http://[::ffff:7f00:2]/x.m3u8",
        "http://[64:ff9b::7f00:2]/x.m3u8",
        "http://[2002:7f00:2::]/x.m3u8",
        "http://%31%32%37.0.0.2/x.m3u8",
        "http://[fe80::1%25lo]/x.m3u8",
        "rtmp://127.0.0.2/live/key",
        "rtsp://user:pw@127.0.0.2:554/cam",
        "http://169.254.169.254/latest/meta-data",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://0.0.0.0:8123/",
        "http://[::]:4222/",
        "http://127.0.0.1.example.invalid/x.m3u8",
    ] {
        let (status, answer) = post(&sys, "/v1/streams", json, &format!(r#"{{"url": "{url}"}}"#)).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_url")), "{url}: {answer}");
    }

    let (_, _, list) = common::http_full(sys.addr, "GET", "/v1/streams", None, Some(ADMIN)).await;
    assert_eq!(list["streams"].as_array().map(Vec::len), Some(0), "nothing was registered: {list}");
    let (status, _, _) = common::http_full(sys.addr, "GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    sys.shutdown().await;
}
