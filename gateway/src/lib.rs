//! The HTTP face of Sightline (axum): stream registration, the websocket live feed, events from
//! ClickHouse, search and similar frames (Redis vector sets), read-only SQL, dead letters, health,
//! Prometheus metrics and the web dashboard.

mod auth;
mod error;
mod feed;
mod feed_guard;
mod nodes;
mod openapi;
mod routes;
mod search;
mod sql;
mod streams;

pub use auth::sha256_hex;
pub use error::ApiError;
pub use openapi::document as openapi_document;
pub use routes::{AppState, router, serve};
pub use search::SearchState;
pub use sql::{Refusal, check_read_only};
