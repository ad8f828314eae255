//! The Rust side of each model against ONNX Runtime's Python output on the same input
//! (fixtures written at setup by scripts/make-fixtures.py).

use sightline_models::{
    IMAGE_FEATURES, ImageLabeler, Moonshine, Ocr, OcrParams, Provider, Runtime, ShotDetector, SileroVad,
    TEXT_DIM, TextEmbedder, WordPiece, shot_starts,
};
use sightline_settings::Config;
use sightline_settings::{ExecutionProvider, Task};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    let dir = std::env::var("SIGHTLINE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/sightline/fixtures"));
    for f in ["minilm.json", "ocr.json", "speech.json", "labels.json", "shots.json"] {
        assert!(dir.join(f).exists(), "no {f} in {} (run `make setup`)", dir.display());
    }
    dir
}

#[test]
fn minilm_tokens_and_embeddings_match_python_onnxruntime() {
    let cfg = Config::load(None).unwrap();
    let m = &cfg.models;
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("minilm.json")).unwrap()).unwrap();
    let tok = WordPiece::from_file(&m.task_files(Task::TextEmbedding).unwrap()[1]).unwrap();
    let rt = Runtime::load(&m.onnxruntime_lib()).unwrap();
    let mut emb = TextEmbedder::load(
        &rt,
        &m.task_files(Task::TextEmbedding).unwrap()[0],
        &m.task_files(Task::TextEmbedding).unwrap()[1],
        1,
    )
    .unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    // One padded batch, as the sink runs it: padding must not change any sentence's vector.
    let batch = emb.embed(&texts).unwrap();
    let mut worst = 0f32;
    for (case, got) in cases.iter().zip(&batch) {
        let want_ids: Vec<i64> =
            case["ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(tok.encode(case["text"].as_str().unwrap(), 128), want_ids, "tokens of {}", case["text"]);
        let want: Vec<f32> =
            case["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert_eq!(got.len(), TEXT_DIM);
        let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        worst = worst.max(diff);
        let cos: f32 = got.iter().zip(&want).map(|(a, b)| a * b).sum();
        assert!(cos > 0.9999, "cosine {cos} for {}", case["text"]);
    }
    // Stated tolerance: every component within 1e-4 of Python's.
    assert!(worst < 1e-4, "largest component difference {worst}");
    eprintln!("minilm: {} sentences, largest component difference {worst:.2e}", cases.len());

    // Meaning: a paraphrase is nearer than an unrelated sentence.
    let v = emb.embed(&["a fast brown fox leaps over a sleepy dog", "stock markets fell sharply"]).unwrap();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(dot(&batch[0], &v[0]) > 0.7 && dot(&batch[0], &v[1]) < 0.3);
}

fn read_f32(path: PathBuf) -> Vec<f32> {
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn shape(v: &serde_json::Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()
}

#[test]
fn ppocr_detector_and_recogniser_match_python_onnxruntime() {
    let cfg = Config::load(None).unwrap();
    let m = &cfg.models;
    let dir = fixtures();
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ocr.json")).unwrap()).unwrap();
    let rt = Runtime::load(&m.onnxruntime_lib()).unwrap();
    let ocr_files = m.task_files(Task::Ocr).unwrap();
    let mut ocr = Ocr::load(&rt, &ocr_files[0], &ocr_files[1], 2, OcrParams::default()).unwrap();

    // Detector: the same input tensor gives the same probability map.
    let s = shape(&fx["det"]["input_shape"]);
    let want = read_f32(dir.join("ocr_det_prob.f32"));
    let got = ocr.detect_tensor(read_f32(dir.join("ocr_det_input.f32")), s[3], s[2]).unwrap();
    assert_eq!(got.len(), want.len());
    let det_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(want.iter().filter(|&&p| p > 0.3).count() > 500, "the fixture frame has text the detector sees");
    // Stated tolerance: every probability within 1e-4 of Python's.
    assert!(det_diff < 1e-4, "detector: largest difference {det_diff}");

    // Recogniser: same probabilities, and the same text after greedy CTC decoding.
    let s = shape(&fx["rec"]["input_shape"]);
    let want = read_f32(dir.join("ocr_rec_probs.f32"));
    let (steps, classes, got) =
        ocr.recognize_tensor(read_f32(dir.join("ocr_rec_input.f32")), s[0], s[3]).unwrap();
    assert_eq!(vec![s[0], steps, classes], shape(&fx["rec"]["output_shape"]));
    assert_eq!(classes, ocr.charset_len());
    let rec_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(rec_diff < 1e-4, "recogniser: largest difference {rec_diff}");
    let texts: Vec<String> = (0..s[0])
        .map(|i| ocr.ctc_decode(&got[i * steps * classes..(i + 1) * steps * classes], classes).0)
        .collect();
    let want_texts: Vec<String> =
        fx["rec"]["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    assert_eq!(texts, want_texts);
    assert_eq!(texts[0], fx["caption"].as_str().unwrap(), "the caption crop reads as drawn");
    eprintln!("ppocr: detector largest difference {det_diff:.2e}, recogniser {rec_diff:.2e}; read {texts:?}");
}

#[test]
fn silero_vad_and_moonshine_match_python_onnxruntime() {
    let cfg = Config::load(None).unwrap();
    let m = &cfg.models;
    let dir = fixtures();
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("speech.json")).unwrap()).unwrap();
    let samples = read_f32(dir.join("speech.f32"));
    assert_eq!(samples.len() as u64, fx["samples"].as_u64().unwrap());
    let rt = Runtime::load(&m.onnxruntime_lib()).unwrap();

    // VAD: every window's speech probability, state carried from window to window.
    let mut vad = SileroVad::load(&rt, &m.task_files(Task::Vad).unwrap()[0]).unwrap();
    let got = vad.probabilities(&samples).unwrap();
    let want: Vec<f32> = fx["vad"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(got.len(), want.len());
    let vad_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(
        want.iter().any(|&p| p > 0.9) && want.iter().any(|&p| p < 0.1),
        "speech and silence in the fixture"
    );
    // Stated tolerance: every probability within 1e-4 of Python's.
    assert!(vad_diff < 1e-4, "silero: largest difference {vad_diff}");

    // Moonshine: the same greedy tokens, each step's probability within 1e-3, the same text.
    let stt_files = m.task_files(Task::Stt).unwrap();
    let mut stt = Moonshine::load(&rt, &stt_files[0], &stt_files[1], &stt_files[2], 1).unwrap();
    let t = stt.transcribe(&samples).unwrap();
    let want_tokens: Vec<u32> =
        fx["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    assert_eq!(t.tokens, want_tokens);
    let probs: Vec<f32> =
        fx["token_probs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let mean = probs.iter().sum::<f32>() / probs.len() as f32;
    assert!(
        (t.confidence - mean).abs() < 1e-3,
        "confidence {} vs Python's mean token probability {mean}",
        t.confidence
    );
    assert_eq!(t.text, fx["text"].as_str().unwrap());
    eprintln!(
        "silero: {} windows, largest difference {vad_diff:.2e}; moonshine: {} tokens identical, text {:?}",
        got.len(),
        t.tokens.len(),
        t.text
    );
}

#[test]
fn execution_providers_are_detected_with_cpu_fallback_and_agree() {
    let cfg = Config::load(None).unwrap();
    let m = &cfg.models;
    let cpu = Runtime::load(&m.onnxruntime_lib()).unwrap();
    let preferred = [ExecutionProvider::Cuda, ExecutionProvider::Cpu];
    let rt = cpu.clone().with_providers(&preferred, 0).unwrap();
    // CUDA exactly when this ONNX Runtime build and machine offer it; otherwise the CPU.
    match sightline_models::cuda_available() {
        Ok(()) => assert_eq!(rt.provider(), Provider::Cuda { device: 0 }),
        Err(why) => {
            assert_eq!(rt.provider(), Provider::Cpu, "falls back to the CPU");
            eprintln!("CUDA unavailable here ({why}); checked the CPU fallback");
        }
    }
    // An unknown provider is refused where the configuration is read.
    let tpu = toml::from_str::<Config>("[models]\nproviders = [\"tpu\"]\n").unwrap_err().to_string();
    assert!(tpu.contains("unknown variant `tpu`"), "{tpu}");
    assert_eq!(cpu.clone().with_providers(&[ExecutionProvider::Cpu], 0).unwrap().provider(), Provider::Cpu);

    // The chosen provider gives the CPU's embeddings within the stated tolerance.
    let texts = ["BREAKING NEWS AT NOON", "live video becomes searchable while it plays"];
    let load = |r: &Runtime| {
        TextEmbedder::load(
            r,
            &m.task_files(Task::TextEmbedding).unwrap()[0],
            &m.task_files(Task::TextEmbedding).unwrap()[1],
            1,
        )
        .unwrap()
    };
    let (a, b) = (load(&rt).embed(&texts).unwrap(), load(&cpu).embed(&texts).unwrap());
    let diff = a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(diff < 1e-3, "{} vs cpu: largest difference {diff}", rt.provider().name());
}

#[test]
fn efficientnet_labels_match_python_onnxruntime_and_make_sense() {
    let cfg = Config::load(None).unwrap();
    let m = &cfg.models;
    let dir = fixtures();
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("labels.json")).unwrap()).unwrap();
    let rgb = std::fs::read(dir.join("labels_rgb.u8")).unwrap();
    let rt = Runtime::load(&m.onnxruntime_lib()).unwrap();
    let mut labeler = ImageLabeler::load(
        &rt,
        &m.task_files(Task::Labels).unwrap()[0],
        &m.task_files(Task::Labels).unwrap()[1],
        1,
    )
    .unwrap();
    let got = labeler.label(&[(&rgb, 224, 224)], 5).unwrap().remove(0);
    let floats = |k: &str| -> Vec<f32> {
        fx[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
    };
    let want = floats("features");
    assert_eq!(got.features.len(), IMAGE_FEATURES);
    let diff = got.features.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    // Stated tolerance: every feature within 1e-4 of Python's; the same top-5 classes.
    assert!(diff < 1e-4, "features: largest difference {diff}");
    let names: Vec<&str> = got.top.iter().map(|(n, _)| n.as_str()).collect();
    let want_top: Vec<&str> = fx["top5"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(names, want_top);
    // A photograph of a cat is labelled as a cat.
    assert!(["Egyptian cat", "tabby", "tiger cat"].contains(&names[0]), "{:?}", got.top);
    // A photograph of a cup of coffee, at another size (scaled to 224x224 in Rust).
    let coffee = dir.parent().unwrap().join("images/coffee.png");
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-i",
            coffee.to_str().unwrap(),
            "-vf",
            "scale=320:240",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .unwrap();
    assert_eq!(out.stdout.len(), 320 * 240 * 3, "{}", String::from_utf8_lossy(&out.stderr));
    let cup = labeler.label(&[(&out.stdout, 320, 240)], 5).unwrap().remove(0);
    assert!(["espresso", "cup", "coffee mug"].contains(&cup.top[0].0.as_str()), "{:?}", cup.top);
    eprintln!(
        "efficientnet: features largest difference {diff:.2e}; cat {:?}; coffee {:?}",
        got.top, cup.top
    );
}

#[test]
fn transnetv2_matches_python_onnxruntime_and_finds_the_cut() {
    let cfg = Config::load(None).unwrap();
    let m = &cfg.models;
    let dir = fixtures();
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("shots.json")).unwrap()).unwrap();
    let frames = std::fs::read(dir.join("shots_frames.u8")).unwrap();
    let rt = Runtime::load(&m.onnxruntime_lib()).unwrap();
    let mut det = ShotDetector::load(&rt, &m.task_files(Task::Shots).unwrap()[0], 1).unwrap();
    let got = det.predict(&[&frames]).unwrap().remove(0);
    let want: Vec<f32> = fx["cut"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(got.len(), want.len());
    let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!("transnetv2: 100 frames, largest probability difference {diff:.2e}");
    // Stated tolerance: every frame's probability within 1e-4 of Python's.
    assert!(diff < 1e-4, "largest difference {diff}");
    // The test pattern ends on frame 59; the colour bars start at frame 60, and nowhere else.
    let cut = fx["cut_frame"].as_u64().unwrap() as usize;
    let starts = shot_starts(&got, 0.5);
    assert_eq!(starts.iter().map(|s| s.0).collect::<Vec<_>>(), vec![cut], "{starts:?}");
    // The same window twice in one batch gives the same answer twice.
    let two = det.predict(&[&frames, &frames]).unwrap();
    assert!(two.iter().all(|p| p.iter().zip(&got).all(|(a, b)| (a - b).abs() < 1e-5)));
}
