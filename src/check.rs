//! `sightline check`: one line per dependency, OK or FAIL with the reason.

use sightline_settings::Config;
use std::path::Path;

/// The lines printed so far, and whether every one passed.
struct Report {
    all: bool,
}

impl Report {
    fn line(&mut self, name: &str, res: anyhow::Result<String>) {
        match &res {
            Ok(d) => println!("OK    {name:<22} {d}"),
            Err(e) => {
                self.all = false;
                println!("FAIL  {name:<22} {e:#}")
            }
        }
    }
}

/// Checks every dependency; returns whether all passed.
pub async fn check(cfg: &Config) -> bool {
    let mut r = Report { all: true };
    services(cfg, &mut r).await;
    models(cfg, &mut r);
    media(&mut r);
    r.all
}

/// NATS with JetStream, Redis with vector sets, ClickHouse.
async fn services(cfg: &Config, r: &mut Report) {
    match sightline_actors::Bus::connect(&cfg.nats).await {
        Ok(b) => match b.js.query_account().await {
            Ok(acc) => r.line(
                "nats+jetstream",
                Ok(format!("{} (JetStream storage {} bytes used)", cfg.nats.url, acc.storage)),
            ),
            Err(e) => r.line(
                "nats+jetstream",
                Err(anyhow::anyhow!("{}: JetStream not available: {e}", cfg.nats.url)),
            ),
        },
        Err(e) => r.line("nats+jetstream", Err(e.into())),
    }
    let redis = async {
        let v = sightline_store::VectorStore::connect(&cfg.redis.url).await.map_err(anyhow::Error::from)?;
        v.probe().await.map_err(anyhow::Error::from)
    };
    r.line(
        "redis+vector-sets",
        redis.await.map(|v| format!("{} (Redis {v}, VADD/VSIM work)", cfg.redis.url)),
    );
    let store = sightline_store::EventStore::new(&cfg.clickhouse);
    let version = store.version().await;
    r.line(
        "clickhouse",
        version.map(|v| format!("{} (version {v})", cfg.clickhouse.url)).map_err(anyhow::Error::from),
    );
}

/// ONNX Runtime, where models run, and every model of the registry: its files present, each ONNX
/// file loads.
fn models(cfg: &Config, r: &mut Report) {
    let m = &cfg.models;
    let rt = sightline_models::Runtime::load(&m.onnxruntime_lib())
        .and_then(|rt| rt.with_providers(&m.providers, m.cuda_device))
        .map(|rt| rt.with_tf32(m.tf32_files()));
    r.line(
        "onnxruntime",
        rt.as_ref()
            .map(|rt| format!("{} ({})", m.onnxruntime_lib().display(), rt.version()))
            .map_err(|e| anyhow::anyhow!("{e}")),
    );
    // CUDA when asked for and offered, else the CPU (not a failure).
    if let Ok(rt) = &rt {
        let why = match (
            m.providers.contains(&sightline_settings::ExecutionProvider::Cuda),
            sightline_models::cuda_available(),
        ) {
            (false, _) => " (cuda not in models.providers)".to_string(),
            (true, Ok(())) => String::new(),
            (true, Err(e)) => format!(" (CUDA unavailable: {e})"),
        };
        r.line("execution provider", Ok(format!("{}{why}", rt.provider().name())));
    }
    for spec in &m.registry {
        let cpu_only = spec.cpu_files.iter().filter(|f| !spec.files.contains(f));
        let res = spec.files.iter().chain(cpu_only).try_for_each(|f| {
            let path = m.path(f);
            let onnx = matches!(path.extension().and_then(|e| e.to_str()), Some("onnx" | "ort"));
            match (&rt, path.exists()) {
                (_, false) => Err(anyhow::anyhow!("{} missing (run `make setup`)", path.display())),
                (Ok(rt), true) if onnx => {
                    rt.session(&path, 1).map(|_| ()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
                }
                _ => Ok(()),
            }
        });
        let fallback = if spec.fallback.is_empty() {
            String::new()
        } else {
            format!(", falls back to {}", spec.fallback)
        };
        r.line(
            &format!("model {}", spec.name),
            res.map(|()| format!("{} ({}, {} file(s){fallback})", spec.id(), spec.task, spec.files.len())),
        );
    }
}

/// GStreamer's elements, and whether a GPU is there (informational: the CPU path always works).
fn media(r: &mut Report) {
    use sightline_streams::pipeline;
    let gst = pipeline::init().map_err(anyhow::Error::from).and_then(|_| {
        let missing = pipeline::missing_elements();
        if missing.is_empty() {
            Ok(format!("{} elements present", pipeline::REQUIRED_ELEMENTS.len()))
        } else {
            Err(anyhow::anyhow!(
                "missing elements: {} (install the GStreamer plugin packages: `make setup`)",
                missing.join(", ")
            ))
        }
    });
    r.line("gstreamer", gst);
    let gpu = Path::new("/proc/driver/nvidia/version").exists() || Path::new("/dev/nvidia0").exists();
    println!(
        "{}  {:<22} {}",
        if gpu { "OK  " } else { "INFO" },
        "gpu",
        if gpu { "NVIDIA driver present" } else { "no GPU found; inference runs on CPU" }
    );
}
