//! Ingest CPU against bare decoding, one file through the pipeline, and the churn soak.

use super::*;

/// user+system CPU seconds of a child process: the growth of this process's reaped children's
/// CPU time (getrusage) across running it, so no clock-tick arithmetic is needed.
fn run_measured(cmd: &mut std::process::Command) -> Result<f64> {
    let before = children_cpu_s();
    let status = cmd.stdout(std::process::Stdio::null()).status().context("spawn")?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(children_cpu_s() - before)
}

/// user+system CPU seconds of every child this process has reaped.
fn children_cpu_s() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; on failure it stays zeroed.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
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

pub(crate) fn cpu(report: &Path, seconds: u32) -> Result<()> {
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

pub(crate) fn ingest_one(file: &Path) -> Result<()> {
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

pub(crate) async fn churn(
    report: &Path,
    n: usize,
    (warmup, rounds): (usize, usize),
    config: Option<&Path>,
) -> Result<()> {
    use sightline_actors::{Metrics, Node, Roles};
    use sightline_testkit::{ClipSpec, LiveHls};
    let mut cfg = sightline_settings::Config::load(config.or(Some(Path::new("config/sightline.toml"))))?;
    cfg.nats.prefix = format!("CHURN{}", std::process::id());
    cfg.nats.work_max_bytes = 64 << 20;
    cfg.nats.events_max_bytes = 64 << 20;
    cfg.ingest.allow_hosts = vec!["127.0.0.1".into()];
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
    let one_round = |round: usize| churn_round(reg.clone(), live.url.clone(), n, round);
    // Warm-up rounds, so one-time allocations (plugin loading, pools, the allocator's working set
    // for this many pipelines at once) are in the baseline: RSS after each 200 pipelines grew by
    // 14 MB over the first 200, then by 1 to 3 MB per 200 (2000 pipelines, 2026-12-02).
    for w in 0..warmup.max(1) {
        one_round(usize::MAX - w).await?;
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    let (threads0, rss0) = (proc_status("Threads:"), proc_status("VmRSS:"));
    let started = Instant::now();
    // RSS every 10 rounds, once the pipelines are gone and the trimmer has run: the curve shows a
    // plateau (memory kept for reuse) or a slope (memory held per pipeline).
    let mut curve = String::new();
    for r in 0..rounds {
        one_round(r).await?;
        if r % 10 == 9 {
            tokio::time::sleep(sightline_streams::memory::EVERY + Duration::from_secs(2)).await;
            let rss = proc_status("VmRSS:") as f64 / 1024.0;
            eprintln!("churn: {} rounds, threads {}, RSS {rss:.0} MB", r + 1, proc_status("Threads:"));
            curve += &format!("{} → {rss:.1}; ", (r + 1) * n);
        }
    }
    // Idle blocking-pool threads (pipeline teardown runs there) exit after 10 s.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let (threads1, rss1) = (proc_status("Threads:"), proc_status("VmRSS:"));
    let q = sightline_streams::pipeline::QUARANTINED_DEMUXERS.load(Ordering::Relaxed);
    let trims = sightline_streams::memory::TRIMS.load(Ordering::Relaxed);
    let text = format!(
        "## Churn ({rounds} rounds × {n} streams registered, decoding, deleted, after {warmup} warm-up round(s); {}; {:.0} s)\n\n\
         | | threads | RSS MB |\n|---|---|---|\n| after warm-up round | {threads0} | {:.1} |\n| after churn | {threads1} | {:.1} |\n\n\
         RSS growth {:.1} MB over {} pipelines ({:.1} KB each); quarantined demuxers: {q}; \
         heap trims after teardowns: {trims}{}. RSS MB after each 10 rounds (pipelines → MB, \
         pipelines gone): {curve}\n\n",
        now_utc(),
        started.elapsed().as_secs_f64(),
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        (rss1 as f64 - rss0 as f64) / 1024.0,
        rounds * n,
        (rss1 as f64 - rss0 as f64) / (rounds * n) as f64,
        if trims == 0 { " (trimming off)" } else { "" },
    );
    println!("{text}");
    let bus = node.bus.clone();
    node.shutdown().await;
    bus.destroy().await;
    drop(live);
    append(report, &text)
}

/// One churn round: `n` streams registered, each decoding, then all deleted.
async fn churn_round(reg: sightline_actors::Registry, url: String, n: usize, round: usize) -> Result<()> {
    use sightline_actors::{StreamSpec, StreamState};
    let ids: Vec<String> = (0..n).map(|i| format!("churn-{round}-{i}")).collect();
    for id in &ids {
        let spec = StreamSpec {
            id: id.clone(),
            name: id.clone(),
            url: url.clone(),
            created_ms: 0,
            paused: false,
            incarnation: 1,
            languages: Vec::new(),
        };
        reg.create(&spec).await?;
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
    Ok(())
}
