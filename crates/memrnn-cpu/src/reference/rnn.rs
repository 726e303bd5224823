//! tanh RNN gates (MATH.md §2): `h' = tanh(a + u)`.

use memrnn_core::Real;

/// `s_new = tanh(a + u)`; `a`, `u` and `s_new` have length `H`.
pub fn gates_forward<T: Real>(a: &[T], u: &[T], s_new: &mut [T]) {
    for j in 0..s_new.len() {
        s_new[j] = (a[j] + u[j]).tanh();
    }
}

/// Given `∂L/∂h'`, the gradients with respect to `a` and `u` (equal for this cell). The
/// state reaches `h'` only through `u`, so the direct part of `∂L/∂h` is zero.
pub fn gates_backward<T: Real>(
    a: &[T],
    u: &[T],
    ds_new: &[T],
    da: &mut [T],
    du: &mut [T],
    ds_direct: &mut [T],
) {
    for j in 0..ds_new.len() {
        let h = (a[j] + u[j]).tanh();
        let g = ds_new[j] * (T::one() - h * h);
        da[j] = g;
        du[j] = g;
        ds_direct[j] = T::zero();
    }
}
