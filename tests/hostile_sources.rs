//! Hostile stream sources through the whole system (gateway + ingest, GStreamer included). The
//! test sources live on 127.0.0.1, the one internal address the tests allow; 127.0.0.2 stands for
//! an internal service behind the node, which must never be contacted, however the source points
//! at it: a segment URI, a redirect, or a stored stream spec that the gateway never checked.

mod common;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::{TestSystem, status_until, test_config};
use sightline_actors::Roles;
use sightline_bus::StreamSpec;
use sightline_testkit::{ClipSpec, LiveHls};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A listener on 127.0.0.2 that counts connections and never answers.
async fn internal_service() -> (u16, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, hits)
}

#[derive(Clone)]
struct Hostile {
    live_dir: std::path::PathBuf,
    inside: u16,
    /// Playlist requests so far; past `grow_after`, the playlist lists too many segments.
    playlist_hits: Arc<AtomicU64>,
    grow_after: u64,
}

async fn hostile(State(h): State<Hostile>, Path(file): Path<String>) -> Response {
    match file.as_str() {
        "inside.m3u8" => format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nhttp://127.0.0.2:{}/secret.ts\n#EXTINF:1,\nhttp://127.0.0.2:{}/secret2.ts\n",
            h.inside, h.inside
        )
        .into_response(),
        "redirect" => {
            (StatusCode::FOUND, [("location", format!("http://127.0.0.2:{}/live.m3u8", h.inside))]).into_response()
        }
        "live.m3u8" => {
            let n = h.playlist_hits.fetch_add(1, Ordering::SeqCst) + 1;
            let text = tokio::fs::read_to_string(h.live_dir.join("live.m3u8")).await.unwrap_or_default();
            if n <= h.grow_after {
                return text.into_response();
            }
            let seg = text.lines().find(|l| l.ends_with(".ts")).unwrap_or("seg00000.ts").to_string();
            let mut big = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n".to_string();
            for _ in 0..60 {
                big += &format!("#EXTINF:1,\n{seg}\n");
            }
            big.into_response()
        }
        seg => match tokio::fs::read(h.live_dir.join(seg)).await {
            Ok(bytes) => bytes.into_response(),
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sources_never_reach_inside_and_fail_with_the_reason() {
    let mut cfg = test_config();
    cfg.ingest.max_playlist_segments = 50;
    let sys =
        TestSystem::start(cfg, Roles { gateway: true, ingest: true, inference: false, sink: false }).await;
    let (inside, hits) = internal_service().await;
    let clip = ClipSpec::standard().render(&std::env::temp_dir().join("sightline-test-clips")).await.unwrap();
    let live_dir = std::env::temp_dir().join(common::unique("sl-hostile-hls"));
    let _live = LiveHls::start(&clip, &live_dir, 0).await.unwrap();
    let state = Hostile { live_dir, inside, playlist_hits: Arc::new(AtomicU64::new(0)), grow_after: 4 };
    let playlist_hits = state.playlist_hits.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/{file}", axum::routing::get(hostile)).with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // Registration: a redirect to the inside is refused by the check ingest runs for the gateway.
    let (s, j) = sys.http("POST", "/v1/streams", Some(&format!(r#"{{"url": "{base}/redirect"}}"#))).await;
    assert_eq!(s, 400, "{j}");
    assert!(j["error"]["message"].as_str().unwrap().contains("127.0.0.2"), "{j}");

    // A playlist whose segments are inside: registered (the playlist itself is fine), and the
    // stream fails with the reason when GStreamer asks for the first segment.
    let (s, j) = sys.http("POST", "/v1/streams", Some(&format!(r#"{{"url": "{base}/inside.m3u8"}}"#))).await;
    assert_eq!(s, 201, "{j}");
    let id = j["id"].as_str().unwrap().to_string();
    let v = status_until(&sys, &id, Duration::from_secs(30), |v| v["status"] == "failed").await;
    let why = v["detail"]["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("127.0.0.2") && why.contains("refused"), "{v}");
    assert_eq!(v["detail"]["last_retry_reason"], "refused", "{v}");

    // Stored specs are checked again when a stream (re)starts: written to the registry directly,
    // as by an older version or another node with a looser policy, they fail the same way.
    let registry = &sys.node.as_ref().unwrap().registry;
    for (id, url) in [
        ("storedrtmp", format!("rtmp://127.0.0.2:{inside}/live/x")),
        ("storedhttp", format!("{base}/redirect")),
        ("storednat64", "rtsp://[64:ff9b::7f00:2]:554/cam".to_string()),
    ] {
        let spec = StreamSpec {
            id: id.into(),
            name: id.into(),
            url,
            created_ms: 0,
            paused: false,
            incarnation: 7,
            languages: Vec::new(),
        };
        assert!(registry.create(&spec).await.unwrap());
        let v = status_until(&sys, id, Duration::from_secs(30), |v| v["status"] == "failed").await;
        assert_eq!(v["detail"]["last_retry_reason"], "refused", "{id}: {v}");
    }

    // A live playlist that is fine at registration and grows past the segment limit on a later
    // refresh: the stream runs, then fails with the reason.
    let (s, j) = sys.http("POST", "/v1/streams", Some(&format!(r#"{{"url": "{base}/live.m3u8"}}"#))).await;
    assert_eq!(s, 201, "{j}");
    let id = j["id"].as_str().unwrap().to_string();
    status_until(&sys, &id, Duration::from_secs(30), |v| {
        v["detail"]["decoded_frames"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let v = status_until(&sys, &id, Duration::from_secs(60), |v| v["status"] == "failed").await;
    assert!(v["detail"]["last_error"].as_str().unwrap_or_default().contains("60 segments"), "{v}");
    assert!(playlist_hits.load(Ordering::SeqCst) > 4);

    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing connected to the internal service");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_over_the_resolution_limit_fails_with_the_reason() {
    let mut cfg = test_config();
    cfg.ingest.max_pixels = 320 * 180;
    let sys =
        TestSystem::start(cfg, Roles { gateway: true, ingest: true, inference: false, sink: false }).await;
    let clip = ClipSpec::standard().render(&std::env::temp_dir().join("sightline-test-clips")).await.unwrap();
    let live = LiveHls::start(&clip, &std::env::temp_dir().join(common::unique("sl-big")), 0).await.unwrap();
    let (s, j) = sys.http("POST", "/v1/streams", Some(&format!(r#"{{"url": "{}"}}"#, live.url))).await;
    assert_eq!(s, 201, "{j}");
    let id = j["id"].as_str().unwrap().to_string();
    let v = status_until(&sys, &id, Duration::from_secs(30), |v| v["status"] == "failed").await;
    assert_eq!(v["detail"]["last_retry_reason"], "refused", "{v}");
    assert!(v["detail"]["last_error"].as_str().unwrap_or_default().contains("640x360"), "{v}");
    assert_eq!(v["detail"]["decoded_frames"], 0, "{v}");
    sys.shutdown().await;
}
