//! Synthetic test media, made here and never fetched: a clip with hard cuts at known times,
//! burned-in captions and speech from espeak-ng, and a live sliding-window HLS stream of it served
//! on loopback. Used by the end-to-end tests and by `make run`'s demo stream.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

#[derive(Debug, thiserror::Error)]
pub enum TestSourceError {
    #[error("{tool} failed: {detail}")]
    Tool { tool: &'static str, detail: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("live HLS did not produce a playlist within {0} s")]
    NoPlaylist(u64),
}

/// The burned-in caption style of the test clips: bold white text on a translucent black box,
/// centred in the lower third. (No `'`, `:` or `\\` in `text`.)
pub fn caption_filter(text: &str, font_size: u32) -> String {
    format!(
        "drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf:text='{text}':fontsize={font_size}:\
         fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=8:x=(w-tw)/2:y=h-th-40"
    )
}

/// One 640x360 frame of a flat `background` colour with `text` as a clip caption, scaled to
/// `width`x`height` as ingest samples it; packed RGB.
pub fn caption_frame(
    text: &str,
    background: &str,
    width: usize,
    height: usize,
) -> Result<Vec<u8>, TestSourceError> {
    let vf = format!("{},scale={width}:{height}", caption_filter(text, 36));
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", &format!("color=c={background}:s=640x360")])
        .args(["-vf", &vf, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()?;
    if !out.status.success() || out.stdout.len() != width * height * 3 {
        return Err(TestSourceError::Tool {
            tool: "ffmpeg",
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// Ten sentences spoken by espeak-ng for speech-to-text quality checks (the word error rate in
/// the speech quality test and the beam-width sweep of the inference bench).
pub const SPEECH_SENTENCES: [&str; 10] = [
    "the quick brown fox jumps over the lazy dog",
    "live video becomes searchable while it plays",
    "we report the news from the city",
    "the orchestra played a quiet song",
    "farmers expect rain later this week",
    "the museum opens a new exhibit",
    "the council will vote on the new budget tomorrow",
    "heavy traffic is slowing the morning commute",
    "our reporter is standing outside the stadium",
    "scientists discovered water on a distant planet",
];

/// `text` spoken by espeak-ng (as the test clips speak it), resampled by ffmpeg to 16 kHz mono
/// float samples, as ingest delivers audio.
pub fn speech_samples(text: &str) -> Result<Vec<f32>, TestSourceError> {
    let tool = |tool: &'static str, out: &std::process::Output| TestSourceError::Tool {
        tool,
        detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    };
    let wav = std::process::Command::new("espeak-ng").args(["-s", "150", "--stdout", text]).output()?;
    if !wav.status.success() {
        return Err(tool("espeak-ng", &wav));
    }
    let mut ff = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i", "-", "-ar", "16000", "-ac", "1", "-f", "f32le", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = ff.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &wav.stdout));
    let out = ff.wait_with_output()?;
    writer.join().expect("writer thread")?;
    if !out.status.success() {
        return Err(tool("ffmpeg", &out));
    }
    Ok(out.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// One scene of the clip: a lavfi source, its duration and an optional burned-in caption.
#[derive(Debug, Clone)]
pub struct Scene {
    pub source: &'static str,
    pub seconds: u32,
    pub caption: Option<&'static str>,
}

/// A spoken sentence and when it starts.
#[derive(Debug, Clone)]
pub struct Speech {
    pub at_ms: i64,
    pub text: &'static str,
}

#[derive(Debug, Clone)]
pub struct ClipSpec {
    pub scenes: Vec<Scene>,
    pub speech: Vec<Speech>,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl ClipSpec {
    /// The standard clip: four scenes (moving test pattern, captioned colour, bars, captioned
    /// colour), 18 s, with three sentences that never straddle the loop point.
    pub fn standard() -> Self {
        Self {
            scenes: vec![
                Scene { source: "testsrc2", seconds: 5, caption: None },
                Scene { source: "color=c=navy", seconds: 4, caption: Some("BREAKING NEWS AT NOON") },
                Scene { source: "smptebars", seconds: 5, caption: None },
                Scene { source: "color=c=darkgreen", seconds: 4, caption: Some("WEATHER UPDATE TODAY") },
            ],
            speech: vec![
                Speech { at_ms: 500, text: "the quick brown fox jumps over the lazy dog" },
                Speech { at_ms: 6000, text: "live video becomes searchable while it plays" },
                Speech { at_ms: 11500, text: "we report the news from the city" },
            ],
            width: 640,
            height: 360,
            fps: 30,
        }
    }

    /// A second clip, different in every scene and sentence from [`ClipSpec::standard`] (for
    /// tests that need two unrelated streams), with cuts at the same times.
    pub fn alternate() -> Self {
        Self {
            scenes: vec![
                Scene { source: "yuvtestsrc", seconds: 5, caption: None },
                Scene { source: "color=c=maroon", seconds: 4, caption: Some("MARKETS CLOSE HIGHER") },
                Scene { source: "rgbtestsrc", seconds: 5, caption: None },
                Scene { source: "color=c=orange", seconds: 4, caption: Some("SPORTS RESULTS TONIGHT") },
            ],
            speech: vec![
                Speech { at_ms: 500, text: "the orchestra played a quiet song" },
                Speech { at_ms: 6000, text: "farmers expect rain later this week" },
                Speech { at_ms: 11500, text: "the museum opens a new exhibit" },
            ],
            width: 640,
            height: 360,
            fps: 30,
        }
    }

    pub fn duration_ms(&self) -> i64 {
        self.scenes.iter().map(|s| s.seconds as i64 * 1000).sum()
    }

    /// Cut times within one pass of the clip (the loop point is a cut too when it loops).
    pub fn cuts_ms(&self) -> Vec<i64> {
        let mut t = 0;
        let mut cuts = Vec::new();
        for s in &self.scenes[..self.scenes.len() - 1] {
            t += s.seconds as i64 * 1000;
            cuts.push(t);
        }
        cuts
    }

    /// Cut times over `loops` passes of the clip.
    pub fn cuts_over(&self, loops: u32) -> Vec<i64> {
        let d = self.duration_ms();
        (0..loops as i64)
            .flat_map(|l| {
                let first = if l > 0 { vec![l * d] } else { vec![] };
                first.into_iter().chain(self.cuts_ms().into_iter().map(move |c| l * d + c))
            })
            .collect()
    }

    /// Renders the clip to `dir/clip.mp4` (cached: an existing file with the same spec is kept).
    pub async fn render(&self, dir: &Path) -> Result<PathBuf, TestSourceError> {
        tokio::fs::create_dir_all(dir).await?;
        let key = format!("{:x}", fxhash(&format!("{self:?}")));
        let out = dir.join(format!("clip-{key}.mp4"));
        if tokio::fs::metadata(&out).await.is_ok() {
            return Ok(out);
        }
        let mut args: Vec<String> = vec!["-y".into(), "-loglevel".into(), "error".into()];
        let (w, h, fps) = (self.width, self.height, self.fps);
        for s in &self.scenes {
            args.extend(["-f".into(), "lavfi".into(), "-i".into()]);
            let sep = if s.source.contains('=') { ':' } else { '=' };
            args.push(format!("{}{sep}s={w}x{h}:r={fps}:d={}", s.source, s.seconds));
        }
        for (i, sp) in self.speech.iter().enumerate() {
            let wav = dir.join(format!("speech-{key}-{i}.wav"));
            run("espeak-ng", &["-s", "150", "-w", wav.to_str().unwrap(), sp.text]).await?;
            args.extend(["-i".into(), wav.to_string_lossy().into_owned()]);
        }
        let mut graph = String::new();
        let n = self.scenes.len();
        for (i, s) in self.scenes.iter().enumerate() {
            match s.caption {
                Some(text) => {
                    graph.push_str(&format!("[{i}:v]{},format=yuv420p[v{i}];", caption_filter(text, h / 10)))
                }
                None => graph.push_str(&format!("[{i}:v]format=yuv420p[v{i}];")),
            }
        }
        for i in 0..n {
            graph.push_str(&format!("[v{i}]"));
        }
        graph.push_str(&format!("concat=n={n}:v=1:a=0[v];"));
        let total_s = self.duration_ms() as f64 / 1000.0;
        for (i, sp) in self.speech.iter().enumerate() {
            graph.push_str(&format!("[{}:a]aresample=16000,adelay={}:all=1[a{i}];", n + i, sp.at_ms));
        }
        for i in 0..self.speech.len() {
            graph.push_str(&format!("[a{i}]"));
        }
        graph.push_str(&format!(
            "amix=inputs={}:normalize=0:duration=longest,apad=whole_dur={total_s},\
             atrim=0:{total_s},aresample=44100,asetnsamples=n=1024[a]",
            self.speech.len()
        ));
        args.extend(["-filter_complex".into(), graph]);
        args.extend(
            [
                "-map",
                "[v]",
                "-map",
                "[a]",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-g",
                &fps.to_string(),
                "-keyint_min",
                &fps.to_string(),
                "-sc_threshold",
                "0",
                "-b:v",
                "800k",
                "-c:a",
                "aac",
                "-b:a",
                "64k",
                "-ac",
                "1",
                "-t",
                &total_s.to_string(),
            ]
            .map(String::from),
        );
        let tmp = dir.join(format!("clip-{key}.tmp.mp4"));
        args.push(tmp.to_string_lossy().into_owned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run("ffmpeg", &refs).await?;
        tokio::fs::rename(&tmp, &out).await?;
        Ok(out)
    }
}

fn fxhash(s: &str) -> u64 {
    sightline_wire::stable_hash([s.as_bytes()])
}

async fn run(tool: &'static str, args: &[&str]) -> Result<(), TestSourceError> {
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
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

async fn free_port() -> Result<u16, TestSourceError> {
    Ok(pick_port()?)
}

/// Whether something listens on the loopback `port` (a connection that is not to itself).
pub async fn listening(port: u16) -> bool {
    match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
        Ok(s) => s.local_addr().map(|a| a.port() != port).unwrap_or(false),
        Err(_) => false,
    }
}

async fn wait_port(port: u16, what: &'static str) -> Result<(), TestSourceError> {
    for _ in 0..100 {
        if listening(port).await {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(TestSourceError::Tool { tool: what, detail: format!("not listening on port {port} after 5 s") })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_schedule_follows_scenes() {
        let c = ClipSpec::standard();
        assert_eq!(c.duration_ms(), 18_000);
        assert_eq!(c.cuts_ms(), vec![5000, 9000, 14000]);
        assert_eq!(c.cuts_over(2), vec![5000, 9000, 14000, 18000, 23000, 27000, 32000]);
    }
}
