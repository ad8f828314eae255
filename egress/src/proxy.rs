//! The loopback HLS proxy. GStreamer's HLS demuxer fetches variants, segments and keys itself,
//! with no hook to check them, so an HTTP stream is never handed to GStreamer as the user wrote
//! it: the pipeline reads `http://127.0.0.1:<port>/e/<token>` instead, and every fetch behind it
//! goes through the [`Fetcher`] (address policy, pinned address, checked redirects). Playlists are
//! checked against their limits on every refresh and rewritten so that each URI they name points
//! back here; media is passed through under a byte cap. A refusal is remembered on the session, so
//! the stream fails with the reason instead of GStreamer's generic download error.

use crate::fetch::{FetchError, Fetched, Fetcher};
use crate::playlist::{self, PlaylistError, PlaylistLimits, UriKind};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sightline_policy::{AllowList, redact_url};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A source that sends nothing for this long has its answer ended (GStreamer retries).
const IDLE: Duration = Duration::from_secs(15);
/// Playlist nesting: master → variant → (rendition report) → no further.
const MAX_DEPTH: u32 = 3;

#[derive(Debug, Clone)]
pub struct EgressConfig {
    pub allow: AllowList,
    pub limits: PlaylistLimits,
    /// Largest segment, key or init section passed through, bytes.
    pub max_media_bytes: u64,
    pub max_redirects: u32,
}

/// What one pipeline's fetches came to. Read by the stream actor when the pipeline fails.
#[derive(Debug, Default)]
pub struct Session {
    upstream: String,
    refusal: Mutex<Option<String>>,
    last_error: Mutex<Option<String>>,
    pub fetches: AtomicU64,
    pub refusals: AtomicU64,
}

impl Session {
    fn answer(&self, e: &FetchError) -> Response {
        let text = e.to_string();
        if e.is_refusal() {
            return self.refuse(text);
        }
        tracing::debug!(error = %text, "source fetch failed");
        *self.last_error.lock().unwrap() = Some(text.clone());
        let status = match e {
            FetchError::Status { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            _ => StatusCode::BAD_GATEWAY,
        };
        (status, text).into_response()
    }

    fn refuse(&self, reason: String) -> Response {
        tracing::warn!(reason = %reason, "source refused by the egress policy");
        self.refusals.fetch_add(1, Ordering::Relaxed);
        *self.refusal.lock().unwrap() = Some(reason.clone());
        (StatusCode::FORBIDDEN, reason).into_response()
    }
}

struct Inner {
    fetcher: Fetcher,
    cfg: EgressConfig,
    base: String,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

/// The proxy, one per ingest node.
pub struct EgressProxy {
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

/// One pipeline's way through the proxy; dropping it closes the session.
pub struct Lease {
    token: String,
    url: String,
    session: Arc<Session>,
    inner: Arc<Inner>,
}

impl Lease {
    /// The URL the pipeline reads.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Why the source was refused, if it was (policy or limits; retrying would not help).
    pub fn refusal(&self) -> Option<String> {
        self.session.refusal.lock().unwrap().clone()
    }

    /// The last fetch that failed for another reason (unreachable, an error status).
    pub fn last_error(&self) -> Option<String> {
        self.session.last_error.lock().unwrap().clone()
    }

    pub fn session(&self) -> &Session {
        &self.session
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.inner.sessions.lock().unwrap().remove(&self.token);
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

impl EgressProxy {
    /// Listens on an ephemeral loopback port.
    pub async fn start(cfg: EgressConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            fetcher: Fetcher::new(cfg.allow.clone(), cfg.max_redirects),
            cfg,
            base: format!("http://{addr}"),
            sessions: Mutex::new(HashMap::new()),
        });
        let app = axum::Router::new()
            .route("/e/{token}", axum::routing::get(entry))
            .route("/p/{token}/{depth}/{file}", axum::routing::get(variant))
            .route("/m/{token}/{file}", axum::routing::get(media))
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "egress proxy stopped");
            }
        });
        tracing::info!(%addr, "egress proxy listening on loopback");
        Ok(Self { inner, server })
    }

    /// Opens a session for one pipeline reading `upstream` (an http or https URL).
    pub fn open(&self, upstream: &str) -> Lease {
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let session = Arc::new(Session { upstream: upstream.to_string(), ..Default::default() });
        self.inner.sessions.lock().unwrap().insert(token.clone(), session.clone());
        let url = format!("{}/e/{token}", self.inner.base);
        Lease { token, url, session, inner: self.inner.clone() }
    }

    /// Sessions open now (one per HTTP pipeline).
    pub fn sessions(&self) -> usize {
        self.inner.sessions.lock().unwrap().len()
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn session(inner: &Inner, token: &str) -> Option<Arc<Session>> {
    inner.sessions.lock().unwrap().get(token).cloned()
}

async fn entry(State(inner): State<Arc<Inner>>, Path(token): Path<String>) -> Response {
    let Some(s) = session(&inner, &token) else { return StatusCode::NOT_FOUND.into_response() };
    s.fetches.fetch_add(1, Ordering::Relaxed);
    let fetched = match inner.fetcher.get(&s.upstream).await {
        Ok(f) => f,
        Err(e) => return s.answer(&e),
    };
    let path = fetched.url.split(['?', '#']).next().unwrap_or("").to_ascii_lowercase();
    if fetched.content_type.contains("mpegurl") || path.ends_with(".m3u8") {
        return serve_playlist(&inner, &token, &s, fetched, Bytes::new(), 0).await;
    }
    // Anything else is looked at before GStreamer sees it: a playlist served under another name
    // is still rewritten, and a manifest GStreamer would follow on its own (DASH, Smooth) is refused.
    let (prefix, body) = match peek(fetched.body, 16).await {
        Ok(p) => p,
        Err(e) => return s.answer(&e),
    };
    if playlist::looks_like_playlist(&prefix) {
        let fetched = Fetched { body, ..fetched };
        return serve_playlist(&inner, &token, &s, fetched, prefix, 0).await;
    }
    if prefix.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<') {
        return s.refuse(
            "the source answered with markup (a DASH or Smooth Streaming manifest, or a web page), not media or an HLS playlist"
                .into(),
        );
    }
    stream(prefix, body, &fetched.content_type, None, s)
}

async fn variant(
    State(inner): State<Arc<Inner>>,
    Path((token, depth, file)): Path<(String, u32, String)>,
) -> Response {
    let Some(s) = session(&inner, &token) else { return StatusCode::NOT_FOUND.into_response() };
    let Some(url) = file.strip_suffix(".m3u8").and_then(unhex) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    s.fetches.fetch_add(1, Ordering::Relaxed);
    match inner.fetcher.get(&url).await {
        Ok(f) => serve_playlist(&inner, &token, &s, f, Bytes::new(), depth).await,
        Err(e) => s.answer(&e),
    }
}

async fn media(State(inner): State<Arc<Inner>>, Path((token, file)): Path<(String, String)>) -> Response {
    let Some(s) = session(&inner, &token) else { return StatusCode::NOT_FOUND.into_response() };
    let Some(url) = unhex(&file) else { return StatusCode::NOT_FOUND.into_response() };
    s.fetches.fetch_add(1, Ordering::Relaxed);
    match inner.fetcher.get(&url).await {
        Ok(f) => {
            let ct = f.content_type.clone();
            stream(Bytes::new(), f.body, &ct, Some(inner.cfg.max_media_bytes), s)
        }
        Err(e) => s.answer(&e),
    }
}

/// Reads at least `n` bytes of a body (fewer if it ends).
async fn peek(mut body: Incoming, n: usize) -> Result<(Bytes, Incoming), FetchError> {
    let mut buf = bytes::BytesMut::new();
    while buf.len() < n {
        match tokio::time::timeout(IDLE, body.frame()).await.map_err(|_| FetchError::Timeout(IDLE))? {
            None => break,
            Some(frame) => {
                if let Ok(data) = frame.map_err(|e| FetchError::Http(e.to_string()))?.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
    Ok((buf.freeze(), body))
}

async fn serve_playlist(
    inner: &Inner,
    token: &str,
    s: &Session,
    fetched: Fetched,
    prefix: Bytes,
    depth: u32,
) -> Response {
    let limits = inner.cfg.limits;
    let base_url = fetched.url.clone();
    let rest = limits.max_bytes.saturating_sub(prefix.len() as u64);
    let body = match fetched.read_capped(rest, IDLE).await {
        Ok(b) => b,
        Err(FetchError::TooLarge(_)) => {
            return s.refuse(PlaylistError::TooLarge(limits.max_bytes).to_string());
        }
        Err(e) => return s.answer(&e),
    };
    let mut all = prefix.to_vec();
    all.extend_from_slice(&body);
    let Ok(text) = String::from_utf8(all) else {
        return s.refuse(format!("the playlist at {} is not UTF-8 text", redact_url(&base_url)));
    };
    let checked = playlist::check_text(&text, &limits).and_then(|()| {
        if depth > 0 && playlist::is_master(&text) || depth >= MAX_DEPTH {
            return Err(PlaylistError::Nested);
        }
        playlist::rewrite(&text, &base_url, |kind, url| match kind {
            UriKind::Playlist => format!("{}/p/{token}/{}/{}.m3u8", inner.base, depth + 1, hex(url)),
            UriKind::Media => format!("{}/m/{token}/{}", inner.base, hex(url)),
        })
    });
    match checked {
        Ok(rewritten) => {
            ([(header::CONTENT_TYPE, "application/vnd.apple.mpegurl")], rewritten).into_response()
        }
        Err(e) => s.refuse(e.to_string()),
    }
}

/// Passes a body through, ending it (and refusing the source) past `cap` bytes.
fn stream(prefix: Bytes, body: Incoming, content_type: &str, cap: Option<u64>, s: Arc<Session>) -> Response {
    let rest = futures::stream::unfold((body, prefix.len() as u64, false), move |(mut body, sent, done)| {
        let s = s.clone();
        async move {
            if done {
                return None;
            }
            loop {
                let frame = match tokio::time::timeout(IDLE, body.frame()).await {
                    Err(_) => return Some((Err(std::io::Error::other("source idle")), (body, sent, true))),
                    Ok(None) => return None,
                    Ok(Some(Err(e))) => return Some((Err(std::io::Error::other(e)), (body, sent, true))),
                    Ok(Some(Ok(f))) => f,
                };
                let Ok(data) = frame.into_data() else { continue };
                let sent = sent + data.len() as u64;
                if let Some(cap) = cap.filter(|c| sent > *c) {
                    s.refuse(FetchError::TooLarge(cap).to_string());
                    return Some((Err(std::io::Error::other("over the byte cap")), (body, sent, true)));
                }
                return Some((Ok(data), (body, sent, false)));
            }
        }
    });
    let first = futures::stream::iter((!prefix.is_empty()).then_some(Ok::<_, std::io::Error>(prefix)));
    let ct = if content_type.is_empty() { "application/octet-stream" } else { content_type };
    ([(header::CONTENT_TYPE, ct.to_string())], Body::from_stream(first.chain(rest))).into_response()
}

/// Why a source is refused at registration (the policy, or a playlist's limits or URIs).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct Refusal(pub String);

impl From<FetchError> for Refusal {
    fn from(e: FetchError) -> Self {
        Self(e.to_string())
    }
}

impl From<PlaylistError> for Refusal {
    fn from(e: PlaylistError) -> Self {
        Self(e.to_string())
    }
}

/// The registration check: fetches the source once under the policy and, when it is a playlist,
/// checks it against the limits and its URIs against the URL rules. `Err` is a refusal; a
/// source that cannot be reached now is not refused (the stream shows `reconnecting`).
pub async fn check_source(cfg: &EgressConfig, url: &str) -> Result<(), Refusal> {
    let fetcher = Fetcher::new(cfg.allow.clone(), cfg.max_redirects);
    let fetched = match fetcher.get(url).await {
        Ok(f) => f,
        Err(e) if e.is_refusal() => return Err(e.into()),
        Err(_) => return Ok(()),
    };
    let base = fetched.url.clone();
    let (prefix, body) = match peek(fetched.body, 16).await {
        Ok(p) => p,
        Err(_) => return Ok(()),
    };
    if !playlist::looks_like_playlist(&prefix) {
        return Ok(());
    }
    let fetched = Fetched { url: base.clone(), status: 200, content_type: String::new(), body };
    let rest = cfg.limits.max_bytes.saturating_sub(prefix.len() as u64);
    let body = match fetched.read_capped(rest, IDLE).await {
        Ok(b) => b,
        Err(FetchError::TooLarge(_)) => return Err(PlaylistError::TooLarge(cfg.limits.max_bytes).into()),
        Err(_) => return Ok(()),
    };
    let text = String::from_utf8_lossy(&[&prefix[..], &body[..]].concat()).into_owned();
    playlist::check_text(&text, &cfg.limits)?;
    playlist::rewrite(&text, &base, |_, u| u.to_string())?;
    Ok(())
}
