//! GRU gates (MATH.md §2), PyTorch's gate order `r, z, n` and its placement of the reset
//! gate after the recurrent product:
//! `r = σ(a_r + u_r)`, `z = σ(a_z + u_z)`, `n = tanh(a_n + r ⊙ u_n)`,
//! `h' = (1 − z) ⊙ n + z ⊙ h`.

use memrnn_core::Real;

/// `a`, `u` have length `3H` (blocks r, z, n); `h` and `s_new` length `H`.
pub fn gates_forward<T: Real>(a: &[T], u: &[T], h: &[T], s_new: &mut [T]) {
    let hd = h.len();
    for j in 0..hd {
        let r = (a[j] + u[j]).sigmoid();
        let z = (a[hd + j] + u[hd + j]).sigmoid();
        let n = (a[2 * hd + j] + r * u[2 * hd + j]).tanh();
        s_new[j] = (T::one() - z) * n + z * h[j];
    }
}

/// Given `∂L/∂h'`: `∂L/∂a` and `∂L/∂u` (they differ in the n block, where `u_n` is
/// scaled by `r`) and the direct part of `∂L/∂h`, `z ⊙ ∂L/∂h'`.
pub fn gates_backward<T: Real>(
    a: &[T],
    u: &[T],
    h: &[T],
    ds_new: &[T],
    da: &mut [T],
    du: &mut [T],
    ds_direct: &mut [T],
) {
    let hd = h.len();
    let one = T::one();
    for j in 0..hd {
        let (jr, jz, jn) = (j, hd + j, 2 * hd + j);
        let r = (a[jr] + u[jr]).sigmoid();
        let z = (a[jz] + u[jz]).sigmoid();
        let n = (a[jn] + r * u[jn]).tanh();
        let dh = ds_new[j];
        let dn = dh * (one - z);
        let dz = dh * (h[j] - n);
        let dpre_n = dn * (one - n * n);
        let dr = dpre_n * u[jn];
        let dpre_r = dr * r * (one - r);
        let dpre_z = dz * z * (one - z);
        da[jr] = dpre_r;
        du[jr] = dpre_r;
        da[jz] = dpre_z;
        du[jz] = dpre_z;
        da[jn] = dpre_n;
        du[jn] = dpre_n * r;
        ds_direct[j] = dh * z;
    }
}
