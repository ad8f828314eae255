//! Helpers for the end-to-end tests: a whole Sightline node with its gateway, on the real
//! services that `make test` starts, isolated per test by a unique NATS prefix and ClickHouse
//! database; and a small HTTP client.
#![allow(dead_code)]

use sightline_actors::{Metrics, Node, Roles};
use sightline_settings::Config;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct TestSystem {
    pub node: Option<Node>,
    pub addr: SocketAddr,
    pub cfg: Config,
    stop: tokio::sync::watch::Sender<bool>,
    gateway: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{tag}{}x{nanos:x}", std::process::id())
}

pub fn test_config() -> Config {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cfg = Config::load(Some(&root.join("config/sightline.toml"))).expect("config loads");
    let id = unique("t");
    cfg.nats.prefix = id.to_uppercase();
    cfg.clickhouse.database = format!("sightline_{id}");
    cfg.clickhouse.migrations_dir = root.join("config/migrations");
    cfg.gateway.dashboard_dir = root.join("dashboards/web");
    cfg.ingest.stall_timeout_s = 8;
    // Small byte bounds: JetStream reserves them against its storage limit for every test prefix.
    cfg.nats.work_max_bytes = 32 << 20;
    cfg.nats.events_max_bytes = 32 << 20;
    // Test sources are on loopback.
    cfg.ingest.allow_private_hosts = true;
    // OCR and image labels run in the tests that check them (search, browser): elsewhere their CPU
    // would only slow the timing-sensitive tests on a small test machine.
    cfg.ocr.workers = 0;
    cfg.scenes.labels = false;
    cfg
}

impl TestSystem {
    pub async fn start(cfg: Config, roles: Roles) -> Self {
        // `RUST_LOG=sightline=debug cargo test …` shows the system's logs beside a test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let metrics = Metrics::new();
        let node = Node::start(&cfg, roles, metrics.clone())
            .await
            .expect("node starts (are the services up? `make services`)");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = sightline_gateway::AppState::new(
            &cfg,
            node.bus.clone(),
            node.registry.clone(),
            node.store.clone(),
            metrics,
        )
        .expect("gateway state");
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let gateway = tokio::spawn(sightline_gateway::serve(listener, state, async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        Self { node: Some(node), addr, cfg, stop, gateway }
    }

    pub async fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        http(self.addr, method, path, body).await
    }

    /// Stops this node and gateway but keeps the bus and the store, as a process restart would.
    pub async fn restart(mut self, roles: Roles) -> Self {
        let _ = self.stop.send(true);
        let _ = (&mut self.gateway).await;
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
        TestSystem::start(self.cfg.clone(), roles).await
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.gateway).await;
        if let Some(node) = self.node.take() {
            let bus = node.bus.clone();
            let store = node.store.clone();
            node.shutdown().await;
            if let Ok(v) = sightline_store::VectorStore::connect(&self.cfg.redis.url).await {
                for space in ["text", "frames"] {
                    let _ = v.drop_set(&bus.names.vector_set(space)).await;
                }
            }
            bus.destroy().await;
            let _ = store
                .client()
                .query(&format!("DROP DATABASE IF EXISTS `{}`", self.cfg.clickhouse.database))
                .execute()
                .await;
        }
    }
}

/// A minimal HTTP/1.1 request; returns the status and the body parsed as JSON (Null if empty).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let (status, _, json) = http_full(addr, method, path, body, None).await;
    (status, json)
}

/// Like [`http`], with an optional API key; also returns the response head.
pub async fn http_full(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> (u16, String, serde_json::Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect to gateway");
    let body = body.unwrap_or("");
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, raw) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let raw = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(raw)
    } else {
        raw.to_string()
    };
    let json = if raw.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&raw).unwrap_or(serde_json::Value::String(raw))
    };
    (status, head.to_string(), json)
}

fn dechunk(mut raw: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, rest)) = raw.split_once("\r\n") else { break };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        raw = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Lower-case words of a text, punctuation stripped.
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| w.chars().filter(|c| c.is_alphanumeric() || *c == '\'').collect::<String>().to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// A free loopback port (bound, then released).
/// A loopback port for a private server (see `sightline_testkit::pick_port` for why not port 0).
pub fn free_port() -> u16 {
    sightline_testkit::pick_port().expect("a free loopback port")
}

/// A private service process for outage tests, killed (SIGKILL) when dropped.
pub struct Service {
    pub child: Option<tokio::process::Child>,
    pub port: u16,
    pub dir: std::path::PathBuf,
    kind: &'static str,
}

impl Service {
    /// The bundled ClickHouse engine (chDB over HTTP) on its own port and data folder.
    pub async fn clickhouse(port: u16, dir: &std::path::Path) -> Self {
        let mut s = Service { child: None, port, dir: dir.to_path_buf(), kind: "clickhouse" };
        s.start().await;
        s
    }

    /// Redis 8 on its own port, persisting every write (appendfsync always) so a kill loses
    /// nothing it acknowledged.
    pub async fn redis(port: u16, dir: &std::path::Path) -> Self {
        let mut s = Service { child: None, port, dir: dir.to_path_buf(), kind: "redis" };
        s.start().await;
        s
    }

    pub async fn start(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut cmd = match self.kind {
            "clickhouse" => {
                let py =
                    std::env::var("SIGHTLINE_PYTHON").expect("SIGHTLINE_PYTHON (run through `make test`)");
                let mut c = tokio::process::Command::new(py);
                c.arg(root.join("scripts/clickhouse-http.py"))
                    .arg("--data")
                    .arg(&self.dir)
                    .arg("--port")
                    .arg(self.port.to_string());
                c
            }
            _ => {
                let mut c = tokio::process::Command::new("redis-server");
                c.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
                    .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                    .arg(&self.dir);
                c
            }
        };
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).kill_on_drop(true);
        let child = self.child.insert(cmd.spawn().expect("service starts"));
        for _ in 0..400 {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{} on port {} exited at start: {status}", self.kind, self.port);
            }
            if sightline_testkit::listening(self.port).await {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{} did not start on port {} within 20 s", self.kind, self.port);
    }

    /// SIGKILL, as a crash or a pulled plug.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }
}

/// Reads every message of a JetStream stream from the start: (subject, payload).
pub async fn read_stream(bus: &sightline_actors::Bus, stream: &str) -> Vec<(String, Vec<u8>)> {
    use futures::StreamExt;
    let s = bus.js.get_stream(stream).await.expect("stream exists");
    let consumer = s
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("ordered consumer");
    // Every message the stream holds now: read until that many have come (an ordered consumer
    // may report a transient error and carry on), with a deadline.
    let want = s.cached_info().state.messages as usize;
    let mut msgs = consumer.messages().await.expect("messages");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while out.len() < want {
        match tokio::time::timeout_at(deadline, msgs.next()).await {
            Ok(Some(Ok(m))) => out.push((m.subject.to_string(), m.payload.to_vec())),
            Ok(Some(Err(e))) => eprintln!("read_stream: {e}; carrying on"),
            Ok(None) | Err(_) => break,
        }
    }
    assert_eq!(out.len(), want, "read {} of the {want} messages of {stream}", out.len());
    out
}

/// Waits (up to 60 s) until ClickHouse's `events` table holds at least `expected` rows, then 2 s
/// more so that a late duplicate would show: (rows, distinct ids, the ids).
pub async fn settled_events(
    store: &sightline_store::EventStore,
    expected: usize,
) -> (u64, u64, std::collections::BTreeSet<String>) {
    let counts = async || {
        store.client().query("SELECT count(), uniqExact(id) FROM events").fetch_one::<(u64, u64)>().await
    };
    for _ in 0..120 {
        if counts().await.is_ok_and(|c| c.0 >= expected as u64) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (rows, distinct) = counts().await.expect("ClickHouse answers");
    let ids = store
        .client()
        .query("SELECT id FROM events")
        .fetch_all::<String>()
        .await
        .expect("ClickHouse answers");
    (rows, distinct, ids.into_iter().collect())
}
