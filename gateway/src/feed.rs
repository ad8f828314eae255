//! `GET /v1/feed`: events as they happen over a websocket, filtered by stream and kinds. Each
//! message carries its JetStream sequence; `since=SEQ` replays from just after it, then goes live.
//! A client that cannot keep up fills a bounded buffer and is then closed with a reason.
//! `GET /v1/feed/sse` serves the same feed as server-sent events for simple clients (each event's
//! `id` is its sequence, so `Last-Event-ID` resumes); there the client's own reading paces the
//! consumer, so nothing piles up in the gateway.

use crate::error::ApiError;
use crate::feed_guard::{Caller, Slot, check_origin};
use crate::routes::AppState;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Query, State};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use sightline_wire::{Event, EventKind, FeedItem};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    stream: Option<String>,
    /// Comma-separated kinds (scene, transcript); all when absent.
    kinds: Option<String>,
    /// Resume after this JetStream sequence.
    since: Option<u64>,
    /// API key, for clients that cannot send an Authorization header.
    #[allow(dead_code)]
    access_token: Option<String>,
}

/// Live feed over a websocket: one JSON message per event, with its JetStream `seq`.
#[utoipa::path(get, path = "/v1/feed", params(FeedQuery), tag = "feed",
    responses((status = 101, description = "websocket upgrade; then one JSON event per message"),
              (status = 400, description = "bad filter", body = crate::error::ErrorBody)))]
pub async fn feed(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    caller: Option<Extension<Caller>>,
    q: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let slot = admit(&st, &headers, caller)?;
    let messages = open(&st, &q, q.since).await?;
    let g = &st.cfg.gateway;
    let limits = Limits {
        buffer: g.feed_buffer,
        heartbeat: Duration::from_secs(g.feed_heartbeat_s.max(1)),
        send_timeout: Duration::from_secs(g.feed_send_timeout_s.max(1)),
    };
    let metrics = st.metrics.clone();
    let closed = st.closed();
    // A feed only sends: what a client sends is at most a close or a pong, so frames are small.
    let ws = ws.max_message_size(MAX_INCOMING).max_frame_size(MAX_INCOMING);
    Ok(ws.on_upgrade(move |socket| async move {
        let _slot = slot;
        metrics.feed_clients.inc();
        run_feed(socket, messages, limits, closed).await;
        metrics.feed_clients.dec();
    }))
}

/// Largest message a feed client may send, bytes.
const MAX_INCOMING: usize = 4096;

/// The origin check and a feed slot for the caller.
fn admit(
    st: &AppState,
    headers: &axum::http::HeaderMap,
    caller: Option<Extension<Caller>>,
) -> Result<Slot, ApiError> {
    let g = &st.cfg.gateway;
    check_origin(headers, &g.allowed_origins)?;
    let who = caller.map(|c| c.0.0).unwrap_or_default();
    st.feeds.take(&who, g.max_feeds, g.max_feeds_per_key)
}

/// What bounds one websocket feed.
struct Limits {
    /// Events queued for the client before it is closed as too slow.
    buffer: usize,
    heartbeat: Duration,
    /// Longest a send (or the answer to a ping) may take before the client is closed as stalled.
    send_timeout: Duration,
}

/// The same feed as server-sent events; `Last-Event-ID` (or `since`) resumes after a sequence.
#[utoipa::path(get, path = "/v1/feed/sse", params(FeedQuery), tag = "feed",
    responses((status = 200, description = "text/event-stream; `id` is the sequence, `data` the event JSON", content_type = "text/event-stream"),
              (status = 400, description = "bad filter", body = crate::error::ErrorBody)))]
pub async fn feed_sse(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    caller: Option<Extension<Caller>>,
    q: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    use axum::response::IntoResponse;
    use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let slot = admit(&st, &headers, caller)?;
    let last =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let messages = open(&st, &q, last.or(q.since)).await?;
    let metrics = st.metrics.clone();
    metrics.feed_clients.inc();
    let guard = (FeedClientGuard(metrics), slot);
    let events = messages.filter_map(move |m| {
        let _alive = &guard;
        let out = m.ok().and_then(|m| {
            let seq = m.info().ok()?.stream_sequence;
            let event = serde_json::from_slice::<Event>(&m.payload).ok()?;
            let json = serde_json::to_string(&FeedItem { seq, event: event.for_clients() }).ok()?;
            Some(Ok::<_, std::convert::Infallible>(SseEvent::default().id(seq.to_string()).data(json)))
        });
        async move { out }
    });
    let heartbeat = Duration::from_secs(st.cfg.gateway.feed_heartbeat_s.max(1));
    let events = events.take_until(st.closed());
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(heartbeat)).into_response())
}

struct FeedClientGuard(std::sync::Arc<sightline_telemetry::Metrics>);

impl Drop for FeedClientGuard {
    fn drop(&mut self) {
        self.0.feed_clients.dec();
    }
}

/// Opens an ordered consumer for the query's filters, starting after `since` or at new events.
async fn open(st: &AppState, q: &FeedQuery, since: Option<u64>) -> Result<pull::Ordered, ApiError> {
    let kinds: Vec<EventKind> = match &q.kinds {
        None => EventKind::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|k| {
                EventKind::parse(k.trim()).ok_or_else(|| {
                    let all: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                    ApiError::bad_request(
                        "invalid_kind",
                        format!("unknown kind `{k}`; kinds are {}", all.join(", ")),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    if let Some(s) = &q.stream
        && (s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return Err(ApiError::bad_request("invalid_stream", "stream ids are letters, digits, '-' and '_'"));
    }
    let n = &st.bus.names;
    let filters: Vec<String> = kinds.iter().map(|k| n.events_filter(Some(*k), q.stream.as_deref())).collect();
    let deliver = match since {
        Some(seq) => {
            let start_sequence = seq.checked_add(1).ok_or_else(|| {
                ApiError::bad_request("invalid_since", format!("since must be below {}", u64::MAX))
            })?;
            DeliverPolicy::ByStartSequence { start_sequence }
        }
        None => DeliverPolicy::New,
    };
    let stream =
        st.bus.js.get_stream(n.events_stream()).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subjects: filters,
            deliver_policy: deliver,
            ..Default::default()
        })
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot open the feed: {e}")))?;
    consumer.messages().await.map_err(|e| ApiError::unavailable(e.to_string()))
}

async fn run_feed(
    socket: WebSocket,
    mut messages: pull::Ordered,
    limits: Limits,
    closed: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(closed);
    let (mut tx, mut rx) = socket.split();
    let (q_tx, mut q_rx) = mpsc::channel::<String>(limits.buffer);
    // Reader: JetStream → bounded queue. A full queue means the client is too slow.
    let reader = tokio::spawn(async move {
        while let Some(m) = messages.next().await {
            let Ok(m) = m else { break };
            let Ok(info) = m.info() else { continue };
            let seq = info.stream_sequence;
            let Ok(event) = serde_json::from_slice::<Event>(&m.payload) else { continue };
            let text = serde_json::to_string(&FeedItem { seq, event: event.for_clients() })
                .expect("feed item serialises");
            if q_tx.try_send(text).is_err() {
                return Some("client too slow: feed buffer full; reconnect with since=<last seq>");
            }
        }
        None
    });
    let mut ping = tokio::time::interval(limits.heartbeat);
    ping.tick().await;
    // The client's last sign of life (any frame, a pong above all).
    let mut heard = tokio::time::Instant::now();
    let silent = "client silent: no answer to pings; reconnect with since=<last seq>";
    let stalled = "client stalled: a send did not complete; reconnect with since=<last seq>";
    let close_reason = loop {
        tokio::select! {
            item = q_rx.recv() => match item {
                Some(text) => {
                    match tokio::time::timeout(limits.send_timeout, tx.send(Message::Text(text.into()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break None,
                        Err(_) => break Some(stalled),
                    }
                }
                None => break Some("feed ended"),
            },
            _ = ping.tick() => {
                if heard.elapsed() > limits.heartbeat + limits.send_timeout {
                    break Some(silent);
                }
                match tokio::time::timeout(limits.send_timeout, tx.send(Message::Ping(Vec::new().into()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break None,
                    Err(_) => break Some(stalled),
                }
            }
            _ = &mut closed => break Some("server shutting down; reconnect with since=<last seq>"),
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                Some(Ok(_)) => heard = tokio::time::Instant::now(),
            },
        }
    };
    reader.abort();
    let reason = match reader.await {
        Ok(Some(r)) => Some(r),
        _ => close_reason,
    };
    if let Some(reason) = reason {
        // 1001 "going away" for a shutdown, 1008 "policy" for a client that fell behind.
        let code = if reason.starts_with("server shutting down") { 1001 } else { 1008 };
        let close = tx.send(Message::Close(Some(CloseFrame { code, reason: reason.into() })));
        let _ = tokio::time::timeout(limits.send_timeout, close).await;
    }
}
