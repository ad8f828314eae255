//! The stream API's answers to bad input, and what an unreachable stream looks like.

mod common;

use common::{TestSystem, test_config};
use sightline_actors::Roles;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_unreachable_streams_retry() {
    let sys = TestSystem::start(
        test_config(),
        Roles { gateway: true, ingest: true, inference: false, sink: false },
    )
    .await;

    let cases: [(&str, u16, &str, &str); 6] = [
        ("not json", 400, "invalid_json", "not valid JSON"),
        ("{}", 400, "invalid_field", "missing field `url`"),
        (r#"{"url": 5}"#, 400, "invalid_field", "invalid type"),
        (r#"{"url": "ftp://example.com/x"}"#, 400, "invalid_url", "scheme `ftp` is not supported"),
        (r#"{"url": "no-scheme"}"#, 400, "invalid_url", "has no scheme"),
        (r#"{"url": "http://h/x", "colour": "red"}"#, 400, "invalid_field", "unknown field `colour`"),
    ];
    for (body, status, code, text) in cases {
        let (s, j) = sys.http("POST", "/v1/streams", Some(body)).await;
        assert_eq!(s, status, "{body} → {j}");
        assert_eq!(j["error"]["code"], code, "{body} → {j}");
        let msg = j["error"]["message"].as_str().unwrap();
        assert!(msg.contains(text), "{body} → {msg}");
    }
    let big = format!(r#"{{"url": "http://h/{}"}}"#, "a".repeat(100_000));
    let (s, j) = sys.http("POST", "/v1/streams", Some(&big)).await;
    assert_eq!(s, 413, "{j}");
    assert_eq!(j["error"]["code"], "body_too_large");
    let (s, j) = sys.http("GET", "/v1/streams/nope", None).await;
    assert_eq!((s, j["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, _) = sys.http("GET", "/v1/nothing-here", None).await;
    assert_eq!(s, 404);
    let (s, j) = sys.http("GET", "/v1/feed?kinds=bogus", None).await;
    assert_eq!(s, 400, "{j}");

    // Nothing listens on port 9: the stream must show it is retrying, with the reason.
    let (s, j) = sys
        .http("POST", "/v1/streams", Some(r#"{"url": "http://127.0.0.1:9/live.m3u8", "name": "dead"}"#))
        .await;
    assert_eq!(s, 201, "{j}");
    let id = j["id"].as_str().unwrap().to_string();
    let mut seen = serde_json::Value::Null;
    for _ in 0..60 {
        let (_, v) = sys.http("GET", &format!("/v1/streams/{id}"), None).await;
        seen = v.clone();
        if v["status"] == "reconnecting"
            && v["detail"]["last_error"].is_string()
            && v["detail"]["reconnects"].as_u64() >= Some(1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(seen["status"], "reconnecting", "{seen}");
    let err = seen["detail"]["last_error"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        err.contains("could not connect")
            || err.contains("connection refused")
            || err.contains("not found")
            || err.contains("error"),
        "{err}"
    );
    let (s, list) = sys.http("GET", "/v1/streams", None).await;
    assert_eq!(s, 200);
    assert_eq!(list["streams"].as_array().unwrap().len(), 1);
    let (s, _) = sys.http("DELETE", &format!("/v1/streams/{id}"), None).await;
    assert_eq!(s, 204);
    let (s, _) = sys.http("GET", "/healthz", None).await;
    assert_eq!(s, 200);
    sys.shutdown().await;
}
