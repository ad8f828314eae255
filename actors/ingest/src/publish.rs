//! Media leaving a stream's pipeline for JetStream: the pump that moves it from the pipeline's
//! bounded channel onto the work streams (frames, audio segments, shot windows), each message
//! named by the stream's registration (`StreamRef`), and how the pipeline ended.

use crate::stream_actor::StreamMsg;
use ractor::ActorRef;
use sightline_bus::{Bus, BusError, RetryReason, StreamSpec, StreamState, StreamStatus};
use sightline_streams::pipeline::now_ms;
use sightline_streams::{AudioSegment, IngestStats, MediaItem, SampledFrame, ShotWindow};
use sightline_telemetry::Metrics;
use sightline_wire::{AudioMeta, FrameMeta, ShotWindowMeta, audio_bytes, encode};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// Frame sequences remembered for the backlog count (beyond this, the oldest are forgotten).
pub(crate) const MAX_TRACKED: usize = 4096;

/// This stream's sampled frames the scene pool has not finished with, by their sequence in the
/// frames stream. Added as they are published; removed when the pool says it finished with them
/// (answered, shed or dead-lettered: [`sightline_wire::SettledNotice`]), so the count is this
/// stream's own, whatever other streams' work holds the shared consumer back. The consumer's ack
/// floor only sweeps up after a notice lost on the way (everything at or below it is finished).
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    waiting: BTreeSet<u64>,
    /// Finished before the pump recorded them as published (a fast pool): not counted then.
    early: BTreeSet<u64>,
    /// The highest sequence recorded as published.
    last: u64,
}

impl Backlog {
    pub(crate) fn published(&mut self, seq: u64) {
        self.last = self.last.max(seq);
        if self.early.remove(&seq) {
            return;
        }
        if self.waiting.len() == MAX_TRACKED {
            self.waiting.pop_first();
        }
        self.waiting.insert(seq);
    }

    pub(crate) fn settled(&mut self, seqs: &[u64]) {
        for &s in seqs {
            if !self.waiting.remove(&s) && s > self.last {
                if self.early.len() == MAX_TRACKED {
                    self.early.pop_first();
                }
                self.early.insert(s);
            }
        }
    }

    /// Everything at or below `floor` is finished.
    pub(crate) fn floor(&mut self, floor: u64) {
        self.waiting = self.waiting.split_off(&(floor + 1));
        self.early = self.early.split_off(&(floor + 1));
    }

    pub(crate) fn len(&self) -> u64 {
        self.waiting.len() as u64
    }

    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Moves media from the pipeline's bounded channel to JetStream, and reports how it ended.
pub(crate) async fn pump(
    mut rx: tokio::sync::mpsc::Receiver<MediaItem>,
    bus: Bus,
    (stream_id, incarnation, languages): (String, u32, Vec<String>),
    actor: ActorRef<StreamMsg>,
    stats: Arc<IngestStats>,
    published: Arc<Mutex<Backlog>>,
    guard: Arc<crate::ownership::LeaseGuard>,
) {
    let incarnation = (incarnation, guard.token);
    while let Some(item) = rx.recv().await {
        // Self-fencing: nothing leaves this node past its lease. While the lease is unconfirmed
        // (NATS electing a leader) the pump waits, and media waits in the bounded queue behind
        // it (full: frames dropped, counted); once the lease is lost, what is left is dropped.
        if !matches!(item, MediaItem::Error(_) | MediaItem::Eos) && !wait_for_lease(&guard).await {
            stats.dropped_frames.fetch_add(matches!(item, MediaItem::Frame(_)) as u64, Ordering::Relaxed);
            continue;
        }
        let sent = match item {
            MediaItem::Frame(f) => {
                retrying(&guard, || publish_frame(&bus, (&stream_id, incarnation), &f, &published)).await
            }
            MediaItem::Audio(seg) => {
                retrying(&guard, || publish_audio(&bus, (&stream_id, incarnation), &languages, &seg)).await
            }
            MediaItem::Shots(w) => {
                if let Err(e) = retrying(&guard, || publish_shots(&bus, (&stream_id, incarnation), &w)).await
                {
                    stats.dropped_shot_windows.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(stream = %stream_id, error = %e, "publish failed; shot window dropped");
                }
                continue;
            }
            MediaItem::Error(detail) => {
                let _ = actor.send_message(StreamMsg::Ended { reason: RetryReason::Error, detail });
                return;
            }
            MediaItem::Eos => {
                let _ = actor.send_message(StreamMsg::Ended {
                    reason: RetryReason::Eos,
                    detail: "end of stream".into(),
                });
                return;
            }
        };
        if let Err(e) = sent {
            stats.dropped_frames.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(stream = %stream_id, error = %e, "publish failed; media dropped");
        }
    }
}

/// Waits while the lease is unconfirmed; false once it is lost.
async fn wait_for_lease(guard: &crate::ownership::LeaseGuard) -> bool {
    while !guard.valid() {
        if guard.revoked() {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    true
}

/// How long a publish is retried while JetStream does not answer (a server lost, the stream's
/// new leader being elected: seconds), before the item is dropped and counted. The same message
/// id makes a retry of a publish that did land a duplicate JetStream drops.
const PUBLISH_RETRY: std::time::Duration = std::time::Duration::from_secs(15);

async fn retrying<F: Future<Output = Result<u64, BusError>>>(
    guard: &crate::ownership::LeaseGuard,
    mut publish: impl FnMut() -> F,
) -> Result<u64, BusError> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match publish().await {
            Ok(seq) => return Ok(seq),
            Err(e) if started.elapsed() + pause > PUBLISH_RETRY || !wait_for_lease(guard).await => {
                return Err(e);
            }
            Err(e) => {
                tracing::debug!(error = %e, "publish failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
            }
        }
    }
}

/// A sampled frame, remembering its sequence for the backlog count.
async fn publish_frame(
    bus: &Bus,
    (stream_id, (incarnation, lease)): (&str, (u32, u64)),
    f: &SampledFrame,
    published: &Mutex<Backlog>,
) -> Result<u64, BusError> {
    let meta = FrameMeta {
        stream_id: stream_id.to_string(),
        pts_ms: f.pts_ms,
        wall_ms: f.wall_ms,
        width: f.width,
        height: f.height,
        cuts: f.cuts.clone(),
        incarnation,
        lease,
    };
    let seq = bus.publish_frame(&meta, &f.rgb).await?;
    published.lock().unwrap().published(seq);
    Ok(seq)
}

async fn publish_audio(
    bus: &Bus,
    (stream_id, (incarnation, lease)): (&str, (u32, u64)),
    languages: &[String],
    seg: &AudioSegment,
) -> Result<u64, BusError> {
    let meta = AudioMeta {
        stream_id: stream_id.to_string(),
        start_ms: seg.start_ms,
        end_ms: seg.end_ms,
        wall_ms: now_ms() - (seg.end_ms - seg.start_ms),
        samples: seg.samples.len(),
        incarnation,
        lease,
        languages: languages.to_vec(),
    };
    let payload = encode(&meta, &audio_bytes(&seg.samples));
    bus.publish(bus.names.audio_subject(stream_id), &meta.msg_id(), payload).await
}

async fn publish_shots(
    bus: &Bus,
    (stream_id, (incarnation, lease)): (&str, (u32, u64)),
    w: &ShotWindow,
) -> Result<u64, BusError> {
    let meta = ShotWindowMeta {
        stream_id: stream_id.to_string(),
        pts_ms: w.pts_ms.clone(),
        wall_ms: now_ms(),
        width: sightline_streams::shots::SHOT_WIDTH,
        height: sightline_streams::shots::SHOT_HEIGHT,
        read_from: w.read_from,
        read_to: w.read_to,
        incarnation,
        lease,
    };
    bus.publish(bus.names.shots_subject(stream_id), &meta.msg_id(), encode(&meta, &w.rgb)).await
}

/// Puts a `state` event on the bus (the feed, ClickHouse) when the stream's state, or the reason
/// for it, changed since the last one announced.
pub(crate) async fn announce_state(
    bus: &Bus,
    metrics: &Metrics,
    spec: &StreamSpec,
    s: &StreamStatus,
    announced: &mut Option<(StreamState, Option<String>)>,
) {
    // `starting` is the moment between two attempts: a source that keeps failing would flap
    // between it and `reconnecting`, so only the outcome is announced (and a repeated failure
    // with the same reason once).
    if s.state == StreamState::Starting {
        return;
    }
    let why = match s.state {
        StreamState::Degraded => s.degraded_reason.clone(),
        StreamState::Reconnecting | StreamState::Failed => s.last_error.clone(),
        _ => None,
    };
    let now = (s.state, why);
    if announced.as_ref() == Some(&now) {
        return;
    }
    let text = match &now.1 {
        Some(why) => format!("{}: {why}", now.0.as_str()),
        None => now.0.as_str().to_string(),
    };
    let stream = sightline_wire::StreamRef::new(&spec.id, spec.incarnation);
    let wall = now_ms();
    let mut e =
        sightline_wire::Event::new(sightline_wire::EventKind::State, stream, s.media_ms, wall, "ingest@1");
    // Two changes can share a media time (a stall): the wall time names each.
    e.id = stream.id_for("state", wall);
    e.text = text;
    match sightline_bus::publish_events(bus, metrics, &[e]).await {
        Ok(()) => *announced = Some(now),
        Err(e) => {
            tracing::debug!(stream = %spec.id, error = %e, "cannot publish the state change; will retry")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Backlog;

    #[test]
    fn the_backlog_is_the_streams_own_whatever_holds_the_floor() {
        let mut b = Backlog::default();
        (1..=10).for_each(|s| b.published(s));
        // Another stream's message (say sequence 0) holds the shared ack floor; this stream's
        // frames 2..=10 are finished: one waits, not ten.
        b.settled(&[2, 3, 4, 5, 6, 7, 8, 9, 10]);
        b.floor(0);
        assert_eq!(b.len(), 1);
        // A lost notice: the floor passing it sweeps it up.
        b.floor(1);
        assert_eq!(b.len(), 0);
        // Finished before the pump recorded it: never counted.
        b.settled(&[12]);
        b.published(11);
        b.published(12);
        assert_eq!(b.len(), 1);
        // A repeated notice changes nothing.
        b.settled(&[11]);
        b.settled(&[11]);
        assert_eq!(b.len(), 0);
    }
}
