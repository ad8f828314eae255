//! Frame signatures, computed straight from the sampled RGB frame without a model:
//! - a 64-bit difference hash (dHash) over a 9x8 luma grid, compared by Hamming distance, which
//!   tells a frame that barely changed from the previous one (the skip cache), and
//! - a 432-d colour layout vector (16x9 cells x RGB, centred on mid-grey, unit length), whose cosine
//!   similarity finds near-identical frames across streams (duplicate detection, similar frames).

pub const SIGNATURE_DIM: usize = 16 * 9 * 3;

#[derive(Debug, Clone, PartialEq)]
pub struct FrameSignature {
    pub phash: u64,
    pub vector: Vec<f32>,
}

/// Mean of each cell of a `gw` x `gh` grid over an RGB image, per channel.
fn cell_means(rgb: &[u8], width: usize, height: usize, gw: usize, gh: usize) -> Vec<[f32; 3]> {
    let mut out = vec![[0f32; 3]; gw * gh];
    for (cy, row) in out.chunks_mut(gw).enumerate() {
        let (y0, y1) = (cy * height / gh, ((cy + 1) * height / gh).max(cy * height / gh + 1));
        for (cx, cell) in row.iter_mut().enumerate() {
            let (x0, x1) = (cx * width / gw, ((cx + 1) * width / gw).max(cx * width / gw + 1));
            let mut sum = [0u64; 3];
            for y in y0..y1.min(height) {
                let line = &rgb[(y * width + x0) * 3..(y * width + x1.min(width)) * 3];
                for px in line.chunks_exact(3) {
                    sum[0] += px[0] as u64;
                    sum[1] += px[1] as u64;
                    sum[2] += px[2] as u64;
                }
            }
            let n = ((y1.min(height) - y0) * (x1.min(width) - x0)).max(1) as f32;
            *cell = [sum[0] as f32 / n, sum[1] as f32 / n, sum[2] as f32 / n];
        }
    }
    out
}

impl FrameSignature {
    /// Signature of a packed RGB frame. Returns `None` when the buffer is not `width*height*3`.
    pub fn of_rgb(rgb: &[u8], width: usize, height: usize) -> Option<Self> {
        if width < 16 || height < 9 || rgb.len() != width * height * 3 {
            return None;
        }
        let luma = |c: [f32; 3]| 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
        let small = cell_means(rgb, width, height, 9, 8);
        let mut phash = 0u64;
        for y in 0..8 {
            for x in 0..8 {
                let bit = luma(small[y * 9 + x]) > luma(small[y * 9 + x + 1]);
                phash = (phash << 1) | bit as u64;
            }
        }
        let mut vector: Vec<f32> = cell_means(rgb, width, height, 16, 9)
            .iter()
            .flat_map(|c| c.map(|v| (v - 128.0) / 128.0))
            .collect();
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm < 1e-6 {
            vector[0] = 1.0; // a flat mid-grey frame: any fixed direction, never a zero vector
        } else {
            vector.iter_mut().for_each(|x| *x /= norm);
        }
        Some(Self { phash, vector })
    }
}

/// A small picture of the frame (box-filtered to `tw` x `th`) as a 24-bit BMP file, which every
/// browser shows without an image codec on our side.
pub fn thumbnail_bmp(rgb: &[u8], width: usize, height: usize, tw: usize, th: usize) -> Option<Vec<u8>> {
    if rgb.len() != width * height * 3 || tw == 0 || th == 0 || tw > width || th > height {
        return None;
    }
    let cells = cell_means(rgb, width, height, tw, th);
    let row = (tw * 3).div_ceil(4) * 4;
    let size = 54 + row * th;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(b"BM");
    out.extend_from_slice(&(size as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&54u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&(tw as i32).to_le_bytes());
    out.extend_from_slice(&(th as i32).to_le_bytes()); // positive: rows bottom-up
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&[0; 24]); // no compression, sizes and palette left to defaults
    for y in (0..th).rev() {
        let start = out.len();
        for c in &cells[y * tw..(y + 1) * tw] {
            out.extend_from_slice(&[c[2].round() as u8, c[1].round() as u8, c[0].round() as u8]);
        }
        out.resize(start + row, 0);
    }
    Some(out)
}

/// Number of differing bits between two perceptual hashes.
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: usize, h: usize, f: impl Fn(usize, usize) -> [u8; 3] + Copy) -> Vec<u8> {
        (0..h).flat_map(|y| (0..w).flat_map(move |x| f(x, y))).collect()
    }

    #[test]
    fn near_identical_frames_match_and_different_ones_do_not() {
        let (w, h) = (64, 36);
        let a = frame(w, h, |x, y| [(x * 4) as u8, (y * 7) as u8, 40]);
        // The same picture with a little noise, as a second encode would give.
        let a2 = frame(w, h, |x, y| [(x * 4) as u8 ^ ((x + y) % 3) as u8, (y * 7) as u8, 41]);
        let b = frame(w, h, |x, y| [200 - (y * 5) as u8, 30, 255 - (x * 3) as u8]);
        let (sa, sa2, sb) = (
            FrameSignature::of_rgb(&a, w, h).unwrap(),
            FrameSignature::of_rgb(&a2, w, h).unwrap(),
            FrameSignature::of_rgb(&b, w, h).unwrap(),
        );
        assert_eq!(sa.vector.len(), SIGNATURE_DIM);
        assert!(cosine(&sa.vector, &sa2.vector) > 0.99);
        assert!(cosine(&sa.vector, &sb.vector) < 0.5);
        assert!(hamming(sa.phash, sa2.phash) <= 2);
        assert!(hamming(sa.phash, sb.phash) > 10);
        let unit: f32 = sb.vector.iter().map(|x| x * x).sum();
        assert!((unit - 1.0).abs() < 1e-4);
    }

    #[test]
    fn thumbnails_are_bmp_files_of_the_right_size() {
        let f = frame(64, 36, |x, _| [if x < 32 { 255 } else { 0 }, 0, 0]);
        let bmp = thumbnail_bmp(&f, 64, 36, 16, 9).unwrap();
        assert_eq!(&bmp[..2], b"BM");
        assert_eq!(bmp.len(), 54 + 48 * 9);
        assert_eq!(u32::from_le_bytes(bmp[2..6].try_into().unwrap()) as usize, bmp.len());
        // First pixel of the bottom row: red, stored as BGR.
        assert_eq!(&bmp[54..57], &[0, 0, 255]);
        assert!(thumbnail_bmp(&f, 64, 36, 100, 9).is_none());
    }

    #[test]
    fn bad_buffers_are_refused_and_grey_is_not_zero() {
        assert!(FrameSignature::of_rgb(&[0; 10], 64, 36).is_none());
        let grey = vec![128u8; 64 * 36 * 3];
        let s = FrameSignature::of_rgb(&grey, 64, 36).unwrap();
        assert!(s.vector.iter().any(|x| *x != 0.0));
    }
}
