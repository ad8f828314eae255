//! Sightline's stores: ClickHouse for SQL analytics over events (with versioned migrations) and
//! Redis 8 vector sets for similarity search.

pub mod clickhouse;
mod migrations;
pub mod replicated;
pub mod rows;
pub mod vectors;

pub use crate::clickhouse::{EventStore, StoreError};
pub use migrations::migration_sql;
pub use rows::{DlqRow, EventRow, FrameRow, PipelineRow, SqlFormat, StreamRow};
pub use vectors::{Hit, Query, VectorAttrs, VectorItem, VectorStore, filter_string};
