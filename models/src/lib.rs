//! ONNX model execution with ONNX Runtime (the `ort` crate, loaded dynamically): the runtime
//! environment, voice activity detection (Silero VAD), speech-to-text (Moonshine; Whisper for other languages, with language identification), text embeddings
//! (MiniLM), on-screen text (PP-OCR), image labels (EfficientNet-Lite0), shot boundaries
//! (TransNetV2) and model-free frame signatures.

mod bpe;
pub mod clip;
pub mod denoise;
pub mod embed;
pub mod gpu;
pub mod labels;
pub mod ocr;
pub mod runtime;
mod search;
pub mod shots;
pub mod signature;
pub mod stt;
pub mod tokenizer;
pub mod vad;
pub mod whisper;

pub use clip::{ClipTokenizer, ImageTextModel};
pub use denoise::{DenoiseParams, Denoiser};
pub use embed::{TEXT_DIM, TextEmbedder, WordPiece};
pub use gpu::{GpuPreprocessor, InputLayout, preprocess_cpu};
pub use labels::{IMAGE_FEATURES, ImageLabeler, ImageLabels};
pub use ocr::{Ocr, OcrLine, OcrParams};
pub use runtime::{GpuUnavailable, ModelError, Provider, Runtime, cuda_available};
pub use shots::{SHOT_FRAME_BYTES, ShotDetector, shot_frame, shot_starts};
pub use signature::{FrameSignature, SIGNATURE_DIM, hamming, thumbnail_bmp};
pub use stt::{JudgeStats, Moonshine, Transcript};
pub use tokenizer::TokenDecoder;
pub use vad::SileroVad;
pub use whisper::{Encoded, Language, WHISPER_MAX_BATCH, WHISPER_WINDOW, Whisper};
