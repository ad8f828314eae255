//! Moonshine speech-to-text: an encoder over raw 16 kHz audio and a merged decoder with a
//! key/value cache, decoded by beam search (greedy at width 1).

use crate::runtime::run_err;
use crate::search::{Hypothesis, Search, log_softmax};
use crate::{ModelError, Runtime, TokenDecoder};
use ort::session::Session;
use ort::value::{DynValue, Tensor};
use std::path::Path;

mod judge;
mod rehear;
mod stretch;
pub use judge::JudgeStats;
use rehear::Judge;
pub(crate) use stretch::rehear_factors;
pub use stretch::stretch;

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
    max_batch: usize,
    max_pad: usize,
    /// Width of the encoder's output rows; decoder steps after the first get a placeholder this
    /// wide, since the cached branch of the merged decoder reads the cross-attention caches.
    hidden_width: usize,
    /// Which utterances are heard again, at which stretches ([`Moonshine::set_rehearing`],
    /// [`Moonshine::set_paced_rehearing`]).
    rehearing: stretch::Rehearing,
    /// The time bound of the copies at an utterance's own pace ([`Moonshine::set_extra_until`]).
    paced: judge::ExtraBound,
    /// Transcripts of each hearing scored under all hearings when choosing among them (0: the
    /// most confident hearing's, unscored; [`Moonshine::set_rehear_candidates`]).
    rehear_candidates: usize,
    /// At most this many hybrids of the candidates scored too ([`Moonshine::set_rehear_hybrids`]).
    rehear_hybrids: usize,
    /// Silence heard before each utterance, after it, and after a re-heard copy of it, samples
    /// ([`Moonshine::set_silence`]).
    lead: usize,
    trail: usize,
    rehear_trail: usize,
    /// A second model that scores the best candidates of a re-heard utterance
    /// ([`Moonshine::set_judge`]).
    judge: Option<Box<judge::WhisperJudge>>,
}

/// Shortest utterance transcribed (a quarter of a second).
const MIN_SAMPLES: usize = 16_000 / 4;

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
        let hidden_width = decoder_s
            .inputs()
            .iter()
            .find(|i| i.name() == "encoder_hidden_states")
            .and_then(|i| i.dtype().tensor_shape().map(|s| s[2]))
            .filter(|&w| w > 0)
            .unwrap_or(416) as usize;
        Ok(Self {
            encoder: encoder_s,
            decoder: decoder_s,
            tokenizer,
            layers,
            heads,
            head_dim,
            beam_width: 1,
            max_batch: 8,
            max_pad: 16_000,
            hidden_width,
            rehearing: stretch::Rehearing::default(),
            paced: judge::ExtraBound::default(),
            rehear_candidates: 0,
            rehear_hybrids: 0,
            lead: 0,
            trail: 0,
            rehear_trail: 0,
            judge: None,
        })
    }

    /// Beam width of the decoder search: 1 decodes greedily; wider beams keep that many partial
    /// transcripts each step and pick the best finished one by mean log-probability per token.
    pub fn set_beam_width(&mut self, width: usize) {
        self.beam_width = width.max(1);
    }

    pub fn beam_width(&self) -> usize {
        self.beam_width
    }

    /// Beam width and re-hearing as `speech` configures them (how the speech pool hears when it
    /// keeps up).
    pub fn configure(&mut self, speech: &sightline_settings::SpeechConfig) {
        self.set_beam_width(speech.beam_width);
        self.set_rehearing(&speech.rehear_stretches, speech.rehear_below);
        self.set_paced_rehearing(
            &speech.rehear_fast_stretches,
            speech.rehear_fast_above,
            &speech.rehear_slow_stretches,
            speech.rehear_slow_below,
        );
        self.set_rehear_candidates(speech.rehear_candidates);
        self.set_rehear_hybrids(speech.rehear_hybrids);
        let (lead, trail, rehear_trail) = speech.silence_samples();
        self.set_silence(lead, trail, rehear_trail);
    }

    /// Silence (zeros, in samples) each utterance is heard with before and after it. The model
    /// ends and begins words badly at the very edge of its input: an utterance cut close by VAD
    /// loses its first sound ("the" heard as "a") or has its last word guessed. Utterances that
    /// share a run are padded further at the end, up to the batching bound. A re-heard copy
    /// ([`Moonshine::set_rehearing`]) is heard with `rehear_trail` after it instead: a different
    /// ending as well as a different pace makes the copies differ more in where the model goes
    /// wrong.
    pub fn set_silence(&mut self, lead: usize, trail: usize, rehear_trail: usize) {
        (self.lead, self.trail, self.rehear_trail) = (lead, trail, rehear_trail);
    }

    /// The silence heard before each utterance, after it and after a re-heard copy, samples
    /// ([`Moonshine::set_silence`]).
    pub fn silence(&self) -> (usize, usize, usize) {
        (self.lead, self.trail, self.rehear_trail)
    }

    /// Most utterances transcribed in one run, and the most silence (in samples) an utterance is
    /// padded with to share a run with a longer one. The shipped ONNX export has no attention
    /// mask, so utterances of one run are made the same length by trailing silence; the bound keeps
    /// what the model hears close to the utterance alone (Moonshine is trained on unpadded audio).
    pub fn set_batching(&mut self, max_batch: usize, max_pad_samples: usize) {
        self.max_batch = max_batch.max(1);
        self.max_pad = max_pad_samples;
    }

    /// Transcribes one utterance (up to ~30 s of 16 kHz mono audio).
    pub fn transcribe(&mut self, samples: &[f32]) -> Result<Transcript, ModelError> {
        self.transcribe_batch(&[samples]).pop().expect("one result per utterance")
    }

    /// Utterances padded to one length (with the silence before and after them) through the
    /// encoder in one run: a row of its output for each.
    fn encode(&mut self, segs: &[&[f32]]) -> Result<Hidden, ModelError> {
        let err = run_err("moonshine");
        let (lead, trail) = (self.lead, self.trail);
        let len = segs.iter().map(|s| s.len()).max().unwrap_or(0) + lead + trail;
        let mut audio = vec![0f32; segs.len() * len];
        for (row, s) in audio.chunks_exact_mut(len).zip(segs) {
            row[lead..lead + s.len()].copy_from_slice(s);
        }
        let input = Tensor::from_array(([segs.len(), len], audio)).map_err(&err)?;
        let enc = self.encoder.run(ort::inputs!["input_values" => input]).map_err(&err)?;
        let (shape, hidden) = enc["last_hidden_state"].try_extract_tensor::<f32>().map_err(&err)?;
        Ok(Hidden { frames: shape[1] as usize, width: shape[2] as usize, data: hidden.to_vec() })
    }

    /// Each utterance heard once.
    fn hear(&mut self, segments: &[&[f32]], judged: Judged) -> Vec<Result<Heard, ModelError>> {
        let mut out: Vec<Option<Result<Heard, ModelError>>> = (0..segments.len()).map(|_| None).collect();
        let mut order: Vec<usize> = Vec::with_capacity(segments.len());
        for (i, s) in segments.iter().enumerate() {
            if s.len() < MIN_SAMPLES {
                out[i] =
                    Some(Err(ModelError::Input(format!("{} samples is too short to transcribe", s.len()))));
            } else {
                order.push(i);
            }
        }
        order.sort_by_key(|&i| segments[i].len());
        for group in length_groups(&order, |i| segments[i].len(), self.max_batch, self.max_pad) {
            let segs: Vec<&[f32]> = group.iter().map(|&i| segments[i]).collect();
            match self.transcribe_group(&segs, judged) {
                Ok(ts) => group.iter().zip(ts).for_each(|(&i, t)| out[i] = Some(Ok(t))),
                Err(e) => group.iter().for_each(|&i| out[i] = Some(Err(e.clone()))),
            }
        }
        out.into_iter().map(|r| r.expect("every utterance answered")).collect()
    }

    /// Beam search over utterances padded to one length: the encoder runs once on all of them,
    /// then each decoder step runs every live hypothesis of every utterance as one batch.
    fn transcribe_group(&mut self, segs: &[&[f32]], judged: Judged) -> Result<Vec<Heard>, ModelError> {
        let (lead, trail) = (self.lead, self.trail);
        let hidden = self.encode(segs)?;

        // Every live hypothesis is one row of a batch: one decoder run a step serves them all (the
        // shipped 8-bit decoder costs about the same per run at batch 4 as at batch 1). Caches
        // are kept per row: self-attention keys/values grow by one each step and are re-gathered
        // from each row's parent; the cross-attention (encoder) keys/values come from step 0, one
        // row per utterance, gathered for the rows of that utterance.
        let width = self.beam_width;
        let all: Vec<usize> = (0..segs.len()).collect();
        let empty = Cache { dims: [self.heads, 0, self.head_dim], data: Vec::new() };
        let first =
            self.decode(&vec![BOS; segs.len()], Some(&hidden), vec![empty; 2 * self.layers], None, &all)?;
        let enc_kv = first.encoder.ok_or_else(|| ModelError::Run {
            model: "moonshine",
            reason: "decoder returned no encoder keys/values".into(),
        })?;
        // What scores other transcripts under each hearing, should it be wanted.
        let judging = self.rehearing.any() && self.rehear_candidates > 0;
        let bos = judging.then(|| (first.log_probs.clone(), first.decoder.clone()));
        let (mut rows, mut kv) = (first.log_probs, first.decoder);
        let mut searches: Vec<Search> = segs
            .iter()
            .map(|s| Search {
                beams: vec![Hypothesis { log_prob: 0.0, prob_sum: 0.0, tokens: Vec::new() }],
                finished: Vec::new(),
                max_tokens: ((s.len() + lead + trail) as f32 / 16_000.0 * 6.5).ceil() as usize + 4,
                live: true,
                eos: EOS,
            })
            .collect();
        for step in 0.. {
            // Rows are grouped by utterance, in order, each live utterance's beams together.
            let (mut parents, mut row_seg, mut last) = (Vec::new(), Vec::new(), Vec::new());
            let mut at = 0;
            for (u, search) in searches.iter_mut().enumerate().filter(|(_, s)| s.live) {
                let n = search.beams.len();
                let kept = search.advance(&rows[at..at + n], width);
                if search.finished.len() >= width || search.beams.is_empty() || step + 1 >= search.max_tokens
                {
                    search.live = false;
                } else {
                    for (h, parent) in search.beams.iter().zip(kept) {
                        parents.push(at + parent);
                        row_seg.push(u);
                        last.push(*h.tokens.last().expect("a kept hypothesis has a token") as i64);
                    }
                }
                at += n;
            }
            if parents.is_empty() {
                break;
            }
            let past: Vec<Cache> = kv.iter().map(|c| c.gather(&parents)).collect();
            let next = self.decode(&last, None, past, Some(&enc_kv), &row_seg)?;
            (rows, kv) = (next.log_probs, next.decoder);
        }
        searches
            .into_iter()
            .enumerate()
            .map(|(u, s)| {
                // No hypothesis ended within the token budget: take the best unfinished one.
                let mut finished = s.finished;
                finished.extend(s.beams.into_iter().map(|h| (h.log_prob / h.tokens.len().max(1) as f32, h)));
                finished.sort_by(|a, b| b.0.total_cmp(&a.0));
                let mut finished = finished.into_iter().map(|(_, h)| h);
                let best = finished
                    .next()
                    .ok_or_else(|| ModelError::Run { model: "moonshine", reason: "no hypothesis".into() })?;
                let confidence =
                    if best.tokens.is_empty() { 0.0 } else { best.prob_sum / best.tokens.len() as f32 };
                let text = self.tokenizer.decode(&best.tokens);
                let wanted = judged == Judged::Always || confidence < self.rehearing.below;
                let judge = bos.as_ref().filter(|_| wanted).map(|(first, kv)| Judge {
                    enc_kv: enc_kv.iter().map(|c| c.gather(&[u])).collect(),
                    bos: kv.iter().map(|c| c.gather(&[u])).collect(),
                    first: first[u].clone(),
                });
                Ok(Heard {
                    best: Transcript { text, confidence, tokens: best.tokens },
                    others: finished.map(|h| h.tokens).collect(),
                    judge,
                })
            })
            .collect()
    }

    /// The merged decoder's inputs for `ids` (`steps` tokens a row; see [`Moonshine::decode`]).
    fn decoder_inputs(
        &self,
        ids: Vec<i64>,
        steps: usize,
        hidden: Option<&Hidden>,
        past: Vec<Cache>,
        enc_kv: Option<&[Cache]>,
        seg: &[usize],
    ) -> Result<DecoderInputs, ModelError> {
        let err = run_err("moonshine");
        let rows = ids.len() / steps.max(1);
        let name = |l: usize, k: &str| format!("past_key_values.{l}.{k}");
        let tensor = |c: Cache| -> Result<DynValue, ModelError> {
            let [a, b, d] = c.dims;
            Ok(Tensor::from_array(([rows, a, b, d], c.data)).map_err(&err)?.into_dyn())
        };
        let ids = Tensor::from_array(([rows, steps], ids)).map_err(&err)?;
        let use_cache = Tensor::from_array(([1usize], vec![enc_kv.is_some()])).map_err(&err)?;
        let hidden_rows = match hidden {
            Some(h) => {
                let size = h.frames * h.width;
                let mut data = Vec::with_capacity(rows * size);
                seg.iter().for_each(|&u| data.extend_from_slice(&h.data[u * size..(u + 1) * size]));
                Tensor::from_array(([rows, h.frames, h.width], data)).map_err(&err)?
            }
            None => {
                let w = self.hidden_width;
                Tensor::from_array(([rows, 1, w], vec![0f32; rows * w])).map_err(&err)?
            }
        };
        let mut inputs: DecoderInputs = vec![
            ("input_ids".into(), ids.into()),
            ("encoder_hidden_states".into(), hidden_rows.into()),
            ("use_cache_branch".into(), use_cache.into()),
        ];
        let empty = Cache { dims: [self.heads, 0, self.head_dim], data: Vec::new() };
        let mut past = past.into_iter();
        for l in 0..self.layers {
            for k in ["key", "value"] {
                let c = past
                    .next()
                    .ok_or_else(|| ModelError::Run { model: "moonshine", reason: "short cache".into() })?;
                let c = if c.data.is_empty() { empty.clone() } else { c };
                inputs.push((name(l, &format!("decoder.{k}")).into(), tensor(c)?.into()));
            }
            let (k, v) = match enc_kv {
                Some(e) => (e[2 * l].gather(seg), e[2 * l + 1].gather(seg)),
                None => (empty.clone(), empty.clone()),
            };
            inputs.push((name(l, "encoder.key").into(), tensor(k)?.into()));
            inputs.push((name(l, "encoder.value").into(), tensor(v)?.into()));
        }
        Ok(inputs)
    }

    /// One decoder run over a batch of hypotheses (one row each, `last` their last tokens, `seg`
    /// the utterance each belongs to): log-probabilities of each row's next token and the grown
    /// self-attention caches. The first step (no `enc_kv`, `hidden` given, one row per utterance)
    /// computes the cross-attention caches and returns them; later steps read those instead of
    /// the encoder's output, which the cached branch of the merged decoder ignores.
    fn decode(
        &mut self,
        last: &[i64],
        hidden: Option<&Hidden>,
        past: Vec<Cache>,
        enc_kv: Option<&[Cache]>,
        seg: &[usize],
    ) -> Result<DecoderStep, ModelError> {
        let err = run_err("moonshine");
        let rows = last.len();
        let inputs = self.decoder_inputs(last.to_vec(), 1, hidden, past, enc_kv, seg)?;
        let out = self.decoder.run(inputs).map_err(&err)?;
        let (shape, logits) = out["logits"].try_extract_tensor::<f32>().map_err(&err)?;
        let vocab = *shape.last().unwrap_or(&0) as usize;
        let per_row = logits.len().checked_div(rows).unwrap_or(0);
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
            Ok(Cache { dims, data: data.to_vec() })
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

/// Which hearings of a run keep their [`Judge`] (when re-hearing scores them): those unsure
/// enough to be re-heard (a first hearing), or all (the re-heard copies).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Judged {
    IfUnsure,
    Always,
}

/// The merged decoder's named inputs for one run.
type DecoderInputs = Vec<(std::borrow::Cow<'static, str>, ort::session::SessionInputValue<'static>)>;

/// One utterance heard once: its best transcript, the other finished ones (best first), and,
/// when it may be scored against other hearings, what scores transcripts under it.
struct Heard {
    best: Transcript,
    others: Vec<Vec<u32>>,
    judge: Option<Judge>,
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

/// A cache tensor held on the Rust side: rows of `dims` each (row-major).
#[derive(Clone)]
struct Cache {
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
        Cache { dims: self.dims, data }
    }
}

/// Groups of `order` (indices sorted by length, shortest first) that share a run: at most
/// `max_batch` each, the longest at most `max_pad` longer than the shortest.
pub(crate) fn length_groups(
    order: &[usize],
    len: impl Fn(usize) -> usize,
    max_batch: usize,
    max_pad: usize,
) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &i in order {
        match groups.last_mut() {
            Some(g) if g.len() < max_batch && len(i) <= len(g[0]) + max_pad => g.push(i),
            _ => groups.push(vec![i]),
        }
    }
    groups
}
