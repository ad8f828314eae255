//! A NATS JetStream cluster of several servers on loopback (routes between them), for the
//! scale-out tests and `make cluster`: each server on its own client, route and monitoring port
//! with its own data folder; any one can be killed and started again.

use crate::{TestSourceError, pick_port};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct NatsServer {
    pub name: String,
    pub port: u16,
    pub route_port: u16,
    pub monitor_port: u16,
    pub dir: PathBuf,
    routes: String,
    child: Option<tokio::process::Child>,
}

pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
}

impl NatsServer {
    fn spawn(&mut self) -> Result<(), TestSourceError> {
        std::fs::create_dir_all(&self.dir)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("server.log"))?;
        let child = tokio::process::Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor_port.to_string(), "--server_name", &self.name])
            .args([
                "--cluster_name",
                "sightline",
                "--cluster",
                &format!("nats://127.0.0.1:{}", self.route_port),
            ])
            .args(["--routes", &self.routes, "-sd"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TestSourceError::Tool {
                tool: "nats-server",
                detail: format!("cannot start: {e}"),
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, as a crash.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Starts it again on the same ports and data.
    pub async fn restart(&mut self) -> Result<(), TestSourceError> {
        self.kill().await;
        self.spawn()?;
        crate::wait_port(self.port, "nats-server").await
    }

    /// The last `lines` lines of the server's log, joined by " / " (for an error).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join(" / ")
    }

    /// Whether the server says JetStream is ready (`/healthz?js-enabled-only=true`).
    pub async fn healthy(&self) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.monitor_port)).await else {
            return false;
        };
        let req = "GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if s.write_all(req.as_bytes()).await.is_err() {
            return false;
        }
        let mut out = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out)).await;
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200")
    }
}

impl NatsCluster {
    /// Starts `n` servers under `dir` and waits until every one has JetStream ready (a meta
    /// leader elected). A fresh cluster is usually ready within a second; when one is not ready
    /// within 30 s (a server that could not take its ports, an election that stalled) it is
    /// killed and a new one started on fresh ports and data, up to three times; the error then
    /// carries each server's last log lines.
    pub async fn start(dir: &Path, n: usize) -> Result<Self, TestSourceError> {
        let mut failures = Vec::new();
        for attempt in 0..3 {
            let mut cluster = Self::spawn_all(&dir.join(format!("try{attempt}")), n)?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while tokio::time::Instant::now() < deadline {
                if cluster.all_healthy().await {
                    if attempt > 0 {
                        eprintln!("NATS cluster: ready on try {attempt}");
                    }
                    return Ok(cluster);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let mut tails = Vec::new();
            for s in &mut cluster.servers {
                let exited = match s.child.as_mut().map(|c| c.try_wait()) {
                    Some(Ok(Some(status))) => format!(" (exited: {status})"),
                    _ => String::new(),
                };
                tails.push(format!("{}{exited}: {}", s.name, s.log_tail(4)));
                s.kill().await;
            }
            eprintln!(
                "NATS cluster: JetStream not ready within 30 s on try {attempt}: {}",
                tails.join(" | ")
            );
            failures.push(tails.join(" | "));
        }
        Err(TestSourceError::Tool {
            tool: "nats-server",
            detail: format!(
                "the cluster's JetStream was not ready within 30 s, 3 times; last: {}",
                failures.pop().unwrap_or_default()
            ),
        })
    }

    fn spawn_all(dir: &Path, n: usize) -> Result<Self, TestSourceError> {
        let mut servers = Vec::new();
        for i in 0..n {
            servers.push(NatsServer {
                name: format!("n{}", i + 1),
                port: pick_port()?,
                route_port: pick_port()?,
                monitor_port: pick_port()?,
                dir: dir.join(format!("n{}", i + 1)),
                routes: String::new(),
                child: None,
            });
        }
        let routes: Vec<String> =
            servers.iter().map(|s| format!("nats://127.0.0.1:{}", s.route_port)).collect();
        for s in &mut servers {
            s.routes = routes.join(",");
            s.spawn()?;
        }
        Ok(Self { servers })
    }

    async fn all_healthy(&self) -> bool {
        for s in &self.servers {
            if !s.healthy().await {
                return false;
            }
        }
        true
    }

    /// Every server's client URL, comma-separated (what `nats.url` takes).
    pub fn url(&self) -> String {
        self.servers.iter().map(|s| format!("nats://127.0.0.1:{}", s.port)).collect::<Vec<_>>().join(",")
    }
}
