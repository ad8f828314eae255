//! Captions drawn by ffmpeg in several styles on many backdrops.

use super::photo_path;
use crate::TestSourceError;

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
