//! Sightline's stores: ClickHouse for SQL analytics over events (with versioned migrations) and
//! Redis 8 vector sets for similarity search.

pub mod clickhouse;
pub mod vectors;

pub use crate::clickhouse::{
    DlqRow, EventRow, EventStore, FrameRow, PipelineRow, SqlFormat, StoreError, StreamRow,
};
pub use vectors::{Hit, Query, VectorAttrs, VectorItem, VectorStore, filter_string};
