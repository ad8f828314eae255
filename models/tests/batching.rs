//! Cross-stream batching gives what one-at-a-time gives: Silero VAD's windows of several segments
//! in one run, PP-OCR's detector over several frames and its recogniser over the lines of all of
//! them, and Moonshine over several utterances (equal lengths exactly; padded ones within the
//! stated bound of the word error rate).

use sightline_models::{Moonshine, Ocr, OcrParams, Runtime, SileroVad};
use sightline_settings::{Config, Task};
use sightline_testkit::quality::word_errors;
use sightline_testkit::{SPEECH_SENTENCES, caption_frame, speech_samples};

fn runtime(cfg: &Config) -> Runtime {
    Runtime::load(&cfg.models.onnxruntime_lib()).unwrap()
}

#[test]
fn vad_windows_of_several_segments_batch_exactly() {
    let cfg = Config::load(None).unwrap();
    let mut vad = SileroVad::load(&runtime(&cfg), &cfg.models.task_files(Task::Vad).unwrap()[0]).unwrap();
    let a = speech_samples(SPEECH_SENTENCES[0]).unwrap();
    let b = speech_samples(SPEECH_SENTENCES[1]).unwrap();
    // Different lengths (rows leave the batch as their segment ends), silence, and an empty one.
    let silence = vec![0f32; 16_000];
    let segments: Vec<&[f32]> = vec![&a, &b[..b.len() / 2], &silence, &[], &b];
    let batched = vad.probabilities_batch(&segments).unwrap();
    assert_eq!(batched.len(), segments.len());
    for (seg, got) in segments.iter().zip(&batched) {
        let alone = vad.probabilities(seg).unwrap();
        assert_eq!(got.len(), alone.len());
        let diff = got.iter().zip(&alone).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "batched and alone differ by {diff}");
    }
    assert!(batched[0].iter().any(|&p| p > 0.9), "speech is found in a batch");
    assert!(batched[2].iter().all(|&p| p < 0.1), "silence stays silence in a batch");
}

#[test]
fn ocr_frames_of_several_streams_batch_to_the_same_lines() {
    let cfg = Config::load(None).unwrap();
    let files = cfg.models.task_files(Task::Ocr).unwrap();
    let mut ocr = Ocr::load(&runtime(&cfg), &files[0], &files[1], 2, OcrParams::default()).unwrap();
    let (w, h) = (cfg.ingest.analysis_width as usize, cfg.ingest.analysis_height as usize);
    let captions = ["BREAKING NEWS AT NOON", "Traffic on Route 66", "GOLD PRICE 2,431 USD"];
    let mut frames: Vec<Vec<u8>> = captions
        .iter()
        .zip(["navy", "olive", "black"])
        .map(|(t, bg)| caption_frame(t, bg, w, h).unwrap())
        .collect();
    frames.push(vec![30u8; w * h * 3]); // no text at all
    let mut inputs: Vec<(&[u8], usize, usize)> = frames.iter().map(|f| (f.as_slice(), w, h)).collect();
    let small = caption_frame("Coming up next", "sienna", 320, 180).unwrap();
    inputs.push((&small, 320, 180)); // another size: its own detector run
    inputs.push((&[1, 2, 3], 8, 8)); // a broken frame fails alone
    let batched = ocr.read_batch(&inputs);
    assert_eq!(batched.len(), inputs.len());
    assert!(batched[5].is_err(), "the broken frame is an error");
    for (i, input) in inputs[..5].iter().enumerate() {
        let alone: Vec<String> =
            ocr.read(input.0, input.1, input.2).unwrap().into_iter().map(|l| l.text).collect();
        let got: Vec<String> = batched[i].as_ref().unwrap().iter().map(|l| l.text.clone()).collect();
        assert_eq!(got, alone, "frame {i}: batched and alone read the same lines");
    }
    for (i, text) in captions.iter().enumerate() {
        let got = batched[i].as_ref().unwrap();
        assert!(got.iter().any(|l| l.text == *text), "frame {i} reads {text:?}: {got:?}");
    }
    assert!(batched[3].as_ref().unwrap().is_empty());
}

#[test]
fn moonshine_utterances_of_several_streams_batch_within_the_stated_bound() {
    let cfg = Config::load(None).unwrap();
    let rt = runtime(&cfg);
    let m = &cfg.models;
    let mut vad = SileroVad::load(&rt, &m.task_files(Task::Vad).unwrap()[0]).unwrap();
    let files = m.task_files(Task::Stt).unwrap();
    let mut stt = Moonshine::load(&rt, &files[0], &files[1], &files[2], 2).unwrap();
    stt.set_beam_width(cfg.speech.beam_width);
    stt.set_batching(8, cfg.speech.max_pad_ms as usize * 16);
    let mut utterances: Vec<(usize, Vec<f32>)> = Vec::new();
    for (i, sentence) in SPEECH_SENTENCES.iter().enumerate() {
        let samples = speech_samples(sentence).unwrap();
        let regions =
            vad.speech_regions(&samples, cfg.speech.vad_threshold, cfg.speech.min_speech_ms).unwrap();
        utterances.extend(regions.iter().map(|&(s, e)| (i, samples[s..e].to_vec())));
    }
    // The same utterance twice in one batch (no padding between them) reads exactly as alone.
    let twice = [utterances[0].1.as_slice(), utterances[0].1.as_slice()];
    let alone = stt.transcribe(twice[0]).unwrap();
    for t in stt.transcribe_batch(&twice) {
        assert_eq!(t.unwrap().tokens, alone.tokens);
    }
    // Every utterance of every sentence in one call, as a batch of several streams' segments.
    let audio: Vec<&[f32]> = utterances.iter().map(|(_, a)| a.as_slice()).collect();
    let batched = stt.transcribe_batch(&audio);
    let (mut alone_heard, mut batch_heard) =
        (vec![String::new(); SPEECH_SENTENCES.len()], vec![String::new(); SPEECH_SENTENCES.len()]);
    for ((i, a), b) in utterances.iter().zip(batched) {
        alone_heard[*i] += &format!(" {}", stt.transcribe(a).unwrap().text);
        batch_heard[*i] += &format!(" {}", b.unwrap().text);
    }
    let wer = |heard: &[String]| {
        let (mut e, mut n) = (0, 0);
        for (s, h) in SPEECH_SENTENCES.iter().zip(heard) {
            let (a, b) = word_errors(s, h);
            (e, n) = (e + a, n + b);
        }
        (e, n)
    };
    let ((ea, n), (eb, _)) = (wer(&alone_heard), wer(&batch_heard));
    eprintln!(
        "moonshine: {} utterances; word errors alone {ea}/{n}, batched {eb}/{n}; differing sentences: {:?}",
        utterances.len(),
        alone_heard.iter().zip(&batch_heard).filter(|(a, b)| a != b).collect::<Vec<_>>()
    );
    // Stated bound: padding with up to `max_pad_ms` of silence costs at most 2 words over the set.
    assert!(eb <= ea + 2, "batched {eb} word errors vs {ea} alone");
    // Too short to transcribe stays an input error in a batch, and the rest still answer.
    let short = vec![0f32; 100];
    let mixed = stt.transcribe_batch(&[&short, twice[0]]);
    assert!(matches!(mixed[0], Err(sightline_models::ModelError::Input(_))));
    assert_eq!(mixed[1].as_ref().unwrap().tokens, alone.tokens);
}
