//! ONNX model execution with ONNX Runtime (the `ort` crate, loaded dynamically): the runtime
//! environment, voice activity detection (Silero VAD) and speech-to-text (Moonshine).

pub mod runtime;
pub mod stt;
pub mod tokenizer;
pub mod vad;

pub use runtime::{ModelError, Runtime};
pub use stt::{Moonshine, Transcript};
pub use tokenizer::TokenDecoder;
pub use vad::SileroVad;
