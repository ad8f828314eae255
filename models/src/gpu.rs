//! Frame preprocessing on the GPU. cudarc loads the CUDA driver and NVRTC at run time, so nothing
//! CUDA is needed to build or to run without a GPU; where they exist, one kernel (compiled once
//! by NVRTC) turns a batch of packed RGB frames of any sizes into a model's input in one launch:
//! bilinear resize with the CPU's sampling and rounding ([`crate::ocr::resize_bilinear`]), channel
//! order, scale and offset, planar NCHW f32. [`preprocess_cpu`] is the same computation on the
//! CPU: the fallback, and the reference the GPU check compares the kernel with.

use crate::runtime::GpuUnavailable;
use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
use std::sync::Arc;

/// A model's input layout: size, channel order and `value * scale + offset` per channel
/// (in the model's channel order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputLayout {
    pub width: usize,
    pub height: usize,
    pub scale: [f32; 3],
    pub offset: [f32; 3],
    /// Channels in BGR order (PP-OCR) rather than RGB.
    pub bgr: bool,
}

const KERNEL: &str = r#"
extern "C" __global__ void preprocess(
    const unsigned char* src, const unsigned long long* offsets, const int* widths, const int* heights,
    float* dst, int n, int ow, int oh, float s0, float s1, float s2, float o0, float o1, float o2, int bgr)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long plane = (long long)ow * oh;
    if (i >= (long long)n * plane) return;
    int img = (int)(i / plane);
    int rem = (int)(i % plane);
    int x = rem % ow, y = rem / ow;
    int w = widths[img], h = heights[img];
    const unsigned char* p = src + offsets[img];
    float fx = (float)w / (float)ow, fy = (float)h / (float)oh;
    float sx = fmaxf(((float)x + 0.5f) * fx - 0.5f, 0.0f);
    float sy = fmaxf(((float)y + 0.5f) * fy - 0.5f, 0.0f);
    int x0 = min((int)floorf(sx), w - 1), y0 = min((int)floorf(sy), h - 1);
    int x1 = min(x0 + 1, w - 1), y1 = min(y0 + 1, h - 1);
    float wx = sx - (float)x0, wy = sy - (float)y0;
    float scale[3] = {s0, s1, s2};
    float offset[3] = {o0, o1, o2};
    for (int c = 0; c < 3; c++) {
        float top = (float)p[(y0 * w + x0) * 3 + c] * (1.0f - wx) + (float)p[(y0 * w + x1) * 3 + c] * wx;
        float bottom = (float)p[(y1 * w + x0) * 3 + c] * (1.0f - wx) + (float)p[(y1 * w + x1) * 3 + c] * wx;
        float v = roundf(top * (1.0f - wy) + bottom * wy);
        int k = bgr ? 2 - c : c;
        dst[((long long)img * 3 + k) * plane + rem] = v * scale[k] + offset[k];
    }
}
"#;

/// The same computation on the CPU.
pub fn preprocess_cpu(images: &[(&[u8], usize, usize)], layout: &InputLayout) -> Vec<f32> {
    let plane = layout.width * layout.height;
    let mut out = vec![0f32; images.len() * 3 * plane];
    for (i, &(rgb, w, h)) in images.iter().enumerate() {
        let scaled = crate::ocr::resize_bilinear(rgb, w, h, layout.width, layout.height);
        let dst = &mut out[i * 3 * plane..(i + 1) * 3 * plane];
        for (j, px) in scaled.chunks_exact(3).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                let k = if layout.bgr { 2 - c } else { c };
                dst[k * plane + j] = v as f32 * layout.scale[k] + layout.offset[k];
            }
        }
    }
    out
}

/// The kernel, loaded on one GPU.
pub struct GpuPreprocessor {
    stream: Arc<CudaStream>,
    function: CudaFunction,
    device: String,
}

impl GpuPreprocessor {
    /// Opens GPU `ordinal` and compiles the kernel; an error says why not (no driver, no NVRTC,
    /// no such device, a compile failure), and the caller preprocesses on the CPU instead.
    pub fn new(ordinal: usize) -> Result<Self, GpuUnavailable> {
        // SAFETY: these only try to dlopen the libraries and report whether they were found.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err("no CUDA driver library (libcuda.so) on this machine".into());
        }
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err("no NVRTC library (libnvrtc.so) on this machine".into());
        }
        // cudarc panics on some missing symbols; a panic here means no usable CUDA.
        let ctx = std::panic::catch_unwind(|| CudaContext::new(ordinal))
            .map_err(|_| "the CUDA driver could not be initialised".to_string())?
            .map_err(|e| format!("GPU {ordinal}: {e}"))?;
        let device = ctx.name().unwrap_or_else(|_| format!("GPU {ordinal}"));
        let options = cudarc::nvrtc::CompileOptions {
            fmad: Some(false), // no fused multiply-add: the same arithmetic as the CPU's
            ..Default::default()
        };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(KERNEL, options).map_err(|e| format!("NVRTC: {e}"))?;
        let module = ctx.load_module(ptx).map_err(|e| format!("loading the kernel: {e}"))?;
        let function = module.load_function("preprocess").map_err(|e| format!("loading the kernel: {e}"))?;
        Ok(Self { stream: ctx.default_stream(), function, device })
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    /// The batch in the model's input layout, [N, 3, height, width].
    pub fn preprocess(
        &self,
        images: &[(&[u8], usize, usize)],
        layout: &InputLayout,
    ) -> Result<Vec<f32>, GpuUnavailable> {
        let n = images.len();
        let plane = layout.width * layout.height;
        if n == 0 || plane == 0 {
            return Ok(Vec::new());
        }
        let (mut pixels, mut offsets, mut widths, mut heights) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for &(rgb, w, h) in images {
            if w == 0 || h == 0 || rgb.len() != w * h * 3 {
                return Err(format!("image {w}x{h} with {} bytes", rgb.len()).into());
            }
            offsets.push(pixels.len() as u64);
            widths.push(w as i32);
            heights.push(h as i32);
            pixels.extend_from_slice(rgb);
        }
        let gpu = |e: cudarc::driver::DriverError| GpuUnavailable(format!("GPU preprocessing: {e}"));
        let s = &self.stream;
        let (src, offs, ws, hs) = (
            s.clone_htod(&pixels).map_err(gpu)?,
            s.clone_htod(&offsets).map_err(gpu)?,
            s.clone_htod(&widths).map_err(gpu)?,
            s.clone_htod(&heights).map_err(gpu)?,
        );
        let mut dst = s.alloc_zeros::<f32>(n * 3 * plane).map_err(gpu)?;
        let (ni, ow, oh, bgr) = (n as i32, layout.width as i32, layout.height as i32, layout.bgr as i32);
        let [s0, s1, s2] = layout.scale;
        let [o0, o1, o2] = layout.offset;
        let mut launch = s.launch_builder(&self.function);
        launch.arg(&src).arg(&offs).arg(&ws).arg(&hs).arg(&mut dst).arg(&ni).arg(&ow).arg(&oh);
        launch.arg(&s0).arg(&s1).arg(&s2).arg(&o0).arg(&o1).arg(&o2).arg(&bgr);
        // SAFETY: the argument list matches the kernel's signature, and every index the kernel
        // reads or writes is bounded by the sizes passed beside the buffers.
        unsafe { launch.launch(LaunchConfig::for_num_elems((n * plane) as u32)) }.map_err(gpu)?;
        s.clone_dtoh(&dst).map_err(gpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_layout_orders_scales_and_resizes() {
        // A 2x1 image, red then blue, to 2x1 (no resize) and to 1x1.
        let img = [255u8, 0, 0, 0, 0, 255];
        let rgb = InputLayout { width: 2, height: 1, scale: [1.0; 3], offset: [0.0; 3], bgr: false };
        assert_eq!(preprocess_cpu(&[(&img, 2, 1)], &rgb), vec![255.0, 0.0, 0.0, 0.0, 0.0, 255.0]);
        let bgr = InputLayout { bgr: true, scale: [2.0, 1.0, 1.0], offset: [-1.0, 0.0, 0.0], ..rgb };
        assert_eq!(preprocess_cpu(&[(&img, 2, 1)], &bgr), vec![-1.0, 509.0, 0.0, 0.0, 255.0, 0.0]);
        let one = InputLayout { width: 1, ..rgb };
        assert_eq!(preprocess_cpu(&[(&img, 2, 1)], &one), vec![128.0, 0.0, 128.0]);
    }

    #[test]
    fn without_a_gpu_the_preprocessor_says_why() {
        // On a machine with a GPU this opens it instead; both are fine, a panic is not.
        match GpuPreprocessor::new(0) {
            Ok(g) => assert!(!g.device().is_empty()),
            Err(why) => assert!(!why.0.is_empty()),
        }
    }
}
