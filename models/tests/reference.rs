//! The Rust side of each model against ONNX Runtime's Python output on the same input
//! (fixtures written at setup by scripts/make-fixtures.py).

use sightline_models::{Runtime, TEXT_DIM, TextEmbedder, WordPiece};
use sightline_settings::Config;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    let dir = std::env::var("SIGHTLINE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/sightline/fixtures"));
    assert!(dir.join("minilm.json").exists(), "no fixtures in {} (run `make setup`)", dir.display());
    dir
}

#[test]
fn minilm_tokens_and_embeddings_match_python_onnxruntime() {
    let cfg = Config::load(None).unwrap();
    let m = &cfg.models;
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("minilm.json")).unwrap()).unwrap();
    let tok = WordPiece::from_file(&m.path(&m.text_tokenizer)).unwrap();
    let rt = Runtime::load(&m.onnxruntime_lib()).unwrap();
    let mut emb = TextEmbedder::load(&rt, &m.path(&m.text_embedder), &m.path(&m.text_tokenizer), 1).unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    // One padded batch, as the sink runs it: padding must not change any sentence's vector.
    let batch = emb.embed(&texts).unwrap();
    let mut worst = 0f32;
    for (case, got) in cases.iter().zip(&batch) {
        let want_ids: Vec<i64> = case["ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(tok.encode(case["text"].as_str().unwrap(), 128), want_ids, "tokens of {}", case["text"]);
        let want: Vec<f32> = case["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
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
