//! Whisper (multilingual speech-to-text) converted to ONNX by scripts/convert-whisper.py: an
//! encoder that takes raw 16 kHz audio (the log-mel front end is part of the graph) and returns
//! every decoder layer's cross-attention keys and values, and a decoder with a self-attention
//! key/value cache. Language identification is the decoder's first step (the language token most
//! likely after start-of-transcript, among the allowed languages); transcripts are decoded
//! greedily (all utterances of a batch in one decoder run a step) or by beam search (one
//! utterance's beams a run).

use crate::runtime::run_err;
use crate::stt::{rehear_factors, stretch};
use crate::{ModelError, Runtime, TokenDecoder, Transcript};
use ort::session::Session;
use ort::value::{DynValue, Tensor};
use std::path::Path;

mod decode;
mod judge;

use decode::gather_rows;

const SAMPLE_RATE: usize = 16_000;
/// Whisper was trained on 30 s windows: the longest utterance it transcribes, and the window every
/// utterance is zero-padded to unless [`Whisper::set_window`] says shorter.
pub const WHISPER_WINDOW: usize = 30 * SAMPLE_RATE;
/// Most utterances the speech pool (and its bare reference) give one encoder run: each padded to at
/// most 30 s, its cross-attention keys and values take about 37 MB.
pub const WHISPER_MAX_BATCH: usize = 4;
/// Samples per encoder frame (hop 160, then the stride-2 convolution).
const FRAME: usize = 320;
/// Shortest utterance transcribed (a quarter of a second).
const MIN_SAMPLES: usize = SAMPLE_RATE / 4;
/// Most tokens one transcript may have (half the decoder's 448 positions, as Whisper itself).
const MAX_TOKENS: usize = 224;

/// A spoken language as Whisper identified it.
#[derive(Debug, Clone, PartialEq)]
pub struct Language {
    /// ISO 639-1 code (`en`, `de`, ...), as Whisper's language tokens name it.
    pub code: String,
    /// Probability among the allowed languages (0..1).
    pub probability: f32,
}

/// The encoder's output for a batch of utterances: every decoder layer's cross-attention keys
/// [L, B, H, Dh, T] and values [L, B, H, T, Dh], and each utterance's token budget.
pub struct Encoded {
    cross_k: DynValue,
    cross_v: DynValue,
    max_tokens: Vec<usize>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.max_tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.max_tokens.is_empty()
    }

    /// The utterances `rows` (in that order) alone, so a decoder batch holds only those.
    pub fn select(&self, rows: &[usize]) -> Result<Encoded, ModelError> {
        let (k, v) = (gather_rows(&self.cross_k, rows)?, gather_rows(&self.cross_v, rows)?);
        Ok(Encoded { cross_k: k, cross_v: v, max_tokens: rows.iter().map(|&r| self.max_tokens[r]).collect() })
    }
}

pub struct Whisper {
    encoder: Session,
    decoder: Session,
    tokenizer: TokenDecoder,
    /// Text to tokens, for scoring other models' transcripts ([`Whisper::score_texts`]).
    text: judge::TextTokens,
    layers: usize,
    heads: usize,
    head_dim: usize,
    /// Every language the model knows: (code, token id).
    languages: Vec<(String, i64)>,
    sot: i64,
    eot: i64,
    transcribe: i64,
    no_timestamps: i64,
    /// Tokens never emitted (symbols, as the model's config lists them) and not at the start.
    suppress: Vec<usize>,
    suppress_begin: Vec<usize>,
    beam_width: usize,
    /// Samples every utterance of an encoder batch is padded to at least (a multiple of FRAME).
    window: usize,
    /// Re-hearing (see [`Whisper::set_rehearing`]): the stretches heard again, and the confidence
    /// below which an utterance is.
    rehear: Vec<f32>,
    rehear_below: f32,
}

impl Whisper {
    /// `config` is the converter's config.json (language token ids, suppressed tokens, geometry).
    pub fn load(
        rt: &Runtime,
        encoder: &Path,
        decoder: &Path,
        tokenizer: &Path,
        config: &Path,
        threads: usize,
    ) -> Result<Self, ModelError> {
        let bad = |path: &Path, reason: String| ModelError::Load { path: path.to_path_buf(), reason };
        let read_json = |path: &Path| -> Result<serde_json::Value, ModelError> {
            let text = std::fs::read_to_string(path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    ModelError::Missing(path.to_path_buf())
                } else {
                    bad(path, e.to_string())
                }
            })?;
            serde_json::from_str(&text).map_err(|e| bad(path, e.to_string()))
        };
        let cfg = read_json(config)?;
        let tok = read_json(tokenizer)?;
        // Special tokens by name, from the tokenizer's added tokens.
        let special: std::collections::HashMap<String, i64> = tok["added_tokens"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| Some((t["content"].as_str()?.to_string(), t["id"].as_i64()?)))
                    .collect()
            })
            .unwrap_or_default();
        let token = |name: &str| {
            special.get(name).copied().ok_or_else(|| bad(tokenizer, format!("no special token {name}")))
        };
        let ids = |key: &str| -> Vec<i64> {
            cfg[key].as_array().map(|a| a.iter().filter_map(|v| v.as_i64()).collect()).unwrap_or_default()
        };
        let by_id: std::collections::HashMap<i64, &str> =
            special.iter().map(|(k, v)| (*v, k.as_str())).collect();
        let languages: Vec<(String, i64)> = ids("lang_ids")
            .into_iter()
            .filter_map(|id| {
                let code = by_id.get(&id)?.strip_prefix("<|")?.strip_suffix("|>")?;
                Some((code.to_string(), id))
            })
            .collect();
        if languages.is_empty() {
            return Err(bad(config, "no language tokens (lang_ids)".into()));
        }
        let geometry =
            |key: &str| cfg[key].as_u64().map(|v| v as usize).ok_or_else(|| bad(config, format!("no {key}")));
        let (layers, heads, width) = (geometry("decoder_layers")?, geometry("heads")?, geometry("width")?);
        let to_usize = |v: Vec<i64>| v.into_iter().filter(|&i| i >= 0).map(|i| i as usize).collect();
        Ok(Self {
            encoder: rt.session(encoder, threads)?,
            decoder: rt.session(decoder, threads)?,
            tokenizer: TokenDecoder::from_file(tokenizer)?,
            text: judge::TextTokens::new(crate::bpe::BytePairs::from_json(&tok, tokenizer)?),
            layers,
            heads,
            head_dim: width / heads.max(1),
            sot: token("<|startoftranscript|>")?,
            eot: token("<|endoftext|>")?,
            transcribe: token("<|transcribe|>")?,
            no_timestamps: token("<|notimestamps|>")?,
            languages,
            suppress: to_usize(ids("suppress_ids")),
            suppress_begin: to_usize(ids("suppress_ids_begin")),
            beam_width: 1,
            window: WHISPER_WINDOW,
            rehear: Vec::new(),
            rehear_below: 0.0,
        })
    }

    /// Codes of every language the model can identify and transcribe.
    pub fn languages(&self) -> impl Iterator<Item = &str> {
        self.languages.iter().map(|(c, _)| c.as_str())
    }

    pub fn knows(&self, code: &str) -> bool {
        self.languages.iter().any(|(c, _)| c == code)
    }

    /// Beam width of the decoder search (1: greedy).
    pub fn set_beam_width(&mut self, width: usize) {
        self.beam_width = width.max(1);
    }

    pub fn beam_width(&self) -> usize {
        self.beam_width
    }

    /// The shortest window the encoder hears, seconds (0.25..=30): a batch is zero-padded to this
    /// or to its longest utterance, whichever is longer. The encoder's cost grows with the window
    /// (its attention with the square); 30 s is what Whisper was trained on.
    pub fn set_window(&mut self, seconds: f32) {
        let samples = (seconds.clamp(0.25, 30.0) * SAMPLE_RATE as f32) as usize;
        self.window = samples.div_ceil(FRAME) * FRAME;
    }

    /// [`Whisper::set_window`] in samples (rounded up to a whole encoder frame, 30 s at most).
    pub fn set_window_samples(&mut self, samples: usize) {
        self.window = (samples.div_ceil(FRAME) * FRAME).clamp(FRAME, WHISPER_WINDOW);
    }

    /// The shortest window the encoder hears, in samples.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Beam width, window and re-hearing as `speech` configures them (`multilingual_beam_width`,
    /// `multilingual_window_s`, `multilingual_rehear_stretches` below `rehear_below`: how the
    /// speech pool hears when it has room to spare).
    pub fn configure(&mut self, speech: &sightline_settings::SpeechConfig) {
        self.set_beam_width(speech.multilingual_beam_width);
        self.set_window(speech.multilingual_window_s);
        self.set_rehearing(&speech.multilingual_rehear_stretches, speech.rehear_below);
    }

    /// Re-hearing, as Moonshine's ([`crate::Moonshine::set_rehearing`]): an utterance whose
    /// transcript's confidence is below `below` is encoded and decoded again, in the language
    /// it was heard in, resampled to each of `stretches` times its length, and the most
    /// confident transcript is kept ([`Whisper::decode_segments`]). No stretches: heard once.
    pub fn set_rehearing(&mut self, stretches: &[f32], below: f32) {
        self.rehear = rehear_factors(stretches);
        self.rehear_below = below;
    }

    /// The stretches re-heard and the confidence below which ([`Whisper::set_rehearing`]).
    pub fn rehearing(&self) -> (&[f32], f32) {
        (&self.rehear, self.rehear_below)
    }

    /// Runs the encoder over utterances (each at most 30 s, at least a quarter of a second), each
    /// zero-padded to the batch's window ([`Whisper::set_window`]).
    pub fn encode(&mut self, segs: &[&[f32]]) -> Result<Encoded, ModelError> {
        if let Some(s) = segs.iter().find(|s| s.len() < MIN_SAMPLES || s.len() > WHISPER_WINDOW) {
            return Err(ModelError::Input(format!(
                "{} samples: Whisper transcribes 0.25 s to 30 s of audio at a time",
                s.len()
            )));
        }
        let err = run_err("whisper");
        let len = padded_len(self.window, segs);
        let mut audio = vec![0f32; segs.len() * len];
        for (row, s) in audio.chunks_exact_mut(len).zip(segs) {
            row[..s.len()].copy_from_slice(s);
        }
        let input = Tensor::from_array(([segs.len(), len], audio)).map_err(&err)?;
        let mut out = self.encoder.run(ort::inputs!["audio" => input]).map_err(&err)?;
        let missing =
            || ModelError::Run { model: "whisper", reason: "encoder returned no cross keys/values".into() };
        let cross_k = out.remove("cross_k").ok_or_else(missing)?;
        let cross_v = out.remove("cross_v").ok_or_else(missing)?;
        // Token budget: generous for languages whose words take many byte-level tokens.
        let max_tokens =
            segs.iter().map(|s| ((s.len() as f32 / SAMPLE_RATE as f32) * 12.0) as usize + 10).collect();
        Ok(Encoded { cross_k, cross_v, max_tokens: max_tokens_capped(max_tokens) })
    }

    /// The language of each encoded utterance among `allowed` codes (every known language when
    /// empty): one decoder step after start-of-transcript, softmax over the allowed language tokens.
    pub fn detect(&mut self, enc: &Encoded, allowed: &[String]) -> Result<Vec<Language>, ModelError> {
        self.detect_each(enc, &vec![allowed.to_vec(); enc.len()])
    }

    /// [`Whisper::detect`] with each utterance's own allowed languages (`allowed[i]` for
    /// utterance i; empty: every known language).
    pub fn detect_each(
        &mut self,
        enc: &Encoded,
        allowed: &[Vec<String>],
    ) -> Result<Vec<Language>, ModelError> {
        if allowed.len() != enc.len() {
            return Err(ModelError::Input("one list of allowed languages per encoded utterance".into()));
        }
        let candidates = allowed
            .iter()
            .map(|allowed| {
                let c: Vec<(String, i64)> = self
                    .languages
                    .iter()
                    .filter(|(c, _)| allowed.is_empty() || allowed.iter().any(|a| a == c))
                    .cloned()
                    .collect();
                if c.is_empty() {
                    Err(ModelError::Input(format!("none of the languages {allowed:?} is known to Whisper")))
                } else {
                    Ok(c)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rows = enc.len();
        let (logits, _, _) =
            self.step(vec![self.sot; rows], 1, self.empty_cache(rows)?, &enc.cross_k, &enc.cross_v)?;
        let vocab = logits.len() / rows.max(1);
        Ok((0..rows)
            .map(|r| {
                let row = &logits[r * vocab..(r + 1) * vocab];
                let candidates = &candidates[r];
                let scores: Vec<f32> = candidates.iter().map(|(_, id)| row[*id as usize]).collect();
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = scores.iter().map(|s| (s - max).exp()).sum();
                let (best, score) = scores
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(i, s)| (i, *s))
                    .unwrap_or((0, max));
                Language {
                    code: candidates[best].0.clone(),
                    probability: (score - max).exp() / sum.max(1e-30),
                }
            })
            .collect())
    }

    /// Transcribes each encoded utterance in its language (`languages[i]` a known code).
    pub fn decode(&mut self, enc: &Encoded, languages: &[&str]) -> Result<Vec<Transcript>, ModelError> {
        let lang_ids =
            languages
                .iter()
                .map(|code| {
                    self.languages.iter().find(|(c, _)| c == code).map(|(_, id)| *id).ok_or_else(|| {
                        ModelError::Input(format!("Whisper does not know the language {code:?}"))
                    })
                })
                .collect::<Result<Vec<i64>, _>>()?;
        if lang_ids.len() != enc.len() {
            return Err(ModelError::Input("one language per encoded utterance".into()));
        }
        if self.beam_width == 1 {
            self.decode_greedy(enc, &lang_ids)
        } else {
            (0..enc.len()).map(|u| self.decode_beam(enc, u, lang_ids[u])).collect()
        }
    }

    /// Transcripts of the utterances `segs`, encoded as `enc`, in `languages` (one each):
    /// [`Whisper::decode`], then, with re-hearing on ([`Whisper::set_rehearing`]), each unsure
    /// utterance heard again at every stretch (a stretched copy longer than 30 s is not), the
    /// stretched copies sharing encoder runs of up to [`WHISPER_MAX_BATCH`].
    pub fn decode_segments(
        &mut self,
        segs: &[&[f32]],
        enc: &Encoded,
        languages: &[&str],
    ) -> Result<Vec<Transcript>, ModelError> {
        if segs.len() != enc.len() {
            return Err(ModelError::Input("one encoding per utterance".into()));
        }
        let mut heard = self.decode(enc, languages)?;
        if self.rehear.is_empty() {
            return Ok(heard);
        }
        // (utterance, stretched audio) for each utterance heard with too little confidence.
        let again: Vec<(usize, Vec<f32>)> = heard
            .iter()
            .enumerate()
            .filter(|(_, t)| t.confidence < self.rehear_below)
            .flat_map(|(i, _)| self.rehear.iter().map(move |&k| (i, stretch(segs[i], k))))
            .filter(|(_, a)| (MIN_SAMPLES..=WHISPER_WINDOW).contains(&a.len()))
            .collect();
        for chunk in again.chunks(WHISPER_MAX_BATCH) {
            let stretched: Vec<&[f32]> = chunk.iter().map(|(_, a)| a.as_slice()).collect();
            let langs: Vec<&str> = chunk.iter().map(|(i, _)| languages[*i]).collect();
            let enc = self.encode(&stretched)?;
            for ((i, _), t) in chunk.iter().zip(self.decode(&enc, &langs)?) {
                if t.confidence > heard[*i].confidence {
                    heard[*i] = t;
                }
            }
        }
        Ok(heard)
    }

    /// Language and transcript of each utterance; languages among `allowed` (all when empty; a
    /// single allowed language is taken as given, with probability 1); unsure utterances heard
    /// again as [`Whisper::decode_segments`] says.
    pub fn transcribe_batch(
        &mut self,
        segs: &[&[f32]],
        allowed: &[String],
    ) -> Result<Vec<(Transcript, Language)>, ModelError> {
        let enc = self.encode(segs)?;
        let langs = match allowed {
            [one] => vec![Language { code: one.clone(), probability: 1.0 }; segs.len()],
            _ => self.detect(&enc, allowed)?,
        };
        let codes: Vec<&str> = langs.iter().map(|l| l.code.as_str()).collect();
        let ts = self.decode_segments(segs, &enc, &codes)?;
        Ok(ts.into_iter().zip(langs).collect())
    }
}

/// Samples a batch of utterances is padded to: the window, or the longest utterance rounded up to
/// a whole encoder frame, whichever is longer (never past 30 s).
fn padded_len(window: usize, segs: &[&[f32]]) -> usize {
    let longest = segs.iter().map(|s| s.len()).max().unwrap_or(0).div_ceil(FRAME) * FRAME;
    longest.max(window).min(WHISPER_WINDOW)
}

fn max_tokens_capped(v: Vec<usize>) -> Vec<usize> {
    v.into_iter().map(|t| t.min(MAX_TOKENS)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_padded_to_the_window_or_its_longest_utterance_in_whole_frames() {
        let (short, long) = (vec![0f32; 16_000], vec![0f32; 12 * 16_000 + 5]);
        assert_eq!(padded_len(WHISPER_WINDOW, &[&short]), WHISPER_WINDOW, "the default: 30 s");
        assert_eq!(padded_len(160_000, &[&short]), 160_000, "a 10 s window");
        let both = padded_len(160_000, &[&short, &long]);
        assert_eq!(both, (12 * 16_000 / FRAME + 1) * FRAME, "the longest, rounded up to a frame");
        assert!(both >= long.len() && both.is_multiple_of(FRAME));
        let full = vec![0f32; WHISPER_WINDOW];
        assert_eq!(padded_len(160_000, &[&full]), WHISPER_WINDOW, "never past 30 s");
    }
}
