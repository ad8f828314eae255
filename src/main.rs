//! The `sightline` binary: wires the roles together from config (`run`), and checks that every
//! dependency is in place (`check`).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sightline_actors::{Metrics, Node, Roles, StreamSpec};
use sightline_settings::Config;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "sightline", version, about = "Live-stream media intelligence")]
struct Cli {
    /// Config file (default: config/sightline.toml when it exists).
    #[arg(long, global = true, env = "SIGHTLINE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Sightline: the given roles (all by default) until Ctrl-C.
    Run {
        /// Comma-separated: gateway, ingest, inference, sink.
        #[arg(long, default_value = "gateway,ingest,inference,sink")]
        roles: String,
        /// Also play a generated live demo stream on loopback and register it.
        #[arg(long)]
        demo: bool,
        /// Folder for the demo's media.
        #[arg(long, default_value = ".data/demo")]
        demo_dir: PathBuf,
    },
    /// Check NATS, Redis, ClickHouse, ONNX Runtime, models, GStreamer and GPU; one line each.
    Check,
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    let default = Path::new("config/sightline.toml");
    let path = path.or(default.exists().then_some(default));
    Ok(Config::load(path)?)
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,async_nats=warn,ort=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let cfg = load_config(cli.config.as_deref())?;
    match cli.cmd {
        Command::Run { roles, demo, demo_dir } => {
            let roles = Roles::parse(&roles).map_err(anyhow::Error::msg)?;
            run(cfg, roles, demo.then_some(demo_dir)).await
        }
        Command::Check => {
            let ok = check(&cfg).await;
            std::process::exit(if ok { 0 } else { 1 });
        }
    }
}

async fn run(cfg: Config, roles: Roles, demo: Option<PathBuf>) -> Result<()> {
    let metrics = Metrics::new();
    let node = Node::start(&cfg, roles, metrics.clone()).await.context("starting Sightline")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut gateway = None;
    if roles.gateway {
        let listener = tokio::net::TcpListener::bind(&cfg.gateway.listen).await.with_context(|| {
            format!("cannot listen on {} (port taken? set SIGHTLINE_GATEWAY__LISTEN)", cfg.gateway.listen)
        })?;
        let addr = listener.local_addr()?;
        let state = sightline_gateway::AppState::new(
            &cfg,
            node.bus.clone(),
            node.registry.clone(),
            node.store.clone(),
            metrics.clone(),
        )
        .map_err(anyhow::Error::msg)?;
        let mut rx = stop_rx.clone();
        gateway = Some(tokio::spawn(sightline_gateway::serve(listener, state, async move {
            let _ = rx.wait_for(|s| *s).await;
        })));
        println!("\nSightline is running.");
        println!("  Dashboard:  http://{addr}/");
        println!("  API:        http://{addr}/v1/streams");
        println!("  Live feed:  ws://{addr}/v1/feed");
        println!("  Metrics:    http://{addr}/metrics");
        println!("  ClickHouse: {} (database {})\n", cfg.clickhouse.url, cfg.clickhouse.database);
    }
    let _demo = match demo {
        Some(dir) => Some(start_demo(&node, &dir).await.context("starting the demo stream")?),
        None => None,
    };
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down: draining in-flight work");
    let _ = stop_tx.send(true);
    if let Some(g) = gateway {
        let _ = g.await;
    }
    node.shutdown().await;
    Ok(())
}

/// Renders the demo clip, plays it as live HLS on loopback and registers it (replacing an earlier
/// demo registration, whose URL pointed at a previous run's port).
async fn start_demo(node: &Node, dir: &Path) -> Result<sightline_testkit::LiveHls> {
    use sightline_testkit::{ClipSpec, LiveHls};
    let clip = ClipSpec::standard().render(&dir.join("clips")).await?;
    let live = LiveHls::start(&clip, &dir.join("hls"), 0).await?;
    for s in node.registry.list().await? {
        if s.name == "demo" {
            node.registry.delete(&s.id).await?;
        }
    }
    let spec = StreamSpec {
        id: format!("demo{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        name: "demo".into(),
        url: live.url.clone(),
        created_ms: sightline_streams::pipeline::now_ms(),
        paused: false,
    };
    anyhow::ensure!(node.registry.create(&spec).await?, "demo stream id {} is taken", spec.id);
    println!(
        "Demo stream `{}` registered: {} (scene cuts every few seconds, speech, captions)",
        spec.id, live.url
    );
    Ok(live)
}

/// One line per dependency: OK or FAIL with the reason. Returns whether all passed.
async fn check(cfg: &Config) -> bool {
    let mut all = true;
    let mut line = |name: &str, res: Result<String, String>| match &res {
        Ok(d) => println!("OK    {name:<22} {d}"),
        Err(e) => {
            all = false;
            println!("FAIL  {name:<22} {e}")
        }
    };
    // NATS + JetStream
    let bus = sightline_actors::Bus::connect(&cfg.nats).await;
    match &bus {
        Ok(b) => match b.js.query_account().await {
            Ok(acc) => line(
                "nats+jetstream",
                Ok(format!("{} (JetStream storage {} bytes used)", cfg.nats.url, acc.storage)),
            ),
            Err(e) => line("nats+jetstream", Err(format!("{}: JetStream not available: {e}", cfg.nats.url))),
        },
        Err(e) => line("nats+jetstream", Err(e.to_string())),
    }
    // Redis vector sets
    let redis = async {
        let v = sightline_store::VectorStore::connect(&cfg.redis.url).await.map_err(|e| e.to_string())?;
        v.probe().await.map_err(|e| e.to_string())
    };
    line("redis+vector-sets", redis.await.map(|v| format!("{} (Redis {v}, VADD/VSIM work)", cfg.redis.url)));
    // ClickHouse
    let store = sightline_store::EventStore::new(&cfg.clickhouse);
    line(
        "clickhouse",
        store
            .version()
            .await
            .map(|v| format!("{} (version {v})", cfg.clickhouse.url))
            .map_err(|e| e.to_string()),
    );
    // ONNX Runtime and models
    let m = &cfg.models;
    let rt = sightline_models::Runtime::load(&m.onnxruntime_lib())
        .and_then(|r| r.with_providers(&m.providers, m.cuda_device));
    line(
        "onnxruntime",
        rt.as_ref()
            .map(|r| format!("{} ({})", m.onnxruntime_lib().display(), r.version()))
            .map_err(|e| e.to_string()),
    );
    // Where models run: CUDA when asked for and offered, else the CPU (not a failure).
    if let Ok(r) = &rt {
        let why = match (m.providers.iter().any(|p| p == "cuda"), sightline_models::cuda_available()) {
            (false, _) => " (cuda not in models.providers)".to_string(),
            (true, Ok(())) => String::new(),
            (true, Err(e)) => format!(" (CUDA unavailable: {e})"),
        };
        line("execution provider", Ok(format!("{}{why}", r.provider().name())));
    }
    // Every model in the registry: each file present, each ONNX file loads.
    for spec in &m.registry {
        let res = spec.files.iter().try_for_each(|f| {
            let path = m.path(f);
            let onnx = matches!(path.extension().and_then(|e| e.to_str()), Some("onnx" | "ort"));
            match (&rt, path.exists()) {
                (_, false) => Err(format!("{} missing (run `make setup`)", path.display())),
                (Ok(rt), true) if onnx => {
                    rt.session(&path, 1).map(|_| ()).map_err(|e| format!("{}: {e}", path.display()))
                }
                _ => Ok(()),
            }
        });
        let fallback = if spec.fallback.is_empty() {
            String::new()
        } else {
            format!(", falls back to {}", spec.fallback)
        };
        line(
            &format!("model {}", spec.name),
            res.map(|()| format!("{} ({}, {} file(s){fallback})", spec.id(), spec.task, spec.files.len())),
        );
    }
    // GStreamer
    let gst = sightline_streams::pipeline::init().map_err(|e| e.to_string()).and_then(|_| {
        let missing = sightline_streams::pipeline::missing_elements();
        if missing.is_empty() {
            Ok(format!("{} elements present", sightline_streams::pipeline::REQUIRED_ELEMENTS.len()))
        } else {
            Err(format!(
                "missing elements: {} (install the GStreamer plugin packages: `make setup`)",
                missing.join(", ")
            ))
        }
    });
    line("gstreamer", gst);
    // GPU: informational; the CPU path always works.
    let gpu = Path::new("/proc/driver/nvidia/version").exists() || Path::new("/dev/nvidia0").exists();
    println!(
        "{}  {:<22} {}",
        if gpu { "OK  " } else { "INFO" },
        "gpu",
        if gpu { "NVIDIA driver present" } else { "no GPU found; inference runs on CPU" }
    );
    all
}
