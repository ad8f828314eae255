//! Helpers for the end-to-end tests: a whole Sightline node with its gateway, on the real
//! services that `make test` starts, isolated per test by a unique NATS prefix and ClickHouse
//! database; and a small HTTP client.
#![allow(dead_code)]

use sightline_actors::{Metrics, Node, Roles};
use sightline_settings::Config;
use std::net::SocketAddr;

pub struct TestSystem {
    pub node: Option<Node>,
    pub addr: SocketAddr,
    pub cfg: Config,
    stop: tokio::sync::watch::Sender<bool>,
    gateway: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub fn unique(tag: &str) -> String {
    // Tests of one file run in parallel threads of one process, and two can ask in the same
    // clock tick (seen once: two tests on one NATS prefix and database); the counter separates them.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{tag}{}x{nanos:x}n{n}", std::process::id())
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
    // Test sources are on 127.0.0.1 (ephemeral ports); every other internal address stays
    // refused, and the hostile-source tests use 127.0.0.2 and the special ranges to show it.
    cfg.ingest.allow_hosts = vec!["127.0.0.1".into()];
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
                for space in [sightline_wire::VectorSpace::Text, sightline_wire::VectorSpace::Frames] {
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

/// Deletes a test's JetStream streams and buckets and its ClickHouse database.
pub async fn drop_bus_and_database(
    bus: &sightline_actors::Bus,
    store: &sightline_store::EventStore,
    database: &str,
) {
    bus.destroy().await;
    let _ = store.client().query(&format!("DROP DATABASE IF EXISTS `{database}`")).execute().await;
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

/// Like [`http`], with an optional API key; also returns the response head (status line and
/// headers, one per line).
pub async fn http_full(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> (u16, String, serde_json::Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let mut req = reqwest::Client::new()
        .request(method, format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(body.unwrap_or("").to_string());
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("the gateway answers");
    let status = resp.status().as_u16();
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in resp.headers() {
        head += &format!("{name}: {}\r\n", value.to_str().unwrap_or(""));
    }
    let raw = resp.bytes().await.expect("the body");
    let json = if raw.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&raw)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&raw).into_owned()))
    };
    (status, head, json)
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

/// Waits (up to 60 s) until ClickHouse's `events` table holds at least `expected` rows, then until
/// the ClickHouse sink has nothing left to deliver or acknowledge (so that a late duplicate would
/// already be written): (rows, distinct ids, the ids).
pub async fn settled_events(
    bus: &sightline_actors::Bus,
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
    sink_drained(bus, "sink_clickhouse").await;
    let (rows, distinct) = counts().await.expect("ClickHouse answers");
    let ids = store
        .client()
        .query("SELECT id FROM events")
        .fetch_all::<String>()
        .await
        .expect("ClickHouse answers");
    (rows, distinct, ids.into_iter().collect())
}

/// Waits (up to 90 s: a message a killed worker held comes back after a 60 s ack wait) until
/// the ClickHouse sink's consumer has no message pending and none delivered but unacknowledged.
pub async fn sink_drained(bus: &sightline_actors::Bus, role: &str) {
    consumer_drained(bus, &bus.names.events_stream(), role).await
}

/// Waits (up to 90 s) until the durable consumer `role` of JetStream `stream` has no message
/// pending and none delivered but unacknowledged.
pub async fn consumer_drained(bus: &sightline_actors::Bus, stream: &str, role: &str) {
    let stream = bus.js.get_stream(stream).await.expect("stream");
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer(&bus.names.consumer(role)).await.expect("consumer");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let info = consumer.info().await.expect("consumer info");
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{role} still has work after 90 s: {info:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The stream's view (`GET /v1/streams/{id}`) once it satisfies `ok`, polled until `within`.
pub async fn status_until(
    sys: &TestSystem,
    id: &str,
    within: std::time::Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (_, v) = sys.http("GET", &format!("/v1/streams/{id}"), None).await;
        if ok(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "condition not reached: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Waits until the cluster places a stream on three servers. A cluster whose meta leader is elected
/// may still not count some peer as a place for a stream ("no suitable peers for placement"): on
/// this 2-core machine that lasted past the nodes' 35 s of tries in two CI runs of four, which
/// then never started. Restarting the servers one by one (the same ports and data) makes them
/// announce themselves again.
pub async fn wait_for_placement(nats: &mut sightline_testkit::NatsCluster) {
    use async_nats::jetstream::stream;
    for round in 0..4 {
        let servers: Vec<async_nats::ServerAddr> =
            nats.url().split(',').map(|u| u.parse().expect("a server URL")).collect();
        let client = async_nats::connect(servers).await.expect("connects to the NATS cluster");
        let js = async_nats::jetstream::new(client);
        let probe = stream::Config {
            name: "PLACEMENT_PROBE".into(),
            subjects: vec!["placement.probe".into()],
            num_replicas: 3,
            ..Default::default()
        };
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_secs(20) {
            match js.create_stream(probe.clone()).await {
                Ok(_) => {
                    js.delete_stream("PLACEMENT_PROBE").await.expect("the probe stream is deleted");
                    return;
                }
                Err(e) => eprintln!("cluster test: no three-replica stream yet ({e}); round {round}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        for s in &mut nats.servers {
            s.restart().await.expect("a NATS server restarts");
        }
        let t0 = std::time::Instant::now();
        while !futures::future::join_all(nats.servers.iter().map(|s| s.healthy())).await.iter().all(|&h| h) {
            assert!(t0.elapsed() < std::time::Duration::from_secs(30), "the NATS cluster did not come back");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    panic!("the NATS cluster never placed a three-replica stream");
}
