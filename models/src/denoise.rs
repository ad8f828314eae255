//! Steady background noise taken out of a segment of 16 kHz audio before voice activity detection
//! and speech-to-text: spectral subtraction against the segment's own noise floor.
//!
//! The segment is cut into 32 ms frames (50 % overlap, square-root Hann window on the way in and
//! out, so that untouched frames add back to the input exactly). Per frequency bin the noise is the
//! mean power of the frames outside the speech, when the caller says where the speech is
//! ([`Denoiser::denoise_around`], with VAD's regions) and there is a tenth of a second of them;
//! else a low percentile of the bin's power over the segment's frames: words leave every bin quiet
//! for part of the time, so the floor is what remains there (traffic, hum, hiss, fans), not the
//! voice. Each frame's bins keep the share of their power above an over-subtracted floor, never
//! less than a small fixed share, which keeps the leftover noise from turning into chirps. A
//! segment whose floor is far below its level (clean speech, digital silence) is returned as it is.

/// Samples per frame (32 ms at 16 kHz) and between frames.
const FRAME: usize = 512;
const HOP: usize = FRAME / 2;
const BINS: usize = FRAME / 2 + 1;

/// How a [`Denoiser`] subtracts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DenoiseParams {
    /// Percentile of a bin's power over the segment's frames taken as its noise floor, 0..1.
    pub floor_percentile: f32,
    /// The floor is subtracted this many times over (more removes more noise and more voice).
    pub over_subtraction: f32,
    /// Least share of a bin's power kept (the gain floor, as power).
    pub min_gain: f32,
    /// Segments whose noise floor is more than this many dB below their mean power are left alone.
    pub skip_below_db: f32,
    /// Least audio outside the speech, milliseconds, from which the noise is measured there.
    pub min_quiet_ms: u32,
}

impl Default for DenoiseParams {
    fn default() -> Self {
        Self {
            floor_percentile: 0.2,
            over_subtraction: 3.5,
            min_gain: 0.05,
            skip_below_db: 30.0,
            min_quiet_ms: 100,
        }
    }
}

/// Spectral subtraction for segments of 16 kHz audio (see the module documentation).
pub struct Denoiser {
    params: DenoiseParams,
    window: Vec<f32>,
    fft: Fft,
}

impl Denoiser {
    pub fn new(params: DenoiseParams) -> Self {
        // Periodic Hann, square-rooted: analysis × synthesis is Hann, whose 50 % overlaps sum to 1.
        let window = (0..FRAME)
            .map(|i| (0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / FRAME as f32).cos()).sqrt())
            .collect();
        Self { params, window, fft: Fft::new(FRAME) }
    }

    /// `audio` with its steady background noise reduced; the same length.
    pub fn denoise(&self, audio: &[f32]) -> Vec<f32> {
        self.denoise_inner(audio, None)
    }

    /// [`Denoiser::denoise`] with the noise measured where there is no speech: the mean power of
    /// the frames outside `speech` (sample ranges, as VAD finds them), when there are at least
    /// [`DenoiseParams::min_quiet_ms`] of them (a tenth of a second); else the percentile floor.
    pub fn denoise_around(&self, audio: &[f32], speech: &[(usize, usize)]) -> Vec<f32> {
        self.denoise_inner(audio, Some(speech))
    }

    fn denoise_inner(&self, audio: &[f32], speech: Option<&[(usize, usize)]>) -> Vec<f32> {
        if audio.len() < FRAME {
            return audio.to_vec();
        }
        // Frames start at -HOP so that the first and last samples are covered by two frames too.
        let frames = audio.len().div_ceil(HOP) + 1;
        let at = |i: isize| if i >= 0 && (i as usize) < audio.len() { audio[i as usize] } else { 0.0 };
        let mut spectra: Vec<Vec<(f32, f32)>> = Vec::with_capacity(frames);
        for f in 0..frames {
            let start = f as isize * HOP as isize - HOP as isize;
            let mut buf: Vec<(f32, f32)> =
                (0..FRAME).map(|i| (at(start + i as isize) * self.window[i], 0.0)).collect();
            self.fft.run(&mut buf, false);
            buf.truncate(BINS);
            spectra.push(buf);
        }
        let power = |c: (f32, f32)| c.0 * c.0 + c.1 * c.1;
        let powers: Vec<Vec<f32>> = spectra.iter().map(|s| s.iter().map(|&c| power(c)).collect()).collect();
        // Frame f covers samples f·HOP − HOP .. f·HOP + HOP.
        let quiet: Vec<usize> = match speech {
            Some(speech) => (0..frames)
                .filter(|&f| {
                    let (a, b) = ((f * HOP).saturating_sub(HOP), f * HOP + HOP);
                    speech.iter().all(|&(s, e)| b <= s || a >= e)
                })
                .collect(),
            None => Vec::new(),
        };
        let noise = if !quiet.is_empty() && quiet.len() * HOP >= self.params.min_quiet_ms as usize * 16 {
            let mut mean = vec![0f32; BINS];
            for &f in &quiet {
                mean.iter_mut().zip(&powers[f]).for_each(|(m, p)| *m += p / quiet.len() as f32);
            }
            mean
        } else {
            self.noise_floor(&powers)
        };
        let mean_power: f64 = spectra.iter().flat_map(|s| s.iter().map(|&c| power(c) as f64)).sum::<f64>()
            / (frames * BINS) as f64;
        let noise_power: f64 = noise.iter().map(|&n| n as f64).sum::<f64>() / BINS as f64;
        if mean_power <= 0.0
            || noise_power <= mean_power * 10f64.powf(-self.params.skip_below_db as f64 / 10.0)
        {
            return audio.to_vec();
        }
        let (alpha, floor) = (self.params.over_subtraction, self.params.min_gain.clamp(0.0, 1.0));
        let mut out = vec![0f32; (frames + 1) * HOP];
        let mut full = vec![(0f32, 0f32); FRAME];
        for (f, spectrum) in spectra.iter().enumerate() {
            for (k, &c) in spectrum.iter().enumerate() {
                let p = power(c);
                let gain = if p > 0.0 { (1.0 - alpha * noise[k] / p).max(floor).sqrt() } else { 0.0 };
                full[k] = (c.0 * gain, c.1 * gain);
                if k > 0 && k < FRAME / 2 {
                    full[FRAME - k] = (c.0 * gain, -c.1 * gain); // a real signal's mirror image
                }
            }
            self.fft.run(&mut full, true);
            for (i, v) in full.iter().enumerate() {
                out[f * HOP + i] += v.0 * self.window[i];
            }
        }
        out[HOP..HOP + audio.len()].to_vec()
    }
}

impl Denoiser {
    /// Per bin, the noise floor of a segment's power spectra (`power[frame][bin]`): a low
    /// percentile over the frames of the power averaged over its neighbours (±4 frames, ±1 bin).
    /// One frame's noise power scatters widely around its mean (exponentially); the average
    /// narrows that, so the percentile of noise alone sits near the noise's mean.
    fn noise_floor(&self, power: &[Vec<f32>]) -> Vec<f32> {
        const T: usize = 4;
        let frames = power.len();
        let rank = ((frames - 1) as f32 * self.params.floor_percentile.clamp(0.0, 1.0)).round() as usize;
        let mut column = vec![0f32; frames];
        (0..BINS)
            .map(|k| {
                let bins = k.saturating_sub(1)..(k + 2).min(BINS);
                for (f, c) in column.iter_mut().enumerate() {
                    let around = f.saturating_sub(T)..(f + T + 1).min(frames);
                    let n = (around.len() * bins.len()) as f32;
                    *c = power[around].iter().map(|p| p[bins.clone()].iter().sum::<f32>()).sum::<f32>() / n;
                }
                *column.select_nth_unstable_by(rank, f32::total_cmp).1
            })
            .collect()
    }
}

/// An in-place radix-2 complex FFT of one power-of-two size; the inverse is scaled by 1/n.
struct Fft {
    n: usize,
    twiddles: Vec<(f32, f32)>,
}

impl Fft {
    fn new(n: usize) -> Self {
        assert!(n.is_power_of_two(), "radix-2 FFT");
        let twiddles = (0..n / 2)
            .map(|k| {
                let a = -std::f64::consts::TAU * k as f64 / n as f64;
                (a.cos() as f32, a.sin() as f32)
            })
            .collect();
        Self { n, twiddles }
    }

    fn run(&self, x: &mut [(f32, f32)], inverse: bool) {
        let n = self.n;
        debug_assert_eq!(x.len(), n);
        let bits = n.trailing_zeros();
        for i in 0..n {
            let j = i.reverse_bits() >> (usize::BITS - bits);
            if j > i {
                x.swap(i, j);
            }
        }
        let mut len = 2;
        while len <= n {
            let step = n / len;
            for start in (0..n).step_by(len) {
                for k in 0..len / 2 {
                    let (wr, wi) = self.twiddles[k * step];
                    let wi = if inverse { -wi } else { wi };
                    let (ar, ai) = x[start + k];
                    let (br, bi) = x[start + k + len / 2];
                    let (tr, ti) = (br * wr - bi * wi, br * wi + bi * wr);
                    x[start + k] = (ar + tr, ai + ti);
                    x[start + k + len / 2] = (ar - tr, ai - ti);
                }
            }
            len *= 2;
        }
        if inverse {
            let s = 1.0 / n as f32;
            x.iter_mut().for_each(|v| *v = (v.0 * s, v.1 * s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, hz: f32, amp: f32) -> Vec<f32> {
        (0..n).map(|i| amp * (std::f32::consts::TAU * hz * i as f32 / 16_000.0).sin()).collect()
    }

    /// A deterministic hiss: a xorshift generator, uniform in -1..1.
    fn hiss(n: usize, amp: f32) -> Vec<f32> {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                amp * ((s >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            })
            .collect()
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
    }

    #[test]
    fn the_transform_and_its_inverse_give_the_input_back() {
        let fft = Fft::new(16);
        let input: Vec<(f32, f32)> = (0..16).map(|i| ((i as f32 * 0.7).sin(), 0.0)).collect();
        let mut x = input.clone();
        fft.run(&mut x, false);
        // A known bin: the sum of the input is bin 0.
        assert!((x[0].0 - input.iter().map(|v| v.0).sum::<f32>()).abs() < 1e-4);
        fft.run(&mut x, true);
        for (a, b) in x.iter().zip(&input) {
            assert!((a.0 - b.0).abs() < 1e-5 && a.1.abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn clean_audio_is_left_alone() {
        // A tone that starts and stops, digital silence around it: nothing to subtract.
        let mut x = vec![0f32; 16_000];
        x[4000..12_000].copy_from_slice(&tone(8000, 440.0, 0.3));
        assert_eq!(Denoiser::new(DenoiseParams::default()).denoise(&x), x);
        let short = tone(300, 440.0, 0.3);
        assert_eq!(Denoiser::new(DenoiseParams::default()).denoise(&short), short);
    }

    #[test]
    fn steady_hiss_is_reduced_and_a_tone_over_it_is_kept() {
        let n = 32_000;
        let noise = hiss(n, 0.05);
        // The tone plays for the middle second: before and after, only the hiss.
        let mut signal = vec![0f32; n];
        signal[8000..24_000].copy_from_slice(&tone(16_000, 1000.0, 0.3));
        let noisy: Vec<f32> = signal.iter().zip(&noise).map(|(s, n)| s + n).collect();
        let out = Denoiser::new(DenoiseParams::default()).denoise(&noisy);
        assert_eq!(out.len(), n);
        let (before, after) = (rms(&noisy[..6000]), rms(&out[..6000]));
        assert!(after < before * 0.6, "the hiss alone: {before} → {after}");
        let kept = rms(&out[10_000..22_000]) / rms(&signal[10_000..22_000]);
        assert!((0.9..1.1).contains(&kept), "the tone keeps its level: {kept}");
        // What is left is close to the tone.
        let err: Vec<f32> =
            out[10_000..22_000].iter().zip(&signal[10_000..22_000]).map(|(a, b)| a - b).collect();
        let err_noisy: Vec<f32> =
            noisy[10_000..22_000].iter().zip(&signal[10_000..22_000]).map(|(a, b)| a - b).collect();
        assert!(rms(&err) < rms(&err_noisy) * 0.6, "{} vs {}", rms(&err), rms(&err_noisy));

        // Told where the tone is, the noise is measured around it: the same, or better.
        let around = Denoiser::new(DenoiseParams::default()).denoise_around(&noisy, &[(8000, 24_000)]);
        let after_around = rms(&around[..6000]);
        assert!(after_around <= after * 1.05, "around the tone: {before} → {after_around} (floor: {after})");
        let kept = rms(&around[10_000..22_000]) / rms(&signal[10_000..22_000]);
        assert!((0.9..1.1).contains(&kept), "the tone keeps its level: {kept}");
        // Not a tenth of a second outside what VAD heard: the percentile floor, as without.
        let everywhere = Denoiser::new(DenoiseParams::default()).denoise_around(&noisy, &[(1000, 31_000)]);
        assert_eq!(everywhere, out);
    }
}
