//! Per-stream backlog accounting is each stream's own: a pool reports, after each batch, exactly
//! which messages of which stream it finished with (`<p>.settled.<stream>`), so one stream's
//! failing work, which holds the shared consumer's ack floor, does not count against the frames of
//! another stream that were answered (the old ack-floor count would have said they all wait).

mod common;

use common::{TestSystem, test_config};
use futures::StreamExt;
use sightline_actors::Roles;
use sightline_wire::{FrameMeta, SettledNotice, now_ms};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_reports_each_streams_finished_work_exactly() {
    let mut cfg = test_config();
    cfg.speech.workers = 0;
    cfg.shots.workers = 0;
    cfg.scenes.batch_max = 4;
    // The failing frame is retried for about 6 s (200 ms doubling) before it is dead-lettered,
    // holding the consumer's ack floor meanwhile; nothing is shed for lag here.
    cfg.scenes.max_deliver = 6;
    (cfg.scenes.lag_target_ms, cfg.scenes.max_lag_ms) = (0, 0);
    let sys =
        TestSystem::start(cfg, Roles { gateway: false, ingest: false, inference: true, sink: false }).await;
    let bus = sys.node.as_ref().unwrap().bus.clone();
    let mut notices = bus.client.subscribe(bus.names.settled_all()).await.unwrap();
    let (w, h) = (sys.cfg.ingest.analysis_width, sys.cfg.ingest.analysis_height);
    let frame = |stream: &str, pts: i64| FrameMeta::still(stream, pts, now_ms(), w, h);
    let pixels = vec![90u8; (w * h * 3) as usize];

    // Settled notices per (pool, stream) until `until` holds or the time is up.
    type Settled = BTreeMap<(String, String), BTreeSet<u64>>;
    let mut settled: Settled = BTreeMap::new();
    let mut collect = async |settled: &mut Settled, until: &dyn Fn(&Settled) -> bool| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !until(settled) && tokio::time::Instant::now() < deadline {
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), notices.next()).await {
                let stream = m.subject.rsplit('.').next().unwrap().to_string();
                let n: SettledNotice = serde_json::from_slice(&m.payload).unwrap();
                settled.entry((n.pool, stream)).or_default().extend(n.seqs);
            }
        }
    };
    let key = |s: &str| ("scenes".to_string(), s.to_string());

    // Warm-up: the worker has loaded its models once the first frame is reported.
    let warm = bus.publish_frame(&frame("flowing", 0), &pixels).await.unwrap();
    collect(&mut settled, &|s| s.get(&key("flowing")).is_some_and(|v| v.contains(&warm))).await;
    assert!(settled[&key("flowing")].contains(&warm), "the warm-up frame is reported: {settled:?}");

    // A frame whose pixels do not match its size fails every time, then five good frames.
    let mut bad = frame("stuck", 0);
    bad.width += 2;
    let stuck = bus.publish_frame(&bad, &pixels).await.unwrap();
    let mut good = BTreeSet::from([warm]);
    for i in 1..=5 {
        good.insert(bus.publish_frame(&frame("flowing", i * 500), &pixels).await.unwrap());
    }
    collect(&mut settled, &|s| s.get(&key("flowing")).is_some_and(|v| v.len() >= good.len())).await;
    assert_eq!(settled[&key("flowing")], good, "exactly the flowing stream's frames, each once");
    assert!(!settled.contains_key(&key("stuck")), "the failing frame is still waiting: {settled:?}");
    // Meanwhile the shared consumer's ack floor is held below the stuck frame: a count of the
    // frames above it would say all five answered frames still wait.
    let frames = bus.js.get_stream(bus.names.frames_stream()).await.unwrap();
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        frames.get_consumer(&bus.names.consumer("scenes")).await.unwrap();
    let floor = consumer.info().await.unwrap().ack_floor.stream_sequence;
    assert!(floor < stuck, "ack floor {floor} is held below the failing frame {stuck}");
    assert!(good.iter().filter(|&&s| s > floor).count() >= 5);

    // Once dead-lettered, the failing frame is reported too.
    let t = std::time::Instant::now();
    collect(&mut settled, &|s| s.contains_key(&key("stuck"))).await;
    eprintln!("stuck frame {stuck} reported after {:?} more; floor was {floor}; {settled:?}", t.elapsed());
    assert_eq!(settled.get(&key("stuck")), Some(&BTreeSet::from([stuck])), "dead-lettered and reported");
    sys.shutdown().await;
}
