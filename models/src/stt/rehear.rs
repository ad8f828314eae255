//! Re-hearing: an unsure utterance heard again at other paces, and the transcript its hearings
//! agree on kept ([`Moonshine::set_rehearing`], [`Moonshine::set_rehear_candidates`]).

use super::judge::{ExtraBound, JudgeStats, WhisperJudge};
use super::stretch::{rehear_factors, stretch};
use super::{BOS, Cache, EOS, Heard, Judged, Moonshine, Transcript};
use crate::ModelError;
use crate::runtime::run_err;
use crate::search::log_softmax;

impl Moonshine {
    /// Re-hearing: an utterance whose transcript's confidence is below `below` is heard again
    /// resampled to each of `stretches` times its length (1.1: a tenth slower and lower, 0.9 a
    /// tenth faster and higher), and one of the transcripts is kept. The model
    /// mishears a voice it handles badly in different places at a slightly different pace and
    /// pitch, and is surer where it hears right. Costs one more transcription per stretch for each
    /// utterance re-heard; none (empty, or `below` 0) hears each utterance once. Which transcript
    /// is kept: [`Moonshine::set_rehear_candidates`].
    pub fn set_rehearing(&mut self, stretches: &[f32], below: f32) {
        self.rehearing.stretches = rehear_factors(stretches);
        self.rehearing.below = below;
    }

    /// Speech off the ordinary pace heard again at more stretches: an utterance re-heard
    /// ([`Moonshine::set_rehearing`]) whose first transcript runs faster than `fast_above`
    /// letters (and digits) a second of its audio is heard at each of `fast` too, and one slower
    /// than `slow_below` at each of `slow`. Moonshine mishears fast and slow speech more than
    /// speech at an ordinary pace, and a copy brought nearer that pace hears it better; speech
    /// at that pace gains little from such a copy, so only speech off it pays for one. Empty:
    /// none.
    pub fn set_paced_rehearing(&mut self, fast: &[f32], fast_above: f32, slow: &[f32], slow_below: f32) {
        let r = &mut self.rehearing;
        (r.fast, r.fast_above) = (rehear_factors(fast), fast_above);
        (r.slow, r.slow_below) = (rehear_factors(slow), slow_below);
    }

    /// The stretches fast and slow speech is heard at too ([`Moonshine::set_paced_rehearing`]).
    pub fn paced_rehearing(&self) -> (&[f32], &[f32]) {
        (&self.rehearing.fast, &self.rehearing.slow)
    }

    /// How a re-heard utterance's transcript is chosen among its hearings. 0: the most confident
    /// hearing's, as it heard it. n: the best n finished transcripts of each hearing's beam are
    /// each scored under every hearing (the decoder forced through every candidate at once: one
    /// run a hearing), with their hybrids ([`Moonshine::set_rehear_hybrids`]), and the one with
    /// the highest mean token probability (the end token included) over all hearings is kept.
    /// A hearing favours its own transcript; the hearings together favour what they agree on,
    /// which is more often what was said.
    pub fn set_rehear_candidates(&mut self, n: usize) {
        self.rehear_candidates = n;
    }

    /// Candidates per hearing ([`Moonshine::set_rehear_candidates`]).
    pub fn rehear_candidates(&self) -> usize {
        self.rehear_candidates
    }

    /// With candidates scored ([`Moonshine::set_rehear_candidates`]), at most `n` hybrids of them
    /// are scored too: one candidate with one stretch where it differs from another (the tokens
    /// the two have in common paired as their longest common subsequence) taken from the other,
    /// the best-scored candidates' hybrids first. Where one hearing got the start right and
    /// another the end, a hybrid has both. 0: none. Costs one more decoder run a hearing, over
    /// `n` rows at most.
    pub fn set_rehear_hybrids(&mut self, n: usize) {
        self.rehear_hybrids = n;
    }

    /// The bound on hybrids scored ([`Moonshine::set_rehear_hybrids`]).
    pub fn rehear_hybrids(&self) -> usize {
        self.rehear_hybrids
    }

    /// A judge for what the hearings agree on ([`Moonshine::set_rehear_candidates`]): Whisper
    /// hears the utterance once and scores the `top` best-scored candidates (decoder forced
    /// through each, the end included); each one's score becomes `1 - weight` times the
    /// hearings' mean plus `weight` times Whisper's, and the best of them is kept. A second model
    /// mishears in other places than the first, so where the hearings of one model agree on the
    /// same mistake the judge can outvote them. None (or weight 0): the hearings alone. Costs one
    /// Whisper encoder run over its window and one decoder run over the candidates, for each
    /// utterance scored; [`Moonshine::set_extra_until`] bounds when it may still run.
    pub fn set_judge(&mut self, judge: Option<crate::Whisper>, weight: f32, top: usize) {
        self.judge = judge.map(|whisper| {
            Box::new(WhisperJudge {
                window: whisper.window(),
                whisper,
                weight: weight.clamp(0.0, 1.0),
                top: top.max(2),
                bound: ExtraBound::default(),
            })
        });
    }

    /// The judge, taken out ([`Moonshine::set_judge`]): the hearings alone from here on.
    pub fn take_judge(&mut self) -> Option<crate::Whisper> {
        self.judge.take().map(|j| j.whisper)
    }

    /// The judge's Whisper, lent for other work between transcriptions (one Whisper loaded where
    /// the same model also identifies languages and hears the other ones). The judge hears over
    /// the window the Whisper had when it was set, whatever the window is set to meanwhile.
    pub fn judge_whisper_mut(&mut self) -> Option<&mut crate::Whisper> {
        self.judge.as_mut().map(|j| &mut j.whisper)
    }

    /// [`Moonshine::judge_whisper_mut`], to look at.
    pub fn judge_whisper(&self) -> Option<&crate::Whisper> {
        self.judge.as_ref().map(|j| &j.whisper)
    }

    /// The window the judge hears over, samples ([`Moonshine::judge_whisper_mut`]).
    pub fn judge_window(&self) -> Option<usize> {
        self.judge.as_ref().map(|j| j.window)
    }

    /// The time by which extra work must have finished (None: no bound): the copies heard at an
    /// utterance's own pace ([`Moonshine::set_paced_rehearing`]) and the judge. Each runs only
    /// while its recent cost (the longest of its last runs, decaying) still fits before it;
    /// otherwise the hearings heard so far stand, counted in [`JudgeStats::no_room`]. A live pool
    /// sets it from the room its lag target leaves, so extra work never makes a batch late.
    pub fn set_extra_until(&mut self, until: Option<std::time::Instant>) {
        if let Some(j) = self.judge.as_mut() {
            j.bound.until = until;
        }
        self.paced.until = until;
    }

    /// Utterances heard at their own pace and left without for want of time
    /// ([`Moonshine::set_paced_rehearing`], `judged` counting those heard), and the time taken.
    pub fn paced_stats(&self) -> JudgeStats {
        self.paced.stats
    }

    /// Utterances judged and left unjudged for want of time since the judge was set.
    pub fn judge_stats(&self) -> JudgeStats {
        self.judge.as_ref().map(|j| j.bound.stats).unwrap_or_default()
    }

    /// The stretches re-heard and the confidence below which ([`Moonshine::set_rehearing`]).
    pub fn rehearing(&self) -> (&[f32], f32) {
        (&self.rehearing.stretches, self.rehearing.below)
    }

    /// Transcribes several utterances (of one stream or many), one result each, in order.
    /// Utterances of similar length (within the padding bound) share encoder and decoder runs:
    /// every hypothesis of every utterance is one row of the decoder's batch, so a step serves
    /// them all.
    /// With re-hearing on ([`Moonshine::set_rehearing`]), the utterances heard again share runs too.
    pub fn transcribe_batch(&mut self, segments: &[&[f32]]) -> Vec<Result<Transcript, ModelError>> {
        let first = self.hear(segments, Judged::IfUnsure);
        if !self.rehearing.any() {
            return first.into_iter().map(|h| h.map(|h| h.best)).collect();
        }
        // (utterance, stretched audio) for each utterance heard with too little confidence, and
        // the stretches of its pace, for each one off the ordinary pace.
        let (mut again, mut paced) = (Vec::new(), Vec::new());
        for (i, h) in first.iter().enumerate() {
            let Ok(h) = h else { continue };
            let (main, own) = self.rehearing.stretches_for(segments[i].len(), &h.best);
            again.extend(main.into_iter().map(|k| (i, stretch(segments[i], k))));
            if !own.is_empty() {
                paced.push((i, own));
            }
        }
        let mut reheard = self.hear_copies(&again);
        // The copies at the utterances' own pace are extra work: as many as still fit before the
        // bound, their time apart from the batch's forecast.
        let fit = self.paced.fits(paced.len());
        self.paced.skipped(paced.len() - fit);
        let extra: Vec<(usize, Vec<f32>)> = paced[..fit]
            .iter()
            .flat_map(|(i, ks)| ks.iter().map(|&k| (*i, stretch(segments[*i], k))))
            .collect();
        if fit > 0 {
            let started = std::time::Instant::now();
            reheard.extend(self.hear_copies(&extra));
            self.paced.ran(fit, started.elapsed());
        }
        again.extend(extra);
        // Every hearing of each utterance re-heard: the first, then its copies.
        let mut copies: Vec<Vec<Heard>> = (0..segments.len()).map(|_| Vec::new()).collect();
        let mut out: Vec<Result<Transcript, ModelError>> = Vec::with_capacity(segments.len());
        for (i, h) in first.into_iter().enumerate() {
            match h {
                Ok(h) if h.best.confidence < self.rehearing.below => {
                    out.push(Ok(h.best.clone()));
                    copies[i].push(h);
                }
                h => out.push(h.map(|h| h.best)),
            }
        }
        for ((i, _), heard) in again.iter().zip(reheard) {
            if let Ok(h) = heard {
                copies[*i].push(h);
            }
        }
        for (i, heard) in copies.iter().enumerate().filter(|(_, c)| c.len() > 1) {
            let chosen = if self.rehear_candidates == 0 {
                heard.iter().map(|h| h.best.clone()).max_by(|a, b| a.confidence.total_cmp(&b.confidence))
            } else {
                match self.agree(heard, segments[i]) {
                    Ok(t) => Some(t),
                    // The hearings stand; keep the most confident of them.
                    Err(e) => {
                        tracing::warn!(error = %e, "scoring re-heard transcripts failed");
                        heard
                            .iter()
                            .map(|h| h.best.clone())
                            .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
                    }
                }
            };
            if let Some(t) = chosen {
                out[i] = Ok(t);
            }
        }
        out
    }

    /// Each of `copies` (utterance, stretched audio) heard, with the silence after a re-heard copy.
    fn hear_copies(&mut self, copies: &[(usize, Vec<f32>)]) -> Vec<Result<Heard, ModelError>> {
        if copies.is_empty() {
            return Vec::new();
        }
        let segs: Vec<&[f32]> = copies.iter().map(|(_, a)| a.as_slice()).collect();
        let trail = std::mem::replace(&mut self.trail, self.rehear_trail);
        let heard = self.hear(&segs, Judged::Always);
        self.trail = trail;
        heard
    }

    /// The transcript the hearings of one utterance agree on best. The best few transcripts
    /// of each hearing ([`Moonshine::set_rehear_candidates`]) are each scored under every hearing
    /// (the decoder forced through its tokens and the end), and so are hybrids of them
    /// ([`Moonshine::set_rehear_hybrids`]): one transcript with one stretch where it differs from
    /// another taken from the other. The one with the highest mean token probability over all
    /// hearings is kept, that mean its confidence. A hearing's own best transcript is favoured by
    /// that hearing alone; scored by all of them, what the copies agree on wins, and a hybrid
    /// wins where each hearing got a different part right.
    fn agree(&mut self, heard: &[Heard], samples: &[f32]) -> Result<Transcript, ModelError> {
        let mut cands: Vec<Vec<u32>> = Vec::new();
        for h in heard {
            for t in std::iter::once(&h.best.tokens).chain(&h.others).take(self.rehear_candidates) {
                if !t.is_empty() && !cands.contains(t) {
                    cands.push(t.clone());
                }
            }
        }
        if cands.is_empty() {
            return Ok(heard[0].best.clone());
        }
        let mut mean = self.judged(heard, &cands)?;
        if self.rehear_hybrids > 0 && cands.len() > 1 {
            // The best-scored transcripts' hybrids first, up to the bound.
            let mut order: Vec<usize> = (0..cands.len()).collect();
            order.sort_by(|&a, &b| mean[b].total_cmp(&mean[a]));
            let mut mixed: Vec<Vec<u32>> = Vec::new();
            'pairs: for &a in &order {
                for &b in order.iter().filter(|&&b| b != a) {
                    for h in hybrids(&cands[a], &cands[b]) {
                        if !h.is_empty() && !cands.contains(&h) && !mixed.contains(&h) {
                            mixed.push(h);
                            if mixed.len() == self.rehear_hybrids {
                                break 'pairs;
                            }
                        }
                    }
                }
            }
            if !mixed.is_empty() {
                mean.extend(self.judged(heard, &mixed)?);
                cands.extend(mixed);
            }
        }
        self.judge_candidates(samples, &cands, &mut mean);
        let best = (0..cands.len()).max_by(|&a, &b| mean[a].total_cmp(&mean[b])).expect("a candidate");
        let tokens = cands.swap_remove(best);
        Ok(Transcript { text: self.tokenizer.decode(&tokens), confidence: mean[best], tokens })
    }

    /// With a judge ([`Moonshine::set_judge`]) and time for it: the best-scored of `cands` (by
    /// `mean`) scored by the judge too and their scores mixed with its; the rest can no longer
    /// win. A judge that fails, or has no time left, leaves the scores as they were.
    fn judge_candidates(&mut self, samples: &[f32], cands: &[Vec<u32>], mean: &mut [f32]) {
        // Whisper hears 0.25 s to 30 s at a time.
        let heard_whole = (crate::WHISPER_WINDOW / 120..=crate::WHISPER_WINDOW).contains(&samples.len());
        let Some(judge) = self.judge.as_mut() else { return };
        if judge.weight <= 0.0 || cands.len() < 2 || !heard_whole {
            return;
        }
        if judge.bound.fits(1) == 0 {
            let (expected, left) = judge.bound.outlook();
            tracing::debug!(?expected, ?left, "no time left to judge the utterance");
            judge.bound.skipped(1);
            return;
        }
        let mut order: Vec<usize> = (0..cands.len()).collect();
        order.sort_by(|&a, &b| mean[b].total_cmp(&mean[a]));
        order.truncate(judge.top);
        let texts: Vec<String> = order.iter().map(|&i| self.tokenizer.decode(&cands[i])).collect();
        let Some(judge) = self.judge.as_mut() else { return };
        let started = std::time::Instant::now();
        // Its own window; the Whisper's as it was for whatever else it is lent to.
        let lent = judge.whisper.window();
        judge.whisper.set_window_samples(judge.window);
        let scored = judge.whisper.score_texts(samples, "en", &texts);
        judge.whisper.set_window_samples(lent);
        judge.bound.ran(1, started.elapsed());
        match scored {
            Ok(scores) => {
                let w = judge.weight;
                let mut mixed = vec![f32::NEG_INFINITY; mean.len()];
                for (&i, s) in order.iter().zip(scores) {
                    mixed[i] = (1.0 - w) * mean[i] + w * s;
                }
                mean.copy_from_slice(&mixed);
            }
            Err(e) => tracing::warn!(error = %e, "the judge could not score the candidates"),
        }
    }

    /// Each of `cands` (none empty) scored under every one of `heard`: its mean token probability
    /// over the hearings.
    fn judged(&mut self, heard: &[Heard], cands: &[Vec<u32>]) -> Result<Vec<f32>, ModelError> {
        let mut mean = vec![0f32; cands.len()];
        for h in heard {
            let judge = h.judge.as_ref().ok_or_else(|| ModelError::Run {
                model: "moonshine",
                reason: "a hearing kept nothing to score under".into(),
            })?;
            for (m, p) in mean.iter_mut().zip(self.force(judge, cands)?) {
                *m += p / heard.len() as f32;
            }
        }
        Ok(mean)
    }

    /// `cands` (none empty) scored under one hearing: one decoder run over every candidate's
    /// tokens at once, from the state after BOS, gives each candidate's mean token probability,
    /// the end token's after its last one included (so a transcript that stops short of what was
    /// said, or runs on, pays for it).
    fn force(&mut self, judge: &Judge, cands: &[Vec<u32>]) -> Result<Vec<f32>, ModelError> {
        let err = run_err("moonshine");
        let known = self.tokenizer.len();
        if let Some(t) = cands.iter().flatten().find(|&&t| t as usize >= known) {
            return Err(ModelError::Input(format!("token {t} is outside the vocabulary of {known}")));
        }
        let rows = cands.len();
        // The first token from the state after BOS; the cross-attention caches, computed once a
        // hearing, serve every candidate (the uncached branch would compute them a row).
        let mut sums: Vec<f32> = cands.iter().map(|c| judge.first[c[0] as usize].exp()).collect();
        // Then every token of each candidate at once (EOS after the shorter ones, to the
        // longest's length; attention is causal, so what follows a candidate's tokens does not
        // change their scores): position `at` predicts token `at + 1`, the last one the end.
        let steps = cands.iter().map(|c| c.len()).max().unwrap_or(1);
        let mut ids = Vec::with_capacity(rows * steps);
        for c in cands {
            ids.extend(c.iter().map(|&t| t as i64));
            ids.extend(std::iter::repeat_n(EOS, steps - c.len()));
        }
        let all = vec![0; rows];
        let past: Vec<Cache> = judge.bos.iter().map(|c| c.gather(&all)).collect();
        let inputs = self.decoder_inputs(ids, steps, None, past, Some(&judge.enc_kv), &all)?;
        let out = self.decoder.run(inputs).map_err(&err)?;
        let (shape, logits) = out["logits"].try_extract_tensor::<f32>().map_err(&err)?;
        let vocab = *shape.last().unwrap_or(&0) as usize;
        if vocab == 0 || logits.len() != rows * steps * vocab {
            return Err(ModelError::Run { model: "moonshine", reason: "unexpected logits".into() });
        }
        let end = [EOS as u32];
        for (r, (c, sum)) in cands.iter().zip(&mut sums).enumerate() {
            for (at, &next) in c[1..].iter().chain(&end).enumerate() {
                let row = &logits[(r * steps + at) * vocab..(r * steps + at + 1) * vocab];
                *sum += log_softmax(row)?[next as usize].exp();
            }
        }
        Ok(cands.iter().zip(sums).map(|(c, sum)| sum / (c.len() + 1) as f32).collect())
    }

    /// How well `samples` (one utterance, heard with the configured silence around it) bear out
    /// each of `transcripts` (token ids, as [`Transcript::tokens`]): the mean probability of
    /// its tokens and the end after them with the decoder forced through them (0 for an empty
    /// one). What [`Moonshine::set_rehear_candidates`] ranks the hearings' transcripts by.
    pub fn score(&mut self, samples: &[f32], transcripts: &[Vec<u32>]) -> Result<Vec<f32>, ModelError> {
        let hidden = self.encode(&[samples])?;
        let empty = Cache { dims: [self.heads, 0, self.head_dim], data: Vec::new() };
        let first = self.decode(&[BOS], Some(&hidden), vec![empty; 2 * self.layers], None, &[0])?;
        let judge = Judge {
            enc_kv: first.encoder.ok_or_else(|| ModelError::Run {
                model: "moonshine",
                reason: "decoder returned no encoder keys/values".into(),
            })?,
            bos: first.decoder,
            first: first.log_probs.into_iter().next().unwrap_or_default(),
        };
        let given: Vec<Vec<u32>> = transcripts.iter().filter(|t| !t.is_empty()).cloned().collect();
        let mut scores = if given.is_empty() { Vec::new() } else { self.force(&judge, &given)? }.into_iter();
        Ok(transcripts
            .iter()
            .map(|t| if t.is_empty() { 0.0 } else { scores.next().unwrap_or(0.0) })
            .collect())
    }
}

/// The decoder's state after BOS for one hearing of one utterance (one row each): the
/// cross-attention caches, the self-attention caches and the first token's log-probabilities.
/// Kept from the beam search's first step, so scoring transcripts under the hearing costs one
/// decoder run.
pub(super) struct Judge {
    pub(super) enc_kv: Vec<Cache>,
    pub(super) bos: Vec<Cache>,
    pub(super) first: Vec<f32>,
}

/// `a` with one stretch where it differs from `b` taken from `b` instead, one hybrid a stretch
/// (stretches between the tokens the two have in common, as their longest common subsequence
/// pairs them), in order.
fn hybrids(a: &[u32], b: &[u32]) -> Vec<Vec<u32>> {
    let (n, m) = (a.len(), b.len());
    // Longest common subsequence of a[i..] and b[j..].
    let mut l = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            l[i][j] = if a[i] == b[j] { l[i + 1][j + 1] + 1 } else { l[i + 1][j].max(l[i][j + 1]) };
        }
    }
    let mut matched: Vec<(usize, usize)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if a[i] == b[j] {
            matched.push((i, j));
            i += 1;
            j += 1;
        } else if l[i + 1][j] >= l[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    matched.push((n, m));
    let mut out = Vec::new();
    let (mut pa, mut pb) = (0, 0);
    for (ma, mb) in matched {
        if ma > pa || mb > pb {
            let mut h = a[..pa].to_vec();
            h.extend_from_slice(&b[pb..mb]);
            h.extend_from_slice(&a[ma..]);
            out.push(h);
        }
        pa = ma + 1;
        pb = mb + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::hybrids;

    #[test]
    fn hybrids_take_one_differing_stretch_at_a_time() {
        // "a b c d e" against "a x c e f": b→x, d deleted, f added.
        let (a, b) = ([1, 2, 3, 4, 5], [1, 9, 3, 5, 6]);
        assert_eq!(hybrids(&a, &b), vec![vec![1, 9, 3, 4, 5], vec![1, 2, 3, 5], vec![1, 2, 3, 4, 5, 6]]);
        assert_eq!(hybrids(&b, &a), vec![vec![1, 2, 3, 5, 6], vec![1, 9, 3, 4, 5, 6], vec![1, 9, 3, 5]]);
        assert!(hybrids(&a, &a).is_empty(), "nothing differs");
        assert_eq!(hybrids(&a, &[]), vec![Vec::<u32>::new()], "all of it one stretch");
        assert_eq!(hybrids(&[], &[7, 8]), vec![vec![7, 8]]);
        // Adjacent differences are one stretch.
        assert_eq!(hybrids(&[1, 2, 3, 4], &[1, 7, 8, 4]), vec![vec![1, 7, 8, 4]]);
    }
}
