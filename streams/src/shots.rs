//! Windows of consecutive tiny frames for the shot-boundary model (TransNetV2): 100 frames of
//! 48x27 RGB, read for the middle 50, so consecutive windows overlap by 50 and every frame is read
//! exactly once with 25 frames of context on each side.

use std::collections::VecDeque;

pub const SHOT_WIDTH: u32 = 48;
pub const SHOT_HEIGHT: u32 = 27;
pub const WINDOW: usize = 100;
pub const CONTEXT: usize = 25;
pub const STEP: usize = WINDOW - 2 * CONTEXT;
/// Points averaged per cell side when a decoded frame is reduced to 48x27.
pub const SHOT_TAPS: usize = 4;

/// One window, ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct ShotWindow {
    /// Media time of each of the 100 frames, milliseconds.
    pub pts_ms: Vec<i64>,
    /// Their pixels, one frame after another.
    pub rgb: Vec<u8>,
    /// The frames the window is read for: `read_from..read_to`.
    pub read_from: usize,
    pub read_to: usize,
}

/// Collects a stream's decoded frames and hands out a window every 50 frames, once the 25
/// frames after the ones it is read for have arrived. At the start of a stream the first frame
/// stands in for the missing context. Holds at most 100 frames (about 390 KB).
#[derive(Debug, Default)]
pub struct ShotWindower {
    frames: VecDeque<(i64, Vec<u8>)>,
    seen: usize,
}

impl ShotWindower {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, pts_ms: i64, rgb: Vec<u8>) -> Option<ShotWindow> {
        self.frames.push_back((pts_ms, rgb));
        if self.frames.len() > WINDOW {
            self.frames.pop_front();
        }
        self.seen += 1;
        // The window read for frames 50k..50k+50 is due once frame 50k+75 has arrived.
        if self.seen < STEP + CONTEXT || !(self.seen - STEP - CONTEXT).is_multiple_of(STEP) {
            return None;
        }
        let pad = WINDOW - self.frames.len();
        let first = self.frames.front().expect("a frame was just pushed");
        let frames = std::iter::repeat_n(first, pad).chain(self.frames.iter());
        let (mut pts, mut rgb) = (Vec::with_capacity(WINDOW), Vec::with_capacity(WINDOW * first.1.len()));
        for (p, px) in frames {
            pts.push(*p);
            rgb.extend_from_slice(px);
        }
        Some(ShotWindow { pts_ms: pts, rgb, read_from: CONTEXT, read_to: CONTEXT + STEP })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_is_read_once_with_context() {
        let mut w = ShotWindower::new();
        let mut read = Vec::new();
        for i in 0..300i64 {
            if let Some(win) = w.push(i * 40, vec![i as u8; 3]) {
                assert_eq!(win.pts_ms.len(), WINDOW);
                assert_eq!(win.rgb.len(), WINDOW * 3);
                // The newest frame is the last; the read frames have 25 of context after them.
                assert_eq!(*win.pts_ms.last().unwrap(), i * 40);
                assert_eq!(win.pts_ms[win.read_to - 1], (i - 25) * 40);
                read.extend_from_slice(&win.pts_ms[win.read_from..win.read_to]);
            }
        }
        // Frames 0..250 are read, in order, once each (the last 50 await their context).
        assert_eq!(read, (0..250).map(|i| i * 40).collect::<Vec<i64>>());
    }

    #[test]
    fn the_first_window_is_padded_with_the_first_frame() {
        let mut w = ShotWindower::new();
        let win = (0..75).find_map(|i| w.push(i, vec![i as u8; 3])).unwrap();
        assert_eq!(&win.pts_ms[..26], &[0; 26]);
        assert_eq!(win.pts_ms[26], 1);
        assert_eq!(&win.rgb[..3], &[0, 0, 0]);
    }
}
