//! Credentials in URLs never leave: a stream registered with a password and a token in its URL is
//! shown redacted to every key (list, one stream, its last error, a 409 message), stored redacted
//! in ClickHouse's `streams`, and read whole only by an admin key at `/v1/streams/{id}/source`;
//! `/readyz` does not print the Redis password.

mod common;

use common::{TestSystem, http_full, test_config};
use sightline_actors::Roles;
use sightline_settings::{ApiKeyConfig, Scope};
use std::time::Duration;

const ADMIN: &str = "secrets-admin-key";
const READER: &str = "secrets-read-key";
const URL: &str = "http://alice:s3cret-pw@127.0.0.1:9/live.m3u8?token=tok-123456&quality=hd";
const SHOWN: &str = "http://***@127.0.0.1:9/live.m3u8?token=***&quality=***";

fn assert_clean(what: &str, text: &str) {
    for secret in ["s3cret-pw", "tok-123456", "alice"] {
        assert!(!text.contains(secret), "{what} shows `{secret}`: {text}");
    }
}

fn keyed() -> sightline_settings::Config {
    let mut cfg = test_config();
    let key = |name: &str, secret: &str, scope| ApiKeyConfig {
        name: name.into(),
        sha256: sightline_gateway::sha256_hex(secret),
        scope,
    };
    cfg.gateway.api_keys = vec![key("ops", ADMIN, Scope::Admin), key("viewer", READER, Scope::Read)];
    cfg.sink.status_interval_s = 1;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_credentials_are_shown_redacted_and_read_whole_only_by_admins() {
    let sys =
        TestSystem::start(keyed(), Roles { gateway: true, ingest: true, inference: false, sink: true }).await;
    let call = |method: &'static str, path: String, body: Option<String>, key: &'static str| {
        let addr = sys.addr;
        async move { http_full(addr, method, &path, body.as_deref(), Some(key)).await }
    };
    let body = serde_json::json!({ "url": URL, "name": "cam" }).to_string();
    let (status, _, created) = call("POST", "/v1/streams".into(), Some(body), ADMIN).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["url"], SHOWN);
    assert_clean("the created stream", &created.to_string());
    let id = created["id"].as_str().unwrap().to_string();

    // Every key sees the redacted URL, in the list and alone; the source unreachable, its error too.
    let (_, _, list) = call("GET", "/v1/streams".into(), None, READER).await;
    assert_eq!(list["streams"][0]["url"], SHOWN, "{list}");
    assert_clean("the stream list", &list.to_string());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let failing = loop {
        let (_, _, v) = call("GET", format!("/v1/streams/{id}"), None, READER).await;
        if v["detail"]["last_error"].is_string() {
            break v;
        }
        assert!(tokio::time::Instant::now() < deadline, "the source never failed: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(failing["url"], SHOWN);
    assert_clean("the stream with its last error", &failing.to_string());

    // The whole URL: admin keys only, at one explicit endpoint.
    let (status, _, refused) = call("GET", format!("/v1/streams/{id}/source"), None, READER).await;
    assert_eq!(status, 403, "{refused}");
    let (status, _, source) = call("GET", format!("/v1/streams/{id}/source"), None, ADMIN).await;
    assert_eq!((status, source["url"].as_str()), (200, Some(URL)), "{source}");

    // A conflicting registration names the existing stream's URL, redacted.
    let other = serde_json::json!({ "url": "http://127.0.0.1:9/other.m3u8", "name": "cam" }).to_string();
    let (status, _, conflict) = call("POST", "/v1/streams".into(), Some(other), ADMIN).await;
    assert_eq!(status, 409, "{conflict}");
    assert!(conflict.to_string().contains(SHOWN), "{conflict}");
    assert_clean("the 409 answer", &conflict.to_string());

    // ClickHouse's `streams` (readable over /v1/sql) holds it redacted.
    let store = sys.node.as_ref().unwrap().store.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let stored = loop {
        let rows: Vec<String> = store
            .client()
            .query("SELECT url FROM streams WHERE id = ?")
            .bind(&id)
            .fetch_all()
            .await
            .unwrap_or_default();
        if let Some(url) = rows.into_iter().next() {
            break url;
        }
        assert!(tokio::time::Instant::now() < deadline, "no snapshot of the stream in ClickHouse");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(stored, SHOWN);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_does_not_print_the_redis_password() {
    let mut cfg = test_config();
    // Nothing listens there: Redis is reported down, with the reason, without the password.
    cfg.redis.url = "redis://:hunter2-pw@127.0.0.1:1".into();
    let sys =
        TestSystem::start(cfg, Roles { gateway: true, ingest: false, inference: false, sink: false }).await;
    let (status, ready) = sys.http("GET", "/readyz", None).await;
    assert_eq!(status, 503, "{ready}");
    assert!(ready["redis"].is_string() && ready["redis"] != "ok", "{ready}");
    assert!(!ready.to_string().contains("hunter2-pw"), "{ready}");
    sys.shutdown().await;
}
