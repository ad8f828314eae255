//! Evaluation sets for `make quality` and the quality tests: speech in several espeak-ng voices,
//! rates and acoustic conditions, and captions in several styles on many kinds of background, all
//! generated here from the line lists in `quality/` (never fetched, never in a code path). Also the
//! scoring: text normalisation, word and character error counts.

use crate::TestSourceError;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The repository's `quality/` folder (the evaluation sets' sentences and caption lines).
pub fn quality_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../quality")
}

/// The non-empty, non-comment lines of a file in `quality/`.
pub fn quality_lines(name: &str) -> Result<Vec<String>, TestSourceError> {
    let text = std::fs::read_to_string(quality_dir().join(name))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// Photographs and textures from scikit-image's data (extracted by `make setup` next to the
/// fixtures), by file name.
pub fn photo_path(name: &str) -> Option<PathBuf> {
    let fixtures = std::env::var_os("SIGHTLINE_FIXTURES")?;
    let p = Path::new(&fixtures).parent()?.join("images").join(name);
    p.exists().then_some(p)
}

// ---- speech ------------------------------------------------------------------------------------

/// What is heard besides the voice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Acoustic {
    Clean,
    /// Street-like noise (low-passed white noise) at this signal-to-noise ratio in dB.
    Noise(f32),
    /// A music bed (chords with a beat) this many dB below the voice.
    Music(f32),
}

impl Acoustic {
    pub fn label(&self) -> String {
        match self {
            Acoustic::Clean => "clean".into(),
            Acoustic::Noise(db) => format!("noise {db:.0} dB SNR"),
            Acoustic::Music(db) => format!("music bed −{db:.0} dB"),
        }
    }
}

/// One spoken evaluation item: espeak-ng voice (e.g. `en-gb`, `en-us+f3`) and rate (words a
/// minute).
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechCase {
    pub voice: String,
    pub rate: u32,
    pub acoustic: Acoustic,
}

/// `text` spoken by espeak-ng in `voice` at `rate`, as 16 kHz mono float samples with 0.4 s of
/// silence before and after, mixed with the case's background over the whole length.
pub fn speech_case_samples(text: &str, case: &SpeechCase, seed: u64) -> Result<Vec<f32>, TestSourceError> {
    let voice = espeak(text, &case.voice, case.rate)?;
    let pad = vec![0f32; 6400];
    let mut s: Vec<f32> = pad.iter().chain(&voice).chain(&pad).copied().collect();
    let rms = speech_rms(&voice);
    let n = s.len();
    match case.acoustic {
        Acoustic::Clean => {}
        Acoustic::Noise(snr) => mix(&mut s, &street_noise(n, seed), rms, snr),
        Acoustic::Music(db) => mix(&mut s, &music_bed(n, seed), rms, db),
    }
    Ok(s)
}

/// espeak-ng's speech resampled by ffmpeg to 16 kHz mono floats.
pub fn espeak(text: &str, voice: &str, rate: u32) -> Result<Vec<f32>, TestSourceError> {
    let wav = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "-s", &rate.to_string(), "--stdout", text])
        .output()?;
    if !wav.status.success() || wav.stdout.len() < 100 {
        return Err(TestSourceError::Tool {
            tool: "espeak-ng",
            detail: String::from_utf8_lossy(&wav.stderr).trim().to_string(),
        });
    }
    pcm_16k(wav.stdout)
}

/// Any audio file's bytes decoded by ffmpeg to 16 kHz mono floats.
pub(crate) fn pcm_16k(input: Vec<u8>) -> Result<Vec<f32>, TestSourceError> {
    let mut ff = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i", "-", "-ar", "16000", "-ac", "1", "-f", "f32le", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = ff.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let out = ff.wait_with_output()?;
    writer.join().expect("writer thread")?;
    if !out.status.success() {
        return Err(TestSourceError::Tool {
            tool: "ffmpeg",
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// Root mean square over the voiced samples (those above a quiet floor), so pauses do not lower
/// the level the background is set against.
fn speech_rms(s: &[f32]) -> f32 {
    let voiced: Vec<f32> = s.iter().copied().filter(|v| v.abs() > 0.01).collect();
    if voiced.is_empty() {
        return 0.0;
    }
    (voiced.iter().map(|v| v * v).sum::<f32>() / voiced.len() as f32).sqrt()
}

/// Adds `bg` scaled to `db` below a voice of level `rms`.
fn mix(s: &mut [f32], bg: &[f32], rms: f32, db: f32) {
    let bg_rms = (bg.iter().map(|v| v * v).sum::<f32>() / bg.len().max(1) as f32).sqrt().max(1e-9);
    let gain = rms / bg_rms * 10f32.powf(-db / 20.0);
    for (v, b) in s.iter_mut().zip(bg) {
        *v = (*v + b * gain).clamp(-1.0, 1.0);
    }
}

/// A small deterministic generator (xorshift64*), uniform in -1..1.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        v as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// White noise through two one-pole low-passes with a slow level swell: traffic, crowd, wind.
fn street_noise(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed | 1);
    let (mut a, mut b) = (0f32, 0f32);
    (0..n)
        .map(|i| {
            a += 0.25 * (rng.next() - a);
            b += 0.5 * (a - b);
            let swell = 1.0 + 0.3 * (i as f32 / 16000.0 * 0.7).sin();
            (b + 0.15 * rng.next()) * swell
        })
        .collect()
}

/// Chords changing every half second, a bass line and a hi-hat tick on each beat, at 16 kHz.
fn music_bed(n: usize, seed: u64) -> Vec<f32> {
    const CHORDS: [[f32; 3]; 4] = [
        [261.6, 329.6, 392.0], // C
        [220.0, 261.6, 329.6], // Am
        [174.6, 220.0, 261.6], // F
        [196.0, 246.9, 293.7], // G
    ];
    let mut rng = Rng(seed.wrapping_add(0x9e37_79b9) | 1);
    let tau = std::f32::consts::TAU;
    (0..n)
        .map(|i| {
            let t = i as f32 / 16000.0;
            let beat = (t * 2.0) as usize;
            let chord = CHORDS[(beat / 2 + seed as usize) % 4];
            let in_beat = t * 2.0 - beat as f32;
            let env = (-(in_beat) * 3.0).exp() * 0.7 + 0.3;
            let pad: f32 = chord.iter().map(|f| (tau * f * t).sin() + 0.3 * (tau * 2.0 * f * t).sin()).sum();
            let bass = (tau * chord[0] / 2.0 * t).sin() * 0.8;
            let hat = if in_beat < 0.02 { rng.next() * 0.6 } else { 0.0 };
            pad * env * 0.3 + bass * env + hat
        })
        .collect()
}

// ---- captions ----------------------------------------------------------------------------------

/// What is behind a caption.
#[derive(Debug, Clone, PartialEq)]
pub enum Backdrop {
    /// One colour (an ffmpeg colour name).
    Flat(&'static str),
    /// ffmpeg's `gradients` source with this seed.
    Gradient(u32),
    /// A busy lavfi pattern (`testsrc2`, `mandelbrot`, `cellauto`, `life`, `smptehdbars`, …).
    Pattern(&'static str),
    /// A photograph or texture from scikit-image's data (file name).
    Photo(&'static str),
}

impl Backdrop {
    pub fn label(&self) -> String {
        match self {
            Backdrop::Flat(c) => format!("flat {c}"),
            Backdrop::Gradient(s) => format!("gradient {s}"),
            Backdrop::Pattern(p) => format!("pattern {p}"),
            Backdrop::Photo(f) => format!("photo {}", f.split('.').next().unwrap_or(f)),
        }
    }

    /// The backdrop's family, for the report's grouping.
    pub fn family(&self) -> &'static str {
        match self {
            Backdrop::Flat(_) => "flat colour",
            Backdrop::Gradient(_) => "gradient",
            Backdrop::Pattern(_) => "pattern",
            Backdrop::Photo(_) => "photo",
        }
    }

    /// Whether plain text (no box, no outline) is legible on it: flat colours and gradients.
    pub fn calm(&self) -> bool {
        matches!(self, Backdrop::Flat(_) | Backdrop::Gradient(_))
    }
}

/// Every backdrop of the caption set (photos only where setup extracted them).
pub fn backdrops() -> Vec<Backdrop> {
    let mut v = vec![
        Backdrop::Flat("navy"),
        Backdrop::Flat("darkgreen"),
        Backdrop::Flat("silver"),
        Backdrop::Flat("gold"),
        Backdrop::Flat("white"),
        Backdrop::Flat("black"),
        Backdrop::Gradient(3),
        Backdrop::Gradient(11),
        Backdrop::Pattern("testsrc2"),
        Backdrop::Pattern("smptehdbars"),
        Backdrop::Pattern("mandelbrot"),
        Backdrop::Pattern("cellauto"),
        Backdrop::Pattern("life"),
    ];
    for p in ["chelsea.png", "coffee.png", "astronaut.png", "brick.png", "grass.png", "rocket.jpg"] {
        if photo_path(p).is_some() {
            v.push(Backdrop::Photo(p));
        }
    }
    v
}

/// How a caption is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionStyle {
    pub name: &'static str,
    /// A DejaVu font file name (fonts-dejavu-core).
    pub font: &'static str,
    /// Size in pixels on the 640x360 frame.
    pub size: u32,
    /// `box`: white on a translucent black box; `outline`: white with a black border; `plain`:
    /// a colour that contrasts with a calm backdrop, nothing around it.
    pub look: &'static str,
    /// Lower third (`bottom`) or centred.
    pub bottom: bool,
}

/// The caption styles of the set.
pub fn caption_styles() -> Vec<CaptionStyle> {
    let s = |name, font, size, look, bottom| CaptionStyle { name, font, size, look, bottom };
    vec![
        s("sans bold 36, box", "DejaVuSans-Bold.ttf", 36, "box", true),
        s("sans 24, box", "DejaVuSans.ttf", 24, "box", true),
        s("sans bold 30, outline", "DejaVuSans-Bold.ttf", 30, "outline", true),
        s("serif 32, outline", "DejaVuSerif.ttf", 32, "outline", false),
        s("mono bold 28, box", "DejaVuSansMono-Bold.ttf", 28, "box", false),
        s("sans 32, plain", "DejaVuSans.ttf", 32, "plain", true),
        s("sans bold 48, plain", "DejaVuSans-Bold.ttf", 48, "plain", false),
    ]
}

/// Every (backdrop, style, caption) of the caption set, plain styles only on calm backdrops;
/// each pair gets three captions in turn, so every line appears on several backdrops. `every`
/// keeps each n-th case (1: all).
pub fn caption_cases(captions: &[String], every: usize) -> Vec<(Backdrop, CaptionStyle, String)> {
    let mut cases = Vec::new();
    let mut k = 0usize;
    for b in backdrops() {
        for style in caption_styles() {
            if style.look == "plain" && !b.calm() {
                continue;
            }
            for _ in 0..3 {
                cases.push((b.clone(), style.clone(), captions[k % captions.len()].clone()));
                k += 1;
            }
        }
    }
    cases.into_iter().enumerate().filter(|(i, _)| i % every.max(1) == 0).map(|(_, c)| c).collect()
}

/// The text colour of a plain caption on a calm backdrop.
fn plain_colour(b: &Backdrop) -> &'static str {
    match b {
        Backdrop::Flat("silver" | "gold" | "white") => "black",
        Backdrop::Gradient(_) => "white",
        _ => "white",
    }
}

/// One 640x360 frame of `backdrop` with `lines` (one or two) drawn in `style`, scaled to
/// `width`x`height` as ingest samples it; packed RGB.
pub fn caption_case_frame(
    lines: &[&str],
    backdrop: &Backdrop,
    style: &CaptionStyle,
    width: usize,
    height: usize,
) -> Result<Vec<u8>, TestSourceError> {
    let dir = std::env::temp_dir().join("sightline-captions");
    std::fs::create_dir_all(&dir)?;
    let textfile = dir.join(format!("{}-{}.txt", std::process::id(), crate::fxhash(&lines.join("\n"))));
    std::fs::write(&textfile, lines.join("\n"))?;
    let font = format!("/usr/share/fonts/truetype/dejavu/{}", style.font);
    let look = match style.look {
        "box" => "fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=8".to_string(),
        "outline" => "fontcolor=white:borderw=2:bordercolor=black".to_string(),
        _ => format!("fontcolor={}", plain_colour(backdrop)),
    };
    let y = if style.bottom { "h-th-40" } else { "(h-th)/2" };
    // Smaller than the style's size where the longest line would not fit in 600 of the 640
    // pixels (DejaVu capitals are about 0.72 em wide, bold monospace 0.6 em).
    let longest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(1).max(1) as f32;
    let size = style.size.min((600.0 / (0.72 * longest)) as u32);
    let draw = format!(
        "drawtext=fontfile={font}:textfile={}:fontsize={size}:line_spacing=10:{look}:x=(w-tw)/2:y={y}",
        textfile.display(),
    );
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-v", "error"]);
    match backdrop {
        Backdrop::Flat(c) => cmd.args(["-f", "lavfi", "-i", &format!("color=c={c}:s=640x360")]),
        Backdrop::Gradient(seed) => {
            cmd.args(["-f", "lavfi", "-i", &format!("gradients=s=640x360:seed={seed}:speed=0.00001")])
        }
        Backdrop::Pattern(p) => cmd.args(["-f", "lavfi", "-i", &format!("{p}=s=640x360")]),
        Backdrop::Photo(f) => {
            let p = photo_path(f).ok_or_else(|| TestSourceError::Tool {
                tool: "ffmpeg",
                detail: format!("{f} is not in the cache's images (make setup extracts it)"),
            })?;
            cmd.arg("-i").arg(p)
        }
    };
    let vf = format!("scale=640:360,setsar=1,{draw},scale={width}:{height}");
    let out =
        cmd.args(["-vf", &vf, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]).output()?;
    let _ = std::fs::remove_file(&textfile);
    if !out.status.success() || out.stdout.len() != width * height * 3 {
        return Err(TestSourceError::Tool {
            tool: "ffmpeg",
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

// ---- transitions ------------------------------------------------------------------------------

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

// ---- scoring -----------------------------------------------------------------------------------

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] =
    ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];

/// A whole number in English words, without "and" ("two thousand twenty six").
pub fn number_words(n: u64) -> String {
    fn below_1000(n: u64, out: &mut Vec<String>) {
        if n >= 100 {
            out.push(ONES[(n / 100) as usize].into());
            out.push("hundred".into());
        }
        let r = n % 100;
        if r >= 20 {
            out.push(TENS[(r / 10) as usize].into());
            if r % 10 != 0 {
                out.push(ONES[(r % 10) as usize].into());
            }
        } else if r > 0 || n == 0 {
            out.push(ONES[r as usize].into());
        }
    }
    if n == 0 {
        return "zero".into();
    }
    let mut out = Vec::new();
    let mut rest = n;
    for (scale, name) in [
        (1_000_000_000_000u64, "trillion"),
        (1_000_000_000, "billion"),
        (1_000_000, "million"),
        (1000, "thousand"),
    ] {
        if rest >= scale {
            below_1000(rest / scale % 1000, &mut out);
            out.push(name.into());
            rest %= scale;
        }
    }
    if rest > 0 {
        below_1000(rest, &mut out);
    }
    out.join(" ")
}

/// Words for scoring a transcript: lower case, punctuation gone, hyphenated words split, digits
/// spelt out ("2,431" → "two thousand four hundred thirty one", "1.5" → "one point five",
/// "%" → "percent"), and "and" inside a spelt number dropped. The transcript itself is never
/// normalised; this is evaluation code.
pub fn normalize_words(text: &str) -> Vec<String> {
    let mut spaced = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let digit_around =
            |j: Option<usize>| j.and_then(|j| chars.get(j)).is_some_and(|c| c.is_ascii_digit());
        match c {
            '%' => spaced.push_str(" percent "),
            '&' => spaced.push_str(" and "),
            ',' if digit_around(i.checked_sub(1)) && digit_around(Some(i + 1)) => {}
            '.' if digit_around(i.checked_sub(1)) && digit_around(Some(i + 1)) => spaced.push_str(" point "),
            '\'' if i > 0
                && chars[i - 1].is_alphanumeric()
                && chars.get(i + 1).is_some_and(|c| c.is_alphabetic()) =>
            {
                spaced.push(c)
            }
            c if c.is_alphanumeric() => spaced.extend(c.to_lowercase()),
            _ => spaced.push(' '),
        }
        // Split "21st"-like joins of digits and letters apart.
        if c.is_ascii_digit() && chars.get(i + 1).is_some_and(|n| n.is_alphabetic()) {
            spaced.push(' ');
        }
    }
    let mut words: Vec<String> = Vec::new();
    for w in spaced.split_whitespace() {
        // Titles a transcript may abbreviate ("Dr. Patel").
        let w = match w {
            "dr" => "doctor",
            "mr" => "mister",
            "mrs" => "missus",
            w => w,
        };
        if w.chars().all(|c| c.is_ascii_digit()) {
            match w.parse::<u64>() {
                Ok(n) if !(w.len() > 1 && w.starts_with('0')) => {
                    words.extend(number_words(n).split(' ').map(str::to_string))
                }
                _ => words.extend(w.chars().map(|d| ONES[d as usize - '0' as usize].to_string())),
            }
        } else {
            words.push(w.to_string());
        }
    }
    let numeric = |w: &str| {
        ONES.contains(&w)
            || TENS.contains(&w) && !w.is_empty()
            || ["hundred", "thousand", "million"].contains(&w)
    };
    let keep: Vec<bool> = (0..words.len())
        .map(|i| {
            !(words[i] == "and"
                && i > 0
                && numeric(&words[i - 1])
                && words.get(i + 1).is_some_and(|w| numeric(w)))
        })
        .collect();
    words.into_iter().zip(keep).filter_map(|(w, k)| k.then_some(w)).collect()
}

/// Word errors of `hypothesis` against `reference` (substitutions + insertions + deletions) and
/// the reference's word count, after [`normalize_words`] and with compounds settled: two
/// adjacent words on one side that make a single word of the other ("light house" /
/// "lighthouse") count as that word.
pub fn scored_word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r = normalize_words(reference);
    let h = normalize_words(hypothesis);
    let h = join_compounds(h, &r);
    let r = join_compounds(r, &h);
    (edit_distance(&r, &h), r.len())
}

fn join_compounds(words: Vec<String>, other: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        if let Some(next) = words.get(i + 1) {
            let joined = format!("{}{next}", words[i]);
            if other.contains(&joined) {
                out.push(joined);
                i += 2;
                continue;
            }
        }
        out.push(words[i].clone());
        i += 1;
    }
    out
}

/// Levenshtein distance between two sequences.
pub fn edit_distance<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let sub = prev + (x != y) as usize;
            prev = row[j + 1];
            row[j + 1] = sub.min(row[j] + 1).min(prev + 1);
        }
    }
    row[b.len()]
}

/// Character errors of what was read against what was drawn, and the drawn text's length
/// (characters, spaces included): each drawn line against the read line closest to it (text the
/// backdrop itself shows, such as a test pattern's clock, is not held against the reader).
pub fn char_errors(drawn: &[&str], read: &[&str]) -> (usize, usize) {
    let mut errors = 0;
    let mut total = 0;
    for line in drawn {
        let d: Vec<char> = line.chars().collect();
        total += d.len();
        errors += read
            .iter()
            .map(|r| edit_distance(&d, &r.chars().collect::<Vec<_>>()))
            .min()
            .unwrap_or(d.len())
            .min(d.len());
    }
    (errors, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_spelt_out_for_scoring() {
        assert_eq!(number_words(2026), "two thousand twenty six");
        assert_eq!(number_words(415), "four hundred fifteen");
        assert_eq!(number_words(90_000), "ninety thousand");
        assert_eq!(
            normalize_words("Gold up 1.2%, at 2,431 USD!"),
            [
                "gold", "up", "one", "point", "two", "percent", "at", "two", "thousand", "four", "hundred",
                "thirty", "one", "usd"
            ]
        );
        assert_eq!(
            normalize_words("four hundred and twenty, rock-and-roll"),
            ["four", "hundred", "twenty", "rock", "and", "roll"]
        );
        assert_eq!(normalize_words("The children's 6 ships"), ["the", "children's", "six", "ships"]);
    }

    #[test]
    fn word_errors_settle_compounds_and_numbers() {
        assert_eq!(scored_word_errors("the lighthouse keeper", "The light house keeper."), (0, 3));
        assert_eq!(scored_word_errors("about four hundred people", "About 400 people"), (0, 4));
        assert_eq!(scored_word_errors("rain is expected", "rain in ecstatic"), (2, 3));
        assert_eq!(scored_word_errors("one two", ""), (2, 2));
        assert_eq!(scored_word_errors("doctor patel", "Dr. Patel"), (0, 2));
    }

    #[test]
    fn character_errors_count_spaces() {
        assert_eq!(char_errors(&["AT NINE"], &["ATNINE"]), (1, 7));
        assert_eq!(char_errors(&["LIVE", "CITY HALL"], &["12:00:01", "CITY HALL", "LIVE"]), (0, 13));
        assert_eq!(char_errors(&["RISE"], &[]), (4, 4));
        assert_eq!(char_errors(&["New mayor sworn in"], &["New mayor sworn", "in"]), (3, 18));
    }

    #[test]
    fn changes_match_once_within_tolerance() {
        assert_eq!(match_changes(&[1000, 1040, 5000], &[1020, 3000], 50), (1, 2, 1));
        assert_eq!(match_changes(&[], &[10], 50), (0, 0, 1));
    }

    #[test]
    fn backgrounds_are_mixed_at_the_asked_level() {
        let voice: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let rms = speech_rms(&voice);
        let mut s = voice.clone();
        let n = s.len();
        mix(&mut s, &street_noise(n, 7), rms, 20.0);
        let noise: Vec<f32> = s.iter().zip(&voice).map(|(a, b)| a - b).collect();
        let n_rms = (noise.iter().map(|v| v * v).sum::<f32>() / noise.len() as f32).sqrt();
        let snr = 20.0 * (rms / n_rms).log10();
        assert!((snr - 20.0).abs() < 0.5, "SNR {snr}");
        assert_ne!(music_bed(1000, 1), music_bed(1000, 2));
    }
}
