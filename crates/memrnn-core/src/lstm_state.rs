//! PyTorch's separate LSTM state tensors and memrnn's packed rows, both ways.
//!
//! PyTorch's `nn.LSTM` takes and returns `(h, c)` as two `(num_layers = 1, B, H)` tensors;
//! memrnn holds the LSTM state as one `[B, S = 2H]` array whose rows are `[h | c]`. The
//! same packing holds for gradients: `ds_final = [∂L/∂h_T | ∂L/∂c_T]` and
//! `ds0 = [∂L/∂h_0 | ∂L/∂c_0]`.
//!
//! ```
//! use memrnn_core::{pack_lstm_grad, pack_lstm_state, split_lstm_state};
//!
//! let (batch, hidden) = (2, 3);
//! let h0 = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // h0.flatten() of a (1, 2, 3) tensor
//! let c0 = [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0];
//! let s0 = pack_lstm_state(&h0, &c0, batch, hidden)?; // [B, 2H], rows [h | c]
//! assert_eq!(&s0[..6], &[1.0, 2.0, 3.0, -1.0, -2.0, -3.0]);
//! let (h, c) = split_lstm_state(&s0, batch, hidden)?;
//! assert_eq!((h.as_slice(), c.as_slice()), (&h0[..], &c0[..]));
//!
//! // ∂L/∂h_n only (c_n carries no loss): ds_final = [dh | 0].
//! let ds_final = pack_lstm_grad(Some(&h0[..]), None, batch, hidden)?;
//! assert_eq!(&ds_final[3..6], &[0.0; 3]);
//! # Ok::<(), memrnn_core::Error>(())
//! ```

use crate::error::{check_len, Result};

fn check_part(what: &str, len: usize, batch: usize, hidden: usize) -> Result<()> {
    check_len(what, batch * hidden, len, || {
        format!("(1, B={batch}, H={hidden}) as PyTorch's nn.LSTM holds it")
    })
}

/// Packs PyTorch's `h (1, B, H)` and `c (1, B, H)` into memrnn's LSTM state `[B, 2H]`,
/// each row `[h | c]` (what `s0` of a sequence call takes).
pub fn pack_lstm_state<T: Copy>(h: &[T], c: &[T], batch: usize, hidden: usize) -> Result<Vec<T>> {
    check_part("h", h.len(), batch, hidden)?;
    check_part("c", c.len(), batch, hidden)?;
    let mut s = Vec::with_capacity(2 * batch * hidden);
    for (hr, cr) in h.chunks_exact(hidden).zip(c.chunks_exact(hidden)) {
        s.extend_from_slice(hr);
        s.extend_from_slice(cr);
    }
    Ok(s)
}

/// Splits memrnn's LSTM state (or its gradient: `s_final`, `ds0`) `[B, 2H]` into
/// PyTorch's `(h, c)`, each `(1, B, H)` flat.
pub fn split_lstm_state<T: Copy>(s: &[T], batch: usize, hidden: usize) -> Result<(Vec<T>, Vec<T>)> {
    check_len("LSTM state", 2 * batch * hidden, s.len(), || {
        format!("[B={batch}, S=2H={}], rows [h | c]", 2 * hidden)
    })?;
    let mut h = Vec::with_capacity(batch * hidden);
    let mut c = Vec::with_capacity(batch * hidden);
    for row in s.chunks_exact(2 * hidden) {
        h.extend_from_slice(&row[..hidden]);
        c.extend_from_slice(&row[hidden..]);
    }
    Ok((h, c))
}

/// `ds_final = [∂L/∂h_T | ∂L/∂c_T]`, `[B, 2H]`, from PyTorch-shaped gradients
/// `(1, B, H)`; an absent part is zero (as when only `h_n` feeds the loss).
pub fn pack_lstm_grad<T: Copy + Default>(
    dh: Option<&[T]>,
    dc: Option<&[T]>,
    batch: usize,
    hidden: usize,
) -> Result<Vec<T>> {
    for (what, part) in [("dh", dh), ("dc", dc)] {
        if let Some(p) = part {
            check_part(what, p.len(), batch, hidden)?;
        }
    }
    let zeros = vec![T::default(); batch * hidden];
    pack_lstm_state(dh.unwrap_or(&zeros), dc.unwrap_or(&zeros), batch, hidden)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_and_split_are_inverse_and_reject_wrong_lengths() {
        let (b, hd) = (3, 4);
        let h: Vec<f64> = (0..b * hd).map(|v| v as f64).collect();
        let c: Vec<f64> = (0..b * hd).map(|v| -(v as f64) - 0.5).collect();
        let s = pack_lstm_state(&h, &c, b, hd).unwrap();
        assert_eq!(s.len(), 2 * b * hd);
        for r in 0..b {
            assert_eq!(&s[r * 2 * hd..r * 2 * hd + hd], &h[r * hd..(r + 1) * hd]);
            assert_eq!(
                &s[r * 2 * hd + hd..(r + 1) * 2 * hd],
                &c[r * hd..(r + 1) * hd]
            );
        }
        assert_eq!(split_lstm_state(&s, b, hd).unwrap(), (h.clone(), c.clone()));
        let err = pack_lstm_state(&h[1..], &c, b, hd).unwrap_err().to_string();
        assert!(err.contains("h") && err.contains("12"), "{err}");
        assert!(split_lstm_state(&s[1..], b, hd).is_err());
        let err = pack_lstm_grad(None, Some(&c[1..]), b, hd)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dc"), "{err}");
        let g = pack_lstm_grad(None, Some(&c[..]), b, hd).unwrap();
        let (dh, dc) = split_lstm_state(&g, b, hd).unwrap();
        assert!(dh.iter().all(|&v| v == 0.0));
        assert_eq!(dc, c);
    }
}
