//! tanh RNN steps of the fast path (MATH.md §2), fused with the recurrent product. No
//! gate cache: the backward pass needs only `h_t`, which the forward pass keeps anyway.

use super::recurrent::{microkernel, BwdCtx, Carry, FwdCtx, WeightElem};
use super::simd::{tanh, Simd, LANES};
use super::FastCell;
use std::ops::Range;

pub struct Rnn;

/// Rows per forward tile: 8 rows × 1 vector = 8 accumulators (+ 1 weight vector + 1
/// broadcast); more rows gain little with one gate, so every level uses 8.
const R_FWD: usize = 8;

impl FastCell for Rnn {
    const CACHE_WIDTH: usize = 0;
    fn row_tile(_registers: usize) -> usize {
        R_FWD
    }

    #[inline(always)]
    unsafe fn fwd_block<S: Simd, E: WeightElem>(
        s: S,
        ctx: &FwdCtx<E>,
        t: usize,
        b0: usize,
        n: usize,
        units: Range<usize>,
    ) {
        // SAFETY: forwarded contract (FastCell::fwd_block).
        unsafe {
            with_rows!(
                n,
                fwd_rows::<S, E>(s, ctx, t, b0, units),
                [1, 2, 3, 4, 5, 6, 7, 8]
            )
        }
    }

    #[inline(always)]
    unsafe fn bwd_gates<S: Simd, E: WeightElem>(
        s: S,
        ctx: &BwdCtx<E>,
        carry: &Carry,
        t: usize,
        b0: usize,
        n: usize,
        units: Range<usize>,
    ) {
        // SAFETY: forwarded contract (FastCell::bwd_gates).
        unsafe {
            with_rows!(
                n,
                bwd_rows::<S, E>(s, ctx, carry, t, b0, units),
                [1, 2, 3, 4],
                wide: [5, 6, 7, 8]
            )
        }
    }
}

#[inline(always)]
unsafe fn fwd_rows<S: Simd, E: WeightElem, const R: usize>(
    s: S,
    ctx: &FwdCtx<E>,
    t: usize,
    b0: usize,
    units: Range<usize>,
) {
    let (hp, h) = (ctx.hp, ctx.h);
    let mut prev = [std::ptr::null::<f32>(); R];
    for (r, p) in prev.iter_mut().enumerate() {
        // SAFETY (all pointer arithmetic below): rows (t, b0 + r) and (t + 1, b0 + r)
        // exist in every [T(+1), B, ·] buffer, and column offsets stay below the row width.
        *p = unsafe { ctx.hs.add((t * ctx.batch + b0 + r) * hp) };
    }
    for q in units {
        let o = q * LANES;
        // SAFETY: see above; b_hh has Hp floats.
        let mut acc = [[unsafe { s.load(ctx.b_hh.add(o)) }]; R];
        // SAFETY: prev rows hold Hp ≥ H floats; panel q holds H · 8 floats.
        unsafe { microkernel::<S, E, 1, R>(s, &prev, h, ctx.panels.add(q * h * LANES), &mut acc) };
        for (r, u) in acc.iter().enumerate() {
            let row = t * ctx.batch + b0 + r;
            // SAFETY: see above.
            unsafe {
                let h_new = tanh(s, s.add(s.load(ctx.a.add(row * hp + o)), u[0]));
                s.store(ctx.hs.add(((t + 1) * ctx.batch + b0 + r) * hp + o), h_new);
            }
        }
    }
}

#[inline(always)]
unsafe fn bwd_rows<S: Simd, E: WeightElem, const R: usize>(
    s: S,
    ctx: &BwdCtx<E>,
    carry: &Carry,
    t: usize,
    b0: usize,
    units: Range<usize>,
) {
    let hp = ctx.hp;
    let one = s.splat(1.0);
    for r in 0..R {
        let b = b0 + r;
        let row = t * ctx.batch + b;
        for q in units.clone() {
            let o = q * LANES;
            // SAFETY: rows (t, b), (t + 1, b) of hs, dh_seq, da and row b of the carries
            // exist; columns o..o + 8 of them are this task's
            // alone (FastCell::bwd_gates); o + 8 ≤ Hp.
            unsafe {
                let mut dh = s.load(carry.cur_h.add(b * hp + o));
                if !ctx.dh_seq.is_null() {
                    dh = s.add(dh, s.load(ctx.dh_seq.add(row * hp + o)));
                }
                let h_new = s.load(ctx.hs.add((row + ctx.batch) * hp + o));
                s.store(
                    ctx.da.add(row * hp + o),
                    s.mul(dh, s.sub(one, s.mul(h_new, h_new))),
                );
                s.store(carry.next_h.add(b * hp + o), s.splat(0.0));
            }
        }
    }
}
