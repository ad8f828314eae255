//! The image-text space end to end, with the toy CLIP-like model `make setup` builds
//! (scripts/make-clip-toy.py; no registry package ships CLIP weights) configured the way a user
//! configures their own: the scene pool embeds kept frames, the vector sink stores them in the
//! `image_text` set, and `/v1/search?space=image_text` finds the frames a description fits.

mod common;

use common::{TestSystem, test_config};
use sightline_actors::Roles;
use sightline_settings::ModelSpec;
use sightline_settings::Task;
use sightline_testkit::{ClipSpec, LiveHls};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_description_finds_the_frames_that_show_it() {
    let mut cfg = test_config();
    cfg.models.registry.push(ModelSpec {
        files: ["clip-toy/image.onnx", "clip-toy/text.onnx", "clip-toy/tokenizer.json"]
            .map(Into::into)
            .to_vec(),
        ..ModelSpec::new("clip-toy", Task::ImageText)
    });
    cfg.models.image_text = "clip-toy".into();
    // Exact vectors: three-dimensional toy embeddings would tie under 8-bit quantisation.
    cfg.vectors.quantization = sightline_settings::Quantization::Noquant;
    let sys = TestSystem::start(cfg, Roles::ALL).await;
    // The standard clip: a test pattern, then navy (5-9 s), colour bars, dark green (14-18 s).
    let clip = ClipSpec::standard();
    let file = clip.render(&std::env::temp_dir().join("sightline-test-clips")).await.expect("clip renders");
    let live = LiveHls::start(&file, &std::env::temp_dir().join(common::unique("sl-imgtxt")), 1)
        .await
        .expect("live HLS starts");
    let body = serde_json::json!({ "url": live.url, "name": "colours" }).to_string();
    let (status, created) = sys.http("POST", "/v1/streams", Some(&body)).await;
    assert_eq!(status, 201, "{created}");

    let search = async |q: &str| {
        let (status, body) = sys.http("GET", &format!("/v1/search?q={q}&space=image_text&k=5"), None).await;
        assert_eq!(status, 200, "{body}");
        body["hits"].as_array().cloned().unwrap_or_default()
    };
    // Media times of the best hits (equal scores: the toy model maps a solid colour to one axis).
    let best = |hits: &[serde_json::Value]| -> Vec<i64> {
        let top = hits.first().and_then(|h| h["score"].as_f64()).unwrap_or(0.0);
        hits.iter()
            .filter(|h| h["score"].as_f64().unwrap_or(0.0) >= top - 1e-4)
            .map(|h| h["pts_ms"].as_i64().unwrap())
            .collect()
    };
    let (navy, dark_green) = (5_000..9_000, 14_000..18_000);
    // Wait until the dark green scene's frames are stored (the clip's last scene).
    let mut green = Vec::new();
    for _ in 0..80 {
        green = search("green%20grass").await;
        if best(&green).iter().any(|p| dark_green.contains(p)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("green: {:?} {green:#?}", best(&green));
    assert!(best(&green).iter().any(|p| dark_green.contains(p)), "{green:#?}");
    assert!(!best(&green).iter().any(|p| navy.contains(p)), "{green:#?}");
    let hit = green.iter().find(|h| dark_green.contains(&h["pts_ms"].as_i64().unwrap())).unwrap();
    assert_eq!(hit["kind"], "frame");
    assert_eq!(hit["frame_id"], hit["id"]);
    let blue = search("the%20deep%20blue%20sea").await;
    eprintln!("blue: {:?}", best(&blue));
    assert!(best(&blue).iter().any(|p| navy.contains(p)), "{blue:#?}");
    assert!(!best(&blue).iter().any(|p| dark_green.contains(p)), "{blue:#?}");
    // The frame events name the image-text model beside the signature. The vector set can hold a
    // frame a moment before ClickHouse does (each sink batches on its own): wait for the row.
    let url = hit["frame_url"].as_str().unwrap();
    let mut frame = serde_json::Value::Null;
    for _ in 0..40 {
        let (status, body) = sys.http("GET", url, None).await;
        frame = body;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(frame["model"].as_str().is_some_and(|m| m.contains("clip-toy@1")), "{frame}");
    // Bad requests say what was wrong.
    let (status, body) = sys.http("GET", "/v1/search?q=x&space=pixels", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_space")), "{body}");
    let (status, body) = sys.http("GET", "/v1/search?q=x&space=image_text&kinds=ocr", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_kind")), "{body}");
    drop(live);
    sys.shutdown().await;
}
