//! Every outbound HTTP request made for a stream source: [`fetch`] (one GET under the address
//! policy), [`playlist`] (HLS limits and URI rewriting) and [`proxy`] (the loopback proxy that
//! GStreamer reads HTTP sources through, so that nothing it fetches escapes the policy).

pub mod fetch;
pub mod playlist;
pub mod proxy;
pub mod url;

pub use fetch::{FetchError, Fetcher};
pub use playlist::{PlaylistError, PlaylistLimits};
pub use proxy::{EgressConfig, EgressProxy, Lease, Refusal, check_source};
