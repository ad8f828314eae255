//! Clips of scenes joined by ffmpeg `xfade` transitions and hard cuts, with their true changes.

use crate::TestSourceError;

/// Every transition of ffmpeg 5.1's `xfade` filter (all its families: fades, wipes, slides,
/// smooth wipes, circles and rectangles, opens and closes, diagonals, slices, blurs, squeezes,
/// zoom, pixelize, distance).
pub const XFADE_TRANSITIONS: [&str; 46] = [
    "fade",
    "fadeblack",
    "fadewhite",
    "fadegrays",
    "fadefast",
    "fadeslow",
    "dissolve",
    "distance",
    "pixelize",
    "hblur",
    "wipeleft",
    "wiperight",
    "wipeup",
    "wipedown",
    "wipetl",
    "wipetr",
    "wipebl",
    "wipebr",
    "slideleft",
    "slideright",
    "slideup",
    "slidedown",
    "smoothleft",
    "smoothright",
    "smoothup",
    "smoothdown",
    "circlecrop",
    "rectcrop",
    "circleopen",
    "circleclose",
    "radial",
    "vertopen",
    "vertclose",
    "horzopen",
    "horzclose",
    "diagtl",
    "diagtr",
    "diagbl",
    "diagbr",
    "hlslice",
    "hrslice",
    "vuslice",
    "vdslice",
    "squeezeh",
    "squeezev",
    "zoomin",
];

/// Scenes of the transition clips, each unlike its neighbours: moving patterns, still ones and
/// flat colours.
pub const SCENES: [&str; 8] = [
    "testsrc2=s=320x180:r=30",
    "smptebars=s=320x180:r=30",
    "mandelbrot=s=320x180:r=30",
    "color=c=navy:s=320x180:r=30",
    "rgbtestsrc=s=320x180:r=30",
    "cellauto=s=320x180:r=30:rule=110",
    "gradients=s=320x180:r=30:seed=5:speed=0.02",
    "color=c=darkgreen:s=320x180:r=30",
];

/// A known scene change of a generated clip: a hard cut (`transition` None, start = end) or an
/// `xfade` transition from `start_ms` to `end_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct TruthChange {
    pub transition: Option<&'static str>,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl TruthChange {
    pub fn mid_ms(&self) -> i64 {
        (self.start_ms + self.end_ms) / 2
    }
}

/// A clip of 3 s scenes joined by `changes` (an `xfade` transition name, or None for a hard
/// cut) of `duration_ms` each, decoded at 30 fps to `width`x`height` RGB frames as the cut
/// scorer sees them; with the true changes.
pub fn transition_clip(
    changes: &[Option<&'static str>],
    duration_ms: i64,
    width: usize,
    height: usize,
) -> Result<(Vec<Vec<u8>>, Vec<TruthChange>), TestSourceError> {
    scenes_clip(&SCENES, 3000, changes, duration_ms, width, height)
}

/// [`transition_clip`] over `scenes` (lavfi sources at 320x180 and 30 fps, used in turn) of
/// `scene_ms` each.
pub fn scenes_clip(
    scenes: &[&str],
    scene_ms: i64,
    changes: &[Option<&'static str>],
    duration_ms: i64,
    width: usize,
    height: usize,
) -> Result<(Vec<Vec<u8>>, Vec<TruthChange>), TestSourceError> {
    let mut graph = String::new();
    for i in 0..=changes.len() {
        let _ = std::fmt::Write::write_fmt(
            &mut graph,
            format_args!(
                "{},trim=duration={},setpts=PTS-STARTPTS,settb=1/30,format=yuv420p[s{i}];",
                scenes[i % scenes.len()],
                scene_ms as f64 / 1000.0
            ),
        );
    }
    let (mut length, mut truth) = (scene_ms, Vec::new());
    let mut last = "s0".to_string();
    for (k, change) in changes.iter().enumerate() {
        let next = format!("s{}", k + 1);
        let out = format!("x{k}");
        match change {
            Some(t) => {
                let offset = length - duration_ms;
                let _ = std::fmt::Write::write_fmt(
                    &mut graph,
                    format_args!(
                        "[{last}][{next}]xfade=transition={t}:duration={}:offset={}[{out}];",
                        duration_ms as f64 / 1000.0,
                        offset as f64 / 1000.0
                    ),
                );
                truth.push(TruthChange { transition: Some(t), start_ms: offset, end_ms: length });
                length += scene_ms - duration_ms;
            }
            None => {
                let _ = std::fmt::Write::write_fmt(
                    &mut graph,
                    format_args!("[{last}][{next}]concat=n=2:v=1:a=0,settb=1/30[{out}];"),
                );
                truth.push(TruthChange { transition: None, start_ms: length, end_ms: length });
                length += scene_ms;
            }
        }
        last = out;
    }
    let _ = std::fmt::Write::write_fmt(&mut graph, format_args!("[{last}]scale={width}:{height}[out]"));
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-filter_complex",
            &graph,
            "-map",
            "[out]",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()?;
    if !out.status.success() {
        return Err(TestSourceError::Tool {
            tool: "ffmpeg",
            detail: String::from_utf8_lossy(&out.stderr).chars().take(2000).collect(),
        });
    }
    let frames = out.stdout.chunks_exact(width * height * 3).map(<[u8]>::to_vec).collect();
    Ok((frames, truth))
}

/// Scene changes found against the truth: (true positives, false positives, false negatives),
/// a found change matching at most one true change within `tolerance_ms` of its midpoint.
pub fn match_changes(found_mid_ms: &[i64], truth_mid_ms: &[i64], tolerance_ms: i64) -> (usize, usize, usize) {
    let mut used = vec![false; found_mid_ms.len()];
    let mut tp = 0;
    for &t in truth_mid_ms {
        let best = found_mid_ms
            .iter()
            .enumerate()
            .filter(|(i, f)| !used[*i] && (**f - t).abs() <= tolerance_ms)
            .min_by_key(|(_, f)| (**f - t).abs());
        if let Some((i, _)) = best {
            used[i] = true;
            tp += 1;
        }
    }
    (tp, found_mid_ms.len() - tp, truth_mid_ms.len() - tp)
}
