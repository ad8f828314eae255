//! `StreamActor`: one per live stream. Owns the GStreamer pipeline, publishes what it produces
//! to JetStream, watches for stalls, and restarts the pipeline with capped, jittered backoff.
//! Once a second it reads its backlog on the shared scene consumer and adapts its sampling rate
//! (see `sightline_streams::Backpressure`), and writes its status to the status bucket.

use crate::lifecycle::{AfterEnd, Lifecycle, Second};
use async_nats::jetstream::consumer::{PullConsumer, pull};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use sightline_bus::Bus;
use sightline_bus::{Registry, RetryReason, StreamSpec, StreamState, StreamStatus};
use sightline_egress::{EgressProxy, Lease};
use sightline_policy::SourceError;
use sightline_runtime::Backoff;
use sightline_settings::IngestConfig;
use sightline_streams::pipeline::now_ms;
use sightline_streams::{Backpressure, IngestStats, MediaPipeline, PipelineSpec};
use sightline_telemetry::{Metrics, labels};
use sightline_wire::{SettledNotice, ShedNotice};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub struct StreamActor;

pub struct StreamActorArgs {
    pub spec: StreamSpec,
    pub live: bool,
    pub bus: Bus,
    pub registry: Registry,
    pub ingest: IngestConfig,
    pub metrics: Arc<Metrics>,
    /// The node's loopback proxy, which HTTP sources are read through.
    pub egress: Arc<EgressProxy>,
    /// The stream's lease: nothing is published once it lapsed or was lost.
    pub guard: Arc<crate::ownership::LeaseGuard>,
    /// This node's id (the status names the owner).
    pub node_id: String,
}

pub enum StreamMsg {
    /// (Re)start the pipeline.
    Start,
    /// The pipeline ended (error, end of stream) and needs a decision.
    Ended { reason: RetryReason, detail: String },
    /// Once a second: counters, fps, stall watchdog, status.
    Tick,
    /// An inference pool shed some of this stream's work to keep its lag bounded.
    Shed(ShedNotice),
    /// A pool finished with some of this stream's work (answered, shed or dead-lettered).
    Settled(SettledNotice),
}

pub struct StreamActorState {
    args: StreamActorArgs,
    pipeline: Option<MediaPipeline>,
    pump: Option<tokio::task::JoinHandle<()>>,
    stats: Arc<IngestStats>,
    status: StreamStatus,
    life: Lifecycle,
    /// Counter values at the previous tick, for rates and metric deltas.
    prev: [u64; 6],
    prev_tick_ms: i64,
    ticker: Option<tokio::task::JoinHandle<()>>,
    retry_timer: Option<tokio::task::JoinHandle<Result<(), ractor::MessagingErr<StreamMsg>>>>,
    /// This stream's published frames the scene pool has not finished with.
    published: Arc<Mutex<crate::publish::Backlog>>,
    backpressure: Backpressure,
    /// Fractional frames shed by a reduced rate, carried to the next tick.
    shed_carry: f32,
    lag_consumer: Option<PullConsumer>,
    /// The current HTTP pipeline's session on the egress proxy.
    lease: Option<Lease>,
    /// Stuck pipelines whose demuxers were kept alive (leaked) for this stream.
    quarantines: u32,
    /// What the pools shed since the last tick, described (the degraded reason).
    shed_note: Option<String>,
    /// The state (and why) last published as a `state` event.
    announced: Option<(StreamState, Option<String>)>,
}

fn new_backpressure(cfg: &IngestConfig) -> Backpressure {
    Backpressure::new(
        cfg.sample_fps,
        cfg.max_rate_halvings,
        cfg.lag_high_frames,
        cfg.lag_low_frames,
        cfg.lag_recover_s,
    )
}

impl StreamActorState {
    /// Stops the pump and the pipeline. `stuck`: the pipeline stalled or never produced media.
    fn teardown(&mut self, stuck: bool) {
        if let Some(p) = self.pump.take() {
            p.abort();
        }
        if let Some(mut p) = self.pipeline.take() {
            let never_flowed = self.stats.decoded_frames.load(Ordering::Relaxed) == 0
                && self.stats.audio_buffers.load(Ordering::Relaxed) == 0;
            if stuck || never_flowed {
                if p.demuxer_count() > 0 {
                    self.quarantines += 1;
                }
                p.quarantine();
            }
            // Dropping sets the pipeline to NULL; do it off the actor's thread, it can block, on
            // a detached thread, so that a teardown stuck inside GStreamer never holds up the
            // runtime's shutdown (tokio waits for its blocking tasks).
            let spawned = std::thread::Builder::new().name("pipeline-teardown".into()).spawn(move || drop(p));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "no thread for the pipeline's teardown; the pipeline is leaked");
            }
        }
        self.lease = None;
    }

    /// Checks the stored URL again, as at registration (the policy may have changed since, and a
    /// name may resolve elsewhere now), and says what the pipeline reads: an HTTP source through
    /// the egress proxy, an RTMP or RTSP source at the address just checked. `Err` carries why the
    /// pipeline is not started: [`RetryReason::Refused`] for the policy, else an error worth
    /// retrying (a name that does not resolve now).
    async fn source_for_pipeline(&mut self) -> Result<String, (RetryReason, String)> {
        let cfg = &self.args.ingest;
        let refused = |e: SourceError| {
            let reason = if matches!(e, SourceError::Unresolvable(_)) {
                RetryReason::Error
            } else {
                RetryReason::Refused
            };
            (reason, e.to_string())
        };
        let url =
            sightline_policy::validate_url(&self.args.spec.url, &cfg.allowed_schemes).map_err(refused)?;
        match url.scheme.as_str() {
            "http" | "https" => {
                let lease = self.args.egress.open(&url.url);
                let proxied = lease.url().to_string();
                self.lease = Some(lease);
                Ok(proxied)
            }
            scheme => {
                let addrs = sightline_policy::check_host(&url, &cfg.allow_list()).await.map_err(refused)?;
                // TLS (rtmps) verifies the name, so it keeps it; the others connect to the address.
                match addrs.first() {
                    Some(a) if scheme != "rtmps" => Ok(sightline_policy::pin(&url.url, *a)),
                    _ => Ok(url.url),
                }
            }
        }
    }
}

/// Exponential backoff with ±20 % jitter, capped.
pub fn backoff(cfg: &IngestConfig, attempt: u32) -> Duration {
    let ms = Duration::from_millis;
    Backoff::new(ms(cfg.backoff_initial_ms), ms(cfg.backoff_max_ms)).with_jitter(0.2).delay(attempt)
}

impl Actor for StreamActor {
    type Msg = StreamMsg;
    type State = StreamActorState;
    type Arguments = StreamActorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<StreamMsg>,
        args: StreamActorArgs,
    ) -> Result<StreamActorState, ActorProcessingErr> {
        // Continue the media clock where a previous run of this stream left it, so event ids of a
        // restarted stream never collide with earlier ones.
        let mut status = StreamStatus::new(now_ms());
        if let Ok(Some(prev)) = args.registry.status(&args.spec.id).await {
            status.media_ms = prev.media_ms;
            status.reconnects = prev.reconnects;
            status.handovers = prev.handovers;
            status.handover_gap_ms = prev.handover_gap_ms;
            if let Some(from) = prev.owner.as_ref().filter(|o| **o != args.node_id) {
                // Taken over from another node, which may have published up to now without
                // reporting it: the clock moves on by the wall time since its last report.
                let since = (now_ms() - prev.updated_ms).max(0);
                status.media_ms = prev.media_ms + since;
                status.handovers += 1;
                status.handover_gap_ms = Some(since + 1000);
                tracing::info!(stream = %args.spec.id, %from, gap_ms = since + 1000, "stream taken over");
            }
        }
        status.owner = Some(args.node_id.clone());
        let ticker = myself.send_interval(Duration::from_secs(1), || StreamMsg::Tick);
        myself.send_message(StreamMsg::Start)?;
        let backpressure = new_backpressure(&args.ingest);
        let life = Lifecycle::new(&args.spec.id, &args.ingest, args.live);
        Ok(StreamActorState {
            life,
            backpressure,
            published: Default::default(),
            shed_carry: 0.0,
            lag_consumer: None,
            lease: None,
            quarantines: 0,
            shed_note: None,
            announced: None,
            args,
            pipeline: None,
            pump: None,
            stats: Arc::new(IngestStats::default()),
            status,
            prev: [0; 6],
            prev_tick_ms: now_ms(),
            ticker: Some(ticker),
            retry_timer: None,
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<StreamMsg>,
        st: &mut StreamActorState,
    ) -> Result<(), ActorProcessingErr> {
        st.teardown(false);
        st.args.metrics.forget_stream(&st.args.spec.id);
        if let Some(t) = st.ticker.take() {
            t.abort();
        }
        if let Some(t) = st.retry_timer.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<StreamMsg>,
        msg: StreamMsg,
        st: &mut StreamActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            StreamMsg::Start => {
                st.teardown(false);
                st.stats = Arc::new(IngestStats::default());
                st.prev = [0; 6];
                // A restart continues the media clock one second past the last media seen.
                let base_ms = if st.status.media_ms > 0 { st.status.media_ms + 1000 } else { 0 };
                st.status.media_ms = base_ms;
                st.stats.last_media_ms.store(base_ms, Ordering::Relaxed);
                st.stats.last_media_wall_ms.store(now_ms(), Ordering::Relaxed);
                st.life.starting(&mut st.status, now_ms());
                st.backpressure = new_backpressure(&st.args.ingest);
                st.published.lock().unwrap().clear();
                let url = match st.source_for_pipeline().await {
                    Ok(url) => url,
                    Err((reason, detail)) => {
                        ended(&myself, st, reason, detail).await;
                        return Ok(());
                    }
                };
                let spec = PipelineSpec { url, base_ms, ingest: st.args.ingest.clone() };
                match MediaPipeline::start(&spec, st.stats.clone(), st.args.ingest.queue_capacity) {
                    Ok((pipeline, rx)) => {
                        st.pipeline = Some(pipeline);
                        st.pump = Some(tokio::spawn(crate::publish::pump(
                            rx,
                            st.args.bus.clone(),
                            (
                                st.args.spec.id.clone(),
                                st.args.spec.incarnation,
                                st.args.spec.languages.clone(),
                            ),
                            myself.clone(),
                            st.stats.clone(),
                            st.published.clone(),
                            st.args.guard.clone(),
                        )));
                    }
                    Err(e) => {
                        myself.send_message(StreamMsg::Ended {
                            reason: RetryReason::StateChange,
                            detail: e.to_string(),
                        })?;
                    }
                }
            }
            StreamMsg::Ended { reason, detail } => {
                if st.pipeline.is_none() && st.pump.is_none() && reason != RetryReason::StateChange {
                    return Ok(()); // a late report from a pipeline already torn down
                }
                ended(&myself, st, reason, detail).await;
            }
            StreamMsg::Shed(notice) => {
                let key = format!("{}.{}", notice.pool, notice.reason.as_str());
                *st.status.shed.entry(key).or_default() += notice.count;
                st.shed_note = Some(notice.describe());
            }
            StreamMsg::Settled(notice) => {
                // The sampling rate follows the scene path (the other pools bound their own lag).
                if notice.pool == "scenes" {
                    st.published.lock().unwrap().settled(&notice.seqs);
                }
            }
            StreamMsg::Tick => {
                let backlog = if st.pipeline.is_some() { frame_backlog(st).await } else { None };
                tick(&myself, st, backlog);
                publish_status(st).await;
            }
        }
        Ok(())
    }
}

/// The pipeline ended, or could not start: restart it with backoff, or give up.
async fn ended(myself: &ActorRef<StreamMsg>, st: &mut StreamActorState, reason: RetryReason, detail: String) {
    // What the egress proxy saw says more than GStreamer's download error.
    let (reason, detail) = match st.lease.as_ref() {
        Some(l) if l.refusal().is_some() => (RetryReason::Refused, l.refusal().unwrap_or_default()),
        Some(l) if reason == RetryReason::Error && l.last_error().is_some() => {
            (reason, format!("{} ({detail})", l.last_error().unwrap_or_default()))
        }
        _ => (reason, detail),
    };
    let (reason, detail) = match st.stats.refusal.lock().unwrap().clone() {
        Some(why) => (RetryReason::Refused, why),
        None => (reason, detail),
    };
    st.teardown(reason == RetryReason::Stall);
    let max_quarantined = st.args.ingest.max_quarantined_demuxers;
    let (reason, detail) = if max_quarantined > 0 && st.quarantines >= max_quarantined {
        let why = format!(
            "the source's HLS pipeline got stuck {} times; each time GStreamer 1.22's demuxer cannot be freed and is kept alive, so the stream stops here (ingest.max_quarantined_demuxers); last: {detail}",
            st.quarantines
        );
        (RetryReason::Refused, why)
    } else {
        (reason, detail)
    };
    let id = st.args.spec.id.clone();
    // GStreamer's messages can quote the URL: its credentials never reach the status.
    let detail = sightline_policy::redact_secrets(&detail, &st.args.spec.url);
    match st.life.ended(&mut st.status, reason, &detail, now_ms()) {
        AfterEnd::Stopped => tracing::info!(stream = %id, "stream ended"),
        AfterEnd::Failed { retries } => {
            tracing::warn!(stream = %id, %detail, ?reason, "stream failed after {retries} retries")
        }
        AfterEnd::Retry { attempt } => {
            st.args
                .metrics
                .reconnects
                .get_or_create(&labels(&[("stream", &id), ("reason", reason.as_str())]))
                .inc();
            let delay = backoff(&st.args.ingest, attempt);
            tracing::warn!(stream = %id, ?reason, %detail, retry_in_ms = delay.as_millis() as u64, "stream reconnecting");
            st.retry_timer = Some(myself.send_after(delay, || StreamMsg::Start));
        }
    }
    publish_status(st).await;
}

/// How many of this stream's sampled frames wait for the scene workers: published, and neither
/// reported finished by the pool nor below its consumer's ack floor ([`crate::publish::Backlog`]).
/// `None` while no scene consumer exists yet.
async fn frame_backlog(st: &mut StreamActorState) -> Option<u64> {
    if st.lag_consumer.is_none() {
        let names = &st.args.bus.names;
        let stream = st.args.bus.js.get_stream(names.frames_stream()).await.ok()?;
        st.lag_consumer = stream.get_consumer::<pull::Config>(&names.consumer("scenes")).await.ok();
    }
    let consumer = st.lag_consumer.as_mut()?;
    let floor = match consumer.info().await {
        Ok(info) => info.ack_floor.stream_sequence,
        Err(_) => {
            st.lag_consumer = None;
            return None;
        }
    };
    let mut q = st.published.lock().unwrap();
    q.floor(floor);
    Some(q.len())
}

fn tick(myself: &ActorRef<StreamMsg>, st: &mut StreamActorState, backlog: Option<u64>) {
    // Backpressure first: it decides the rate and how many frames this second did not sample.
    if let Some(b) = backlog
        && let Some(rate) = st.backpressure.observe(b)
    {
        tracing::info!(stream = %st.args.spec.id, backlog = b, fps = rate.fps(), "sampling rate changed");
        if let Some(p) = &st.pipeline {
            p.set_sample_rate(rate);
        }
    }
    st.status.backlog_frames = backlog;
    st.status.sample_fps_target = st.backpressure.rate().fps();
    st.shed_carry += st.backpressure.shed_fps();
    let shed = st.shed_carry.floor();
    st.shed_carry -= shed;
    if shed > 0.0 {
        st.stats.dropped_frames.fetch_add(shed as u64, Ordering::Relaxed);
    }

    let s = &st.stats;
    let now = now_ms();
    let counters = [
        s.decoded_frames.load(Ordering::Relaxed),
        s.sampled_frames.load(Ordering::Relaxed),
        s.dropped_frames.load(Ordering::Relaxed),
        s.audio_segments.load(Ordering::Relaxed),
        s.dropped_shot_windows.load(Ordering::Relaxed),
        s.dropped_audio.load(Ordering::Relaxed),
    ];
    let delta: Vec<u64> = counters.iter().zip(st.prev).map(|(c, p)| c.saturating_sub(p)).collect();
    let secs = ((now - st.prev_tick_ms).max(1) as f32) / 1000.0;
    st.prev = counters;
    st.prev_tick_ms = now;
    let id = st.args.spec.id.clone();
    let l = labels(&[("stream", &id)]);
    let m = st.args.metrics.clone();
    m.decoded_frames.get_or_create(&l).inc_by(delta[0]);
    m.sampled_frames.get_or_create(&l).inc_by(delta[1]);
    m.dropped_frames.get_or_create(&l).inc_by(delta[2]);
    m.audio_segments.get_or_create(&l).inc_by(delta[3]);
    m.dropped_shot_windows.get_or_create(&l).inc_by(delta[4]);
    m.dropped_audio.get_or_create(&l).inc_by(delta[5]);
    let p = &sightline_streams::pipeline::QUARANTINED_DEMUXERS;
    m.quarantined_demuxers.set(p.load(Ordering::Relaxed) as i64);
    let t = &sightline_streams::pipeline::TEARDOWNS_NOT_SERIALISED;
    m.teardowns_not_serialised.set(t.load(Ordering::Relaxed) as i64);
    let status = &mut st.status;
    status.decoded_fps = delta[0] as f32 / secs;
    status.sampled_fps = delta[1] as f32 / secs;
    status.decoded_frames += delta[0];
    status.sampled_frames += delta[1];
    status.dropped_frames += delta[2];
    status.audio_segments += delta[3];
    status.cuts = s.cuts.load(Ordering::Relaxed);
    status.media_ms = status.media_ms.max(s.last_media_ms.load(Ordering::Relaxed));
    status.updated_ms = now;

    if st.pipeline.is_some() {
        let shed = st.shed_note.take();
        let second = Second {
            flowing: delta[0] > 0 || delta[3] > 0,
            dropped: delta[2] > 0 || shed.is_some(),
            reduced: st.backpressure.reduced(),
            idle_ms: now - s.last_media_wall_ms.load(Ordering::Relaxed),
        };
        if let Some(detail) = st.life.tick(&mut st.status, second, now) {
            let _ = myself.send_message(StreamMsg::Ended { reason: RetryReason::Stall, detail });
        }
        // The reason stays until the stream recovers; the latest cause wins.
        let why = shed.or_else(|| {
            second.reduced.then(|| {
                format!(
                    "sampling at {:.2} fps instead of {} (frames wait for the scene workers)",
                    st.backpressure.rate().fps(),
                    st.args.ingest.sample_fps
                )
            })
        });
        let why =
            why.or_else(|| second.dropped.then(|| "frames dropped (the media queue was full)".to_string()));
        if st.status.state == StreamState::Degraded {
            if why.is_some() {
                st.status.degraded_reason = why;
            }
        } else {
            st.status.degraded_reason = None;
        }
    }
    for state in StreamState::ALL {
        let on = st.status.state == state;
        m.stream_state.get_or_create(&labels(&[("stream", &id), ("state", state.as_str())])).set(on as i64);
    }
}

async fn publish_status(st: &mut StreamActorState) {
    // A node that lost or could not renew the lease reports nothing: the status is the owner's.
    if !st.args.guard.valid() {
        return;
    }
    if let Err(e) = st.args.registry.put_status(&st.args.spec.id, &st.status).await {
        tracing::warn!(stream = %st.args.spec.id, error = %e, "cannot write stream status");
    }
    let args = &st.args;
    crate::publish::announce_state(&args.bus, &args.metrics, &args.spec, &st.status, &mut st.announced).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let cfg = IngestConfig { backoff_initial_ms: 100, backoff_max_ms: 1000, ..Default::default() };
        let d1 = backoff(&cfg, 1).as_millis();
        let d3 = backoff(&cfg, 3).as_millis();
        let d30 = backoff(&cfg, 30).as_millis();
        assert!((80..=120).contains(&d1), "{d1}");
        assert!((320..=480).contains(&d3), "{d3}");
        assert!((800..=1200).contains(&d30), "{d30}");
    }
}
