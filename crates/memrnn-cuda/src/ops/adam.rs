//! Launchers for `kernels/adam.cu`: Adam, bias-gradient column sums, the transpose of
//! W_hh, and the small elementwise kernels behind speed, Jacobians and NaN poisoning.
//! Every launcher checks the lengths it relies on before its unsafe launch.

use crate::device::{backend_err, drv, Kernels};
use cudarc::driver::{CudaSlice, CudaStream, CudaView, CudaViewMut, LaunchConfig, PushKernelArg};
use memrnn_core::Result;
use std::sync::Arc;

const THREADS: u32 = 256;

/// A grid-stride 1-D launch over `n` elements.
pub(crate) fn grid1d(n: usize, sms: u32) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, sms as usize * 16);
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn need(what: &str, got: usize, want: usize) -> Result<()> {
    if got < want {
        Err(backend_err(format!(
            "{what} holds {got} elements, the kernel needs {want}"
        )))
    } else {
        Ok(())
    }
}

fn i32_of(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| backend_err(format!("{what} = {v} exceeds a 32-bit size")))
}

/// Adam's scalars for the update numbered `step + 1`, computed exactly as
/// `memrnn_core::adam_update_host` does.
pub(crate) struct AdamScalars {
    pub beta1: f32,
    pub beta2: f32,
    pub step_size: f32,
    pub bc2_sqrt: f32,
    pub eps: f32,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn adam_update(
    k: &Kernels,
    stream: &Arc<CudaStream>,
    sms: u32,
    p: &mut CudaSlice<f32>,
    g: &CudaSlice<f32>,
    m: &mut CudaSlice<f32>,
    v: &mut CudaSlice<f32>,
    n: usize,
    s: &AdamScalars,
) -> Result<()> {
    for (what, len) in [
        ("params", p.len()),
        ("grad", g.len()),
        ("m", m.len()),
        ("v", v.len()),
    ] {
        need(what, len, n)?;
    }
    let n64 = n as i64;
    let mut b = stream.launch_builder(&k.adam_update);
    b.arg(p).arg(g).arg(m).arg(v).arg(&n64);
    b.arg(&s.beta1)
        .arg(&s.beta2)
        .arg(&s.step_size)
        .arg(&s.bc2_sqrt)
        .arg(&s.eps);
    // SAFETY: the four buffers hold at least n f32 each (checked above) and the kernel
    // touches indices < n only; the argument list matches adam_update_f32's signature.
    unsafe { b.launch(grid1d(n, sms)) }.map_err(drv("adam_update_f32"))?;
    Ok(())
}

/// `out[c] = Σ_r m[r, c]` for `m [rows, cols]`.
pub(crate) fn col_sum(
    k: &Kernels,
    stream: &Arc<CudaStream>,
    m: &CudaView<'_, f32>,
    rows: usize,
    cols: usize,
    out: &mut CudaViewMut<'_, f32>,
) -> Result<()> {
    need("col_sum input", m.len(), rows * cols)?;
    need("col_sum output", out.len(), cols)?;
    let (r64, c32) = (rows as i64, i32_of(cols, "columns")?);
    let cfg = LaunchConfig {
        grid_dim: (cols.div_ceil(32) as u32, 1, 1),
        block_dim: (32, 8, 1),
        shared_mem_bytes: 0,
    };
    let mut b = stream.launch_builder(&k.col_sum);
    b.arg(m).arg(out).arg(&r64).arg(&c32);
    // SAFETY: the input spans rows*cols and the output cols elements (checked above); the
    // kernel reads m[r*cols + c] and writes out[c] for c < cols, r < rows only.
    unsafe { b.launch(cfg) }.map_err(drv("col_sum_f32"))?;
    Ok(())
}

/// `out [cols, rows] = inp [rows, cols]ᵀ`.
pub(crate) fn transpose(
    k: &Kernels,
    stream: &Arc<CudaStream>,
    inp: &CudaView<'_, f32>,
    rows: usize,
    cols: usize,
    out: &mut CudaSlice<f32>,
) -> Result<()> {
    need("transpose input", inp.len(), rows * cols)?;
    need("transpose output", out.len(), rows * cols)?;
    let (r, c) = (i32_of(rows, "rows")?, i32_of(cols, "columns")?);
    let cfg = LaunchConfig {
        grid_dim: (cols.div_ceil(32) as u32, rows.div_ceil(32) as u32, 1),
        block_dim: (32, 8, 1),
        shared_mem_bytes: 0,
    };
    let mut b = stream.launch_builder(&k.transpose);
    b.arg(inp).arg(out).arg(&r).arg(&c);
    // SAFETY: both buffers hold rows*cols elements (checked above) and the kernel guards
    // every index with r < rows, c < cols.
    unsafe { b.launch(cfg) }.map_err(drv("transpose_f32"))?;
    Ok(())
}

/// Per row of `[n, s]`: `speed = Σ (f − x)²`, `twice_e = 2 (f − x)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn speed(
    k: &Kernels,
    stream: &Arc<CudaStream>,
    f: &CudaSlice<f32>,
    x: &CudaSlice<f32>,
    speed: &mut CudaSlice<f32>,
    twice_e: &mut CudaSlice<f32>,
    n: usize,
    s: usize,
) -> Result<()> {
    need("F(s)", f.len(), n * s)?;
    need("states", x.len(), n * s)?;
    need("speed", speed.len(), n)?;
    need("2(F(s) - s)", twice_e.len(), n * s)?;
    let (n32, s32) = (i32_of(n, "points")?, i32_of(s, "state size")?);
    let cfg = LaunchConfig {
        grid_dim: (n.div_ceil(8).max(1) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut b = stream.launch_builder(&k.speed);
    b.arg(f).arg(x).arg(speed).arg(twice_e).arg(&n32).arg(&s32);
    // SAFETY: one warp per row n < N, lanes over k < S: every access is within the n*s
    // (or n) elements checked above.
    unsafe { b.launch(cfg) }.map_err(drv("speed_f32"))?;
    Ok(())
}

/// `out = a − b` over `n` elements.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sub(
    k: &Kernels,
    stream: &Arc<CudaStream>,
    sms: u32,
    out: &mut CudaSlice<f32>,
    a: &CudaSlice<f32>,
    b: &CudaSlice<f32>,
    n: usize,
) -> Result<()> {
    need("out", out.len(), n)?;
    need("a", a.len(), n)?;
    need("b", b.len(), n)?;
    let n64 = n as i64;
    let mut l = stream.launch_builder(&k.axpy_sub);
    l.arg(out).arg(a).arg(b).arg(&n64);
    // SAFETY: all three hold n elements (checked above); the kernel touches i < n only.
    unsafe { l.launch(grid1d(n, sms)) }.map_err(drv("axpy_sub_f32"))?;
    Ok(())
}

/// `out[(i·reps + r), :] = inp[i, :]` for `inp [rows, cols]`, `r < reps`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn repeat_rows(
    k: &Kernels,
    stream: &Arc<CudaStream>,
    sms: u32,
    inp: &CudaSlice<f32>,
    out: &mut CudaSlice<f32>,
    rows: usize,
    reps: usize,
    cols: usize,
) -> Result<()> {
    need("repeat input", inp.len(), rows * cols)?;
    need("repeat output", out.len(), rows * reps * cols)?;
    let (n, s, c) = (
        i32_of(rows, "rows")?,
        i32_of(reps, "repeats")?,
        i32_of(cols, "columns")?,
    );
    let mut b = stream.launch_builder(&k.repeat_rows);
    b.arg(inp).arg(out).arg(&n).arg(&s).arg(&c);
    // SAFETY: the kernel writes e < rows*reps*cols and reads (e / cols / reps)*cols + c <
    // rows*cols, both checked above.
    unsafe { b.launch(grid1d(rows * reps * cols, sms)) }.map_err(drv("repeat_rows_f32"))?;
    Ok(())
}

/// `out [n·s, s]`, row `(i·s + j)` = `e_j`.
pub(crate) fn one_hot(
    k: &Kernels,
    stream: &Arc<CudaStream>,
    sms: u32,
    out: &mut CudaSlice<f32>,
    n: usize,
    s: usize,
) -> Result<()> {
    need("one-hot output", out.len(), n * s * s)?;
    let (n32, s32) = (i32_of(n, "points")?, i32_of(s, "state size")?);
    let mut b = stream.launch_builder(&k.one_hot);
    b.arg(out).arg(&n32).arg(&s32);
    // SAFETY: the kernel writes e < n*s*s only (checked above).
    unsafe { b.launch(grid1d(n * s * s, sms)) }.map_err(drv("one_hot_f32"))?;
    Ok(())
}

/// `out[i] = v` for every element of `out`.
pub(crate) fn fill(
    k: &Kernels,
    stream: &Arc<CudaStream>,
    sms: u32,
    out: &mut CudaSlice<f32>,
    v: f32,
) -> Result<()> {
    let n = out.len();
    let n64 = n as i64;
    let mut b = stream.launch_builder(&k.fill);
    b.arg(out).arg(&v).arg(&n64);
    // SAFETY: the kernel writes i < out.len() only.
    unsafe { b.launch(grid1d(n, sms)) }.map_err(drv("fill_f32"))?;
    Ok(())
}
