//! Each inference pool's actor (work in over JetStream, events published, acked) against bare ONNX
//! Runtime running the same models at the same batch: the ratio the goal (≥ 0.90) is about.

use super::*;
use sightline_models::{Moonshine, Runtime, SileroVad, TextEmbedder};
use sightline_settings::{Config, Task};

/// Which inference pool an actor run measures.
#[derive(Clone, Copy)]
pub(crate) enum Pool {
    Ocr,
    Speech,
    Scenes,
    Shots,
}

/// `n` items through one inference pool's actor (published to JetStream, events published back,
/// acked), every other pool off: items/s and seconds. `publish(i)` sends item `i`; item `n` is the
/// warm-up, which has come back once the worker has loaded its models.
pub(crate) async fn pool_actor(
    cfg: &mut Config,
    pool: Pool,
    n: usize,
    publish: impl AsyncFn(&sightline_actors::Bus, usize) -> Result<()>,
) -> Result<(f64, f64)> {
    use futures::StreamExt;
    cfg.scenes.workers = 0;
    cfg.speech.workers = 0;
    cfg.ocr.workers = 0;
    cfg.shots.workers = 0;
    // Throughput of a backlog: nothing is shed for lag here.
    let (kind, name) = match pool {
        Pool::Ocr => {
            (cfg.ocr.workers, cfg.ocr.max_ack_pending, cfg.ocr.lag_target_ms, cfg.ocr.max_lag_ms) =
                (1, 64, 0, 0);
            (sightline_wire::EventKind::Ocr, "ocr")
        }
        Pool::Speech => {
            (
                cfg.speech.workers,
                cfg.speech.max_ack_pending,
                cfg.speech.lag_target_ms,
                cfg.speech.max_lag_ms,
            ) = (1, 64, 0, 0);
            (sightline_wire::EventKind::Transcript, "speech")
        }
        Pool::Scenes => {
            (
                cfg.scenes.workers,
                cfg.scenes.max_ack_pending,
                cfg.scenes.lag_target_ms,
                cfg.scenes.max_lag_ms,
            ) = (1, 256, 0, 0);
            (sightline_wire::EventKind::Frame, "scenes")
        }
        Pool::Shots => {
            cfg.ingest.cut_detector = sightline_settings::CutDetector::Transnetv2;
            (cfg.shots.workers, cfg.shots.max_ack_pending, cfg.shots.lag_target_ms, cfg.shots.max_lag_ms) =
                (1, 64, 0, 0);
            (sightline_wire::EventKind::Scene, "shots")
        }
    };
    let roles = sightline_actors::Roles::parse("inference")?;
    let node = sightline_actors::Node::start(cfg, roles, sightline_actors::Metrics::new()).await?;
    let bus = node.bus.clone();
    let mut events = bus.client.subscribe(bus.names.events_of_kind(kind)).await?;
    publish(&bus, n).await?;
    tokio::time::timeout(Duration::from_secs(120), events.next()).await?.context("no warm-up event")?;
    let started = Instant::now();
    for i in 0..n {
        publish(&bus, i).await?;
    }
    // Done when the pool's consumer has nothing pending and nothing unacknowledged.
    let work = match pool {
        Pool::Ocr | Pool::Scenes => bus.names.frames_stream(),
        Pool::Speech => bus.names.audio_stream(),
        Pool::Shots => bus.names.shots_stream(),
    };
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = bus
        .js
        .get_stream(&work)
        .await?
        .get_consumer(&bus.names.consumer(name))
        .await
        .map_err(|e| anyhow::anyhow!("{name} consumer: {e}"))?;
    loop {
        let info = consumer.info().await?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the {name} actor did not finish {n} items in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let actor_s = started.elapsed().as_secs_f64();
    let mut seen = std::collections::HashSet::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(200), events.next()).await {
        let e: sightline_wire::Event = serde_json::from_slice(&msg.payload)?;
        seen.insert(e.stream_id);
    }
    let actor = n as f64 / actor_s;
    eprintln!("  {name} actor: events for {} of {n} items, {actor:.2} items/s", seen.len());
    node.shutdown().await;
    bus.destroy().await;
    Ok((actor, actor_s))
}

/// Speech: the espeak sentences as audio segments of `n` streams, through bare ONNX Runtime (VAD
/// and Moonshine called directly, `batch_max` segments at a time as the pool takes them) and
/// through the speech actor: report rows.
pub(crate) async fn speech_vs_bare(
    cfg: &mut Config,
    rt: &Runtime,
    n: usize,
    embedder: &mut TextEmbedder,
) -> Result<(String, f64)> {
    let segments: Vec<Vec<f32>> = (0..n)
        .map(|i| Ok(sightline_testkit::speech_samples(sightline_testkit::SPEECH_SENTENCES[i % 10])?))
        .collect::<Result<_>>()?;
    let m = &cfg.models;
    let mut vad = SileroVad::load(rt, &m.task_files(Task::Vad)?[0])?;
    let files = m.task_files_on(Task::Stt, rt.provider().is_cpu())?;
    let mut stt = Moonshine::load(rt, &files[0], &files[1], &files[2], cfg.speech.threads)?;
    stt.configure(&cfg.speech);
    stt.set_batching(8, cfg.speech.max_pad_ms as usize * 16);
    let batch = cfg.speech.batch_max.max(1);
    let mut bare_run = |segs: &[Vec<f32>]| -> Result<()> {
        let refs: Vec<&[f32]> = segs.iter().map(Vec::as_slice).collect();
        let regions = vad.speech_regions_batch(&refs, cfg.speech.vad_threshold, cfg.speech.min_speech_ms)?;
        let utterances: Vec<&[f32]> =
            regions.iter().zip(&refs).flat_map(|(r, s)| r.iter().map(move |&(a, b)| &s[a..b])).collect();
        let mut texts = Vec::new();
        for t in stt.transcribe_batch(&utterances) {
            texts.push(t?.text);
        }
        if !texts.is_empty() {
            embedder.embed(&texts.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        Ok(())
    };
    bare_run(&segments[..1])?;
    let started = Instant::now();
    for chunk in segments.chunks(batch) {
        bare_run(chunk)?;
    }
    let bare_s = started.elapsed().as_secs_f64();
    let bare = n as f64 / bare_s;
    eprintln!("  speech bare: {bare:.2} segments/s");
    // One stream per segment, as many streams speaking at once.
    let (actor, actor_s) = pool_actor(cfg, Pool::Speech, n, async |bus, i| {
        publish_segment(bus, format!("s{i}"), &segments[i % n]).await
    })
    .await?;
    let rows = format!(
        "| speech: bare ONNX Runtime (VAD + Moonshine + MiniLM, {batch} segments a batch) | segments | {bare:.2} | {bare_s:.2} |\n\
         | speech: inference actor (batch_max {batch}) | segments | {actor:.2} | {actor_s:.2} |\n"
    );
    Ok((rows, actor / bare))
}

/// Scenes: `n` frames of as many streams (each new to the pool, so each becomes a labelled `frame`
/// event) through bare ONNX Runtime (frame signature, EfficientNet-Lite0 over the batch, MiniLM over
/// the labels) and through the scene actor, which also writes each keyframe's thumbnail and looks
/// for duplicates in Redis: report rows and the ratio.
pub(crate) async fn scenes_vs_bare(
    cfg: &mut Config,
    rt: &Runtime,
    frames: &[(String, Vec<u8>)],
    (w, h): (usize, usize),
    embedder: &mut TextEmbedder,
) -> Result<(String, f64)> {
    let n = frames.len();
    let m = &cfg.models;
    let spec = m.for_task(Task::Labels)?;
    let mut labeler = sightline_models::ImageLabeler::load(rt, &m.file(spec, 0), &m.file(spec, 1), 1)?;
    let batch = cfg.scenes.batch_max.max(1);
    let mut bare_run = |chunk: &[(String, Vec<u8>)]| -> Result<()> {
        for (_, px) in chunk {
            sightline_models::FrameSignature::of_rgb(px, w, h).context("frame signature")?;
        }
        let images: Vec<(&[u8], usize, usize)> = chunk.iter().map(|(_, px)| (px.as_slice(), w, h)).collect();
        let labels = labeler.label(&images, cfg.scenes.label_top_k)?;
        let texts: Vec<String> = labels
            .iter()
            .map(|l| l.top.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(", "))
            .collect();
        embedder.embed(&texts.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(())
    };
    bare_run(&frames[..1])?;
    let started = Instant::now();
    for chunk in frames.chunks(batch) {
        bare_run(chunk)?;
    }
    let bare_s = started.elapsed().as_secs_f64();
    let bare = n as f64 / bare_s;
    eprintln!("  scenes bare: {bare:.2} frames/s");
    let (actor, actor_s) = pool_actor(cfg, Pool::Scenes, n, async |bus, i| {
        publish_still(bus, &format!("sc{i}"), &frames[i % n].1, (w, h)).await
    })
    .await?;
    let rows = format!(
        "| scenes: bare ONNX Runtime (signature + EfficientNet-Lite0 + MiniLM, {batch} frames a batch) | frames | {bare:.2} | {bare_s:.2} |\n\
         | scenes: inference actor (batch_max {batch}; also thumbnails and duplicate lookups in Redis) | frames | {actor:.2} | {actor_s:.2} |\n"
    );
    Ok((rows, actor / bare))
}

/// Shots: `n` windows of 100 frames (a cut in the middle of each, so each gives a `scene` event)
/// through bare TransNetV2 at the pool's batch and through the shots actor: report rows and the
/// ratio.
pub(crate) async fn shots_vs_bare(cfg: &mut Config, rt: &Runtime, n: usize) -> Result<(String, f64)> {
    use sightline_models::shots::{SHOT_CONTEXT, SHOT_WINDOW};
    let frame = sightline_models::SHOT_FRAME_BYTES;
    let window: Vec<u8> =
        (0..SHOT_WINDOW).flat_map(|f| vec![if f < SHOT_WINDOW / 2 { 30u8 } else { 220 }; frame]).collect();
    let mut shots =
        sightline_models::ShotDetector::load(rt, &cfg.models.task_files(Task::Shots)?[0], cfg.shots.threads)?;
    let batch = cfg.shots.batch_max.max(1);
    shots.predict(&[window.as_slice()])?;
    let started = Instant::now();
    let mut left = n;
    while left > 0 {
        let b = left.min(batch);
        shots.predict(&vec![window.as_slice(); b])?;
        left -= b;
    }
    let bare_s = started.elapsed().as_secs_f64();
    let bare = n as f64 / bare_s;
    eprintln!("  shots bare: {bare:.2} windows/s");
    let (actor, actor_s) = pool_actor(cfg, Pool::Shots, n, async |bus, i| {
        let stream = format!("sh{i}");
        let meta = sightline_wire::ShotWindowMeta {
            stream_id: stream.clone(),
            pts_ms: (0..SHOT_WINDOW as i64).map(|f| f * 33).collect(),
            wall_ms: sightline_wire::now_ms(),
            width: sightline_models::shots::SHOT_W as u32,
            height: sightline_models::shots::SHOT_H as u32,
            read_from: SHOT_CONTEXT,
            read_to: SHOT_WINDOW - SHOT_CONTEXT,
            incarnation: 0,
            lease: 0,
        };
        bus.publish(bus.names.shots_subject(&stream), &meta.msg_id(), sightline_wire::encode(&meta, &window))
            .await?;
        Ok(())
    })
    .await?;
    let rows = format!(
        "| shots: bare ONNX Runtime (TransNetV2, {batch} windows a batch) | windows | {bare:.2} | {bare_s:.2} |\n\
         | shots: inference actor (batch_max {batch}) | windows | {actor:.2} | {actor_s:.2} |\n"
    );
    Ok((rows, actor / bare))
}

/// A still frame as the only frame of stream `stream` (new to a pool's change cache, so it is
/// processed).
/// An audio segment of 16 kHz samples, the whole of stream `stream`'s audio so far, to the audio
/// work stream.
pub(crate) async fn publish_segment(
    bus: &sightline_actors::Bus,
    stream: String,
    samples: &[f32],
) -> Result<()> {
    let meta = sightline_wire::AudioMeta {
        stream_id: stream,
        start_ms: 0,
        end_ms: (samples.len() / 16) as i64,
        wall_ms: sightline_wire::now_ms(),
        samples: samples.len(),
        incarnation: 0,
        lease: 0,
        languages: Vec::new(),
    };
    let payload = sightline_wire::encode(&meta, &sightline_wire::audio_bytes(samples));
    bus.publish(bus.names.audio_subject(&meta.stream_id), &meta.msg_id(), payload).await?;
    Ok(())
}

pub(crate) async fn publish_still(
    bus: &sightline_actors::Bus,
    stream: &str,
    rgb: &[u8],
    (w, h): (usize, usize),
) -> Result<()> {
    let meta = sightline_wire::FrameMeta::still(stream, 1000, sightline_wire::now_ms(), w as u32, h as u32);
    bus.publish_frame(&meta, rgb).await?;
    Ok(())
}
