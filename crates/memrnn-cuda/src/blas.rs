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
    gemm_rm_batched(dev, m, n, k, opa, opb, beta, &[Operands { a, b, c }])
}

/// The operands of one product of [`gemm_rm_batched`].
#[derive(Clone, Copy)]
pub(crate) struct Operands<'a> {
    pub a: View<'a, f32>,
    pub b: View<'a, f32>,
    pub c: View<'a, f32>,
}

/// [`gemm_rm`] for every `ops[i]`, all of one shape and layout, in one cuBLAS call
/// (`cublasSgemmBatched`, pointer arrays: the members of an ensemble own separate
/// buffers); one product is a plain `cublasSgemm`. Every operand's extent is checked.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_rm_batched(
    dev: &Device,
    m: usize,
    n: usize,
    k: usize,
    opa: Op,
    opb: Op,
    beta: f32,
    ops: &[Operands<'_>],
) -> Result<()> {
    if m == 0 || n == 0 || ops.is_empty() {
        return Ok(());
    }
    let (ar, ac) = if opa.trans { (k, m) } else { (m, k) };
    let (br, bc) = if opb.trans { (n, k) } else { (k, n) };
    let (sa, sb) = (
        span(ar, ac, opa.ld, "gemm A")?,
        span(br, bc, opb.ld, "gemm B")?,
    );
    for (i, o) in ops.iter().enumerate() {
        for (want, got, what) in [
            (sa, o.a.len(), "A"),
            (sb, o.b.len(), "B"),
            (m * n, o.c.len(), "C"),
        ] {
            if got < want {
                let which = if ops.len() > 1 {
                    format!(" of product {i}")
                } else {
                    String::new()
                };
                return Err(backend_err(format!(
                    "gemm operand {what}{which} holds {got} elements, the product needs {want}"
                )));
            }
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
    if let [o] = ops {
        return dev.sgemm(&cfg, o.b, o.a, o.c);
    }
    let swapped: Vec<_> = ops.iter().map(|o| (o.b, o.a, o.c)).collect();
    dev.sgemm_batched(&cfg, &swapped)
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::device::sim::SimDevice;
    use crate::SimProps;

    fn data(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + seed) * 0.731).sin()).collect()
    }

    /// A batched product is each product alone, bit for bit on the simulated device, for
    /// every transpose combination, awkward sizes and a row stride above the columns.
    #[test]
    fn batched_products_are_the_products_one_by_one() {
        let d = Device::Sim(SimDevice::new(SimProps::small()).expect("sim"));
        let (m, n, k) = (5, 3, 7);
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (lda, ldb) = (if ta { m } else { k } + 2, if tb { k } else { n } + 1);
            let (ar, br) = (if ta { k } else { m }, if tb { n } else { k });
            let (opa, opb) = (Op { trans: ta, ld: lda }, Op { trans: tb, ld: ldb });
            let bufs: Vec<_> = (0..3)
                .map(|e| {
                    let a = d.htod(&data(ar * lda, e as f32)).expect("a");
                    let b = d.htod(&data(br * ldb, 10.0 + e as f32)).expect("b");
                    let c1 = d.htod(&data(m * n, 20.0 + e as f32)).expect("c");
                    let c2 = d.htod(&data(m * n, 20.0 + e as f32)).expect("c");
                    (a, b, c1, c2)
                })
                .collect();
            let ops: Vec<Operands<'_>> = bufs
                .iter()
                .map(|(a, b, c, _)| Operands {
                    a: a.all(),
                    b: b.all(),
                    c: c.all(),
                })
                .collect();
            gemm_rm_batched(&d, m, n, k, opa, opb, 0.5, &ops).expect("batched");
            for (e, (a, b, c1, c2)) in bufs.iter().enumerate() {
                gemm_rm(&d, m, n, k, a.all(), opa, b.all(), opb, 0.5, c2.all()).expect("one");
                let (x, y) = (d.dtoh(c1.all()).expect("c1"), d.dtoh(c2.all()).expect("c2"));
                assert!(
                    x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
                    "ta {ta} tb {tb} product {e}: {x:?} vs {y:?}"
                );
            }
            // An operand too short in one product is an error naming that product.
            let short = d.alloc::<f32>(3).expect("short");
            let mut bad = ops.clone();
            bad[1].b = short.all();
            let e = gemm_rm_batched(&d, m, n, k, opa, opb, 0.0, &bad).expect_err("short B");
            assert!(e.to_string().contains("B of product 1"), "{e}");
        }
    }
}
