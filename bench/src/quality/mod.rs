//! `make quality`: the analysis models against generated evaluation sets (testkit's `quality`
//! module, lines from `quality/`), written to `.data/reports/quality.md`:
//! - speech: word error rate per espeak-ng voice, speaking rate and background (noise, music
//!   bed), Silero VAD + Moonshine as the speech actor runs them, greedy and beam search, and the
//!   real-time factor; and continuous speech through ingest's segmenter (how long a sentence
//!   waits for its segment, and the word error rate of the whole);
//! - on-screen text: exact-line rate and character error rate per backdrop family, backdrop and
//!   caption style, as the OCR actor reads frames (at the analysis size);
//! - languages: Whisper base's language identification and word error rate in English, German,
//!   French and Spanish (MBROLA and espeak-ng voices), greedy and beam search, Moonshine beside it
//!   on English, and what each costs.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sightline_models::{Ocr, OcrParams, Runtime};
use sightline_settings::{Config, Task};
use sightline_testkit::quality::{caption_case_frame, caption_cases, char_errors, quality_lines};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

mod continuous;
mod languages;
mod speech;
use continuous::continuous_section;
use languages::languages_section;
use speech::{english_sentences, english_speech_models, speech_section};

fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg:10} [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta}")
            .expect("valid template"),
    );
    pb.set_message(what.to_string());
    pb
}

/// Runs the chosen parts and writes the report (replacing the previous one).
pub fn quality(report: &Path, parts: &[String], every: usize, config: Option<&Path>) -> Result<()> {
    let cfg = Config::load(config.or(Some(Path::new("config/sightline.toml"))))?;
    let rt = Runtime::load(&cfg.models.onnxruntime_lib())?;
    let every = every.max(1);
    let sets = if every > 1 {
        format!("every {} item of each set (a subset: `--every 1` runs all)", ordinal(every))
    } else {
        "every item of each set".to_string()
    };
    let mut out = format!("# Sightline quality report\n\n{}; {sets}.\n\n", super::now_utc());
    let want = |p: &str| parts.is_empty() || parts.iter().any(|x| x == p);
    if want("ocr") {
        out += &ocr_section(&rt, &cfg, every)?;
    }
    if want("cuts") {
        out += &cuts_section(&cfg)?;
    }
    if want("speech") {
        out += &speech_section(&rt, &cfg, every)?;
    }
    if want("continuous") {
        out += &continuous_section(&rt, &cfg, every)?;
    }
    if want("languages") {
        out += &languages_section(&rt, &cfg, every)?;
    }
    if let Some(d) = report.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(report, &out).with_context(|| format!("writing {}", report.display()))?;
    println!("{out}\nreport: {}", report.display());
    Ok(())
}

fn ordinal(n: usize) -> String {
    match n {
        1 => "1st".into(),
        2 => "2nd".into(),
        3 => "3rd".into(),
        n => format!("{n}th"),
    }
}

/// Errors and totals of one group of items.
#[derive(Default, Clone, Copy)]
struct Tally {
    items: usize,
    exact: usize,
    errors: usize,
    total: usize,
}

impl Tally {
    fn add(&mut self, exact: bool, errors: usize, total: usize) {
        self.items += 1;
        self.exact += exact as usize;
        self.errors += errors;
        self.total += total;
    }
    fn rate(&self) -> f64 {
        100.0 * self.errors as f64 / self.total.max(1) as f64
    }
    fn exact_pct(&self) -> f64 {
        100.0 * self.exact as f64 / self.items.max(1) as f64
    }
}

// ---- OCR ---------------------------------------------------------------------------------------

fn ocr_section(rt: &Runtime, cfg: &Config, every: usize) -> Result<String> {
    let files = cfg.models.task_files_on(Task::Ocr, rt.provider().is_cpu())?;
    let params = OcrParams::from_config(&cfg.ocr).batched_for(rt.provider(), 1);
    let mut ocr = Ocr::load(rt, &files[0], &files[1], cfg.ocr.threads.max(1), params)?;
    let (w, h) = (cfg.ingest.analysis_width as usize, cfg.ingest.analysis_height as usize);
    let captions = quality_lines("captions.txt")?;
    let cases = caption_cases(&captions, every);
    let pb = bar(cases.len(), "captions");
    let (mut by_family, mut by_backdrop, mut by_style): (
        BTreeMap<String, Tally>,
        BTreeMap<String, Tally>,
        BTreeMap<String, Tally>,
    ) = Default::default();
    let mut all = Tally::default();
    let mut misses = Vec::new();
    let mut spent = 0.0;
    for (backdrop, style, caption) in &cases {
        let lines: Vec<&str> = caption.split('|').collect();
        let frame = caption_case_frame(&lines, backdrop, style, w, h)?;
        let t = Instant::now();
        let read = ocr.read(&frame, w, h)?;
        spent += t.elapsed().as_secs_f64();
        let got: Vec<&str> = read.iter().map(|l| l.text.as_str()).collect();
        let (e, n) = char_errors(&lines, &got);
        for line in &lines {
            let exact = got.contains(line);
            for t in [
                by_family.entry(backdrop.family().to_string()).or_default(),
                by_backdrop.entry(backdrop.label()).or_default(),
                by_style.entry(style.name.to_string()).or_default(),
                &mut all,
            ] {
                t.add(exact, 0, 0);
            }
        }
        for t in [
            by_family.get_mut(backdrop.family()).expect("added"),
            by_backdrop.get_mut(&backdrop.label()).expect("added"),
            by_style.get_mut(style.name).expect("added"),
            &mut all,
        ] {
            t.errors += e;
            t.total += n;
        }
        if lines.iter().any(|l| !got.contains(l)) && misses.len() < 40 {
            misses.push(format!(
                "| {} | {} | {:?} | {:?} |",
                backdrop.label(),
                style.name,
                lines.join(" / "),
                got
            ));
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let mut s = format!(
        "## On-screen text (PP-OCRv6 small detector + recogniser)\n\n{} captions ({} lines) drawn by \
         ffmpeg on {} backdrops in {} styles (plain text only on flat colours and gradients), \
         read at the analysis size {w}x{h} by the OCR actor's reader. **Exact lines {:.1} %, \
         character error rate {:.2} %**; {:.0} ms per frame.\n\n",
        cases.len(),
        all.items,
        by_backdrop.len(),
        by_style.len(),
        all.exact_pct(),
        all.rate(),
        spent * 1000.0 / cases.len().max(1) as f64
    );
    for (title, map) in [("backdrop family", &by_family), ("backdrop", &by_backdrop), ("style", &by_style)] {
        let _ = writeln!(s, "| {title} | lines | exact | CER |\n|---|---|---|---|");
        for (k, t) in map.iter() {
            let _ = writeln!(s, "| {k} | {} | {:.1} % | {:.2} % |", t.items, t.exact_pct(), t.rate());
        }
        s.push('\n');
    }
    if !misses.is_empty() {
        s += "Lines not read exactly (first 40):\n\n| backdrop | style | drawn | read |\n|---|---|---|---|\n";
        s += &misses.join("\n");
        s += "\n\n";
    }
    Ok(s)
}

// ---- cuts --------------------------------------------------------------------------------------

/// Every ffmpeg `xfade` transition at 0.5 s and 1 s, with a hard cut after every third, through
/// the ingest cut scorer with and without the gradual stage.
fn cuts_section(cfg: &Config) -> Result<String> {
    use sightline_streams::CutDetector;
    use sightline_testkit::quality::{XFADE_TRANSITIONS, transition_clip};
    let i = &cfg.ingest;
    let (w, h) = (i.cut_width as usize, i.cut_height as usize);
    let mut rows = String::new();
    let mut per_family: BTreeMap<&str, [usize; 2]> = BTreeMap::new();
    let mut summary = String::new();
    let pb = bar(5, "cuts");
    // Seconds spent scoring, and frames scored, without and with the gradual stage.
    let (mut cost, mut scanned) = ([0f64; 2], [0usize; 2]);
    for duration in [500i64, 1000] {
        let mut changes = Vec::new();
        for (k, t) in XFADE_TRANSITIONS.iter().enumerate() {
            changes.push(Some(*t));
            if k % 3 == 2 {
                changes.push(None);
            }
        }
        let (frames, truth) = transition_clip(&changes, duration, w, h)?;
        for gradual in [false, true] {
            let mut d = CutDetector::new(i.cut_threshold, i.cut_ratio, i.min_scene_ms);
            if gradual {
                d = d.with_gradual(i.gradual_threshold, i.gradual_max_ms);
            }
            // (change, media time of the frame that completed it)
            let started = Instant::now();
            let found = d.scan(&frames, 30.0);
            cost[gradual as usize] += started.elapsed().as_secs_f64();
            scanned[gradual as usize] += frames.len();
            let mut used = vec![false; found.len()];
            let (mut hard_tp, mut hard_n, mut grad_tp, mut grad_n) = (0, 0, 0, 0);
            let mut delays = Vec::new();
            for t in &truth {
                let tol = if t.transition.is_some() { 500 } else { 50 };
                let hit = (0..found.len())
                    .filter(|&k| !used[k] && (found[k].0.pts_ms - t.mid_ms()).abs() <= tol)
                    .min_by_key(|&k| (found[k].0.pts_ms - t.mid_ms()).abs());
                if let Some(k) = hit {
                    used[k] = true;
                    delays.push((found[k].1 - t.mid_ms()) as f64);
                }
                match t.transition {
                    Some(name) => {
                        grad_n += 1;
                        grad_tp += hit.is_some() as usize;
                        if gradual {
                            per_family.entry(name).or_default()[(duration == 1000) as usize] +=
                                hit.is_some() as usize;
                        }
                    }
                    None => {
                        hard_n += 1;
                        hard_tp += hit.is_some() as usize;
                    }
                }
            }
            let fp = used.iter().filter(|u| !**u).count();
            let f1 =
                |tp: usize, n: usize, fp: usize| 2.0 * tp as f64 / (2 * tp + fp + (n - tp)).max(1) as f64;
            delays.sort_by(f64::total_cmp);
            let pct = |p| if delays.is_empty() { 0.0 } else { super::percentile(&delays, p) };
            if std::env::var_os("SIGHTLINE_QUALITY_DEBUG").is_some() {
                for (c, at) in &found {
                    eprintln!("found {:?} completed at {at}", c);
                }
                for t in &truth {
                    eprintln!("truth {:?} mid {}", t, t.mid_ms());
                }
            }
            let label = if gradual { "fast + gradual stage" } else { "fast (hard cuts only)" };
            let _ = writeln!(
                rows,
                "| {label} | {:.1} s | {grad_tp}/{grad_n} | {hard_tp}/{hard_n} | {fp} | {:.2} | {:.2} | {:.0} / {:.0} ms |",
                duration as f64 / 1000.0,
                grad_tp as f64 / grad_n.max(1) as f64,
                f1(grad_tp + hard_tp, grad_n + hard_n, fp),
                pct(0.5),
                pct(0.95)
            );
            if gradual && duration == 500 {
                summary = format!(
                    "With the gradual stage, 0.5 s transitions: F1 {:.2} over all changes ({grad_tp}/{grad_n} \
                     transitions, {hard_tp}/{hard_n} hard cuts exact to 50 ms, {fp} false).",
                    f1(grad_tp + hard_tp, grad_n + hard_n, fp)
                );
            }
            pb.inc(1);
        }
    }
    // Motion only: 20 s of each moving pattern (a zoom, a scrolling automaton, drifting
    // gradients, a moving test card, life), joined by hard cuts; every other change is false.
    let moving = [
        "mandelbrot=s=320x180:r=30",
        "cellauto=s=320x180:r=30:rule=30",
        "gradients=s=320x180:r=30:seed=9:speed=0.05",
        "testsrc2=s=320x180:r=30",
        "life=s=320x180:r=30:mold=10:ratio=0.3:death_color=#202060:life_color=#e0c040",
    ];
    let (frames, truth) = sightline_testkit::quality::scenes_clip(&moving, 20_000, &[None; 4], 0, w, h)?;
    let mut d = CutDetector::new(i.cut_threshold, i.cut_ratio, i.min_scene_ms)
        .with_gradual(i.gradual_threshold, i.gradual_max_ms);
    let found: Vec<i64> = d.scan(&frames, 30.0).into_iter().map(|(c, _)| c.pts_ms).collect();
    let (tp, fp, fneg) = sightline_testkit::quality::match_changes(
        &found,
        &truth.iter().map(|t| t.start_ms).collect::<Vec<_>>(),
        50,
    );
    let per_frame = |k: usize| cost[k] * 1e6 / scanned[k].max(1) as f64;
    let cost_line = format!(
        "Cost of scoring one decoded frame ({w}x{h}, this build): {:.1} µs for hard cuts alone, \
         {:.1} µs with the gradual stage.",
        per_frame(0),
        per_frame(1)
    );
    let motion = format!(
        "Motion only (100 s: five moving patterns of 20 s joined by 4 hard cuts): {tp}/4 cuts found \
         exact to 50 ms, {fneg} missed, **{fp} false changes**."
    );
    pb.inc(1);
    pb.finish_and_clear();
    let mut s = format!(
        "## Scene changes (ingest's cut scorer)\n\nEvery ffmpeg `xfade` transition ({} of them) \
         between 3 s scenes (moving patterns, still patterns, flat colours), with a hard cut after \
         every third, decoded at {w}x{h} and 30 fps as ingest scores them. A transition counts when \
         a change lands within 0.5 s of its midpoint, a hard cut within 50 ms. {summary} Delay: \
         media time from a change's true midpoint to the frame that completed its detection. \
         {motion} {cost_line}\n\n\
         | detector | transition length | transitions found | hard cuts exact | false changes | recall (transitions) | F1 (all) | delay p50 / p95 |\n\
         |---|---|---|---|---|---|---|---|\n{rows}\n",
        XFADE_TRANSITIONS.len()
    );
    let missed: Vec<String> = per_family
        .iter()
        .filter(|(_, n)| n[0] + n[1] < 2)
        .map(|(t, n)| format!("{t} ({}/2)", n[0] + n[1]))
        .collect();
    let _ = writeln!(
        s,
        "Transitions the gradual stage missed at either length: {}.\n",
        if missed.is_empty() { "none".to_string() } else { missed.join(", ") }
    );
    Ok(s)
}
