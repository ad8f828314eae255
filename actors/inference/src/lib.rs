//! The inference stage: pools of workers that run the models on the work ingest published and
//! publish events. One [`pool::InferencePool`] per model kind, each a [`Processor`] on the worker
//! runtime: scenes (cuts, kept frames, labels), shots (TransNetV2), speech (VAD + speech-to-text),
//! OCR. It also answers the gateway's query-embedding requests ([`query`]).

pub mod enrich;
pub mod extra;
pub mod loading;
pub mod ocr;
pub mod pool;
pub mod query;
mod running;
pub mod scenes;
pub mod shedding;
pub mod shots;
pub mod speech;

pub use enrich::Enrich;
pub use extra::{ExtraParts, ExtraWork};
pub use loading::{gpu_preprocessor, load_embedder, load_image_text, registered, runtime_for};
pub use ocr::OcrProcessor;
pub use pool::{InferencePool, ItemError, ItemResult, MakeProcessor, Processor};
pub use scenes::{FRAME_MODEL, SceneProcessor};
pub use shedding::Pace;
pub use shots::ShotProcessor;
pub use speech::SpeechProcessor;
