//! Bare ONNX Runtime on a clip's own content: the physical reference the capacity harness
//! (`sightline-loadtest capacity`) sets each inference pool against, in the same run.
//!
//! The clip is cut as ingest cuts it: frames sampled at `ingest.sample_fps` and scaled to the
//! analysis size, audio at 16 kHz split by the same energy gate into segments. Each pool's models
//! are then called directly, with the pool's threads (the labeller's: one), on batches of the asked
//! size: every frame is read (OCR) or labelled (scenes), every segment goes through VAD and its
//! utterances through Moonshine (Whisper when the speech pool hears other languages with it); the
//! texts they give are embedded (MiniLM), as the pools do. Nothing is published, stored or
//! acknowledged. The result is milliseconds per item at each batch size, as JSON.

use super::*;
use sightline_models::{
    FrameSignature, ImageLabeler, Moonshine, Ocr, OcrParams, Runtime, SileroVad, TextEmbedder,
    WHISPER_MAX_BATCH, Whisper,
};
use sightline_settings::{Config, Task};
use std::collections::BTreeMap;

/// One pool at one batch size.
#[derive(serde::Serialize)]
struct Measured {
    pool: String,
    batch: usize,
    items: usize,
    seconds: f64,
    ms_per_item: f64,
    /// What one item is and what ran on it.
    what: String,
    /// What a frame the pool skips as unchanged costs it (the frame signature that decides), ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    gate_ms_per_item: Option<f64>,
    /// Speech with its unsure utterances re-heard as `speech.rehear_*` configures (what the pool
    /// does on the batches it runs ahead of its lag target), ms per item; `ms_per_item` is each
    /// utterance heard once, the pool's work otherwise. None: re-hearing is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    reheard_ms_per_item: Option<f64>,
}

/// The clip's frames as ingest samples them: packed RGB at the analysis size.
fn clip_frames(clip: &Path, cfg: &Config) -> Result<Vec<Vec<u8>>> {
    let (w, h) = (cfg.ingest.analysis_width as usize, cfg.ingest.analysis_height as usize);
    let vf = format!("fps={},scale={w}:{h}", cfg.ingest.sample_fps);
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(clip)
        .args(["-vf", &vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .context("ffmpeg")?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!("ffmpeg could not read frames of {}: {}", clip.display(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout.chunks_exact(w * h * 3).map(<[u8]>::to_vec).collect())
}

/// The clip's audio in the segments ingest publishes (16 kHz mono, cut by the same gate).
fn clip_segments(clip: &Path, cfg: &Config) -> Result<Vec<Vec<f32>>> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(clip)
        .args(["-ac", "1", "-ar", "16000", "-f", "f32le", "-"])
        .output()
        .context("ffmpeg")?;
    if !out.status.success() {
        bail!("ffmpeg could not read audio of {}: {}", clip.display(), String::from_utf8_lossy(&out.stderr));
    }
    let samples: Vec<f32> =
        out.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Ok(segment_audio(&samples, cfg))
}

/// 16 kHz mono audio cut into the segments ingest publishes (its energy gate and settings).
pub(crate) fn segment_audio(samples: &[f32], cfg: &Config) -> Vec<Vec<f32>> {
    let i = &cfg.ingest;
    let mut gate = sightline_streams::AudioSegmenter::new(
        i.audio_gate_level,
        i.audio_gate_hangover_ms,
        i.audio_soft_segment_ms,
        i.audio_max_segment_ms,
    );
    let mut segments: Vec<Vec<f32>> = gate.push(0, samples).into_iter().map(|s| s.samples).collect();
    segments.extend(gate.flush().into_iter().map(|s| s.samples));
    segments
}

/// Runs `run` over `items` in batches of `batch` (after one warm-up batch), at least `min_items`
/// items in all (the content repeated), and measures it.
fn measure<T>(
    pool: &str,
    what: &str,
    batch: usize,
    items: &[T],
    min_items: usize,
    mut run: impl FnMut(&[T]) -> Result<()>,
) -> Result<Measured>
where
    T: Clone,
{
    if items.is_empty() {
        bail!("{pool}: the clip gave no items");
    }
    let all: Vec<T> = items.iter().cycle().take(min_items.max(items.len())).cloned().collect();
    run(&all[..batch.min(all.len())])?;
    let started = Instant::now();
    for chunk in all.chunks(batch) {
        run(chunk)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Measured {
        pool: pool.into(),
        batch,
        items: all.len(),
        seconds,
        ms_per_item: seconds * 1000.0 / all.len() as f64,
        what: what.into(),
        gate_ms_per_item: None,
        reheard_ms_per_item: None,
    })
}

/// The frame signature's time per frame, ms: what deciding a frame is unchanged costs a pool.
fn gate_ms(frames: &[Vec<u8>], (w, h): (usize, usize)) -> Result<f64> {
    let started = Instant::now();
    for px in frames {
        FrameSignature::of_rgb(px, w, h).context("frame signature")?;
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0 / frames.len().max(1) as f64)
}

/// `batches`: pool name → batch sizes. Writes the JSON array to `out` (and stdout).
pub(crate) fn bare_bench(
    clip: &Path,
    batches: &BTreeMap<String, Vec<usize>>,
    min_items: usize,
    out: Option<&Path>,
    config: Option<&Path>,
) -> Result<()> {
    let cfg = Config::load(config.or(Some(Path::new("config/sightline.toml"))))?;
    let m = &cfg.models;
    let rt = Runtime::load(&m.onnxruntime_lib())?
        .with_providers(&m.providers, m.cuda_device)?
        .with_tf32(m.tf32_files());
    let (w, h) = (cfg.ingest.analysis_width as usize, cfg.ingest.analysis_height as usize);
    let text_files = m.task_files(Task::TextEmbedding)?;
    let mut embedder = TextEmbedder::load(&rt, &text_files[0], &text_files[1], cfg.vectors.threads)?;
    let mut embed = |texts: &[String]| -> Result<()> {
        if !texts.is_empty() {
            embedder.embed(&texts.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        Ok(())
    };
    let frames = if batches.contains_key("ocr") || batches.contains_key("scenes") {
        clip_frames(clip, &cfg)?
    } else {
        Vec::new()
    };
    let mut rows = Vec::new();
    for (pool, sizes) in batches {
        for &batch in sizes.iter().filter(|&&b| b > 0) {
            eprintln!("bare ONNX Runtime: {pool} at batch {batch}");
            let row = match pool.as_str() {
                "ocr" => {
                    let files = m.task_files_on(Task::Ocr, rt.provider().is_cpu())?;
                    let params = OcrParams::from_config(&cfg.ocr).batched_for(rt.provider(), batch);
                    let mut ocr = Ocr::load(&rt, &files[0], &files[1], cfg.ocr.threads, params)?;
                    measure(
                        pool,
                        "a sampled frame: PP-OCR detector + recogniser, MiniLM on its lines",
                        batch,
                        &frames,
                        min_items,
                        |chunk| {
                            let inputs: Vec<(&[u8], usize, usize)> =
                                chunk.iter().map(|px| (px.as_slice(), w, h)).collect();
                            let mut texts = Vec::new();
                            for lines in ocr.read_batch(&inputs) {
                                texts.extend(lines?.into_iter().map(|l| l.text));
                            }
                            embed(&texts)
                        },
                    )?
                }
                "scenes" => {
                    let spec = m.for_task(Task::Labels)?;
                    let mut labeler = ImageLabeler::load(&rt, &m.file(spec, 0), &m.file(spec, 1), 1)?;
                    measure(
                        pool,
                        "a sampled frame: signature, EfficientNet-Lite0 labels, MiniLM on them",
                        batch,
                        &frames,
                        min_items,
                        |chunk| {
                            for px in chunk {
                                FrameSignature::of_rgb(px, w, h).context("frame signature")?;
                            }
                            let images: Vec<(&[u8], usize, usize)> =
                                chunk.iter().map(|px| (px.as_slice(), w, h)).collect();
                            let texts: Vec<String> = labeler
                                .label(&images, cfg.scenes.label_top_k)?
                                .iter()
                                .map(|l| {
                                    l.top.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(", ")
                                })
                                .collect();
                            embed(&texts)
                        },
                    )?
                }
                "speech" => {
                    let segments = clip_segments(clip, &cfg)?;
                    let mut vad = SileroVad::load(&rt, &m.task_files(Task::Vad)?[0])?;
                    let files = m.task_files_on(Task::Stt, rt.provider().is_cpu())?;
                    let mut stt = Moonshine::load(&rt, &files[0], &files[1], &files[2], cfg.speech.threads)?;
                    stt.configure(&cfg.speech);
                    stt.set_batching(8, cfg.speech.max_pad_ms as usize * 16);
                    let s = &cfg.speech;
                    // With other languages the pool's Whisper identifies and transcribes every
                    // utterance (English too, unless `english_model = "stt"`): so does the reference.
                    let mut whisper = if s.uses_multilingual_model() && !s.english_to_stt() {
                        let f = m.task_files(Task::SttMultilingual)?;
                        let mut w = Whisper::load(&rt, &f[0], &f[1], &f[2], &f[3], s.threads)?;
                        w.configure(s);
                        Some(w)
                    } else {
                        None
                    };
                    let what = match whisper {
                        Some(_) => {
                            "an audio segment: Silero VAD, Whisper (language and transcript) on its utterances, MiniLM on the text"
                        }
                        None => {
                            "an audio segment: Silero VAD, Moonshine on its utterances, MiniLM on the text"
                        }
                    };
                    // Heard once (the pool on time or behind), then re-heard as configured (the
                    // pool ahead of its target), both on the same items.
                    let rehear = match whisper {
                        Some(_) => s.multilingual_rehear_stretches.clone(),
                        None => s.rehear_stretches.clone(),
                    };
                    let below = s.rehear_below;
                    let rehearing = !rehear.is_empty() && below > 0.0;
                    let mut hear = |again: bool| -> Result<Measured> {
                        let (k, b) = if again { (rehear.as_slice(), below) } else { (&[][..], 0.0) };
                        stt.set_rehearing(k, b);
                        if let Some(w) = whisper.as_mut() {
                            w.set_rehearing(k, b);
                        }
                        measure(pool, what, batch, &segments, min_items, |chunk| {
                            let refs: Vec<&[f32]> = chunk.iter().map(Vec::as_slice).collect();
                            let regions =
                                vad.speech_regions_batch(&refs, s.vad_threshold, s.min_speech_ms)?;
                            let utterances: Vec<&[f32]> = regions
                                .iter()
                                .zip(&refs)
                                .flat_map(|(r, seg)| r.iter().map(move |&(a, b)| &seg[a..b]))
                                .collect();
                            let texts = match whisper.as_mut() {
                                Some(w) => {
                                    let mut texts = Vec::new();
                                    for part in utterances.chunks(WHISPER_MAX_BATCH) {
                                        let heard = w.transcribe_batch(part, &s.languages)?;
                                        texts.extend(heard.into_iter().map(|(t, _)| t.text));
                                    }
                                    texts
                                }
                                None => stt
                                    .transcribe_batch(&utterances)
                                    .into_iter()
                                    .map(|t| Ok(t?.text))
                                    .collect::<Result<Vec<_>>>()?,
                            };
                            embed(&texts)
                        })
                    };
                    let mut row = hear(false)?;
                    if rehearing {
                        row.reheard_ms_per_item = Some(hear(true)?.ms_per_item);
                    }
                    row
                }
                other => bail!("no bare reference for pool {other:?} (ocr, scenes, speech)"),
            };
            let mut row = row;
            if pool == "ocr" || pool == "scenes" {
                row.gate_ms_per_item = Some(gate_ms(&frames, (w, h))?);
            }
            eprintln!("  {:.1} ms per item over {} items", row.ms_per_item, row.items);
            rows.push(row);
        }
    }
    let json = serde_json::to_string_pretty(&rows)?;
    println!("{json}");
    if let Some(out) = out {
        std::fs::write(out, &json).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clip_is_cut_as_ingest_cuts_it_and_each_pool_is_measured_at_each_batch() {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/sightline.toml");
        let cfg = Config::load(Some(&config)).unwrap();
        let dir = std::env::temp_dir().join("sightline-test-clips");
        let clip = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(sightline_testkit::ClipSpec::standard().render(&dir))
            .unwrap();
        // 18 s at 2 fps, at the analysis size.
        let frames = clip_frames(&clip, &cfg).unwrap();
        let (w, h) = (cfg.ingest.analysis_width as usize, cfg.ingest.analysis_height as usize);
        assert!((35..=37).contains(&frames.len()), "{} frames", frames.len());
        assert!(frames.iter().all(|f| f.len() == w * h * 3));
        // Three sentences with silence between them: three segments of speech.
        let segments = clip_segments(&clip, &cfg).unwrap();
        assert_eq!(segments.len(), 3, "{:?}", segments.iter().map(Vec::len).collect::<Vec<_>>());
        assert!(segments.iter().all(|s| (16_000..16_000 * 6).contains(&s.len())));

        let out = dir.join(format!("bare-{}.json", std::process::id()));
        let batches: BTreeMap<String, Vec<usize>> =
            [("ocr".to_string(), vec![2]), ("speech".to_string(), vec![1, 3])].into_iter().collect();
        bare_bench(&clip, &batches, 4, Some(&out), Some(&config)).unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let got: Vec<(&str, u64, u64)> = rows
            .iter()
            .map(|r| {
                (r["pool"].as_str().unwrap(), r["batch"].as_u64().unwrap(), r["items"].as_u64().unwrap())
            })
            .collect();
        // OCR over every frame of the clip; speech over its three segments, repeated to four.
        assert_eq!(got, [("ocr", 2, frames.len() as u64), ("speech", 1, 4), ("speech", 3, 4)]);
        assert!(rows.iter().all(|r| r["ms_per_item"].as_f64().unwrap() > 0.0), "{rows:?}");
        // What a skipped frame costs OCR: a small part of reading one.
        let gate = rows[0]["gate_ms_per_item"].as_f64().unwrap();
        assert!(gate > 0.0 && gate < rows[0]["ms_per_item"].as_f64().unwrap() / 10.0, "{rows:?}");
        assert!(rows[1].get("gate_ms_per_item").is_none(), "speech skips nothing: {rows:?}");
        let unknown = [("faces".to_string(), vec![1])].into_iter().collect();
        let err = bare_bench(&clip, &unknown, 1, None, Some(&config)).unwrap_err().to_string();
        assert!(err.contains("no bare reference for pool \"faces\""), "{err}");
        let _ = std::fs::remove_file(out);
    }
}
