//! The egress proxy against hostile HTTP sources on loopback: 127.0.0.1 on one port is the
//! allowed source; 127.0.0.2 stands for an internal service that must never be reached.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use sightline_egress::{EgressConfig, EgressProxy, PlaylistLimits, check_source};
use sightline_policy::AllowList;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type Routes = Arc<Mutex<HashMap<String, (u16, Vec<(String, String)>, Vec<u8>)>>>;

/// A server answering fixed routes and counting every request it gets.
struct Server {
    base: String,
    routes: Routes,
    hits: Arc<AtomicU64>,
    _task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(ip: &str) -> Server {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Routes = Arc::default();
        let hits = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::get(answer))
            .with_state((routes.clone(), hits.clone()));
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { base: format!("http://{addr}"), routes, hits, _task: task }
    }

    fn set(&self, path: &str, status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.routes.lock().unwrap().insert(path.to_string(), (status, headers, body.into()));
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }
}

async fn answer(
    State((routes, hits)): State<(Routes, Arc<AtomicU64>)>,
    Path(path): Path<String>,
) -> impl IntoResponse {
    hits.fetch_add(1, Ordering::SeqCst);
    let Some((status, headers, body)) = routes.lock().unwrap().get(&path).cloned() else {
        return (StatusCode::NOT_FOUND, HeaderMap::new(), Vec::new());
    };
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    (StatusCode::from_u16(status).unwrap(), map, body)
}

fn config(allowed: &Server) -> EgressConfig {
    EgressConfig {
        allow: AllowList::parse(&[format!("127.0.0.1:{}", allowed.port())]).unwrap(),
        limits: PlaylistLimits { max_bytes: 4096, max_segments: 5, max_variants: 2 },
        max_media_bytes: 1000,
        max_redirects: 2,
    }
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

fn proxied_uris(playlist: &str) -> Vec<String> {
    playlist.lines().filter(|l| l.starts_with("http://")).map(String::from).collect()
}

#[tokio::test]
async fn serves_a_checked_master_variant_and_segment() {
    let src = Server::start("127.0.0.1").await;
    src.set("live/master.m3u8", 200, &[], "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv/index.m3u8\n");
    src.set("live/v/index.m3u8", 200, &[], "#EXTM3U\n#EXTINF:1,\nseg1.ts\n");
    src.set("live/v/seg1.ts", 200, &[], vec![0x47u8; 376]);
    let proxy = EgressProxy::start(config(&src)).await.unwrap();
    let lease = proxy.open(&src.url("live/master.m3u8"));
    let (status, master) = get(lease.url()).await;
    assert_eq!(status, 200, "{master}");
    let variant = proxied_uris(&master);
    assert_eq!(variant.len(), 1);
    assert!(
        variant[0].starts_with(&lease.url()[..lease.url().find("/e/").unwrap()])
            && !master.contains("index.m3u8\n")
    );
    let (status, media) = get(&variant[0]).await;
    assert_eq!(status, 200, "{media}");
    let seg = proxied_uris(&media);
    let bytes = reqwest::get(&seg[0]).await.unwrap().bytes().await.unwrap();
    assert_eq!(bytes.len(), 376);
    assert_eq!((lease.refusal(), src.hits.load(Ordering::SeqCst)), (None, 3));
    drop(lease);
    assert_eq!(proxy.sessions(), 0);
    assert_eq!(get(&seg[0]).await.0, 404, "a closed session serves nothing");
}

#[tokio::test]
async fn never_reaches_an_internal_address_named_by_a_playlist_or_a_redirect() {
    let src = Server::start("127.0.0.1").await;
    let inside = Server::start("127.0.0.2").await;
    inside.set("secret", 200, &[], "internal");
    let cases = [
        ("segment.m3u8", format!("#EXTM3U\n#EXTINF:1,\n{}\n", inside.url("secret"))),
        (
            "key.m3u8",
            format!(
                "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"{}\"\n#EXTINF:1,\ns.ts\n",
                inside.url("secret")
            ),
        ),
        ("map.m3u8", format!("#EXTM3U\n#EXT-X-MAP:URI=\"{}\"\n#EXTINF:1,\ns.ts\n", inside.url("secret"))),
        ("meta.m3u8", "#EXTM3U\n#EXTINF:1,\nhttp://169.254.169.254/latest/meta-data\n".to_string()),
        ("nat64.m3u8", "#EXTM3U\n#EXTINF:1,\nhttp://[64:ff9b::7f00:2]/x.ts\n".to_string()),
        ("decimal.m3u8", "#EXTM3U\n#EXTINF:1,\nhttp://2130706434/x.ts\n".to_string()),
        ("otherport.m3u8", "#EXTM3U\n#EXTINF:1,\nhttp://127.0.0.1:1/x.ts\n".to_string()),
    ];
    let proxy = EgressProxy::start(config(&src)).await.unwrap();
    for (path, text) in &cases {
        src.set(path, 200, &[], text.as_str());
        let lease = proxy.open(&src.url(path));
        let (status, rewritten) = get(lease.url()).await;
        assert_eq!(status, 200, "{path}: the playlist itself is fine");
        let quoted = rewritten.split('"').filter(|s| s.starts_with("http://")).map(String::from);
        for uri in proxied_uris(&rewritten).into_iter().chain(quoted) {
            let _ = get(&uri).await;
        }
        let why = lease.refusal().unwrap_or_else(|| panic!("{path}: no refusal"));
        assert!(why.contains("internal") || why.contains("special-purpose"), "{path}: {why}");
    }
    // A redirect to the inside, directly and after a hop on the allowed host.
    src.set("hop1", 302, &[("location", "/hop2")], "");
    src.set("hop2", 301, &[("location", &inside.url("secret"))], "");
    let lease = proxy.open(&src.url("hop1"));
    assert_eq!(get(lease.url()).await.0, 403);
    assert!(lease.refusal().unwrap().contains("127.0.0.2"));
    assert_eq!(inside.hits.load(Ordering::SeqCst), 0, "the internal server was never contacted");
    // The registration check refuses the same.
    let cfg = config(&src);
    assert!(check_source(&cfg, &src.url("hop1")).await.unwrap_err().0.contains("127.0.0.2"));
    assert!(check_source(&cfg, &src.url("key.m3u8")).await.is_ok(), "its URIs are checked when fetched");
    assert!(check_source(&cfg, &inside.url("secret")).await.is_err());
    assert_eq!(inside.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn refuses_sources_over_their_limits() {
    let src = Server::start("127.0.0.1").await;
    let proxy = EgressProxy::start(config(&src)).await.unwrap();
    let refused = |path: &str| {
        let lease = proxy.open(&src.url(path));
        async move {
            let (status, text) = get(lease.url()).await;
            let uris = proxied_uris(&text);
            let mut last = status;
            for u in &uris {
                last = reqwest::get(u).await.map(|r| r.status().as_u16()).unwrap_or(0);
                let _ = reqwest::get(u).await.map(|r| async { r.bytes().await });
            }
            (last, lease.refusal())
        }
    };
    // A live playlist that grows past the segment limit on a later refresh.
    src.set("grow.m3u8", 200, &[], "#EXTM3U\n#EXTINF:1,\na.ts\n");
    let lease = proxy.open(&src.url("grow.m3u8"));
    assert_eq!(get(lease.url()).await.0, 200);
    src.set("grow.m3u8", 200, &[], "#EXTM3U\n".to_string() + &"#EXTINF:1,\na.ts\n".repeat(6));
    assert_eq!(get(lease.url()).await.0, 403);
    assert!(lease.refusal().unwrap().contains("6 segments"));
    // Too large, nested masters, markup manifests, redirect loops, oversized segments.
    src.set("big.m3u8", 200, &[], "#EXTM3U\n".to_string() + &"#".repeat(5000));
    assert!(refused("big.m3u8").await.1.unwrap().contains("larger than 4096"));
    src.set("m1.m3u8", 200, &[], "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nm2.m3u8\n");
    src.set("m2.m3u8", 200, &[], "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nm1.m3u8\n");
    assert!(refused("m1.m3u8").await.1.unwrap().contains("nested"));
    src.set("stream.mpd", 200, &[("content-type", "application/dash+xml")], "<?xml version=\"1.0\"?><MPD/>");
    assert!(refused("stream.mpd").await.1.unwrap().contains("DASH"));
    src.set("loop", 302, &[("location", "/loop")], "");
    assert!(refused("loop").await.1.unwrap().contains("more than 2 redirects"));
    src.set("fat.m3u8", 200, &[], "#EXTM3U\n#EXTINF:1,\nfat.ts\n");
    src.set("fat.ts", 200, &[], vec![0u8; 5000]);
    assert!(refused("fat.m3u8").await.1.unwrap().contains("larger than 1000 bytes"));
    // A source that is merely down is not a refusal.
    let lease = proxy.open(&src.url("missing.m3u8"));
    assert_eq!(get(lease.url()).await.0, 404);
    assert_eq!(lease.refusal(), None);
    assert!(lease.last_error().unwrap().contains("404"));
}
