//! Moonshine speech-to-text: an encoder over raw 16 kHz audio and a merged decoder with a
//! key/value cache, decoded greedily.

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
        Ok(Self { encoder: encoder_s, decoder: decoder_s, tokenizer, layers, heads, head_dim })
    }

    /// Transcribes one utterance (up to ~30 s of 16 kHz mono audio).
    pub fn transcribe(&mut self, samples: &[f32]) -> Result<Transcript, ModelError> {
        let err = run_err("moonshine");
        if samples.len() < 16_000 / 4 {
            return Err(ModelError::Input(format!("{} samples is too short to transcribe", samples.len())));
        }
        let input = Tensor::from_array(([1usize, samples.len()], samples.to_vec())).map_err(&err)?;
        let mut enc = self.encoder.run(ort::inputs!["input_values" => input]).map_err(&err)?;
        let hidden = enc.remove("last_hidden_state").ok_or_else(|| ModelError::Run {
            model: "moonshine",
            reason: "encoder returned no last_hidden_state".into(),
        })?;
        drop(enc);

        // Cache: the decoder's self-attention keys/values grow by one each step; the cross-
        // attention (encoder) keys/values are computed on the first step and then kept.
        let name = |l: usize, k: &str| format!("past_key_values.{l}.{k}");
        let empty = || {
            Tensor::<f32>::from_array(([1usize, self.heads, 0, self.head_dim], Vec::new()))
                .map(|t| t.into_dyn())
        };
        let mut dec_kv: Vec<DynValue> = Vec::with_capacity(self.layers * 2);
        let mut enc_kv: Vec<DynValue> = Vec::with_capacity(self.layers * 2);
        for _ in 0..self.layers * 2 {
            dec_kv.push(empty().map_err(&err)?);
            enc_kv.push(empty().map_err(&err)?);
        }

        let max_tokens = (samples.len() as f32 / 16_000.0 * 6.5).ceil() as usize + 4;
        let mut tokens = Vec::new();
        let mut prob_sum = 0f32;
        let mut last = BOS;
        for step in 0..max_tokens {
            let ids = Tensor::from_array(([1usize, 1], vec![last])).map_err(&err)?;
            let use_cache = Tensor::from_array(([1usize], vec![step > 0])).map_err(&err)?;
            let mut inputs: Vec<(std::borrow::Cow<str>, ort::session::SessionInputValue)> = vec![
                ("input_ids".into(), ids.into()),
                ("encoder_hidden_states".into(), (&hidden).into()),
                ("use_cache_branch".into(), use_cache.into()),
            ];
            let mut dec_iter = dec_kv.drain(..);
            for l in 0..self.layers {
                inputs.push((name(l, "decoder.key").into(), dec_iter.next().unwrap().into()));
                inputs.push((name(l, "decoder.value").into(), dec_iter.next().unwrap().into()));
                inputs.push((name(l, "encoder.key").into(), (&enc_kv[2 * l]).into()));
                inputs.push((name(l, "encoder.value").into(), (&enc_kv[2 * l + 1]).into()));
            }
            drop(dec_iter);
            let mut out = self.decoder.run(inputs).map_err(&err)?;
            let (shape, logits) = out["logits"].try_extract_tensor::<f32>().map_err(&err)?;
            let vocab = *shape.last().unwrap_or(&0) as usize;
            let row = &logits[logits.len() - vocab..];
            let (best, &max) = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .ok_or_else(|| ModelError::Run { model: "moonshine", reason: "empty logits".into() })?;
            let denom: f32 = row.iter().map(|l| (l - max).exp()).sum();
            let prob = 1.0 / denom;
            let mut take = |key: String| {
                out.remove(&key).ok_or_else(|| ModelError::Run {
                    model: "moonshine",
                    reason: format!("decoder returned no {key}"),
                })
            };
            for l in 0..self.layers {
                dec_kv.push(take(format!("present.{l}.decoder.key"))?);
                dec_kv.push(take(format!("present.{l}.decoder.value"))?);
                if step == 0 {
                    enc_kv[2 * l] = take(format!("present.{l}.encoder.key"))?;
                    enc_kv[2 * l + 1] = take(format!("present.{l}.encoder.value"))?;
                }
            }
            if best as i64 == EOS {
                break;
            }
            tokens.push(best as u32);
            prob_sum += prob;
            last = best as i64;
        }
        let confidence = if tokens.is_empty() { 0.0 } else { prob_sum / tokens.len() as f32 };
        Ok(Transcript { text: self.tokenizer.decode(&tokens), confidence, tokens })
    }
}
