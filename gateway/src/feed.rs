//! `GET /v1/feed`: events as they happen over a websocket, filtered by stream and kinds. Each
//! message carries its JetStream sequence; `since=SEQ` replays from just after it, then goes live.
//! A client that cannot keep up fills a bounded buffer and is then closed with a reason.

use crate::error::ApiError;
use crate::routes::AppState;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use sightline_wire::{Event, EventKind, FeedItem};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    stream: Option<String>,
    /// Comma-separated kinds (scene, transcript); all when absent.
    kinds: Option<String>,
    /// Resume after this JetStream sequence.
    since: Option<u64>,
}

pub async fn feed(
    State(st): State<AppState>,
    Query(q): Query<FeedQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let kinds: Vec<EventKind> = match &q.kinds {
        None => EventKind::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|k| {
                EventKind::parse(k.trim()).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_kind",
                        format!("unknown kind `{k}`; kinds are scene, transcript"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    if let Some(s) = &q.stream {
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ApiError::bad_request(
                "invalid_stream",
                "stream ids are letters, digits, '-' and '_'",
            ));
        }
    }
    let n = &st.bus.names;
    let filters: Vec<String> = kinds.iter().map(|k| n.events_filter(Some(*k), q.stream.as_deref())).collect();
    let deliver = match q.since {
        Some(seq) => DeliverPolicy::ByStartSequence { start_sequence: seq + 1 },
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
    let messages = consumer.messages().await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    let buffer = st.cfg.gateway.feed_buffer;
    let heartbeat = Duration::from_secs(st.cfg.gateway.feed_heartbeat_s.max(1));
    let metrics = st.metrics.clone();
    Ok(ws.on_upgrade(move |socket| async move {
        metrics.feed_clients.inc();
        run_feed(socket, messages, buffer, heartbeat).await;
        metrics.feed_clients.dec();
    }))
}

async fn run_feed(socket: WebSocket, mut messages: pull::Ordered, buffer: usize, heartbeat: Duration) {
    let (mut tx, mut rx) = socket.split();
    let (q_tx, mut q_rx) = mpsc::channel::<String>(buffer);
    // Reader: JetStream → bounded queue. A full queue means the client is too slow.
    let reader = tokio::spawn(async move {
        while let Some(m) = messages.next().await {
            let Ok(m) = m else { break };
            let Ok(info) = m.info() else { continue };
            let seq = info.stream_sequence;
            let Ok(event) = serde_json::from_slice::<Event>(&m.payload) else { continue };
            let text = serde_json::to_string(&FeedItem { seq, event: event.for_clients() }).expect("feed item serialises");
            if q_tx.try_send(text).is_err() {
                return Some("client too slow: feed buffer full; reconnect with since=<last seq>");
            }
        }
        None
    });
    let mut ping = tokio::time::interval(heartbeat);
    ping.tick().await;
    let close_reason = loop {
        tokio::select! {
            item = q_rx.recv() => match item {
                Some(text) => {
                    if tx.send(Message::Text(text.into())).await.is_err() {
                        break None;
                    }
                }
                None => break Some("feed ended"),
            },
            _ = ping.tick() => {
                if tx.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break None;
                }
            }
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                _ => {}
            },
        }
    };
    reader.abort();
    let reason = match reader.await {
        Ok(Some(r)) => Some(r),
        _ => close_reason,
    };
    if let Some(reason) = reason {
        let _ = tx.send(Message::Close(Some(CloseFrame { code: 1008, reason: reason.into() }))).await;
    }
}
