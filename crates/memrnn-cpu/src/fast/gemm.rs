//! Large matrix products (input side over all `T·B` rows, weight gradients) through the
//! `gemm` crate: the SGEMM kernels that `faer` uses, with run-time AVX2/FMA (and AVX-512)
//! dispatch. Measured here against the ceiling in benches/RESULTS.md. Its parallel mode
//! splits only the output, never the reduction, so results are identical for any thread
//! count (tested in tests/tests/cpu_fast.rs).

/// A strided read-only view of an f32 matrix inside a slice, bounds-checked on creation.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    /// `rows × cols` row-major with row stride `ld`, starting at `data[0]`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, ld: usize) -> Self {
        let m = MatRef {
            data,
            rows,
            cols,
            rs: ld,
            cs: 1,
        };
        m.check();
        m
    }

    /// The transpose (a view: no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < self.data.len(), "matrix view out of bounds");
        }
    }
}

/// `dst [m, n]` (row-major, row stride `ld`) `= dst · accumulate + lhs [m, k] · rhs [k, n]`,
/// on the pool's threads.
pub fn matmul(dst: &mut [f32], ld: usize, accumulate: bool, lhs: MatRef<'_>, rhs: MatRef<'_>) {
    let threads = rayon::current_num_threads();
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    matmul_with(dst, ld, accumulate, lhs, rhs, par)
}

/// [`matmul`] on the calling thread only (for products inside a task that rayon already
/// runs in parallel with others).
pub fn matmul_serial(
    dst: &mut [f32],
    ld: usize,
    accumulate: bool,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
) {
    matmul_with(dst, ld, accumulate, lhs, rhs, gemm::Parallelism::None)
}

fn matmul_with(
    dst: &mut [f32],
    ld: usize,
    accumulate: bool,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    par: gemm::Parallelism,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "matmul: inner dimensions differ");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * ld + n <= dst.len(),
        "matmul: destination too small"
    );
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * ld..r * ld + n].iter_mut().for_each(|v| *v = 0.0);
            }
        }
        return;
    }
    // SAFETY: the three views were bounds-checked (MatRef::new, the assert above) for
    // exactly the index ranges gemm touches with these strides; `dst` is borrowed mutably
    // so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ld as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// Column sums of `m [rows, cols]` (row-major, row stride `ld`) added into `out [cols]`,
/// rows in order, so the result does not depend on the thread count.
pub fn column_sums_acc(m: &[f32], rows: usize, cols: usize, ld: usize, out: &mut [f32]) {
    use rayon::prelude::*;
    const CHUNK: usize = 128;
    out[..cols]
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, acc)| {
            let c0 = c * CHUNK;
            for r in 0..rows {
                let row = &m[r * ld + c0..r * ld + c0 + acc.len()];
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v;
                }
            }
        });
}
