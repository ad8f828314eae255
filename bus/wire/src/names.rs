//! Names of everything on the bus and in the stores, derived from one prefix.

use crate::event::EventKind;
use crate::rpc::Service;

/// The Redis vector sets, one per embedding space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorSpace {
    /// MiniLM embeddings of transcripts, on-screen text and confident labels.
    Text,
    /// Frame signatures (dHash + colour layout): how a frame looks.
    Frames,
    /// The labelling model's image features: what a frame shows.
    Features,
    /// The CLIP-like model's image embeddings: found by a description.
    ImageText,
}

impl VectorSpace {
    pub const ALL: [VectorSpace; 4] =
        [VectorSpace::Text, VectorSpace::Frames, VectorSpace::Features, VectorSpace::ImageText];

    pub fn as_str(self) -> &'static str {
        match self {
            VectorSpace::Text => "text",
            VectorSpace::Frames => "frames",
            VectorSpace::Features => "features",
            VectorSpace::ImageText => "image_text",
        }
    }
}

/// Names of JetStream streams, buckets and subjects, all derived from one prefix so that several
/// deployments (or test runs) can share one NATS server without seeing each other.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
    root: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_ascii_uppercase(), root: prefix.to_ascii_lowercase() }
    }
    pub fn frames_stream(&self) -> String {
        format!("{}_FRAMES", self.prefix)
    }
    pub fn audio_stream(&self) -> String {
        format!("{}_AUDIO", self.prefix)
    }
    pub fn events_stream(&self) -> String {
        format!("{}_EVENTS", self.prefix)
    }
    pub fn dlq_stream(&self) -> String {
        format!("{}_DLQ", self.prefix)
    }
    /// Windows of tiny frames for the shot-boundary model (`ingest.cut_detector = "transnetv2"`).
    pub fn shots_stream(&self) -> String {
        format!("{}_SHOTS", self.prefix)
    }
    pub fn shots_subject(&self, stream_id: &str) -> String {
        format!("{}.shots.{stream_id}", self.root)
    }
    pub fn shots_all(&self) -> String {
        format!("{}.shots.*", self.root)
    }
    /// KV bucket holding stream specs (the registry).
    pub fn registry_bucket(&self) -> String {
        format!("{}_streams", self.prefix)
    }
    /// KV bucket holding live stream status, written by the ingest node that owns the stream.
    pub fn status_bucket(&self) -> String {
        format!("{}_stream_status", self.prefix)
    }
    /// KV bucket of node announcements (membership), one key per node.
    pub fn nodes_bucket(&self) -> String {
        format!("{}_nodes", self.prefix)
    }
    /// KV bucket of stream leases: which ingest node runs each stream.
    pub fn leases_bucket(&self) -> String {
        format!("{}_leases", self.prefix)
    }
    /// Where a node takes commands ([`crate::NodeCommand`]).
    pub fn node_subject(&self, node_id: &str) -> String {
        format!("{}.node.{node_id}", self.root)
    }
    pub fn consumer(&self, role: &str) -> String {
        format!("{}_{role}", self.prefix)
    }
    pub fn frames_subject(&self, stream_id: &str) -> String {
        format!("{}.frames.{stream_id}", self.root)
    }
    pub fn frames_all(&self) -> String {
        format!("{}.frames.*", self.root)
    }
    pub fn audio_subject(&self, stream_id: &str) -> String {
        format!("{}.audio.{stream_id}", self.root)
    }
    pub fn audio_all(&self) -> String {
        format!("{}.audio.*", self.root)
    }
    pub fn event_subject(&self, kind: EventKind, stream_id: &str) -> String {
        format!("{}.events.{}.{stream_id}", self.root, kind.as_str())
    }
    pub fn events_all(&self) -> String {
        format!("{}.events.>", self.root)
    }
    /// Subject filter for the feed: one kind and/or one stream, or everything.
    pub fn events_filter(&self, kind: Option<EventKind>, stream_id: Option<&str>) -> String {
        let k = kind.map(|k| k.as_str()).unwrap_or("*");
        let s = stream_id.unwrap_or("*");
        format!("{}.events.{k}.{s}", self.root)
    }
    /// Core NATS subject on which pools report work they shed for a stream ([`crate::ShedNotice`]).
    pub fn shed_subject(&self, stream_id: &str) -> String {
        format!("{}.shed.{stream_id}", self.root)
    }
    pub fn shed_all(&self) -> String {
        format!("{}.shed.*", self.root)
    }
    /// Core NATS subject on which pools report the work of a stream they finished with
    /// ([`crate::SettledNotice`]).
    pub fn settled_subject(&self, stream_id: &str) -> String {
        format!("{}.settled.{stream_id}", self.root)
    }
    pub fn settled_all(&self) -> String {
        format!("{}.settled.*", self.root)
    }
    pub fn dlq_subject(&self, kind: &str) -> String {
        format!("{}.dlq.{kind}", self.root)
    }
    /// Redis key of a vector set ("text", "frames", "image_text").
    pub fn vector_set(&self, space: VectorSpace) -> String {
        format!("{}:vectors:{}", self.root, space.as_str())
    }
    /// Redis key of a frame's thumbnail.
    pub fn thumbnail_key(&self, frame_id: &str) -> String {
        format!("{}:thumbs:{frame_id}", self.root)
    }
    /// Redis key naming a stream's latest kept frame.
    pub fn latest_frame_key(&self, stream_id: &str) -> String {
        format!("{}:latest_frame:{stream_id}", self.root)
    }
    /// Subjects of one kind of event, every stream.
    pub fn events_of_kind(&self, kind: EventKind) -> String {
        format!("{}.events.{}.*", self.root, kind.as_str())
    }
    pub fn dlq_all(&self) -> String {
        format!("{}.dlq.>", self.root)
    }
    /// Request/reply subject of a service one stage offers the others (plain NATS, not JetStream).
    pub fn rpc_subject(&self, service: Service) -> String {
        format!("{}.rpc.{}", self.root, service.as_str())
    }
}
