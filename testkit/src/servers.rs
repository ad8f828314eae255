//! Loopback servers playing a clip live: HLS over HTTP, RTMP (nginx), RTSP (python3-gi).

use crate::TestSourceError;
use crate::{free_port, wait_port};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// A live sliding-window HLS stream of a clip, served over HTTP on 127.0.0.1. Dropping it stops
/// ffmpeg and the server. It can be stopped and restarted on the same port, as a source that
/// goes away and comes back.
pub struct LiveHls {
    pub url: String,
    pub dir: PathBuf,
    clip: PathBuf,
    loops: u32,
    port: u16,
    ffmpeg: Option<Child>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl LiveHls {
    /// Plays `clip` in real time `loops` times (0 = forever) into `dir` and serves it.
    pub async fn start(clip: &Path, dir: &Path, loops: u32) -> Result<Self, TestSourceError> {
        Self::start_on(0, clip, dir, loops).await
    }

    /// As [`Self::start`], on a given port of 127.0.0.1 (0: any free one).
    pub async fn start_on(port: u16, clip: &Path, dir: &Path, loops: u32) -> Result<Self, TestSourceError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr()?.port();
        let mut live = Self {
            url: format!("http://127.0.0.1:{port}/live.m3u8"),
            dir: dir.into(),
            clip: clip.into(),
            loops,
            port,
            ffmpeg: None,
            server: None,
        };
        live.launch(listener).await?;
        Ok(live)
    }

    async fn launch(&mut self, listener: tokio::net::TcpListener) -> Result<(), TestSourceError> {
        let dir = &self.dir;
        if tokio::fs::metadata(dir).await.is_ok() {
            tokio::fs::remove_dir_all(dir).await?;
        }
        tokio::fs::create_dir_all(dir).await?;
        self.server = Some(tokio::spawn(serve_dir(listener, dir.to_path_buf())));
        let loop_arg = if self.loops == 0 { "-1".to_string() } else { (self.loops - 1).to_string() };
        let playlist = dir.join("live.m3u8");
        let ffmpeg = Command::new("ffmpeg")
            .args(["-loglevel", "error", "-re", "-stream_loop", &loop_arg, "-i"])
            .arg(&self.clip)
            .args([
                "-c",
                "copy",
                "-f",
                "hls",
                "-hls_time",
                "1",
                "-hls_list_size",
                "6",
                "-hls_flags",
                "delete_segments+omit_endlist+independent_segments+temp_file+program_date_time",
                "-hls_segment_filename",
            ])
            .arg(dir.join("seg%05d.ts"))
            .arg(&playlist)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TestSourceError::Tool { tool: "ffmpeg", detail: e.to_string() })?;
        self.ffmpeg = Some(ffmpeg);
        // hlsdemux2 (GStreamer 1.22) loses sync on a playlist of a single segment: wait for two.
        for _ in 0..100 {
            let text = tokio::fs::read_to_string(&playlist).await.unwrap_or_default();
            if text.matches("#EXTINF").count() >= 2 {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(TestSourceError::NoPlaylist(10))
    }

    /// Stops producing segments (the server keeps answering, as a dead encoder's CDN would).
    pub async fn stop_encoder(&mut self) {
        if let Some(mut f) = self.ffmpeg.take() {
            let _ = f.kill().await;
        }
    }

    /// Takes the whole source away: encoder and server (connections are refused).
    pub async fn stop(&mut self) {
        self.stop_encoder().await;
        if let Some(s) = self.server.take() {
            s.abort();
            let _ = s.await;
        }
    }

    /// Brings the source back on the same port, playing the clip from its start.
    pub async fn restart(&mut self) -> Result<(), TestSourceError> {
        self.stop().await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await?;
        self.launch(listener).await
    }
}

impl Drop for LiveHls {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
        if let Some(f) = self.ffmpeg.as_mut() {
            let _ = f.start_kill();
        }
    }
}

/// An RTMP server on loopback (nginx with the RTMP module) that streams are pushed to and played
/// from, live, like an ingest point of a broadcaster.
pub struct RtmpServer {
    pub port: u16,
    nginx: Child,
    pusher: Option<Child>,
}

impl RtmpServer {
    pub async fn start(dir: &Path) -> Result<Self, TestSourceError> {
        tokio::fs::create_dir_all(dir).await?;
        let port = free_port().await?;
        let conf = dir.join("nginx.conf");
        let module = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
        tokio::fs::write(
            &conf,
            format!(
                "load_module {module};\ndaemon off;\nmaster_process off;\npid {pid};\n\
                 error_log {err} warn;\nevents {{ worker_connections 256; }}\n\
                 rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; }} }} }}\n",
                pid = dir.join("nginx.pid").display(),
                err = dir.join("error.log").display(),
            ),
        )
        .await?;
        let nginx = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TestSourceError::Tool { tool: "nginx", detail: e.to_string() })?;
        wait_port(port, "nginx").await?;
        Ok(Self { port, nginx, pusher: None })
    }

    pub fn url(&self, name: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{name}", self.port)
    }

    /// Publishes `clip` in real time to `live/<name>`, `loops` times (0 = forever).
    pub fn push(&mut self, clip: &Path, name: &str, loops: u32) -> Result<(), TestSourceError> {
        let loop_arg = if loops == 0 { "-1".to_string() } else { (loops - 1).to_string() };
        let child = Command::new("ffmpeg")
            .args(["-loglevel", "error", "-re", "-stream_loop", &loop_arg, "-i"])
            .arg(clip)
            .args(["-c", "copy", "-f", "flv"])
            .arg(self.url(name))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TestSourceError::Tool { tool: "ffmpeg", detail: e.to_string() })?;
        self.pusher = Some(child);
        Ok(())
    }
}

impl Drop for RtmpServer {
    fn drop(&mut self) {
        if let Some(p) = self.pusher.as_mut() {
            let _ = p.start_kill();
        }
        let _ = self.nginx.start_kill();
    }
}

/// An RTSP server on loopback playing `clip` from its start, in real time, to each client
/// (scripts/rtsp-server.py on Debian's python3-gi).
pub struct RtspServer {
    pub url: String,
    child: Child,
}

impl RtspServer {
    pub async fn start(clip: &Path) -> Result<Self, TestSourceError> {
        let port = free_port().await?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/rtsp-server.py");
        let child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(clip)
            .arg("--port")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TestSourceError::Tool { tool: "rtsp-server", detail: e.to_string() })?;
        wait_port(port, "rtsp-server").await?;
        Ok(Self { url: format!("rtsp://127.0.0.1:{port}/clip"), child })
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A minimal static HTTP/1.1 file server for the HLS folder (GET and HEAD, one request a
/// connection).
async fn serve_dir(listener: tokio::net::TcpListener, dir: PathBuf) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { continue };
        let dir = dir.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            while n < buf.len() {
                match sock.read(&mut buf[n..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let mut parts = head.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
            let name = path.trim_start_matches('/').split('?').next().unwrap_or("");
            let ok_name = !name.is_empty() && !name.contains("..") && !name.contains('/');
            let body = if ok_name { tokio::fs::read(dir.join(name)).await.ok() } else { None };
            let resp = match body {
                Some(body) => {
                    let ctype =
                        if name.ends_with(".m3u8") { "application/vnd.apple.mpegurl" } else { "video/mp2t" };
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
                         Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    if method != "HEAD" {
                        r.extend(body);
                    }
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
            };
            let _ = sock.write_all(&resp).await;
            let _ = sock.shutdown().await;
        });
    }
}
