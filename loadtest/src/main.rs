//! Load test, two ways. `drive`: registers N streams of one source URL against a running Sightline,
//! watches the live feed and the stream statuses for a while, and reports events per second,
//! per-kind counts, decode and drop figures. `capacity`: the capacity harness
//! ([`sightline_loadtest::capacity`]), which plays its own sources and ramps the number of streams,
//! and writes `capacity.json` and `capacity.html`. Every request goes to the given gateway over
//! HTTP and the websocket feed; both stop by themselves.

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(clap::Subcommand)]
enum Mode {
    /// N streams of one URL for a while, then a summary.
    Drive(Args),
    /// Ramp the number of streams in steps and find the capacity (writes a report).
    Capacity(CapacityArgs),
}

#[derive(Parser)]
#[command(about = "Drive live streams through a running Sightline and report")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(clap::Args)]
struct CapacityArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    gateway: String,
    /// Streams at each step, comma-separated.
    #[arg(long, default_value = "1,2,4,8", value_delimiter = ',')]
    steps: Vec<usize>,
    /// Seconds each step is measured, after its warm-up.
    #[arg(long, default_value_t = 60)]
    hold: u64,
    #[arg(long, default_value_t = 20)]
    warmup: u64,
    /// Seconds of bare decoding measured as the reference (0: skip).
    #[arg(long, default_value_t = 15)]
    reference: u64,
    /// Where the report goes.
    #[arg(long, default_value = ".data/reports")]
    out: std::path::PathBuf,
    /// The Sightline process (found by name when not given).
    #[arg(long)]
    pid: Option<u32>,
    /// API key (admin scope, to register streams).
    #[arg(long, env = "SIGHTLINE_API_KEY")]
    api_key: Option<String>,
    /// What each source plays: the news clip (cuts, captions, speech every few seconds), the
    /// news clip in other languages, the talk show (continuous speech), the talk show over a
    /// music bed, or the talk show in four languages.
    #[arg(long, value_enum, default_value = "news")]
    clip: ClipKind,
    /// Frame size of the sources: 360p, 720p or 1080p (30 fps).
    #[arg(long, default_value = "720p", value_parser = ["360p", "720p", "1080p"])]
    resolution: String,
    /// How the sources are served.
    #[arg(long, value_enum, default_value = "hls")]
    protocol: sightline_loadtest::capacity::Protocol,
    /// `sightline-bench`, run after the ramp for the bare ONNX Runtime reference (default: the
    /// one beside this program, when there is one).
    #[arg(long)]
    bare_ort: Option<std::path::PathBuf>,
    /// Skip the bare ONNX Runtime reference.
    #[arg(long)]
    no_bare_ort: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ClipKind {
    News,
    /// The news clip's sentences in French, German and Spanish (run Sightline with
    /// `speech.languages` naming them: `make loadtest CLIP=news-multilingual` does).
    NewsMultilingual,
    TalkShow,
    TalkShowMusic,
    /// The talk show in French, German, Spanish and English (run Sightline with
    /// `speech.languages` naming them: `make loadtest CLIP=talk-show-multilingual` does).
    TalkShowMultilingual,
}

#[derive(clap::Args)]
struct Args {
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    gateway: String,
    /// Source URL every stream plays (e.g. the demo's live HLS URL).
    #[arg(long)]
    url: String,
    /// Number of streams.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// API key (admin scope, to register streams).
    #[arg(long, env = "SIGHTLINE_API_KEY")]
    api_key: Option<String>,
}

/// One API call: status and body.
async fn http(a: &Args, method: reqwest::Method, path: &str, body: Option<String>) -> Result<(u16, String)> {
    let mut req = reqwest::Client::new().request(method, format!("http://{}{path}", a.gateway));
    if let Some(key) = &a.api_key {
        req = req.bearer_auth(key);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.with_context(|| format!("gateway at {}", a.gateway))?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    match Cli::parse().mode {
        Mode::Drive(a) => drive(a).await,
        Mode::Capacity(c) => capacity(c).await,
    }
}

async fn capacity(c: CapacityArgs) -> Result<()> {
    let work = std::env::temp_dir().join(format!("sightline-capacity-{}", std::process::id()));
    let (w, h) = match c.resolution.as_str() {
        "360p" => (640, 360),
        "1080p" => (1920, 1080),
        _ => (1280, 720),
    };
    let (spec, name) = match c.clip {
        ClipKind::News => (sightline_testkit::ClipSpec::standard(), "news clip (cuts, captions, speech)"),
        ClipKind::NewsMultilingual => (
            sightline_testkit::ClipSpec::standard_multilingual(),
            "news clip in French, German and Spanish (cuts, captions, speech)",
        ),
        ClipKind::TalkShow => (sightline_testkit::ClipSpec::talk_show(), "talk show (continuous speech)"),
        ClipKind::TalkShowMusic => {
            (sightline_testkit::ClipSpec::talk_show().with_music_bed(0.12), "talk show over a music bed")
        }
        ClipKind::TalkShowMultilingual => (
            sightline_testkit::ClipSpec::talk_show_multilingual(),
            "talk show in French, German, Spanish and English",
        ),
    };
    eprintln!("rendering the {name} at {w}x{h}");
    let clip = spec.at_size(w, h).render(&work.join("clips")).await?;
    let opts = sightline_loadtest::capacity::Options {
        gateway: c.gateway,
        api_key: c.api_key,
        steps: c.steps,
        warmup: Duration::from_secs(c.warmup),
        hold: Duration::from_secs(c.hold),
        clip,
        work_dir: work.clone(),
        pid: c.pid,
        targets: Default::default(),
        reference: Duration::from_secs(c.reference),
        protocol: c.protocol,
        source: format!("{name}, {w}x{h} at 30 fps"),
        bare_ort: if c.no_bare_ort {
            None
        } else {
            c.bare_ort.or_else(|| {
                let beside = std::env::current_exe().ok()?.with_file_name("sightline-bench");
                beside.exists().then_some(beside)
            })
        },
    };
    // A bar over the run's planned time (warm-up and hold per step, the reference), each line of
    // progress printed above it.
    let planned = opts.steps.len() as u64 * (c.warmup + c.hold) + c.reference;
    let bar = indicatif::ProgressBar::new(planned);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} s  {msg}")
            .expect("template parses")
            .progress_chars("=> "),
    );
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bar.set_position(started.elapsed().as_secs().min(bar.length().unwrap_or(0)));
            }
        })
    };
    let started = Instant::now();
    let report = sightline_loadtest::capacity::run(&opts, &|line| {
        let line_at = format!("[{:>4} s] {line}", started.elapsed().as_secs());
        // Not a terminal (a log file): the bar draws nothing, so the lines go to stderr as they are.
        if bar.is_hidden() {
            eprintln!("{line_at}");
        } else {
            bar.println(line_at);
        }
        bar.set_message(line);
    })
    .await;
    ticker.abort();
    bar.finish_and_clear();
    let report = report?;
    sightline_loadtest::report::write(&report, &c.out)?;
    let _ = std::fs::remove_dir_all(&work);
    println!("capacity: {} stream(s); report: {}", report.capacity, c.out.join("capacity.html").display());
    Ok(())
}

async fn drive(a: Args) -> Result<()> {
    if a.streams == 0 || a.streams > 500 {
        bail!("--streams must be 1..=500");
    }
    let mut ids = Vec::new();
    for i in 0..a.streams {
        let body = serde_json::json!({ "url": a.url, "name": format!("load-{i}") }).to_string();
        let (status, resp) = http(&a, reqwest::Method::POST, "/v1/streams", Some(body)).await?;
        if status != 201 {
            bail!("registering stream {i}: HTTP {status}: {resp}");
        }
        let v: serde_json::Value = serde_json::from_str(&resp)?;
        ids.push(v["id"].as_str().unwrap_or_default().to_string());
    }
    tracing::info!(streams = ids.len(), "registered; watching the feed for {} s", a.seconds);
    let token = a.api_key.as_ref().map(|k| format!("?access_token={k}")).unwrap_or_default();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/feed{token}", a.gateway)).await?;
    let started = Instant::now();
    let mut kinds: HashMap<String, u64> = HashMap::new();
    let mut lag_ms: Vec<i64> = Vec::new();
    let deadline = started + Duration::from_secs(a.seconds);
    let mut progress = Instant::now();
    while Instant::now() < deadline {
        let next = tokio::time::timeout(Duration::from_millis(500), ws.next()).await;
        if let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) = next {
            let v: serde_json::Value = serde_json::from_str(&t)?;
            if ids.iter().any(|id| v["stream_id"] == id.as_str()) {
                *kinds.entry(v["kind"].as_str().unwrap_or("?").to_string()).or_default() += 1;
                let now =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
                lag_ms.push(now - v["wall_ms"].as_i64().unwrap_or(now));
            }
        }
        if progress.elapsed() > Duration::from_secs(5) {
            progress = Instant::now();
            tracing::info!(
                elapsed_s = started.elapsed().as_secs(),
                events = kinds.values().sum::<u64>(),
                "running"
            );
        }
    }
    let mut decoded = 0.0;
    let mut dropped = 0u64;
    for id in &ids {
        let (_, resp) = http(&a, reqwest::Method::GET, &format!("/v1/streams/{id}"), None).await?;
        let v: serde_json::Value = serde_json::from_str(&resp).unwrap_or_default();
        decoded += v["detail"]["decoded_fps"].as_f64().unwrap_or(0.0);
        dropped += v["detail"]["dropped_frames"].as_u64().unwrap_or(0);
        http(&a, reqwest::Method::DELETE, &format!("/v1/streams/{id}"), None).await?;
    }
    lag_ms.sort_unstable();
    let pct = |p: f64| {
        lag_ms
            .get(((lag_ms.len() as f64 * p) as usize).min(lag_ms.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let secs = started.elapsed().as_secs_f64();
    println!("streams: {}  duration: {:.0} s", ids.len(), secs);
    println!(
        "events: {} ({:.1}/s)  by kind: {:?}",
        kinds.values().sum::<u64>(),
        kinds.values().sum::<u64>() as f64 / secs,
        kinds
    );
    println!("media→feed latency ms: p50 {}  p99 {}", pct(0.5), pct(0.99));
    println!("decoded fps (all streams): {decoded:.1}  dropped frames: {dropped}");
    Ok(())
}
