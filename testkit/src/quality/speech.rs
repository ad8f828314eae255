//! Spoken evaluation items: espeak-ng voices and rates over a background.

use crate::TestSourceError;
use std::process::Stdio;

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

/// One spoken evaluation item: a voice as [`speak`] names them (e.g. `en-gb`, `en-us+f3`,
/// `mb-de2`, `pico-es-ES`) and rate (words a minute).
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechCase {
    pub voice: String,
    pub rate: u32,
    pub acoustic: Acoustic,
}

/// `text` spoken in the case's voice at its rate, as 16 kHz mono float samples with 0.4 s of
/// silence before and after, mixed with the case's background over the whole length.
pub fn speech_case_samples(text: &str, case: &SpeechCase, seed: u64) -> Result<Vec<f32>, TestSourceError> {
    let voice = speak(text, &case.voice, case.rate)?;
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

/// Continuous speech: `sentences` spoken one after another in `voice` at 150 words a minute,
/// `gap_ms` apart (after whatever silence the synthesiser leaves), after 0.5 s of lead-in, with
/// `acoustic`'s background over the whole length. Returns the samples and where each sentence's
/// voice ends, in milliseconds.
pub fn continuous_speech(
    sentences: &[String],
    voice: &str,
    gap_ms: usize,
    acoustic: Acoustic,
    seed: u64,
) -> Result<(Vec<f32>, Vec<i64>), TestSourceError> {
    let mut s = vec![0f32; 8000];
    let mut ends = Vec::with_capacity(sentences.len());
    let mut voiced = Vec::new();
    for text in sentences {
        let v = speak(text, voice, 150)?;
        // The voice ends at its last sample above the quiet floor.
        let last = v.iter().rposition(|x| x.abs() > 0.01).map_or(0, |i| i + 1);
        ends.push(((s.len() + last) / 16) as i64);
        voiced.extend_from_slice(&v[..last]);
        s.extend(v);
        s.extend(std::iter::repeat_n(0f32, gap_ms * 16));
    }
    let rms = speech_rms(&voiced);
    let n = s.len();
    match acoustic {
        Acoustic::Clean => {}
        Acoustic::Noise(snr) => mix(&mut s, &street_noise(n, seed), rms, snr),
        Acoustic::Music(db) => mix(&mut s, &music_bed(n, seed), rms, db),
    }
    Ok((s, ends))
}

/// `text` spoken at `rate` words a minute, as 16 kHz mono floats, by one of three synthesisers:
/// - espeak-ng's own voices (`en-us`, `en-gb-scotland`, `de`, ...), resampled by ffmpeg;
/// - MBROLA diphone voices driven by espeak-ng (`mb-fr1`, `mb-us1`, ...);
/// - SVOX Pico (`pico-en-US`, `pico-en-GB`, `pico-de-DE`, `pico-es-ES`, `pico-fr-FR`), whose pace
///   is set relative to 150 words a minute as its own (`scripts/pico-say.py`).
///
/// MBROLA and Pico need what `make setup` unpacks under `$SIGHTLINE_MBROLA`.
pub fn speak(text: &str, voice: &str, rate: u32) -> Result<Vec<f32>, TestSourceError> {
    if let Some(lang) = voice.strip_prefix("pico-") {
        return pico(text, lang, rate);
    }
    let mut cmd = std::process::Command::new("espeak-ng");
    cmd.args(["-v", voice, "-s", &rate.to_string(), "--stdout", text]);
    if let Some(db) = voice.strip_prefix("mb-") {
        let mb = std::env::var("SIGHTLINE_MBROLA").map_err(|_| TestSourceError::Tool {
            tool: "mbrola",
            detail: format!("voice {voice} needs SIGHTLINE_MBROLA (run `make setup`)"),
        })?;
        if SPANISH_MBROLA.contains(&db) {
            return spanish_mbrola(text, rate, &mb, db);
        }
        let path = format!("{mb}/root/usr/bin:{}", std::env::var("PATH").unwrap_or_default());
        cmd.env("PATH", path).env("ESPEAK_DATA_PATH", format!("{mb}/data"));
    }
    let wav = cmd.output()?;
    if !wav.status.success() || wav.stdout.len() < 100 {
        return Err(TestSourceError::Tool {
            tool: "espeak-ng",
            detail: String::from_utf8_lossy(&wav.stderr).trim().to_string(),
        });
    }
    pcm_16k(wav.stdout)
}

/// MBROLA's Spanish voices that `make setup` unpacks.
const SPANISH_MBROLA: [&str; 2] = ["es1", "es2"];

/// Spanish MBROLA voices: espeak-ng writes unstressed vowels as phonemes of their own (`e/`,
/// `o/`), which none of the Spanish MBROLA databases has, and MBROLA speaks a silence in their
/// place (the vowels dropped). So espeak-ng's phonemes (`--pho`: durations and pitch) are taken,
/// `e/` spoken as `e` (and so on), and the MBROLA synthesiser is run on them directly.
fn spanish_mbrola(text: &str, rate: u32, mb: &str, db: &str) -> Result<Vec<f32>, TestSourceError> {
    use std::io::Write;
    let tool = |tool: &'static str, detail: String| TestSourceError::Tool { tool, detail };
    let usr = format!("{mb}/root/usr");
    let pho = std::process::Command::new("espeak-ng")
        .args(["-v", &format!("mb-{db}"), "-s", &rate.to_string(), "-q", "--pho", text])
        .env("PATH", format!("{usr}/bin:{}", std::env::var("PATH").unwrap_or_default()))
        .env("ESPEAK_DATA_PATH", format!("{mb}/data"))
        .output()?;
    if !pho.status.success() || pho.stdout.is_empty() {
        return Err(tool("espeak-ng", String::from_utf8_lossy(&pho.stderr).trim().to_string()));
    }
    let fixed = plain_vowels(&String::from_utf8_lossy(&pho.stdout));
    let mut child = std::process::Command::new(format!("{usr}/bin/mbrola"))
        .args(["-e", &format!("{usr}/share/mbrola/{db}/{db}"), "-", "-.wav"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("piped stdin").write_all(fixed.as_bytes())?;
    let wav = child.wait_with_output()?;
    if !wav.status.success() || wav.stdout.len() < 100 {
        return Err(tool("mbrola", String::from_utf8_lossy(&wav.stderr).trim().to_string()));
    }
    pcm_16k(wav.stdout)
}

/// MBROLA phoneme lines (`name duration pitch...`) with espeak-ng's unstressed vowels (`e/`) as
/// the plain ones (`e`).
fn plain_vowels(pho: &str) -> String {
    pho.lines()
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((ph, rest)) if ph.len() > 1 && ph.ends_with('/') => {
                format!("{} {rest}\n", &ph[..ph.len() - 1])
            }
            _ => format!("{l}\n"),
        })
        .collect()
}

/// `text` spoken by SVOX Pico in `lang` (`es-ES`, ...), its pace `rate` / 150 of its own: Pico
/// writes 16 kHz mono 16-bit samples.
fn pico(text: &str, lang: &str, rate: u32) -> Result<Vec<f32>, TestSourceError> {
    let tool = |detail: String| TestSourceError::Tool { tool: "pico", detail };
    let mb = std::env::var("SIGHTLINE_MBROLA")
        .map_err(|_| tool(format!("voice pico-{lang} needs SIGHTLINE_MBROLA (run `make setup`)")))?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pico-say.py");
    let speed = (rate * 100 / 150).clamp(20, 500).to_string();
    let out = std::process::Command::new("python3")
        .arg(script)
        .args([&format!("{mb}/root"), lang, &speed, text])
        .output()?;
    if !out.status.success() || out.stdout.len() < 100 {
        return Err(tool(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(out.stdout.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0).collect())
}

/// Real recorded speech from a registry package: the spoken channel names alsa-utils ships
/// ("Front Center", "Rear Left", ...), which `make setup` copies to `$SIGHTLINE_MBROLA/recorded`.
/// (what is said, 16 kHz samples with 0.4 s of silence either side), by file name order.
pub fn recorded_speech() -> Result<Vec<(String, Vec<f32>)>, TestSourceError> {
    let dir = std::env::var("SIGHTLINE_MBROLA").map_err(|_| TestSourceError::Tool {
        tool: "alsa-utils",
        detail: "the recorded set needs SIGHTLINE_MBROLA (run `make setup`)".into(),
    })?;
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(std::path::Path::new(&dir).join("recorded"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav") && !p.ends_with("Noise.wav"))
        .collect();
    files.sort();
    let quiet = vec![0f32; 6400];
    files
        .iter()
        .map(|p| {
            let said = p.file_stem().unwrap_or_default().to_string_lossy().replace('_', " ");
            let voice = pcm_16k(std::fs::read(p)?)?;
            Ok((said, quiet.iter().chain(&voice).chain(&quiet).copied().collect()))
        })
        .collect()
}

/// Real recorded readings with a known text (`quality/passages.txt`; the files `make setup`
/// fetches to `$SIGHTLINE_MBROLA/passages`): (file name, what is read, 16 kHz samples).
pub fn recorded_passages() -> Result<Vec<(String, String, Vec<f32>)>, TestSourceError> {
    let dir = std::env::var("SIGHTLINE_MBROLA").map_err(|_| TestSourceError::Tool {
        tool: "moonshine-voice",
        detail: "the recorded passages need SIGHTLINE_MBROLA (run `make setup`)".into(),
    })?;
    super::quality_lines("passages.txt")?
        .into_iter()
        .map(|line| {
            let (file, text) = line.split_once('\t').ok_or_else(|| TestSourceError::Tool {
                tool: "quality/passages.txt",
                detail: format!("no tab between the file and its text: {line:?}"),
            })?;
            let audio = pcm_16k(std::fs::read(std::path::Path::new(&dir).join("passages").join(file))?)?;
            Ok((file.to_string(), text.to_string(), audio))
        })
        .collect()
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
pub(crate) fn speech_rms(s: &[f32]) -> f32 {
    let voiced: Vec<f32> = s.iter().copied().filter(|v| v.abs() > 0.01).collect();
    if voiced.is_empty() {
        return 0.0;
    }
    (voiced.iter().map(|v| v * v).sum::<f32>() / voiced.len() as f32).sqrt()
}

/// Adds `bg` scaled to `db` below a voice of level `rms`.
pub(crate) fn mix(s: &mut [f32], bg: &[f32], rms: f32, db: f32) {
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
pub(crate) fn street_noise(n: usize, seed: u64) -> Vec<f32> {
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
pub(crate) fn music_bed(n: usize, seed: u64) -> Vec<f32> {
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

#[cfg(test)]
mod tests {
    use super::plain_vowels;

    #[test]
    fn unstressed_vowels_become_the_plain_ones_mbrola_knows() {
        let pho = "e/\t37\t 0 117 80 109\nl\t82\no/\t35\ns\t125\n_\t482\n";
        assert_eq!(plain_vowels(pho), "e 37\t 0 117 80 109\nl\t82\no 35\ns\t125\n_\t482\n");
        // A lone slash or a comment line is left as it is.
        assert_eq!(plain_vowels("/ 10\n; comment\n"), "/ 10\n; comment\n");
    }
}
