//! Turns token ids back into text using a `tokenizer.json` vocabulary (SentencePiece-style BPE:
//! `▁` marks a word start, `<0xNN>` pieces are raw bytes).

use crate::ModelError;
use std::path::Path;

pub struct TokenDecoder {
    pieces: Vec<String>,
}

impl TokenDecoder {
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let err = |reason: String| ModelError::Tokenizer { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        let vocab = json["model"]["vocab"].as_object().ok_or_else(|| err("no model.vocab".into()))?;
        let mut pieces = vec![String::new(); vocab.len()];
        for (piece, id) in vocab {
            let id = id.as_u64().ok_or_else(|| err(format!("bad id for {piece}")))? as usize;
            if id >= pieces.len() {
                pieces.resize(id + 1, String::new());
            }
            pieces[id] = piece.clone();
        }
        Ok(Self { pieces })
    }

    pub fn from_pieces(pieces: Vec<String>) -> Self {
        Self { pieces }
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(p) = self.pieces.get(id as usize) else { continue };
            if p.starts_with('<') && p.ends_with('>') {
                if let Some(hex) = p.strip_prefix("<0x").and_then(|h| h.strip_suffix('>')) {
                    if let Ok(b) = u8::from_str_radix(hex, 16) {
                        bytes.push(b);
                    }
                }
                continue; // special tokens (<s>, </s>, <unk>) carry no text
            }
            bytes.extend_from_slice(p.replace('▁', " ").as_bytes());
        }
        String::from_utf8_lossy(&bytes).trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_pieces_and_bytes() {
        let pieces = ["<unk>", "<s>", "</s>", "▁hello", "▁wor", "ld", "<0xC3>", "<0xA9>", "!"]
            .map(String::from)
            .to_vec();
        let d = TokenDecoder::from_pieces(pieces);
        assert_eq!(d.decode(&[1, 3, 4, 5, 8, 2]), "hello world!");
        assert_eq!(d.decode(&[3, 6, 7]), "helloé");
        assert_eq!(d.decode(&[999]), "");
    }
}
