//! Debug aid: what judging one utterance costs Whisper at each window (`speech.rehear_judge_window_s`):
//! its encoder alone, and the encoder plus scoring four transcripts, one thread, with the scores.
//! `cargo run --release -p sightline-models --example judge_cost`
use sightline_models::{Runtime, Whisper};
use sightline_settings::{Config, Task};
use sightline_testkit::quality::speak;
fn main() {
    let cfg = Config::load(None).unwrap();
    let m = &cfg.models;
    let rt = Runtime::load(&m.onnxruntime_lib()).unwrap();
    let f = m.task_files(Task::SttMultilingual).unwrap();
    let mut w = Whisper::load(&rt, &f[0], &f[1], &f[2], &f[3], 1).unwrap();
    let audio =
        speak("the train to edinburgh leaves from platform nine at six fifteen", "en-us", 150).unwrap();
    println!("an utterance of {:.1} s", audio.len() as f32 / 16000.0);
    let texts: Vec<String> = [
        "The train to Edinburgh leaves from platform 9 at 6.15.",
        "The train turned in the reliefs from platform 9 at 6:15.",
        "The train to Edinburgh leaves from platform i.615.",
        "The train to Edinburgh leaves from platform IR615.",
    ]
    .map(String::from)
    .to_vec();
    for win in [15.0, 10.0, 8.0, 6.0, 5.0] {
        w.set_window(win);
        let _ = w.score_texts(&audio, "en", &texts).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..3 {
            let _ = w.encode(&[&audio]).unwrap();
        }
        let enc = t.elapsed().as_secs_f64() / 3.0;
        let t = std::time::Instant::now();
        let s = w.score_texts(&audio, "en", &texts).unwrap();
        let all = t.elapsed().as_secs_f64();
        println!(
            "window {win} s: encode {:.0} ms, encode and score {:.0} ms, scores {s:?}",
            enc * 1000.0,
            all * 1000.0
        );
    }
}
