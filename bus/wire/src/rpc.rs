//! Request/reply messages between stages.

use serde::{Deserialize, Serialize};

/// Services stages offer each other over request/reply, so the gateway needs neither the media
/// nor the model stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Inference: embed a search query in a vector space (`EmbedRequest` -> `EmbedReply`).
    Embed,
    /// Ingest: fetch and check an HLS playlist before a stream is registered
    /// (`CheckSourceRequest` -> `CheckSourceReply`).
    CheckSource,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Embed => "embed",
            Service::CheckSource => "check_source",
        }
    }
}

/// Which embedding model a query is embedded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryModel {
    /// MiniLM: the `text` vector set (transcripts, on-screen text, labels).
    Text,
    /// The CLIP-like model's text side: the `image_text` vector set.
    ImageText,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbedRequest {
    pub model: QueryModel,
    pub text: String,
}

/// A query's vector, or why there is none.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbedReply {
    Vector(Vec<f32>),
    /// No model of that kind is configured on the inference nodes.
    NoModel(String),
    Failed(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckSourceRequest {
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckSourceReply {
    Accepted,
    /// The playlist breaks a limit; the reason says which.
    Refused(String),
}
