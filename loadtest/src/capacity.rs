//! The capacity harness: Sightline as a black box over HTTP and the websocket feed. It plays its
//! own live sources on loopback (one HLS server or RTMP server per stream, playing a test clip:
//! the news clip with cuts, captions and speech, or the talk show with continuous speech, at
//! 360p, 720p or 1080p), ramps the number of streams in steps, holds each step, and measures per
//! step the media→feed latency per event kind and its split by stage, the sinks' write times, the
//! shed and dropped work, the stream states, and the CPU and RSS of the Sightline process. The
//! capacity is the largest step at which every kind stayed within its target with nothing shed.
//! In the same run it measures the physical references: bare `gst-launch-1.0` decoding of the same
//! source, and (after the ramp, on the then idle machine) bare ONNX Runtime running each pool's
//! models on the clip's own frames and audio at the batch sizes the pools used
//! (`sightline-bench bare`), against which each pool's model time per item is set.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use crate::metrics::{BareOrt, PoolCounters, PoolWork};
use crate::metrics::{
    attach_bare, bare_onnx_runtime, batch_sizes, parse_pool_counters, parse_sink_seconds, pool_work,
};
pub use crate::sources::Protocol;
use crate::sources::{Feed, Source};
use crate::totals::{Totals, shed_during, totals};

/// p95 targets per event kind, milliseconds (the live targets).
#[derive(Debug, Clone, Serialize)]
pub struct Targets(pub BTreeMap<String, i64>);

impl Default for Targets {
    fn default() -> Self {
        Self(
            [("frame", 500), ("scene", 1000), ("ocr", 2000), ("transcript", 3000)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub gateway: String,
    pub api_key: Option<String>,
    /// Streams at each step, e.g. [1, 2, 4, 8].
    pub steps: Vec<usize>,
    /// Before measuring a step (new streams start, pools warm up).
    pub warmup: Duration,
    pub hold: Duration,
    /// The clip every source plays (rendered by `sightline-testkit`).
    pub clip: PathBuf,
    /// Where the sources write their segments.
    pub work_dir: PathBuf,
    /// The Sightline process, for CPU and RSS (found by name when not given).
    pub pid: Option<u32>,
    pub targets: Targets,
    /// Measure bare decoding of the clip for this long (0: skip).
    pub reference: Duration,
    /// How the sources are served.
    pub protocol: Protocol,
    /// What the sources play, in words (for the report).
    pub source: String,
    /// `sightline-bench`, for the bare ONNX Runtime reference (None: skip it).
    pub bare_ort: Option<PathBuf>,
}

/// Latency percentiles of one event kind, milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub count: usize,
    pub p50: i64,
    pub p95: i64,
    pub p99: i64,
    pub max: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub streams: usize,
    pub seconds: f64,
    pub latency: BTreeMap<String, Latency>,
    /// Where the time went, over the events that carry their stage times: `ingest_publish`
    /// (decoded → stored in JetStream), `queue_wait` (→ taken by a worker), `model` (→ the model
    /// was done), `publish_and_feed` (→ received from the feed).
    pub stages: BTreeMap<String, Latency>,
    /// Mean write time of a batch per sink during the step, ms (from `/metrics`).
    pub sink_write_ms: BTreeMap<String, f64>,
    /// Writes (ClickHouse INSERTs, Redis pipelines) per second per sink during the step.
    pub sink_writes_per_s: BTreeMap<String, f64>,
    /// Per inference pool: batches, items and model time during the step, and the bare ONNX
    /// Runtime reference at the same batch size.
    pub pools: BTreeMap<String, PoolWork>,
    /// Work the pools shed during the step, all streams.
    pub shed: u64,
    /// The same by pool and reason (`ocr.lag`, `speech.coarse`, ...).
    #[serde(default)]
    pub shed_by: BTreeMap<String, u64>,
    pub dropped_frames: u64,
    /// Transcripts the feed delivered during the step, by the language they carry.
    #[serde(default)]
    pub languages: BTreeMap<String, u64>,
    /// Streams per state at the end of the step.
    pub states: BTreeMap<String, usize>,
    pub cpu_percent: Option<f64>,
    /// RSS of the Sightline process when the step's measurement began, and at its end.
    pub rss_start_mb: Option<f64>,
    pub rss_mb: Option<f64>,
    pub within_targets: bool,
    /// Why not, when not.
    pub misses: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub gateway: String,
    pub targets: Targets,
    pub steps: Vec<Step>,
    /// The largest step within every target with nothing shed (0: none).
    pub capacity: usize,
    /// CPU of bare `gst-launch-1.0 uridecodebin3 ! fakesink` decoding one source, percent of a core.
    pub bare_decode_cpu_percent: Option<f64>,
    /// Bare ONNX Runtime per pool and batch size on the clip's content (empty: not measured).
    pub bare_ort: Vec<BareOrt>,
    /// Why the bare ONNX Runtime reference is missing, when it is.
    pub bare_ort_error: Option<String>,
    /// What the sources played and how they were served.
    pub source: String,
    /// Events the feed delivered per stream over the whole run (registration to deletion).
    pub events_by_stream: BTreeMap<String, u64>,
    /// Times the feed connection was lost and made again (events in between are missing).
    pub feed_reconnects: u64,
}

/// Percentiles of a sample (nearest rank).
pub fn latency(mut ms: Vec<i64>) -> Latency {
    ms.sort_unstable();
    let at = |p: f64| {
        if ms.is_empty() {
            return 0;
        }
        ms[((ms.len() as f64 - 1.0) * p).round() as usize]
    };
    Latency { count: ms.len(), p50: at(0.5), p95: at(0.95), p99: at(0.99), max: at(1.0) }
}

/// The media time an event's latency is measured from, Unix ms: when its media was decoded; for a
/// transcript, the end of the utterance.
pub fn media_wall_ms(event: &serde_json::Value) -> Option<i64> {
    let wall = event["wall_ms"].as_i64()?;
    let span = match (event["pts_ms"].as_i64(), event["end_ms"].as_i64()) {
        (Some(p), Some(e)) => (e - p).max(0),
        _ => 0,
    };
    Some(wall + span)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An event's stage durations, ms, when it carries its stage times (`timing`).
pub fn stages(event: &serde_json::Value, received_ms: i64) -> Option<[(&'static str, i64); 4]> {
    let t = &event["timing"];
    let (decoded, queued) = (event["wall_ms"].as_i64()?, t["queued_ms"].as_i64()?);
    let (started, done) = (t["started_ms"].as_i64()?, t["done_ms"].as_i64()?);
    Some([
        ("ingest_publish", queued - decoded),
        ("queue_wait", started - queued),
        ("model", done - started),
        ("publish_and_feed", received_ms - done),
    ])
}

/// CPU seconds (user + system) a process has used, and its RSS in MB.
fn proc_usage(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = (fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some((cpu, kb / 1024.0))
}

/// The pid of the running `sightline` process, when there is exactly one.
fn find_sightline() -> Option<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sightline") {
            found.push(pid);
        }
    }
    (found.len() == 1).then(|| found[0])
}

/// Sightline's HTTP API as the harness calls it (with its API key, when one is given).
pub(crate) struct Api {
    client: reqwest::Client,
    gateway: String,
    key: Option<String>,
}

impl Api {
    async fn get_text(&self, path: &str) -> Result<String> {
        let mut req = self.client.get(format!("http://{}{path}", self.gateway));
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        Ok(req.send().await?.error_for_status()?.text().await?)
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, serde_json::Value)> {
        let mut req = self.client.request(method, format!("http://{}{path}", self.gateway));
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.with_context(|| format!("gateway at {}", self.gateway))?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(serde_json::Value::Null)))
    }
}

/// Runs bare decoding of `url` for `secs` and returns its CPU, percent of one core.
async fn bare_decode_cpu(url: &str, secs: Duration) -> Option<f64> {
    let mut child = tokio::process::Command::new("gst-launch-1.0")
        .args(["-q", "uridecodebin3", &format!("uri={url}"), "!", "fakesink", "sync=true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let pid = child.id()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (start, _) = proc_usage(pid)?;
    tokio::time::sleep(secs).await;
    let (end, _) = proc_usage(pid)?;
    let _ = child.kill().await;
    Some((end - start) / secs.as_secs_f64() * 100.0)
}

/// Runs the ramp. `progress` is told what is happening (a line at a time).
pub async fn run(opts: &Options, progress: &(dyn Fn(String) + Sync)) -> Result<Report> {
    if opts.steps.is_empty() || opts.steps.windows(2).any(|w| w[1] <= w[0]) {
        bail!("steps must be increasing, e.g. 1,2,4,8");
    }
    let api =
        Api { client: reqwest::Client::new(), gateway: opts.gateway.clone(), key: opts.api_key.clone() };
    let pid = opts.pid.or_else(find_sightline);
    let token = opts.api_key.as_ref().map(|k| format!("?access_token={k}")).unwrap_or_default();
    let mut feed = Feed::connect(format!("ws://{}/v1/feed{token}", opts.gateway)).await?;

    let mut sources: Vec<Source> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut events_by_stream: BTreeMap<String, u64> = BTreeMap::new();
    let mut steps = Vec::new();
    let mut bare = None;
    for &n in &opts.steps {
        while sources.len() < n {
            let i = sources.len();
            let dir = opts.work_dir.join(format!("source-{i}"));
            let live = Source::start(opts.protocol, &opts.clip, &dir).await?;
            if bare.is_none() && !opts.reference.is_zero() {
                progress(format!(
                    "reference: bare decoding of one source for {} s",
                    opts.reference.as_secs()
                ));
                bare = bare_decode_cpu(&live.url(), opts.reference).await;
            }
            let body = serde_json::json!({ "url": live.url(), "name": format!("capacity-{i}") }).to_string();
            let (status, v) = api.call(reqwest::Method::POST, "/v1/streams", Some(body)).await?;
            if status != 201 && status != 200 {
                bail!("registering stream {i}: HTTP {status}: {v}");
            }
            ids.push(v["id"].as_str().unwrap_or_default().to_string());
            sources.push(live);
        }
        let ours: HashSet<String> = ids.iter().cloned().collect();
        progress(format!("step {n}: {n} stream(s), warming up {} s", opts.warmup.as_secs()));
        // Shed work and dropped frames count over the hold, as the latencies do: the warm-up
        // absorbs each new stream's start (HLS players fetch a few segments at once).
        let mut before = Totals::default();
        let mut sinks_before = None;
        let mut pools_before = None;
        let mut lat: HashMap<String, Vec<i64>> = HashMap::new();
        let mut split: HashMap<String, Vec<i64>> = HashMap::new();
        let mut languages: BTreeMap<String, u64> = BTreeMap::new();
        let warm_until = Instant::now() + opts.warmup;
        let until = warm_until + opts.hold;
        let mut usage_start = None;
        let mut last_note = Instant::now();
        while Instant::now() < until {
            if usage_start.is_none() && Instant::now() >= warm_until {
                usage_start = Some((Instant::now(), pid.and_then(proc_usage)));
                before = totals(&api, &ids).await;
                sinks_before = Some(sink_writes(&api).await);
                pools_before = Some(pool_counters(&api).await);
                progress(format!("step {n}: measuring for {} s", opts.hold.as_secs()));
            }
            let next = tokio::time::timeout(Duration::from_millis(250), feed.rx.recv()).await;
            if let Ok(Some((received, t))) = next {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                let Some(stream) = v["stream_id"].as_str().filter(|s| ours.contains(*s)) else { continue };
                *events_by_stream.entry(stream.to_string()).or_default() += 1;
                if usage_start.is_some() {
                    if let (Some(kind), Some(at)) = (v["kind"].as_str(), media_wall_ms(&v)) {
                        lat.entry(kind.to_string()).or_default().push(received - at);
                    }
                    if let Some(lang) = v["transcript"]["language"].as_str() {
                        *languages.entry(lang.to_string()).or_default() += 1;
                    }
                    for (stage, ms) in stages(&v, received).into_iter().flatten() {
                        split.entry(stage.to_string()).or_default().push(ms);
                    }
                }
            }
            if last_note.elapsed() > Duration::from_secs(10) {
                last_note = Instant::now();
                let got: usize = lat.values().map(Vec::len).sum();
                progress(format!("step {n}: {got} events measured so far"));
            }
        }
        let (t0, u0) = usage_start.unwrap_or((Instant::now(), None));
        let secs = t0.elapsed().as_secs_f64();
        let u1 = pid.and_then(proc_usage);
        let rss_start_mb = u0.map(|(_, rss)| rss);
        let (cpu_percent, rss_mb) = match (u0, u1) {
            (Some((c0, _)), Some((c1, rss))) => (Some((c1 - c0) / secs * 100.0), Some(rss)),
            _ => (None, None),
        };
        let after = totals(&api, &ids).await;
        let sinks_after = sink_writes(&api).await;
        let pools = pool_work(&pools_before.unwrap_or_default(), &pool_counters(&api).await);
        let mut sink_writes_per_s = BTreeMap::new();
        let sink_write_ms: BTreeMap<String, f64> = sinks_after
            .iter()
            .filter_map(|(sink, &(sum, count))| {
                let (s0, c0) = sinks_before.as_ref().and_then(|b| b.get(sink)).copied().unwrap_or((0.0, 0.0));
                sink_writes_per_s.insert(sink.clone(), (count - c0) / secs);
                (count > c0).then(|| (sink.clone(), (sum - s0) / (count - c0) * 1000.0))
            })
            .collect();
        let latency: BTreeMap<String, Latency> = lat.into_iter().map(|(k, v)| (k, latency(v))).collect();
        let stages: BTreeMap<String, Latency> =
            split.into_iter().map(|(k, v)| (k, self::latency(v))).collect();
        let mut misses = Vec::new();
        for (kind, l) in &latency {
            if let Some(t) = opts.targets.0.get(kind)
                && l.p95 > *t
            {
                misses.push(format!("{kind} p95 {} ms > {t} ms", l.p95));
            }
        }
        let shed = after.shed.saturating_sub(before.shed);
        let shed_by = shed_during(&before.shed_by, &after.shed_by);
        if shed > 0 {
            let by: Vec<String> = shed_by.iter().map(|(k, n)| format!("{k} {n}")).collect();
            misses.push(format!("{shed} item(s) shed ({})", by.join(", ")));
        }
        let failed = after.states.get("failed").copied().unwrap_or(0);
        if failed > 0 {
            misses.push(format!("{failed} stream(s) failed"));
        }
        let step = Step {
            streams: n,
            seconds: secs,
            latency,
            stages,
            sink_write_ms,
            sink_writes_per_s,
            pools,
            shed,
            shed_by,
            dropped_frames: after.dropped.saturating_sub(before.dropped),
            languages,
            states: after.states,
            cpu_percent,
            rss_start_mb,
            rss_mb,
            within_targets: misses.is_empty(),
            misses,
        };
        progress(format!(
            "step {n}: {} ({})",
            if step.within_targets { "within targets" } else { "over" },
            step.misses.join("; ")
        ));
        steps.push(step);
    }
    // Stop the streams, and read what is still in flight on the feed.
    for id in &ids {
        let _ = api.call(reqwest::Method::DELETE, &format!("/v1/streams/{id}"), None).await;
    }
    // Until 5 s pass without one of ours (other streams may go on talking), 60 s at most.
    let ours: HashSet<String> = ids.iter().cloned().collect();
    let (quiet, give_up) = (Duration::from_secs(5), Instant::now() + Duration::from_secs(60));
    let mut last_ours = Instant::now();
    while last_ours.elapsed() < quiet && Instant::now() < give_up {
        let Ok(Some((_, t))) = tokio::time::timeout(quiet, feed.rx.recv()).await else { break };
        let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
        if let Some(stream) = v["stream_id"].as_str().filter(|s| ours.contains(*s)) {
            *events_by_stream.entry(stream.to_string()).or_default() += 1;
            last_ours = Instant::now();
        }
    }
    let capacity = steps.iter().filter(|s| s.within_targets).map(|s| s.streams).max().unwrap_or(0);
    // The sources' encoders stop before the model reference runs, so it has the machine alone.
    drop(sources);
    let (mut bare_ort, mut bare_ort_error) = (Vec::new(), None);
    if let Some(bench) = &opts.bare_ort {
        let sizes = batch_sizes(&steps);
        if !sizes.is_empty() {
            progress(format!("reference: bare ONNX Runtime on the clip at the pools' batch sizes {sizes:?}"));
            match bare_onnx_runtime(bench, &opts.clip, &sizes, &opts.work_dir).await {
                Ok(rows) => bare_ort = rows,
                Err(e) => bare_ort_error = Some(format!("{e:#}")),
            }
            for step in &mut steps {
                attach_bare(&mut step.pools, &bare_ort);
            }
        }
    }
    Ok(Report {
        gateway: opts.gateway.clone(),
        targets: opts.targets.clone(),
        steps,
        capacity,
        bare_decode_cpu_percent: bare,
        bare_ort,
        bare_ort_error,
        source: format!("{} over {:?}", opts.source, opts.protocol),
        events_by_stream,
        feed_reconnects: feed.reconnects.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// Per sink, the total seconds spent writing batches and the number of batches
/// (`sightline_sink_seconds` from `/metrics`).
async fn sink_writes(api: &Api) -> BTreeMap<String, (f64, f64)> {
    let Ok(resp) = api.get_text("/metrics").await else { return BTreeMap::new() };
    parse_sink_seconds(&resp)
}

async fn pool_counters(api: &Api) -> PoolCounters {
    api.get_text("/metrics").await.map(|t| parse_pool_counters(&t)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_media_times() {
        let l = latency((1..=100).collect());
        assert_eq!((l.count, l.p50, l.p95, l.p99, l.max), (100, 51, 95, 99, 100));
        assert_eq!(latency(Vec::new()).count, 0);
        let transcript = serde_json::json!({"wall_ms": 1000, "pts_ms": 5000, "end_ms": 7500});
        assert_eq!(media_wall_ms(&transcript), Some(3500), "from the end of the utterance");
        let scene = serde_json::json!({"wall_ms": 1000, "pts_ms": 5000});
        assert_eq!(media_wall_ms(&scene), Some(1000));
        let timed = serde_json::json!({"wall_ms": 1000, "timing": {"queued_ms": 1020, "started_ms": 1100, "done_ms": 1400}});
        let split = stages(&timed, 1450).unwrap();
        assert_eq!(split.map(|(_, ms)| ms), [20, 80, 300, 50]);
        assert!(stages(&scene, 1450).is_none());
    }
}
