//! End to end on the real services (NATS JetStream, the ClickHouse engine, GStreamer, ONNX
//! Runtime): a generated *live* HLS stream is registered over the API; its scene cuts and speech
//! come out on the websocket feed and in ClickHouse, and match what was generated.

mod common;

use common::{TestSystem, test_config, words};
use futures::StreamExt;
use sightline_actors::Roles;
use sightline_testkit::{ClipSpec, LiveHls};
use sightline_wire::FeedItem;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_hls_to_feed_and_clickhouse() {
    let sys = TestSystem::start(test_config(), Roles::ALL).await;
    let clip = ClipSpec::standard();
    let dir = std::env::temp_dir().join(common::unique("sl-e2e"));
    let file = clip.render(&std::env::temp_dir().join("sightline-test-clips")).await.expect("clip renders");

    // Listen before registering, so nothing is missed.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/feed", sys.addr)).await.expect("feed connects");
    let live = LiveHls::start(&file, &dir, 1).await.expect("live HLS starts");
    let body = serde_json::json!({ "url": live.url, "name": "e2e" }).to_string();
    let (status, created) = sys.http("POST", "/v1/streams", Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["name"], "e2e");

    // Collect events until the clip has played through and its speech was transcribed.
    let mut feed: Vec<FeedItem> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(75);
    let spoken: Vec<String> = clip.speech.iter().flat_map(|s| words(s.text)).collect();
    loop {
        let got_all = {
            let cuts = feed.iter().filter(|f| f.event.kind.as_str() == "scene").count();
            let lines = feed.iter().filter(|f| f.event.kind.as_str() == "transcript").count();
            cuts >= clip.cuts_ms().len() && lines >= clip.speech.len()
        };
        if got_all {
            // A little longer, to catch any spurious event after the last expected one.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let wait = if got_all { Duration::from_millis(300) } else { Duration::from_secs(1) };
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let item: FeedItem = serde_json::from_str(&t).expect("feed item parses");
                assert_eq!(item.event.stream_id, id);
                feed.push(item);
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("feed ended: {other:?}"),
            Err(_) if got_all => break,
            Err(_) => {}
        }
        if tokio::time::Instant::now() > deadline {
            break;
        }
    }
    let (_, view) = sys.http("GET", &format!("/v1/streams/{id}"), None).await;
    eprintln!("stream: {view}");
    for f in &feed {
        eprintln!("#{} {:?} {} {:.2} {}", f.seq, f.event.kind, f.event.pts_ms, f.event.score, f.event.text);
    }

    // Scene cuts: at the generated times, within one sampled frame (500 ms at 2 fps), no others.
    let cuts: Vec<i64> =
        feed.iter().filter(|f| f.event.kind.as_str() == "scene").map(|f| f.event.pts_ms).collect();
    let expected = clip.cuts_ms();
    for c in &expected {
        assert!(cuts.iter().any(|x| (x - c).abs() <= 500), "no cut near {c} ms; cuts were {cuts:?}");
    }
    for x in &cuts {
        assert!(
            expected.iter().any(|c| (x - c).abs() <= 500),
            "cut at {x} ms where none was generated ({expected:?})"
        );
    }
    assert_eq!(cuts.len(), expected.len(), "cuts {cuts:?} vs generated {expected:?}");

    // Transcript: at least 80 % of the spoken words, each sentence near where it was spoken.
    let transcripts: Vec<&FeedItem> = feed.iter().filter(|f| f.event.kind.as_str() == "transcript").collect();
    let heard: BTreeSet<String> = transcripts.iter().flat_map(|f| words(&f.event.text)).collect();
    let found = spoken.iter().filter(|w| heard.contains(*w)).count();
    assert!(found * 10 >= spoken.len() * 8, "heard {found} of {} spoken words: {heard:?}", spoken.len());
    for s in &clip.speech {
        assert!(
            transcripts.iter().any(|t| (t.event.pts_ms - s.at_ms).abs() <= 1000),
            "no transcript starting near {} ms",
            s.at_ms
        );
    }
    assert!(
        transcripts
            .iter()
            .all(|t| t.event.end_ms.unwrap() > t.event.pts_ms && (0.0..=1.0).contains(&t.event.score))
    );

    // Sequences are strictly increasing: resumable with since=.
    assert!(feed.windows(2).all(|w| w[1].seq > w[0].seq));

    // The same events, read back from ClickHouse with SQL (and through the API).
    let store = sys.node.as_ref().unwrap().store.clone();
    let feed_ids: BTreeSet<String> = feed.iter().map(|f| f.event.id.clone()).collect();
    let mut rows = Vec::new();
    for _ in 0..40 {
        rows = store.stream_events(&id).await.expect("ClickHouse query");
        if rows.len() >= feed_ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let row_ids: BTreeSet<String> = rows.iter().map(|r| r.id.clone()).collect();
    assert_eq!(row_ids, feed_ids, "ClickHouse and the feed disagree");
    for f in &feed {
        let row = rows.iter().find(|r| r.id == f.event.id).unwrap();
        // The stage times (`timing`) are the feed's alone; everything else is stored.
        assert!(
            f.event.kind != sightline_wire::EventKind::Scene || f.event.timing.is_some(),
            "{:?}",
            f.event
        );
        let fed = sightline_wire::Event { timing: None, ..f.event.clone() };
        assert_eq!(row.to_event().unwrap(), fed);
    }
    let (status, api) = sys.http("GET", &format!("/v1/streams/{id}/events?kind=transcript"), None).await;
    assert_eq!(status, 200);
    assert_eq!(api["events"].as_array().unwrap().len(), transcripts.len());
    let (status, api) = sys.http("GET", &format!("/v1/streams/{id}/events?kind=scene&limit=2"), None).await;
    assert_eq!(status, 200);
    let first_two: Vec<i64> =
        api["events"].as_array().unwrap().iter().map(|e| e["pts_ms"].as_i64().unwrap()).collect();
    assert_eq!(first_two, cuts[..2].to_vec());
    let (status, _) = sys.http("GET", &format!("/v1/streams/{id}/events?kind=bogus"), None).await;
    assert_eq!(status, 400);

    // The stream ran and was healthy; deleting it tears it down.
    assert!(view["detail"]["decoded_frames"].as_u64().unwrap() > 300, "{view}");
    // Its ingest counters are exported, drops included (none here), beside the teardown gauges.
    let (_, metrics) = sys.http("GET", "/metrics", None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    for name in ["ingest_decoded_frames", "ingest_dropped_frames", "ingest_dropped_audio"] {
        let line = format!("sightline_{name}_total{{stream=\"{id}\"}}");
        assert!(metrics.lines().any(|l| l.starts_with(&line)), "no {line} in /metrics");
    }
    assert!(
        metrics
            .lines()
            .any(|l| l == "sightline_ingest_dropped_audio_total{stream=\"".to_string() + &id + "\"} 0")
    );
    assert!(metrics.lines().any(|l| l.starts_with("sightline_ingest_teardowns_not_serialised ")));
    // Transcripts are counted per language and model (English alone: Moonshine's, `en`).
    assert!(
        metrics
            .lines()
            .any(|l| l
                .starts_with("sightline_transcripts_total{language=\"en\",model=\"moonshine-base-en@1\"}")),
        "no English transcript count in /metrics"
    );
    let (status, _) = sys.http("DELETE", &format!("/v1/streams/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = sys.http("GET", &format!("/v1/streams/{id}"), None).await;
    assert_eq!(status, 404);
    drop(live);
    sys.shutdown().await;
}
