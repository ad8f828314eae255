//! The load test's library: the capacity harness ([`capacity`]), the sources it plays and the feed
//! it reads ([`sources`]), what it reads off `/metrics` and the bare ONNX Runtime reference
//! ([`metrics`]), and its report ([`report`]). All
//! treat Sightline as a black box over HTTP and the websocket feed; the sources they play are test
//! media from `sightline-testkit`.

pub mod capacity;
pub mod metrics;
pub mod report;
pub mod sources;
mod totals;
