//! One GStreamer pipeline per stream: `uridecodebin3` → (every frame, tiny → cut scoring) +
//! (sampled frames at the analysis size) + (16 kHz mono audio → gated segments). Media leaves the
//! streaming threads through one bounded channel; when it is full, frames are dropped and counted,
//! so a slow consumer never makes memory grow.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video::prelude::*;
use sightline_settings::IngestConfig;
use sightline_wire::CutCandidate;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

mod branches;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("GStreamer is not usable: {0}")]
    Init(String),
    #[error("cannot build the pipeline: {0}")]
    Build(String),
    #[error("the pipeline would not start: {0}")]
    Start(String),
}

/// What a stream's pipeline should do.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    pub url: String,
    /// Media clock value of this pipeline's first instant (keeps time monotonic across restarts).
    pub base_ms: i64,
    pub ingest: IngestConfig,
}

#[derive(Debug)]
pub struct SampledFrame {
    pub pts_ms: i64,
    pub wall_ms: i64,
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
    pub cuts: Vec<CutCandidate>,
}

#[derive(Debug)]
pub enum MediaItem {
    Frame(SampledFrame),
    Audio(crate::AudioSegment),
    /// A window of every decoded frame at 48x27 for the shot-boundary model
    /// (`ingest.cut_detector = "transnetv2"`).
    Shots(crate::ShotWindow),
    /// The pipeline posted an error.
    Error(String),
    /// End of stream.
    Eos,
}

/// Counters shared between the streaming threads and the stream actor.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub decoded_frames: AtomicU64,
    pub sampled_frames: AtomicU64,
    pub dropped_frames: AtomicU64,
    pub audio_segments: AtomicU64,
    /// Decoded audio buffers (a stream of steady noise yields buffers but no segments).
    pub audio_buffers: AtomicU64,
    pub dropped_audio: AtomicU64,
    /// Shot windows (50 decoded frames each) not published because the media queue was full.
    pub dropped_shot_windows: AtomicU64,
    pub cuts: AtomicU64,
    /// Last media time seen on any branch, milliseconds on the stream's media clock.
    pub last_media_ms: AtomicI64,
    /// Wall time media last arrived, Unix milliseconds (the stall watchdog reads it).
    pub last_media_wall_ms: AtomicI64,
    /// Why the pipeline refused its media (a resolution over the limit): the stream fails with it.
    pub refusal: Mutex<Option<String>>,
}

pub struct MediaPipeline {
    pipeline: gst::Pipeline,
    rate_caps: Option<gst::Element>,
    /// Milliseconds between sampled frames at the current rate.
    sample_interval: Arc<AtomicI64>,
    bus_task: tokio::task::JoinHandle<()>,
    /// Adaptive demuxers (hlsdemux2, dashdemux2) inside the pipeline; see [`Self::quarantine`].
    demuxers: Arc<Mutex<Vec<gst::Element>>>,
    quarantined: bool,
}

pub use sightline_wire::now_ms;

pub fn init() -> Result<(), IngestError> {
    gst::init().map_err(|e| IngestError::Init(e.to_string()))
}

/// Elements the pipeline needs; `sightline check` reports any that are missing.
pub const REQUIRED_ELEMENTS: &[&str] = &[
    "uridecodebin3",
    "hlsdemux2",
    "rtmp2src",
    "rtspsrc",
    "avdec_h264",
    "videorate",
    "videoscale",
    "videoconvert",
    "audioconvert",
    "audioresample",
    "appsink",
    "tee",
    "queue",
];

pub fn missing_elements() -> Vec<&'static str> {
    REQUIRED_ELEMENTS.iter().copied().filter(|e| gst::ElementFactory::find(e).is_none()).collect()
}

impl MediaPipeline {
    /// Builds and starts the pipeline. Must be called inside a tokio runtime.
    pub fn start(
        spec: &PipelineSpec,
        stats: Arc<IngestStats>,
        capacity: usize,
    ) -> Result<(Self, mpsc::Receiver<MediaItem>), IngestError> {
        init()?;
        let cfg = &spec.ingest;
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let pipeline = gst::Pipeline::new();
        let build = |e: gst::glib::BoolError| IngestError::Build(e.to_string());
        let src =
            gst::ElementFactory::make("uridecodebin3").property("uri", &spec.url).build().map_err(build)?;
        let (video, audio) = branches::bins(cfg)?;
        pipeline.add_many([&src, video.upcast_ref(), audio.upcast_ref()]).map_err(build)?;
        let rtsp_latency = cfg.rtsp_latency_ms;
        src.connect("source-setup", false, move |args| {
            if let Some(source) = args.get(1).and_then(|v| v.get::<gst::Element>().ok()) {
                let factory = source.factory().map(|f| f.name().to_string()).unwrap_or_default();
                if factory == "rtspsrc" {
                    source.set_property("latency", rtsp_latency);
                }
            }
            None
        });

        let pending_cuts = Arc::new(branches::PendingCuts::default());
        // The media clock starts at the first decoded sample of either branch: transport streams
        // begin their presentation timeline a few frames in (PTS vs DTS), which is not media time.
        let clock = MediaClock { base_ms: spec.base_ms, origin_ms: Arc::new(AtomicI64::new(i64::MIN)) };
        let branch = branches::Branch { cfg, stats: &stats, clock: &clock, tx: &tx };
        branches::score_decoded_frames(&video, &branch, &pending_cuts)?;
        let interval = branches::sample_frames(&video, &branch, &pending_cuts)?;
        branches::segment_audio(&audio, &branch)?;
        branches::link_decoded_pads(&src, &video, &audio);
        let demuxers = branches::track_demuxers(&pipeline);
        branches::guard_decoding(&pipeline, cfg, &stats);
        let bus_task = branches::watch_bus(&pipeline, tx, spec.url.clone())?;

        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| IngestError::Start(format!("{e} (url {})", spec.url)))?;
        let rate_caps = video.by_name("ratecaps");
        Ok((
            Self { pipeline, rate_caps, sample_interval: interval, bus_task, demuxers, quarantined: false },
            rx,
        ))
    }

    /// Marks the pipeline as stuck. GStreamer 1.22's adaptive demuxers can abort the whole
    /// process when finalised after losing sync with a live playlist (a mutex left locked); a
    /// stuck pipeline therefore keeps its demuxer alive (a small, counted leak) instead of
    /// finalising it. Healthy pipelines are torn down completely.
    pub fn quarantine(&mut self) {
        self.quarantined = true;
    }

    /// The video decoders in the pipeline now, with their thread limit (`max-threads`) if they
    /// have one.
    pub fn decoders(&self) -> Vec<(String, Option<i32>)> {
        let mut out = Vec::new();
        let mut it = self.pipeline.iterate_recurse();
        while let Ok(Some(e)) = it.next() {
            let Some(f) = e.factory() else { continue };
            if f.metadata("klass").is_some_and(|k| k.contains("Decoder") && k.contains("Video")) {
                let threads = e.find_property("max-threads").map(|_| e.property::<i32>("max-threads"));
                out.push((f.name().to_string(), threads));
            }
        }
        out
    }

    /// Adaptive demuxers the pipeline holds (what a quarantine would keep alive).
    pub fn demuxer_count(&self) -> usize {
        self.demuxers.lock().unwrap().len()
    }

    /// Changes the sampling rate while playing (videorate follows the new caps).
    pub fn set_sample_rate(&self, rate: crate::Rate) {
        if let Some(c) = &self.rate_caps {
            let caps = gst::Caps::builder("video/x-raw")
                .field("framerate", gst::Fraction::new(rate.num as i32, rate.den as i32))
                .build();
            c.set_property("caps", &caps);
        }
        self.sample_interval.store((1000.0 / rate.fps().max(0.01)) as i64, Ordering::Relaxed);
    }
}

/// Pipelines are shut down one at a time: GStreamer 1.22's HTTP sources (libsoup 3) crashed the
/// process when many were finalised at once (seen in the churn soak). A teardown that has not
/// finished within [`TEARDOWN_WAIT`] (GStreamer 1.22's rtmp2src can deadlock going to NULL while
/// it reconnects) no longer holds the others back: they go ahead without the lock.
static TEARDOWN: Mutex<bool> = Mutex::new(false);
static TEARDOWN_DONE: std::sync::Condvar = std::sync::Condvar::new();
const TEARDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Pipelines whose teardown waited [`TEARDOWN_WAIT`] for another one and went ahead alone.
pub static TEARDOWNS_NOT_SERIALISED: AtomicU64 = AtomicU64::new(0);

/// Demuxers kept alive by [`MediaPipeline::quarantine`] (reported in status and metrics).
pub static QUARANTINED_DEMUXERS: AtomicU64 = AtomicU64::new(0);

impl Drop for MediaPipeline {
    fn drop(&mut self) {
        self.bus_task.abort();
        let demuxers = std::mem::take(&mut *self.demuxers.lock().unwrap());
        if self.quarantined && !demuxers.is_empty() {
            QUARANTINED_DEMUXERS.fetch_add(demuxers.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                count = demuxers.len(),
                "keeping a stuck adaptive demuxer alive (GStreamer 1.22 teardown bug)"
            );
            std::mem::forget(demuxers);
        }
        // Wait (until TEARDOWN_WAIT at most) for the teardown in progress to signal it is done.
        let busy = TEARDOWN.lock().unwrap_or_else(|e| e.into_inner());
        let (mut busy, _) = TEARDOWN_DONE
            .wait_timeout_while(busy, TEARDOWN_WAIT, |busy| *busy)
            .unwrap_or_else(|e| e.into_inner());
        let mine = !*busy;
        if mine {
            *busy = true;
        } else {
            TEARDOWNS_NOT_SERIALISED.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("another pipeline's teardown is stuck; tearing this one down beside it");
        }
        drop(busy);
        let _ = self.pipeline.set_state(gst::State::Null);
        if mine {
            *TEARDOWN.lock().unwrap_or_else(|e| e.into_inner()) = false;
            TEARDOWN_DONE.notify_one();
        }
        crate::memory::torn_down();
    }
}

fn appsink(bin: &gst::Bin, name: &str) -> Result<gst_app::AppSink, IngestError> {
    bin.by_name(name)
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| IngestError::Build(format!("appsink {name} missing")))
}

fn touch(stats: &IngestStats, pts_ms: i64) {
    stats.last_media_ms.fetch_max(pts_ms, Ordering::Relaxed);
    stats.last_media_wall_ms.store(now_ms(), Ordering::Relaxed);
}

/// Maps pipeline running time to the stream's media clock: `base_ms` at the first sample.
#[derive(Clone)]
struct MediaClock {
    base_ms: i64,
    origin_ms: Arc<AtomicI64>,
}

impl MediaClock {
    fn media_ms(&self, sample: &gst::Sample) -> Option<i64> {
        let pts = sample.buffer()?.pts()?;
        let seg = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
        let running = seg.to_running_time(pts)?.mseconds() as i64;
        let _ = self.origin_ms.compare_exchange(i64::MIN, running, Ordering::SeqCst, Ordering::SeqCst);
        Some(self.base_ms + running - self.origin_ms.load(Ordering::SeqCst))
    }
}

/// Every decoded frame reaches the cut scorer as it left the decoder (I420, no copy, no scaling
/// pass): a `cw` x `ch` grid of pixels is read straight from its planes and converted to RGB.
/// Scaling each full frame in GStreamer instead cost about a fifth of the decode itself.
fn grid_rgb(sample: &gst::Sample, cw: u32, ch: u32, taps: usize) -> Option<Vec<u8>> {
    let info = gstreamer_video::VideoInfo::from_caps(sample.caps()?).ok()?;
    let frame = gstreamer_video::VideoFrameRef::from_buffer_ref_readable(sample.buffer()?, &info).ok()?;
    let strides = frame.plane_stride();
    let planes = [frame.plane_data(0).ok()?, frame.plane_data(1).ok()?, frame.plane_data(2).ok()?];
    Some(average_i420_grid(
        planes,
        [strides[0] as usize, strides[1] as usize, strides[2] as usize],
        [info.width() as usize, info.height() as usize],
        [cw as usize, ch as usize],
        taps,
    ))
}

/// Point-samples a `cw` x `ch` grid (cell centres) of an I420 image into packed RGB (BT.601).
pub fn sample_i420_grid(
    planes: [&[u8]; 3],
    strides: [usize; 3],
    w: usize,
    h: usize,
    cw: usize,
    ch: usize,
) -> Vec<u8> {
    average_i420_grid(planes, strides, [w, h], [cw, ch], 1)
}

/// A `cw` x `ch` grid of an I420 image as packed RGB (BT.601), each cell the mean of `taps` x
/// `taps` points spread evenly over it (1: its centre): a cheap area filter for tiny frames.
pub fn average_i420_grid(
    planes: [&[u8]; 3],
    strides: [usize; 3],
    [w, h]: [usize; 2],
    [cw, ch]: [usize; 2],
    taps: usize,
) -> Vec<u8> {
    let taps = taps.max(1);
    let px = |p: usize, x: usize, y: usize| planes[p].get(y * strides[p] + x).copied().unwrap_or(0) as i32;
    let at = |g: usize, t: usize, size: usize, cells: usize| {
        ((2 * (g * taps + t) + 1) * size / (2 * cells * taps)).min(size.saturating_sub(1))
    };
    let mut out = Vec::with_capacity(cw * ch * 3);
    for gy in 0..ch {
        for gx in 0..cw {
            let mut sum = [0i32; 3];
            for ty in 0..taps {
                let sy = at(gy, ty, h, ch);
                for tx in 0..taps {
                    let sx = at(gx, tx, w, cw);
                    let c = px(0, sx, sy) - 16;
                    let d = px(1, sx / 2, sy / 2) - 128;
                    let e = px(2, sx / 2, sy / 2) - 128;
                    let clamp = |v: i32| (v >> 8).clamp(0, 255);
                    sum[0] += clamp(298 * c + 409 * e + 128);
                    sum[1] += clamp(298 * c - 100 * d - 208 * e + 128);
                    sum[2] += clamp(298 * c + 516 * d + 128);
                }
            }
            let n = (taps * taps) as i32;
            out.extend(sum.map(|v| ((v + n / 2) / n) as u8));
        }
    }
    out
}

/// Copies an RGB sample into tightly packed rows (GStreamer pads rows to 4 bytes).
fn packed_rgb(sample: &gst::Sample, w: u32, h: u32) -> Option<Vec<u8>> {
    let buf = sample.buffer()?;
    let map = buf.map_readable().ok()?;
    let row = w as usize * 3;
    let stride = (row + 3) & !3;
    if map.len() < stride * (h as usize - 1) + row {
        return None;
    }
    if stride == row {
        return Some(map[..row * h as usize].to_vec());
    }
    let mut out = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        out.extend_from_slice(&map[y * stride..y * stride + row]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_samples_cell_centres_and_converts_colours() {
        // 8x4 I420 image with padded strides: left half white, right half pure blue.
        let (w, h) = (8usize, 4usize);
        let (ys, cs) = (12usize, 8usize);
        let mut y = vec![0u8; ys * h];
        let mut u = vec![0u8; cs * h / 2];
        let mut v = vec![0u8; cs * h / 2];
        for row in 0..h {
            for x in 0..w {
                y[row * ys + x] = if x < 4 { 235 } else { 41 };
            }
        }
        for row in 0..h / 2 {
            for x in 0..w / 2 {
                u[row * cs + x] = if x < 2 { 128 } else { 240 };
                v[row * cs + x] = if x < 2 { 128 } else { 110 };
            }
        }
        let rgb = sample_i420_grid([&y, &u, &v], [ys, cs, cs], w, h, 2, 2);
        assert_eq!(rgb.len(), 12);
        assert_eq!(&rgb[0..3], &[255, 255, 255], "left cell is white");
        let blue = &rgb[3..6];
        assert!(blue[2] > 230 && blue[0] < 10 && blue[1] < 20, "right cell is blue: {blue:?}");
        assert_eq!(&rgb[6..9], &rgb[0..3], "second row like the first");
    }
}
