//! What the capacity harness reads off Sightline's `/metrics` (sink write times, each inference
//! pool's batches and model time) and how it sets each pool against bare ONNX Runtime on the same
//! clip (`sightline-bench bare`).

use crate::capacity::Step;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::collections::BTreeMap;

/// One inference pool's work during a step, from `/metrics`.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct PoolWork {
    pub batches: f64,
    pub items: f64,
    /// Items that reached the models: OCR's frames not skipped as unchanged, the scene pool's
    /// frames not skipped as unchanged, every other pool's items.
    pub modelled: f64,
    /// Time the pool spent in its models (decoding the items and building the events included).
    pub seconds: f64,
    pub mean_batch: f64,
    /// Model time per item that reached the models, ms.
    pub ms_per_item: f64,
    /// Bare ONNX Runtime's time for the step's work, per item that reached the models, ms: the
    /// models at this step's batch size (the mean, rounded) on each such item, plus the frame
    /// signature on each item skipped as unchanged.
    pub bare_ms_per_item: Option<f64>,
    /// Bare ÷ Sightline time for the same work: Sightline's pool throughput as a share of bare
    /// ONNX Runtime's.
    pub ratio: Option<f64>,
    /// CPU time of the threads the pool's batches ran on (`sightline_inference_cpu_seconds`):
    /// the model time less the time spent waiting for a core, when the models run on one thread.
    pub cpu_seconds: f64,
    /// That CPU time per item that reached the models, ms.
    pub cpu_ms_per_item: f64,
    /// Bare time ÷ Sightline's CPU time for the same work: Sightline's own overhead, without the
    /// cores it shares with decoding and the other pools (bare runs on one thread, alone, so its
    /// time is its CPU time).
    pub cpu_ratio: Option<f64>,
    /// Time the threads the pool's batches ran on were ready to run but waited for a core
    /// (`sightline_inference_wait_seconds`; None where the kernel keeps no schedstat).
    pub wait_seconds: Option<f64>,
    /// Bare time ÷ (Sightline's time less that wait): the ratio had the pool had a core of its
    /// own, so what is left between it and 1.0 is Sightline's, not the machine's.
    pub ratio_less_wait: Option<f64>,
    /// Batches run with room to spare (`sightline_pool_batches_total{pace="ahead"}`): where a
    /// pool does optional extra work (the speech pool re-hears its unsure utterances).
    pub ahead_batches: f64,
    /// Items of optional work that stops short at a batch's room, done and left for want of
    /// time (`sightline_extra_work_total{outcome}`, every kind of work together: the speech
    /// pool's utterances Whisper judged and those heard again at their own pace).
    #[serde(default)]
    pub extra_done: f64,
    #[serde(default)]
    pub extra_no_room: f64,
}

/// Bare ONNX Runtime on the clip at one batch size (`sightline-bench bare`'s output).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct BareOrt {
    pub pool: String,
    pub batch: usize,
    pub items: usize,
    pub seconds: f64,
    pub ms_per_item: f64,
    pub what: String,
    /// What a frame skipped as unchanged costs (its signature), ms; None where nothing is skipped.
    #[serde(default)]
    pub gate_ms_per_item: Option<f64>,
    /// Speech with its unsure utterances re-heard (the pool's work on the batches it runs ahead
    /// of its lag target), ms per item; `ms_per_item` is each heard once. None: not measured.
    #[serde(default)]
    pub reheard_ms_per_item: Option<f64>,
}

/// The samples of metric `name` in an OpenMetrics text: each one's value by the value of its
/// label `by` (summed over the other labels; samples without that label are left out).
pub fn metric_by_label(text: &str, name: &str, by: &str) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    let prefix = format!("{name}{{");
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(prefix.as_str()) else { continue };
        let Some((labels, value)) = rest.split_once("} ") else { continue };
        let key = format!("{by}=\"");
        let Some(label) =
            labels.split(',').find_map(|l| l.strip_prefix(key.as_str())).map(|s| s.trim_end_matches('"'))
        else {
            continue;
        };
        let Ok(v) = value.split_whitespace().next().unwrap_or_default().parse::<f64>() else { continue };
        *out.entry(label.to_string()).or_default() += v;
    }
    out
}

/// An unlabelled sample of an OpenMetrics text (0 when missing).
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// `sightline_sink_seconds_sum{sink="…"}` and `_count` of an OpenMetrics text.
pub fn parse_sink_seconds(text: &str) -> BTreeMap<String, (f64, f64)> {
    let sums = metric_by_label(text, "sightline_sink_seconds_sum", "sink");
    let counts = metric_by_label(text, "sightline_sink_seconds_count", "sink");
    sums.into_iter()
        .map(|(sink, sum)| {
            let c = counts.get(&sink).copied().unwrap_or(0.0);
            (sink, (sum, c))
        })
        .collect()
}

/// The pools' counters at one moment: per pool (batches, items, model seconds), and the frames
/// the OCR and scene pools skipped as unchanged.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PoolCounters {
    pub pools: BTreeMap<String, (f64, f64, f64)>,
    /// CPU seconds of each pool's batches.
    pub cpu: BTreeMap<String, f64>,
    /// Seconds each pool's batch threads waited for a core.
    pub wait: BTreeMap<String, f64>,
    /// Batches each pool ran with room to spare.
    pub ahead: BTreeMap<String, f64>,
    /// Items of each pool's optional work done, and left for want of time.
    pub extra_done: BTreeMap<String, f64>,
    pub extra_no_room: BTreeMap<String, f64>,
    pub ocr_skipped: f64,
    pub frames_unchanged: f64,
}

pub fn parse_pool_counters(text: &str) -> PoolCounters {
    let batches = metric_by_label(text, "sightline_inference_batch_size_count", "pool");
    let items = metric_by_label(text, "sightline_inference_batch_size_sum", "pool");
    let seconds = metric_by_label(text, "sightline_inference_seconds_sum", "pool");
    let extra = |outcome: &str| {
        let tag = format!("outcome=\"{outcome}\"");
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(&tag)).collect();
        metric_by_label(&lines.join("\n"), "sightline_extra_work_total", "pool")
    };
    PoolCounters {
        pools: batches
            .iter()
            .map(|(p, &b)| {
                let get = |m: &BTreeMap<String, f64>| m.get(p).copied().unwrap_or(0.0);
                (p.clone(), (b, get(&items), get(&seconds)))
            })
            .collect(),
        cpu: metric_by_label(text, "sightline_inference_cpu_seconds_total", "pool"),
        wait: metric_by_label(text, "sightline_inference_wait_seconds_total", "pool"),
        ahead: metric_by_label(
            &text.lines().filter(|l| l.contains("pace=\"ahead\"")).collect::<Vec<_>>().join("\n"),
            "sightline_pool_batches_total",
            "pool",
        ),
        extra_done: extra("done"),
        extra_no_room: extra("no_room"),
        ocr_skipped: metric_value(text, "sightline_ocr_frames_skipped_total"),
        frames_unchanged: metric_value(text, "sightline_frames_unchanged_total"),
    }
}

/// What each pool did between two readings of its counters.
pub fn pool_work(before: &PoolCounters, after: &PoolCounters) -> BTreeMap<String, PoolWork> {
    after
        .pools
        .iter()
        .filter_map(|(pool, &(b1, i1, s1))| {
            let (b0, i0, s0) = before.pools.get(pool).copied().unwrap_or_default();
            let (batches, items, seconds) = (b1 - b0, i1 - i0, s1 - s0);
            if batches <= 0.0 {
                return None;
            }
            let skipped = match pool.as_str() {
                "ocr" => after.ocr_skipped - before.ocr_skipped,
                "scenes" => after.frames_unchanged - before.frames_unchanged,
                _ => 0.0,
            };
            let modelled = (items - skipped).max(1.0);
            let cpu = |c: &PoolCounters| c.cpu.get(pool).copied().unwrap_or(0.0);
            let cpu_seconds = cpu(after) - cpu(before);
            let wait = |c: &PoolCounters| c.wait.get(pool).copied();
            let wait_seconds = wait(after).map(|a| a - wait(before).unwrap_or(0.0));
            let ahead = |c: &PoolCounters| c.ahead.get(pool).copied().unwrap_or(0.0);
            let got = |m: &BTreeMap<String, f64>| m.get(pool).copied().unwrap_or(0.0);
            Some((
                pool.clone(),
                PoolWork {
                    batches,
                    items,
                    modelled,
                    seconds,
                    mean_batch: items / batches,
                    ms_per_item: seconds * 1000.0 / modelled,
                    bare_ms_per_item: None,
                    ratio: None,
                    cpu_seconds,
                    cpu_ms_per_item: cpu_seconds * 1000.0 / modelled,
                    cpu_ratio: None,
                    wait_seconds,
                    ratio_less_wait: None,
                    ahead_batches: ahead(after) - ahead(before),
                    extra_done: got(&after.extra_done) - got(&before.extra_done),
                    extra_no_room: got(&after.extra_no_room) - got(&before.extra_no_room),
                },
            ))
        })
        .collect()
}

/// The pools with a bare reference, and the batch sizes they ran at (each step's mean, rounded).
pub fn batch_sizes(steps: &[Step]) -> BTreeMap<String, Vec<usize>> {
    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for step in steps {
        for (pool, w) in step.pools.iter().filter(|(p, _)| ["ocr", "scenes", "speech"].contains(&p.as_str()))
        {
            let b = (w.mean_batch.round() as usize).max(1);
            let sizes = out.entry(pool.clone()).or_default();
            if !sizes.contains(&b) {
                sizes.push(b);
            }
        }
    }
    out
}

/// Sets each pool's bare time per item at its batch size, and the ratio. Where the reference
/// was also measured doing the optional extra work (speech re-heard), the pool's share of
/// batches run ahead of its target is costed at that and the rest at the plain reference: the
/// bare models doing the same mix of work as the pool.
pub fn attach_bare(pools: &mut BTreeMap<String, PoolWork>, bare: &[BareOrt]) {
    for (pool, w) in pools.iter_mut() {
        let b = (w.mean_batch.round() as usize).max(1);
        if let Some(r) = bare.iter().find(|r| &r.pool == pool && r.batch == b) {
            let skipped = (w.items - w.modelled).max(0.0);
            let ahead = if w.batches > 0.0 { (w.ahead_batches / w.batches).clamp(0.0, 1.0) } else { 0.0 };
            let per_item = match r.reheard_ms_per_item {
                Some(again) => ahead * again + (1.0 - ahead) * r.ms_per_item,
                None => r.ms_per_item,
            };
            let total_ms = w.modelled * per_item + skipped * r.gate_ms_per_item.unwrap_or(0.0);
            w.bare_ms_per_item = Some(total_ms / w.modelled);
            w.ratio = (w.seconds > 0.0).then(|| total_ms / (w.seconds * 1000.0));
            w.cpu_ratio = (w.cpu_seconds > 0.0).then(|| total_ms / (w.cpu_seconds * 1000.0));
            w.ratio_less_wait = w
                .wait_seconds
                .map(|wait| w.seconds - wait)
                .filter(|&own| own > 0.0)
                .map(|own| total_ms / (own * 1000.0));
        }
    }
}

/// Runs `sightline-bench bare` on the clip at the given batch sizes and reads its JSON.
pub(crate) async fn bare_onnx_runtime(
    bench: &std::path::Path,
    clip: &std::path::Path,
    sizes: &BTreeMap<String, Vec<usize>>,
    work: &std::path::Path,
) -> Result<Vec<BareOrt>> {
    let out = work.join("bare-ort.json");
    let mut cmd = tokio::process::Command::new(bench);
    // A dozen items per size: the clip's content once or more (its 36 frames; its segments repeated).
    cmd.arg("bare").arg("--clip").arg(clip).arg("--out").arg(&out).args(["--min-items", "12"]);
    for (pool, b) in sizes {
        let list: Vec<String> = b.iter().map(usize::to_string).collect();
        cmd.arg("--batch").arg(format!("{pool}={}", list.join(",")));
    }
    let done = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", bench.display()))?;
    if !done.status.success() {
        let err = String::from_utf8_lossy(&done.stderr);
        bail!("{} bare failed: {}", bench.display(), err.lines().last().unwrap_or_default());
    }
    Ok(serde_json::from_slice(&std::fs::read(&out)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_write_times_are_read_from_the_metrics() {
        let text = "# TYPE sightline_sink_seconds histogram\n\
                    sightline_sink_seconds_sum{sink=\"clickhouse\"} 1.5\n\
                    sightline_sink_seconds_count{sink=\"clickhouse\"} 30\n\
                    sightline_sink_seconds_bucket{sink=\"clickhouse\",le=\"0.1\"} 29\n\
                    sightline_sink_seconds_sum{sink=\"redis\"} 0.25\n\
                    sightline_sink_seconds_count{sink=\"redis\"} 5\n";
        let got = parse_sink_seconds(text);
        assert_eq!(got.get("clickhouse"), Some(&(1.5, 30.0)));
        assert_eq!(got.get("redis"), Some(&(0.25, 5.0)));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn pool_work_and_its_bare_ratio_come_from_the_metrics() {
        let at = |ocr: (f64, f64, f64), skipped: f64| {
            format!(
                "sightline_inference_batch_size_count{{model=\"pp-ocrv6-small@1\",pool=\"ocr\"}} {}\n\
                 sightline_inference_batch_size_sum{{model=\"pp-ocrv6-small@1\",pool=\"ocr\"}} {}\n\
                 sightline_inference_seconds_sum{{model=\"pp-ocrv6-small@1\",pool=\"ocr\"}} {}\n\
                 sightline_inference_seconds_sum{{model=\"pp-ocrv5-fallback@1\",pool=\"ocr\"}} 1\n\
                 sightline_inference_cpu_seconds_total{{model=\"pp-ocrv6-small@1\",pool=\"ocr\"}} {}\n\
                 sightline_inference_wait_seconds_total{{model=\"pp-ocrv6-small@1\",pool=\"ocr\"}} {}\n\
                 sightline_inference_batch_size_count{{model=\"moonshine-base-en@1\",pool=\"speech\"}} 3\n\
                 sightline_inference_batch_size_sum{{model=\"moonshine-base-en@1\",pool=\"speech\"}} 3\n\
                 sightline_inference_seconds_sum{{model=\"moonshine-base-en@1\",pool=\"speech\"}} 0.9\n\
                 sightline_pool_batches_total{{pool=\"ocr\",pace=\"ahead\"}} {}\n\
                 sightline_pool_batches_total{{pool=\"ocr\",pace=\"on_time\"}} {}\n\
                 sightline_extra_work_total{{pool=\"ocr\",outcome=\"done\"}} {}\n\
                 sightline_extra_work_total{{pool=\"ocr\",outcome=\"no_room\"}} {}\n\
                 sightline_ocr_frames_skipped_total {skipped}\n",
                ocr.0,
                ocr.1,
                ocr.2,
                ocr.2 * 0.8,
                ocr.2 * 0.1,
                ocr.0 * 0.25,
                ocr.0 * 0.75,
                ocr.0 * 0.1,
                ocr.0 * 0.2
            )
        };
        let before = parse_pool_counters(&at((10.0, 20.0, 2.0), 5.0));
        assert_eq!(before.pools["ocr"], (10.0, 20.0, 3.0), "both models' time counts for the pool");
        assert_eq!(before.ocr_skipped, 5.0);
        let after = parse_pool_counters(&at((20.0, 50.0, 4.0), 15.0));
        let mut work = pool_work(&before, &after);
        assert!(!work.contains_key("speech"), "no batches in between: not in the step");
        let ocr = &work["ocr"];
        assert_eq!((ocr.batches, ocr.items, ocr.modelled, ocr.mean_batch), (10.0, 30.0, 20.0, 3.0));
        assert_eq!(ocr.ahead_batches, 2.5, "a quarter of the step's batches had room to spare");
        assert_eq!((ocr.extra_done, ocr.extra_no_room), (1.0, 2.0), "extra work done and left in the step");
        assert!((ocr.ms_per_item - 100.0).abs() < 1e-9, "2 s over the 20 frames read");
        assert!((ocr.cpu_ms_per_item - 80.0).abs() < 1e-9, "1.6 s of CPU over the 20 frames read");
        assert!((ocr.wait_seconds.unwrap() - 0.2).abs() < 1e-9, "0.2 s waiting for a core");
        let bare = |batch, ms| BareOrt {
            pool: "ocr".into(),
            batch,
            items: 24,
            seconds: 1.0,
            ms_per_item: ms,
            what: String::new(),
            gate_ms_per_item: None,
            reheard_ms_per_item: None,
        };
        attach_bare(&mut work, &[bare(1, 50.0), bare(3, 80.0)]);
        assert_eq!(work["ocr"].bare_ms_per_item, Some(80.0), "the reference at the step's batch");
        assert!((work["ocr"].ratio.unwrap() - 0.8).abs() < 1e-9);
        assert!((work["ocr"].cpu_ratio.unwrap() - 1.0).abs() < 1e-9, "bare time ÷ CPU time");
        // 1.6 s of bare time against the 2 s less the 0.2 s spent waiting for a core.
        assert!((work["ocr"].ratio_less_wait.unwrap() - 1.6 / 1.8).abs() < 1e-9);
        // The 10 frames skipped as unchanged cost their signature, bare too: 20 × 80 + 10 × 4 ms.
        attach_bare(&mut work, &[BareOrt { gate_ms_per_item: Some(4.0), ..bare(3, 80.0) }]);
        assert!((work["ocr"].bare_ms_per_item.unwrap() - 82.0).abs() < 1e-9);
        assert!((work["ocr"].ratio.unwrap() - 0.82).abs() < 1e-9);
        // Measured re-hearing too: the quarter of batches run ahead cost the re-heard time, the
        // rest the plain one: 20 × (0.25 × 200 + 0.75 × 80) ms = 2.2 s of bare time in 2 s.
        attach_bare(&mut work, &[BareOrt { reheard_ms_per_item: Some(200.0), ..bare(3, 80.0) }]);
        assert!((work["ocr"].bare_ms_per_item.unwrap() - 110.0).abs() < 1e-9);
        assert!((work["ocr"].ratio.unwrap() - 1.1).abs() < 1e-9);
    }

    #[test]
    fn without_schedstat_the_wait_is_unknown_not_zero() {
        let at = |n: f64| {
            format!(
                "sightline_inference_batch_size_count{{model=\"m@1\",pool=\"speech\"}} {n}\n\
                 sightline_inference_batch_size_sum{{model=\"m@1\",pool=\"speech\"}} {n}\n\
                 sightline_inference_seconds_sum{{model=\"m@1\",pool=\"speech\"}} {}\n",
                n * 0.3
            )
        };
        let mut work = pool_work(&parse_pool_counters(&at(2.0)), &parse_pool_counters(&at(6.0)));
        let bare = BareOrt {
            pool: "speech".into(),
            batch: 1,
            items: 12,
            seconds: 3.0,
            ms_per_item: 270.0,
            what: String::new(),
            gate_ms_per_item: None,
            reheard_ms_per_item: None,
        };
        attach_bare(&mut work, &[bare]);
        assert_eq!(work["speech"].wait_seconds, None);
        assert_eq!(work["speech"].ratio_less_wait, None);
        assert!((work["speech"].ratio.unwrap() - 0.9).abs() < 1e-9);
    }
}
