//! The model registry's fallbacks: a primary model that errors on its work hands each failed item
//! to its fallback, one that cannot load leaves the pool to its fallback, and a long queue sends
//! batches to the fallback; each event records the model that produced it, and every hand-over
//! is counted in `sightline_model_fallbacks_total`.

mod common;

use common::{TestSystem, test_config};
use sightline_actors::Roles;
use sightline_settings::Task;
use sightline_settings::{Config, ModelSpec};
use sightline_testkit::caption_frame;
use std::time::Duration;

/// Publishes `n` captioned frames, one stream each (so every one is read), before the system
/// starts, so the pool finds them all waiting.
async fn publish_frames(cfg: &Config, n: usize) {
    let bus = sightline_actors::Bus::connect(&cfg.nats).await.unwrap();
    bus.ensure().await.unwrap();
    let (w, h) = (cfg.ingest.analysis_width as usize, cfg.ingest.analysis_height as usize);
    for i in 0..n {
        let px = caption_frame(&format!("BULLETIN {i} TONIGHT"), "navy", w, h).unwrap();
        let meta = sightline_wire::FrameMeta::still(
            &format!("fb{i}"),
            1000,
            sightline_wire::now_ms(),
            w as u32,
            h as u32,
        );
        bus.publish_frame(&meta, &px).await.unwrap();
    }
}

/// Starts the system on `n` waiting frames and waits until ClickHouse has an OCR line for each;
/// returns (model, lines) counts.
async fn read_frames(cfg: Config, n: usize) -> (TestSystem, Vec<(String, u64)>) {
    publish_frames(&cfg, n).await;
    let sys = TestSystem::start(cfg, ROLES).await;
    let store = sys.node.as_ref().unwrap().store.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let rows: Vec<(String, u64)> = store
            .client()
            .query("SELECT model, count() FROM events WHERE kind = 'ocr' GROUP BY model ORDER BY model")
            .fetch_all()
            .await
            .unwrap_or_else(|e| {
                eprintln!("query failed, polling again: {e}");
                Vec::new()
            });
        if rows.iter().map(|r| r.1).sum::<u64>() >= n as u64 || tokio::time::Instant::now() > deadline {
            return (sys, rows);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn fallbacks(metrics: &str, model: &str, reason: &str) -> f64 {
    let key = format!("sightline_model_fallbacks_total{{model=\"{model}\",reason=\"{reason}\"}}");
    metrics
        .lines()
        .find(|l| l.starts_with(&key))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn ocr_config(primary: ModelSpec) -> Config {
    let mut cfg = test_config();
    cfg.scenes.workers = 0;
    cfg.speech.workers = 0;
    cfg.ocr.workers = 1;
    // The frames wait in a queue on purpose (a backlog for the fallback): not shed for lag.
    cfg.ocr.lag_target_ms = 0;
    cfg.ocr.max_lag_ms = 0;
    cfg.models.ocr = primary.name.clone();
    cfg.models.registry.push(primary);
    cfg
}

async fn metrics_text(sys: &TestSystem) -> String {
    let (_, m) = sys.http("GET", "/metrics", None).await;
    m.as_str().unwrap_or("").to_string()
}

const ROLES: Roles = Roles { gateway: true, ingest: false, inference: true, sink: true };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_model_hands_its_work_to_the_fallback() {
    // The recogniser in the detector's place: it loads, and fails on every frame.
    let broken = ModelSpec {
        files: vec!["ppocr/rec.onnx".into(), "ppocr/rec.onnx".into()],
        fallback: "pp-ocrv6-small-cpu".into(),
        ..ModelSpec::new("ocr-broken", Task::Ocr)
    };
    let (sys, rows) = read_frames(ocr_config(broken), 4).await;
    assert_eq!(rows, vec![("pp-ocrv6-small-cpu@1".to_string(), 4)], "every line read by the fallback");
    let m = metrics_text(&sys).await;
    assert_eq!(fallbacks(&m, "ocr-broken@1", "error"), 4.0, "{m}");
    assert!(!m.contains("sightline_dlq_total{kind=\"ocr\"}"), "nothing dead-lettered");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_cannot_load_leaves_the_pool_to_its_fallback() {
    let missing = ModelSpec {
        files: vec!["nowhere/det.onnx".into(), "nowhere/rec.onnx".into()],
        fallback: "pp-ocrv6-small".into(),
        ..ModelSpec::new("ocr-missing", Task::Ocr)
    };
    let (sys, rows) = read_frames(ocr_config(missing), 2).await;
    assert_eq!(rows, vec![("pp-ocrv6-small@1".to_string(), 2)]);
    let m = metrics_text(&sys).await;
    assert!(fallbacks(&m, "pp-ocrv6-small@1", "unavailable") >= 2.0, "{m}");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_queue_sends_batches_to_the_fallback() {
    let busy = ModelSpec {
        files: vec!["ppocr/det.onnx".into(), "ppocr/rec.onnx".into()],
        fallback: "pp-ocrv6-small-cpu".into(),
        queue_threshold: 3,
        batch_max: 1,
        ..ModelSpec::new("ocr-busy", Task::Ocr)
    };
    let (sys, rows) = read_frames(ocr_config(busy), 10).await;
    eprintln!("lines by model: {rows:?}");
    let by = |model: &str| rows.iter().find(|r| r.0 == model).map(|r| r.1).unwrap_or(0);
    assert_eq!(by("ocr-busy@1") + by("pp-ocrv6-small-cpu@1"), 10, "{rows:?}");
    assert!(by("pp-ocrv6-small-cpu@1") >= 1, "the backlog went to the fallback: {rows:?}");
    assert!(by("ocr-busy@1") >= 1, "the primary served once the queue was short: {rows:?}");
    let m = metrics_text(&sys).await;
    assert!(fallbacks(&m, "ocr-busy@1", "queue") >= 1.0, "{m}");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_past_its_timeout_hands_the_pool_to_the_fallback_for_a_while() {
    // Reading a frame takes far longer than 1 ms: the first batch times out, is redelivered,
    // and the fallback serves for the cooldown.
    let slow = ModelSpec {
        files: vec!["ppocr/det.onnx".into(), "ppocr/rec.onnx".into()],
        fallback: "pp-ocrv6-small-cpu".into(),
        timeout_ms: 1,
        fallback_cooldown_s: 600,
        ..ModelSpec::new("ocr-slow", Task::Ocr)
    };
    let (sys, rows) = read_frames(ocr_config(slow), 4).await;
    assert_eq!(
        rows,
        vec![("pp-ocrv6-small-cpu@1".to_string(), 4)],
        "the timed-out batch was redone by the fallback"
    );
    let m = metrics_text(&sys).await;
    assert!(fallbacks(&m, "ocr-slow@1", "timeout") >= 1.0, "{m}");
    sys.shutdown().await;
}
