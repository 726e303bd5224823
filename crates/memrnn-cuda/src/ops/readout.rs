//! Launchers for `kernels/readout.cu`: the readout's softmax cross-entropy per row, then
//! the reductions over rows (cuBLAS for `∂L/∂W_out`, column sums for `∂L/∂b_out` and the
//! stats), all on the device; and the readout's answer (argmax) per row.

use crate::blas::{gemm_rm, Op};
use crate::device::{backend_err, Device, LaunchDims, View};
use crate::kernels::{self, ArgmaxParams, ReadoutParams};
use crate::ops::small;
use memrnn_core::{Result, CE_STATS};

/// Classes the kernel handles: one lane of a warp per class.
pub(crate) const MAX_CLASSES: usize = 32;

/// Scratch and outputs of [`readout_ce`]: `g [rows, C]`, `row_stats [rows, CE_STATS]`,
/// `dh [rows, H]`, `dreadout [C·H + C]`, `stats [CE_STATS]`.
pub(crate) struct ReadoutBuffers<'a> {
    pub g: View<'a, f32>,
    pub row_stats: View<'a, f32>,
    pub dh: View<'a, f32>,
    pub dreadout: View<'a, f32>,
    pub stats: View<'a, f32>,
}

fn i32_of(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| backend_err(format!("{what} = {v} exceeds 32 bits")))
}

fn check_classes(classes: usize) -> Result<()> {
    if classes > MAX_CLASSES {
        return Err(backend_err(format!(
            "the CUDA readout handles at most {MAX_CLASSES} classes (one warp lane each); got \
             {classes}"
        )));
    }
    Ok(())
}

/// Grid of one warp per row, 8 rows per block of 256.
fn row_warps(rows: usize) -> Result<LaunchDims> {
    let blocks = u32::try_from(rows.div_ceil(8))
        .map_err(|_| backend_err(format!("{rows} rows exceed a 1-D grid")))?;
    Ok(LaunchDims::linear(blocks, 256, 0))
}

/// The whole readout cross-entropy for `rows ≥ 1` rows (the caller handles zero rows).
#[allow(clippy::too_many_arguments)]
pub(crate) fn readout_ce(
    dev: &Device,
    hidden: usize,
    classes: usize,
    rows: usize,
    h: View<'_, f32>,
    readout: View<'_, f32>,
    targets: View<'_, f32>,
    weights: View<'_, f32>,
    out: &ReadoutBuffers<'_>,
) -> Result<()> {
    check_classes(classes)?;
    let ch = classes * hidden;
    for (what, got, want) in [
        ("h", h.len(), rows * hidden),
        ("readout", readout.len(), ch + classes),
        ("targets", targets.len(), rows),
        ("weights", weights.len(), rows),
        ("g", out.g.len(), rows * classes),
        ("row stats", out.row_stats.len(), rows * CE_STATS),
        ("dh", out.dh.len(), rows * hidden),
        ("dreadout", out.dreadout.len(), ch + classes),
        ("stats", out.stats.len(), CE_STATS),
    ] {
        if got < want {
            return Err(backend_err(format!(
                "readout {what} holds {got} elements, the kernels need {want}"
            )));
        }
    }
    let params = ReadoutParams {
        h: dev.ptr(h)?,
        readout: dev.ptr(readout)?,
        targets: dev.ptr(targets)?,
        weights: dev.ptr(weights)?,
        g: dev.ptr(out.g)?,
        dh: dev.ptr(out.dh)?,
        row_stats: dev.ptr(out.row_stats)?,
        rows: i32_of(rows, "rows")?,
        h_len: i32_of(hidden, "hidden")?,
        c: i32_of(classes, "classes")?,
        inv_rows: (1.0 / rows as f64) as f32,
    };
    // One warp per row r < rows, reading h[r, :], targets[r], weights[r] and the readout,
    // writing g[r, :C], dh[r, :] and row_stats[r, :]: all within the lengths checked above.
    dev.launch(&kernels::READOUT_CE_ROWS, row_warps(rows)?, params)?;
    // ∂L/∂W_out [C, H] = gᵀ h.
    gemm_rm(
        dev,
        classes,
        hidden,
        rows,
        out.g,
        Op::t(classes),
        h,
        Op::n(hidden),
        0.0,
        out.dreadout.sub(0..ch),
    )?;
    small::col_sum(
        dev,
        out.g,
        rows,
        classes,
        out.dreadout.sub(ch..ch + classes),
    )?;
    small::col_sum(dev, out.row_stats, rows, CE_STATS, out.stats)
}

/// `out [rows]`: each row's first largest logit's class, for `rows ≥ 1` rows.
pub(crate) fn readout_argmax(
    dev: &Device,
    hidden: usize,
    classes: usize,
    rows: usize,
    h: View<'_, f32>,
    readout: View<'_, f32>,
    out: View<'_, f32>,
) -> Result<()> {
    check_classes(classes)?;
    for (what, got, want) in [
        ("h", h.len(), rows * hidden),
        ("readout", readout.len(), classes * hidden + classes),
        ("out", out.len(), rows),
    ] {
        if got < want {
            return Err(backend_err(format!(
                "readout argmax {what} holds {got} elements, the kernel needs {want}"
            )));
        }
    }
    let params = ArgmaxParams {
        h: dev.ptr(h)?,
        readout: dev.ptr(readout)?,
        out: dev.ptr(out)?,
        rows: i32_of(rows, "rows")?,
        h_len: i32_of(hidden, "hidden")?,
        c: i32_of(classes, "classes")?,
    };
    // One warp per row r < rows, reading h[r, :] and the readout, writing out[r]: within
    // the lengths checked above.
    dev.launch(&kernels::READOUT_ARGMAX, row_warps(rows)?, params)
}
