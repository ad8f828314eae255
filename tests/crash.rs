//! Crash test: the `sightline` process is killed with SIGKILL three times while a stream plays
//! and the sinks are writing batches, and started again each time. Afterwards ClickHouse holds
//! every event of the JetStream events stream exactly once (raw rows, not only after FINAL).

mod common;

use common::{free_port, read_stream, test_config};
use sightline_testkit::{ClipSpec, LiveHls};
use sightline_wire::Event;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

struct Process {
    child: std::process::Child,
}

fn spawn(cfg: &sightline_settings::Config, listen: SocketAddr, log: &std::path::Path) -> Process {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sightline"))
        .current_dir(root)
        .arg("run")
        .env("SIGHTLINE_CONFIG", root.join("config/sightline.toml"))
        .env("SIGHTLINE_NATS__PREFIX", &cfg.nats.prefix)
        .env("SIGHTLINE_NATS__WORK_MAX_BYTES", cfg.nats.work_max_bytes.to_string())
        .env("SIGHTLINE_NATS__EVENTS_MAX_BYTES", cfg.nats.events_max_bytes.to_string())
        .env("SIGHTLINE_CLICKHOUSE__DATABASE", &cfg.clickhouse.database)
        .env("SIGHTLINE_GATEWAY__LISTEN", listen.to_string())
        .env("SIGHTLINE_INGEST__ALLOW_HOSTS", r#"["127.0.0.1"]"#)
        // Larger, slower batches: a kill lands inside one more often.
        .env("SIGHTLINE_SINK__BATCH_DEADLINE_MS", "1500")
        .env("RUST_LOG", "info")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("sightline starts");
    Process { child }
}

async fn wait_healthy(addr: SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok()
            && common::http(addr, "GET", "/healthz", None).await.0 == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("sightline did not become healthy on {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_batch_loses_and_duplicates_nothing() {
    let cfg = test_config();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = std::env::temp_dir().join(common::unique("sl-crash-log"));
    let mut proc = spawn(&cfg, addr, &log);
    wait_healthy(addr).await;

    let clip = ClipSpec::standard().render(&std::env::temp_dir().join("sightline-test-clips")).await.unwrap();
    let live =
        LiveHls::start(&clip, &std::env::temp_dir().join(common::unique("sl-crash")), 0).await.unwrap();
    let body = serde_json::json!({ "url": live.url, "name": "crash" }).to_string();
    let (status, created) = common::http(addr, "POST", "/v1/streams", Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    let store = sightline_store::EventStore::new(&cfg.clickhouse);
    let rows =
        async || store.client().query("SELECT count() FROM events").fetch_one::<u64>().await.unwrap_or(0);
    // Wait for the first rows, then kill at different points of the sink's batch cycle.
    for _ in 0..100 {
        if rows().await >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (round, wait_ms) in [2300u64, 3900, 5100].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        let before = rows().await;
        proc.child.kill().unwrap(); // SIGKILL
        proc.child.wait().unwrap();
        eprintln!("round {round}: killed with {before} rows stored");
        tokio::time::sleep(Duration::from_millis(500)).await;
        proc = spawn(&cfg, addr, &log);
        wait_healthy(addr).await;
    }
    // The stream resumed by itself after each restart; let it run, then stop it.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (_, view) = common::http(addr, "GET", &format!("/v1/streams/{id}"), None).await;
    eprintln!("stream after restarts: {view}");
    assert_eq!(common::http(addr, "DELETE", &format!("/v1/streams/{id}"), None).await.0, 204);

    let bus = sightline_actors::Bus::connect(&cfg.nats).await.unwrap();
    let events_stream = bus.names.events_stream();
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let n = bus.js.get_stream(&events_stream).await.unwrap().info().await.unwrap().state.last_sequence;
        if n == last {
            break;
        }
        last = n;
    }
    let published: Vec<Event> = read_stream(&bus, &events_stream)
        .await
        .iter()
        .map(|(_, p)| serde_json::from_slice(p).unwrap())
        .collect();
    let published_ids: BTreeSet<String> = published.iter().map(|e| e.id.clone()).collect();
    assert_eq!(published.len(), published_ids.len(), "JetStream deduplicated republished events by id");
    let (raw, distinct, stored) = common::settled_events(&bus, &store, published_ids.len()).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let skipped = text.matches("already in ClickHouse are not written again").count();
    eprintln!(
        "published {} events; ClickHouse {raw} rows, {distinct} distinct; redelivered-and-skipped batches: {skipped}",
        published_ids.len()
    );
    assert!(published_ids.len() >= 10, "too few events to say anything");
    assert_eq!(raw, distinct, "an event was written twice");
    assert_eq!(stored, published_ids, "ClickHouse and JetStream disagree");

    proc.child.kill().unwrap();
    proc.child.wait().unwrap();
    drop(live);
    if let Ok(v) = sightline_store::VectorStore::connect(&cfg.redis.url).await {
        for space in [sightline_wire::VectorSpace::Text, sightline_wire::VectorSpace::Frames] {
            let _ = v.drop_set(&bus.names.vector_set(space)).await;
        }
    }
    common::drop_bus_and_database(&bus, &store, &cfg.clickhouse.database).await;
    let _ = std::fs::remove_file(&log);
}

/// The narrow window a kill can hit: the batch's INSERT landed, its acks did not. The redelivered
/// messages must not be written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_batch_already_stored_is_not_written_again() {
    use sightline_wire::EventKind;
    let cfg = test_config();
    let bus = sightline_actors::Bus::connect(&cfg.nats).await.unwrap();
    bus.ensure().await.unwrap();
    let store = sightline_store::EventStore::new(&cfg.clickhouse);
    store.migrate(&cfg.clickhouse, &cfg.clickhouse.migrations_dir).await.unwrap();
    // Recent wall times: rows older than the retention TTL would be dropped on insert.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let events: Vec<Event> = (0..5)
        .map(|i| {
            let mut e = Event::new(EventKind::Transcript, "s1", i * 1000, now + i * 1000, "test@1");
            e.text = format!("line {i}");
            e
        })
        .collect();
    for e in &events {
        bus.publish(bus.names.event_subject(e.kind, &e.stream_id), &e.id, serde_json::to_vec(e).unwrap())
            .await
            .unwrap();
    }
    let work = sightline_bus::WorkSpec {
        stream: bus.names.events_stream(),
        filters: vec![bus.names.events_all()],
        consumer: bus.names.consumer("crash_window"),
        batch_max: 10,
        batch_deadline: Duration::from_millis(500),
        linger: Duration::ZERO,
        max_ack_pending: 100,
        max_deliver: -1,
        ack_wait: Duration::from_secs(1),
        lag_target: None,
        max_lag: None,
    };
    let consumer = sightline_bus::work_consumer(&bus, &work).await.unwrap();
    let first = sightline_bus::fetch_batch(&consumer, &work).await.unwrap();
    assert_eq!(first.len(), 5);
    sightline_sinks::insert_new(&store, &events, &first).await.unwrap();
    // "Killed" here: no acks. After ack_wait the same messages come back as redeliveries.
    drop(first);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = sightline_bus::fetch_batch(&consumer, &work).await.unwrap();
    assert_eq!(again.len(), 5);
    assert!(again.iter().all(|m| m.info().unwrap().delivered == 2));
    sightline_sinks::insert_new(&store, &events, &again).await.unwrap();
    let (raw, distinct) = store
        .client()
        .query("SELECT count(), uniqExact(id) FROM events")
        .fetch_one::<(u64, u64)>()
        .await
        .unwrap();
    assert_eq!((raw, distinct), (5, 5), "the redelivered batch was written again");
    // A retried INSERT of the same batch (an ambiguous failure: it landed, the answer was lost) is
    // dropped by ClickHouse's insert deduplication token, materialized views included.
    store.insert_events(&events).await.unwrap();
    let counts = store
        .client()
        .query("SELECT assumeNotNull((SELECT count() FROM events)), assumeNotNull((SELECT count() FROM transcripts)), assumeNotNull((SELECT sum(events) FROM events_per_minute))")
        .fetch_one::<(u64, u64, u64)>()
        .await
        .unwrap();
    assert_eq!(counts, (5, 5, 5), "(events, transcripts, per-minute rollup) after a retried insert");
    bus.destroy().await;
    let _ = store
        .client()
        .query(&format!("DROP DATABASE IF EXISTS `{}`", cfg.clickhouse.database))
        .execute()
        .await;
}
