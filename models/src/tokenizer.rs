//! Turns token ids back into text using a `tokenizer.json` vocabulary: SentencePiece-style BPE
//! (`▁` marks a word start, `<0xNN>` pieces are raw bytes; Moonshine) or byte-level BPE (every
//! character of a piece stands for one byte, GPT-2's mapping; Whisper).

use crate::ModelError;
use std::path::Path;

pub struct TokenDecoder {
    pieces: Vec<String>,
    /// Byte-level BPE: a piece's characters map back to bytes through GPT-2's table.
    byte_level: bool,
}

/// GPT-2's byte-to-character table inverted: printable Latin-1 bytes stand for themselves, the
/// other 68 bytes for the characters from U+0100 up, in byte order.
fn byte_level_table() -> std::collections::HashMap<char, u8> {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    let mut next = 0u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (char::from(b), b)
            } else {
                next += 1;
                (char::from_u32(255 + next).expect("a valid code point"), b)
            }
        })
        .collect()
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
        let byte_level = json["decoder"]["type"].as_str() == Some("ByteLevel");
        Ok(Self { pieces, byte_level })
    }

    pub fn from_pieces(pieces: Vec<String>) -> Self {
        Self { pieces, byte_level: false }
    }

    /// Pieces in the vocabulary (one more than the highest token id).
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        if self.byte_level {
            return self.decode_byte_level(ids);
        }
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(p) = self.pieces.get(id as usize) else { continue };
            if p.starts_with('<') && p.ends_with('>') {
                if let Some(hex) = p.strip_prefix("<0x").and_then(|h| h.strip_suffix('>'))
                    && let Ok(b) = u8::from_str_radix(hex, 16)
                {
                    bytes.push(b);
                }
                continue; // special tokens (<s>, </s>, <unk>) carry no text
            }
            bytes.extend_from_slice(p.replace('▁', " ").as_bytes());
        }
        String::from_utf8_lossy(&bytes).trim().to_string()
    }

    /// Byte-level pieces; ids outside the vocabulary (the added special tokens) carry no text.
    fn decode_byte_level(&self, ids: &[u32]) -> String {
        static TABLE: std::sync::OnceLock<std::collections::HashMap<char, u8>> = std::sync::OnceLock::new();
        let table = TABLE.get_or_init(byte_level_table);
        let bytes: Vec<u8> = ids
            .iter()
            .filter_map(|&id| self.pieces.get(id as usize))
            .flat_map(|p| p.chars())
            .filter_map(|c| table.get(&c).copied())
            .collect();
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

    #[test]
    fn byte_level_pieces_map_back_to_utf8() {
        // "Ġ" is the space byte, "Ã©" the two bytes of "é" (GPT-2's table).
        let pieces = ["Ġcom", "itÃ©", "Ġsur", "Ċ"].map(String::from).to_vec();
        let d = TokenDecoder { pieces, byte_level: true };
        assert_eq!(d.decode(&[0, 1, 2]), "comité sur");
        assert_eq!(d.decode(&[0, 3, 2, 7]), "com\n sur");
        assert_eq!(byte_level_table().len(), 256, "every byte has its own character");
    }
}
