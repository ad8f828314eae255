//! The test clip: scenes with hard cuts at known times, burned-in captions, speech (`speech.rs`).

use crate::speech::wav_16k;
use crate::{Speech, TestSourceError, fxhash, run};
use std::path::{Path, PathBuf};

/// The burned-in caption style of the test clips: bold white text on a translucent black box,
/// centred in the lower third. (No `'`, `:` or `\\` in `text`.)
pub fn caption_filter(text: &str, font_size: u32) -> String {
    format!(
        "drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf:text='{text}':fontsize={font_size}:\
         fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=8:x=(w-tw)/2:y=h-th-40"
    )
}

/// One 640x360 frame of a flat `background` colour with `text` as a clip caption, scaled to
/// `width`x`height` as ingest samples it; packed RGB.
pub fn caption_frame(
    text: &str,
    background: &str,
    width: usize,
    height: usize,
) -> Result<Vec<u8>, TestSourceError> {
    let vf = format!("{},scale={width}:{height}", caption_filter(text, 36));
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", &format!("color=c={background}:s=640x360")])
        .args(["-vf", &vf, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()?;
    if !out.status.success() || out.stdout.len() != width * height * 3 {
        return Err(TestSourceError::Tool {
            tool: "ffmpeg",
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// One scene of the clip: a lavfi source, its duration and an optional burned-in caption.
#[derive(Debug, Clone)]
pub struct Scene {
    pub source: &'static str,
    pub seconds: u32,
    pub caption: Option<&'static str>,
    /// How the previous scene gives way to this one: an ffmpeg `xfade` transition and its length
    /// in milliseconds (overlapping the two scenes), or None for a hard cut.
    pub transition: Option<(&'static str, u32)>,
}

#[derive(Debug, Clone)]
pub struct ClipSpec {
    pub scenes: Vec<Scene>,
    pub speech: Vec<Speech>,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// A music bed under the whole clip (chords with a beat), its peak amplitude (0..1).
    pub music_bed: Option<f32>,
}

impl ClipSpec {
    /// The standard clip: four scenes (moving test pattern, captioned colour, bars, captioned
    /// colour), 18 s, with three sentences that never straddle the loop point.
    pub fn standard() -> Self {
        Self {
            scenes: vec![
                Scene { source: "testsrc2", seconds: 5, caption: None, transition: None },
                Scene {
                    source: "color=c=navy",
                    seconds: 4,
                    caption: Some("BREAKING NEWS AT NOON"),
                    transition: None,
                },
                Scene { source: "smptebars", seconds: 5, caption: None, transition: None },
                Scene {
                    source: "color=c=darkgreen",
                    seconds: 4,
                    caption: Some("WEATHER UPDATE TODAY"),
                    transition: None,
                },
            ],
            speech: vec![
                Speech { at_ms: 500, text: "the quick brown fox jumps over the lazy dog", voice: None },
                Speech { at_ms: 6000, text: "live video becomes searchable while it plays", voice: None },
                Speech { at_ms: 11500, text: "we report the news from the city", voice: None },
            ],
            width: 640,
            height: 360,
            fps: 30,
            music_bed: None,
        }
    }

    /// A second clip, different in every scene and sentence from [`ClipSpec::standard`] (for
    /// tests that need two unrelated streams), with cuts at the same times.
    pub fn alternate() -> Self {
        Self {
            scenes: vec![
                Scene { source: "yuvtestsrc", seconds: 5, caption: None, transition: None },
                Scene {
                    source: "color=c=maroon",
                    seconds: 4,
                    caption: Some("MARKETS CLOSE HIGHER"),
                    transition: None,
                },
                Scene { source: "rgbtestsrc", seconds: 5, caption: None, transition: None },
                Scene {
                    source: "color=c=orange",
                    seconds: 4,
                    caption: Some("SPORTS RESULTS TONIGHT"),
                    transition: None,
                },
            ],
            speech: vec![
                Speech { at_ms: 500, text: "the orchestra played a quiet song", voice: None },
                Speech { at_ms: 6000, text: "farmers expect rain later this week", voice: None },
                Speech { at_ms: 11500, text: "the museum opens a new exhibit", voice: None },
            ],
            width: 640,
            height: 360,
            fps: 30,
            music_bed: None,
        }
    }

    /// A talk show: two long captioned shots (host, guest) and speech almost all the time (five
    /// sentences back to back in 18 s, none straddling the loop point), the load of a channel
    /// where someone is always talking.
    pub fn talk_show() -> Self {
        Self {
            scenes: vec![
                Scene {
                    source: "color=c=darkslateblue",
                    seconds: 9,
                    caption: Some("THE MORNING SHOW LIVE"),
                    transition: None,
                },
                Scene {
                    source: "color=c=midnightblue",
                    seconds: 9,
                    caption: Some("GUEST - THE CITY MAYOR"),
                    transition: None,
                },
            ],
            speech: vec![
                Speech { at_ms: 300, text: "good morning and welcome back to the show", voice: None },
                Speech { at_ms: 3800, text: "today we talk about the new city budget", voice: None },
                Speech { at_ms: 7300, text: "the mayor joins us here in the studio", voice: None },
                Speech { at_ms: 10800, text: "thank you for having me this morning", voice: None },
                Speech { at_ms: 14300, text: "we will build two new schools next year", voice: None },
            ],
            width: 640,
            height: 360,
            fps: 30,
            music_bed: None,
        }
    }

    /// The standard clip with its three sentences in Pico's French, German and Spanish voices
    /// (espeak-ng's own French and German are the voices Whisper base mishears most: see the
    /// README's quality table): the news load of a channel in other languages than English.
    pub fn standard_multilingual() -> Self {
        Self::standard().said_as(&[
            ("pico-fr-FR", "les nouvelles de la ville en direct"),
            ("pico-de-DE", "das Wetter bleibt morgen kalt und windig"),
            ("pico-es-ES", "el mercado cerró con pequeñas ganancias"),
        ])
    }

    /// The talk show in four languages (Pico's French, German, Spanish and English voices, a
    /// sentence each in turn): the load of a multilingual channel, where Whisper identifies each
    /// utterance's language and transcribes it.
    pub fn talk_show_multilingual() -> Self {
        Self::talk_show().said_as(&[
            ("pico-fr-FR", "bonjour et bienvenue dans notre émission du matin"),
            ("pico-de-DE", "heute sprechen wir über den neuen Haushalt"),
            ("pico-es-ES", "el alcalde está aquí con nosotros en el estudio"),
            ("pico-en-US", "thank you for having me this morning"),
            ("pico-fr-FR", "nous allons construire deux nouvelles écoles"),
        ])
    }

    /// The clip with its sentences replaced, in order, by these (voice, text), each starting
    /// where the one it replaces did.
    fn said_as(mut self, lines: &[(&'static str, &'static str)]) -> Self {
        assert_eq!(lines.len(), self.speech.len(), "one line for each of the clip's sentences");
        for (sp, &(voice, text)) in self.speech.iter_mut().zip(lines) {
            (sp.voice, sp.text) = (Some(voice), text);
        }
        self
    }

    /// Gradual transitions between textured scenes: a 1 s dissolve, a 1 s fade through black, a
    /// 0.5 s wipe and a 0.5 s dissolve, with hard cuts between them (and at the loop point).
    pub fn transitions() -> Self {
        let scene = |source, transition| Scene { source, seconds: 4, caption: None, transition };
        Self {
            scenes: vec![
                scene("testsrc2", None),
                scene("smptebars", Some(("dissolve", 1000))),
                scene("rgbtestsrc", None),
                scene("gradients=speed=0.02", Some(("fadeblack", 1000))),
                scene("yuvtestsrc", Some(("wipeleft", 500))),
                scene("testsrc", None),
                scene("smptehdbars", Some(("fade", 500))),
            ],
            speech: vec![Speech {
                at_ms: 500,
                text: "the quick brown fox jumps over the lazy dog",
                voice: None,
            }],
            width: 640,
            height: 360,
            fps: 30,
            music_bed: None,
        }
    }

    /// The same clip over a music bed: four chords changing every second with a beat every half
    /// second, at `peak` amplitude (0.12: about −32 dBFS, some 12 dB under the clips' espeak-ng
    /// voice, and above the audio gate's level all the time).
    pub fn with_music_bed(mut self, peak: f32) -> Self {
        self.music_bed = Some(peak);
        self
    }

    /// The same clip at another frame size (e.g. 1280x720 or 1920x1080).
    pub fn at_size(mut self, width: u32, height: u32) -> Self {
        (self.width, self.height) = (width, height);
        self
    }

    pub fn duration_ms(&self) -> i64 {
        self.scenes.iter().map(|s| s.seconds as i64 * 1000 - s.transition.map_or(0, |t| t.1 as i64)).sum()
    }

    /// Scene change times within one pass of the clip (the loop point is a cut too when it
    /// loops): hard cuts, and the midpoints of transitions.
    pub fn cuts_ms(&self) -> Vec<i64> {
        self.changes_ms().into_iter().map(|(start, end)| (start + end) / 2).collect()
    }

    /// Each scene change within one pass as (start, end): equal for a hard cut.
    pub fn changes_ms(&self) -> Vec<(i64, i64)> {
        let mut t = self.scenes[0].seconds as i64 * 1000;
        let mut changes = Vec::new();
        for s in &self.scenes[1..] {
            let overlap = s.transition.map_or(0, |tr| tr.1 as i64);
            changes.push((t - overlap, t));
            t += s.seconds as i64 * 1000 - overlap;
        }
        changes
    }

    /// Cut times over `loops` passes of the clip.
    pub fn cuts_over(&self, loops: u32) -> Vec<i64> {
        let d = self.duration_ms();
        (0..loops as i64)
            .flat_map(|l| {
                let first = if l > 0 { vec![l * d] } else { vec![] };
                first.into_iter().chain(self.cuts_ms().into_iter().map(move |c| l * d + c))
            })
            .collect()
    }

    /// The ffmpeg filter graph: captioned scenes concatenated, speech delayed to its time and mixed.
    fn filter_graph(&self, h: u32, total_s: f64) -> String {
        let mut graph = String::new();
        let n = self.scenes.len();
        for (i, s) in self.scenes.iter().enumerate() {
            match s.caption {
                Some(text) => graph.push_str(&format!(
                    "[{i}:v]{},format=yuv420p,settb=1/{}[v{i}];",
                    caption_filter(text, h / 10),
                    self.fps
                )),
                None => graph.push_str(&format!("[{i}:v]format=yuv420p,settb=1/{}[v{i}];", self.fps)),
            }
        }
        if self.scenes.iter().all(|s| s.transition.is_none()) {
            for i in 0..n {
                graph.push_str(&format!("[v{i}]"));
            }
            graph.push_str(&format!("concat=n={n}:v=1:a=0[v];"));
        } else {
            // Pairwise: an xfade where a scene has a transition, a concat (back on the frame
            // timebase, which xfade needs) where it has none.
            let mut last = "v0".to_string();
            let mut length = self.scenes[0].seconds as f64;
            for (i, s) in self.scenes.iter().enumerate().skip(1) {
                let out = if i + 1 == n { "v".to_string() } else { format!("c{i}") };
                match s.transition {
                    Some((name, ms)) => {
                        let d = ms as f64 / 1000.0;
                        graph.push_str(&format!(
                            "[{last}][v{i}]xfade=transition={name}:duration={d}:offset={}[{out}];",
                            length - d
                        ));
                        length += s.seconds as f64 - d;
                    }
                    None => {
                        graph.push_str(&format!(
                            "[{last}][v{i}]concat=n=2:v=1:a=0,settb=1/{}[{out}];",
                            self.fps
                        ));
                        length += s.seconds as f64;
                    }
                }
                last = out;
            }
        }
        for (i, sp) in self.speech.iter().enumerate() {
            graph.push_str(&format!("[{}:a]aresample=16000,adelay={}:all=1[a{i}];", n + i, sp.at_ms));
        }
        for i in 0..self.speech.len() {
            graph.push_str(&format!("[a{i}]"));
        }
        let mut inputs = self.speech.len();
        if self.music_bed.is_some() {
            graph.push_str(&format!("[{}:a]", n + self.speech.len()));
            inputs += 1;
        }
        graph.push_str(&format!(
            "amix=inputs={inputs}:normalize=0:duration=longest,apad=whole_dur={total_s},\
             atrim=0:{total_s},aresample=44100,asetnsamples=n=1024[a]"
        ));
        graph
    }

    /// Renders the clip to `dir/clip.mp4` (cached: an existing file with the same spec is kept).
    pub async fn render(&self, dir: &Path) -> Result<PathBuf, TestSourceError> {
        tokio::fs::create_dir_all(dir).await?;
        let key = format!("{:x}", fxhash(&format!("{self:?}")));
        let out = dir.join(format!("clip-{key}.mp4"));
        if tokio::fs::metadata(&out).await.is_ok() {
            return Ok(out);
        }
        let mut args: Vec<String> = vec!["-y".into(), "-loglevel".into(), "error".into()];
        let (w, h, fps) = (self.width, self.height, self.fps);
        for s in &self.scenes {
            args.extend(["-f".into(), "lavfi".into(), "-i".into()]);
            let sep = if s.source.contains('=') { ':' } else { '=' };
            args.push(format!("{}{sep}s={w}x{h}:r={fps}:d={}", s.source, s.seconds));
        }
        for (i, sp) in self.speech.iter().enumerate() {
            let wav = dir.join(format!("speech-{key}-{i}.wav"));
            match sp.voice {
                // Another voice (espeak-ng's, MBROLA's or Pico's: `quality::speak`) at 16 kHz.
                Some(_) => tokio::fs::write(&wav, wav_16k(&sp.samples()?)).await?,
                None => run("espeak-ng", &["-s", "150", "-w", wav.to_str().unwrap(), sp.text]).await?,
            }
            args.extend(["-i".into(), wav.to_string_lossy().into_owned()]);
        }
        let total_s = self.duration_ms() as f64 / 1000.0;
        if let Some(peak) = self.music_bed {
            // C, Am, F, G a second each; each chord's level falls from its beat (twice a second).
            let chord = |f: [f32; 3]| f.map(|f| format!("sin(2*PI*{f}*t)")).join("+");
            let (c, am, f, g) = (
                chord([261.6, 329.6, 392.0]),
                chord([220.0, 261.6, 329.6]),
                chord([174.6, 220.0, 261.6]),
                chord([196.0, 246.9, 293.7]),
            );
            let expr = format!(
                "{peak}/3*(0.3+0.7*exp(-6*mod(t,0.5)))*if(lt(mod(t,4),1),{c},if(lt(mod(t,4),2),{am},if(lt(mod(t,4),3),{f},{g})))"
            );
            args.extend(["-f".into(), "lavfi".into(), "-i".into()]);
            args.push(format!("aevalsrc='{expr}':s=16000:d={total_s}"));
        }
        let graph = self.filter_graph(h, total_s);
        args.extend(["-filter_complex".into(), graph]);
        args.extend(
            [
                "-map",
                "[v]",
                "-map",
                "[a]",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-g",
                &fps.to_string(),
                "-keyint_min",
                &fps.to_string(),
                "-sc_threshold",
                "0",
                "-b:v",
                "800k",
                "-c:a",
                "aac",
                "-b:a",
                "64k",
                "-ac",
                "1",
                "-t",
                &total_s.to_string(),
            ]
            .map(String::from),
        );
        let tmp = dir.join(format!("clip-{key}.tmp.mp4"));
        args.push(tmp.to_string_lossy().into_owned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run("ffmpeg", &refs).await?;
        tokio::fs::rename(&tmp, &out).await?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sentence_ends_before_the_next_and_before_the_loop_point() {
        for spec in [
            ClipSpec::standard(),
            ClipSpec::standard_multilingual(),
            ClipSpec::alternate(),
            ClipSpec::talk_show(),
            ClipSpec::talk_show_multilingual(),
        ] {
            let ends: Vec<i64> =
                spec.speech.iter().skip(1).map(|s| s.at_ms).chain([spec.duration_ms()]).collect();
            for (sp, end) in spec.speech.iter().zip(ends) {
                let ms = sp.samples().unwrap().len() as i64 / 16;
                assert!(ms > 1500, "{:?} spoken in {ms} ms: not the voice asked for?", sp.text);
                assert!(
                    sp.at_ms + ms < end,
                    "{:?} ({:?}) runs {ms} ms from {}, past {end}",
                    sp.text,
                    sp.voice,
                    sp.at_ms
                );
            }
        }
    }

    #[test]
    fn cut_schedule_follows_scenes() {
        let c = ClipSpec::standard();
        assert_eq!(c.duration_ms(), 18_000);
        assert_eq!(c.cuts_ms(), vec![5000, 9000, 14000]);
        assert_eq!(c.cuts_over(2), vec![5000, 9000, 14000, 18000, 23000, 27000, 32000]);
    }
}
