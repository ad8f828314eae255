//! The speech processor's pace, fallback and language handling.

use super::*;

#[test]
fn behind_its_target_speech_decodes_greedily_then_returns_to_the_beam() {
    let cfg = Config::load(None).unwrap();
    let spec = cfg.models.for_task(Task::Stt).unwrap().clone();
    let mut p = SpeechProcessor::load(&cfg, &spec).unwrap();
    assert!(cfg.speech.beam_width > 1, "the shipped config searches a beam");
    let configured = (&cfg.speech.rehear_stretches[..], cfg.speech.rehear_below);
    assert!(!configured.0.is_empty(), "the shipped config re-hears");
    assert_eq!(p.stt.rehearing(), configured);
    let silence = cfg.speech.silence_samples();
    assert!(
        silence.0 > 0 && silence.1 > 0 && silence.2 > 0,
        "the shipped config hears silence around utterances"
    );
    assert_eq!(p.stt.silence(), silence);
    assert!(p.set_pace(Pace::Behind), "behind: coarser, and it says so");
    assert_eq!(p.stt.beam_width(), 1);
    assert!(p.stt.rehearing().0.is_empty(), "behind: each utterance heard once");
    assert_eq!(p.stt.paced_rehearing(), (&[][..], &[][..]), "behind: whatever its pace");
    assert_eq!(p.stt.silence(), (0, 0, 0), "behind: as VAD cut it");
    assert!(!p.set_pace(Pace::OnTime), "on time: the baseline, not coarse");
    assert_eq!(p.stt.beam_width(), cfg.speech.beam_width, "caught up: the beam again");
    assert_eq!(p.stt.silence(), silence, "caught up: the silence again");
    assert!(p.stt.rehearing().0.is_empty(), "re-hearing only with room to spare");
    assert_eq!(p.stt.paced_rehearing(), (&[][..], &[][..]), "on time: whatever its pace");
    assert!(!p.set_pace(Pace::Ahead));
    assert_eq!((p.stt.beam_width(), p.stt.rehearing()), (cfg.speech.beam_width, configured));
    let paced = (&cfg.speech.rehear_fast_stretches[..], &cfg.speech.rehear_slow_stretches[..]);
    assert!(!paced.0.is_empty(), "the shipped config hears fast speech more");
    assert_eq!(p.stt.paced_rehearing(), paced, "ahead: fast speech heard at more stretches");
    let mut slow = cfg.clone();
    slow.speech.rehear_slow_stretches = vec![0.85];
    let mut s = SpeechProcessor::load(&slow, &spec).unwrap();
    assert!(!s.set_pace(Pace::Ahead));
    assert_eq!(s.stt.paced_rehearing(), (paced.0, &[0.85][..]), "and slow speech where configured");
    s.set_pace(Pace::OnTime);
    assert_eq!(s.stt.paced_rehearing(), (&[][..], &[][..]), "on time: whatever its pace");
    let mut greedy = cfg.clone();
    greedy.speech.beam_width = 1;
    let mut g = SpeechProcessor::load(&greedy, &spec).unwrap();
    assert!(g.set_pace(Pace::Behind), "greedy, but without the silence: coarser");
    greedy.speech.lead_silence_ms = 0;
    greedy.speech.trail_silence_ms = 0;
    let mut g = SpeechProcessor::load(&greedy, &spec).unwrap();
    assert!(!g.set_pace(Pace::Behind), "nothing is coarser than greedy as cut: not counted as coarse");
    // With other languages, Whisper hears the shorter window with its beam while behind.
    let mut multi = greedy.clone();
    multi.speech.languages = ["en", "de"].map(String::from).to_vec();
    let mut m = SpeechProcessor::load(&multi, &spec).unwrap();
    let whisper = |p: &SpeechProcessor| {
        let w = p.whisper_ref().unwrap();
        (w.window() / 16_000, w.beam_width())
    };
    let (beam, full) = (multi.speech.multilingual_beam_width, multi.speech.multilingual_window_s as usize);
    assert!(beam > 1, "the shipped config searches a beam");
    assert!(multi.speech.multilingual_behind_window_s < multi.speech.multilingual_window_s);
    let rehears = |p: &SpeechProcessor| !p.whisper_ref().unwrap().rehearing().0.is_empty();
    assert_eq!(whisper(&m), (full, beam));
    assert!(rehears(&m), "as configured at load: re-hearing");
    assert!(m.set_pace(Pace::Behind), "a shorter window is coarser");
    assert_eq!(whisper(&m), (multi.speech.multilingual_behind_window_s as usize, beam));
    assert!(!rehears(&m), "behind: each utterance heard once");
    assert!(!m.set_pace(Pace::OnTime));
    assert_eq!(whisper(&m), (full, beam), "caught up: the full window again");
    assert!(!rehears(&m), "Whisper too re-hears only with room to spare");
    assert!(!m.set_pace(Pace::Ahead));
    let whispers = (&multi.speech.multilingual_rehear_stretches[..], multi.speech.rehear_below);
    assert_eq!(m.whisper_ref().unwrap().rehearing(), whispers, "Whisper's own stretches");
    // No shorter window to fall back to: greedy over the full one.
    multi.speech.multilingual_behind_window_s = 30.0;
    let mut same = SpeechProcessor::load(&multi, &spec).unwrap();
    assert!(same.set_pace(Pace::Behind));
    assert_eq!(whisper(&same), (full, 1));
    multi.speech.multilingual_beam_width = 1;
    let mut neither = SpeechProcessor::load(&multi, &spec).unwrap();
    assert!(!neither.set_pace(Pace::Behind), "greedy over the same window: nothing coarser");
}

#[test]
fn whisper_follows_the_pools_fallback_and_its_own_fallback_chain() {
    let mut cfg = Config::load(None).unwrap();
    cfg.speech.languages = ["en", "de"].map(String::from).to_vec();
    let primary = cfg.models.for_task(Task::Stt).unwrap().clone();
    let fallback = cfg.models.model(&primary.fallback).unwrap().clone();
    let whisper_of = |p: &SpeechProcessor| p.whisper.as_ref().unwrap().1.clone();
    // The pool's primary hears other languages with the configured entry; the pool's fallback
    // with that entry's own fallback, and its transcripts name it.
    assert_eq!(whisper_of(&SpeechProcessor::load(&cfg, &primary).unwrap()), "whisper-base@1");
    let mut f = SpeechProcessor::load(&cfg, &fallback).unwrap();
    assert_eq!(whisper_of(&f), "whisper-base-cpu@1");
    let de = segment_in("s-de", "auf dem markt gibt es frisches obst und gemüse", "mb-de2", &["de"]);
    let events = f.process_batch(&[de.into()]).pop().unwrap().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].model.as_str(), events[0].transcript().unwrap().language.as_str()),
        ("whisper-base-cpu@1", "de")
    );
    assert!(events[0].text.to_lowercase().contains("obst"), "{:?}", events[0].text);
    // An entry that cannot load hands over to its fallback.
    let at = cfg.models.registry.iter().position(|m| m.name == "whisper-base").unwrap();
    cfg.models.registry[at].files[0] = "whisper-base/missing.onnx".into();
    assert_eq!(whisper_of(&SpeechProcessor::load(&cfg, &primary).unwrap()), "whisper-base-cpu@1");
    // With none left, the processor does not load, and the error names the file.
    cfg.models.registry[at].fallback.clear();
    let err = SpeechProcessor::load(&cfg, &primary).err().expect("cannot load").to_string();
    assert!(err.contains("missing.onnx"), "{err}");
}

/// One audio segment of `stream` holding `text` in `voice`, as ingest publishes it.
fn segment(stream: &str, text: &str, voice: &str) -> Vec<u8> {
    segment_in(stream, text, voice, &[])
}

/// [`segment`] of a stream registered with `languages`.
fn segment_in(stream: &str, text: &str, voice: &str, languages: &[&str]) -> Vec<u8> {
    let mut samples = vec![0f32; 8000];
    samples.extend(sightline_testkit::quality::speak(text, voice, 130).unwrap());
    samples.extend(vec![0f32; 8000]);
    let meta = sightline_wire::AudioMeta {
        stream_id: stream.into(),
        start_ms: 10_000,
        end_ms: 10_000 + samples.len() as i64 / 16,
        wall_ms: 1_700_000_000_000,
        samples: samples.len(),
        incarnation: 0,
        lease: 0,
        languages: languages.iter().map(|l| l.to_string()).collect(),
    };
    sightline_wire::encode(&meta, &sightline_wire::audio_bytes(&samples))
}

#[test]
fn with_several_languages_each_utterance_is_identified_and_transcribed_in_it() {
    let mut cfg = Config::load(None).unwrap();
    cfg.speech.languages = ["en", "de", "fr"].map(String::from).to_vec();
    let spec = cfg.models.for_task(Task::Stt).unwrap().clone();
    let mut p = SpeechProcessor::load(&cfg, &spec).unwrap();
    let payloads: Vec<bytes::Bytes> = [
        ("s-de", "auf dem markt gibt es frisches obst und gemüse", "mb-de2"),
        ("s-en", "the price of gold rose for the third day in a row", "mb-us1"),
        ("s-fr", "au marché on trouve des fruits et des légumes frais", "mb-fr4"),
    ]
    .iter()
    .map(|(s, t, v)| bytes::Bytes::from(segment(s, t, v)))
    .collect();
    let check = |r: ItemResult, want: &str, model: &str, word: &str| {
        let events = r.unwrap();
        assert_eq!(events.len(), 1, "{want}: one utterance, one transcript");
        let e = &events[0];
        let info = e.transcript().expect("the language is on the event");
        assert_eq!(info.language, want, "{:?}", e.text);
        assert!(info.language_score > 0.5 && info.language_score <= 1.0);
        assert_eq!(e.model, model);
        assert!(e.text.to_lowercase().contains(word), "{want}: {:?}", e.text);
        assert!((10_300..=10_700).contains(&e.pts_ms), "the voice starts 0.5 s in, not at {}", e.pts_ms);
    };
    // `english_model = "auto"`: with other languages Whisper hears English too.
    let results = p.process_batch(&payloads);
    for ((want, word), r) in [("de", "obst"), ("en", "gold"), ("fr", "fruits")].iter().zip(results) {
        check(r, want, "whisper-base@1", word);
    }
    assert!(p.stt.judge_whisper().is_none(), "Whisper hears English: nothing to judge");
    // `english_model = "stt"`: English utterances go to Moonshine, whose re-heard ones Whisper
    // judges; one Whisper serves both, each over its own window.
    cfg.speech.english_model = sightline_settings::EnglishModel::Stt;
    assert!(cfg.speech.judges_rehearing());
    let mut p = SpeechProcessor::load(&cfg, &spec).unwrap();
    assert!(p.whisper.as_ref().unwrap().0.is_none(), "the judge's Whisper serves the other languages");
    let windows = |p: &SpeechProcessor| (p.whisper_ref().unwrap().window(), p.stt.judge_window().unwrap());
    let configured = (
        (cfg.speech.multilingual_window_s * 16_000.0) as usize,
        (cfg.speech.rehear_judge_window_s * 16_000.0) as usize,
    );
    assert_eq!(windows(&p), configured);
    assert!(!p.set_pace(Pace::Ahead), "room to re-hear and judge");
    let mut r = p.process_batch(&payloads[..2]).into_iter();
    check(r.next().unwrap(), "de", "whisper-base@1", "obst");
    check(r.next().unwrap(), "en", "moonshine-base-en@1", "gold");
    assert_eq!(windows(&p), configured, "each kept its window");
    // In one batch with German, an English utterance Moonshine is unsure of: re-heard, judged.
    let unsure =
        segment_in("s-en", "the bakery on elm street sells bread until noon", "en-gb-scotland", &["en"]);
    let mut r = p.process_batch(&[payloads[0].clone(), unsure.into()]).into_iter();
    check(r.next().unwrap(), "de", "whisper-base@1", "obst");
    let en = r.next().unwrap().unwrap();
    assert_eq!(en[0].model, "moonshine-base-en@1", "{:?}", en[0].text);
    assert_eq!(
        (p.stt.judge_stats().judged, p.stt.judge_stats().no_room),
        (1, 0),
        "judged once, no time bound"
    );
    assert_eq!(windows(&p), configured);
    // A stream registered as English alone goes straight to Moonshine (no Whisper run).
    let en = segment_in("s-en", "the price of gold rose for the third day in a row", "mb-us1", &["en"]);
    let en = p.process_batch(&[en.into()]).pop().unwrap().unwrap();
    let info = en[0].transcript().unwrap();
    assert_eq!(
        (info.language.as_str(), info.language_score, en[0].model.as_str()),
        ("en", 1.0, "moonshine-base-en@1")
    );
    // A stream registered as French alone: no identification, French with certainty; one
    // registered with German and French is identified among those two.
    let fr = segment_in("s-fr", "au marché on trouve des fruits et des légumes frais", "mb-fr4", &["fr"]);
    let de = segment_in("s-de", "auf dem markt gibt es frisches obst und gemüse", "mb-de2", &["de", "fr"]);
    let mut r = p.process_batch(&[fr.into(), de.into()]).into_iter();
    let fr = r.next().unwrap().unwrap();
    let info = fr[0].transcript().unwrap();
    assert_eq!((info.language.as_str(), info.language_score), ("fr", 1.0), "{:?}", fr[0].text);
    check(r.next().unwrap(), "de", "whisper-base@1", "obst");
    // English alone (the default): no identification, every transcript English with certainty.
    let cfg = Config::load(None).unwrap();
    let mut p = SpeechProcessor::load(&cfg, &spec).unwrap();
    assert!(p.whisper.is_none());
    let r = p.process_batch(&payloads[1..2]).pop().unwrap().unwrap();
    let info = r[0].transcript().unwrap();
    assert_eq!((info.language.as_str(), info.language_score), ("en", 1.0));
    // A language the model does not know is refused at load.
    let mut bad = Config::load(None).unwrap();
    bad.speech.languages = vec!["en".into(), "qq".into()];
    let err = SpeechProcessor::load(&bad, &spec).err().expect("refused").to_string();
    assert!(err.contains("\"qq\""), "{err}");
}
