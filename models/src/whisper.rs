//! Whisper (multilingual speech-to-text) converted to ONNX by scripts/convert-whisper.py: an
//! encoder that takes raw 16 kHz audio (the log-mel front end is part of the graph) and returns
//! every decoder layer's cross-attention keys and values, and a decoder with a self-attention
//! key/value cache. Language identification is the decoder's first step (the language token most
//! likely after start-of-transcript, among the allowed languages); transcripts are decoded
//! greedily (all utterances of a batch in one decoder run a step) or by beam search (one
//! utterance's beams a run).

use crate::runtime::run_err;
use crate::stt::{Hypothesis, Search, log_softmax, top_k};
use crate::{ModelError, Runtime, TokenDecoder, Transcript};
use ort::session::Session;
use ort::value::{DynValue, Tensor};
use std::path::Path;

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

    /// The shortest window the encoder hears, in samples.
    pub fn window(&self) -> usize {
        self.window
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

    /// Language and transcript of each utterance; languages among `allowed` (all when empty; a
    /// single allowed language is taken as given, with probability 1).
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
        let ts = self.decode(&enc, &codes)?;
        Ok(ts.into_iter().zip(langs).collect())
    }

    fn prompt(&self, lang: i64) -> [i64; 4] {
        [self.sot, lang, self.transcribe, self.no_timestamps]
    }

    /// Log-probabilities with the never-emitted tokens (and at the start the begin-suppressed
    /// ones) masked out: only text tokens and the end of text remain.
    fn masked_log_probs(&self, logits: &[f32], first: bool) -> Result<Vec<f32>, ModelError> {
        let mut row = logits.to_vec();
        row.iter_mut().skip(self.eot as usize + 1).for_each(|v| *v = f32::NEG_INFINITY);
        for &i in self.suppress.iter().chain(if first { &self.suppress_begin[..] } else { &[] }) {
            if let Some(v) = row.get_mut(i) {
                *v = f32::NEG_INFINITY;
            }
        }
        log_softmax(&row)
    }

    /// All utterances as rows of one decoder batch: every row steps until each has ended (an
    /// ended row is fed the end token and ignored), so the caches never need re-gathering.
    fn decode_greedy(&mut self, enc: &Encoded, lang_ids: &[i64]) -> Result<Vec<Transcript>, ModelError> {
        let rows = enc.len();
        let tokens: Vec<i64> = lang_ids.iter().flat_map(|&l| self.prompt(l)).collect();
        let (mut logits, mut k, mut v) =
            self.step(tokens, 4, self.empty_cache(rows)?, &enc.cross_k, &enc.cross_v)?;
        let mut out: Vec<Hypothesis> =
            (0..rows).map(|_| Hypothesis { log_prob: 0.0, prob_sum: 0.0, tokens: Vec::new() }).collect();
        let mut done = vec![false; rows];
        let budget = enc.max_tokens.iter().copied().max().unwrap_or(0);
        for step in 0..budget {
            let vocab = logits.len() / rows;
            let mut next = Vec::with_capacity(rows);
            for r in 0..rows {
                if !done[r] {
                    let lp = self.masked_log_probs(&logits[r * vocab..(r + 1) * vocab], step == 0)?;
                    let (t, p) = top_k(&lp, 1)[0];
                    if t as i64 == self.eot || out[r].tokens.len() >= enc.max_tokens[r] {
                        done[r] = true;
                    } else {
                        out[r].tokens.push(t);
                        out[r].log_prob += p;
                        out[r].prob_sum += p.exp();
                    }
                }
                next.push(if done[r] { self.eot } else { *out[r].tokens.last().unwrap_or(&0) as i64 });
            }
            if done.iter().all(|&d| d) {
                break;
            }
            let cache = (k, v);
            (logits, k, v) = self.step(next, 1, cache, &enc.cross_k, &enc.cross_v)?;
        }
        Ok(out.into_iter().map(|h| self.transcript(h)).collect())
    }

    /// Beam search over one utterance: its beams are the rows, its encoder output (batch 1) is
    /// broadcast to all of them.
    fn decode_beam(&mut self, enc: &Encoded, u: usize, lang: i64) -> Result<Transcript, ModelError> {
        let (ck, cv) = (gather_rows(&enc.cross_k, &[u])?, gather_rows(&enc.cross_v, &[u])?);
        let (mut logits, mut k, mut v) =
            self.step(self.prompt(lang).to_vec(), 4, self.empty_cache(1)?, &ck, &cv)?;
        let mut search = Search {
            beams: vec![Hypothesis { log_prob: 0.0, prob_sum: 0.0, tokens: Vec::new() }],
            finished: Vec::new(),
            max_tokens: enc.max_tokens[u],
            live: true,
            eos: self.eot,
        };
        let width = self.beam_width;
        for step in 0..search.max_tokens {
            let vocab = logits.len() / search.beams.len();
            let rows = (0..search.beams.len())
                .map(|r| self.masked_log_probs(&logits[r * vocab..(r + 1) * vocab], step == 0))
                .collect::<Result<Vec<_>, _>>()?;
            let parents = search.advance(&rows, width);
            if search.finished.len() >= width || search.beams.is_empty() {
                break;
            }
            let last: Vec<i64> = search.beams.iter().map(|h| *h.tokens.last().unwrap_or(&0) as i64).collect();
            let cache = (gather_rows(&k, &parents)?, gather_rows(&v, &parents)?);
            (logits, k, v) = self.step(last, 1, cache, &ck, &cv)?;
        }
        let mut finished = search.finished;
        finished.extend(search.beams.into_iter().map(|h| (h.log_prob / h.tokens.len().max(1) as f32, h)));
        let best = finished
            .into_iter()
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, h)| h)
            .ok_or_else(|| ModelError::Run { model: "whisper", reason: "no hypothesis".into() })?;
        Ok(self.transcript(best))
    }

    fn transcript(&self, h: Hypothesis) -> Transcript {
        let confidence = if h.tokens.is_empty() { 0.0 } else { h.prob_sum / h.tokens.len() as f32 };
        Transcript { text: self.tokenizer.decode(&h.tokens), confidence, tokens: h.tokens }
    }

    fn empty_cache(&self, rows: usize) -> Result<(DynValue, DynValue), ModelError> {
        let err = run_err("whisper");
        let shape = [self.layers, rows, self.heads, 0, self.head_dim];
        let k = Tensor::from_array((shape, Vec::<f32>::new())).map_err(&err)?.into_dyn();
        let v = Tensor::from_array((shape, Vec::<f32>::new())).map_err(&err)?.into_dyn();
        Ok((k, v))
    }

    /// One decoder run: `tokens` (rows x `n`, row-major) after the cached ones; the last new
    /// token's logits per row (row-major, rows x vocab) and the grown caches.
    fn step(
        &mut self,
        tokens: Vec<i64>,
        n: usize,
        cache: (DynValue, DynValue),
        cross_k: &DynValue,
        cross_v: &DynValue,
    ) -> Result<(Vec<f32>, DynValue, DynValue), ModelError> {
        let err = run_err("whisper");
        let rows = tokens.len() / n;
        let ids = Tensor::from_array(([rows, n], tokens)).map_err(&err)?;
        let mut out = self
            .decoder
            .run(ort::inputs![
                "tokens" => ids,
                "self_k" => cache.0,
                "self_v" => cache.1,
                "cross_k" => cross_k,
                "cross_v" => cross_v,
            ])
            .map_err(&err)?;
        let (_, logits) = out["logits"].try_extract_tensor::<f32>().map_err(&err)?;
        let logits = logits.to_vec();
        let missing = || ModelError::Run { model: "whisper", reason: "decoder returned no cache".into() };
        let k = out.remove("new_k").ok_or_else(missing)?;
        let v = out.remove("new_v").ok_or_else(missing)?;
        Ok((logits, k, v))
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

/// The rows `parents` (in that order) of a [L, R, ...] cache: each beam takes its parent's cache.
fn gather_rows(value: &DynValue, parents: &[usize]) -> Result<DynValue, ModelError> {
    let err = run_err("whisper");
    let (shape, data) = value.try_extract_tensor::<f32>().map_err(&err)?;
    let mut dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let (layers, rows) = (dims[0], dims[1]);
    let per_row = data.len() / (layers * rows).max(1);
    let mut out = Vec::with_capacity(layers * parents.len() * per_row);
    for l in 0..layers {
        for &p in parents {
            let at = (l * rows + p) * per_row;
            out.extend_from_slice(&data[at..at + per_row]);
        }
    }
    dims[1] = parents.len();
    Ok(Tensor::from_array((dims, out)).map_err(&err)?.into_dyn())
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
        assert!(both >= long.len() && both % FRAME == 0);
        let full = vec![0f32; WHISPER_WINDOW];
        assert_eq!(padded_len(160_000, &[&full]), WHISPER_WINDOW, "never past 30 s");
    }

    #[test]
    fn gathering_rows_keeps_each_layers_block() {
        // [L=2, R=3, 2]: row r of layer l holds (10l + r, 10l + r).
        let data: Vec<f32> =
            (0..2).flat_map(|l| (0..3).flat_map(move |r| [(10 * l + r) as f32; 2])).collect();
        let v = Tensor::from_array(([2usize, 3, 2], data)).unwrap().into_dyn();
        let g = gather_rows(&v, &[2, 2, 0]).unwrap();
        let (shape, out) = g.try_extract_tensor::<f32>().unwrap();
        assert_eq!(shape.iter().copied().collect::<Vec<_>>(), vec![2, 3, 2]);
        assert_eq!(out, &[2., 2., 2., 2., 0., 0., 12., 12., 12., 12., 10., 10.]);
        let one = gather_rows(&v, &[1]).unwrap();
        assert_eq!(one.try_extract_tensor::<f32>().unwrap().1, &[1., 1., 11., 11.]);
    }
}
