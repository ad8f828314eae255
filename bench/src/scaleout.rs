//! Scale-out of inference: the same backlog of speech work drained by one inference node, then by
//! two (separate `sightline run --roles inference` processes on the same durable consumer, each
//! with one speech worker on one ONNX Runtime thread): segments/s and the speed-up. On a machine
//! with at least as many cores as nodes the second node should nearly double the rate.

use super::*;

/// Starts an inference-only node process for `cfg`'s prefix with one single-threaded speech worker.
fn inference_node(cfg: &sightline_settings::Config, id: &str) -> Result<std::process::Child> {
    let bin = std::env::var("SIGHTLINE_BIN").map(PathBuf::from).unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        Path::new(&target).join(if cfg!(debug_assertions) { "debug" } else { "release" })
    });
    let log = std::fs::File::create(std::env::temp_dir().join(format!("{id}.log")))?;
    std::process::Command::new(bin.join("sightline"))
        .args(["run", "--roles", "inference"])
        .env("SIGHTLINE_NATS__PREFIX", &cfg.nats.prefix)
        .env("SIGHTLINE_CLUSTER__NODE_ID", id)
        .env("SIGHTLINE_SPEECH__WORKERS", "1")
        .env("SIGHTLINE_SPEECH__THREADS", "1")
        .env("SIGHTLINE_SPEECH__LAG_TARGET_MS", "0")
        .env("SIGHTLINE_SPEECH__MAX_LAG_MS", "0")
        .env("SIGHTLINE_SCENES__WORKERS", "0")
        .env("SIGHTLINE_OCR__WORKERS", "0")
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.join("sightline").display()))
}

/// `n` segments drained by `nodes` inference nodes: segments/s.
async fn drain_with(nodes: usize, n: usize, segments: &[Vec<f32>], config: Option<&Path>) -> Result<f64> {
    let (mut cfg, tag) = isolated_config(config)?;
    cfg.nats.prefix = format!("{}N{nodes}", cfg.nats.prefix);
    let bus = sightline_actors::Bus::connect(&cfg.nats).await?;
    bus.ensure().await?;
    let mut children = Vec::new();
    for i in 0..nodes {
        children.push(inference_node(&cfg, &format!("{tag}-inference-{i}"))?);
    }
    let publish = async |i: usize, stream: String| {
        crate::pools::publish_segment(&bus, stream, &segments[i % segments.len()]).await
    };
    let result = async {
        // Ready when every node's worker waits on the shared consumer with a pull request.
        let started = Instant::now();
        let mut consumer: Option<async_nats::jetstream::consumer::PullConsumer> = None;
        loop {
            if consumer.is_none()
                && let Ok(s) = bus.js.get_stream(bus.names.audio_stream()).await
            {
                consumer = s.get_consumer(&bus.names.consumer("speech")).await.ok();
            }
            if let Some(c) = consumer.as_mut()
                && c.info().await?.num_waiting as usize >= nodes
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(180) {
                bail!(
                    "{nodes} inference node(s) not ready in 3 minutes (logs in {})",
                    std::env::temp_dir().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut consumer = consumer.expect("consumer");
        // Warm-up: one segment per node, finished.
        for i in 0..nodes {
            publish(i, format!("warm{i}")).await?;
        }
        wait_drained(&mut consumer).await?;
        let started = Instant::now();
        for i in 0..n {
            publish(i, format!("s{i}")).await?;
        }
        wait_drained(&mut consumer).await?;
        Ok(n as f64 / started.elapsed().as_secs_f64())
    }
    .await;
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    bus.destroy().await;
    result
}

async fn wait_drained(c: &mut async_nats::jetstream::consumer::PullConsumer) -> Result<()> {
    let started = Instant::now();
    loop {
        let info = c.info().await?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the speech backlog was not drained in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn scaleout_bench(report: &Path, n: usize, config: Option<&Path>) -> Result<()> {
    let segments: Vec<Vec<f32>> = (0..10)
        .map(|i| Ok(sightline_testkit::speech_samples(sightline_testkit::SPEECH_SENTENCES[i])?))
        .collect::<Result<_>>()?;
    eprintln!("scale-out: {n} speech segments, one inference node");
    let one = drain_with(1, n, &segments, config).await?;
    eprintln!("  {one:.2} segments/s; two inference nodes");
    let two = drain_with(2, n, &segments, config).await?;
    eprintln!("  {two:.2} segments/s");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    append(
        report,
        &format!(
            "\n## Scale-out: inference nodes on one durable consumer ({})\n\n\
             {n} espeak-ng speech segments (one stream each) published to JetStream and drained by\n\
             separate `sightline run --roles inference` processes sharing the speech consumer, each\n\
             with one speech worker on one ONNX Runtime thread; {cores} cores on this machine.\n\n\
             | inference nodes | segments/s | speed-up |\n|---|---|---|\n\
             | 1 | {one:.2} | 1.00 |\n| 2 | {two:.2} | {:.2} |\n",
            now_utc(),
            two / one
        ),
    )
}
