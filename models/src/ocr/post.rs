//! The reader's pure steps: resizing and normalising pixels, finding text boxes in the
//! detector's map and joining the words of a line, decoding the recogniser's CTC output.

use super::{OcrParams, REC_HEIGHT, REC_MAX_WIDTH};

/// [`Ocr::ctc_decode`] over a character set (blank first, space last).
pub fn ctc_decode(charset: &[String], probs: &[f32], classes: usize) -> (String, f32) {
    let space = charset.len() - 1;
    let mut text = String::new();
    let (mut sum, mut n) = (0f32, 0usize);
    let mut prev = usize::MAX;
    let mut gap_space = 0f32;
    for step in probs.chunks_exact(classes) {
        let (best, p) = step
            .iter()
            .copied()
            .enumerate()
            .fold((0, f32::MIN), |m, (i, p)| if p > m.1 { (i, p) } else { m });
        if best == 0 {
            gap_space = gap_space.max(step.get(space).copied().unwrap_or(0.0));
        } else if best != prev {
            let last_is_char = text.chars().last().is_some_and(|c| c != ' ');
            if best != space && last_is_char && gap_space >= SPACE_MIN_PROB {
                text.push(' ');
            }
            text.push_str(&charset[best]);
            sum += p;
            n += 1;
            gap_space = 0.0;
        }
        prev = best;
    }
    (text, if n == 0 { 0.0 } else { sum / n as f32 })
}

/// Space probability at a blank step between two characters from which a space is kept.
pub const SPACE_MIN_PROB: f32 = 0.2;

/// Joins boxes that are words of one line: boxes that overlap vertically by at least 60 % of the
/// lower one, whose heights differ by at most 1.7×, and whose horizontal gap is at most the taller
/// one's height (a word space; columns of separate text sit further apart). The detector splits
/// captions with wide word gaps (monospaced or large fonts) into words, and a line read as
/// "Interviewat 7" + "pm" is not the caption.
pub fn join_lines(mut boxes: Vec<(f32, f32, f32, f32)>) -> Vec<(f32, f32, f32, f32)> {
    boxes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<(f32, f32, f32, f32)> = Vec::with_capacity(boxes.len());
    for b in boxes {
        let joins = |a: &(f32, f32, f32, f32)| {
            let (ha, hb) = (a.3 - a.1, b.3 - b.1);
            let overlap = a.3.min(b.3) - a.1.max(b.1);
            let gap = b.0 - a.2;
            overlap >= 0.6 * ha.min(hb) && ha.max(hb) <= 1.7 * ha.min(hb) && gap <= ha.max(hb)
        };
        match out.iter_mut().rev().find(|a| joins(a)) {
            Some(a) => *a = (a.0.min(b.0), a.1.min(b.1), a.2.max(b.2), a.3.max(b.3)),
            None => out.push(b),
        }
    }
    out
}

/// Detector input size: shorter side scaled to `short`, both sides rounded to multiples of 32.
pub fn det_size(width: usize, height: usize, short: usize) -> (usize, usize) {
    let ratio = short as f32 / width.min(height) as f32;
    let round32 = |v: f32| (((v / 32.0).round() as usize) * 32).max(32);
    (round32(width as f32 * ratio), round32(height as f32 * ratio))
}

/// Recogniser input width of a crop: its aspect ratio at height 48, capped.
pub(super) fn rec_width(w: usize, h: usize) -> usize {
    ((REC_HEIGHT as f32 * w as f32 / h as f32).ceil() as usize).clamp(REC_HEIGHT / 2, REC_MAX_WIDTH)
}

/// Bilinear resize of packed RGB with pixel centres aligned (OpenCV's INTER_LINEAR).
pub fn resize_bilinear(src: &[u8], w: usize, h: usize, nw: usize, nh: usize) -> Vec<u8> {
    let mut out = vec![0u8; nw * nh * 3];
    let (fx, fy) = (w as f32 / nw as f32, h as f32 / nh as f32);
    let taps = |i: usize, f: f32, n: usize| {
        let s = ((i as f32 + 0.5) * f - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(n - 1);
        (i0, (i0 + 1).min(n - 1), s - i0 as f32)
    };
    let xs: Vec<(usize, usize, f32)> = (0..nw).map(|x| taps(x, fx, w)).collect();
    for y in 0..nh {
        let (y0, y1, wy) = taps(y, fy, h);
        for (x, &(x0, x1, wx)) in xs.iter().enumerate() {
            for c in 0..3 {
                let p = |yy: usize, xx: usize| src[(yy * w + xx) * 3 + c] as f32;
                let top = p(y0, x0) * (1.0 - wx) + p(y0, x1) * wx;
                let bottom = p(y1, x0) * (1.0 - wx) + p(y1, x1) * wx;
                out[(y * nw + x) * 3 + c] = (top * (1.0 - wy) + bottom * wy).round() as u8;
            }
        }
    }
    out
}

/// Packed RGB to the detector's input: BGR planes scaled to -1..1.
pub fn normalize_chw(rgb: &[u8], w: usize, h: usize) -> Vec<f32> {
    let plane = w * h;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = p[2 - c] as f32 / 127.5 - 1.0;
        }
    }
    out
}

/// Text regions in a probability map: connected components of the thresholded (and 2×2-dilated)
/// map, scored by their mean probability, grown by the unclip distance. Boxes are in map pixels.
pub fn text_boxes(prob: &[f32], w: usize, h: usize, p: &OcrParams) -> Vec<(f32, f32, f32, f32)> {
    let mut mask: Vec<bool> = prob.iter().map(|&v| v > p.det_threshold).collect();
    // 2×2 dilation, as DB's post-processing does, joins characters split by one pixel.
    for y in (0..h).rev() {
        for x in (0..w).rev() {
            if !mask[y * w + x] {
                let left = x > 0 && prob[y * w + x - 1] > p.det_threshold;
                let up = y > 0 && prob[(y - 1) * w + x] > p.det_threshold;
                let diag = x > 0 && y > 0 && prob[(y - 1) * w + x - 1] > p.det_threshold;
                mask[y * w + x] = left || up || diag;
            }
        }
    }
    let mut seen = vec![false; w * h];
    let mut boxes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            for (dx, dy) in [(-1i64, 0i64), (1, 0), (0, -1), (0, 1), (-1, -1), (1, -1), (-1, 1), (1, 1)] {
                let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                if nx >= 0 && ny >= 0 && (nx as usize) < w && (ny as usize) < h {
                    let j = ny as usize * w + nx as usize;
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        let (bw, bh) = ((x1 - x0 + 1) as f32, (y1 - y0 + 1) as f32);
        if bw.min(bh) < 3.0 {
            continue;
        }
        let mut sum = 0f32;
        for y in y0..=y1 {
            sum += prob[y * w + x0..=y * w + x1].iter().sum::<f32>();
        }
        if sum / (bw * bh) < p.box_threshold {
            continue;
        }
        let d = bw * bh * p.unclip_ratio / (2.0 * (bw + bh));
        boxes.push((
            (x0 as f32 - d).max(0.0),
            (y0 as f32 - d).max(0.0),
            (x1 as f32 + 1.0 + d).min(w as f32),
            (y1 as f32 + 1.0 + d).min(h as f32),
        ));
    }
    boxes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_are_found_scored_and_grown() {
        let (w, h) = (64, 32);
        let mut prob = vec![0f32; w * h];
        // A confident 20x6 region and a faint one.
        for y in 10..16 {
            for x in 5..25 {
                prob[y * w + x] = 0.9;
            }
            for x in 40..50 {
                prob[y * w + x] = 0.35;
            }
        }
        let boxes = text_boxes(&prob, w, h, &OcrParams::default());
        assert_eq!(boxes.len(), 1, "{boxes:?}");
        let (x0, y0, x1, y1) = boxes[0];
        assert!(x0 < 5.0 && y0 < 10.0 && x1 > 26.0 && y1 > 17.0, "{:?}", boxes[0]);
    }

    #[test]
    fn a_space_the_blank_outvoted_is_kept() {
        let charset: Vec<String> = ["", "A", "T", "N", " "].iter().map(|c| c.to_string()).collect();
        // Steps: A, blank (space 0.3), T, blank (space 0.05), blank, N, N, blank, A.
        let steps: [[f32; 5]; 9] = [
            [0.0, 1.0, 0.0, 0.0, 0.0],
            [0.6, 0.0, 0.0, 0.1, 0.3],
            [0.0, 0.0, 1.0, 0.0, 0.0],
            [0.9, 0.0, 0.0, 0.05, 0.05],
            [1.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0, 0.0],
            [1.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0, 0.0],
        ];
        let flat: Vec<f32> = steps.iter().flatten().copied().collect();
        let (text, confidence) = ctc_decode(&charset, &flat, 5);
        assert_eq!(text, "A TNA");
        assert!((confidence - 1.0).abs() < 1e-6);
    }

    #[test]
    fn words_of_one_line_are_joined() {
        // "Interview at 7" and "pm" on one line, a second line below, a column far to the right.
        let boxes = vec![
            (10.0, 40.0, 150.0, 66.0),
            (158.0, 44.0, 185.0, 64.0),
            (20.0, 80.0, 120.0, 106.0),
            (300.0, 40.0, 340.0, 66.0),
        ];
        let mut joined = join_lines(boxes);
        joined.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.total_cmp(&b.0)));
        assert_eq!(
            joined,
            vec![(10.0, 40.0, 185.0, 66.0), (300.0, 40.0, 340.0, 66.0), (20.0, 80.0, 120.0, 106.0)]
        );
    }

    #[test]
    fn resize_keeps_flat_colour_and_sizes() {
        let src: Vec<u8> = (0..10 * 6).flat_map(|_| [200u8, 100, 50]).collect();
        let out = resize_bilinear(&src, 10, 6, 25, 15);
        assert_eq!(out.len(), 25 * 15 * 3);
        assert!(out.chunks_exact(3).all(|p| p == [200, 100, 50]));
        assert_eq!(det_size(384, 216, 480), (864, 480));
    }
}
