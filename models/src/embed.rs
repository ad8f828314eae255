//! Text embeddings: all-MiniLM-L6-v2 (384-d) behind BERT's WordPiece tokenizer, mean-pooled over
//! the attention mask and L2-normalised, so a dot product is a cosine similarity. Transcripts, OCR
//! lines and labels are embedded with it for search.

use crate::runtime::run_err;
use crate::{ModelError, Runtime};
use ort::session::Session;
use ort::value::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use unicode_normalization::UnicodeNormalization;

pub const TEXT_DIM: usize = 384;

/// BERT's uncased WordPiece tokenizer, read from a Hugging Face `tokenizer.json`.
pub struct WordPiece {
    vocab: HashMap<String, i64>,
    unk: i64,
    cls: i64,
    sep: i64,
    max_chars_per_word: usize,
}

impl WordPiece {
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let err = |reason: String| ModelError::Tokenizer { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        let model = &json["model"];
        if model["type"] != "WordPiece" {
            return Err(err(format!("expected a WordPiece model, found {}", model["type"])));
        }
        let vocab: HashMap<String, i64> = model["vocab"]
            .as_object()
            .ok_or_else(|| err("no model.vocab".into()))?
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
            .collect();
        let id = |t: &str| vocab.get(t).copied().ok_or_else(|| err(format!("vocabulary lacks {t}")));
        Ok(Self {
            unk: id("[UNK]")?,
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            max_chars_per_word: model["max_input_chars_per_word"].as_u64().unwrap_or(100) as usize,
            vocab,
        })
    }

    /// Token ids with `[CLS]` … `[SEP]`, truncated to `max_len` tokens in all.
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<i64> {
        let mut ids = vec![self.cls];
        'words: for word in pre_tokenize(&normalize(text)) {
            for id in self.word_pieces(&word) {
                if ids.len() + 1 >= max_len {
                    break 'words;
                }
                ids.push(id);
            }
        }
        ids.push(self.sep);
        ids
    }

    fn word_pieces(&self, word: &str) -> Vec<i64> {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > self.max_chars_per_word {
            return vec![self.unk];
        }
        let mut out = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while start < end {
                let piece: String = chars[start..end].iter().collect();
                let key = if start > 0 { format!("##{piece}") } else { piece };
                if let Some(&id) = self.vocab.get(&key) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => out.push(id),
                None => return vec![self.unk], // a word with no segmentation is one unknown token
            }
            start = end;
        }
        out
    }
}

/// BERT normalisation: drop control characters, whitespace to spaces, spaces around CJK
/// ideographs, lowercase, strip accents.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\0' || c == '\u{fffd}' || (c.is_control() && !c.is_whitespace()) {
            continue;
        }
        if c.is_whitespace() {
            out.push(' ');
        } else if is_cjk(c) {
            out.push(' ');
            out.push(c);
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out.to_lowercase().nfd().filter(|c| !is_combining_mark(*c)).collect()
}

fn is_combining_mark(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c as u32, 0x2000..=0x206F | 0x3000..=0x303F | 0xFF01..=0xFF0F | 0x00A1..=0x00BF)
}

/// Splits on whitespace, and makes every punctuation character a word of its own.
fn pre_tokenize(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c.is_whitespace() || is_punctuation(c) {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            if is_punctuation(c) {
                words.push(c.to_string());
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// all-MiniLM-L6-v2 sentence embeddings.
pub struct TextEmbedder {
    session: Session,
    tokenizer: WordPiece,
    max_tokens: usize,
    path: PathBuf,
}

impl TextEmbedder {
    pub fn load(rt: &Runtime, model: &Path, tokenizer: &Path, threads: usize) -> Result<Self, ModelError> {
        Ok(Self {
            session: rt.session(model, threads)?,
            tokenizer: WordPiece::from_file(tokenizer)?,
            max_tokens: 128,
            path: model.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One unit-length 384-d vector per text, computed in one batch padded to the longest text.
    pub fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let err = run_err("minilm");
        let encoded: Vec<Vec<i64>> =
            texts.iter().map(|t| self.tokenizer.encode(t, self.max_tokens)).collect();
        let (b, t) = (encoded.len(), encoded.iter().map(Vec::len).max().unwrap_or(2));
        let mut ids = vec![0i64; b * t];
        let mut mask = vec![0i64; b * t];
        for (i, e) in encoded.iter().enumerate() {
            ids[i * t..i * t + e.len()].copy_from_slice(e);
            mask[i * t..i * t + e.len()].fill(1);
        }
        let types = vec![0i64; b * t];
        let shape = [b, t];
        let out = self
            .session
            .run(ort::inputs![
                "input_ids" => Tensor::from_array((shape, ids)).map_err(&err)?,
                "attention_mask" => Tensor::from_array((shape, mask.clone())).map_err(&err)?,
                "token_type_ids" => Tensor::from_array((shape, types)).map_err(&err)?,
            ])
            .map_err(&err)?;
        let (dims, hidden) = out["last_hidden_state"].try_extract_tensor::<f32>().map_err(&err)?;
        let d = *dims.last().unwrap_or(&0) as usize;
        if d != TEXT_DIM {
            return Err(ModelError::Run {
                model: "minilm",
                reason: format!("hidden size {d}, expected {TEXT_DIM}"),
            });
        }
        let mut vectors = Vec::with_capacity(b);
        for i in 0..b {
            let mut v = vec![0f32; d];
            let mut n = 0f32;
            for j in 0..t {
                if mask[i * t + j] == 1 {
                    let row = &hidden[(i * t + j) * d..(i * t + j + 1) * d];
                    v.iter_mut().zip(row).for_each(|(a, x)| *a += x);
                    n += 1.0;
                }
            }
            v.iter_mut().for_each(|a| *a /= n.max(1.0));
            normalize_l2(&mut v);
            vectors.push(v);
        }
        Ok(vectors)
    }
}

pub fn normalize_l2(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_and_splitting() {
        assert_eq!(normalize("Café\tNEWS"), "cafe news");
        assert_eq!(pre_tokenize("hello, world!"), vec!["hello", ",", "world", "!"]);
        assert_eq!(pre_tokenize("  a  b "), vec!["a", "b"]);
    }
}
