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

    let cases: [(&str, u16, &str, &str); 8] = [
        ("not json", 400, "invalid_json", "not valid JSON"),
        ("{}", 400, "invalid_field", "missing field `url`"),
        (r#"{"url": 5}"#, 400, "invalid_field", "invalid type"),
        (r#"{"url": "ftp://example.com/x"}"#, 400, "invalid_url", "scheme `ftp` is not supported"),
        (r#"{"url": "no-scheme"}"#, 400, "invalid_url", "has no scheme"),
        (r#"{"url": "http://h/x", "colour": "red"}"#, 400, "invalid_field", "unknown field `colour`"),
        // Only the deployment's speech.languages (English alone by default).
        (
            r#"{"url": "http://h/x", "languages": ["de"]}"#,
            400,
            "invalid_languages",
            "speech.languages [\"en\"]",
        ),
        (r#"{"url": "http://h/x", "languages": "en"}"#, 400, "invalid_field", "invalid type"),
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
    assert!(err.contains("cannot connect to 127.0.0.1:9") && err.contains("refused"), "{err}");
    let (s, list) = sys.http("GET", "/v1/streams", None).await;
    assert_eq!(s, 200);
    assert_eq!(list["streams"].as_array().unwrap().len(), 1);
    let (s, _) = sys.http("DELETE", &format!("/v1/streams/{id}"), None).await;
    assert_eq!(s, 204);
    let (s, _) = sys.http("GET", "/healthz", None).await;
    assert_eq!(s, 200);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_is_idempotent_by_id_and_name() {
    let sys = TestSystem::start(
        test_config(),
        Roles { gateway: true, ingest: false, inference: false, sink: false },
    )
    .await;
    let a = r#"{"url": "http://127.0.0.1:9/a.m3u8", "name": "cam-1"}"#;
    let (s, first) = sys.http("POST", "/v1/streams", Some(a)).await;
    assert_eq!(s, 201, "{first}");
    let (s, again) = sys.http("POST", "/v1/streams", Some(a)).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["id"], first["id"]);
    let (s, conflict) = sys
        .http("POST", "/v1/streams", Some(r#"{"url": "http://127.0.0.1:9/b.m3u8", "name": "cam-1"}"#))
        .await;
    assert_eq!(s, 409, "{conflict}");
    assert!(conflict["error"]["message"].as_str().unwrap().contains("already exists"));
    // The languages a stream speaks are part of its spec: shown, and a different list conflicts.
    let c = r#"{"url": "http://127.0.0.1:9/c.m3u8", "name": "cam-en", "languages": ["en", "en"]}"#;
    let (s, v) = sys.http("POST", "/v1/streams", Some(c)).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["languages"], serde_json::json!(["en"]), "deduplicated: {v}");
    let (s, v) = sys
        .http("POST", "/v1/streams", Some(r#"{"url": "http://127.0.0.1:9/c.m3u8", "name": "cam-en"}"#))
        .await;
    assert_eq!(s, 409, "{v}");
    let id = list_id(&sys, "cam-en").await;
    let (s, _) = sys.http("DELETE", &format!("/v1/streams/{id}"), None).await;
    assert_eq!(s, 204);

    let b = r#"{"id": "client-7", "url": "rtmp://127.0.0.1:9/live/x"}"#;
    let (s, v) = sys.http("POST", "/v1/streams", Some(b)).await;
    assert_eq!((s, v["id"].as_str()), (201, Some("client-7")), "{v}");
    let (s, _) = sys.http("POST", "/v1/streams", Some(b)).await;
    assert_eq!(s, 200);
    let (s, _) = sys
        .http("POST", "/v1/streams", Some(r#"{"id": "client-7", "url": "rtmp://127.0.0.1:9/live/y"}"#))
        .await;
    assert_eq!(s, 409);
    let (s, _) = sys
        .http("POST", "/v1/streams", Some(r#"{"id": "bad id!", "url": "rtmp://127.0.0.1:9/live/y"}"#))
        .await;
    assert_eq!(s, 400);

    // Concurrent creates of one name make one stream.
    let body = r#"{"url": "http://127.0.0.1:9/c.m3u8", "name": "racer"}"#;
    let results =
        futures::future::join_all((0..8).map(|_| sys.http("POST", "/v1/streams", Some(body)))).await;
    assert_eq!(results.iter().filter(|(s, _)| *s == 201).count(), 1, "{results:?}");
    assert!(results.iter().all(|(s, _)| *s == 201 || *s == 200));
    let (_, list) = sys.http("GET", "/v1/streams", None).await;
    assert_eq!(list["streams"].as_array().unwrap().len(), 3, "{list}");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_playlists_are_refused() {
    let mut cfg = test_config();
    cfg.ingest.max_playlist_segments = 50;
    // Ingest fetches and checks playlists for the gateway (request/reply).
    let sys =
        TestSystem::start(cfg, Roles { gateway: true, ingest: true, inference: false, sink: false }).await;
    // A one-file HTTP server on loopback answering with a playlist of 200 segments.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n".to_string() + &"#EXTINF:1,\nseg.ts\n".repeat(200);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = listener.accept().await else { break };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let head =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    let (s, j) = sys
        .http("POST", "/v1/streams", Some(&format!(r#"{{"url": "http://127.0.0.1:{port}/big.m3u8"}}"#)))
        .await;
    assert_eq!(s, 400, "{j}");
    assert_eq!(j["error"]["code"], "invalid_playlist");
    assert!(j["error"]["message"].as_str().unwrap().contains("200 segments"), "{j}");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_hosts_are_refused_by_default() {
    let mut cfg = test_config();
    cfg.ingest.allow_hosts = Vec::new();
    let sys =
        TestSystem::start(cfg, Roles { gateway: true, ingest: false, inference: false, sink: false }).await;
    for url in [
        "http://127.0.0.1:8080/x.m3u8",
        "rtmp://localhost/live/a",
        "rtsp://10.0.0.8/cam",
        "http://[::1]/x.m3u8",
        // Special-purpose ranges: benchmarking, NAT64 of a private address, 6to4 of loopback.
        "http://198.18.0.1/x.m3u8",
        "http://[64:ff9b::a00:1]/x.m3u8",
        "http://[2002:7f00:1::1]/x.m3u8",
    ] {
        let (s, j) = sys.http("POST", "/v1/streams", Some(&format!(r#"{{"url": "{url}"}}"#))).await;
        assert_eq!(s, 400, "{url} → {j}");
        assert!(j["error"]["message"].as_str().unwrap().contains("private"), "{j}");
    }
    // A URL parsers could read as naming different hosts is refused whatever it names.
    let (s, j) = sys.http("POST", "/v1/streams", Some(r#"{"url": "http://a@b@127.0.0.1/x.m3u8"}"#)).await;
    assert_eq!((s, j["error"]["code"].as_str()), (400, Some("invalid_url")), "{j}");
    assert!(j["error"]["message"].as_str().unwrap().contains("different hosts"), "{j}");
    let (_, list) = sys.http("GET", "/v1/streams", None).await;
    assert!(list["streams"].as_array().unwrap().is_empty());
    sys.shutdown().await;
}

/// The id of the stream named `name`.
async fn list_id(sys: &TestSystem, name: &str) -> String {
    let (_, list) = sys.http("GET", "/v1/streams", None).await;
    let streams = list["streams"].as_array().unwrap();
    streams.iter().find(|s| s["name"] == name).unwrap()["id"].as_str().unwrap().to_string()
}
