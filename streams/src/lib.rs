//! Media ingest: turns a live URL into sampled frames, frame-exact cut candidates and gated
//! audio segments, with GStreamer. (Test media lives in the dev-only `sightline-testkit`.)

pub mod audio;
pub mod backpressure;
pub mod cut;
pub mod memory;
pub mod pipeline;
pub mod shots;

pub use audio::{AudioSegment, AudioSegmenter};
pub use backpressure::{Backpressure, Rate};
pub use cut::CutDetector;
pub use pipeline::{IngestError, IngestStats, MediaItem, MediaPipeline, PipelineSpec, SampledFrame};
pub use shots::{ShotWindow, ShotWindower};
pub use sightline_policy::{self as source, SourceError, SourceUrl, check_host, validate_url};
