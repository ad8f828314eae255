//! The ingest pipeline against a generated live HLS stream on loopback (real GStreamer, real
//! ffmpeg): frames arrive at the sampled rate, cuts land on the generated cut times, speech comes
//! out as audio segments, and tearing the pipeline down mid-stream is clean.

use sightline_settings::IngestConfig;
use sightline_streams::testsrc::{ClipSpec, LiveHls};
use sightline_streams::{IngestStats, MediaItem, MediaPipeline, PipelineSpec};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_hls_gives_frames_cuts_and_audio() {
    let dir = std::env::temp_dir().join(format!("sl-ingest-{}", std::process::id()));
    let clip = ClipSpec::standard();
    let file = clip.render(&dir.join("clips")).await.expect("render clip");
    let live = LiveHls::start(&file, &dir.join("hls"), 1).await.expect("live hls");
    let spec = PipelineSpec { url: live.url.clone(), base_ms: 0, ingest: IngestConfig::default() };
    let stats = Arc::new(IngestStats::default());
    let (pipeline, mut rx) = MediaPipeline::start(&spec, stats.clone(), 64).expect("pipeline starts");

    let mut frames = Vec::new();
    let mut cuts = Vec::new();
    let mut audio = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(16);
    while let Ok(Some(item)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        match item {
            MediaItem::Frame(f) => {
                assert_eq!(f.rgb.len(), (f.width * f.height * 3) as usize);
                cuts.extend(f.cuts.iter().map(|c| c.pts_ms));
                frames.push(f.pts_ms);
            }
            MediaItem::Audio(a) => audio.push((a.start_ms, a.end_ms)),
            MediaItem::Error(e) => panic!("pipeline error: {e}"),
            MediaItem::Eos => break,
        }
    }
    let decoded = stats.decoded_frames.load(Ordering::Relaxed);
    eprintln!("frames {:?}\ncuts {cuts:?}\naudio {audio:?}\ndecoded {decoded}", frames);
    drop(pipeline);
    // 2 fps sampling: consecutive sampled frames are 500 ms apart.
    assert!(frames.len() >= 20, "too few sampled frames: {}", frames.len());
    let gaps: Vec<i64> = frames.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| (400..=600).contains(g)), "sampling gaps {gaps:?}");
    // Cuts at 5 s, 9 s, 14 s of the clip, within one decoded frame (33 ms), and nowhere else.
    let first = frames[0];
    let expected: Vec<i64> =
        clip.cuts_ms().into_iter().filter(|c| *c > first && *c < frames[frames.len() - 1]).collect();
    assert!(!expected.is_empty());
    for c in &expected {
        assert!(cuts.iter().any(|x| (x - c).abs() <= 34), "no cut near {c}: {cuts:?}");
    }
    assert_eq!(cuts.len(), expected.len(), "unexpected cuts: {cuts:?} vs {expected:?}");
    // Speech at 0.5 s, 6 s and 11.5 s → audio segments starting near there.
    assert!(audio.len() >= 2, "audio segments {audio:?}");
}
