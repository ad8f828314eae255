//! The stream registry: specs in the JetStream KV bucket `<prefix>_streams` (what should run) and
//! live status in `<prefix>_stream_status` (what is running), so every node and the gateway see
//! the same picture and registered streams survive restarts.

use crate::connection::{Bus, BusError, js_err};
use async_nats::jetstream::kv;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
pub use sightline_wire::{RetryReason, StreamState};

/// What a user registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSpec {
    pub id: String,
    pub name: String,
    pub url: String,
    pub created_ms: i64,
    /// Paused by a user: registered, but not ingested until resumed.
    #[serde(default)]
    pub paused: bool,
    /// Drawn anew at every registration and part of every message and event id of the stream
    /// ([`sightline_wire::StreamRef`]): a stream deleted and registered again under the same id
    /// starts its media clock at 0 without colliding with its earlier life. 0 for streams
    /// registered before incarnations existed (their ids keep the old form).
    #[serde(default)]
    pub incarnation: u32,
    /// Languages the stream speaks (ISO 639-1), a subset of `speech.languages`; empty: all of
    /// those. One language skips identification: every transcript is in it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
}

/// A fresh, non-zero incarnation for a new registration.
pub fn new_incarnation() -> u32 {
    loop {
        let n = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u32)
            .rotate_left(13)
            ^ std::process::id().wrapping_mul(0x9e37_79b9);
        if n != 0 {
            return n;
        }
    }
}

/// What the owning ingest node reports, refreshed every second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamStatus {
    pub state: StreamState,
    /// Since when (Unix ms) the stream is in this state.
    pub since_ms: i64,
    pub last_error: Option<String>,
    pub last_retry_reason: Option<RetryReason>,
    /// Outages: how often the stream went from media flowing to `reconnecting`.
    pub reconnects: u64,
    /// Consecutive failed attempts in the current outage (0 while media flows).
    pub retry_attempt: u32,
    pub decoded_fps: f32,
    pub sampled_fps: f32,
    pub decoded_frames: u64,
    pub sampled_frames: u64,
    pub dropped_frames: u64,
    pub audio_segments: u64,
    pub cuts: u64,
    /// Sampled frames waiting for the scene workers (consumer lag); null until known.
    pub backlog_frames: Option<u64>,
    /// Sampling rate in force: the configured one, or less under backpressure.
    pub sample_fps_target: f32,
    /// Latest position of the stream's media clock, ms (restarts continue from here).
    pub media_ms: i64,
    pub updated_ms: i64,
    /// Why the stream is `degraded` (work shed by a pool, a reduced sampling rate, dropped media).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded_reason: Option<String>,
    /// Work the inference pools shed for this stream to keep their lag bounded, by
    /// `<pool>.<reason>` (e.g. `ocr.lag`, `speech.too_late`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub shed: std::collections::BTreeMap<String, u64>,
    /// The ingest node running the stream (holding its lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// How often the stream moved to another node (failover, drain, rebalancing).
    #[serde(default)]
    pub handovers: u64,
    /// The gap in media time at the latest move, ms: the media clock continues past what the
    /// previous owner last reported by the wall time the move took (plus a second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover_gap_ms: Option<i64>,
}

impl StreamStatus {
    pub fn new(now_ms: i64) -> Self {
        Self {
            state: StreamState::Starting,
            since_ms: now_ms,
            last_error: None,
            last_retry_reason: None,
            reconnects: 0,
            retry_attempt: 0,
            decoded_fps: 0.0,
            sampled_fps: 0.0,
            decoded_frames: 0,
            sampled_frames: 0,
            dropped_frames: 0,
            audio_segments: 0,
            cuts: 0,
            backlog_frames: None,
            sample_fps_target: 0.0,
            media_ms: 0,
            updated_ms: now_ms,
            degraded_reason: None,
            shed: Default::default(),
            owner: None,
            handovers: 0,
            handover_gap_ms: None,
        }
    }
}

/// A stream as the API shows it: its spec and, once a node reported, its status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamView {
    #[serde(flatten)]
    pub spec: StreamSpec,
    pub status: StreamState,
    pub detail: Option<StreamStatus>,
}

#[derive(Clone)]
pub struct Registry {
    specs: kv::Store,
    status: kv::Store,
}

pub enum Change {
    Put(StreamSpec),
    Delete(String),
}

impl Registry {
    pub async fn open(bus: &Bus) -> Result<Self, BusError> {
        Ok(Self {
            specs: bus.kv(&bus.names.registry_bucket()).await?,
            status: bus.kv(&bus.names.status_bucket()).await?,
        })
    }

    /// Registers a stream atomically. Returns false, changing nothing, when the id is taken.
    pub async fn create(&self, spec: &StreamSpec) -> Result<bool, BusError> {
        let json = serde_json::to_vec(spec).expect("spec serialises");
        match self.specs.create(&spec.id, json.into()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(js_err(format!("create {}", spec.id))(e)),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<StreamSpec>, BusError> {
        let v = self.specs.get(id).await.map_err(js_err(format!("get {id}")))?;
        Ok(v.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    pub async fn list(&self) -> Result<Vec<StreamSpec>, BusError> {
        let mut keys = self.specs.keys().await.map_err(js_err("list streams"))?;
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            let Ok(k) = k else { continue };
            if let Some(s) = self.get(&k).await? {
                out.push(s);
            }
        }
        out.sort_by_key(|s| s.created_ms);
        Ok(out)
    }

    /// Pauses or resumes a stream; returns the updated spec, or None when it does not exist.
    pub async fn set_paused(&self, id: &str, paused: bool) -> Result<Option<StreamSpec>, BusError> {
        let Some(mut spec) = self.get(id).await? else { return Ok(None) };
        if spec.paused != paused {
            spec.paused = paused;
            let json = serde_json::to_vec(&spec).expect("spec serialises");
            self.specs.put(id, json.into()).await.map_err(js_err(format!("update {id}")))?;
        }
        Ok(Some(spec))
    }

    pub async fn delete(&self, id: &str) -> Result<(), BusError> {
        self.specs.delete(id).await.map_err(js_err(format!("delete {id}")))?;
        Ok(())
    }

    pub async fn status(&self, id: &str) -> Result<Option<StreamStatus>, BusError> {
        let v = self.status.get(id).await.map_err(js_err(format!("status {id}")))?;
        Ok(v.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    pub async fn put_status(&self, id: &str, status: &StreamStatus) -> Result<(), BusError> {
        let json = serde_json::to_vec(status).expect("status serialises");
        self.status.put(id, json.into()).await.map_err(js_err(format!("status {id}")))?;
        Ok(())
    }

    pub async fn delete_status(&self, id: &str) -> Result<(), BusError> {
        self.status.purge(id).await.map_err(js_err(format!("status {id}")))?;
        Ok(())
    }

    pub async fn view(&self, spec: StreamSpec) -> Result<StreamView, BusError> {
        let detail = self.status(&spec.id).await?;
        let status = if spec.paused {
            StreamState::Paused
        } else {
            detail.as_ref().map(|d| d.state).unwrap_or(StreamState::Starting)
        };
        Ok(StreamView { spec, status, detail })
    }

    /// Every current spec, then every change, as they happen.
    pub async fn watch(&self) -> Result<futures::stream::BoxStream<'static, Change>, BusError> {
        let w = self.specs.watch_with_history(">").await.map_err(js_err("watch registry"))?;
        Ok(w.filter_map(|e| async move {
            let e = e.ok()?;
            match e.operation {
                kv::Operation::Put => serde_json::from_slice(&e.value).ok().map(Change::Put),
                kv::Operation::Delete | kv::Operation::Purge => Some(Change::Delete(e.key)),
            }
        })
        .boxed())
    }
}
