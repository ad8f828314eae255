//! What the capacity harness plays and listens to: a live source per stream (HLS or RTMP on
//! loopback) and the websocket feed, read on a task of its own.

use crate::capacity::now_ms;
use anyhow::{Context, Result};
use futures::StreamExt;
use serde::Serialize;
use std::time::Duration;

/// How the harness serves its sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// A live HLS playlist per stream (an HTTP server on loopback).
    Hls,
    /// An RTMP server per stream (nginx-rtmp on loopback) that ffmpeg pushes the clip to.
    Rtmp,
}

/// One live source the harness plays.
pub(crate) enum Source {
    Hls(sightline_testkit::LiveHls),
    Rtmp(sightline_testkit::RtmpServer),
}

impl Source {
    pub(crate) async fn start(
        protocol: Protocol,
        clip: &std::path::Path,
        dir: &std::path::Path,
    ) -> Result<Self> {
        Ok(match protocol {
            Protocol::Hls => Source::Hls(sightline_testkit::LiveHls::start(clip, dir, 0).await?),
            Protocol::Rtmp => {
                let mut server = sightline_testkit::RtmpServer::start(dir).await?;
                server.push(clip, "capacity", 0)?;
                // The push needs a moment before the stream can be played.
                tokio::time::sleep(Duration::from_secs(2)).await;
                Source::Rtmp(server)
            }
        })
    }

    pub(crate) fn url(&self) -> String {
        match self {
            Source::Hls(h) => h.url.clone(),
            Source::Rtmp(r) => r.url("capacity"),
        }
    }
}

/// The websocket feed, read on a task of its own so that nothing the harness does (starting
/// sources, registering streams) keeps it from reading: the gateway cuts off a client that stops
/// reading (its per-client buffer is bounded), and the events would be lost. Each text message is
/// handed over with the time it arrived. A closed feed is reconnected after a second, and counted.
pub(crate) struct Feed {
    pub(crate) rx: tokio::sync::mpsc::UnboundedReceiver<(i64, String)>,
    pub(crate) reconnects: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Feed {
    pub(crate) async fn connect(url: String) -> Result<Self> {
        use tokio_tungstenite::tungstenite::Message;
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.context("connecting to the feed")?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let reconnects = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = reconnects.clone();
        let task = tokio::spawn(async move {
            loop {
                while let Some(m) = ws.next().await {
                    match m {
                        Ok(Message::Text(t)) => {
                            if tx.send((now_ms(), t.to_string())).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if tx.is_closed() {
                        return;
                    }
                    if let Ok((again, _)) = tokio_tungstenite::connect_async(&url).await {
                        ws = again;
                        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        break;
                    }
                }
            }
        });
        Ok(Self { rx, reconnects, task })
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}
