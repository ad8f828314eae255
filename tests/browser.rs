//! The dashboard in a real browser: Debian's headless Chromium, driven over WebDriver
//! (chromedriver), against a running system with a live stream. It must show the stream with its
//! picture, receive live events, run a search, and jump from a result to the stream's timeline.
//! The final screenshot is written to `.data/reports/dashboard.png`.

mod common;

use base64::Engine;
use common::{TestSystem, free_port, test_config};
use serde_json::{Value, json};
use sightline_actors::Roles;
use sightline_settings::ApiKeyConfig;
use sightline_testkit::{ClipSpec, LiveHls};
use std::net::SocketAddr;
use std::time::Duration;

const KEY: &str = "browser-admin-secret";

/// One WebDriver call.
async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let mut req = reqwest::Client::new().request(method, format!("http://{addr}{path}"));
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let resp = req.send().await.expect("chromedriver answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

struct Browser {
    driver: std::process::Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    async fn start() -> Self {
        let bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver is not installed (run `make setup`)");
        let port = free_port();
        let driver = std::process::Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        for _ in 0..100 {
            if sightline_testkit::listening(port).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]
        }}}});
        let (status, j) = http(addr, "POST", "/session", Some(&caps.to_string())).await;
        assert_eq!(status, 200, "cannot start Chromium: {j}");
        let session = j["value"]["sessionId"].as_str().unwrap().to_string();
        Browser { driver, addr, session }
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let body = body.to_string();
        let (status, j) = http(
            self.addr,
            method,
            &format!("/session/{}{path}", self.session),
            (method == "POST").then_some(body.as_str()),
        )
        .await;
        assert_eq!(status, 200, "{path}: {j}");
        j["value"].clone()
    }

    async fn script(&self, js: &str) -> Value {
        self.cmd("POST", "/execute/sync", json!({"script": js, "args": []})).await
    }

    /// Evaluates `js` until it returns true, or fails after `secs` with `what`.
    async fn wait_for(&self, js: &str, secs: u64, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if self.script(js).await == Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let text = self.script("return document.body.innerText").await;
                panic!(
                    "{what} did not happen within {secs} s; the page shows:\n{}",
                    text.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_streams_events_and_search_in_chromium() {
    let mut cfg = test_config();
    cfg.gateway.api_keys = vec![ApiKeyConfig {
        name: "browser".into(),
        sha256: sightline_gateway::sha256_hex(KEY),
        scope: sightline_settings::Scope::Admin,
    }];
    cfg.ocr.workers = 1; // the timeline shows on-screen text too
    cfg.scenes.labels = true;
    let sys = TestSystem::start(cfg, Roles::ALL).await;
    let clip = ClipSpec::standard().render(&std::env::temp_dir().join("sightline-test-clips")).await.unwrap();
    let live =
        LiveHls::start(&clip, &std::env::temp_dir().join(common::unique("sl-browser")), 0).await.unwrap();
    let body = json!({ "url": live.url, "name": "newsroom" }).to_string();
    let (status, created, _) = {
        let (s, _, j) = common::http_full(sys.addr, "POST", "/v1/streams", Some(&body), Some(KEY)).await;
        (s, j, ())
    };
    assert_eq!(status, 201, "{created}");

    let b = Browser::start().await;
    b.cmd("POST", "/url", json!({"url": format!("http://{}/?key={KEY}", sys.addr)})).await;
    b.wait_for(
        "return [...document.querySelectorAll('.card')].some(c => c.innerText.includes('newsroom') && c.innerText.includes('running'))",
        30,
        "the stream card showing `newsroom` running",
    )
    .await;
    // The node panel (membership): this one node, ingesting the stream.
    b.wait_for(
        "return [...document.querySelectorAll('#nodes tr')].some(r => r.innerText.includes('ingest') && r.innerText.includes('1/'))",
        15,
        "the node row ingesting 1 stream",
    )
    .await;
    b.wait_for("return document.querySelectorAll('#feed .ev').length > 0", 40, "a live event").await;
    b.wait_for(
        "return [...document.querySelectorAll('#feed .ev.transcript')].some(e => /searchable/i.test(e.innerText))",
        60,
        "the transcript line `live video becomes searchable`",
    )
    .await;
    b.wait_for(
        "const i = document.querySelector('.card img'); return !!i && !i.hidden && i.naturalWidth === 96",
        30,
        "the stream's keyframe picture",
    )
    .await;

    // Search, resubmitting until the line is indexed, then jump to the moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        b.script("document.getElementById('q').value = 'live video becomes searchable'; document.getElementById('search').requestSubmit(); return true").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let found = b.script("return [...document.querySelectorAll('#results .hit')].some(h => /searchable/i.test(h.innerText))").await;
        if found == Value::Bool(true) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no search result for the spoken sentence");
    }
    let first = b.script("return document.querySelector('#results .hit').innerText").await;
    assert!(first.as_str().unwrap().contains("newsroom"), "{first}");
    b.script("document.querySelector('#results .hit').click(); return true").await;
    b.wait_for(
        "return !document.getElementById('timeline-box').hidden && /searchable/i.test((document.querySelector('#timeline-lines .focused') || {}).innerText || '')",
        15,
        "the timeline focused on the found line",
    )
    .await;
    let marks = b.script("return document.querySelectorAll('#timeline .mark').length").await;
    assert!(marks.as_u64().unwrap() >= 1, "scene cuts on the timeline");

    let png = b.cmd("GET", "/screenshot", Value::Null).await;
    let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".data/reports");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("dashboard.png"), &bytes).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"));
    let _ = http(b.addr, "DELETE", &format!("/session/{}", b.session), None).await;
    drop(b);
    drop(live);
    sys.shutdown().await;
}
