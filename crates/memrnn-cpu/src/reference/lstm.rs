//! LSTM gates (MATH.md §2), PyTorch's gate order `i, f, g, o`; the state row is `[h | c]`:
//! `c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g)`, `h' = σ(o) ⊙ tanh(c')`.

use memrnn_core::Real;

/// `a`, `u` have length `4H`; `s` and `s_new` are `[h | c]`, length `2H`.
pub fn gates_forward<T: Real>(a: &[T], u: &[T], s: &[T], s_new: &mut [T]) {
    let hd = s.len() / 2;
    for j in 0..hd {
        let i = (a[j] + u[j]).sigmoid();
        let f = (a[hd + j] + u[hd + j]).sigmoid();
        let g = (a[2 * hd + j] + u[2 * hd + j]).tanh();
        let o = (a[3 * hd + j] + u[3 * hd + j]).sigmoid();
        let c_new = f * s[hd + j] + i * g;
        s_new[hd + j] = c_new;
        s_new[j] = o * c_new.tanh();
    }
}

/// Given `∂L/∂s' = [∂L/∂h' | ∂L/∂c']`: `∂L/∂a = ∂L/∂u` and the direct part of `∂L/∂s`
/// (zero for `h`, which enters only through `u`; `f ⊙ ∂L/∂c_total` for `c`).
pub fn gates_backward<T: Real>(
    a: &[T],
    u: &[T],
    s: &[T],
    ds_new: &[T],
    da: &mut [T],
    du: &mut [T],
    ds_direct: &mut [T],
) {
    let hd = s.len() / 2;
    let one = T::one();
    for j in 0..hd {
        let (ji, jf, jg, jo) = (j, hd + j, 2 * hd + j, 3 * hd + j);
        let i = (a[ji] + u[ji]).sigmoid();
        let f = (a[jf] + u[jf]).sigmoid();
        let g = (a[jg] + u[jg]).tanh();
        let o = (a[jo] + u[jo]).sigmoid();
        let c = s[hd + j];
        let tc = (f * c + i * g).tanh();
        let dh = ds_new[j];
        let dc = ds_new[hd + j] + dh * o * (one - tc * tc);
        let dpre_i = dc * g * i * (one - i);
        let dpre_f = dc * c * f * (one - f);
        let dpre_g = dc * i * (one - g * g);
        let dpre_o = dh * tc * o * (one - o);
        for (k, d) in [(ji, dpre_i), (jf, dpre_f), (jg, dpre_g), (jo, dpre_o)] {
            da[k] = d;
            du[k] = d;
        }
        ds_direct[j] = T::zero();
        ds_direct[hd + j] = dc * f;
    }
}
