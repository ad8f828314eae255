//! Beam search shared by the speech decoders (Moonshine and Whisper): the hypotheses of one
//! utterance, one step of the search, and the guards against a decoder that loops.

use crate::ModelError;

pub(crate) fn log_softmax(row: &[f32]) -> Result<Vec<f32>, ModelError> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return Err(ModelError::Run { model: "speech-to-text", reason: "non-finite logits".into() });
    }
    let log_denom = row.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
    Ok(row.iter().map(|l| l - max - log_denom).collect())
}

/// One utterance's beam search: live hypotheses, finished ones with their scores, its token budget.
pub(crate) struct Search {
    pub(crate) beams: Vec<Hypothesis>,
    pub(crate) finished: Vec<(f32, Hypothesis)>,
    pub(crate) max_tokens: usize,
    pub(crate) live: bool,
    /// The token that ends a transcript.
    pub(crate) eos: i64,
}

impl Search {
    /// One step: the best `width` continuations of the beams (`rows` their next-token
    /// log-probabilities, one per beam) become the beams; continuations that end are finished.
    /// Returns each new beam's parent (an index into the old beams).
    pub(crate) fn advance(&mut self, rows: &[Vec<f32>], width: usize) -> Vec<usize> {
        // (score, parent, token, probability): the best `width` continuations of each beam.
        let mut next: Vec<(f32, usize, u32, f32)> = Vec::with_capacity(self.beams.len() * width);
        for (b, (beam, row)) in self.beams.iter().zip(rows).enumerate() {
            // A few more than the width, for those that would repeat what the beam already said.
            let allowed = top_k(row, width + 2).into_iter().filter(|&(t, _)| !repeats(&beam.tokens, t));
            for (token, lp) in allowed.take(width) {
                next.push((beam.log_prob + lp, b, token, lp.exp()));
            }
        }
        next.sort_by(|a, c| c.0.total_cmp(&a.0));
        let (mut kept, mut parents) = (Vec::with_capacity(width), Vec::with_capacity(width));
        for (score, parent, token, prob) in next {
            let p = &self.beams[parent];
            if token as i64 == self.eos {
                // Mean log-probability per token (the end token included), so short and long
                // transcripts compete fairly.
                self.finished
                    .push((score / (p.tokens.len() + 1) as f32, Hypothesis { log_prob: score, ..p.clone() }));
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
        self.beams = kept;
        parents
    }
}

/// A transcript may not say the same run of this many tokens twice: the decoders' failure on
/// noise or a cut word is to loop ("the city library will close in March the city library will
/// close in ..." until the token budget runs out); speech that repeats five tokens is rarer.
const NO_REPEAT: usize = 5;

/// Whether `next` after `tokens` would end a run of [`NO_REPEAT`] tokens that `tokens` holds already.
pub(crate) fn repeats(tokens: &[u32], next: u32) -> bool {
    if tokens.len() < NO_REPEAT {
        return false;
    }
    let tail = &tokens[tokens.len() - (NO_REPEAT - 1)..];
    tokens.windows(NO_REPEAT).any(|w| w[NO_REPEAT - 1] == next && w[..NO_REPEAT - 1] == *tail)
}

/// A partial transcript in the beam: its tokens and their summed log-probability and probability.
#[derive(Clone)]
pub(crate) struct Hypothesis {
    pub(crate) log_prob: f32,
    pub(crate) prob_sum: f32,
    pub(crate) tokens: Vec<u32>,
}

/// The `k` largest entries of `row` as (index, value), largest first (ties: lower index first).
pub(crate) fn top_k(row: &[f32], k: usize) -> Vec<(u32, f32)> {
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
    use super::{Hypothesis, Search, repeats, top_k};

    #[test]
    fn a_beam_does_not_say_five_tokens_twice() {
        let said = [7, 8, 9, 10, 11, 3, 7, 8, 9, 10];
        assert!(repeats(&said, 11), "7 8 9 10 11 again");
        assert!(!repeats(&said, 12));
        assert!(!repeats(&[7, 7, 7, 7], 7), "too short to hold a run of five and its repeat");
        // The loop's token is the model's favourite; the beam takes the next best instead.
        let mut s = Search {
            beams: vec![Hypothesis { log_prob: 0.0, prob_sum: 0.0, tokens: said.to_vec() }],
            finished: Vec::new(),
            max_tokens: 40,
            live: true,
            eos: 2,
        };
        let mut row = vec![-9.0f32; 16];
        (row[11], row[2], row[5]) = (-0.1, -2.0, -3.0);
        s.advance(&[row], 1);
        assert!(s.beams.is_empty() && s.finished.len() == 1, "the end token, second best, won");
    }

    #[test]
    fn top_k_is_sorted_and_prefers_earlier_ties() {
        assert_eq!(top_k(&[0.1, 0.5, 0.3, 0.5, -1.0], 3), vec![(1, 0.5), (3, 0.5), (2, 0.3)]);
        assert_eq!(top_k(&[2.0], 4), vec![(0, 2.0)]);
    }
}
