//! The capacity report: `capacity.json` (everything measured) and `capacity.html` (self-contained:
//! tables, and the latency and CPU curves drawn as inline SVG, no network assets).

use crate::capacity::Report;
use std::fmt::Write;
use std::path::Path;

const KIND_COLOURS: [(&str, &str); 5] = [
    ("frame", "#1f77b4"),
    ("scene", "#2ca02c"),
    ("ocr", "#ff7f0e"),
    ("transcript", "#d62728"),
    ("state", "#7f7f7f"),
];

/// Series that are not event kinds take these, in order.
const OTHER_COLOURS: [&str; 6] = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79"];

fn colour(name: &str, i: usize) -> &'static str {
    KIND_COLOURS
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, c)| *c)
        .unwrap_or(OTHER_COLOURS[i % OTHER_COLOURS.len()])
}

/// A line chart: one polyline per series of (streams, value) points.
fn chart(title: &str, unit: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    // The plot is 560 wide; the legend sits to its right.
    let (w, h, pad, legend) = (560.0, 260.0, 40.0, 240.0);
    let xmax = series.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x)).fold(1.0, f64::max);
    let ymax = series.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y)).fold(1.0, f64::max) * 1.1;
    let x = |v: f64| pad + v / xmax * (w - 2.0 * pad);
    let y = |v: f64| h - pad - v / ymax * (h - 2.0 * pad);
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{h}' role='img'><title>{title}</title>\
         <line x1='{pad}' y1='{}' x2='{}' y2='{}' stroke='#333'/><line x1='{pad}' y1='{pad}' x2='{pad}' y2='{}' stroke='#333'/>\
         <text x='{}' y='{}' font-size='11' text-anchor='end'>streams</text><text x='4' y='14' font-size='11'>{unit} (max {:.0})</text>",
        w + legend,
        h - pad,
        w - pad,
        h - pad,
        h - pad,
        w - pad,
        h - 8.0,
        ymax / 1.1
    );
    for (i, (name, points)) in series.iter().enumerate() {
        let c = colour(name, i);
        let pts: Vec<String> = points.iter().map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b))).collect();
        let _ =
            write!(svg, "<polyline fill='none' stroke='{c}' stroke-width='2' points='{}'/>", pts.join(" "));
        for (a, b) in points {
            let _ = write!(svg, "<circle cx='{:.1}' cy='{:.1}' r='3' fill='{c}'/>", x(*a), y(*b));
        }
        let _ = write!(
            svg,
            "<text x='{}' y='{}' font-size='11' fill='{c}'>{name}</text>",
            w - pad + 4.0,
            pad + 14.0 * i as f64
        );
    }
    svg + "</svg>"
}

/// One chart series per name found in any step's `map` (event kinds, stages): (streams, `pick` of
/// that name's latency) for each step that has it.
fn series_by_name(
    r: &Report,
    map: impl Fn(&crate::capacity::Step) -> &std::collections::BTreeMap<String, crate::capacity::Latency>,
    pick: impl Fn(&crate::capacity::Latency) -> i64,
) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut names: Vec<&String> = r.steps.iter().flat_map(|s| map(s).keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|k| {
            let pts = r
                .steps
                .iter()
                .filter_map(|s| map(s).get(k).map(|l| (s.streams as f64, pick(l) as f64)))
                .collect();
            (k.to_string(), pts)
        })
        .collect()
}

pub fn html(r: &Report) -> String {
    let p95 = series_by_name(r, |s| &s.latency, |l| l.p95);
    let mut cpu: Vec<(String, Vec<(f64, f64)>)> = vec![(
        "sightline".into(),
        r.steps.iter().filter_map(|s| s.cpu_percent.map(|c| (s.streams as f64, c))).collect(),
    )];
    if let Some(b) = r.bare_decode_cpu_percent {
        cpu.push((
            "bare decode × streams".into(),
            r.steps.iter().map(|s| (s.streams as f64, b * s.streams as f64)).collect(),
        ));
    }
    let mut split = series_by_name(r, |s| &s.stages, |l| l.p50);
    let mut sinks: Vec<&String> = r.steps.iter().flat_map(|s| s.sink_write_ms.keys()).collect();
    sinks.sort();
    sinks.dedup();
    for sink in sinks {
        let pts = r
            .steps
            .iter()
            .filter_map(|s| s.sink_write_ms.get(sink).map(|&ms| (s.streams as f64, ms)))
            .collect();
        split.push((format!("sink_write ({sink}, mean a batch)"), pts));
    }
    let mut rows = String::new();
    for s in &r.steps {
        let mut lat: Vec<String> = s
            .latency
            .iter()
            .map(|(k, l)| format!("{k}: {}/{}/{} ms, max {} (n={})", l.p50, l.p95, l.p99, l.max, l.count))
            .collect();
        if !s.languages.is_empty() {
            let by: Vec<String> = s.languages.iter().map(|(l, n)| format!("{l} {n}")).collect();
            lat.push(format!("transcripts by language: {}", by.join(", ")));
        }
        let states: Vec<String> = s.states.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let split: Vec<String> = s
            .stages
            .iter()
            .map(|(k, l)| format!("{k}: {}/{} ms", l.p50, l.p95))
            .chain(s.sink_write_ms.iter().map(|(k, ms)| {
                let rate = s.sink_writes_per_s.get(k).map_or(String::new(), |r| format!(", {r:.1}/s"));
                format!("{k} write: {ms:.0} ms mean{rate}")
            }))
            .collect();
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.streams,
            lat.join("<br>"),
            split.join("<br>"),
            s.shed,
            s.dropped_frames,
            states.join(", "),
            s.cpu_percent.map(|c| format!("{c:.0} %")).unwrap_or_else(|| "–".into()),
            match (s.rss_start_mb, s.rss_mb) {
                (Some(a), Some(b)) => format!("{a:.0} → {b:.0} MB"),
                (_, Some(b)) => format!("{b:.0} MB"),
                _ => "–".into(),
            },
            if s.within_targets { "yes".to_string() } else { s.misses.join("; ") },
        );
    }
    let mut pools = String::new();
    for s in &r.steps {
        for (pool, w) in &s.pools {
            let _ = write!(
                pools,
                "<tr><td>{}</td><td>{pool}</td><td>{:.0}</td><td>{:.0} of {:.0}</td><td>{:.2}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0} %</td><td>{}</td></tr>",
                s.streams,
                w.batches,
                w.modelled,
                w.items,
                w.mean_batch,
                w.ms_per_item,
                w.cpu_ms_per_item,
                w.wait_seconds
                    .map(|s| format!("{:.1}", s * 1000.0 / w.modelled))
                    .unwrap_or_else(|| "–".into()),
                w.bare_ms_per_item.map(|b| format!("{b:.1}")).unwrap_or_else(|| "–".into()),
                w.ratio.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into()),
                w.ratio_less_wait.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into()),
                w.cpu_ratio.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into()),
                100.0 * w.ahead_batches / w.batches.max(1.0),
                if w.extra_done + w.extra_no_room > 0.0 {
                    format!("{:.0} / {:.0}", w.extra_done, w.extra_no_room)
                } else {
                    "–".into()
                },
            );
        }
    }
    let bare_ort = match (&r.bare_ort_error, r.bare_ort.is_empty()) {
        (Some(e), _) => format!("not measured: {e}"),
        (None, true) => "not measured".to_string(),
        (None, false) => r
            .bare_ort
            .iter()
            .map(|b| {
                let again = b
                    .reheard_ms_per_item
                    .map(|ms| format!(" heard once, {ms:.1} re-heard"))
                    .unwrap_or_default();
                format!(
                    "{} at batch {}: {:.1} ms per item{again} over {} ({})",
                    b.pool, b.batch, b.ms_per_item, b.items, b.what
                )
            })
            .collect::<Vec<_>>()
            .join("<br>"),
    };
    let targets: Vec<String> = r.targets.0.iter().map(|(k, v)| format!("{k} p95 &lt; {v} ms")).collect();
    let bare = r
        .bare_decode_cpu_percent
        .map(|b| format!("{b:.1} % of a core per stream"))
        .unwrap_or_else(|| "not measured".into());
    format!(
        "<!doctype html><html><head><meta charset='utf-8'><title>Sightline capacity</title>\
         <style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}</style></head><body>\
         <h1>Sightline capacity: {} stream(s)</h1>\
         <p>The largest step at which every event kind stayed within its target ({}) with nothing shed.\
         Sources: {}. Gateway {}. Bare decoding (the physical reference, <code>gst-launch-1.0 uridecodebin3 ! fakesink</code>): {bare}.</p>\
         <h2>Media→feed latency p95 by streams</h2>{}\
         <h2>Sightline CPU by streams (percent of one core)</h2>{}\
         <h2>Where the time goes: stage p50 by streams</h2>{}\
         <h2>Steps</h2><table><tr><th>streams</th><th>latency p50/p95/p99, max</th><th>stage split p50/p95</th><th>shed</th><th>dropped frames</th>\
         <th>states</th><th>CPU</th><th>RSS</th><th>within targets</th></tr>{rows}</table>\
         <h2>Inference pools against bare ONNX Runtime</h2>\
         <p>Per step, each pool's batches and its model time per item that reached the models (frames skipped as \
         unchanged count only their share), from Sightline's <code>/metrics</code>; beside it, bare ONNX Runtime running \
         the same models on the clip's own frames and audio at the step's mean batch size (plus the frame signature for \
         each skipped frame), measured after the ramp on the idle machine (<code>sightline-bench bare</code>). \
         Ratio = bare ÷ Sightline time for the same work (1.0: no overhead; \
         at higher steps it also carries the CPU the pools share with decoding and each other). \
         CPU ratio = bare time ÷ the CPU time of the threads Sightline's batches ran on: its own overhead, without \
         the time spent waiting for a core (the models run on one thread each, as bare does). \
         Waiting for a core = the time those threads were ready to run while every core was busy (the kernel's \
         schedstat, <code>sightline_inference_wait_seconds</code>); ratio less the wait = bare ÷ (Sightline time − that \
         wait): the ratio had each pool a core of its own. Batches with room to spare = those run within a third of the \
         pool's lag target, or within half of it while the pool has been busy at most a quarter of the recent time \
         (<code>sightline_pool_batches_total{{pace=\"ahead\"}}</code>): the speech pool re-hears \
         its unsure utterances only in those, so its Sightline time per item includes that work and bare's does \
         when <code>speech.rehear_stretches</code> is set. Extra work done / no room = items of optional work that \
         stops short at a batch's room, done and left for want of time (<code>sightline_extra_work_total</code>: \
         the speech pool's re-heard utterances Whisper judged, <code>speech.rehear_judge_weight</code>, and those heard \
         again at their own pace, <code>speech.rehear_fast_stretches</code>; the metric's <code>work</code> label tells them apart).</p>\
         <table><tr><th>streams</th><th>pool</th><th>batches</th><th>items modelled</th><th>mean batch</th>\
         <th>Sightline ms per item</th><th>Sightline CPU ms per item</th><th>waiting for a core, ms per item</th><th>bare ms per item</th>\
         <th>ratio</th><th>ratio less the wait</th><th>CPU ratio</th><th>batches with room to spare</th><th>extra work done / no room</th></tr>{pools}</table>\
         <p>Bare ONNX Runtime: {bare_ort}</p></body></html>",
        r.capacity,
        targets.join(", "),
        r.source,
        r.gateway,
        chart("p95 latency per kind", "ms", &p95),
        chart("CPU", "% of a core", &cpu),
        chart("stage p50", "ms", &split),
    )
}

/// Writes `capacity.json` and `capacity.html` into `dir`.
pub fn write(r: &Report, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("capacity.json"), serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?)?;
    std::fs::write(dir.join("capacity.html"), html(r))
}
