//! What the test clips say: the sentences, the voices that say them, and their audio as ingest
//! delivers it (16 kHz mono floats).

use crate::TestSourceError;

/// Ten sentences spoken by espeak-ng for speech-to-text quality checks (the word error rate in
/// the speech quality test and the beam-width sweep of the inference bench).
pub const SPEECH_SENTENCES: [&str; 10] = [
    "the quick brown fox jumps over the lazy dog",
    "live video becomes searchable while it plays",
    "we report the news from the city",
    "the orchestra played a quiet song",
    "farmers expect rain later this week",
    "the museum opens a new exhibit",
    "the council will vote on the new budget tomorrow",
    "heavy traffic is slowing the morning commute",
    "our reporter is standing outside the stadium",
    "scientists discovered water on a distant planet",
];

/// A spoken sentence and when it starts.
#[derive(Debug, Clone)]
pub struct Speech {
    pub at_ms: i64,
    pub text: &'static str,
    /// The voice, as [`crate::quality::speak`] names them (espeak-ng's `de`, MBROLA's `mb-fr1`,
    /// Pico's `pico-fr-FR`); `None`: espeak-ng's default, English, as the English clips speak.
    pub voice: Option<&'static str>,
}

/// `text` spoken by espeak-ng (as the test clips speak it), resampled by ffmpeg to 16 kHz mono
/// float samples, as ingest delivers audio.
pub fn speech_samples(text: &str) -> Result<Vec<f32>, TestSourceError> {
    espeak_samples(text)
}

impl Speech {
    /// The sentence as the clip speaks it, 16 kHz mono float samples.
    pub fn samples(&self) -> Result<Vec<f32>, TestSourceError> {
        match self.voice {
            Some(voice) => crate::quality::speak(self.text, voice, 150),
            None => espeak_samples(self.text),
        }
    }
}

/// 16 kHz mono samples as a 16-bit PCM WAV file.
pub(crate) fn wav_16k(samples: &[f32]) -> Vec<u8> {
    let data = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&16_000u32.to_le_bytes());
    out.extend_from_slice(&32_000u32.to_le_bytes()); // bytes a second
    out.extend_from_slice(&2u16.to_le_bytes()); // bytes a frame
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    for &x in samples {
        out.extend_from_slice(&((x.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes());
    }
    out
}

fn espeak_samples(text: &str) -> Result<Vec<f32>, TestSourceError> {
    let tool = |tool: &'static str, out: &std::process::Output| TestSourceError::Tool {
        tool,
        detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    };
    let wav = std::process::Command::new("espeak-ng").args(["-s", "150", "--stdout", text]).output()?;
    if !wav.status.success() {
        return Err(tool("espeak-ng", &wav));
    }
    crate::quality::pcm_16k(wav.stdout)
}
