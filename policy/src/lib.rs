//! What Sightline lets in and what it lets out: which stream sources may be read (URL validation
//! and the outbound-address policy, [`source`]), and which parts of a URL are secrets that never
//! leave in an answer, a log line or a table ([`secrets`]). Shared by the gateway and ingest, and
//! free of the media stack.

pub mod allow;
pub mod secrets;
pub mod source;

pub use allow::AllowList;
pub use secrets::{percent_decode, redact_secrets, redact_url};
pub use source::*;
