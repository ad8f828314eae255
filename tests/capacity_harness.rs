//! The capacity harness on a small run (one step, one stream): what it reports comes from the feed
//! (its event count per stream equals ClickHouse's rows for that stream), its latency figures are
//! measured on the events it received, and it writes both report files.

mod common;

use common::{TestSystem, test_config};
use sightline_actors::Roles;
use sightline_loadtest::capacity::{Options, Protocol, run};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_counts_what_the_feed_delivered() {
    let mut cfg = test_config();
    cfg.speech.workers = 0;
    let sys = TestSystem::start(cfg, Roles::ALL).await;
    let work = std::env::temp_dir().join(common::unique("sl-capacity"));
    let clip = sightline_testkit::ClipSpec::standard()
        .render(&std::env::temp_dir().join("sightline-test-clips"))
        .await
        .unwrap();
    let opts = Options {
        gateway: sys.addr.to_string(),
        api_key: None,
        steps: vec![1],
        warmup: Duration::from_secs(3),
        hold: Duration::from_secs(12),
        clip,
        work_dir: work.clone(),
        // Sightline runs inside this test process.
        pid: Some(std::process::id()),
        targets: Default::default(),
        reference: Duration::from_secs(3),
        protocol: Protocol::Hls,
        source: "news clip, 640x360 at 30 fps".into(),
        // `sightline-bench bare` is tested beside its code.
        bare_ort: None,
    };
    let report = run(&opts, &|line| eprintln!("{line}")).await.unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());

    let step = &report.steps[0];
    assert_eq!(step.streams, 1);
    let scenes = step.latency.get("scene").expect("scene events were measured");
    assert!(scenes.count >= 1 && scenes.p50 <= scenes.p95 && scenes.p95 <= scenes.p99, "{scenes:?}");
    // The stage split comes from the events' own stage times.
    // The sink's write time comes from Sightline's own metrics, read over HTTP.
    let ch = step.sink_write_ms.get("clickhouse").copied();
    assert!(ch.is_some_and(|ms| ms > 0.0), "clickhouse write time: {:?}", step.sink_write_ms);
    for stage in ["ingest_publish", "queue_wait", "model", "publish_and_feed"] {
        let s = step.stages.get(stage).unwrap_or_else(|| panic!("no {stage} in {:?}", step.stages));
        assert!(s.count >= 1 && s.p50 >= 0, "{stage}: {s:?}");
    }
    assert!(step.cpu_percent.is_some_and(|c| c > 0.0) && step.rss_mb.is_some_and(|m| m > 10.0), "{step:?}");
    assert!(report.bare_decode_cpu_percent.is_some_and(|c| c > 0.0), "the reference ran");
    // Each pool's batches and model time during the step, from Sightline's /metrics: the scene
    // pool's (it skips frames unchanged since the last kept one, and says how many); no others
    // ran here (speech and OCR have no workers in this test).
    let w = step.pools.get("scenes").unwrap_or_else(|| panic!("no scene pool in {:?}", step.pools));
    assert!(w.batches >= 1.0 && w.items >= w.batches, "{w:?}");
    assert!(w.modelled >= 1.0 && w.modelled < w.items, "the clip's still scenes are skipped: {w:?}");
    assert!(w.seconds > 0.0 && w.ms_per_item > 0.0, "{w:?}");
    // The CPU its batches' thread used: some, and never more than their time (one thread each).
    assert!(w.cpu_seconds > 0.0 && w.cpu_seconds <= w.seconds * 1.05 + 0.01, "{w:?}");
    assert_eq!(step.pools.len(), 1, "{:?}", step.pools);

    // Every event the harness counted is a row in ClickHouse, and the other way round.
    let bus = sys.node.as_ref().unwrap().bus.clone();
    common::sink_drained(&bus, "sink_clickhouse").await;
    let store = sys.node.as_ref().unwrap().store.clone();
    assert_eq!(report.events_by_stream.len(), 1, "{:?}", report.events_by_stream);
    assert_eq!(report.feed_reconnects, 0, "the feed stayed connected");
    for (stream, counted) in &report.events_by_stream {
        let rows: u64 = store
            .client()
            .query("SELECT count() FROM events FINAL WHERE stream_id = ?")
            .bind(stream)
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(rows, *counted, "stream {stream}: ClickHouse has {rows}, the harness counted {counted}");
        assert!(*counted >= 3);
    }

    let out = work.join("reports");
    sightline_loadtest::report::write(&report, &out).unwrap();
    let html = std::fs::read_to_string(out.join("capacity.html")).unwrap();
    assert!(html.contains("Sightline capacity") && html.contains("<svg"), "{html}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("capacity.json")).unwrap()).unwrap();
    assert_eq!(json["steps"][0]["streams"], 1);
    let _ = std::fs::remove_dir_all(&work);
    sys.shutdown().await;
}
