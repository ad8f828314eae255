//! TransNetV2 on the project's generated clips, whose cuts are known: every decoded frame (30 fps)
//! scaled to 48x27 by ffmpeg, scanned in overlapping windows as the shots pool reads them, must
//! give a shot start at each scene change (±1 frame) and nowhere else.

use sightline_models::{Runtime, SHOT_FRAME_BYTES, ShotDetector, shot_starts};
use sightline_settings::Config;
use sightline_settings::Task;
use sightline_testkit::ClipSpec;

fn tiny_frames(clip: &std::path::Path) -> Vec<u8> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(clip)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "48x27", "-"])
        .output()
        .expect("ffmpeg runs (make setup installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn transnetv2_finds_every_cut_of_the_generated_clips_and_no_other() {
    let cfg = Config::load(None).unwrap();
    let m = &cfg.models;
    let rt = Runtime::load(&m.onnxruntime_lib()).unwrap();
    let mut det = ShotDetector::load(&rt, &m.task_files(Task::Shots).unwrap()[0], 2).unwrap();
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let dir = std::env::temp_dir().join("sightline-test-clips");
    for spec in [ClipSpec::standard(), ClipSpec::alternate()] {
        let clip = tokio.block_on(spec.render(&dir)).expect("the clip renders");
        let frames = tiny_frames(&clip);
        let n = frames.len() / SHOT_FRAME_BYTES;
        let probs = det.scan(&frames, 4).unwrap();
        assert_eq!(probs.len(), n);
        let found: Vec<(usize, f32)> = shot_starts(&probs, 0.5);
        // Scene changes, in frames: where each scene after the first begins.
        let mut at = 0;
        let want: Vec<usize> = spec.scenes[..spec.scenes.len() - 1]
            .iter()
            .map(|s| {
                at += s.seconds as usize * spec.fps as usize;
                at
            })
            .collect();
        eprintln!("{n} frames: shots start at {found:?}; scenes change at {want:?}");
        assert_eq!(found.len(), want.len(), "found {found:?}, scenes change at {want:?}");
        for ((frame, p), w) in found.iter().zip(&want) {
            assert!(frame.abs_diff(*w) <= 1, "a shot starts at frame {frame}, the scene changes at {w}");
            assert!(*p > 0.8, "cut at frame {frame} has probability {p}");
        }
    }
}
