//! cuBLAS SGEMM on row-major matrices, with every extent checked before the device call
//! (cuBLAS on a GPU, its host model on the simulated device).

use crate::device::{backend_err, ColMajorGemm, Device, View};
use memrnn_core::Result;

/// A row-major operand: its storage (`rows` × `cols` with row stride `ld` as stored) and
/// whether the product uses its transpose.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Op {
    pub trans: bool,
    pub ld: usize,
}

impl Op {
    pub(crate) const fn n(ld: usize) -> Op {
        Op { trans: false, ld }
    }
    pub(crate) const fn t(ld: usize) -> Op {
        Op { trans: true, ld }
    }
}

fn to_i32(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| backend_err(format!("{what} = {v} exceeds cuBLAS's 32-bit sizes")))
}

/// Elements the stored operand spans: `(rows − 1)·ld + cols`.
fn span(rows: usize, cols: usize, ld: usize, what: &str) -> Result<usize> {
    if ld < cols {
        return Err(backend_err(format!(
            "{what}: row stride {ld} is below its {cols} columns"
        )));
    }
    Ok(if rows == 0 { 0 } else { (rows - 1) * ld + cols })
}

/// Row-major `C[m, n] = op(A)[m, k] · op(B)[k, n] + beta · C` (C's row stride `n`),
/// full f32 (cuBLAS's default math: no TF32).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_rm(
    dev: &Device,
    m: usize,
    n: usize,
    k: usize,
    a: View<'_, f32>,
    opa: Op,
    b: View<'_, f32>,
    opb: Op,
    beta: f32,
    c: View<'_, f32>,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let (ar, ac) = if opa.trans { (k, m) } else { (m, k) };
    let (br, bc) = if opb.trans { (n, k) } else { (k, n) };
    let need = [
        (span(ar, ac, opa.ld, "gemm A")?, a.len(), "A"),
        (span(br, bc, opb.ld, "gemm B")?, b.len(), "B"),
        (m * n, c.len(), "C"),
    ];
    for (want, got, what) in need {
        if got < want {
            return Err(backend_err(format!(
                "gemm operand {what} holds {got} elements, the product needs {want}"
            )));
        }
    }
    // Row-major C = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ, and a row-major
    // buffer read column-major is its transpose: so B goes first, A second, each with its
    // own transpose flag, and m, n swap.
    let cfg = ColMajorGemm {
        trans_a: opb.trans,
        trans_b: opa.trans,
        m: to_i32(n, "n")?,
        n: to_i32(m, "m")?,
        k: to_i32(k, "k")?,
        alpha: 1.0f32,
        lda: to_i32(opb.ld.max(1), "ldb")?,
        ldb: to_i32(opa.ld.max(1), "lda")?,
        beta,
        ldc: to_i32(n, "ldc")?,
    };
    dev.sgemm(&cfg, b, a, c)
}
