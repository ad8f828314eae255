//! The HTTP face of Sightline (axum): stream registration, the websocket live feed, events from
//! ClickHouse, health, Prometheus metrics and the web dashboard.

mod error;
mod feed;
mod routes;

pub use error::ApiError;
pub use routes::{AppState, router, serve};
