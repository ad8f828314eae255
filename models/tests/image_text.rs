//! The image-text (CLIP-like) loader on the toy model `make setup` builds
//! (scripts/make-clip-toy.py): CLIP's tokenizer in Rust against open_clip's own on the same
//! sentences, and the image and text models in one space, where "red" finds the red picture.

use sightline_models::clip::CLIP_CONTEXT;
use sightline_models::{ClipTokenizer, ImageTextModel, Runtime};
use sightline_settings::Config;
use std::path::PathBuf;

fn toy() -> PathBuf {
    let dir = PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/sightline/models/clip-toy");
    assert!(
        dir.join("tokens.json").exists(),
        "no toy image-text model in {} (run `make setup`)",
        dir.display()
    );
    dir
}

#[test]
fn clip_tokenizer_matches_open_clip() {
    let dir = toy();
    let tok = ClipTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokens.json")).unwrap()).unwrap();
    assert!(cases.len() >= 8);
    for c in &cases {
        let text = c["text"].as_str().unwrap();
        let want: Vec<i64> = c["ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(tok.encode(text), want, "{text:?}");
    }
    // Long text is cut to the context length with the end token kept.
    let long = tok.encode(&"word ".repeat(200));
    assert_eq!(long.len(), CLIP_CONTEXT);
    assert_eq!(long.last(), tok.encode("").last());
}

#[test]
fn image_and_text_share_one_space() {
    let dir = toy();
    let cfg = Config::load(None).unwrap();
    let rt = Runtime::load(&cfg.models.onnxruntime_lib()).unwrap();
    let mut m = ImageTextModel::load(
        &rt,
        &dir.join("image.onnx"),
        &dir.join("text.onnx"),
        &dir.join("tokenizer.json"),
        1,
    )
    .unwrap();
    let solid = |rgb: [u8; 3]| rgb.repeat(64 * 36);
    let (red, green, blue) = (solid([220, 20, 20]), solid([20, 200, 30]), solid([30, 30, 210]));
    let images = m.embed_images(&[(&red, 64, 36), (&green, 64, 36), (&blue, 64, 36)]).unwrap();
    let texts = m.embed_texts(&["a red car", "green grass in a field", "the deep blue sea"]).unwrap();
    assert_eq!(images.len(), 3);
    assert_eq!(texts.len(), 3);
    for v in images.iter().chain(&texts) {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "not unit length: {v:?}");
    }
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    for (t, text) in texts.iter().enumerate() {
        let scores: Vec<f32> = images.iter().map(|i| dot(text, i)).collect();
        let best = scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(best, t, "sentence {t} is nearest to picture {best}: {scores:?}");
    }
}
