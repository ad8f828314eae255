//! Search, similar frames, duplicates and SQL on generated media, against the real services:
//! two streams play the same clip and a third a different one.

mod common;

use common::{TestSystem, test_config};
use futures::StreamExt;
use sightline_actors::Roles;
use sightline_testkit::{ClipSpec, LiveHls};
use sightline_wire::{EventKind, FeedItem};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Distance of `pts` from `at` on a clip that loops every `period` ms.
fn loop_distance(pts: i64, at: i64, period: i64) -> i64 {
    let d = (pts - at).rem_euclid(period);
    d.min(period - d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_similar_frames_duplicates_and_sql() {
    let mut cfg = test_config();
    cfg.ocr.workers = 1;
    cfg.scenes.labels = true;
    let sys = TestSystem::start(cfg, Roles::ALL).await;
    let clips = std::env::temp_dir().join("sightline-test-clips");
    let (same, other) = (ClipSpec::standard(), ClipSpec::alternate());
    let same_file = same.render(&clips).await.expect("clip renders");
    let other_file = other.render(&clips).await.expect("clip renders");

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/feed", sys.addr)).await.unwrap();
    let register = async |file: &std::path::Path, name: &str| {
        let dir = std::env::temp_dir().join(common::unique(&format!("sl-search-{name}")));
        let live = LiveHls::start(file, &dir, 0).await.expect("live HLS starts");
        let body = serde_json::json!({ "url": live.url, "name": name }).to_string();
        let (status, created) = sys.http("POST", "/v1/streams", Some(&body)).await;
        assert_eq!(status, 201, "{created}");
        (live, created["id"].as_str().unwrap().to_string())
    };
    let (_a_live, a) = register(&same_file, "channel-a").await;
    let (_c_live, c) = register(&other_file, "channel-c").await;
    // Channel A's keyframes are in the frames set before B starts: B's are the duplicates.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sys.http("GET", &format!("/v1/streams/{a}/thumbnail"), None).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "channel A kept no frame in 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_b_live, b) = register(&same_file, "channel-b").await;

    // Until the shared clip has played through on both streams and a duplicate was seen.
    let mut feed: Vec<FeedItem> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(100);
    let count = |feed: &[FeedItem], kind: EventKind, stream: &str| {
        feed.iter().filter(|f| f.event.kind == kind && f.event.stream_id == stream).count()
    };
    while tokio::time::Instant::now() < deadline {
        let done = count(&feed, EventKind::Duplicate, &b) + count(&feed, EventKind::Duplicate, &a) >= 3
            && count(&feed, EventKind::Transcript, &a) >= 3
            && count(&feed, EventKind::Transcript, &c) >= 3
            && count(&feed, EventKind::Ocr, &c) >= 2
            && count(&feed, EventKind::Scene, &b) >= 4;
        if done {
            break;
        }
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_secs(1), ws.next()).await
        {
            feed.push(serde_json::from_str(&t).expect("feed item parses"));
        }
    }
    for f in feed.iter().filter(|f| f.event.kind != EventKind::Frame) {
        eprintln!(
            "{} {:?} {} {:.3} {}",
            f.event.stream_id, f.event.kind, f.event.pts_ms, f.event.score, f.event.text
        );
    }

    // Duplicates: only between the two streams of the same clip, each linking both frames.
    let dups: Vec<&FeedItem> = feed.iter().filter(|f| f.event.kind == EventKind::Duplicate).collect();
    assert!(dups.len() >= 3, "expected duplicates between {a} and {b}; got {}", dups.len());
    for d in &dups {
        let info = d.event.duplicate().expect("duplicate details");
        let pair = [d.event.stream_id.as_str(), info.other_stream_id.as_str()];
        assert!(
            pair.contains(&a.as_str()) && pair.contains(&b.as_str()),
            "unexpected duplicate {:?}",
            d.event
        );
        assert!(info.similarity >= sys.cfg.vectors.duplicate_min_similarity);
        assert!(
            info.frame_id.starts_with(&d.event.stream_id)
                && info.other_frame_id.starts_with(&info.other_stream_id)
        );
    }
    assert!(
        feed.iter().filter(|f| f.event.kind == EventKind::Frame).all(|f| f
            .event
            .frame()
            .unwrap()
            .vector
            .is_empty()),
        "the feed leaves vectors out"
    );

    // Search: a spoken sentence finds its stream and moment (±2 s) in the top 5.
    let period = same.duration_ms();
    let sentence = &same.speech[1];
    let mut hits = serde_json::Value::Null;
    for _ in 0..40 {
        let (status, body) = sys
            .http("GET", &format!("/v1/search?q={}&k=5", url_encode("live video becomes searchable")), None)
            .await;
        assert_eq!(status, 200, "{body}");
        hits = body["hits"].clone();
        if !hits.as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("search hits: {hits:#}");
    let hits = hits.as_array().unwrap();
    assert!(
        hits.iter().take(5).any(|h| (h["stream_id"] == a.as_str() || h["stream_id"] == b.as_str())
            && loop_distance(h["pts_ms"].as_i64().unwrap(), sentence.at_ms, period) <= 2000),
        "no hit for `{}` near {} ms in the top 5",
        sentence.text,
        sentence.at_ms
    );
    let top = &hits[0];
    assert!(top["text"].as_str().unwrap().to_lowercase().contains("searchable"), "{top}");
    assert!(top["frame_url"].as_str().is_some_and(|u| u.starts_with("/v1/frames/")), "{top}");
    // The other clip's sentence, restricted to its stream (one Moonshine hears the same on every
    // loop: its "farmers expect rain" comes out as "pharma neck spec (t)rain" depending on where
    // the voice-activity cut falls).
    let (status, body) = sys
        .http(
            "GET",
            &format!(
                "/v1/search?q={}&k=3&stream={c}&kinds=transcript",
                url_encode("an orchestra playing quiet music")
            ),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let first = &body["hits"][0];
    assert_eq!(first["stream_id"], c.as_str(), "{body}");
    assert!(first["text"].as_str().unwrap().to_lowercase().contains("orchestra"), "{body}");
    assert!(body["hits"].as_array().unwrap().iter().all(|h| h["stream_id"] == c.as_str()));

    // Search: the words of a burned-in caption find its stream and moment (±2 s) in the top 5.
    let caption_at: i64 = other
        .scenes
        .iter()
        .take_while(|s| s.caption != Some("MARKETS CLOSE HIGHER"))
        .map(|s| s.seconds as i64 * 1000)
        .sum();
    let ocr_lines: Vec<&str> = feed
        .iter()
        .filter(|f| f.event.kind == EventKind::Ocr && f.event.stream_id == c)
        .map(|f| f.event.text.as_str())
        .collect();
    assert!(
        ocr_lines.contains(&"MARKETS CLOSE HIGHER") || ocr_lines.contains(&"SPORTS RESULTS TONIGHT"),
        "OCR lines of {c}: {ocr_lines:?}"
    );
    let mut hits = Vec::new();
    for _ in 0..20 {
        let (status, body) = sys
            .http("GET", &format!("/v1/search?q={}&k=5&kinds=ocr", url_encode("markets close higher")), None)
            .await;
        assert_eq!(status, 200, "{body}");
        hits = body["hits"].as_array().unwrap().clone();
        if hits.iter().any(|h| h["stream_id"] == c.as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("caption hits: {hits:?}");
    assert!(
        hits.iter().take(5).any(|h| h["stream_id"] == c.as_str()
            && h["kind"] == "ocr"
            && h["text"] == "MARKETS CLOSE HIGHER"
            && loop_distance(h["pts_ms"].as_i64().unwrap(), caption_at, other.duration_ms()) <= 2000),
        "no OCR hit for the caption near {caption_at} ms on {c}"
    );
    for bad in [
        "/v1/search",
        "/v1/search?q=x&k=0",
        "/v1/search?q=x&kinds=scene",
        "/v1/search?q=x&from=yesterday",
        // No image-text model is configured here.
        "/v1/search?q=x&space=image_text",
    ] {
        let (status, body) = sys.http("GET", bad, None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]["message"].as_str().is_some());
    }

    // Similar frames: a duplicated keyframe's nearest frames include the other stream's.
    let d = dups[0].event.duplicate().unwrap();
    let (status, sim) = sys.http("GET", &format!("/v1/frames/{}/similar?k=5", d.frame_id), None).await;
    assert_eq!(status, 200, "{sim}");
    eprintln!("similar: {sim:#}");
    let similar = sim["similar"].as_array().unwrap();
    assert!(similar.iter().all(|h| h["id"] != d.frame_id.as_str()));
    assert!(
        similar
            .iter()
            .any(|h| h["stream_id"] == d.other_stream_id.as_str() && h["score"].as_f64().unwrap() >= 0.98),
        "{sim}"
    );
    // By what the frames show (EfficientNet features): the duplicated keyframe's twin on the other
    // stream is among its nearest, as it shows the same thing.
    let (status, sim) =
        sys.http("GET", &format!("/v1/frames/{}/similar?k=5&space=features", d.frame_id), None).await;
    assert_eq!(status, 200, "{sim}");
    assert_eq!(sim["space"], "features");
    assert!(
        sim["similar"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["stream_id"] == d.other_stream_id.as_str() && h["score"].as_f64().unwrap() >= 0.95),
        "{sim}"
    );
    assert_eq!(
        sys.http("GET", &format!("/v1/frames/{}/similar?space=colour", d.frame_id), None).await.0,
        400
    );
    let (status, frame) = sys.http("GET", &format!("/v1/frames/{}", d.frame_id), None).await;
    assert_eq!(status, 200, "{frame}");
    assert_eq!(frame["keyframe"], true);
    assert_eq!(sys.http("GET", "/v1/frames/nope.frame.1/similar", None).await.0, 404);
    assert_eq!(sys.http("GET", "/v1/frames/nope.frame.1", None).await.0, 404);

    // SQL over the typed tables, read-only.
    let sql = |q: &str| serde_json::json!({ "sql": q }).to_string();
    let (status, res) = sys
        .http(
            "POST",
            "/v1/sql",
            Some(&sql("SELECT stream_id, count() AS n FROM duplicates FINAL GROUP BY stream_id")),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let dup_rows: u64 = res["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["n"].as_str().map(|s| s.parse().unwrap()).unwrap_or_else(|| r["n"].as_u64().unwrap()))
        .sum();
    assert!(dup_rows >= 1, "{res}");
    let (status, res) = sys
        .http("POST", "/v1/sql", Some(&sql("SELECT length(features) AS dim, keyframe FROM frames LIMIT 1")))
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["data"][0]["dim"], 432, "{res}");
    let (status, res) = sys
        .http(
            "POST",
            "/v1/sql",
            Some(&sql("SELECT length(image_features) AS dim FROM frames WHERE length(labels) > 0 LIMIT 1")),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["data"][0]["dim"], 1280, "{res}");
    // Kept frames carry their top-5 image labels (EfficientNet-Lite0), with probabilities.
    let (status, res) = sys
        .http(
            "POST",
            "/v1/sql",
            Some(&sql("SELECT labels, label_scores, model FROM frames WHERE length(labels) = 5 LIMIT 1")),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let row = &res["data"][0];
    assert!(row["model"].as_str().is_some_and(|m| m.contains("efficientnet")), "labelled frames: {res}");
    let scores: Vec<f64> =
        row["label_scores"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]) && scores.iter().all(|s| (0.0..=1.0).contains(s)),
        "{res}"
    );
    let (status, res) = sys
        .http(
            "POST",
            "/v1/sql",
            Some(&sql(&format!("SELECT text, box, confidence FROM ocr_text FINAL WHERE stream_id = '{c}'"))),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert!(res["data"].as_array().unwrap().iter().any(|r| r["text"] == "MARKETS CLOSE HIGHER"
        && r["box"].as_array().is_some_and(|b| b.len() == 4)), "ocr_text rows: {res}");
    // Transcripts carry their language (English alone configured: `en`), in both tables.
    let (status, res) = sys
        .http(
            "POST",
            "/v1/sql",
            Some(&sql(&format!(
                "SELECT language, count() AS n, (SELECT countIf(language = 'en') = count() FROM events \
                 WHERE kind = 'transcript' AND stream_id = '{c}') AS events_en \
                 FROM transcripts FINAL WHERE stream_id = '{c}' GROUP BY language"
            ))),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let rows = res["data"].as_array().unwrap();
    assert!(rows.len() == 1 && rows[0]["language"] == "en", "one language, English: {res}");
    assert_eq!(rows[0]["events_en"], 1, "{res}");
    let (status, res) = sys
        .http(
            "POST",
            "/v1/sql",
            Some(&sql(&format!(
                "SELECT count() AS n FROM scene_spans WHERE stream_id = '{b}' AND end_ms IS NOT NULL"
            ))),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    for (write, why) in [
        ("INSERT INTO events (id) VALUES ('x')", "INSERT"),
        ("DROP TABLE events", "DROP"),
        ("ALTER TABLE events DELETE WHERE 1", "ALTER"),
        ("SET max_threads = 1", "SET"),
        ("SELECT * FROM file('/etc/passwd')", "file"),
    ] {
        let (status, res) = sys.http("POST", "/v1/sql", Some(&sql(write))).await;
        assert_eq!(status, 400, "{write}: {res}");
        assert_eq!(res["error"]["code"], "read_only");
        assert!(res["error"]["message"].as_str().unwrap().contains(why), "{res}");
    }
    // ClickHouse itself refuses writes from the read-only user, without the gateway's check.
    let store = sys.node.as_ref().unwrap().store.clone();
    let direct = store
        .query_readonly("INSERT INTO events (id) VALUES ('x')", sightline_store::SqlFormat::Json, 1 << 20)
        .await;
    assert!(direct.is_err(), "readonly=1 must refuse an INSERT");
    let (status, res) = sys.http("POST", "/v1/sql", Some(&sql("SELECT no_such_column FROM events"))).await;
    assert_eq!(status, 400);
    assert_eq!(res["error"]["code"], "sql_error");
    let (status, _) = sys.http("POST", "/v1/sql", Some("{\"sql\": \"SELECT 1\", \"format\": \"xml\"}")).await;
    assert_eq!(status, 400);

    let (status, ready) = sys.http("GET", "/readyz", None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["redis"], "ok");
    let (status, dlq) = sys.http("GET", "/v1/dlq", None).await;
    assert_eq!(status, 200, "{dlq}");
    sys.shutdown().await;
}
