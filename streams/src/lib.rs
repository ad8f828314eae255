//! Media ingest: turns a live URL into sampled frames, frame-exact cut candidates and gated
//! audio segments, with GStreamer. Also makes the synthetic test media the project uses (clips with
//! known cuts, captions and speech, served as live HLS on loopback).

pub mod audio;
pub mod backpressure;
pub mod cut;
pub mod pipeline;
pub mod playlist;
pub mod shots;
pub mod source;
pub mod testsrc;

pub use audio::{AudioSegment, AudioSegmenter};
pub use backpressure::{Backpressure, Rate};
pub use cut::CutDetector;
pub use pipeline::{IngestError, IngestStats, MediaItem, MediaPipeline, PipelineSpec, SampledFrame};
pub use shots::{ShotWindow, ShotWindower};
pub use source::{SourceError, SourceUrl, check_host, validate_url};
