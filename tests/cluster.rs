//! Scale-out on a three-server NATS JetStream cluster (R3 streams and buckets), with Sightline
//! processes in separate roles: a gateway + sink node, an inference node and two ingest nodes.
//! One run, in order: the two ingest nodes split six live streams; one is killed with SIGKILL and
//! its streams move to the other and continue (the media clock moves on, no frame time is used
//! twice); a new node joins and takes its share; a node stopped (SIGSTOP) past its lease loses its
//! streams and, resumed, publishes nothing under its old leases (fenced); a NATS server of the
//! three is killed mid-stream and nothing stops; a node is drained over the API. At the end
//! ClickHouse holds every event of the events stream exactly once and the live feed showed no id
//! twice. Times measured on the way are printed (`--nocapture`).

mod common;

use common::{free_port, test_config, unique};
use futures::StreamExt;
use sightline_testkit::{ClipSpec, LiveHls, NatsCluster};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Proc {
    child: std::process::Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {sig} failed");
    }
}

struct Setup {
    cfg: sightline_settings::Config,
    nats_url: String,
    gateway: SocketAddr,
    logs: PathBuf,
}

impl Setup {
    fn spawn(&self, id: &str, roles: &str) -> Proc {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let log = std::fs::File::create(self.logs.join(format!("{id}.log"))).unwrap();
        let cfg = &self.cfg;
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sightline"))
            .current_dir(root)
            .args(["run", "--roles", roles])
            .env("SIGHTLINE_CONFIG", root.join("config/sightline.toml"))
            .env("SIGHTLINE_NATS__URL", &self.nats_url)
            .env("SIGHTLINE_NATS__REPLICAS", "3")
            .env("SIGHTLINE_NATS__PREFIX", &cfg.nats.prefix)
            .env("SIGHTLINE_NATS__WORK_MAX_BYTES", (64 << 20).to_string())
            .env("SIGHTLINE_NATS__EVENTS_MAX_BYTES", (32 << 20).to_string())
            .env("SIGHTLINE_CLICKHOUSE__DATABASE", &cfg.clickhouse.database)
            .env("SIGHTLINE_GATEWAY__LISTEN", self.gateway.to_string())
            .env("SIGHTLINE_INGEST__ALLOW_HOSTS", r#"["127.0.0.1"]"#)
            .env("SIGHTLINE_INGEST__ANALYSIS_WIDTH", "160")
            .env("SIGHTLINE_INGEST__ANALYSIS_HEIGHT", "90")
            .env("SIGHTLINE_CLUSTER__NODE_ID", id)
            // Scene cuts and state changes make the events; the models these tests do not look
            // at stay off on a two-core machine.
            .env("SIGHTLINE_SPEECH__WORKERS", "0")
            .env("SIGHTLINE_OCR__WORKERS", "0")
            .env("SIGHTLINE_SCENES__LABELS", "false")
            // Sampling stays at 2 fps (no backpressure halving), so a gap in a stream's frame
            // times is media lost, not sampled more sparsely on purpose.
            .env("SIGHTLINE_INGEST__MAX_RATE_HALVINGS", "0")
            .env("RUST_LOG", "info,async_nats=warn,ort=warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sightline starts");
        Proc { child }
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        common::http(self.gateway, "GET", path, None).await.1
    }

    /// Each stream's (owner, state, media_ms, updated_ms, handover gap).
    async fn streams(&self, ids: &[String]) -> BTreeMap<String, (String, String, i64, i64, i64)> {
        let mut out = BTreeMap::new();
        for id in ids {
            let v = self.get(&format!("/v1/streams/{id}")).await;
            let d = &v["detail"];
            out.insert(
                id.clone(),
                (
                    d["owner"].as_str().unwrap_or("").to_string(),
                    v["status"].as_str().unwrap_or("").to_string(),
                    d["media_ms"].as_i64().unwrap_or(0),
                    d["updated_ms"].as_i64().unwrap_or(0),
                    d["handover_gap_ms"].as_i64().unwrap_or(0),
                ),
            );
        }
        out
    }

    /// Live nodes: id → (streams, draining).
    async fn nodes(&self) -> BTreeMap<String, (Vec<String>, bool)> {
        let v = self.get("/v1/nodes").await;
        v["nodes"]
            .as_array()
            .map(|ns| {
                ns.iter()
                    .map(|n| {
                        let streams = n["streams"]
                            .as_array()
                            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                            .unwrap_or_default();
                        (n["id"].as_str().unwrap_or("").to_string(), (streams, n["draining"] == true))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Polls every 200 ms until every stream is running on one of `owners`, recently reported
    /// (after `since`) and `extra` holds; returns the view and how long it took.
    async fn until_running(
        &self,
        ids: &[String],
        owners: &[&str],
        since_ms: i64,
        within: Duration,
        extra: impl Fn(&BTreeMap<String, (String, String, i64, i64, i64)>) -> bool,
    ) -> (BTreeMap<String, (String, String, i64, i64, i64)>, Duration) {
        let t0 = Instant::now();
        loop {
            let s = self.streams(ids).await;
            let ok = s.values().all(|(owner, state, _, updated, _)| {
                owners.contains(&owner.as_str())
                    && (state == "running" || state == "degraded")
                    && *updated > since_ms
            });
            if ok && extra(&s) {
                return (s, t0.elapsed());
            }
            assert!(t0.elapsed() < within, "streams not running on {owners:?} within {within:?}: {s:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn per_owner(s: &BTreeMap<String, (String, String, i64, i64, i64)>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (owner, ..) in s.values() {
        *m.entry(owner.clone()).or_default() += 1;
    }
    m
}

/// Frames of `stream` in the frames stream: (lease token, pts, published ms), in stream order.
async fn frames_of(bus: &sightline_actors::Bus, stream: &str) -> Vec<(u64, i64, i64)> {
    // Tried a few times: while a NATS server is down the stream's leader may be being elected.
    let mut tries = 0;
    let consumer = loop {
        tries += 1;
        let made = async {
            let s = bus.js.get_stream(bus.names.frames_stream()).await.ok()?;
            s.create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                filter_subject: bus.names.frames_subject(stream),
                deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .ok()
        };
        match made.await {
            Some(c) => break c,
            None if tries < 10 => tokio::time::sleep(Duration::from_secs(1)).await,
            None => panic!("cannot read the frames of {stream}"),
        }
    };
    let want = consumer.cached_info().num_pending as usize;
    let mut msgs = consumer.messages().await.expect("messages");
    let mut out = Vec::new();
    while out.len() < want {
        match tokio::time::timeout(Duration::from_secs(10), msgs.next()).await {
            Ok(Some(Ok(m))) => {
                let (meta, _) = sightline_wire::decode_frame(&m.payload).expect("a frame");
                let published =
                    m.info().map(|i| (i.published.unix_timestamp_nanos() / 1_000_000) as i64).unwrap();
                out.push((meta.lease, meta.pts_ms, published));
            }
            Ok(Some(Err(_))) => continue,
            _ => break,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_split_streams_fail_over_fence_and_drain_without_loss_or_duplicates() {
    let base = std::env::temp_dir().join(unique("sl-cluster"));
    let logs = base.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut nats = NatsCluster::start(&base.join("nats"), 3).await.expect("NATS cluster starts");
    common::wait_for_placement(&mut nats).await;
    let mut cfg = test_config();
    cfg.nats.url = nats.url();
    cfg.nats.replicas = 3;
    let gateway: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let setup = Setup { cfg: cfg.clone(), nats_url: nats.url(), gateway, logs: logs.clone() };
    eprintln!("cluster test: logs in {}", logs.display());

    let _edge = setup.spawn("edge", "gateway,sink");
    let _inference = setup.spawn("inference", "inference");
    let mut a = Some(setup.spawn("ingest-a", "ingest"));
    let b = setup.spawn("ingest-b", "ingest");
    let t0 = Instant::now();
    while !sightline_testkit::listening(gateway.port()).await {
        assert!(t0.elapsed() < Duration::from_secs(60), "the gateway did not start; see {}", logs.display());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    loop {
        let n = setup.nodes().await;
        if n.contains_key("ingest-a") && n.contains_key("ingest-b") && n.contains_key("edge") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "nodes did not announce themselves: {n:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let bus = sightline_actors::Bus::connect(&cfg.nats).await.expect("bus");

    // The live feed, read through the whole run.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{gateway}/v1/feed")).await.expect("feed connects");
    let feed = tokio::spawn(async move {
        let mut ids = Vec::new();
        while let Some(Ok(m)) = ws.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = m
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&t)
                && let Some(id) = v["id"].as_str()
            {
                ids.push(id.to_string());
            }
        }
        ids
    });

    // 1. Six live streams split three and three.
    let clip = ClipSpec::standard()
        .at_size(320, 180)
        .render(&std::env::temp_dir().join("sightline-test-clips"))
        .await
        .unwrap();
    let mut sources = Vec::new();
    let mut ids = Vec::new();
    for i in 0..6 {
        let live = LiveHls::start(&clip, &base.join(format!("hls{i}")), 0).await.unwrap();
        let body = serde_json::json!({ "url": live.url, "name": format!("cluster-{i}") }).to_string();
        let (status, created) = common::http(gateway, "POST", "/v1/streams", Some(&body)).await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().unwrap().to_string());
        sources.push(live);
    }
    let (view, took) = setup
        .until_running(&ids, &["ingest-a", "ingest-b"], 0, Duration::from_secs(90), |s| {
            per_owner(s).values().all(|&n| n == 3)
        })
        .await;
    eprintln!("cluster: 6 streams split 3/3 and running after {took:?}");
    let nodes = setup.nodes().await;
    assert_eq!((nodes["ingest-a"].0.len(), nodes["ingest-b"].0.len()), (3, 3), "{nodes:?}");
    let on_a: Vec<String> = view.iter().filter(|(_, v)| v.0 == "ingest-a").map(|(k, _)| k.clone()).collect();

    // 2. SIGKILL ingest-a: its streams continue on ingest-b, the media clock moving on.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = setup.streams(&ids).await;
    let killed_ms = sightline_wire::now_ms();
    drop(a.take());
    let (after, failover) = setup
        .until_running(&ids, &["ingest-b"], killed_ms, Duration::from_secs(60), |s| {
            on_a.iter().all(|id| s[id].2 > before[id].2)
        })
        .await;
    let mut gaps = Vec::new();
    for id in &on_a {
        let frames = frames_of(&bus, id).await;
        let tokens: BTreeSet<u64> = frames.iter().map(|f| f.0).collect();
        assert!(tokens.len() >= 2, "{id}: frames under the old and the new lease: {tokens:?}");
        let new = *tokens.last().unwrap();
        let old_max = frames.iter().filter(|f| f.0 != new).map(|f| f.1).max().unwrap();
        let new_min = frames.iter().filter(|f| f.0 == new).map(|f| f.1).min().unwrap();
        assert!(new_min > old_max, "{id}: a frame time used twice ({new_min} ≤ {old_max})");
        let reported = after[id].4;
        assert!(reported > 0, "{id}: the handover gap is reported");
        gaps.push((new_min - old_max, reported));
    }
    eprintln!(
        "cluster: SIGKILL failover: all streams running on ingest-b {failover:?} after the kill; media gaps (measured, reported) ms: {gaps:?}"
    );

    // 3. A new node joins and takes its share, one stream at a time.
    let c = setup.spawn("ingest-c", "ingest");
    let joined_ms = sightline_wire::now_ms();
    let (_, took) = setup
        .until_running(&ids, &["ingest-b", "ingest-c"], joined_ms, Duration::from_secs(90), |s| {
            per_owner(s).get("ingest-c") == Some(&3)
        })
        .await;
    eprintln!("cluster: ingest-c joined and holds 3 streams after {took:?}");

    // 4. SIGSTOP ingest-b past its leases: ingest-c takes over; resumed, b publishes nothing.
    let on_b: Vec<String> =
        setup.streams(&ids).await.into_iter().filter(|(_, v)| v.0 == "ingest-b").map(|(k, _)| k).collect();
    let mut old_tokens = HashMap::new();
    for id in &on_b {
        old_tokens.insert(id.clone(), frames_of(&bus, id).await.last().map(|f| f.0).unwrap_or(0));
    }
    b.signal("-STOP");
    let stopped_ms = sightline_wire::now_ms();
    let (_, took) =
        setup.until_running(&ids, &["ingest-c"], stopped_ms, Duration::from_secs(60), |_| true).await;
    eprintln!("cluster: SIGSTOP ingest-b: its streams run on ingest-c {took:?} later");
    let resumed_ms = sightline_wire::now_ms();
    b.signal("-CONT");
    tokio::time::sleep(Duration::from_secs(5)).await;
    for id in &on_b {
        let stale: Vec<_> = frames_of(&bus, id)
            .await
            .into_iter()
            .filter(|f| f.0 == old_tokens[id] && f.2 >= resumed_ms)
            .collect();
        assert!(stale.is_empty(), "{id}: ingest-b published under its lost lease after resuming: {stale:?}");
    }
    let view = setup.streams(&ids).await;
    for id in &on_b {
        assert_ne!(view[id].0, "ingest-b", "{id}: the resumed node did not take the stream back by force");
    }

    // The resumed node takes its share back by rebalancing (one stream at a time).
    let since = sightline_wire::now_ms();
    let (_, took) = setup
        .until_running(&ids, &["ingest-b", "ingest-c"], since, Duration::from_secs(90), |s| {
            per_owner(s).values().all(|&n| n == 3)
        })
        .await;
    eprintln!("cluster: rebalanced 3/3 again {took:?} after ingest-b resumed");

    // 5. One NATS server of three killed mid-stream: nothing stops, nothing is lost. Streams
    // whose leader was on it are unavailable until the other two elect a new one (seconds):
    // publishers wait with their media queued, owners renew as soon as the leases bucket
    // answers, and no stream changes hands.
    let store = sightline_store::EventStore::new(&cfg.clickhouse);
    let rows =
        async || store.client().query("SELECT count() FROM events").fetch_one::<u64>().await.unwrap_or(0);
    let rows_before = rows().await;
    let owners_before: BTreeMap<String, String> =
        setup.streams(&ids).await.into_iter().map(|(k, v)| (k, v.0)).collect();
    // The hard case: the server leading the leases bucket (every lease waits for the election).
    let leader = {
        let mut kv =
            bus.js.get_stream(format!("KV_{}", bus.names.leases_bucket())).await.expect("leases bucket");
        let info = kv.info().await.expect("stream info");
        info.cluster.as_ref().and_then(|c| c.leader.clone()).expect("a leader")
    };
    let lost = nats.servers.iter().position(|s| s.name == leader).expect("the leader is one of ours");
    nats.servers[lost].kill().await;
    let killed_ms = sightline_wire::now_ms();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let (view, _) = setup
        .until_running(&ids, &["ingest-b", "ingest-c"], killed_ms + 10_000, Duration::from_secs(30), |_| true)
        .await;
    let owners_after: BTreeMap<String, String> = view.into_iter().map(|(k, v)| (k, v.0)).collect();
    assert_eq!(owners_after, owners_before, "no stream changed hands while a NATS server was down");
    // Media waited in the streams' queues while the leases bucket elected its leader (seconds):
    // events follow once it did.
    let t0 = Instant::now();
    let mut rows_after = rows().await;
    while rows_after <= rows_before {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no event reached ClickHouse after the server was lost"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        rows_after = rows().await;
    }
    nats.servers[lost].restart().await.unwrap();
    let t0 = Instant::now();
    while !(nats.servers[lost].healthy().await && setup.nodes().await.len() == 4) {
        assert!(t0.elapsed() < Duration::from_secs(60), "the NATS server did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut worst_gap, mut paused) = (0, 0);
    for id in &ids {
        // The owner's frames around the kill (its lease did not change: a hand-over just before
        // would show its own, reported, media-clock gap).
        let frames = frames_of(&bus, id).await;
        let token = frames.last().map(|f| f.0).unwrap_or(0);
        let mine: Vec<&(u64, i64, i64)> =
            frames.iter().filter(|f| f.0 == token && f.2 >= killed_ms - 5000).collect();
        paused = paused.max(mine.windows(2).map(|w| w[1].2 - w[0].2).max().unwrap_or(0));
        let around: Vec<i64> = mine.iter().map(|f| f.1).collect();
        let gap = around.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        assert!(around.len() > 10, "{id}: frames kept coming ({} since the kill)", around.len());
        assert!(gap <= 1500, "{id}: {gap} ms of media lost while a NATS server was down");
        worst_gap = worst_gap.max(gap);
    }
    eprintln!(
        "cluster: NATS server {leader} (leading the leases bucket) down: no stream moved, largest gap between a stream's frame times {worst_gap} ms, publishing paused up to {paused} ms, rows {rows_before} → {rows_after}"
    );

    // 6. Drain ingest-c over the API: its streams go to ingest-b.
    let (status, body) = common::http(gateway, "POST", "/v1/nodes/ingest-c/drain", None).await;
    assert_eq!(status, 202, "{body}");
    let drained_ms = sightline_wire::now_ms();
    let (_, took) =
        setup.until_running(&ids, &["ingest-b"], drained_ms, Duration::from_secs(60), |_| true).await;
    let nodes = setup.nodes().await;
    assert!(nodes["ingest-c"].1 && nodes["ingest-c"].0.is_empty(), "{nodes:?}");
    eprintln!("cluster: drained ingest-c: its streams run on ingest-b {took:?} later");
    let (status, _) = common::http(gateway, "POST", "/v1/nodes/no-such-node/drain", None).await;
    assert_eq!(status, 404);

    // 6b. A node joins, takes its share, and stopped with SIGTERM hands its streams over before
    // it exits (its leases released, not left to lapse), and leaves the membership.
    let mut d = setup.spawn("ingest-d", "ingest");
    let joined_ms = sightline_wire::now_ms();
    setup
        .until_running(&ids, &["ingest-b", "ingest-d"], joined_ms, Duration::from_secs(90), |s| {
            per_owner(s).get("ingest-d") == Some(&3)
        })
        .await;
    d.signal("-TERM");
    let termed_ms = sightline_wire::now_ms();
    let (_, took) =
        setup.until_running(&ids, &["ingest-b"], termed_ms, Duration::from_secs(60), |_| true).await;
    let mut exited = None;
    for _ in 0..300 {
        exited = d.child.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exited.is_some_and(|s| s.success()), "ingest-d exits cleanly after SIGTERM: {exited:?}");
    assert!(!setup.nodes().await.contains_key("ingest-d"), "ingest-d left the membership");
    eprintln!("cluster: SIGTERM ingest-d: its streams run on ingest-b {took:?} later; it exited cleanly");

    // 7. Exactly once: end the streams (no more events), let the sinks catch up, compare.
    for id in &ids {
        let (status, _) = common::http(gateway, "DELETE", &format!("/v1/streams/{id}"), None).await;
        assert_eq!(status, 204);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events: BTreeSet<String> = common::read_stream(&bus, &bus.names.events_stream())
        .await
        .into_iter()
        .filter_map(|(_, p)| serde_json::from_slice::<sightline_wire::Event>(&p).ok().map(|e| e.id))
        .collect();
    let (rows, distinct, stored) = common::settled_events(&bus, &store, events.len()).await;
    assert_eq!(rows, distinct, "every event is one row in ClickHouse");
    assert_eq!(stored, events, "ClickHouse holds exactly the events of the events stream");
    drop(c);
    drop(b);
    drop(d);
    let seen = {
        drop(_edge); // ends the feed
        tokio::time::timeout(Duration::from_secs(10), feed)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default()
    };
    let unique_seen: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique_seen.len(), seen.len(), "an event id came twice on the feed");
    assert!(!seen.is_empty() && unique_seen.iter().all(|id| events.contains(*id)));
    eprintln!(
        "cluster: {} events, {rows} rows in ClickHouse, {} on the feed, none twice",
        events.len(),
        seen.len()
    );

    common::drop_bus_and_database(&bus, &store, &cfg.clickhouse.database).await;
    for s in &mut sources {
        s.stop().await;
    }
    drop(nats);
    let _ = std::fs::remove_dir_all(&base);
}
