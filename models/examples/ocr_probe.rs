//! Debug aid: renders one caption and prints what the OCR reads, with per-step CTC detail.
//! `cargo run -p sightline-models --example ocr_probe -- "TEXT" navy "sans bold 30, outline"`
use sightline_models::{Ocr, OcrParams, Runtime};
use sightline_settings::{Config, Task};
use sightline_testkit::quality::{Backdrop, caption_case_frame, caption_styles};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let text = args.get(1).cloned().unwrap_or("AT NINE".into());
    let bg: &'static str = Box::leak(args.get(2).cloned().unwrap_or("navy".into()).into_boxed_str());
    let style_name = args.get(3).cloned().unwrap_or("sans bold 30, outline".into());
    let cfg = Config::load(None).unwrap();
    let rt = Runtime::load(&cfg.models.onnxruntime_lib()).unwrap();
    let f = cfg.models.task_files(Task::Ocr).unwrap();
    let mut ocr = Ocr::load(&rt, &f[0], &f[1], 2, OcrParams::default()).unwrap();
    let style = caption_styles().into_iter().find(|s| s.name == style_name).expect("style");
    let backdrop = if bg.contains('.') {
        Backdrop::Photo(bg)
    } else if let Ok(n) = bg.parse() {
        Backdrop::Gradient(n)
    } else if ["testsrc2", "cellauto", "life", "mandelbrot", "smptehdbars"].contains(&bg) {
        Backdrop::Pattern(bg)
    } else {
        Backdrop::Flat(bg)
    };
    let (w, h) = (cfg.ingest.analysis_width as usize, cfg.ingest.analysis_height as usize);
    let lines: Vec<&str> = text.split('|').collect();
    let frame = caption_case_frame(&lines, &backdrop, &style, w, h).unwrap();
    for l in ocr.read(&frame, w, h).unwrap() {
        println!("{:?} {:.3} {:?}", l.text, l.confidence, l.bbox);
    }
}
