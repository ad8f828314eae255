//! Whisper as a judge of transcripts another model wrote: a text turned into Whisper's tokens
//! (byte-level BPE, GPT-2's pre-tokenizer) and scored by forcing the decoder through them.

use super::Whisper;
use crate::ModelError;
use crate::bpe::BytePairs;

/// Whisper's text encoder: GPT-2's split (contractions, words, numbers, other symbols, each with
/// the space before it) and byte-level BPE over each piece.
pub(super) struct TextTokens {
    pairs: BytePairs,
    split: regex::Regex,
}

impl TextTokens {
    pub(super) fn new(pairs: BytePairs) -> Self {
        // GPT-2's pattern without its whitespace look-ahead, which only matters for runs of
        // whitespace; `encode` collapses those first.
        let split = regex::Regex::new(r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+")
            .expect("a valid pattern");
        Self { pairs, split }
    }

    /// The tokens of `text` as Whisper writes a transcript: whitespace collapsed, one space before
    /// the first word.
    pub(super) fn encode(&self, text: &str) -> Vec<u32> {
        let words = text.split_whitespace().collect::<Vec<_>>();
        if words.is_empty() {
            return Vec::new();
        }
        let clean = format!(" {}", words.join(" "));
        self.split
            .find_iter(&clean)
            .flat_map(|w| self.pairs.ids(w.as_str(), ""))
            .map(|id| id as u32)
            .collect()
    }
}

impl Whisper {
    /// As `speech` configures a judge of Moonshine's transcripts (`speech.rehear_judge_*`): the
    /// window it hears an utterance over. Scores one text over a second of silence, so that the
    /// judge's first real run (and what it is expected to cost, [`crate::Moonshine::set_extra_until`])
    /// is a warm one: a first run is slower (the runtime's allocations).
    pub fn configure_as_judge(&mut self, speech: &sightline_settings::SpeechConfig) {
        self.set_window(speech.rehear_judge_window_s);
        if let Err(e) = self.score_texts(&[0.0; 16_000], "en", &["a".to_string()]) {
            tracing::warn!(error = %e, "the judge's warm-up run failed");
        }
    }

    /// `text` in Whisper's tokens (as its transcripts write it: a space before the first word).
    pub fn text_tokens(&self, text: &str) -> Vec<u32> {
        self.text.encode(text)
    }

    /// How well `samples` (one utterance, 0.25 to 30 s) bear out each of `texts` spoken in `lang`:
    /// the mean probability of the text's tokens and of the end after them, with the decoder
    /// forced through them (all texts as rows of one decoder run), 0 for an empty text. The
    /// encoder hears the utterance once, padded to the window ([`Whisper::set_window`]).
    pub fn score_texts(
        &mut self,
        samples: &[f32],
        lang: &str,
        texts: &[String],
    ) -> Result<Vec<f32>, ModelError> {
        let lang_id = self
            .languages
            .iter()
            .find(|(c, _)| c == lang)
            .map(|(_, id)| *id)
            .ok_or_else(|| ModelError::Input(format!("Whisper does not know the language {lang:?}")))?;
        let tokens: Vec<Vec<u32>> = texts.iter().map(|t| self.text.encode(t)).collect();
        let scored: Vec<usize> = (0..texts.len()).filter(|&i| !tokens[i].is_empty()).collect();
        let mut out = vec![0f32; texts.len()];
        if scored.is_empty() {
            return Ok(out);
        }
        let enc = self.encode(&[samples])?;
        let rows = scored.len();
        let all = vec![0; rows];
        let (ck, cv) = (super::gather_rows(&enc.cross_k, &all)?, super::gather_rows(&enc.cross_v, &all)?);
        // The prompt and every row's tokens in one run (the shorter rows padded with the end
        // token: attention is causal, so what follows a row's tokens does not change their
        // scores). Position 3 (the prompt's last) predicts a row's first token, position 3 + j
        // its token j + 1, or the end after its last.
        let longest = scored.iter().map(|&i| tokens[i].len()).max().unwrap_or(0);
        let n = 4 + longest;
        let mut ids = Vec::with_capacity(rows * n);
        for &i in &scored {
            ids.extend(self.prompt(lang_id));
            ids.extend(tokens[i].iter().map(|&t| t as i64));
            ids.extend(std::iter::repeat_n(self.eot, longest - tokens[i].len()));
        }
        let (logits, ..) = self.run_decoder(ids, n, self.empty_cache(rows)?, &ck, &cv, "all_logits")?;
        let vocab = logits.len() / (rows * n).max(1);
        if vocab == 0 || logits.len() != rows * n * vocab {
            return Err(ModelError::Run { model: "whisper", reason: "unexpected logits".into() });
        }
        let mut sums = vec![0f32; rows];
        for (r, &i) in scored.iter().enumerate() {
            let t = &tokens[i];
            for at in 0..=t.len() {
                let target = t.get(at).map_or(self.eot, |&x| x as i64) as usize;
                let pos = r * n + 3 + at;
                let lp = self.masked_log_probs(&logits[pos * vocab..(pos + 1) * vocab], at == 0)?;
                sums[r] += lp.get(target).map_or(0.0, |p| p.exp());
            }
        }
        for (r, &i) in scored.iter().enumerate() {
            out[i] = sums[r] / (tokens[i].len() + 1) as f32;
        }
        Ok(out)
    }
}
