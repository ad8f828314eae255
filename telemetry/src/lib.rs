//! Prometheus metrics of every role, in one registry the gateway exports at `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sightline_wire::{RetryReason, StreamState};
use std::sync::{Arc, Mutex};

pub type Labels = Vec<(&'static str, String)>;

fn histo() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}
fn sizes() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}

pub struct Metrics {
    pub registry: Mutex<Registry>,
    pub decoded_frames: Family<Labels, Counter>,
    pub sampled_frames: Family<Labels, Counter>,
    pub dropped_frames: Family<Labels, Counter>,
    pub audio_segments: Family<Labels, Counter>,
    pub dropped_shot_windows: Family<Labels, Counter>,
    pub dropped_audio: Family<Labels, Counter>,
    /// GStreamer teardown workarounds (process-wide): demuxers kept alive, teardowns that went
    /// ahead beside a stuck one.
    pub quarantined_demuxers: Gauge,
    pub teardowns_not_serialised: Gauge,
    pub reconnects: Family<Labels, Counter>,
    pub stream_state: Family<Labels, Gauge>,
    pub events: Family<Labels, Counter>,
    /// Transcript segments published per language and model.
    pub transcripts: Family<Labels, Counter>,
    pub batch_size: Family<Labels, Histogram, fn() -> Histogram>,
    /// Batches a pool ran, per pace against its lag target (ahead, on_time, behind).
    pub pool_batches: Family<Labels, Counter>,
    pub inference_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// CPU time of the threads the batches ran on (all of the model's when it runs on one thread).
    pub inference_cpu_seconds: Family<Labels, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// Time the threads the batches ran on were ready to run but waited for a core.
    pub inference_wait_seconds: Family<Labels, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// Items of extra work that stops short (speech: Whisper judging re-heard English), per
    /// outcome: done, or left for want of time in the batch's room (no_room).
    pub extra_work: Family<Labels, Counter>,
    /// Time that extra work took.
    pub extra_work_seconds: Family<Labels, Counter<f64, std::sync::atomic::AtomicU64>>,
    pub inference_errors: Family<Labels, Counter>,
    pub dlq: Family<Labels, Counter>,
    pub redelivered: Family<Labels, Counter>,
    pub model_fallbacks: Family<Labels, Counter>,
    pub sink_rows: Family<Labels, Counter>,
    pub sink_errors: Family<Labels, Counter>,
    pub sink_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    pub feed_clients: Gauge,
    pub frames_unchanged: Counter,
    /// Keyframes not compared with the frames set because Redis did not answer.
    pub duplicate_checks_skipped: Counter,
    pub ocr_frames_skipped: Counter,
    pub sink_lag: Family<Labels, Gauge>,
    /// How full the events stream is with a sink's unsunk events (1.0: JetStream discards them).
    pub events_retention_fill: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Events the events stream discarded before a sink had them.
    pub events_discarded_unsunk: Family<Labels, Counter>,
    /// Work items a pool shed to keep its lag bounded, per pool, stream and reason.
    pub shed: Family<Labels, Counter>,
    /// Age of the oldest item in a pool's latest batch (the oldest waiting, deliveries being in
    /// order), seconds.
    pub pool_lag_seconds: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Work refused because its publisher's stream lease had been taken over, per pool.
    pub fenced: Family<Labels, Counter>,
    /// Stream leases this node took, lost, released or handed over, per event.
    pub leases: Family<Labels, Counter>,
    /// Streams this node ingests now (the leases it holds).
    pub streams_owned: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let m = Self {
            registry: Mutex::new(Registry::with_prefix("sightline")),
            decoded_frames: Family::default(),
            sampled_frames: Family::default(),
            dropped_frames: Family::default(),
            audio_segments: Family::default(),
            dropped_shot_windows: Family::default(),
            dropped_audio: Family::default(),
            quarantined_demuxers: Gauge::default(),
            teardowns_not_serialised: Gauge::default(),
            reconnects: Family::default(),
            stream_state: Family::default(),
            events: Family::default(),
            transcripts: Family::default(),
            batch_size: Family::new_with_constructor(sizes),
            pool_batches: Family::default(),
            inference_seconds: Family::new_with_constructor(histo),
            inference_cpu_seconds: Family::default(),
            inference_wait_seconds: Family::default(),
            extra_work: Family::default(),
            extra_work_seconds: Family::default(),
            inference_errors: Family::default(),
            dlq: Family::default(),
            redelivered: Family::default(),
            model_fallbacks: Family::default(),
            sink_rows: Family::default(),
            sink_errors: Family::default(),
            sink_seconds: Family::new_with_constructor(histo),
            feed_clients: Gauge::default(),
            frames_unchanged: Counter::default(),
            duplicate_checks_skipped: Counter::default(),
            ocr_frames_skipped: Counter::default(),
            sink_lag: Family::default(),
            events_retention_fill: Family::default(),
            events_discarded_unsunk: Family::default(),
            shed: Family::default(),
            pool_lag_seconds: Family::default(),
            fenced: Family::default(),
            leases: Family::default(),
            streams_owned: Gauge::default(),
        };
        {
            let mut r = m.registry.lock().unwrap();
            m.register_ingest(&mut r);
            m.register_inference(&mut r);
            m.register_sinks(&mut r);
        }
        Arc::new(m)
    }

    /// Ingest: decoding, sampling, drops, reconnects, GStreamer workarounds.
    fn register_ingest(&self, r: &mut Registry) {
        let m = self;
        r.register("ingest_decoded_frames", "Frames decoded per stream", m.decoded_frames.clone());
        r.register(
            "ingest_sampled_frames",
            "Frames sampled for analysis per stream",
            m.sampled_frames.clone(),
        );
        r.register(
            "ingest_dropped_frames",
            "Sampled frames dropped to keep lag bounded",
            m.dropped_frames.clone(),
        );
        r.register("ingest_audio_segments", "Audio segments published per stream", m.audio_segments.clone());
        r.register(
            "ingest_dropped_shot_windows",
            "Windows of 50 decoded frames for the shot model dropped because the media queue was full",
            m.dropped_shot_windows.clone(),
        );
        r.register(
            "ingest_dropped_audio",
            "Audio segments dropped because the media queue was full",
            m.dropped_audio.clone(),
        );
        r.register(
            "ingest_quarantined_demuxers",
            "Adaptive demuxers of stuck pipelines kept alive instead of finalised (GStreamer 1.22 workaround)",
            m.quarantined_demuxers.clone(),
        );
        r.register(
            "ingest_teardowns_not_serialised",
            "Pipeline teardowns that went ahead beside another one stuck in GStreamer for 10 s",
            m.teardowns_not_serialised.clone(),
        );
        r.register("ingest_reconnects", "Pipeline restarts per stream and reason", m.reconnects.clone());
    }

    /// Streams and inference: states, events, batches, latency, errors, dead letters, fallbacks.
    fn register_inference(&self, r: &mut Registry) {
        let m = self;
        r.register("stream_state", "1 for the state each stream is in", m.stream_state.clone());
        r.register("events", "Events published per kind", m.events.clone());
        r.register(
            "transcripts",
            "Transcript segments published per language and model",
            m.transcripts.clone(),
        );
        r.register("inference_batch_size", "Messages per inference batch", m.batch_size.clone());
        r.register(
            "pool_batches",
            "Inference batches per pool and pace against its lag target: ahead (done within a third of it, even as long as the longest recent batch: room for optional extra work such as re-hearing speech), on_time, behind (coarser work, shedding)",
            m.pool_batches.clone(),
        );
        r.register("inference_seconds", "Inference time per batch", m.inference_seconds.clone());
        r.register(
            "inference_cpu_seconds",
            "CPU time of the threads inference batches ran on (the model's own when it runs on one thread: time waiting for a core is left out)",
            m.inference_cpu_seconds.clone(),
        );
        r.register(
            "inference_wait_seconds",
            "Time the threads inference batches ran on were ready to run but waited for a core (CPU starvation: decoding and other pools on the same cores)",
            m.inference_wait_seconds.clone(),
        );
        r.register(
            "extra_work",
            "Items of optional work that stops short at the batch's room, per pool, kind of work (speech: judge, Whisper judging re-heard English; paced, fast or slow speech heard again at its own stretches) and outcome: done, or no_room (left for want of time)",
            m.extra_work.clone(),
        );
        r.register(
            "extra_work_seconds",
            "Time the optional work that stops short took, per pool and kind of work (left out of the batch durations that forecast the next batches)",
            m.extra_work_seconds.clone(),
        );
        r.register("inference_errors", "Failed inference items per model", m.inference_errors.clone());
        r.register("dlq", "Work moved to a dead-letter subject, per kind", m.dlq.clone());
        r.register(
            "duplicate_checks_skipped",
            "Keyframes not compared with the frames vector set because Redis did not answer",
            m.duplicate_checks_skipped.clone(),
        );
        r.register(
            "redelivered",
            "Work messages received again (after a failure, a crash or an ack timeout), per kind",
            m.redelivered.clone(),
        );
    }

    /// Sinks and the feed: rows, errors, latency, lag, clients.
    fn register_sinks(&self, r: &mut Registry) {
        let m = self;
        r.register("sink_rows", "Rows written per sink", m.sink_rows.clone());
        r.register("sink_errors", "Failed sink writes (retried)", m.sink_errors.clone());
        r.register("sink_seconds", "Sink write time per batch", m.sink_seconds.clone());
        r.register("feed_clients", "Connected live-feed clients", m.feed_clients.clone());
        r.register(
            "frames_unchanged",
            "Sampled frames skipped because they match the stream's previous frame (perceptual hash)",
            m.frames_unchanged.clone(),
        );
        r.register(
            "ocr_frames_skipped",
            "Sampled frames not read for text because they match the stream's last read frame",
            m.ocr_frames_skipped.clone(),
        );
        r.register(
            "model_fallbacks",
            "Work items sent to a model's fallback, per primary model and reason (unavailable, cooling_down, queue, timeout, error)",
            m.model_fallbacks.clone(),
        );
        r.register("sink_lag", "Events waiting for a sink (consumer pending)", m.sink_lag.clone());
        r.register(
            "events_retention_fill",
            "Share of the events stream's byte or age limit taken by a sink's unsunk events (at 1 they are discarded)",
            m.events_retention_fill.clone(),
        );
        r.register(
            "shed",
            "Work items shed to keep a pool's lag bounded, per pool, stream and reason",
            m.shed.clone(),
        );
        r.register(
            "fenced",
            "Work items refused because their publisher's stream lease had been taken over, per pool",
            m.fenced.clone(),
        );
        r.register("leases", "Stream leases taken, lost, released, per event", m.leases.clone());
        r.register("streams_owned", "Streams this node ingests (leases held)", m.streams_owned.clone());
        r.register(
            "pool_lag_seconds",
            "Age of the oldest item in a pool's latest batch, seconds",
            m.pool_lag_seconds.clone(),
        );
        r.register(
            "events_discarded_unsunk",
            "Events discarded by the events stream's limits before a sink had them",
            m.events_discarded_unsunk.clone(),
        );
    }

    /// Drops a deleted stream's series, so churn does not grow the registry.
    pub fn forget_stream(&self, stream: &str) {
        let l = labels(&[("stream", stream)]);
        for f in [&self.decoded_frames, &self.sampled_frames, &self.dropped_frames, &self.audio_segments] {
            f.remove(&l);
        }
        for reason in RetryReason::ALL {
            self.reconnects.remove(&labels(&[("stream", stream), ("reason", reason.as_str())]));
        }
        for state in StreamState::ALL {
            self.stream_state.remove(&labels(&[("stream", stream), ("state", state.as_str())]));
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let r = self.registry.lock().unwrap();
        prometheus_client::encoding::text::encode(&mut out, &r).expect("metrics encode to a String");
        out
    }
}

pub fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_streams_leave_no_series() {
        let m = Metrics::new();
        m.decoded_frames.get_or_create(&labels(&[("stream", "a")])).inc_by(3);
        m.stream_state.get_or_create(&labels(&[("stream", "a"), ("state", "running")])).set(1);
        m.decoded_frames.get_or_create(&labels(&[("stream", "b")])).inc();
        assert!(m.encode().contains("stream=\"a\""));
        m.forget_stream("a");
        let text = m.encode();
        assert!(!text.contains("stream=\"a\""), "{text}");
        assert!(text.contains("stream=\"b\""));
    }
}
