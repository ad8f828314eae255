//! Rows of Sightline's ClickHouse tables, as the sinks write them and the gateway reads them.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use sightline_wire::{Event, EventKind};
use time::OffsetDateTime;

/// One row of `events`; mirrors [`sightline_wire::Event`].
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct EventRow {
    pub id: String,
    pub kind: String,
    pub stream_id: String,
    pub pts_ms: i64,
    pub end_ms: Option<i64>,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub wall_time: OffsetDateTime,
    pub text: String,
    pub score: f32,
    pub model: String,
    /// Kind-specific details as JSON ([`Event::detail_json`]).
    pub detail: String,
}

impl From<&Event> for EventRow {
    fn from(e: &Event) -> Self {
        Self {
            id: e.id.clone(),
            kind: e.kind.as_str().to_string(),
            stream_id: e.stream_id.clone(),
            pts_ms: e.pts_ms,
            end_ms: e.end_ms,
            wall_time: OffsetDateTime::from_unix_timestamp_nanos(e.wall_ms as i128 * 1_000_000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            text: e.text.clone(),
            score: e.score,
            model: e.model.clone(),
            detail: e.detail_json(),
        }
    }
}

fn wall_time(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// One row of `frames`: a kept frame with its labels and image vector.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct FrameRow {
    pub id: String,
    pub stream_id: String,
    pub pts_ms: i64,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub wall_time: OffsetDateTime,
    pub keyframe: u8,
    pub phash: u64,
    pub labels: Vec<String>,
    pub label_scores: Vec<f32>,
    pub features: Vec<f32>,
    pub image_features: Vec<f32>,
    pub model: String,
}

impl FrameRow {
    pub fn from_event(e: &Event) -> Option<Self> {
        let f = e.frame()?;
        Some(Self {
            id: e.id.clone(),
            stream_id: e.stream_id.clone(),
            pts_ms: e.pts_ms,
            wall_time: wall_time(e.wall_ms),
            keyframe: f.keyframe as u8,
            phash: u64::from_str_radix(&f.phash, 16).unwrap_or(0),
            labels: f.labels.iter().map(|l| l.name.clone()).collect(),
            label_scores: f.labels.iter().map(|l| l.score).collect(),
            features: f.vector.clone(),
            image_features: f.features.clone(),
            model: e.model.clone(),
        })
    }
}

/// One row of `dlq`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct DlqRow {
    pub seq: u64,
    pub kind: String,
    pub original_subject: String,
    pub error: String,
    pub delivered: u32,
    pub headers: String,
    pub payload_bytes: u32,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub wall_time: OffsetDateTime,
}

/// One row of `streams`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct StreamRow {
    pub id: String,
    pub name: String,
    pub url: String,
    pub state: String,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub created_at: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub updated_at: OffsetDateTime,
    pub deleted: u8,
}

/// One row of `pipeline_metrics`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct PipelineRow {
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub ts: OffsetDateTime,
    pub stream_id: String,
    pub state: String,
    pub decoded_fps: f32,
    pub sampled_fps: f32,
    pub target_fps: f32,
    pub dropped_frames: u64,
    pub backlog_frames: u64,
    pub reconnects: u32,
    pub media_ms: i64,
}

/// Output formats of [`EventStore::query_readonly`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlFormat {
    Json,
    Csv,
}

impl EventRow {
    pub fn to_event(&self) -> Option<Event> {
        Some(Event {
            id: self.id.clone(),
            kind: EventKind::parse(&self.kind)?,
            stream_id: self.stream_id.clone(),
            incarnation: sightline_wire::StreamRef::incarnation_of(&self.id),
            pts_ms: self.pts_ms,
            end_ms: self.end_ms,
            wall_ms: (self.wall_time.unix_timestamp_nanos() / 1_000_000) as i64,
            text: self.text.clone(),
            score: self.score,
            model: self.model.clone(),
            detail: None,
            text_vector: Vec::new(),
            timing: None,
        })
        .map(|mut e| {
            e.set_detail_json(&self.detail);
            e
        })
    }
}
