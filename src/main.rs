//! The `sightline` binary: wires the roles together from config (`run`), and checks that every
//! dependency is in place (`check`).

mod check;

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
        /// Port of the demo's HLS server on 127.0.0.1 (0: any free port). The source policy must
        /// allow it (`ingest.allow_hosts`; `make run` allows exactly 127.0.0.1:8089).
        #[arg(long, default_value_t = 8089)]
        demo_port: u16,
    },
    /// Check NATS, Redis, ClickHouse, ONNX Runtime, models, GStreamer and GPU; one line each.
    Check,
    /// Print the ClickHouse migrations' SQL as they run with this config (`clickhouse.cluster`:
    /// ON CLUSTER, replicated engines), without running them.
    Migrations {
        /// Override `clickhouse.cluster` (e.g. `--cluster prod` to see the cluster form).
        #[arg(long)]
        cluster: Option<String>,
    },
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
        Command::Run { roles, demo, demo_dir, demo_port } => {
            let roles = Roles::parse(&roles)?;
            run(cfg, roles, demo.then_some((demo_dir, demo_port))).await
        }
        Command::Migrations { cluster } => {
            let cluster = cluster.unwrap_or_else(|| cfg.clickhouse.cluster.clone());
            print!("{}", sightline_store::migration_sql(&cfg.clickhouse.migrations_dir, &cluster)?);
            Ok(())
        }
        Command::Check => {
            let ok = check::check(&cfg).await;
            std::process::exit(if ok { 0 } else { 1 });
        }
    }
}

async fn run(cfg: Config, roles: Roles, demo: Option<(PathBuf, u16)>) -> Result<()> {
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
        Some((dir, port)) => Some(start_demo(&node, &dir, port).await.context("starting the demo stream")?),
        None => None,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    if roles.ingest {
        // Streams go to the other ingest nodes before this one exits (each stops, then its
        // lease is released for another node to take at once).
        tracing::info!(node = %node.presence.id, "draining: handing streams over");
        if !node.drain().await {
            tracing::warn!("drain timed out; the remaining leases lapse by themselves");
        }
    }
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
async fn start_demo(node: &Node, dir: &Path, port: u16) -> Result<sightline_testkit::LiveHls> {
    use sightline_testkit::{ClipSpec, LiveHls};
    let clip = ClipSpec::standard().render(&dir.join("clips")).await?;
    let live = LiveHls::start_on(port, &clip, &dir.join("hls"), 0).await?;
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
        incarnation: sightline_bus::new_incarnation(),
        languages: Vec::new(),
    };
    anyhow::ensure!(node.registry.create(&spec).await?, "demo stream id {} is taken", spec.id);
    println!(
        "Demo stream `{}` registered: {} (scene cuts every few seconds, speech, captions)",
        spec.id, live.url
    );
    Ok(live)
}
