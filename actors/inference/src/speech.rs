//! The speech pool's models: voice activity, then speech-to-text: Moonshine for English; with
//! several languages configured, Whisper identifies each utterance's language and transcribes the
//! ones Moonshine does not.

use crate::extra::{ExtraParts, ExtraWork};
use crate::loading::{model_file, runtime_for};
use crate::pool::{ItemResult, Processor};
use crate::shedding::Pace;
use sightline_models::{
    DenoiseParams, Denoiser, Language, ModelError, Moonshine, SileroVad, Transcript, WHISPER_MAX_BATCH,
    WHISPER_WINDOW, Whisper,
};
use sightline_settings::Task;
use sightline_settings::{Config, ModelSpec, SpeechConfig};
use sightline_wire::{Detail, Event, EventKind, TranscriptInfo, decode_audio};

/// Most utterances in one speech-to-text run.
const MAX_UTTERANCES: usize = 8;
/// Shortest utterance either model transcribes (a quarter of a second at 16 kHz).
const MIN_UTTERANCE: usize = 4000;

/// What was heard in one utterance, in which language, by which model.
struct Heard {
    transcript: Transcript,
    language: Language,
    model: String,
}

/// Speech: Silero VAD finds the speech inside each audio segment, Moonshine transcribes it.
pub struct SpeechProcessor {
    vad: SileroVad,
    stt: Moonshine,
    /// Language identification and the other languages (`speech.languages` beyond English), and
    /// its registry id: a Whisper of its own, or None where the one judging Moonshine's re-heard
    /// English serves ([`SpeechProcessor::whisper_mut`]: one Whisper loaded for both).
    whisper: Option<(Option<Whisper>, String)>,
    /// `speech.denoise`: each segment's steady background noise out before speech-to-text.
    denoiser: Option<Denoiser>,
    cfg: SpeechConfig,
    model: String,
}

/// Whisper for a speech processor built on the speech-to-text entry `stt`, and its registry id.
/// The pool's primary (`stt` is `models.stt`) starts from `models.stt_multilingual`; the pool's
/// fallback (any other `stt` entry: the one that serves after a load failure, an error or a
/// timeout) starts from that entry's own `fallback`, when it names one, so that falling back moves
/// both speech models (for example off the GPU). An entry that fails to load hands over to the
/// next down its fallback chain (logged); the last one's error is the answer.
fn load_whisper(cfg: &Config, stt: &ModelSpec) -> Result<(Whisper, String), ModelError> {
    let m = &cfg.models;
    let input = |e: sightline_settings::ConfigError| ModelError::Input(e.to_string());
    let mut spec = m.for_task(Task::SttMultilingual).map_err(input)?;
    if stt.name != m.stt && !spec.fallback.is_empty() {
        spec = m.model(&spec.fallback).map_err(input)?;
    }
    let mut tried = Vec::new();
    loop {
        let loaded = runtime_for(cfg, spec).and_then(|rt| {
            let f = |i| model_file(cfg, spec, &rt, i);
            Whisper::load(&rt, &f(0), &f(1), &f(2), &f(3), cfg.speech.threads)
        });
        match loaded {
            Ok(w) => return Ok((w, spec.id())),
            Err(e) if !spec.fallback.is_empty() && !tried.contains(&spec.fallback) => {
                tracing::error!(model = %spec.id(), error = %e, fallback = %spec.fallback, "multilingual speech model failed to load; its fallback serves");
                tried.push(spec.name.clone());
                spec = m.model(&spec.fallback).map_err(input)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The processor's Whisper (`whisper`: its own, or None for the judge's in `stt`), borrowed
/// apart from the processor's other fields.
fn lent<'a>(
    whisper: &'a mut Option<(Option<Whisper>, String)>,
    stt: &'a mut Moonshine,
) -> Option<&'a mut Whisper> {
    match whisper.as_mut()? {
        (Some(w), _) => Some(w),
        (None, _) => stt.judge_whisper_mut(),
    }
}

impl SpeechProcessor {
    /// With the speech-to-text model `stt` (a registry entry of task `stt`) and `models.vad`.
    pub fn load(cfg: &Config, stt: &ModelSpec) -> Result<Self, ModelError> {
        let m = &cfg.models;
        let vad_spec = m.for_task(Task::Vad).map_err(|e| ModelError::Input(e.to_string()))?;
        let vad_rt = runtime_for(cfg, vad_spec)?;
        let vad = SileroVad::load(&vad_rt, &model_file(cfg, vad_spec, &vad_rt, 0))?;
        let rt = runtime_for(cfg, stt)?;
        let f = |i| model_file(cfg, stt, &rt, i);
        let mut model = Moonshine::load(&rt, &f(0), &f(1), &f(2), cfg.speech.threads)?;
        model.configure(&cfg.speech);
        model.set_batching(MAX_UTTERANCES, cfg.speech.max_pad_ms as usize * 16);
        let mut judge_id = None;
        if cfg.speech.judges_rehearing() {
            let (mut judge, id) = load_whisper(cfg, stt)?;
            judge.configure_as_judge(&cfg.speech);
            tracing::info!(judge = %id, weight = cfg.speech.rehear_judge_weight, "re-heard English judged by Whisper too");
            model.set_judge(Some(judge), cfg.speech.rehear_judge_weight, cfg.speech.rehear_judge_candidates);
            judge_id = Some(id);
        }
        let whisper = if cfg.speech.uses_multilingual_model() {
            // The judge's Whisper is the same model (the same entry, the same fallback chain):
            // lent for the other languages rather than loaded twice.
            Some(match judge_id {
                Some(id) => (None, id),
                None => {
                    let (w, id) = load_whisper(cfg, stt)?;
                    (Some(w), id)
                }
            })
        } else {
            None
        };
        // Only Moonshine hears denoised audio: none is made when Whisper hears every utterance.
        let moonshine_hears = whisper.is_none() || cfg.speech.english_to_stt();
        let denoiser =
            (cfg.speech.denoise && moonshine_hears).then(|| Denoiser::new(DenoiseParams::default()));
        let mut p = Self { vad, stt: model, whisper, denoiser, cfg: cfg.speech.clone(), model: stt.id() };
        if let Some(id) = p.whisper.as_ref().map(|(_, id)| id.clone()) {
            let w = p.whisper_mut().expect("a Whisper, its own or the judge's");
            if let Some(l) = cfg.speech.languages.iter().find(|l| !w.knows(l)) {
                return Err(ModelError::Input(format!(
                    "speech.languages: {id} does not know the language {l:?}"
                )));
            }
            w.configure(&cfg.speech);
        }
        Ok(p)
    }

    /// The Whisper that identifies languages and hears the other ones: its own, or the judge's.
    fn whisper_mut(&mut self) -> Option<&mut Whisper> {
        lent(&mut self.whisper, &mut self.stt)
    }

    /// [`SpeechProcessor::whisper_mut`] where the configuration has one.
    fn multilingual(&mut self) -> &mut Whisper {
        self.whisper_mut().expect("a Whisper, its own or the judge's")
    }

    /// [`SpeechProcessor::whisper_mut`], to look at.
    #[cfg(test)]
    fn whisper_ref(&self) -> Option<&Whisper> {
        match self.whisper.as_ref()? {
            (Some(w), _) => Some(w),
            (None, _) => self.stt.judge_whisper(),
        }
    }

    /// The languages an utterance may be in: its stream's (those this pool is configured for),
    /// else every configured one.
    fn allowed_for(&self, stream_languages: &[String]) -> Vec<String> {
        let own: Vec<String> =
            stream_languages.iter().filter(|l| self.cfg.languages.contains(l)).cloned().collect();
        if own.is_empty() { self.cfg.languages.clone() } else { own }
    }

    /// Transcribes utterances (of any streams; `allowed[i]` the languages utterance i may be in),
    /// one result each, in order: Whisper hears `audio`, Moonshine `clean` (the same utterances,
    /// denoised when `speech.denoise` is on: measured with Moonshine only).
    fn transcribe(
        &mut self,
        audio: &[&[f32]],
        clean: &[&[f32]],
        allowed: &[Vec<String>],
    ) -> Vec<Result<Heard, ModelError>> {
        let Some(whisper_id) = self.whisper.as_ref().map(|(_, id)| id.clone()) else {
            let english = Language { code: "en".into(), probability: 1.0 };
            return self
                .stt
                .transcribe_batch(clean)
                .into_iter()
                .map(|r| {
                    r.map(|t| Heard { transcript: t, language: english.clone(), model: self.model.clone() })
                })
                .collect();
        };
        let mut out: Vec<Option<Result<Heard, ModelError>>> = (0..audio.len()).map(|_| None).collect();
        let mut fit = Vec::new();
        for (i, a) in audio.iter().enumerate() {
            if (MIN_UTTERANCE..=WHISPER_WINDOW).contains(&a.len()) {
                fit.push(i);
            } else {
                out[i] = Some(Err(ModelError::Input(format!("{} samples: not transcribed", a.len()))));
            }
        }
        for chunk in fit.chunks(WHISPER_MAX_BATCH) {
            let segs: Vec<&[f32]> = chunk.iter().map(|&i| audio[i]).collect();
            let clean_segs: Vec<&[f32]> = chunk.iter().map(|&i| clean[i]).collect();
            let heard = (|| -> Result<Vec<Heard>, ModelError> {
                // One allowed language is taken as given; the rest are identified among theirs.
                // Whisper's encoder runs unless every utterance is English given and goes to Moonshine.
                let rows: Vec<Vec<String>> = chunk.iter().map(|&i| allowed[i].clone()).collect();
                let english_to_stt = self.cfg.english_to_stt();
                let to_stt = |code: &str| english_to_stt && code == "en";
                let needs_whisper = rows.iter().any(|a| a.len() != 1 || !to_stt(&a[0]));
                let enc = if needs_whisper { Some(self.multilingual().encode(&segs)?) } else { None };
                let mut langs = match &enc {
                    Some(enc) if rows.iter().any(|a| a.len() != 1) => {
                        self.multilingual().detect_each(enc, &rows)?
                    }
                    _ => vec![Language { code: String::new(), probability: 1.0 }; segs.len()],
                };
                for (l, a) in langs.iter_mut().zip(&rows) {
                    if let [one] = a.as_slice() {
                        *l = Language { code: one.clone(), probability: 1.0 };
                    }
                }
                let english: Vec<usize> = (0..segs.len()).filter(|&r| to_stt(&langs[r].code)).collect();
                let others: Vec<usize> = (0..segs.len()).filter(|r| !english.contains(r)).collect();
                let mut texts: Vec<Option<(Transcript, String)>> = (0..segs.len()).map(|_| None).collect();
                if !english.is_empty() {
                    let ts = self
                        .stt
                        .transcribe_batch(&english.iter().map(|&r| clean_segs[r]).collect::<Vec<_>>());
                    for (&r, t) in english.iter().zip(ts) {
                        texts[r] = Some((t?, self.model.clone()));
                    }
                }
                if let (false, Some(enc)) = (others.is_empty(), &enc) {
                    let sub = if others.len() == segs.len() { None } else { Some(enc.select(&others)?) };
                    let codes: Vec<&str> = others.iter().map(|&r| langs[r].code.as_str()).collect();
                    let heard: Vec<&[f32]> = others.iter().map(|&r| segs[r]).collect();
                    let ts =
                        self.multilingual().decode_segments(&heard, sub.as_ref().unwrap_or(enc), &codes)?;
                    for (&r, t) in others.iter().zip(ts) {
                        texts[r] = Some((t, whisper_id.clone()));
                    }
                }
                Ok(texts
                    .into_iter()
                    .zip(langs)
                    .map(|(t, language)| {
                        let (transcript, model) = t.expect("every utterance transcribed");
                        Heard { transcript, language, model }
                    })
                    .collect())
            })();
            match heard {
                Ok(h) => chunk.iter().zip(h).for_each(|(&i, h)| out[i] = Some(Ok(h))),
                Err(e) => chunk.iter().for_each(|&i| out[i] = Some(Err(e.clone()))),
            }
        }
        out.into_iter().map(|r| r.expect("every utterance answered")).collect()
    }
}

impl Processor for SpeechProcessor {
    fn kind(&self) -> &'static str {
        "speech"
    }
    fn model(&self) -> &str {
        &self.model
    }
    /// With room to spare ([`Pace::Ahead`]: the batch comes out within a third of the lag target
    /// even if it takes as long as the longest recent batch, within half of it when the pool has
    /// been busy at most a quarter of the recent time) Moonshine and Whisper re-hear their
    /// unsure utterances (`speech.rehear_*`); on time each is heard once with its beam, the pool's
    /// baseline (not counted as coarse). Behind its lag target the
    /// speech pool never drops an utterance: Moonshine decodes greedily, heard once and as VAD
    /// cut it, without `speech.lead_silence_ms` / `trail_silence_ms` (beam width 1: a bit over
    /// half the time of a beam of 8, about twice its word errors on the evaluation set; the
    /// silence costs a third more encoder time), and Whisper hears the shorter
    /// `multilingual_behind_window_s` window with its beam (on `make quality`'s sets beam 4 over
    /// 10 s costs a third of greedy over 30 s and makes fewer errors; greedy over 10 s makes far
    /// more), or decodes greedily when that window is not shorter; until it has caught up.
    fn set_pace(&mut self, pace: Pace) -> bool {
        let c = &self.cfg;
        let behind = pace == Pace::Behind;
        let shorter = c.multilingual_behind_window_s < c.multilingual_window_s;
        let (lead, trail, rehear_trail) = c.silence_samples();
        // Coarser than the baseline (on time: heard once, with the beam and the silence).
        let mut coarse = behind && (c.beam_width > 1 || (lead, trail) != (0, 0));
        let silence = if behind { (0, 0, 0) } else { (lead, trail, rehear_trail) };
        self.stt.set_beam_width(if behind { 1 } else { c.beam_width });
        self.stt.set_silence(silence.0, silence.1, silence.2);
        let ahead = pace == Pace::Ahead;
        let rehearing = |stretches: &[f32]| if ahead { stretches.to_vec() } else { Vec::new() };
        self.stt.set_rehearing(&rehearing(&c.rehear_stretches), c.rehear_below);
        let (fast, slow) = (rehearing(&c.rehear_fast_stretches), rehearing(&c.rehear_slow_stretches));
        self.stt.set_paced_rehearing(&fast, c.rehear_fast_above, &slow, c.rehear_slow_below);
        if let Some(w) = lent(&mut self.whisper, &mut self.stt) {
            w.set_rehearing(&rehearing(&c.multilingual_rehear_stretches), c.rehear_below);
            let (window, beam) = match (behind, shorter) {
                (true, true) => (c.multilingual_behind_window_s, c.multilingual_beam_width),
                (true, false) => (c.multilingual_window_s, 1),
                (false, _) => (c.multilingual_window_s, c.multilingual_beam_width),
            };
            coarse |= behind && (shorter || c.multilingual_beam_width > 1);
            w.set_window(window);
            w.set_beam_width(beam);
        }
        coarse
    }

    /// The copies heard at an utterance's own pace (`speech.rehear_fast_stretches`) and Whisper
    /// judging re-heard English (`speech.rehear_judge_weight`) run only while their recent cost
    /// still fits before `until`: neither makes an ahead batch take the next one's room.
    fn set_extra_until(&mut self, until: Option<std::time::Instant>) {
        self.stt.set_extra_until(until);
    }

    /// Utterances judged (`judge`) and heard at their own pace (`paced`), each kind counted apart.
    fn extra_work(&self) -> ExtraParts {
        let part = |s: sightline_models::JudgeStats| ExtraWork {
            done: s.judged,
            no_room: s.no_room,
            spent: s.spent,
        };
        vec![("judge", part(self.stt.judge_stats())), ("paced", part(self.stt.paced_stats()))]
    }

    fn process(&mut self, payload: &[u8]) -> ItemResult {
        self.process_batch(&[bytes::Bytes::copy_from_slice(payload)]).pop().unwrap_or_else(|| Ok(Vec::new()))
    }

    /// The segments of several streams at once: VAD runs their windows side by side, then every
    /// utterance found in any of them goes to Moonshine together.
    fn process_batch(&mut self, payloads: &[bytes::Bytes]) -> Vec<ItemResult> {
        let mut results: Vec<ItemResult> = payloads.iter().map(|_| Ok(Vec::new())).collect();
        let mut decoded = Vec::with_capacity(payloads.len());
        for (i, p) in payloads.iter().enumerate() {
            match decode_audio(p) {
                Ok(d) => decoded.push((i, d)),
                Err(e) => results[i] = Err(e.into()),
            }
        }
        let segments: Vec<&[f32]> = decoded.iter().map(|(_, (_, s))| s.as_slice()).collect();
        let regions =
            match self.vad.speech_regions_batch(&segments, self.cfg.vad_threshold, self.cfg.min_speech_ms) {
                Ok(r) => r,
                Err(e) => {
                    decoded.iter().for_each(|(i, _)| results[*i] = Err(e.clone().into()));
                    return results;
                }
            };
        // Every utterance: (its segment's place in `decoded`, start and end sample).
        let utterances: Vec<(usize, usize, usize)> =
            regions.iter().enumerate().flat_map(|(d, r)| r.iter().map(move |&(s, e)| (d, s, e))).collect();
        let audio: Vec<&[f32]> = utterances.iter().map(|&(d, s, e)| &segments[d][s..e]).collect();
        // `speech.denoise`: for Moonshine each segment loses its steady noise, measured where VAD
        // heard no speech.
        let denoised: Vec<Vec<f32>> = match &self.denoiser {
            // A segment without speech has nothing to transcribe: nothing to denoise either.
            Some(dn) => segments
                .iter()
                .zip(&regions)
                .map(|(s, r)| if r.is_empty() { Vec::new() } else { dn.denoise_around(s, r) })
                .collect(),
            None => Vec::new(),
        };
        let clean: Vec<&[f32]> = match denoised.is_empty() {
            true => audio.clone(),
            false => utterances.iter().map(|&(d, s, e)| &denoised[d][s..e]).collect(),
        };
        let allowed: Vec<Vec<String>> =
            utterances.iter().map(|&(d, _, _)| self.allowed_for(&decoded[d].1.0.languages)).collect();
        let judged_before = self.stt.judge_stats();
        let transcripts = self.transcribe(&audio, &clean, &allowed);
        let judged = self.stt.judge_stats();
        if judged != judged_before {
            tracing::debug!(
                judged = judged.judged - judged_before.judged,
                no_room = judged.no_room - judged_before.no_room,
                judged_total = judged.judged,
                no_room_total = judged.no_room,
                "re-heard English judged by Whisper"
            );
        }
        for (&(d, s, e), t) in utterances.iter().zip(transcripts) {
            let (i, (meta, _)) = &decoded[d];
            let t = match t {
                Ok(t) => t,
                Err(ModelError::Input(_)) => continue, // too short to say anything
                Err(err) => {
                    results[*i] = Err(err.into());
                    continue;
                }
            };
            let Ok(events) = &mut results[*i] else { continue };
            let Heard { transcript: t, language, model } = t;
            if t.text.is_empty() {
                continue;
            }
            let start = meta.start_ms + (s as i64 * 1000 / 16_000);
            let end = meta.start_ms + (e as i64 * 1000 / 16_000);
            let mut ev = Event::new(
                EventKind::Transcript,
                meta.stream(),
                start,
                meta.wall_ms + (start - meta.start_ms),
                &model,
            );
            ev.end_ms = Some(end);
            ev.text = t.text;
            ev.score = t.confidence;
            ev.detail = Some(Detail::Transcript(TranscriptInfo {
                language: language.code,
                language_score: language.probability,
            }));
            events.push(ev);
        }
        results
    }
}

#[cfg(test)]
mod tests;
