//! The pipeline's branches, each wired to its appsink: every decoded frame scored for cuts (and cut
//! into shot windows), frames sampled at the analysis size, audio gated into segments; and the
//! plumbing around them (decoded pads, demuxers, the bus).

use super::{
    IngestError, IngestStats, MediaClock, MediaItem, SampledFrame, appsink, grid_rgb, now_ms, packed_rgb,
    touch,
};
use crate::{AudioSegmenter, CutDetector};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use sightline_settings::IngestConfig;
use sightline_wire::CutCandidate;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use tokio::sync::mpsc;

/// What every branch shares: settings, counters, the media clock and the channel to the actor.
pub(super) struct Branch<'a> {
    pub cfg: &'a IngestConfig,
    pub stats: &'a Arc<IngestStats>,
    pub clock: &'a MediaClock,
    pub tx: &'a mpsc::Sender<MediaItem>,
}

/// Cuts the tiny branch found and no sampled frame has carried yet, and how far that branch has
/// scored. The two branches run on their own threads; a sampled frame waits (up to
/// [`CUT_WAIT`]) for the tiny branch to reach it, so a cut just before it rides on it rather than
/// on the next sample when the tiny branch runs a little behind (a busy machine).
#[derive(Default)]
pub(super) struct PendingCuts {
    state: Mutex<CutState>,
    /// Signalled each time the tiny branch scores a frame.
    progress: Condvar,
}

#[derive(Default)]
struct CutState {
    found: Vec<CutCandidate>,
    /// Media time of the last decoded frame scored for cuts (0 before the first).
    scored_ms: i64,
}

/// The longest a sampled frame waits for the tiny branch to score up to it.
const CUT_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

impl PendingCuts {
    fn push(&self, cut: CutCandidate) {
        self.state.lock().unwrap().found.push(cut);
    }

    fn scored(&self, pts_ms: i64) {
        self.state.lock().unwrap().scored_ms = pts_ms;
        self.progress.notify_all();
    }

    /// The cuts at or before `pts_ms`, once the tiny branch has scored that far or [`CUT_WAIT`]
    /// has passed; later cuts stay for a later frame.
    fn up_to(&self, pts_ms: i64) -> Vec<CutCandidate> {
        let state = self.state.lock().unwrap();
        let (mut state, _) =
            self.progress.wait_timeout_while(state, CUT_WAIT, |s| s.scored_ms < pts_ms).unwrap();
        let (mine, later) = state.found.drain(..).partition(|c| c.pts_ms <= pts_ms);
        state.found = later;
        mine
    }

    /// Cuts a frame that was not delivered carried: they go with the next one.
    fn put_back(&self, cuts: Vec<CutCandidate>) {
        self.state.lock().unwrap().found.splice(0..0, cuts);
    }
}

/// The video bin (a tee into the tiny and the sampled branch) and the audio bin.
pub(super) fn bins(cfg: &IngestConfig) -> Result<(gst::Bin, gst::Bin), IngestError> {
    let video = gst::parse::bin_from_description(
        &format!(
            "tee name=t \
         t. ! queue max-size-buffers=8 ! videoconvert ! video/x-raw,format=I420 ! \
           appsink name=tiny sync=false \
         t. ! queue name=sampleq leaky=downstream max-size-buffers=4 ! videorate drop-only=true ! \
           capsfilter name=ratecaps caps=video/x-raw,framerate={fps}/1 ! videoscale ! videoconvert ! \
           video/x-raw,format=RGB,width={w},height={h} ! \
           appsink name=sampled sync=false max-buffers=2 drop=true",
            fps = cfg.sample_fps,
            w = cfg.analysis_width,
            h = cfg.analysis_height,
        ),
        true,
    )
    .map_err(|e| IngestError::Build(e.to_string()))?;
    let audio = gst::parse::bin_from_description(
        "queue max-size-time=2000000000 ! audioconvert ! audioresample ! \
         audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved ! \
         appsink name=audio sync=false",
        true,
    )
    .map_err(|e| IngestError::Build(e.to_string()))?;
    Ok((video, audio))
}

/// Every decoded frame, tiny: cut scoring (and shot windows for TransNetV2).
pub(super) fn score_decoded_frames(
    video: &gst::Bin,
    b: &Branch,
    pending_cuts: &Arc<PendingCuts>,
) -> Result<(), IngestError> {
    let cfg = b.cfg;
    let tiny = appsink(video, "tiny")?;
    let mut detector = CutDetector::new(cfg.cut_threshold, cfg.cut_ratio, cfg.min_scene_ms)
        .with_gradual(cfg.gradual_threshold, cfg.gradual_max_ms);
    let (st, cuts, tiny_clock) = (b.stats.clone(), pending_cuts.clone(), b.clock.clone());
    let (cw, ch) = (cfg.cut_width, cfg.cut_height);
    let mut windows =
        (cfg.cut_detector == sightline_settings::CutDetector::Transnetv2).then(crate::ShotWindower::new);
    let stx = b.tx.clone();
    tiny.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(pts_ms) = tiny_clock.media_ms(&sample) else { return Ok(gst::FlowSuccess::Ok) };
                let rgb = grid_rgb(&sample, cw, ch, 1).ok_or(gst::FlowError::Error)?;
                st.decoded_frames.fetch_add(1, Ordering::Relaxed);
                touch(&st, pts_ms);
                if let Some(w) = windows.as_mut() {
                    let (sw, sh) = (crate::shots::SHOT_WIDTH, crate::shots::SHOT_HEIGHT);
                    let tiny =
                        grid_rgb(&sample, sw, sh, crate::shots::SHOT_TAPS).ok_or(gst::FlowError::Error)?;
                    if let Some(window) = w.push(pts_ms, tiny)
                        && stx.try_send(MediaItem::Shots(window)).is_err()
                    {
                        st.dropped_shot_windows.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if let Some(c) = detector.push_change(&rgb, pts_ms) {
                    st.cuts.fetch_add(1, Ordering::Relaxed);
                    let transition = c
                        .gradual()
                        .then_some(sightline_wire::Transition { start_ms: c.start_ms, end_ms: c.end_ms });
                    cuts.push(CutCandidate { pts_ms: c.pts_ms, score: c.score, transition });
                }
                cuts.scored(pts_ms);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(())
}

/// Sampled frames at the analysis size, carrying the cuts found up to them. Returns the sampling
/// interval (ms), which backpressure changes in place.
pub(super) fn sample_frames(
    video: &gst::Bin,
    b: &Branch,
    pending_cuts: &Arc<PendingCuts>,
) -> Result<Arc<AtomicI64>, IngestError> {
    let cfg = b.cfg;
    let sampled = appsink(video, "sampled")?;
    let (st, cuts, ftx, frame_clock) = (b.stats.clone(), pending_cuts.clone(), b.tx.clone(), b.clock.clone());
    // The sampled branch sheds load by leaking decoded frames when it falls behind; a sample
    // slot that then stays empty is a dropped frame.
    let interval = Arc::new(AtomicI64::new(1000 / cfg.sample_fps.max(1) as i64));
    let slot = interval.clone();
    let mut last_pts: Option<i64> = None;
    let (w, h) = (cfg.analysis_width, cfg.analysis_height);
    sampled.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(pts_ms) = frame_clock.media_ms(&sample) else { return Ok(gst::FlowSuccess::Ok) };
                let rgb = packed_rgb(&sample, w, h).ok_or(gst::FlowError::Error)?;
                let every = slot.load(Ordering::Relaxed).max(1);
                if let Some(prev) = last_pts.replace(pts_ms) {
                    let missed = ((pts_ms - prev) as f64 / every as f64).round() as i64 - 1;
                    if missed > 0 {
                        st.dropped_frames.fetch_add(missed as u64, Ordering::Relaxed);
                    }
                }
                let mine = cuts.up_to(pts_ms);
                let frame = SampledFrame { pts_ms, wall_ms: now_ms(), width: w, height: h, rgb, cuts: mine };
                match ftx.try_send(MediaItem::Frame(frame)) {
                    Ok(()) => {
                        st.sampled_frames.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        st.dropped_frames.fetch_add(1, Ordering::Relaxed);
                        // The frame goes, its cuts stay for the next one.
                        if let MediaItem::Frame(f) = e.into_inner() {
                            cuts.put_back(f.cuts);
                        }
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(interval)
}

/// Audio: gated into segments of sound.
pub(super) fn segment_audio(audio: &gst::Bin, b: &Branch) -> Result<(), IngestError> {
    let cfg = b.cfg;
    let audio_sink = appsink(audio, "audio")?;
    let mut gate = AudioSegmenter::new(
        cfg.audio_gate_level,
        cfg.audio_gate_hangover_ms,
        cfg.audio_soft_segment_ms,
        cfg.audio_max_segment_ms,
    );
    let (st, atx, audio_clock) = (b.stats.clone(), b.tx.clone(), b.clock.clone());
    audio_sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(pts_ms) = audio_clock.media_ms(&sample) else { return Ok(gst::FlowSuccess::Ok) };
                let buf = sample.buffer().ok_or(gst::FlowError::Error)?;
                let map = buf.map_readable().map_err(|_| gst::FlowError::Error)?;
                let samples: Vec<f32> =
                    map.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
                touch(&st, pts_ms);
                st.audio_buffers.fetch_add(1, Ordering::Relaxed);
                for seg in gate.push(pts_ms, &samples) {
                    if atx.try_send(MediaItem::Audio(seg)).is_ok() {
                        st.audio_segments.fetch_add(1, Ordering::Relaxed);
                    } else {
                        st.dropped_audio.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(())
}

/// Links decoded pads to the branch for their media type; extra pads of a type are ignored.
pub(super) fn link_decoded_pads(src: &gst::Element, video: &gst::Bin, audio: &gst::Bin) {
    let (vbin, abin) = (video.clone(), audio.clone());
    src.connect_pad_added(move |_, pad| {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let Some(name) = caps.structure(0).map(|s| s.name().to_string()) else { return };
        let target = if name.starts_with("video/") {
            &vbin
        } else if name.starts_with("audio/") {
            &abin
        } else {
            return;
        };
        if let Some(sink) = target.static_pad("sink")
            && !sink.is_linked()
            && let Err(e) = pad.link(&sink)
        {
            tracing::warn!(error = ?e, media = %name, "cannot link decoded pad");
        }
    });
}

/// The adaptive demuxers the pipeline creates (kept alive when a stuck pipeline is torn down).
pub(super) fn track_demuxers(pipeline: &gst::Pipeline) -> Arc<Mutex<Vec<gst::Element>>> {
    let demuxers = Arc::new(Mutex::new(Vec::new()));
    let seen = demuxers.clone();
    pipeline.connect_deep_element_added(move |_, _, element| {
        let factory = element.factory().map(|f| f.name().to_string()).unwrap_or_default();
        if factory.ends_with("demux2") {
            seen.lock().unwrap().push(element.clone());
        }
    });
    demuxers
}

/// A video larger than the configured bounds.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "the video is {width}x{height}, over the limits (ingest.max_dimension {max_dimension} per side, ingest.max_pixels {max_pixels})"
)]
pub struct TooLarge {
    pub width: u32,
    pub height: u32,
    pub max_dimension: u32,
    pub max_pixels: u64,
}

/// Whether a video of `width` x `height` is within the configured bounds.
pub fn check_resolution(cfg: &IngestConfig, width: u32, height: u32) -> Result<(), TooLarge> {
    let pixels = width as u64 * height as u64;
    if width > cfg.max_dimension || height > cfg.max_dimension || pixels > cfg.max_pixels {
        return Err(TooLarge { width, height, max_dimension: cfg.max_dimension, max_pixels: cfg.max_pixels });
    }
    Ok(())
}

/// Bounds on decoding, set on each element as the pipeline creates it: a video's size is checked
/// on its parser's (or decoder's) output caps, before a frame of that size is decoded, and a
/// larger one stops the pipeline with the reason; software decoders get at most
/// `decoder_threads` threads.
pub(super) fn guard_decoding(pipeline: &gst::Pipeline, cfg: &IngestConfig, stats: &Arc<IngestStats>) {
    let (cfg, stats) = (cfg.clone(), stats.clone());
    pipeline.connect_deep_element_added(move |_, _, element| {
        let Some(factory) = element.factory() else { return };
        let klass = factory.metadata("klass").unwrap_or_default().to_string();
        if !klass.contains("Video") || !(klass.contains("Parser") || klass.contains("Decoder")) {
            return;
        }
        if klass.contains("Decoder") && element.find_property("max-threads").is_some() {
            element.set_property("max-threads", cfg.decoder_threads as i32);
        }
        let Some(src) = element.static_pad("src") else { return };
        let (cfg, stats, weak) = (cfg.clone(), stats.clone(), element.downgrade());
        src.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            let Some(gst::PadProbeData::Event(ev)) = &info.data else { return gst::PadProbeReturn::Ok };
            let gst::EventView::Caps(c) = ev.view() else { return gst::PadProbeReturn::Ok };
            let Some(s) = c.caps().structure(0) else { return gst::PadProbeReturn::Ok };
            let (Ok(w), Ok(h)) = (s.get::<i32>("width"), s.get::<i32>("height")) else {
                return gst::PadProbeReturn::Ok;
            };
            match check_resolution(&cfg, w.max(0) as u32, h.max(0) as u32) {
                Ok(()) => gst::PadProbeReturn::Ok,
                Err(too_large) => {
                    let why = too_large.to_string();
                    *stats.refusal.lock().unwrap() = Some(why.clone());
                    if let Some(e) = weak.upgrade() {
                        gst::element_error!(e, gst::StreamError::Format, ("{}", why));
                    }
                    gst::PadProbeReturn::Drop
                }
            }
        });
    });
}

/// Reports the pipeline's first error (with a reachability probe of the source) or its end.
pub(super) fn watch_bus(
    pipeline: &gst::Pipeline,
    tx: mpsc::Sender<MediaItem>,
    url: String,
) -> Result<tokio::task::JoinHandle<()>, IngestError> {
    let bus = pipeline.bus().ok_or_else(|| IngestError::Build("pipeline has no bus".into()))?;
    let mut messages = bus.stream();
    let btx = tx;

    let bus_task = tokio::spawn(async move {
        use futures::StreamExt;
        while let Some(msg) = messages.next().await {
            let item = match msg.view() {
                gst::MessageView::Error(e) => {
                    let src = e.src().map(|s| s.name().to_string()).unwrap_or_default();
                    let text = format!("{src}: {}", e.error());
                    // GStreamer says "Internal data stream error" for a refused connection;
                    // find out whether the source is reachable at all and say so.
                    match crate::source::probe_tcp(&url).await {
                        Some(reason) => MediaItem::Error(format!("{reason} ({text})")),
                        None => MediaItem::Error(text),
                    }
                }
                gst::MessageView::Eos(_) => MediaItem::Eos,
                _ => continue,
            };
            let _ = btx.send(item).await;
            break;
        }
    });
    Ok(bus_task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_bounds_by_side_and_area() {
        let cfg = IngestConfig { max_pixels: 3840 * 2160, max_dimension: 4096, ..Default::default() };
        assert!(check_resolution(&cfg, 1920, 1080).is_ok());
        assert!(check_resolution(&cfg, 3840, 2160).is_ok());
        assert!(check_resolution(&cfg, 2160, 3840).is_ok(), "portrait 4K");
        let why = check_resolution(&cfg, 7680, 4320).unwrap_err().to_string();
        assert!(why.contains("7680x4320") && why.contains("max_dimension"), "{why}");
        assert!(check_resolution(&cfg, 4096, 4096).is_err(), "area");
        assert!(check_resolution(&cfg, 16, 16384).is_err(), "side");
    }

    fn cut(pts_ms: i64) -> CutCandidate {
        CutCandidate { pts_ms, score: 0.9, transition: None }
    }

    #[test]
    fn a_sampled_frame_waits_for_the_cut_scorer_to_reach_it() {
        let cuts = Arc::new(PendingCuts::default());
        cuts.push(cut(4_000));
        cuts.scored(4_900);
        // The scorer is behind the sample at 9434: the cut at 9000 comes in a moment later.
        let scorer = {
            let cuts = cuts.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(30));
                cuts.push(cut(9_000));
                cuts.scored(9_000);
                std::thread::sleep(std::time::Duration::from_millis(20));
                cuts.push(cut(9_500));
                cuts.scored(9_500);
            })
        };
        let got: Vec<i64> = cuts.up_to(9_434).iter().map(|c| c.pts_ms).collect();
        assert_eq!(got, [4_000, 9_000], "the frame carries the cut before it, not the one after");
        scorer.join().unwrap();
        // A frame that was not delivered gives its cuts back, ahead of later ones.
        cuts.put_back(vec![cut(9_000)]);
        let got: Vec<i64> = cuts.up_to(9_700).iter().map(|c| c.pts_ms).collect();
        assert_eq!(got, [9_000, 9_500]);
    }

    #[test]
    fn the_wait_for_the_cut_scorer_is_bounded() {
        let cuts = PendingCuts::default();
        cuts.push(cut(100));
        cuts.scored(200);
        let start = std::time::Instant::now();
        // Nothing scores past 200 (the tiny branch stopped): the frame goes after CUT_WAIT.
        let got = cuts.up_to(10_000);
        assert!(start.elapsed() >= CUT_WAIT);
        assert_eq!(got.len(), 1);
    }
}
