//! Bounds on HLS playlists, checked when a stream is registered: the playlist is fetched through
//! GStreamer's own HTTP source (http and https alike) with a byte cap, and refused when it is too
//! large or lists too many segments or variants. A playlist that cannot be fetched is not refused
//! here: the stream is registered and shows `reconnecting` with the reason.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlaylistError {
    #[error("playlist is larger than {0} bytes")]
    TooLarge(usize),
    #[error("playlist lists {got} segments; at most {max} are accepted")]
    TooManySegments { got: usize, max: usize },
    #[error("playlist lists {got} variants; at most {max} are accepted")]
    TooManyVariants { got: usize, max: usize },
}

#[derive(Debug, Clone, Copy)]
pub struct PlaylistLimits {
    pub max_bytes: usize,
    pub max_segments: usize,
    pub max_variants: usize,
}

/// Checks a playlist's text against the limits.
pub fn check_text(text: &str, limits: &PlaylistLimits) -> Result<(), PlaylistError> {
    if text.len() > limits.max_bytes {
        return Err(PlaylistError::TooLarge(limits.max_bytes));
    }
    let segments = text.lines().filter(|l| l.starts_with("#EXTINF")).count();
    if segments > limits.max_segments {
        return Err(PlaylistError::TooManySegments { got: segments, max: limits.max_segments });
    }
    let variants = text.lines().filter(|l| l.starts_with("#EXT-X-STREAM-INF")).count();
    if variants > limits.max_variants {
        return Err(PlaylistError::TooManyVariants { got: variants, max: limits.max_variants });
    }
    Ok(())
}

/// Fetches up to `max_bytes + 1` bytes of `url`; `None` if it cannot be fetched in `timeout`.
pub async fn fetch_capped(url: &str, max_bytes: usize, timeout: Duration) -> Option<Vec<u8>> {
    let url = url.to_string();
    let task = tokio::task::spawn_blocking(move || {
        crate::pipeline::init().ok()?;
        let src = gst::ElementFactory::make("souphttpsrc").property("location", &url).build().ok()?;
        let sink = gst_app::AppSink::builder().sync(false).build();
        let pipeline = gst::Pipeline::new();
        pipeline.add_many([&src, sink.upcast_ref()]).ok()?;
        src.link(&sink).ok()?;
        pipeline.set_state(gst::State::Playing).ok()?;
        let mut body = Vec::new();
        let deadline = std::time::Instant::now() + timeout;
        let ok = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match sink.try_pull_sample(gst::ClockTime::from_nseconds(left.as_nanos() as u64)) {
                Some(sample) => {
                    if let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) {
                        body.extend_from_slice(&map);
                    }
                    if body.len() > max_bytes {
                        break true;
                    }
                }
                None => break sink.is_eos(),
            }
        };
        let _ = pipeline.set_state(gst::State::Null);
        ok.then_some(body)
    });
    task.await.ok().flatten()
}

/// Fetches the URL when it looks like an HLS playlist and checks it against the limits.
pub async fn check_playlist(url: &str, limits: &PlaylistLimits) -> Result<(), PlaylistError> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let is_http = url.starts_with("http://") || url.starts_with("https://");
    if !is_http || !path.to_ascii_lowercase().ends_with(".m3u8") {
        return Ok(());
    }
    match fetch_capped(url, limits.max_bytes, Duration::from_secs(5)).await {
        Some(body) if body.len() > limits.max_bytes => Err(PlaylistError::TooLarge(limits.max_bytes)),
        Some(body) => check_text(&String::from_utf8_lossy(&body), limits),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PlaylistLimits = PlaylistLimits { max_bytes: 10_000, max_segments: 3, max_variants: 2 };

    #[test]
    fn counts_segments_and_variants() {
        let media = "#EXTM3U\n#EXTINF:1,\na.ts\n#EXTINF:1,\nb.ts\n";
        assert_eq!(check_text(media, &LIMITS), Ok(()));
        let long = "#EXTM3U\n".to_string() + &"#EXTINF:1,\nx.ts\n".repeat(4);
        assert_eq!(check_text(&long, &LIMITS), Err(PlaylistError::TooManySegments { got: 4, max: 3 }));
        let master = "#EXTM3U\n".to_string() + &"#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n".repeat(3);
        assert_eq!(check_text(&master, &LIMITS), Err(PlaylistError::TooManyVariants { got: 3, max: 2 }));
        assert_eq!(check_text(&"#".repeat(10_001), &LIMITS), Err(PlaylistError::TooLarge(10_000)));
    }
}
