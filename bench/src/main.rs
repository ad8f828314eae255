//! Ingest benchmarks, written to a report (`make bench`):
//! - CPU of Sightline's ingest pipeline per stream ÷ CPU of bare `gst-launch-1.0` decoding of
//!   the same source, for 720p30 and 1080p30 H.264, measured side by side in one run (goal ≤ 1.15),
//!   and how many 720p30 streams one core sustains;
//! - churn: register and delete N streams M times against a live source; threads and RSS before
//!   and after;
//! - store: Redis vector sets (VADD throughput, VSIM p50/p99 and recall@10 against brute force)
//!   and the ClickHouse sink's rows/s from JetStream to ClickHouse;
//! - inference: the OCR and speech inference actors' throughput (JetStream in, events out) ÷ bare ONNX Runtime
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

mod bare;
mod inference;
mod ingest;
mod pools;
mod providers;
mod quality;
mod scaleout;
mod store;

use inference::inference_bench;
use ingest::{churn, cpu, ingest_one};
use providers::providers_bench;
use store::store_bench;

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
        /// Rounds before the baseline is taken.
        #[arg(long, default_value_t = 10)]
        warmup_rounds: usize,
        /// Leave freed memory with the allocator (no `malloc_trim` after teardowns), to compare.
        #[arg(long)]
        no_trim: bool,
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
        /// Also each model at growing batch sizes on the configured provider.
        #[arg(long)]
        sweep: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The same speech backlog drained by one inference node, then two; appends to the report.
    Scaleout {
        #[arg(long, default_value = ".data/reports/bench.md")]
        report: PathBuf,
        /// Speech segments in the backlog.
        #[arg(long, default_value_t = 40)]
        segments: usize,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Speech and on-screen text against the generated evaluation sets (make quality); writes
    /// the report.
    Quality {
        #[arg(long, default_value = ".data/reports/quality.md")]
        report: PathBuf,
        /// Parts to run (`ocr`, `cuts`, `speech`, `continuous`, `languages`); all when none is given.
        #[arg(long = "only")]
        only: Vec<String>,
        /// Keep every n-th item of each set (1: all).
        #[arg(long, default_value_t = 1)]
        every: usize,
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
        /// Rounds of each pool's bare run and actor run side by side (the ratio is their median).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Bare ONNX Runtime on a clip's own frames and audio, per pool and batch size (the capacity
    /// harness's model reference); prints JSON.
    Bare {
        /// The clip (any file ffmpeg reads).
        #[arg(long)]
        clip: PathBuf,
        /// A pool and its batch sizes, e.g. `ocr=1,4` (pools: ocr, scenes, speech); repeatable.
        #[arg(long = "batch", value_parser = parse_pool_batches)]
        batches: Vec<(String, Vec<usize>)>,
        /// Items per measurement at least (the clip's content repeated).
        #[arg(long, default_value_t = 24)]
        min_items: usize,
        /// Also write the JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// `pool=1,4` → ("pool", [1, 4]).
fn parse_pool_batches(s: &str) -> Result<(String, Vec<usize>), String> {
    let (pool, sizes) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected pool=batch[,batch…]"))?;
    let sizes = sizes
        .split(',')
        .map(|b| b.trim().parse::<usize>().ok().filter(|&b| (1..=256).contains(&b)))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("{s:?}: batch sizes are whole numbers 1..=256"))?;
    Ok((pool.trim().to_string(), sizes))
}

fn main() -> Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    match Args::parse().cmd {
        Cmd::Cpu { report, seconds } => cpu(&report, seconds),
        Cmd::IngestOne { file } => ingest_one(&file),
        Cmd::Churn { report, streams, rounds, warmup_rounds, no_trim, config } => {
            sightline_streams::memory::set_trimming(!no_trim);
            tokio::runtime::Runtime::new()?.block_on(churn(
                &report,
                streams,
                (warmup_rounds, rounds),
                config.as_deref(),
            ))
        }
        Cmd::Store { report, vectors, queries, events, config } => tokio::runtime::Runtime::new()?
            .block_on(store_bench(&report, vectors, queries, events, config.as_deref())),
        Cmd::Providers { report, runs, require_cuda, sweep, config } => {
            providers_bench(&report, runs, require_cuda, sweep, config.as_deref())
        }
        Cmd::Scaleout { report, segments, config } => tokio::runtime::Runtime::new()?
            .block_on(scaleout::scaleout_bench(&report, segments, config.as_deref())),
        Cmd::Quality { report, only, every, config } => {
            quality::quality(&report, &only, every, config.as_deref())
        }
        Cmd::Bare { clip, batches, min_items, out, config } => {
            let mut by_pool = std::collections::BTreeMap::<String, Vec<usize>>::new();
            for (pool, sizes) in batches {
                by_pool.entry(pool).or_default().extend(sizes);
            }
            bare::bare_bench(&clip, &by_pool, min_items, out.as_deref(), config.as_deref())
        }
        Cmd::Inference { report, frames, runs, rounds, config } => tokio::runtime::Runtime::new()?
            .block_on(inference_bench(&report, frames, runs, rounds, config.as_deref())),
    }
}

/// When a figure was measured, and with which build (every report heading says it).
fn now_utc() -> String {
    let t = time::OffsetDateTime::now_utc();
    let profile = if cfg!(debug_assertions) { "dev build" } else { "release build" };
    format!(
        "{}-{:02}-{:02} {:02}:{:02} UTC, {profile}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute()
    )
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

/// The configuration, with a NATS prefix and ClickHouse database of this run's own (and its tag).
fn isolated_config(config: Option<&Path>) -> Result<(sightline_settings::Config, String)> {
    let mut cfg = sightline_settings::Config::load(config.or(Some(Path::new("config/sightline.toml"))))?;
    let tag = format!("bench{}", std::process::id());
    cfg.nats.prefix = tag.to_uppercase();
    cfg.clickhouse.database = format!("sightline_{tag}");
    Ok((cfg, tag))
}
