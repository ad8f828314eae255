//! Synthetic test media, made here and never fetched: a clip with hard cuts at known times,
//! burned-in captions and speech from espeak-ng, and a live sliding-window HLS stream of it served
//! on loopback. Used by the end-to-end tests and by `make run`'s demo stream.

mod clip;
mod nats;
pub mod quality;
mod servers;
mod speech;

pub use clip::*;
pub use nats::{NatsCluster, NatsServer};
pub use servers::*;
pub use speech::*;

use std::process::Stdio;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum TestSourceError {
    #[error("{tool} failed: {detail}")]
    Tool { tool: &'static str, detail: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("live HLS did not produce a playlist within {0} s")]
    NoPlaylist(u64),
}

pub(crate) fn fxhash(s: &str) -> u64 {
    sightline_wire::stable_hash([s.as_bytes()])
}

pub(crate) async fn run(tool: &'static str, args: &[&str]) -> Result<(), TestSourceError> {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| TestSourceError::Tool { tool, detail: format!("cannot start: {e}") })?;
    if !out.status.success() {
        let detail = String::from_utf8_lossy(&out.stderr).chars().take(2000).collect();
        return Err(TestSourceError::Tool { tool, detail });
    }
    Ok(())
}

/// A loopback port for a test server to listen on.
///
/// Ports come from 20000–31999, below Linux's ephemeral range (32768 and up), so between the pick
/// and the server's bind no outgoing connection can take the port, and a readiness probe cannot
/// connect to itself (a client whose ephemeral source port equals the port it dials gets a
/// "simultaneous open" and a connection that looks like a server). Each call in a process gets
/// the next port from a per-process starting point, so concurrent tests never pick the same one.
pub fn pick_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let port = (LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free loopback port in 20000-31999"))
}

pub(crate) async fn free_port() -> Result<u16, TestSourceError> {
    Ok(pick_port()?)
}

/// Whether something listens on the loopback `port` (a connection that is not to itself).
pub async fn listening(port: u16) -> bool {
    match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
        Ok(s) => s.local_addr().map(|a| a.port() != port).unwrap_or(false),
        Err(_) => false,
    }
}

pub(crate) async fn wait_port(port: u16, what: &'static str) -> Result<(), TestSourceError> {
    for _ in 0..100 {
        if listening(port).await {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(TestSourceError::Tool { tool: what, detail: format!("not listening on port {port} after 5 s") })
}
