//! Execution providers: every model on the configured provider (CUDA on a GPU machine) against
//! the CPU provider of the same ONNX Runtime, the GPU preprocessing kernel against the CPU, and each
//! model's throughput by batch size on the provider (`sightline-bench providers`, the GPU check).

use super::*;
use crate::inference::{read_f32, sweep_row};
use sightline_models::{
    GpuPreprocessor, Moonshine, Ocr, OcrParams, Provider, Runtime, ShotDetector, SileroVad, TextEmbedder,
    preprocess_cpu,
};
use sightline_settings::{Config, ModelsConfig, Task};

/// Every model on the configured provider against the CPU: the largest difference and the speed.
struct Comparison {
    runs: usize,
    rows: String,
    failed: Vec<String>,
}

impl Comparison {
    /// The first output, and runs per second over `runs` more.
    fn timed(&self, f: &mut dyn FnMut() -> Result<Vec<f32>>) -> Result<(Vec<f32>, f64)> {
        let out = f()?;
        let t = Instant::now();
        for _ in 0..self.runs {
            f()?;
        }
        Ok((out, self.runs as f64 / t.elapsed().as_secs_f64()))
    }

    /// A row: stated tolerance 1e-3 on every output value (greedy tokens: identical).
    fn row(&mut self, model: &str, on: (Vec<f32>, f64), base: (Vec<f32>, f64)) {
        let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        let d = if on.0.len() == base.0.len() { diff(&on.0, &base.0) } else { f32::INFINITY };
        let ok = if model.contains("tokens") { d == 0.0 } else { d < 1e-3 };
        if !ok {
            self.failed.push(model.to_string());
        }
        self.rows += &format!(
            "| {model} | {d:.2e} {} | {:.1} | {:.1} | {:.2} |\n",
            if ok { "ok" } else { "**over tolerance**" },
            on.1,
            base.1,
            on.1 / base.1
        );
    }

    /// Runs `f` on the provider and on the CPU and adds the row.
    fn compare(
        &mut self,
        model: &str,
        (rt, cpu): (&Runtime, &Runtime),
        f: impl Fn(&Comparison, &Runtime) -> Result<(Vec<f32>, f64)>,
    ) -> Result<()> {
        let (on, base) = (f(self, rt)?, f(self, cpu)?);
        self.row(model, on, base);
        Ok(())
    }
}

pub(crate) fn providers_bench(
    report: &Path,
    runs: usize,
    require_cuda: bool,
    sweep: bool,
    config: Option<&Path>,
) -> Result<()> {
    let cfg = sightline_settings::Config::load(config.or(Some(Path::new("config/sightline.toml"))))?;
    let m = &cfg.models;
    let cpu = Runtime::load(&m.onnxruntime_lib())?;
    let rt = cpu.clone().with_providers(&m.providers, m.cuda_device)?.with_tf32(m.tf32_files());
    let name = rt.provider().name();
    if require_cuda && !matches!(rt.provider(), Provider::Cuda { .. }) {
        bail!(
            "CUDA is not available to {} ({}); models.providers = {:?}",
            m.onnxruntime_lib().display(),
            sightline_models::cuda_available().err().unwrap_or_default(),
            m.providers
        );
    }
    let fixtures = std::env::var("SIGHTLINE_FIXTURES").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/sightline/fixtures")
    });
    let mut c = Comparison { runs, rows: String::new(), failed: Vec::new() };
    compare_models(&mut c, m, (&rt, &cpu), &fixtures)?;
    compare_preprocessing(&mut c, &rt)?;
    let mut text = format!(
        "## Execution providers ({name} vs cpu, {}; {runs} timed runs each after a warm-up)\n\n\
         | model | largest difference (tolerance 1e-3; tokens identical) | {name} runs/s | cpu runs/s | speed-up |\n\
         |---|---|---|---|---|\n{}\n",
        now_utc(),
        c.rows
    );
    if sweep {
        eprintln!("providers bench: batch sizes on {name}");
        let rows = provider_sweeps(&rt, &cfg, &fixtures, runs)?;
        text += &format!(
            "Throughput on {name} by batch size (the reference fixtures repeated; one warm-up run, \
             then {runs} timed runs, Moonshine {}):\n\n\
             | model | batch | items/s | p50 ms per batch | p99 ms per batch |\n|---|---|---|---|---|\n{rows}\n",
            (runs / 4).max(1)
        );
    }
    println!("{text}");
    append(report, &text)?;
    if !c.failed.is_empty() {
        bail!("{name} differs from the CPU beyond tolerance in: {}", c.failed.join(", "));
    }
    Ok(())
}

/// MiniLM, PP-OCR, Silero VAD, Moonshine and TransNetV2 on their reference fixtures.
fn compare_models(
    c: &mut Comparison,
    m: &ModelsConfig,
    rts: (&Runtime, &Runtime),
    fixtures: &Path,
) -> Result<()> {
    let texts = vec!["live video becomes searchable while it plays on two channels"; 16];
    c.compare("MiniLM, 16 sentences", rts, |c, r| {
        let files = m.task_files(Task::TextEmbedding)?;
        let mut e = TextEmbedder::load(r, &files[0], &files[1], 1)?;
        c.timed(&mut || Ok(e.embed(&texts)?.concat()))
    })?;
    // PP-OCR: the fixture's detector input and recogniser batch.
    let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures.join("ocr.json"))?)?;
    let dim = |v: &serde_json::Value, i: usize| v[i].as_u64().unwrap_or(0) as usize;
    let (det_in, rec_in) =
        (read_f32(&fixtures.join("ocr_det_input.f32"))?, read_f32(&fixtures.join("ocr_rec_input.f32"))?);
    let (ds, rs) = (&fx["det"]["input_shape"], &fx["rec"]["input_shape"]);
    let load_ocr = |r: &Runtime| -> Result<Ocr> {
        // The same (float) files on both providers: this compares providers, not quantisation.
        let files = m.task_files(Task::Ocr)?;
        Ok(Ocr::load(r, &files[0], &files[1], 1, OcrParams::default())?)
    };
    c.compare(&format!("PP-OCR detector, {}x{}", dim(ds, 3), dim(ds, 2)), rts, |c, r| {
        let mut o = load_ocr(r)?;
        c.timed(&mut || Ok(o.detect_tensor(det_in.clone(), dim(ds, 3), dim(ds, 2))?))
    })?;
    c.compare(&format!("PP-OCR recogniser, {} crops 48x{}", dim(rs, 0), dim(rs, 3)), rts, |c, r| {
        let mut o = load_ocr(r)?;
        c.timed(&mut || Ok(o.recognize_tensor(rec_in.clone(), dim(rs, 0), dim(rs, 3))?.2))
    })?;
    // Speech: the fixture sentence through Silero VAD and Moonshine.
    let speech = read_f32(&fixtures.join("speech.f32"))?;
    c.compare("Silero VAD, per-window probabilities", rts, |c, r| {
        let mut v = SileroVad::load(r, &m.task_files(Task::Vad)?[0])?;
        c.timed(&mut || Ok(v.probabilities(&speech)?))
    })?;
    c.compare("Moonshine base, greedy tokens", rts, |c, r| {
        let files = m.task_files(Task::Stt)?;
        let mut s = Moonshine::load(r, &files[0], &files[1], &files[2], 1)?;
        c.timed(&mut || Ok(s.transcribe(&speech)?.tokens.iter().map(|&t| t as f32).collect()))
    })?;
    // TransNetV2: the fixture's window of 100 frames.
    let window =
        std::fs::read(fixtures.join("shots_frames.u8")).context("shots fixture (run `make setup`)")?;
    c.compare("TransNetV2, one window of 100 frames", rts, |c, r| {
        let mut d = ShotDetector::load(r, &m.task_files(Task::Shots)?[0], 1)?;
        c.timed(&mut || Ok(d.predict(&[&window])?.concat()))
    })
}

/// Each model on `rt` at growing batch sizes, on the reference fixtures (repeated to fill a
/// batch) and made-up frames: what one accelerator gets through when the pools batch across
/// streams. Needs no GStreamer or espeak-ng, so it runs on a bare GPU host.
fn provider_sweeps(rt: &Runtime, cfg: &Config, fixtures: &Path, runs: usize) -> Result<String> {
    let m = &cfg.models;
    let mut rows = String::new();
    let mut emb = TextEmbedder::load(
        rt,
        &m.task_files(Task::TextEmbedding)?[0],
        &m.task_files(Task::TextEmbedding)?[1],
        1,
    )?;
    let sentence = "live video becomes searchable while it plays on two channels";
    for b in [1, 32, 128] {
        let texts = vec![sentence; b];
        rows += &sweep_row("MiniLM text embedding (sentences)", b, runs, || {
            emb.embed(&texts)?;
            Ok(())
        })?;
    }
    let (w, h) = (cfg.ingest.analysis_width as usize, cfg.ingest.analysis_height as usize);
    let frames: Vec<Vec<u8>> = (0..64u32)
        .map(|i| (0..(w * h * 3) as u32).map(|j| ((j * 7 + i * 13) % 251) as u8).collect())
        .collect();
    let labels = m.for_task(Task::Labels)?;
    let mut labeler = sightline_models::ImageLabeler::load(rt, &m.file(labels, 0), &m.file(labels, 1), 1)?;
    let kernel = match rt.provider() {
        Provider::Cuda { device } => GpuPreprocessor::new(device.max(0) as usize).ok(),
        Provider::Cpu => None,
    };
    let on = if kernel.is_some() { "GPU preprocessing" } else { "CPU preprocessing" };
    if let Some(gpu) = kernel {
        labeler = labeler.with_gpu(gpu);
    }
    for b in [1, 16, 64] {
        let images: Vec<(&[u8], usize, usize)> =
            frames.iter().take(b).map(|f| (f.as_slice(), w, h)).collect();
        rows += &sweep_row(&format!("EfficientNet-Lite0 labels ({w}x{h} frames, {on})"), b, runs, || {
            labeler.label(&images, 5)?;
            Ok(())
        })?;
    }
    let ocr_files = m.task_files(Task::Ocr)?;
    let mut ocr = Ocr::load(rt, &ocr_files[0], &ocr_files[1], 1, OcrParams::default())?;
    let (dw, dh) = sightline_models::ocr::det_size(w, h, cfg.ocr.det_short_side);
    for b in [1, 8, 32] {
        rows += &sweep_row(&format!("PP-OCR detector ({dw}x{dh} input)"), b, runs, || {
            ocr.detect_batch(vec![0.1f32; b * 3 * dw * dh], b, dw, dh)?;
            Ok(())
        })?;
    }
    for b in [1, 16, 64, 256] {
        rows += &sweep_row("PP-OCR recogniser (48x320 crops)", b, runs, || {
            ocr.recognize_tensor(vec![0.1f32; b * 3 * 48 * 320], b, 320)?;
            Ok(())
        })?;
    }
    let speech = read_f32(&fixtures.join("speech.f32"))?;
    let mut vad = SileroVad::load(rt, &m.task_files(Task::Vad)?[0])?;
    for b in [1, 16, 64] {
        let segs = vec![speech.as_slice(); b];
        let secs = speech.len() as f64 / 16_000.0;
        rows += &sweep_row(
            &format!("Silero VAD (segments of {secs:.1} s, windows side by side)"),
            b,
            runs,
            || {
                vad.probabilities_batch(&segs)?;
                Ok(())
            },
        )?;
    }
    let files = m.task_files_on(Task::Stt, rt.provider().is_cpu())?;
    let mut stt = Moonshine::load(rt, &files[0], &files[1], &files[2], 1)?;
    stt.set_beam_width(cfg.speech.beam_width);
    let utterance = &speech[..speech.len().min(32_000)];
    for b in [1, 8, 32] {
        stt.set_batching(b, 0);
        let utts = vec![utterance; b];
        let label = format!("Moonshine base (2 s utterances, beam width {})", cfg.speech.beam_width);
        rows += &sweep_row(&label, b, (runs / 4).max(1), || {
            for t in stt.transcribe_batch(&utts) {
                t?;
            }
            Ok(())
        })?;
    }
    let window =
        std::fs::read(fixtures.join("shots_frames.u8")).context("shots fixture (run `make setup`)")?;
    let mut shots = ShotDetector::load(rt, &m.task_files(Task::Shots)?[0], 1)?;
    for b in [1, 8, 32] {
        let windows = vec![window.as_slice(); b];
        rows += &sweep_row("TransNetV2 shot boundaries (windows of 100 frames)", b, runs, || {
            shots.predict(&windows)?;
            Ok(())
        })?;
    }
    Ok(rows)
}

/// The GPU preprocessing kernel against the same computation on the CPU: 16 frames of the
/// sampled size (and one of another size) to EfficientNet-Lite0's 224x224 input.
fn compare_preprocessing(c: &mut Comparison, rt: &Runtime) -> Result<()> {
    let frames: Vec<Vec<u8>> =
        (0..16u32).map(|i| (0..384 * 216 * 3u32).map(|j| ((j * 7 + i * 13) % 251) as u8).collect()).collect();
    let mut images: Vec<(&[u8], usize, usize)> = frames.iter().map(|f| (f.as_slice(), 384, 216)).collect();
    images.push((&frames[0][..200 * 100 * 3], 200, 100));
    let layout = sightline_models::labels::LABEL_LAYOUT;
    let kernel = match rt.provider() {
        Provider::Cuda { device } => Some(GpuPreprocessor::new(device.max(0) as usize)),
        Provider::Cpu => None,
    };
    match kernel {
        Some(Ok(gpu)) => {
            let on = c.timed(&mut || gpu.preprocess(&images, &layout).map_err(anyhow::Error::msg))?;
            let base = c.timed(&mut || Ok(preprocess_cpu(&images, &layout)))?;
            c.row(&format!("preprocessing kernel on {}, 17 frames to 224x224", gpu.device()), on, base);
        }
        Some(Err(why)) => {
            c.failed.push(format!("preprocessing kernel ({why})"));
            c.rows += &format!("| preprocessing kernel | not available: {why} | | | |\n");
        }
        None => c.rows += "| preprocessing kernel | not run (no CUDA provider) | | | |\n",
    }
    Ok(())
}
