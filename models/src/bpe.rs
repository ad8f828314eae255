//! Byte-level BPE from a `tokenizer.json` (GPT-2's scheme, as CLIP and Whisper ship it): a word's
//! UTF-8 bytes mapped to printable characters, then adjacent pieces merged, lowest merge rank
//! first, until no adjacent pair is a merge; each piece is a vocabulary entry.

use crate::ModelError;
use std::collections::HashMap;
use std::path::Path;

/// The vocabulary and merge ranks of a byte-level BPE tokenizer.
pub(crate) struct BytePairs {
    pub(crate) vocab: HashMap<String, i64>,
    ranks: HashMap<(String, String), usize>,
    byte_chars: [char; 256],
}

impl BytePairs {
    /// `model.vocab` and `model.merges` of a `tokenizer.json` whose model is BPE.
    pub(crate) fn from_file(path: &Path) -> Result<Self, ModelError> {
        let err = |reason: String| ModelError::Tokenizer { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        Self::from_json(&json, path)
    }

    /// As [`BytePairs::from_file`], from the file already parsed (`path` names it in errors).
    pub(crate) fn from_json(json: &serde_json::Value, path: &Path) -> Result<Self, ModelError> {
        let err = |reason: String| ModelError::Tokenizer { path: path.to_path_buf(), reason };
        let model = &json["model"];
        if model["type"].as_str() != Some("BPE") {
            return Err(err("not a BPE tokenizer (model.type is not \"BPE\")".into()));
        }
        let vocab: HashMap<String, i64> = model["vocab"]
            .as_object()
            .ok_or_else(|| err("no model.vocab".into()))?
            .iter()
            .map(|(k, v)| v.as_i64().map(|id| (k.clone(), id)).ok_or_else(|| err(format!("bad id for {k}"))))
            .collect::<Result<_, _>>()?;
        let merges = model["merges"].as_array().ok_or_else(|| err("no model.merges".into()))?;
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            // "a b" (older files) or ["a", "b"].
            let pair = match m {
                serde_json::Value::String(s) => {
                    s.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string()))
                }
                serde_json::Value::Array(p) if p.len() == 2 => {
                    Some((p[0].as_str().unwrap_or("").to_string(), p[1].as_str().unwrap_or("").to_string()))
                }
                _ => None,
            };
            // Odd ranks for the listed merges, even ones left for those a file lacks (below).
            ranks.insert(pair.ok_or_else(|| err(format!("merge {rank} is not a pair")))?, 2 * rank + 1);
        }
        // A merge the file lacks: some ship without their first one (dropped as if it were the
        // `#version` header of a merges.txt; Whisper's lacks "Ġ t", so " the" would split
        // into "Ġ" and "the"). A two-character entry that no merge makes gets the merge of its two
        // characters, ranked where its id puts it among the listed merges' results (byte-level
        // vocabularies list merged pieces in merge order).
        let made: std::collections::HashSet<String> = ranks.keys().map(|(a, b)| format!("{a}{b}")).collect();
        let mut results: Vec<i64> =
            ranks.keys().filter_map(|(a, b)| vocab.get(&format!("{a}{b}")).copied()).collect();
        results.sort_unstable();
        for (piece, &id) in &vocab {
            let mut chars = piece.chars();
            let (Some(a), Some(b), None) = (chars.next(), chars.next(), chars.next()) else { continue };
            let (a, b) = (a.to_string(), b.to_string());
            if !made.contains(piece) && vocab.contains_key(&a) && vocab.contains_key(&b) {
                ranks.insert((a, b), 2 * results.partition_point(|&r| r < id));
            }
        }
        Ok(Self { vocab, ranks, byte_chars: byte_chars() })
    }

    /// The vocabulary ids of one pre-tokenized word (its bytes mapped and merged; `suffix`, as
    /// CLIP's `</w>`, appended to its last character first). A piece missing from the vocabulary
    /// is left out.
    pub(crate) fn ids(&self, word: &str, suffix: &str) -> Vec<i64> {
        let mut pieces: Vec<String> =
            word.bytes().map(|b| String::from(self.byte_chars[b as usize])).collect();
        if let Some(last) = pieces.last_mut() {
            last.push_str(suffix);
        }
        self.merge(pieces).iter().filter_map(|p| self.vocab.get(p).copied()).collect()
    }

    /// Adjacent pieces merged, lowest rank first, until no pair is a merge.
    fn merge(&self, mut pieces: Vec<String>) -> Vec<String> {
        loop {
            let best = pieces
                .windows(2)
                .filter_map(|w| {
                    self.ranks.get(&(w[0].clone(), w[1].clone())).map(|&r| (r, w[0].clone(), w[1].clone()))
                })
                .min();
            let Some((_, first, second)) = best else { return pieces };
            let mut merged = Vec::with_capacity(pieces.len());
            let mut i = 0;
            while i < pieces.len() {
                if i + 1 < pieces.len() && pieces[i] == first && pieces[i + 1] == second {
                    merged.push(format!("{first}{second}"));
                    i += 2;
                } else {
                    merged.push(pieces[i].clone());
                    i += 1;
                }
            }
            pieces = merged;
        }
    }
}

/// GPT-2's reversible map from bytes to printable characters (byte-level BPE works on these).
pub(crate) fn byte_chars() -> [char; 256] {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut out = ['\0'; 256];
    let mut next = 256;
    for b in 0..256u32 {
        out[b as usize] = if printable(b) {
            char::from_u32(b).unwrap_or('\0')
        } else {
            next += 1;
            char::from_u32(next - 1).unwrap_or('\0')
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_a_bijection_onto_printable_characters() {
        let m = byte_chars();
        assert_eq!(m[b'a' as usize], 'a');
        assert_eq!(m[b' ' as usize], 'Ġ');
        let mut seen: Vec<char> = m.to_vec();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 256);
        assert!(m.iter().all(|c| !c.is_whitespace() && !c.is_control()));
    }

    #[test]
    fn merges_apply_lowest_rank_first() {
        let piece = |s: &str| s.to_string();
        let vocab: HashMap<String, i64> = ["a", "b", "c", "ab", "bc", "abc", "Ġ", "Ġa"]
            .iter()
            .enumerate()
            .map(|(i, p)| (piece(p), i as i64))
            .collect();
        let ranks: HashMap<(String, String), usize> =
            [(("b", "c"), 0), (("a", "b"), 1), (("a", "bc"), 2), (("Ġ", "a"), 3)]
                .into_iter()
                .map(|((a, b), r)| ((piece(a), piece(b)), r))
                .collect();
        let bp = BytePairs { vocab, ranks, byte_chars: byte_chars() };
        // "bc" (rank 0) before "ab" (rank 1), then "a"+"bc".
        assert_eq!(bp.ids("abc", ""), vec![5]);
        assert_eq!(bp.ids("ab", ""), vec![3]);
        assert_eq!(bp.ids(" ab", ""), vec![6, 3], "the space byte is Ġ; a+b (rank 1) before Ġ+a (rank 3)");
        assert_eq!(bp.ids(" ac", ""), vec![7, 2], "Ġ+a where a+b is not there to take the a");
        assert_eq!(bp.ids("cab", ""), vec![2, 3]);
        assert_eq!(
            bp.ids("abc", "</w>"),
            vec![3],
            "c</w> is in no merge and not in the vocabulary: left out"
        );
    }

    #[test]
    fn a_first_merge_the_file_lacks_is_restored() {
        // Vocabulary a, b, c, "ab" (3), "abc" (4); merges list only "ab c": "a b" was dropped.
        let json = serde_json::json!({"model": {"type": "BPE",
            "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4, "bc": 5},
            "merges": ["ab c", "b c"]}});
        let bp = BytePairs::from_json(&json, Path::new("tokenizer.json")).unwrap();
        // "a b" ranks before "ab c" (its result's id is lower), so "abc" is one piece, not a, bc.
        assert_eq!(bp.ids("abc", ""), vec![4]);
        assert_eq!(bp.ids("ab", ""), vec![3]);
        assert_eq!(bp.ids("bc", ""), vec![5]);
    }
}
