//! Ingest benchmarks, written to a report (`make bench`):
//! - CPU of Sightline's ingest pipeline per stream ÷ CPU of bare `gst-launch-1.0` decoding of
//!   the same source, for 720p30 and 1080p30 H.264, measured side by side in one run (goal ≤ 1.15),
//!   and how many 720p30 streams one core sustains;
//! - churn: register and delete N streams M times against a live source; threads and RSS before
//!   and after;
//! - store: Redis vector sets (VADD throughput, VSIM p50/p99 and recall@10 against brute force)
//!   and the ClickHouse sink's rows/s from JetStream to ClickHouse;
//! - inference: the OCR inference actor's throughput (JetStream in, events out) ÷ bare ONNX Runtime
//!   on the same frames, model and threads (goal ≥ 0.90), and a batch-size sweep per model
//!   (throughput, p50, p99).

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use sightline_settings::IngestConfig;
use sightline_streams::{IngestStats, MediaItem, MediaPipeline, PipelineSpec};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Sightline ingest benchmarks")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// CPU per stream, Sightline vs bare decoding; appends to the report.
    Cpu {
        #[arg(long, default_value = ".data/reports/bench.md")]
        report: PathBuf,
        /// Seconds of content per resolution.
        #[arg(long, default_value_t = 20)]
        seconds: u32,
    },
    /// Runs Sightline's ingest pipeline on one file as fast as it decodes (used by `cpu`).
    IngestOne { file: PathBuf },
    /// Registers and deletes `streams` streams `rounds` times; reports threads and RSS.
    Churn {
        #[arg(long, default_value = ".data/reports/bench.md")]
        report: PathBuf,
        #[arg(long, default_value_t = 20)]
        streams: usize,
        #[arg(long, default_value_t = 50)]
        rounds: usize,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Vector-set and ClickHouse-sink throughput and latency; appends to the report.
    Store {
        #[arg(long, default_value = ".data/reports/bench.md")]
        report: PathBuf,
        /// Vectors in the set.
        #[arg(long, default_value_t = 100_000)]
        vectors: usize,
        /// Queries timed (and checked against brute force).
        #[arg(long, default_value_t = 300)]
        queries: usize,
        /// Events pushed through the ClickHouse sink.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Each model on the configured execution provider (CUDA on a GPU machine) against the CPU
    /// provider of the same ONNX Runtime: largest output difference and throughput of each.
    Providers {
        #[arg(long, default_value = ".data/reports/bench.md")]
        report: PathBuf,
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Fail unless the configured provider is CUDA (for the GPU check).
        #[arg(long)]
        require_cuda: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Inference actor vs bare ONNX Runtime, and batch-size sweeps; appends to the report.
    Inference {
        #[arg(long, default_value = ".data/reports/bench.md")]
        report: PathBuf,
        /// Captioned frames pushed through OCR.
        #[arg(long, default_value_t = 48)]
        frames: usize,
        /// Timed runs per batch size in the sweeps.
        #[arg(long, default_value_t = 30)]
        runs: usize,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    match Args::parse().cmd {
        Cmd::Cpu { report, seconds } => cpu(&report, seconds),
        Cmd::IngestOne { file } => ingest_one(&file),
        Cmd::Churn { report, streams, rounds, config } => {
            tokio::runtime::Runtime::new()?.block_on(churn(&report, streams, rounds, config.as_deref()))
        }
        Cmd::Store { report, vectors, queries, events, config } => tokio::runtime::Runtime::new()?
            .block_on(store_bench(&report, vectors, queries, events, config.as_deref())),
        Cmd::Providers { report, runs, require_cuda, config } => {
            providers_bench(&report, runs, require_cuda, config.as_deref())
        }
        Cmd::Inference { report, frames, runs, config } => tokio::runtime::Runtime::new()?
            .block_on(inference_bench(&report, frames, runs, config.as_deref())),
    }
}

/// user+system CPU seconds of a child process, read when it has exited but is not yet reaped.
fn run_measured(cmd: &mut std::process::Command) -> Result<f64> {
    let mut child = cmd.stdout(std::process::Stdio::null()).spawn().context("spawn")?;
    let stat = format!("/proc/{}/stat", child.id());
    let ticks = 100.0; // USER_HZ on Linux
    loop {
        let text = std::fs::read_to_string(&stat).unwrap_or_default();
        // Fields after the command name: state is field 3, utime 14, stime 15.
        let after = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        if f.first() == Some(&"Z") {
            let cpu = (f[11].parse::<f64>()? + f[12].parse::<f64>()?) / ticks;
            let status = child.wait()?;
            if !status.success() {
                bail!("{cmd:?} failed: {status}");
            }
            return Ok(cpu);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn content(dir: &Path, w: u32, h: u32, kbps: u32, seconds: u32) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let out = dir.join(format!("bench-{w}x{h}-{kbps}k-{seconds}s.mp4"));
    if out.exists() {
        return Ok(out);
    }
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=s={w}x{h}:r=30:d={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=f=440:d={seconds}"))
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-b:v"])
        .arg(format!("{kbps}k"))
        .args(["-c:a", "aac", "-b:a", "96k", "-shortest"])
        .arg(&out)
        .status()?;
    if !status.success() {
        bail!("ffmpeg could not make bench content");
    }
    Ok(out)
}

fn cpu(report: &Path, seconds: u32) -> Result<()> {
    let cache = std::env::var("SIGHTLINE_CACHE").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/sightline")
    });
    let me = std::env::current_exe()?;
    let mut rows = Vec::new();
    for (w, h, kbps) in [(1280, 720, 3000), (1920, 1080, 5700)] {
        let file = content(&cache.join("bench"), w, h, kbps, seconds)?;
        let frames = (seconds * 30) as f64;
        let uri = format!("file://{}", file.canonicalize()?.display());
        // CPU time on a shared machine varies by ±20 % run to run: alternate the two, REPS times
        // each, and report the median of the pairwise ratios, with the spread.
        let (mut bares, mut ourss, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..REPS {
            let b = run_measured(std::process::Command::new("gst-launch-1.0").args([
                "-q",
                "uridecodebin3",
                &format!("uri={uri}"),
                "name=d",
                "d.",
                "!",
                "fakesink",
                "sync=false",
                "d.",
                "!",
                "fakesink",
                "sync=false",
            ]))?;
            let o = run_measured(std::process::Command::new(&me).arg("ingest-one").arg(&file))?;
            bares.push(b);
            ourss.push(o);
            ratios.push(o / b);
        }
        let (bare, ours, ratio) = (median(&mut bares), median(&mut ourss), median(&mut ratios));
        let (lo, hi) = (ratios[0], ratios[ratios.len() - 1]);
        let streams_per_core = frames / ours / 30.0;
        println!(
            "{w}x{h}: bare {bare:.2} CPU-s, sightline {ours:.2} CPU-s, ratio {ratio:.3} ({lo:.2}-{hi:.2}), {streams_per_core:.1} streams/core"
        );
        rows.push(format!(
            "| {w}x{h}p30 {kbps} kb/s | {bare:.2} | {ours:.2} | **{ratio:.3}** | {lo:.2}-{hi:.2} | {:.0} | {streams_per_core:.1} |",
            frames / ours
        ));
    }
    let text = format!(
        "## Ingest CPU ({} s of content per row, medians of {REPS} alternating runs, {})\n\n\
         | source | bare gst-launch decode CPU-s | Sightline ingest CPU-s | ratio (goal ≤ 1.15) | ratio range | frames per CPU-s | 30 fps streams per core |\n\
         |---|---|---|---|---|---|---|\n{}\n\n\
         Bare: `gst-launch-1.0 uridecodebin3 ! fakesink` (video and audio). Sightline: the ingest pipeline\n\
         (every frame scored for cuts at 64x36, 2 fps sampled at 384x216, 16 kHz audio gated into segments),\n\
         media drained in-process without publishing.\n\n",
        seconds,
        now_utc(),
        rows.join("\n")
    );
    append(report, &text)
}

const REPS: usize = 7;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ingest_one(file: &Path) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let spec = PipelineSpec {
            url: format!("file://{}", file.canonicalize()?.display()),
            base_ms: 0,
            ingest: IngestConfig::default(),
        };
        let stats = Arc::new(IngestStats::default());
        let (pipeline, mut rx) = MediaPipeline::start(&spec, stats.clone(), 64)?;
        while let Some(item) = rx.recv().await {
            match item {
                MediaItem::Eos => break,
                MediaItem::Error(e) => bail!("pipeline error: {e}"),
                _ => {}
            }
        }
        drop(pipeline);
        println!("{}", stats.decoded_frames.load(Ordering::Relaxed));
        Ok(())
    })
}

fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn churn(report: &Path, n: usize, rounds: usize, config: Option<&Path>) -> Result<()> {
    use sightline_actors::{Metrics, Node, Roles, StreamSpec, StreamState};
    use sightline_testkit::{ClipSpec, LiveHls};
    let mut cfg = sightline_settings::Config::load(config.or(Some(Path::new("config/sightline.toml"))))?;
    cfg.nats.prefix = format!("CHURN{}", std::process::id());
    cfg.nats.work_max_bytes = 64 << 20;
    cfg.nats.events_max_bytes = 64 << 20;
    cfg.ingest.allow_private_hosts = true;
    let node = Node::start(
        &cfg,
        Roles { gateway: false, ingest: true, inference: false, sink: false },
        Metrics::new(),
    )
    .await?;
    let clip = ClipSpec::standard().render(&std::env::temp_dir().join("sightline-test-clips")).await?;
    let live =
        LiveHls::start(&clip, &std::env::temp_dir().join(format!("sl-churn-{}", std::process::id())), 0)
            .await?;
    let reg = node.registry.clone();
    let one_round = |round: usize| {
        let reg = reg.clone();
        let url = live.url.clone();
        async move {
            let ids: Vec<String> = (0..n).map(|i| format!("churn-{round}-{i}")).collect();
            for id in &ids {
                reg.create(&StreamSpec {
                    id: id.clone(),
                    name: id.clone(),
                    url: url.clone(),
                    created_ms: 0,
                    paused: false,
                })
                .await?;
            }
            // Each stream must be decoding before it is deleted.
            let deadline = Instant::now() + Duration::from_secs(60);
            for id in &ids {
                loop {
                    let st = reg.status(id).await?;
                    if st.is_some_and(|s| s.state == StreamState::Running || s.decoded_frames > 0) {
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!("stream {id} did not start within 60 s");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            for id in &ids {
                reg.delete(id).await?;
            }
            anyhow::Ok(())
        }
    };
    // One warm-up round, so one-time allocations (plugin loading, pools) are in the baseline.
    one_round(usize::MAX).await?;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let (threads0, rss0) = (proc_status("Threads:"), proc_status("VmRSS:"));
    let started = Instant::now();
    for r in 0..rounds {
        one_round(r).await?;
        if r % 10 == 9 {
            eprintln!(
                "churn: {} rounds, threads {}, RSS {} MB",
                r + 1,
                proc_status("Threads:"),
                proc_status("VmRSS:") / 1024
            );
        }
    }
    // Idle blocking-pool threads (pipeline teardown runs there) exit after 10 s.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let (threads1, rss1) = (proc_status("Threads:"), proc_status("VmRSS:"));
    let q = sightline_streams::pipeline::QUARANTINED_DEMUXERS.load(Ordering::Relaxed);
    let text = format!(
        "## Churn ({rounds} rounds × {n} streams registered, decoding, deleted; {}; {:.0} s)\n\n\
         | | threads | RSS MB |\n|---|---|---|\n| after warm-up round | {threads0} | {:.1} |\n| after churn | {threads1} | {:.1} |\n\n\
         RSS growth {:.1} MB over {} pipelines ({:.1} KB each); quarantined demuxers: {q}.\n\n",
        now_utc(),
        started.elapsed().as_secs_f64(),
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        (rss1 as f64 - rss0 as f64) / 1024.0,
        rounds * n,
        (rss1 as f64 - rss0 as f64) / (rounds * n) as f64,
    );
    println!("{text}");
    let bus = node.bus.clone();
    node.shutdown().await;
    bus.destroy().await;
    drop(live);
    append(report, &text)
}

fn now_utc() -> String {
    let out = std::process::Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

fn append(report: &Path, text: &str) -> Result<()> {
    if let Some(d) = report.parent() {
        std::fs::create_dir_all(d)?;
    }
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(report)?;
    f.write_all(text.as_bytes())?;
    println!("report: {}", report.display());
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Unit vectors clustered around `centroids` random directions, as embeddings of real content are.
fn clustered_vectors(n: usize, dim: usize, centroids: usize, rng: &mut fastrand::Rng) -> Vec<Vec<f32>> {
    let gauss = |rng: &mut fastrand::Rng| {
        let (u, v) = (rng.f32().max(1e-9), rng.f32());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    let unit = |mut v: Vec<f32>| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    };
    let cs: Vec<Vec<f32>> = (0..centroids).map(|_| unit((0..dim).map(|_| gauss(rng)).collect())).collect();
    (0..n)
        .map(|_| {
            let c = &cs[rng.usize(..centroids)];
            unit(c.iter().map(|x| x + 0.06 * gauss(rng)).collect())
        })
        .collect()
}

async fn store_bench(
    report: &Path,
    n: usize,
    queries: usize,
    events: usize,
    config: Option<&Path>,
) -> Result<()> {
    use sightline_store::{Query, VectorAttrs, VectorItem, VectorStore};
    let mut cfg = sightline_settings::Config::load(config.or(Some(Path::new("config/sightline.toml"))))?;
    let tag = format!("bench{}", std::process::id());
    cfg.nats.prefix = tag.to_uppercase();
    cfg.clickhouse.database = format!("sightline_{tag}");
    cfg.nats.events_max_bytes = 256 << 20;
    cfg.nats.work_max_bytes = 16 << 20;
    let dim = 384;
    let mut rng = fastrand::Rng::with_seed(7);
    eprintln!("store bench: generating {n} + {queries} vectors of {dim} dimensions");
    let data = clustered_vectors(n + queries, dim, 2000, &mut rng);
    let (base, probes) = data.split_at(n);
    let vs = VectorStore::connect(&cfg.redis.url).await?;
    let mut text = String::new();
    for quant in ["q8", "noquant"] {
        let set = format!("{tag}:bench:{quant}");
        let started = Instant::now();
        for (i, chunk) in base.chunks(500).enumerate() {
            let items: Vec<VectorItem> = chunk
                .iter()
                .enumerate()
                .map(|(j, v)| VectorItem {
                    id: format!("e{}", i * 500 + j),
                    vector: v.clone(),
                    attrs: VectorAttrs {
                        stream: format!("s{}", (i * 500 + j) % 10),
                        kind: "transcript".into(),
                        pts_ms: (i * 500 + j) as i64,
                        wall_ms: 0,
                        text: String::new(),
                        keyframe: false,
                    },
                })
                .collect();
            vs.add(&set, &items, quant).await?;
            if i % 40 == 0 {
                eprintln!("  {quant}: {} / {n} added", (i + 1) * 500);
            }
        }
        let add_rate = n as f64 / started.elapsed().as_secs_f64();
        let (mut lat, mut lat_f, mut recall) = (Vec::new(), Vec::new(), 0usize);
        for (qi, q) in probes.iter().enumerate() {
            let t = Instant::now();
            let hits = vs.similar(&set, Query::Vector(q), 10, None).await?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            vs.similar(&set, Query::Vector(q), 10, Some(".stream == \"s3\"")).await?;
            lat_f.push(t.elapsed().as_secs_f64() * 1000.0);
            // Brute force: exact top 10 by dot product (vectors are unit length).
            let mut scored: Vec<(f32, usize)> = base
                .iter()
                .enumerate()
                .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum(), i))
                .collect();
            scored.select_nth_unstable_by(10, |a, b| b.0.total_cmp(&a.0));
            let truth: std::collections::HashSet<String> =
                scored[..10].iter().map(|(_, i)| format!("e{i}")).collect();
            recall += hits.iter().filter(|h| truth.contains(&h.id)).count();
            if qi % 100 == 0 {
                eprintln!("  {quant}: query {qi} / {queries}");
            }
        }
        lat.sort_by(f64::total_cmp);
        lat_f.sort_by(f64::total_cmp);
        text += &format!(
            "| {quant} | {n} | {add_rate:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} |\n",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            percentile(&lat_f, 0.5),
            percentile(&lat_f, 0.99),
            recall as f64 / (queries * 10) as f64
        );
        vs.drop_set(&set).await?;
    }
    vs.compact_log().await?;
    let vec_table = format!(
        "## Vector sets ({n} × {dim}-d clustered unit vectors, {queries} queries, k = 10; {})\n\n\
         | quantisation | vectors | VADD/s (pipelined 500) | VSIM p50 ms | VSIM p99 ms | filtered p50 ms | filtered p99 ms | recall@10 vs brute force |\n\
         |---|---|---|---|---|---|---|---|\n{text}\n",
        now_utc()
    );
    println!("{vec_table}");
    append(report, &vec_table)?;

    // ClickHouse sink: events already in JetStream, drained by a sink-only node.
    let bus = sightline_actors::Bus::connect(&cfg.nats).await?;
    bus.ensure().await?;
    eprintln!("store bench: publishing {events} events");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    for i in 0..events as i64 {
        let mut e = sightline_wire::Event::new(
            sightline_wire::EventKind::Scene,
            &format!("s{}", i % 20),
            i * 40,
            now + i,
            "bench@1",
        );
        e.score = 0.5;
        bus.publish(bus.names.event_subject(e.kind, &e.stream_id), &e.id, serde_json::to_vec(&e)?).await?;
    }
    let roles = sightline_actors::Roles::parse("sink").map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let node = sightline_actors::Node::start(&cfg, roles, sightline_actors::Metrics::new()).await?;
    let store = node.store.clone();
    loop {
        let c: u64 = store.client().query("SELECT count() FROM events").fetch_one().await.unwrap_or(0);
        if c >= events as u64 {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the sink stored {c} of {events} events in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let sink_text = format!(
        "## ClickHouse sink ({events} events from JetStream into ClickHouse, batch_max {}, {})\n\n\
         {:.0} rows/s ({secs:.1} s, including node start and migrations), one INSERT per batch, acked after it.\n\n",
        cfg.sink.batch_max,
        now_utc(),
        events as f64 / secs
    );
    println!("{sink_text}");
    node.shutdown().await;
    bus.destroy().await;
    let _ = store
        .client()
        .query(&format!("DROP DATABASE IF EXISTS `{}`", cfg.clickhouse.database))
        .execute()
        .await;
    append(report, &sink_text)
}

/// Throughput and latency of `f` run `runs` times (after one warm-up run) on `items` items each.
fn sweep_row(label: &str, batch: usize, runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<String> {
    f()?;
    let mut lat = Vec::with_capacity(runs);
    let started = Instant::now();
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let per_s = (runs * batch) as f64 / started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok(format!(
        "| {label} | {batch} | {per_s:.1} | {:.1} | {:.1} |\n",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    ))
}

async fn inference_bench(report: &Path, n: usize, runs: usize, config: Option<&Path>) -> Result<()> {
    use futures::StreamExt;
    use sightline_models::{Moonshine, Ocr, OcrParams, Runtime, SileroVad, TextEmbedder, word_errors};
    let mut cfg = sightline_settings::Config::load(config.or(Some(Path::new("config/sightline.toml"))))?;
    let tag = format!("bench{}", std::process::id());
    cfg.nats.prefix = tag.to_uppercase();
    cfg.clickhouse.database = format!("sightline_{tag}");
    cfg.nats.work_max_bytes = 64 << 20;
    let threads = cfg.ocr.threads;
    let (w, h) = (cfg.ingest.analysis_width as usize, cfg.ingest.analysis_height as usize);
    eprintln!("inference bench: rendering {n} captioned frames");
    let colours = ["navy", "darkgreen", "maroon", "teal", "black", "purple", "olive", "gray"];
    let frames: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let text = format!("HEADLINE NUMBER {i} TODAY");
            let px = sightline_testkit::caption_frame(&text, colours[i % colours.len()], w, h)?;
            Ok((text, px))
        })
        .collect::<Result<_>>()?;
    let m = &cfg.models;
    let rt = Runtime::load(&m.onnxruntime_lib())?.with_providers(&m.providers, m.cuda_device)?;
    let params = OcrParams {
        det_short_side: cfg.ocr.det_short_side,
        min_confidence: cfg.ocr.min_confidence,
        ..OcrParams::default()
    };

    // Bare: the OCR pipeline called directly, one frame after another.
    let ocr_files = m.task_files("ocr")?;
    let mut ocr = Ocr::load(&rt, &ocr_files[0], &ocr_files[1], threads, params.clone())?;
    ocr.read(&frames[0].1, w, h)?;
    let started = Instant::now();
    let mut read_ok = 0;
    for (text, px) in &frames {
        read_ok += ocr.read(px, w, h)?.iter().any(|l| &l.text == text) as usize;
    }
    let bare_s = started.elapsed().as_secs_f64();
    let bare = n as f64 / bare_s;
    eprintln!("  bare: {bare:.2} frames/s ({read_ok}/{n} read exactly)");

    // Through the inference actor: frames published to JetStream, events published back, acked.
    cfg.scenes.workers = 0;
    cfg.speech.workers = 0;
    cfg.ocr.workers = 1;
    cfg.ocr.max_ack_pending = 64;
    let roles = sightline_actors::Roles::parse("inference").map_err(anyhow::Error::msg)?;
    let node = sightline_actors::Node::start(&cfg, roles, sightline_actors::Metrics::new()).await?;
    let bus = node.bus.clone();
    let mut events = bus.client.subscribe(bus.names.events_of_kind(sightline_wire::EventKind::Ocr)).await?;
    let publish = async |i: usize, px: &[u8]| -> Result<()> {
        // One stream per frame: every frame is new to the actor's change cache, so each is read.
        let meta =
            sightline_wire::FrameMeta::still(&format!("b{i}"), 1000, 1_795_000_000_000, w as u32, h as u32);
        bus.publish_frame(&meta, px).await?;
        Ok(())
    };
    // Warm-up: the worker has loaded its models once one frame has come back.
    publish(n, &frames[0].1).await?;
    tokio::time::timeout(Duration::from_secs(120), events.next()).await?.context("no warm-up event")?;
    let started = Instant::now();
    for (i, (_, px)) in frames.iter().enumerate() {
        publish(i, px).await?;
    }
    // Done when the shared consumer has nothing pending and nothing unacknowledged.
    let frames_stream = bus.js.get_stream(bus.names.frames_stream()).await?;
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = frames_stream
        .get_consumer(&bus.names.consumer("ocr"))
        .await
        .map_err(|e| anyhow::anyhow!("ocr consumer: {e}"))?;
    loop {
        let info = consumer.info().await?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the OCR actor did not finish {n} frames in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let actor_s = started.elapsed().as_secs_f64();
    let mut seen = std::collections::HashSet::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(200), events.next()).await {
        let e: sightline_wire::Event = serde_json::from_slice(&msg.payload)?;
        seen.insert(e.stream_id);
    }
    eprintln!("  actor: events for {} of {n} frames", seen.len());
    let actor = n as f64 / actor_s;
    eprintln!("  actor: {actor:.2} frames/s");
    node.shutdown().await;
    bus.destroy().await;

    // Batch-size sweeps per model (threads as configured).
    let mut sweep = String::new();
    let mut emb = TextEmbedder::load(
        &rt,
        &m.task_files("text_embedding")?[0],
        &m.task_files("text_embedding")?[1],
        threads,
    )?;
    let sentence = "live video becomes searchable while it plays on two channels";
    for b in [1, 4, 16, 32] {
        let texts = vec![sentence; b];
        sweep += &sweep_row("MiniLM text embedding (sentences)", b, runs, || {
            emb.embed(&texts)?;
            Ok(())
        })?;
    }
    let labels = m.for_task("labels")?;
    let mut labeler =
        sightline_models::ImageLabeler::load(&rt, &m.file(labels, 0), &m.file(labels, 1), threads)?;
    for b in [1, 4, 8, 16] {
        let images: Vec<(&[u8], usize, usize)> =
            frames.iter().take(b).map(|(_, px)| (px.as_slice(), w, h)).collect();
        sweep += &sweep_row(&format!("EfficientNet-Lite0 labels ({w}x{h} frames)"), b, runs.min(15), || {
            labeler.label(&images, 5)?;
            Ok(())
        })?;
    }
    let rec_w = 320;
    for b in [1, 4, 8, 16] {
        sweep += &sweep_row("PP-OCR recogniser (48x320 crops)", b, runs, || {
            ocr.recognize_tensor(vec![0.1f32; b * 3 * 48 * rec_w], b, rec_w)?;
            Ok(())
        })?;
    }
    for short in [320, 480, 736] {
        let (dw, dh) = sightline_models::ocr::det_size(w, h, short);
        sweep += &sweep_row(&format!("PP-OCR detector ({dw}x{dh} input)"), 1, runs.min(15), || {
            ocr.detect_tensor(vec![0.1f32; 3 * dw * dh], dw, dh)?;
            Ok(())
        })?;
    }
    let shot_window = vec![90u8; sightline_models::shots::SHOT_WINDOW * sightline_models::SHOT_FRAME_BYTES];
    let mut shots = sightline_models::ShotDetector::load(&rt, &m.task_files("shots")?[0], threads)?;
    for b in [1, 2, 4] {
        let windows = vec![shot_window.as_slice(); b];
        sweep += &sweep_row("TransNetV2 shot boundaries (windows of 100 frames)", b, runs.min(15), || {
            shots.predict(&windows)?;
            Ok(())
        })?;
    }
    // Moonshine's beam width: word error rate over the espeak sentences and decode time.
    let mut vad = SileroVad::load(&rt, &m.task_files("vad")?[0])?;
    let stt_files = m.task_files("stt")?;
    let mut stt = Moonshine::load(&rt, &stt_files[0], &stt_files[1], &stt_files[2], cfg.speech.threads)?;
    let mut utterances = Vec::new();
    for sentence in sightline_testkit::SPEECH_SENTENCES {
        let samples = sightline_testkit::speech_samples(sentence)?;
        let regions = vad.speech_regions(&samples, cfg.speech.vad_threshold, cfg.speech.min_speech_ms)?;
        utterances.push((sentence, regions.iter().map(|&(s, e)| samples[s..e].to_vec()).collect::<Vec<_>>()));
    }
    let mut beams = String::new();
    for width in [1, 2, 4, 8] {
        stt.set_beam_width(width);
        let (mut errors, mut words, mut secs) = (0, 0, 0.0);
        for (sentence, segments) in &utterances {
            let started = Instant::now();
            let heard =
                segments.iter().map(|seg| Ok(stt.transcribe(seg)?.text)).collect::<Result<Vec<_>>>()?;
            secs += started.elapsed().as_secs_f64();
            let (e, n) = word_errors(sentence, &heard.join(" "));
            errors += e;
            words += n;
        }
        eprintln!("  moonshine beam {width}: {errors} word errors in {words}");
        beams += &format!(
            "| {width} | {:.1} % ({errors}/{words}) | {:.0} |\n",
            errors as f64 * 100.0 / words as f64,
            secs * 1000.0 / utterances.len() as f64
        );
    }
    let text = format!(
        "## Inference ({n} captioned {w}x{h} frames through OCR, {threads} ONNX Runtime thread(s), CPU; {})\n\n\
         | path | frames/s | seconds |\n|---|---|---|\n\
         | bare ONNX Runtime (detector + recogniser called in a loop) | {bare:.2} | {bare_s:.2} |\n\
         | inference actor (JetStream in, events published, then acked; batch_max {}) | {actor:.2} | {actor_s:.2} |\n\n\
         Actor ÷ bare: **{:.3}** (goal ≥ 0.90). Lines read exactly in the bare run: {read_ok}/{n}.\n\n\
         Batch-size sweep (after one warm-up run; {runs} timed runs each, the detector and labeller 15):\n\n\
         | model | batch | items/s | p50 ms per batch | p99 ms per batch |\n|---|---|---|---|---|\n{sweep}\n\
         Moonshine base, beam width over the ten espeak-ng sentences of the speech quality test \
         ({} thread(s); the default is {}):\n\n\
         | beam width | word error rate | decode ms per sentence |\n|---|---|---|\n{beams}\n",
        now_utc(),
        cfg.ocr.batch_max,
        actor / bare,
        cfg.speech.threads,
        cfg.speech.beam_width
    );
    println!("{text}");
    append(report, &text)
}

fn read_f32(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("{} (run `make setup`)", path.display()))?;
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

fn providers_bench(report: &Path, runs: usize, require_cuda: bool, config: Option<&Path>) -> Result<()> {
    use sightline_models::{
        GpuPreprocessor, Moonshine, Ocr, OcrParams, Provider, Runtime, ShotDetector, SileroVad, TextEmbedder,
        preprocess_cpu,
    };
    let cfg = sightline_settings::Config::load(config.or(Some(Path::new("config/sightline.toml"))))?;
    let m = &cfg.models;
    let cpu = Runtime::load(&m.onnxruntime_lib())?;
    let rt = cpu.clone().with_providers(&m.providers, m.cuda_device)?;
    let name = rt.provider().name();
    if require_cuda && !matches!(rt.provider(), Provider::Cuda { .. }) {
        bail!(
            "CUDA is not available to {} ({}); models.providers = {:?}",
            m.onnxruntime_lib().display(),
            sightline_models::cuda_available().err().unwrap_or_default(),
            m.providers
        );
    }
    let fixtures = std::env::var("SIGHTLINE_FIXTURES").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/sightline/fixtures")
    });
    let timed = |f: &mut dyn FnMut() -> Result<Vec<f32>>| -> Result<(Vec<f32>, f64)> {
        let out = f()?;
        let t = Instant::now();
        for _ in 0..runs {
            f()?;
        }
        Ok((out, runs as f64 / t.elapsed().as_secs_f64()))
    };
    let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    // Stated tolerance: 1e-3 on every output value (greedy tokens: identical).
    let (mut rows, mut failed) = (String::new(), Vec::new());
    let mut row = |model: &str, on: (Vec<f32>, f64), base: (Vec<f32>, f64)| {
        let d = if on.0.len() == base.0.len() { diff(&on.0, &base.0) } else { f32::INFINITY };
        let ok = if model.contains("tokens") { d == 0.0 } else { d < 1e-3 };
        if !ok {
            failed.push(model.to_string());
        }
        rows += &format!(
            "| {model} | {d:.2e} {} | {:.1} | {:.1} | {:.2} |\n",
            if ok { "ok" } else { "**over tolerance**" },
            on.1,
            base.1,
            on.1 / base.1
        );
    };
    // MiniLM: a batch of 16 sentences.
    let texts = vec!["live video becomes searchable while it plays on two channels"; 16];
    let run_emb = |r: &Runtime| -> Result<(Vec<f32>, f64)> {
        let mut e = TextEmbedder::load(
            r,
            &m.task_files("text_embedding")?[0],
            &m.task_files("text_embedding")?[1],
            1,
        )?;
        timed(&mut || Ok(e.embed(&texts)?.concat()))
    };
    row("MiniLM, 16 sentences", run_emb(&rt)?, run_emb(&cpu)?);
    // PP-OCR: the fixture's detector input and recogniser batch.
    let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures.join("ocr.json"))?)?;
    let dim = |v: &serde_json::Value, i: usize| v[i].as_u64().unwrap_or(0) as usize;
    let (det_in, rec_in) =
        (read_f32(&fixtures.join("ocr_det_input.f32"))?, read_f32(&fixtures.join("ocr_rec_input.f32"))?);
    let (ds, rs) = (&fx["det"]["input_shape"], &fx["rec"]["input_shape"]);
    let run_ocr = |r: &Runtime, det: bool| -> Result<(Vec<f32>, f64)> {
        let mut o =
            Ocr::load(r, &m.task_files("ocr")?[0], &m.task_files("ocr")?[1], 1, OcrParams::default())?;
        if det {
            timed(&mut || Ok(o.detect_tensor(det_in.clone(), dim(ds, 3), dim(ds, 2))?))
        } else {
            timed(&mut || Ok(o.recognize_tensor(rec_in.clone(), dim(rs, 0), dim(rs, 3))?.2))
        }
    };
    row(
        &format!("PP-OCR detector, {}x{}", dim(ds, 3), dim(ds, 2)),
        run_ocr(&rt, true)?,
        run_ocr(&cpu, true)?,
    );
    row(
        &format!("PP-OCR recogniser, {} crops 48x{}", dim(rs, 0), dim(rs, 3)),
        run_ocr(&rt, false)?,
        run_ocr(&cpu, false)?,
    );
    // Speech: the fixture sentence through Silero VAD and Moonshine.
    let speech = read_f32(&fixtures.join("speech.f32"))?;
    let run_vad = |r: &Runtime| -> Result<(Vec<f32>, f64)> {
        let mut v = SileroVad::load(r, &m.task_files("vad")?[0])?;
        timed(&mut || Ok(v.probabilities(&speech)?))
    };
    row("Silero VAD, per-window probabilities", run_vad(&rt)?, run_vad(&cpu)?);
    let run_stt = |r: &Runtime| -> Result<(Vec<f32>, f64)> {
        let mut s = Moonshine::load(
            r,
            &m.task_files("stt")?[0],
            &m.task_files("stt")?[1],
            &m.task_files("stt")?[2],
            1,
        )?;
        timed(&mut || Ok(s.transcribe(&speech)?.tokens.iter().map(|&t| t as f32).collect()))
    };
    row("Moonshine base, greedy tokens", run_stt(&rt)?, run_stt(&cpu)?);
    // TransNetV2: the fixture's window of 100 frames.
    let window =
        std::fs::read(fixtures.join("shots_frames.u8")).context("shots fixture (run `make setup`)")?;
    let run_shots = |r: &Runtime| -> Result<(Vec<f32>, f64)> {
        let mut d = ShotDetector::load(r, &m.task_files("shots")?[0], 1)?;
        timed(&mut || Ok(d.predict(&[&window])?.concat()))
    };
    row("TransNetV2, one window of 100 frames", run_shots(&rt)?, run_shots(&cpu)?);
    // The GPU preprocessing kernel against the same computation on the CPU: 16 frames of the
    // sampled size (and one of another size) to EfficientNet-Lite0's 224x224 input.
    let frames: Vec<Vec<u8>> =
        (0..16u32).map(|i| (0..384 * 216 * 3u32).map(|j| ((j * 7 + i * 13) % 251) as u8).collect()).collect();
    let mut images: Vec<(&[u8], usize, usize)> = frames.iter().map(|f| (f.as_slice(), 384, 216)).collect();
    images.push((&frames[0][..200 * 100 * 3], 200, 100));
    let layout = sightline_models::labels::LABEL_LAYOUT;
    let kernel = match rt.provider() {
        Provider::Cuda { device } => Some(GpuPreprocessor::new(device.max(0) as usize)),
        Provider::Cpu => None,
    };
    match kernel {
        Some(Ok(gpu)) => {
            let on = timed(&mut || gpu.preprocess(&images, &layout).map_err(anyhow::Error::msg))?;
            let base = timed(&mut || Ok(preprocess_cpu(&images, &layout)))?;
            row(&format!("preprocessing kernel on {}, 17 frames to 224x224", gpu.device()), on, base);
        }
        Some(Err(why)) => {
            failed.push(format!("preprocessing kernel ({why})"));
            rows += &format!("| preprocessing kernel | not available: {why} | | | |\n");
        }
        None => rows += "| preprocessing kernel | not run (no CUDA provider) | | | |\n",
    }
    let text = format!(
        "## Execution providers ({name} vs cpu, {}; {runs} timed runs each after a warm-up)\n\n\
         | model | largest difference (tolerance 1e-3; tokens identical) | {name} runs/s | cpu runs/s | speed-up |\n\
         |---|---|---|---|---|\n{rows}\n",
        now_utc()
    );
    println!("{text}");
    append(report, &text)?;
    if !failed.is_empty() {
        bail!("{name} differs from the CPU beyond tolerance in: {}", failed.join(", "));
    }
    Ok(())
}
