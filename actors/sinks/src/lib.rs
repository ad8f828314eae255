//! The sink stage: workers that only write. The ClickHouse sink inserts events (and copies dead
//! letters and stream snapshots); the vector sink adds vectors, thumbnails and duplicate checks to
//! Redis vector sets. Both run on the worker runtime and ack only what the store confirmed.

pub mod clickhouse;
pub mod event_batch;
pub mod vectors;

pub use clickhouse::{ClickHouseSink, insert_new};
pub use vectors::VectorSink;
