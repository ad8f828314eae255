//! The gateway as a user meets it: API keys and scopes, rate limits, every stream endpoint's
//! error cases, pause and resume, the OpenAPI document, feed resume (websocket and server-sent
//! events) with no gap and no duplicate, and dashboards that match the metrics and tables.

mod common;

use common::{TestSystem, http_full, test_config};
use futures::StreamExt;
use sightline_actors::Roles;
use sightline_settings::ApiKeyConfig;
use sightline_wire::{Event, EventKind, FeedItem};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const ADMIN: &str = "admin-secret-1";
const READER: &str = "reader-secret-1";
const BURSTY: &str = "bursty-secret-1";

fn keyed_config() -> sightline_settings::Config {
    let mut cfg = test_config();
    use sightline_settings::Scope;
    let key = |name: &str, secret: &str, scope: Scope| ApiKeyConfig {
        name: name.into(),
        sha256: sightline_gateway::sha256_hex(secret),
        scope,
    };
    cfg.gateway.api_keys = vec![
        key("ops", ADMIN, Scope::Admin),
        key("viewer", READER, Scope::Read),
        key("bursty", BURSTY, Scope::Read),
    ];
    cfg.gateway.rate_limit_per_s = 1.0;
    cfg.gateway.rate_limit_burst = 30;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_scopes_limits_and_every_stream_endpoint() {
    let sys = TestSystem::start(
        keyed_config(),
        Roles { gateway: true, ingest: false, inference: false, sink: true },
    )
    .await;
    let a = sys.addr;
    let req = |m: &'static str, p: String, b: Option<String>, k: Option<&'static str>| async move {
        http_full(a, m, &p, b.as_deref(), k).await
    };

    // 401: no key, a wrong key; the challenge names the scheme.
    let (s, head, j) = req("GET", "/v1/streams".into(), None, None).await;
    assert_eq!(s, 401, "{j}");
    assert!(head.to_ascii_lowercase().contains("www-authenticate: bearer"), "{head}");
    assert_eq!(j["error"]["code"], "unauthorized");
    assert_eq!(req("GET", "/v1/streams".into(), None, Some("wrong")).await.0, 401);
    // Public endpoints need no key.
    for p in ["/healthz", "/metrics", "/openapi.json", "/"] {
        assert_eq!(req("GET", p.into(), None, None).await.0, 200, "{p}");
    }
    // 403: a read key cannot change streams.
    let body = serde_json::json!({ "url": "http://127.0.0.1:9/live.m3u8", "name": "gw-one" }).to_string();
    let (s, _, j) = req("POST", "/v1/streams".into(), Some(body.clone()), Some(READER)).await;
    assert_eq!(s, 403, "{j}");
    assert!(j["error"]["message"].as_str().unwrap().contains("read-only"));
    // 201, then 200 for the same spec, 409 for another URL under the same name.
    let (s, _, created) = req("POST", "/v1/streams".into(), Some(body.clone()), Some(ADMIN)).await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(req("POST", "/v1/streams".into(), Some(body), Some(ADMIN)).await.0, 200);
    let other = serde_json::json!({ "url": "http://127.0.0.1:9/other.m3u8", "name": "gw-one" }).to_string();
    let (s, _, j) = req("POST", "/v1/streams".into(), Some(other), Some(ADMIN)).await;
    assert_eq!(s, 409, "{j}");
    assert_eq!(j["error"]["code"], "conflict");
    // 400 and 413.
    assert_eq!(req("POST", "/v1/streams".into(), Some("{".into()), Some(ADMIN)).await.0, 400);
    let big = format!("{{\"url\": \"http://x/{}\"}}", "a".repeat(sys.cfg.gateway.max_body_bytes + 10));
    let (s, _, j) = req("POST", "/v1/streams".into(), Some(big), Some(ADMIN)).await;
    assert_eq!(s, 413, "{j}");
    assert_eq!(j["error"]["code"], "body_too_large");
    // 404s.
    assert_eq!(req("GET", "/v1/streams/nope".into(), None, Some(READER)).await.0, 404);
    assert_eq!(req("POST", "/v1/streams/nope/pause".into(), None, Some(ADMIN)).await.0, 404);
    assert_eq!(req("DELETE", "/v1/streams/nope".into(), None, Some(ADMIN)).await.0, 404);
    assert_eq!(req("GET", "/v1/nothing-here".into(), None, Some(READER)).await.0, 404);
    assert_eq!(req("GET", "/v1/streams/bad%20id".into(), None, Some(READER)).await.0, 400);

    // Pause and resume (admin only), and list filters.
    assert_eq!(req("POST", format!("/v1/streams/{id}/pause"), None, Some(READER)).await.0, 403);
    let (s, _, j) = req("POST", format!("/v1/streams/{id}/pause"), None, Some(ADMIN)).await;
    assert_eq!((s, j["status"].as_str()), (200, Some("paused")), "{j}");
    let (_, _, j) = req("GET", "/v1/streams?status=paused".into(), None, Some(READER)).await;
    assert_eq!(j["streams"].as_array().unwrap().len(), 1, "{j}");
    let (_, _, j) = req("GET", "/v1/streams?name=GW-ONE".into(), None, Some(READER)).await;
    assert_eq!(j["streams"][0]["id"], id.as_str());
    let (_, _, j) = req("GET", "/v1/streams?name=zzz".into(), None, Some(READER)).await;
    assert!(j["streams"].as_array().unwrap().is_empty());
    assert_eq!(req("GET", "/v1/streams?status=sleeping".into(), None, Some(READER)).await.0, 400);
    let (s, _, j) = req("POST", format!("/v1/streams/{id}/resume"), None, Some(ADMIN)).await;
    assert_eq!(s, 200);
    assert_ne!(j["status"], "paused", "{j}");
    let (_, _, j) = req("GET", "/v1/streams?status=paused".into(), None, Some(READER)).await;
    assert!(j["streams"].as_array().unwrap().is_empty());
    // Other read endpoints answer a read key.
    for p in ["/v1/dlq", "/v1/dlq?kind=speech&limit=5", &format!("/v1/streams/{id}/events?limit=5")] {
        assert_eq!(req("GET", p.to_string(), None, Some(READER)).await.0, 200, "{p}");
    }
    assert_eq!(req("GET", "/v1/dlq?limit=0".into(), None, Some(READER)).await.0, 400);
    assert_eq!(req("GET", "/v1/dlq?bogus=1".into(), None, Some(READER)).await.0, 400);
    let sql = serde_json::json!({ "sql": "SELECT 1 AS one", "format": "csv" }).to_string();
    let (s, _, j) = req("POST", "/v1/sql".into(), Some(sql), Some(READER)).await;
    assert_eq!(s, 200);
    assert_eq!(j.as_str().map(str::trim), Some("\"one\"\n1"));
    assert_eq!(req("DELETE", format!("/v1/streams/{id}"), None, Some(READER)).await.0, 403);
    assert_eq!(req("DELETE", format!("/v1/streams/{id}"), None, Some(ADMIN)).await.0, 204);

    // 429 with Retry-After once a key's burst is spent; other keys are unaffected.
    let mut limited = None;
    for i in 0..40 {
        let (s, head, j) = req("GET", "/v1/streams".into(), None, Some(BURSTY)).await;
        if s == 429 {
            limited = Some((i, head, j));
            break;
        }
        assert_eq!(s, 200);
    }
    let (i, head, j) = limited.expect("the burst of 30 ran out");
    assert!(i >= 29, "limited after {i} requests");
    assert_eq!(j["error"]["code"], "rate_limited");
    let retry = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("retry-after:").map(|v| v.trim().parse::<u64>().unwrap())
        })
        .expect("Retry-After header");
    assert!(retry >= 1, "{head}");
    assert_eq!(req("GET", "/v1/streams".into(), None, Some(READER)).await.0, 200);

    // The websocket feed takes the key as a query parameter too.
    let url = format!("ws://{a}/v1/feed");
    assert!(tokio_tungstenite::connect_async(&url).await.is_err(), "the feed needs a key");
    assert!(tokio_tungstenite::connect_async(format!("{url}?access_token={READER}")).await.is_ok());

    // The OpenAPI document is generated from the code and lists every endpoint.
    let (_, _, doc) = req("GET", "/openapi.json".into(), None, None).await;
    for p in [
        "/v1/streams",
        "/v1/streams/{id}",
        "/v1/streams/{id}/pause",
        "/v1/streams/{id}/resume",
        "/v1/streams/{id}/events",
        "/v1/streams/{id}/thumbnail",
        "/v1/feed",
        "/v1/feed/sse",
        "/v1/search",
        "/v1/frames/{id}",
        "/v1/frames/{id}/similar",
        "/v1/frames/{id}/image",
        "/v1/sql",
        "/v1/dlq",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} missing from /openapi.json");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    sys.shutdown().await;
}

/// Publishes `n` transcript events for stream `s`, one every `every`.
async fn publish_events(bus: sightline_actors::Bus, s: &'static str, from: i64, n: i64, every: Duration) {
    for i in from..from + n {
        let mut e = Event::new(EventKind::Transcript, s, i * 100, 1_795_000_000_000 + i, "test@1");
        e.text = format!("line {i}");
        bus.publish(bus.names.event_subject(e.kind, s), &e.id, serde_json::to_vec(&e).unwrap())
            .await
            .unwrap();
        tokio::time::sleep(every).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_resumes_after_a_sequence_with_no_gap_and_no_duplicate() {
    let sys = TestSystem::start(
        test_config(),
        Roles { gateway: true, ingest: false, inference: false, sink: false },
    )
    .await;
    let bus = sys.node.as_ref().unwrap().bus.clone();
    let url = format!("ws://{}/v1/feed?kinds=transcript", sys.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // Events keep flowing the whole time: 120 over ~6 s.
    let producer = tokio::spawn(publish_events(bus, "feedtest", 0, 120, Duration::from_millis(50)));
    let mut first: Vec<FeedItem> = Vec::new();
    while first.len() < 20 {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => first.push(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) => {}
            other => panic!("feed ended early after {} events: {other:?}", first.len()),
        }
    }
    let n = first.last().unwrap().seq;
    drop(ws); // disconnect after sequence N
    // Events published meanwhile are missed live: wait until ten more are in the stream.
    let events = bus_of(&sys).js.get_stream(bus_of(&sys).names.events_stream()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.get_info().await.unwrap().state.last_sequence < n + 10 {
        assert!(tokio::time::Instant::now() < deadline, "no events published after the disconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}&since={n}")).await.unwrap();
    let mut second: Vec<FeedItem> = Vec::new();
    while second.len() < 60 {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => second.push(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) => {}
            other => panic!("feed ended early: {other:?}"),
        }
    }
    assert_eq!(second[0].seq, n + 1, "resume starts right after N");
    assert!(second.windows(2).all(|w| w[1].seq == w[0].seq + 1), "no gap, no duplicate");
    let ids: Vec<&str> = first.iter().chain(&second).map(|f| f.event.id.as_str()).collect();
    let expected: Vec<String> = (0..80).map(|i| format!("feedtest.transcript.{}", i * 100)).collect();
    assert_eq!(
        ids,
        expected.iter().map(String::as_str).collect::<Vec<_>>(),
        "the events in order, once each"
    );

    // Server-sent events resume the same way from Last-Event-ID.
    let mut s = tokio::net::TcpStream::connect(sys.addr).await.unwrap();
    let req = format!(
        "GET /v1/feed/sse?kinds=transcript HTTP/1.0\r\nHost: x\r\nAccept: text/event-stream\r\nLast-Event-ID: {n}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut lines = tokio::io::BufReader::new(s).lines();
    let mut sse_ids = Vec::new();
    while sse_ids.len() < 10 {
        let line =
            tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
        if let Some(id) = line.strip_prefix("id:") {
            sse_ids.push(id.trim().parse::<u64>().unwrap());
        }
        if let Some(data) = line.strip_prefix("data:") {
            let item: FeedItem = serde_json::from_str(data.trim()).unwrap();
            assert_eq!(item.event.stream_id, "feedtest");
        }
    }
    assert_eq!(sse_ids, (n + 1..n + 11).collect::<Vec<_>>());
    producer.abort();
    // Shutting down with a websocket and an SSE client still connected: both feeds end.
    let started = std::time::Instant::now();
    sys.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(9), "open feeds held up the shutdown");
    // Events sent before the shutdown (the producer ran on past the 80 read) may still be
    // buffered ahead of the close frame; the feed must end with it within the 2 s.
    let end = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(_))) => continue,
                other => return other,
            }
        }
    })
    .await;
    match end {
        Ok(Some(Ok(Message::Close(Some(f))))) => assert_eq!(u16::from(f.code), 1001, "{f:?}"),
        other => panic!("expected a close frame, got {other:?}"),
    }
    drop(lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_dashboards_match_the_metrics_and_tables() {
    let sys = TestSystem::start(
        test_config(),
        Roles { gateway: true, ingest: false, inference: false, sink: true },
    )
    .await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/grafana");
    // Names registered with Prometheus (empty families are not exported until first used).
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("telemetry/src/lib.rs"),
    )
    .unwrap();
    let registered: Vec<String> = source
        .split(".register(")
        .skip(1)
        .filter_map(|rest| rest.split('"').nth(1).map(|n| format!("sightline_{n}")))
        .collect();
    assert!(registered.len() > 10, "{registered:?}");
    let store = sys.node.as_ref().unwrap().store.clone();
    let mut checked = 0;
    for file in ["sightline-prometheus.json", "sightline-clickhouse.json"] {
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join(file)).unwrap()).unwrap();
        for panel in doc["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().unwrap() {
                if let Some(expr) = t["expr"].as_str() {
                    // Every sightline_* series a panel reads is one we export.
                    for name in expr
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .filter(|w| w.starts_with("sightline_"))
                    {
                        let base = ["_bucket", "_sum", "_count", "_total"]
                            .iter()
                            .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
                        assert!(
                            registered.iter().any(|r| r == base),
                            "{file}: `{name}` is not a metric we export"
                        );
                        checked += 1;
                    }
                }
                if let Some(sql) = t["rawSql"].as_str() {
                    // Every query runs against the migrated schema (Grafana macros filled in).
                    let sql = sql.replace("sightline.", "");
                    let sql = regex_free_time_filter(&sql);
                    store
                        .client()
                        .query(&format!("SELECT count() FROM ({sql})"))
                        .fetch_one::<u64>()
                        .await
                        .unwrap_or_else(|e| panic!("{file}: {sql}: {e}"));
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 15);
    // The alerting rules read exported series too.
    let alerts = std::fs::read_to_string(root.join("../prometheus/alerts.yml")).unwrap();
    let mut alert_series = 0;
    for line in alerts.lines().filter(|l| l.trim_start().starts_with("expr:")) {
        for name in line
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("sightline_"))
        {
            let base = name.strip_suffix("_total").unwrap_or(name);
            assert!(registered.iter().any(|r| r == base), "alerts.yml: `{name}` is not a metric we export");
            alert_series += 1;
        }
    }
    assert!(alert_series >= 3, "{alerts}");
    sys.shutdown().await;
}

/// Replaces Grafana's `$__timeFilter(col)` with a plain condition.
fn regex_free_time_filter(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(i) = rest.find("$__timeFilter(") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "$__timeFilter(".len()..];
        let close = after.find(')').unwrap();
        out.push_str(&format!("{} > now() - INTERVAL 1 HOUR", &after[..close]));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

fn bus_of(sys: &TestSystem) -> &sightline_actors::Bus {
    &sys.node.as_ref().expect("node").bus
}
