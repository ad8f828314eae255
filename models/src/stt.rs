//! Moonshine speech-to-text: an encoder over raw 16 kHz audio and a merged decoder with a
//! key/value cache, decoded by beam search (greedy at width 1).

use crate::runtime::run_err;
use crate::{ModelError, Runtime, TokenDecoder};
use ort::session::Session;
use ort::value::{DynValue, Tensor};
use std::path::Path;

const BOS: i64 = 1;
const EOS: i64 = 2;

#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    /// Mean probability of the chosen tokens (0..1).
    pub confidence: f32,
    pub tokens: Vec<u32>,
}

pub struct Moonshine {
    encoder: Session,
    decoder: Session,
    tokenizer: TokenDecoder,
    layers: usize,
    heads: usize,
    head_dim: usize,
    beam_width: usize,
}

impl Moonshine {
    pub fn load(
        rt: &Runtime,
        encoder: &Path,
        decoder: &Path,
        tokenizer: &Path,
        threads: usize,
    ) -> Result<Self, ModelError> {
        let encoder_s = rt.session(encoder, threads)?;
        let decoder_s = rt.session(decoder, threads)?;
        let tokenizer = TokenDecoder::from_file(tokenizer)?;
        // Cache geometry from the decoder's inputs: past_key_values.{layer}.decoder.key [b, heads, t, dim].
        let layers = decoder_s.inputs().iter().filter(|i| i.name().ends_with(".decoder.key")).count();
        let (heads, head_dim) = decoder_s
            .inputs()
            .iter()
            .find(|i| i.name() == "past_key_values.0.decoder.key")
            .and_then(|i| i.dtype().tensor_shape().map(|s| (s[1] as usize, s[3] as usize)))
            .ok_or_else(|| ModelError::Load {
                path: decoder.to_path_buf(),
                reason: "not a Moonshine merged decoder (no past_key_values inputs)".into(),
            })?;
        Ok(Self { encoder: encoder_s, decoder: decoder_s, tokenizer, layers, heads, head_dim, beam_width: 1 })
    }

    /// Beam width of the decoder search: 1 decodes greedily; wider beams keep that many partial
    /// transcripts each step and pick the best finished one by mean log-probability per token.
    pub fn set_beam_width(&mut self, width: usize) {
        self.beam_width = width.max(1);
    }

    /// Transcribes one utterance (up to ~30 s of 16 kHz mono audio).
    pub fn transcribe(&mut self, samples: &[f32]) -> Result<Transcript, ModelError> {
        let err = run_err("moonshine");
        if samples.len() < 16_000 / 4 {
            return Err(ModelError::Input(format!("{} samples is too short to transcribe", samples.len())));
        }
        let input = Tensor::from_array(([1usize, samples.len()], samples.to_vec())).map_err(&err)?;
        let enc = self.encoder.run(ort::inputs!["input_values" => input]).map_err(&err)?;
        let (shape, hidden) = enc["last_hidden_state"].try_extract_tensor::<f32>().map_err(&err)?;
        let hidden = Hidden { frames: shape[1] as usize, width: shape[2] as usize, data: hidden.to_vec() };
        drop(enc);

        // Every live hypothesis is one row of a batch: one decoder run a step serves them all (the
        // shipped 8-bit decoder costs about the same per run at batch 4 as at batch 1). Caches
        // are kept per row: self-attention keys/values grow by one each step and are re-gathered
        // from each row's parent; the cross-attention (encoder) keys/values come from step 0.
        let width = self.beam_width;
        let max_tokens = (samples.len() as f32 / 16_000.0 * 6.5).ceil() as usize + 4;
        let empty = Cache { rows: 1, dims: [self.heads, 0, self.head_dim], data: Vec::new() };
        let first = self.decode(&[BOS], &hidden, vec![empty; 2 * self.layers], None)?;
        let enc_kv = first.encoder.ok_or_else(|| ModelError::Run {
            model: "moonshine",
            reason: "decoder returned no encoder keys/values".into(),
        })?;
        let (mut rows, mut kv) = (first.log_probs, first.decoder);
        let mut beams = vec![Hypothesis { log_prob: 0.0, prob_sum: 0.0, tokens: Vec::new() }];
        let mut finished: Vec<(f32, Hypothesis)> = Vec::new();
        for _ in 0..max_tokens {
            // (score, parent, token, probability): the best `width` continuations of each beam.
            let mut next: Vec<(f32, usize, u32, f32)> = Vec::with_capacity(beams.len() * width);
            for (b, (beam, row)) in beams.iter().zip(&rows).enumerate() {
                for (token, lp) in top_k(row, width) {
                    next.push((beam.log_prob + lp, b, token, lp.exp()));
                }
            }
            next.sort_by(|a, c| c.0.total_cmp(&a.0));
            let (mut kept, mut parents) = (Vec::with_capacity(width), Vec::with_capacity(width));
            for (score, parent, token, prob) in next {
                let p = &beams[parent];
                if token as i64 == EOS {
                    // Mean log-probability per token (the end token included), so short and long
                    // transcripts compete fairly.
                    finished.push((
                        score / (p.tokens.len() + 1) as f32,
                        Hypothesis { log_prob: score, ..p.clone() },
                    ));
                } else {
                    let mut tokens = p.tokens.clone();
                    tokens.push(token);
                    kept.push(Hypothesis { log_prob: score, prob_sum: p.prob_sum + prob, tokens });
                    parents.push(parent);
                }
                if kept.len() == width {
                    break;
                }
            }
            beams = kept;
            if finished.len() >= width || beams.is_empty() {
                break;
            }
            let last: Vec<i64> = beams.iter().map(|h| *h.tokens.last().unwrap() as i64).collect();
            let past: Vec<Cache> = kv.iter().map(|c| c.gather(&parents)).collect();
            let step = self.decode(&last, &hidden, past, Some(&enc_kv))?;
            (rows, kv) = (step.log_probs, step.decoder);
        }
        // No hypothesis ended within the token budget: take the best unfinished one.
        finished.extend(beams.into_iter().map(|h| (h.log_prob / h.tokens.len().max(1) as f32, h)));
        let best = finished
            .into_iter()
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, h)| h)
            .ok_or_else(|| ModelError::Run { model: "moonshine", reason: "no hypothesis".into() })?;
        let confidence = if best.tokens.is_empty() { 0.0 } else { best.prob_sum / best.tokens.len() as f32 };
        Ok(Transcript { text: self.tokenizer.decode(&best.tokens), confidence, tokens: best.tokens })
    }

    /// One decoder run over a batch of hypotheses (one row each, `last` their last tokens):
    /// log-probabilities of each row's next token and the grown self-attention caches. Without
    /// `enc_kv` (the first step) the decoder computes the cross-attention caches and returns them.
    fn decode(
        &mut self,
        last: &[i64],
        hidden: &Hidden,
        past: Vec<Cache>,
        enc_kv: Option<&[Cache]>,
    ) -> Result<DecoderStep, ModelError> {
        let err = run_err("moonshine");
        let rows = last.len();
        let name = |l: usize, k: &str| format!("past_key_values.{l}.{k}");
        // Self-attention caches are handed over (gathered for this step already); the shared
        // cross-attention ones are repeated for each row.
        let tensor = |c: Cache| -> Result<DynValue, ModelError> {
            let [a, b, d] = c.dims;
            let data = if c.rows == rows { c.data } else { c.data.repeat(rows) };
            Ok(Tensor::from_array(([rows, a, b, d], data)).map_err(&err)?.into_dyn())
        };
        let ids = Tensor::from_array(([rows, 1usize], last.to_vec())).map_err(&err)?;
        let use_cache = Tensor::from_array(([1usize], vec![enc_kv.is_some()])).map_err(&err)?;
        let hidden_rows = Tensor::from_array(([rows, hidden.frames, hidden.width], hidden.data.repeat(rows)))
            .map_err(&err)?;
        let mut inputs: Vec<(std::borrow::Cow<str>, ort::session::SessionInputValue)> = vec![
            ("input_ids".into(), ids.into()),
            ("encoder_hidden_states".into(), hidden_rows.into()),
            ("use_cache_branch".into(), use_cache.into()),
        ];
        let empty = Cache { rows: 1, dims: [self.heads, 0, self.head_dim], data: Vec::new() };
        let mut past = past.into_iter();
        for l in 0..self.layers {
            for k in ["key", "value"] {
                let c = past
                    .next()
                    .ok_or_else(|| ModelError::Run { model: "moonshine", reason: "short cache".into() })?;
                inputs.push((name(l, &format!("decoder.{k}")).into(), tensor(c)?.into()));
            }
            let (k, v) = enc_kv.map_or((&empty, &empty), |e| (&e[2 * l], &e[2 * l + 1]));
            inputs.push((name(l, "encoder.key").into(), tensor(k.clone())?.into()));
            inputs.push((name(l, "encoder.value").into(), tensor(v.clone())?.into()));
        }
        let out = self.decoder.run(inputs).map_err(&err)?;
        let (shape, logits) = out["logits"].try_extract_tensor::<f32>().map_err(&err)?;
        let vocab = *shape.last().unwrap_or(&0) as usize;
        let per_row = if rows == 0 { 0 } else { logits.len() / rows };
        if vocab == 0 || per_row < vocab {
            return Err(ModelError::Run { model: "moonshine", reason: "empty logits".into() });
        }
        let log_probs = (0..rows)
            .map(|r| log_softmax(&logits[(r + 1) * per_row - vocab..(r + 1) * per_row]))
            .collect::<Result<Vec<_>, _>>()?;
        let cache = |key: String| -> Result<Cache, ModelError> {
            let value = out.get(&key).ok_or_else(|| ModelError::Run {
                model: "moonshine",
                reason: format!("decoder returned no {key}"),
            })?;
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(&err)?;
            let dims = [shape[1] as usize, shape[2] as usize, shape[3] as usize];
            Ok(Cache { rows: shape[0] as usize, dims, data: data.to_vec() })
        };
        let mut decoder = Vec::with_capacity(2 * self.layers);
        let mut encoder = Vec::with_capacity(2 * self.layers);
        for l in 0..self.layers {
            decoder.push(cache(format!("present.{l}.decoder.key"))?);
            decoder.push(cache(format!("present.{l}.decoder.value"))?);
            if enc_kv.is_none() {
                encoder.push(cache(format!("present.{l}.encoder.key"))?);
                encoder.push(cache(format!("present.{l}.encoder.value"))?);
            }
        }
        Ok(DecoderStep { log_probs, decoder, encoder: enc_kv.is_none().then_some(encoder) })
    }
}

/// What one decoder run gives: per row the next token's log-probabilities, the grown
/// self-attention caches, and on the first step the cross-attention caches.
struct DecoderStep {
    log_probs: Vec<Vec<f32>>,
    decoder: Vec<Cache>,
    encoder: Option<Vec<Cache>>,
}

/// The encoder's output for one utterance: `frames` x `width`.
struct Hidden {
    frames: usize,
    width: usize,
    data: Vec<f32>,
}

/// A cache tensor held on the Rust side: `rows` rows of `dims` each (row-major).
#[derive(Clone)]
struct Cache {
    rows: usize,
    dims: [usize; 3],
    data: Vec<f32>,
}

impl Cache {
    /// The rows `parents` (in that order): each hypothesis takes its parent's cache.
    fn gather(&self, parents: &[usize]) -> Cache {
        let size = self.dims.iter().product::<usize>();
        let mut data = Vec::with_capacity(parents.len() * size);
        for &p in parents {
            data.extend_from_slice(&self.data[p * size..(p + 1) * size]);
        }
        Cache { rows: parents.len(), dims: self.dims, data }
    }
}

fn log_softmax(row: &[f32]) -> Result<Vec<f32>, ModelError> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return Err(ModelError::Run { model: "moonshine", reason: "non-finite logits".into() });
    }
    let log_denom = row.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
    Ok(row.iter().map(|l| l - max - log_denom).collect())
}

/// Word errors of `hypothesis` against `reference`: (substitutions + insertions + deletions,
/// reference words). Words are compared lower-cased, without punctuation; the word error rate is
/// the first divided by the second.
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let words = |s: &str| -> Vec<String> {
        s.to_lowercase()
            .split(|c: char| !c.is_alphanumeric() && c != '\'')
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (r, h) = (words(reference), words(hypothesis));
    let mut row: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, hw) in h.iter().enumerate() {
            let sub = prev + (rw != hw) as usize;
            prev = row[j + 1];
            row[j + 1] = sub.min(row[j] + 1).min(prev + 1);
        }
    }
    (row[h.len()], r.len())
}

/// A partial transcript in the beam: its tokens and their summed log-probability and probability.
#[derive(Clone)]
struct Hypothesis {
    log_prob: f32,
    prob_sum: f32,
    tokens: Vec<u32>,
}

/// The `k` largest entries of `row` as (index, value), largest first (ties: lower index first).
fn top_k(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &v) in row.iter().enumerate() {
        if best.len() == k && v <= best[k - 1].1 {
            continue;
        }
        let at = best.partition_point(|&(_, b)| b >= v);
        best.insert(at, (i as u32, v));
        best.truncate(k);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::{top_k, word_errors};

    #[test]
    fn word_errors_count_edits_over_normalised_words() {
        assert_eq!(word_errors("a b c", "A x, c d."), (2, 3));
        assert_eq!(word_errors("the dog's bone", "The dog's bone!"), (0, 3));
        assert_eq!(word_errors("one two", ""), (2, 2));
    }

    #[test]
    fn top_k_is_sorted_and_prefers_earlier_ties() {
        assert_eq!(top_k(&[0.1, 0.5, 0.3, 0.5, -1.0], 3), vec![(1, 0.5), (3, 0.5), (2, 0.3)]);
        assert_eq!(top_k(&[2.0], 4), vec![(0, 2.0)]);
    }
}
