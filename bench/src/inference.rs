//! Inference pools against bare ONNX Runtime, and batch sweeps.

use super::*;
use crate::pools::{Pool, pool_actor, publish_still, scenes_vs_bare, shots_vs_bare, speech_vs_bare};
use sightline_models::{Moonshine, Ocr, OcrParams, Runtime, SileroVad, TextEmbedder};
use sightline_settings::Config;
use sightline_settings::Task;
use sightline_testkit::quality::word_errors;

/// Throughput and latency of `f` run `runs` times (after one warm-up run) on `items` items each.
pub(crate) fn sweep_row(
    label: &str,
    batch: usize,
    runs: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<String> {
    f()?;
    let mut lat = Vec::with_capacity(runs);
    let started = Instant::now();
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let per_s = (runs * batch) as f64 / started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok(format!(
        "| {label} | {batch} | {per_s:.1} | {:.1} | {:.1} |\n",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    ))
}

pub(crate) async fn inference_bench(
    report: &Path,
    n: usize,
    runs: usize,
    rounds: usize,
    config: Option<&Path>,
) -> Result<()> {
    let (mut cfg, _) = isolated_config(config)?;
    cfg.nats.work_max_bytes = 64 << 20;
    let threads = cfg.ocr.threads;
    let (w, h) = (cfg.ingest.analysis_width as usize, cfg.ingest.analysis_height as usize);
    eprintln!("inference bench: rendering {n} captioned frames");
    let colours = ["navy", "darkgreen", "maroon", "teal", "black", "purple", "olive", "gray"];
    let frames: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let text = format!("HEADLINE NUMBER {i} TODAY");
            let px = sightline_testkit::caption_frame(&text, colours[i % colours.len()], w, h)?;
            Ok((text, px))
        })
        .collect::<Result<_>>()?;
    let m = &cfg.models.clone();
    let rt = Runtime::load(&m.onnxruntime_lib())?
        .with_providers(&m.providers, m.cuda_device)?
        .with_tf32(m.tf32_files());
    let params = OcrParams {
        det_short_side: cfg.ocr.det_short_side,
        min_confidence: cfg.ocr.min_confidence,
        ..OcrParams::default()
    };

    let ocr_files = m.task_files_on(Task::Ocr, rt.provider().is_cpu())?;
    let batch = cfg.ocr.batch_max.max(1);
    let mut ocr =
        Ocr::load(&rt, &ocr_files[0], &ocr_files[1], threads, params.batched_for(rt.provider(), batch))?;
    // The pools embed every text they emit (MiniLM): part of the bare reference too.
    let mut embedder = TextEmbedder::load(
        &rt,
        &m.task_files(Task::TextEmbedding)?[0],
        &m.task_files(Task::TextEmbedding)?[1],
        cfg.vectors.threads,
    )?;
    ocr.read(&frames[0].1, w, h)?;
    let speech_n = n.max(8);
    // Each pool's bare run and actor run side by side, the four pairs in turn, `rounds` times:
    // on a shared machine one pair moves ±10 % from run to run, so the ratio reported is the
    // median over the rounds (with its range); the table shows the last round.
    let mut ratios: [Vec<f64>; 4] = Default::default();
    let (mut ocr_rows, mut speech_rows, mut scenes_rows, mut shots_rows) =
        (String::new(), String::new(), String::new(), String::new());
    let mut read_ok = 0;
    for round in 1..=rounds.max(1) {
        eprintln!("inference bench, round {round} of {rounds}: {n} frames through OCR");
        let (rows, ratio, ok) = ocr_vs_bare(&mut cfg, &frames, (w, h), &mut ocr, &mut embedder).await?;
        (ocr_rows, read_ok) = (rows, ok);
        ratios[0].push(ratio);
        eprintln!("inference bench, round {round}: {speech_n} espeak segments through speech");
        let (rows, ratio) = speech_vs_bare(&mut cfg, &rt, speech_n, &mut embedder).await?;
        speech_rows = rows;
        ratios[1].push(ratio);
        eprintln!("inference bench, round {round}: {n} frames through scenes, 16 shot windows through shots");
        let (rows, ratio) = scenes_vs_bare(&mut cfg, &rt, &frames, (w, h), &mut embedder).await?;
        scenes_rows = rows;
        ratios[2].push(ratio);
        let (rows, ratio) = shots_vs_bare(&mut cfg, &rt, 16).await?;
        shots_rows = rows;
        ratios[3].push(ratio);
    }
    let [ocr_ratio, speech_ratio, scenes_ratio, shots_ratio] = ratios.map(|mut r| {
        r.sort_by(f64::total_cmp);
        let median = r[r.len() / 2];
        if r.len() > 1 {
            format!("**{median:.3}** ({:.3}–{:.3})", r[0], r[r.len() - 1])
        } else {
            format!("**{median:.3}**")
        }
    });
    let sweep = batch_sweeps(&rt, &cfg, &frames, &mut ocr, (w, h), threads, runs)?;
    let beams = beam_sweep(&rt, &cfg)?;
    let text = format!(
        "## Inference ({n} captioned {w}x{h} frames through OCR, {speech_n} espeak-ng segments through speech, \
         {threads} ONNX Runtime thread(s), CPU; {})\n\n\
         | path | items | items/s | seconds |\n|---|---|---|---|\n\
         {ocr_rows}{speech_rows}{scenes_rows}{shots_rows}\n\
         Actor ÷ bare at the same batch (goal ≥ 0.90), median over {rounds} round(s) of both side by \
         side (lowest–highest): OCR {ocr_ratio}, speech {speech_ratio}, scenes {scenes_ratio}, shots \
         {shots_ratio}. Lines read exactly in the last bare OCR run: {read_ok}/{n}.\n\n\
         Batch-size sweep (after one warm-up run; {runs} timed runs each, the detector and labeller 15):\n\n\
         | model | batch | items/s | p50 ms per batch | p99 ms per batch |\n|---|---|---|---|---|\n{sweep}\n\
         Moonshine base, beam width over the ten espeak-ng sentences of the speech quality test \
         ({} thread(s); the default is {}):\n\n\
         | beam width | word error rate | decode ms per sentence |\n|---|---|---|\n{beams}\n",
        now_utc(),
        cfg.speech.threads,
        cfg.speech.beam_width
    );
    println!("{text}");
    append(report, &text)
}

/// OCR: the captioned frames through bare ONNX Runtime (the reader called directly, `batch_max`
/// frames at a time as the pool takes them, MiniLM on what it read) and through the OCR pool's
/// actor (one stream per frame: every frame is new to the actor's change cache, so each is read).
/// The table rows, actor ÷ bare, and how many frames the bare run read exactly.
async fn ocr_vs_bare(
    cfg: &mut Config,
    frames: &[(String, Vec<u8>)],
    (w, h): (usize, usize),
    ocr: &mut Ocr,
    embedder: &mut TextEmbedder,
) -> Result<(String, f64, usize)> {
    let n = frames.len();
    let batch = cfg.ocr.batch_max.max(1);
    let started = Instant::now();
    let mut read_ok = 0;
    for chunk in frames.chunks(batch) {
        let inputs: Vec<(&[u8], usize, usize)> = chunk.iter().map(|(_, px)| (px.as_slice(), w, h)).collect();
        let mut texts = Vec::new();
        for ((text, _), lines) in chunk.iter().zip(ocr.read_batch(&inputs)) {
            let lines = lines?;
            read_ok += lines.iter().any(|l| &l.text == text) as usize;
            texts.extend(lines.into_iter().map(|l| l.text));
        }
        if !texts.is_empty() {
            embedder.embed(&texts.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
    }
    let bare_s = started.elapsed().as_secs_f64();
    let bare = n as f64 / bare_s;
    eprintln!("  ocr bare: {bare:.2} frames/s ({read_ok}/{n} read exactly)");
    let (actor, actor_s) = pool_actor(cfg, Pool::Ocr, n, async |bus, i| {
        publish_still(bus, &format!("b{i}"), &frames[i % n].1, (w, h)).await
    })
    .await?;
    let rows = format!(
        "| OCR: bare ONNX Runtime (detector + recogniser + MiniLM called directly, {batch} frames a batch) | frames | {bare:.2} | {bare_s:.2} |\n\
         | OCR: inference actor (JetStream in, events published, then acked; batch_max {batch}) | frames | {actor:.2} | {actor_s:.2} |\n"
    );
    Ok((rows, actor / bare, read_ok))
}

pub(crate) fn read_f32(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("{} (run `make setup`)", path.display()))?;
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// Batch-size sweeps per model (threads as configured): report rows.
fn batch_sweeps(
    rt: &Runtime,
    cfg: &Config,
    frames: &[(String, Vec<u8>)],
    ocr: &mut Ocr,
    (w, h): (usize, usize),
    threads: usize,
    runs: usize,
) -> Result<String> {
    let m = &cfg.models;
    let mut sweep = String::new();
    let mut emb = TextEmbedder::load(
        rt,
        &m.task_files(Task::TextEmbedding)?[0],
        &m.task_files(Task::TextEmbedding)?[1],
        threads,
    )?;
    let sentence = "live video becomes searchable while it plays on two channels";
    for b in [1, 4, 16, 32] {
        let texts = vec![sentence; b];
        sweep += &sweep_row("MiniLM text embedding (sentences)", b, runs, || {
            emb.embed(&texts)?;
            Ok(())
        })?;
    }
    let labels = m.for_task(Task::Labels)?;
    let mut labeler =
        sightline_models::ImageLabeler::load(rt, &m.file(labels, 0), &m.file(labels, 1), threads)?;
    for b in [1, 4, 8, 16] {
        let images: Vec<(&[u8], usize, usize)> =
            frames.iter().take(b).map(|(_, px)| (px.as_slice(), w, h)).collect();
        sweep += &sweep_row(&format!("EfficientNet-Lite0 labels ({w}x{h} frames)"), b, runs.min(15), || {
            labeler.label(&images, 5)?;
            Ok(())
        })?;
    }
    let rec_w = 320;
    for b in [1, 4, 8, 16] {
        sweep += &sweep_row("PP-OCR recogniser (48x320 crops)", b, runs, || {
            ocr.recognize_tensor(vec![0.1f32; b * 3 * 48 * rec_w], b, rec_w)?;
            Ok(())
        })?;
    }
    for short in [320, 480, 736] {
        let (dw, dh) = sightline_models::ocr::det_size(w, h, short);
        sweep += &sweep_row(&format!("PP-OCR detector ({dw}x{dh} input)"), 1, runs.min(15), || {
            ocr.detect_tensor(vec![0.1f32; 3 * dw * dh], dw, dh)?;
            Ok(())
        })?;
    }
    let (dw, dh) = sightline_models::ocr::det_size(w, h, cfg.ocr.det_short_side);
    for b in [2, 4, 8] {
        sweep += &sweep_row(&format!("PP-OCR detector ({dw}x{dh} input)"), b, runs.min(15), || {
            ocr.detect_batch(vec![0.1f32; b * 3 * dw * dh], b, dw, dh)?;
            Ok(())
        })?;
    }
    for b in [1, 4, 8] {
        let inputs: Vec<(&[u8], usize, usize)> =
            frames.iter().cycle().take(b).map(|(_, px)| (px.as_slice(), w, h)).collect();
        sweep += &sweep_row(
            &format!("PP-OCR whole read, frames of several streams ({w}x{h})"),
            b,
            runs.min(15),
            || {
                for r in ocr.read_batch(&inputs) {
                    r?;
                }
                Ok(())
            },
        )?;
    }
    // Speech: segments of several streams (VAD) and their utterances (Moonshine), side by side.
    let mut vad = SileroVad::load(rt, &m.task_files(Task::Vad)?[0])?;
    let files = m.task_files_on(Task::Stt, rt.provider().is_cpu())?;
    let mut stt = Moonshine::load(rt, &files[0], &files[1], &files[2], cfg.speech.threads)?;
    stt.set_beam_width(cfg.speech.beam_width);
    stt.set_batching(8, cfg.speech.max_pad_ms as usize * 16);
    let speech: Vec<Vec<f32>> = sightline_testkit::SPEECH_SENTENCES[..8]
        .iter()
        .map(|s| Ok(sightline_testkit::speech_samples(s)?))
        .collect::<Result<_>>()?;
    for b in [1, 4, 8] {
        let segs: Vec<&[f32]> = speech.iter().take(b).map(Vec::as_slice).collect();
        sweep +=
            &sweep_row("Silero VAD (segments of about 3 s, windows side by side)", b, runs.min(15), || {
                vad.probabilities_batch(&segs)?;
                Ok(())
            })?;
    }
    // Utterances cut to 2 s (each sentence's first two seconds), so they share runs unpadded.
    let cut: Vec<&[f32]> = speech.iter().map(|s| &s[..s.len().min(32_000)]).collect();
    for b in [1, 2, 4, 8] {
        let utts = &cut[..b];
        sweep += &sweep_row(
            &format!("Moonshine base (2 s utterances, beam width {})", cfg.speech.beam_width),
            b,
            runs.min(5),
            || {
                for t in stt.transcribe_batch(utts) {
                    t?;
                }
                Ok(())
            },
        )?;
    }
    let shot_window = vec![90u8; sightline_models::shots::SHOT_WINDOW * sightline_models::SHOT_FRAME_BYTES];
    let mut shots = sightline_models::ShotDetector::load(rt, &m.task_files(Task::Shots)?[0], threads)?;
    for b in [1, 2, 4] {
        let windows = vec![shot_window.as_slice(); b];
        sweep += &sweep_row("TransNetV2 shot boundaries (windows of 100 frames)", b, runs.min(15), || {
            shots.predict(&windows)?;
            Ok(())
        })?;
    }
    Ok(sweep)
}

/// Moonshine's beam width: word error rate over the espeak sentences and decode time, as rows.
fn beam_sweep(rt: &Runtime, cfg: &Config) -> Result<String> {
    let m = &cfg.models;
    let mut vad = SileroVad::load(rt, &m.task_files(Task::Vad)?[0])?;
    let stt_files = m.task_files_on(Task::Stt, rt.provider().is_cpu())?;
    let mut stt = Moonshine::load(rt, &stt_files[0], &stt_files[1], &stt_files[2], cfg.speech.threads)?;
    let mut utterances = Vec::new();
    for sentence in sightline_testkit::SPEECH_SENTENCES {
        let samples = sightline_testkit::speech_samples(sentence)?;
        let regions = vad.speech_regions(&samples, cfg.speech.vad_threshold, cfg.speech.min_speech_ms)?;
        utterances.push((sentence, regions.iter().map(|&(s, e)| samples[s..e].to_vec()).collect::<Vec<_>>()));
    }
    let mut beams = String::new();
    for width in [1, 2, 4, 8] {
        stt.set_beam_width(width);
        let (mut errors, mut words, mut secs) = (0, 0, 0.0);
        for (sentence, segments) in &utterances {
            let started = Instant::now();
            let heard =
                segments.iter().map(|seg| Ok(stt.transcribe(seg)?.text)).collect::<Result<Vec<_>>>()?;
            secs += started.elapsed().as_secs_f64();
            let (e, n) = word_errors(sentence, &heard.join(" "));
            errors += e;
            words += n;
        }
        eprintln!("  moonshine beam {width}: {errors} word errors in {words}");
        beams += &format!(
            "| {width} | {:.1} % ({errors}/{words}) | {:.0} |\n",
            errors as f64 * 100.0 / words as f64,
            secs * 1000.0 / utterances.len() as f64
        );
    }
    Ok(beams)
}
