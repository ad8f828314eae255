//! The load test's library: the capacity harness ([`capacity`]) and its report ([`report`]). Both
//! treat Sightline as a black box over HTTP and the websocket feed; the sources they play are test
//! media from `sightline-testkit`.

pub mod capacity;
pub mod report;
