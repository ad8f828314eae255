//! Whisper's decoder: the prompt, one decoder step with its self-attention cache, and the greedy
//! and beam searches over it.

use super::{Encoded, Whisper};
use crate::runtime::run_err;
use crate::search::{Hypothesis, Search, log_softmax, repeats, top_k};
use crate::{ModelError, Transcript};
use ort::value::{DynValue, Tensor};

impl Whisper {
    pub(super) fn prompt(&self, lang: i64) -> [i64; 4] {
        [self.sot, lang, self.transcribe, self.no_timestamps]
    }

    /// Log-probabilities with the never-emitted tokens (and at the start the begin-suppressed
    /// ones) masked out: only text tokens and the end of text remain.
    pub(super) fn masked_log_probs(&self, logits: &[f32], first: bool) -> Result<Vec<f32>, ModelError> {
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
    pub(super) fn decode_greedy(
        &mut self,
        enc: &Encoded,
        lang_ids: &[i64],
    ) -> Result<Vec<Transcript>, ModelError> {
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
                    // The most likely token that does not repeat a run of five tokens the row has said.
                    let (t, p) = top_k(&lp, 3)
                        .into_iter()
                        .find(|&(t, _)| !repeats(&out[r].tokens, t))
                        .unwrap_or((self.eot as u32, 0.0));
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
    pub(super) fn decode_beam(
        &mut self,
        enc: &Encoded,
        u: usize,
        lang: i64,
    ) -> Result<Transcript, ModelError> {
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

    pub(super) fn transcript(&self, h: Hypothesis) -> Transcript {
        let confidence = if h.tokens.is_empty() { 0.0 } else { h.prob_sum / h.tokens.len() as f32 };
        Transcript { text: self.tokenizer.decode(&h.tokens), confidence, tokens: h.tokens }
    }

    pub(super) fn empty_cache(&self, rows: usize) -> Result<(DynValue, DynValue), ModelError> {
        let err = run_err("whisper");
        let shape = [self.layers, rows, self.heads, 0, self.head_dim];
        let k = Tensor::from_array((shape, Vec::<f32>::new())).map_err(&err)?.into_dyn();
        let v = Tensor::from_array((shape, Vec::<f32>::new())).map_err(&err)?.into_dyn();
        Ok((k, v))
    }

    /// One decoder run: `tokens` (rows x `n`, row-major) after the cached ones; the last new
    /// token's logits per row (row-major, rows x vocab) and the grown caches.
    pub(super) fn step(
        &mut self,
        tokens: Vec<i64>,
        n: usize,
        cache: (DynValue, DynValue),
        cross_k: &DynValue,
        cross_v: &DynValue,
    ) -> Result<(Vec<f32>, DynValue, DynValue), ModelError> {
        self.run_decoder(tokens, n, cache, cross_k, cross_v, "logits")
    }

    /// One decoder run whose output `logits_output` is returned: "logits" (each row's last new
    /// token's, rows x vocab) or "all_logits" (every new token's, rows x `n` x vocab, what scoring
    /// a given transcript takes in one run), row-major, with the grown caches.
    pub(super) fn run_decoder(
        &mut self,
        tokens: Vec<i64>,
        n: usize,
        cache: (DynValue, DynValue),
        cross_k: &DynValue,
        cross_v: &DynValue,
        logits_output: &str,
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
        let missing_logits = || ModelError::Run {
            model: "whisper",
            reason: format!(
                "decoder has no output {logits_output} (converted before 2026-12-04? make setup converts it again)"
            ),
        };
        let (_, logits) =
            out.get(logits_output).ok_or_else(missing_logits)?.try_extract_tensor::<f32>().map_err(&err)?;
        let logits = logits.to_vec();
        let missing = || ModelError::Run { model: "whisper", reason: "decoder returned no cache".into() };
        let k = out.remove("new_k").ok_or_else(missing)?;
        let v = out.remove("new_v").ok_or_else(missing)?;
        Ok((logits, k, v))
    }
}

/// The rows `parents` (in that order) of a [L, R, ...] cache: each beam takes its parent's cache.
pub(super) fn gather_rows(value: &DynValue, parents: &[usize]) -> Result<DynValue, ModelError> {
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
