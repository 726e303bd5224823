//! LSTM steps of the fast path (gates `i, f, g, o`, MATH.md §2), fused with the recurrent
//! product. Cache per step and row: `[i | f | g | o]`, `4·Hp` floats; the cell states
//! `c_0..c_T` are kept beside the hidden states.

use super::recurrent::{microkernel, BwdCtx, Carry, FwdCtx, WeightElem};
use super::simd::{sigmoid, tanh, Simd, LANES};
use super::FastCell;
use std::ops::Range;

pub struct Lstm;

/// Rows per forward tile, from the micro-kernel's register count (`recurrent::microkernel`:
/// the 4 gate vectors are 2 pairs). 16 registers (pairs = two 8-lane vectors): 2 rows ×
/// 4 accumulators + 4 weight vectors + 1 broadcast = 13 (3 rows would need 17 and spill).
/// 32 registers (AVX-512VL, pairs = one 512-bit vector): 8 rows × 2 accumulators + 2
/// weight vectors + 1 broadcast = 19; more rows would fit, but 8 is the small-batch
/// shape's whole batch and each extra tile size is compiled 3 times (one per precision).
const fn fwd_rows_max(registers: usize) -> usize {
    if registers >= 32 {
        8
    } else {
        2
    }
}

impl FastCell for Lstm {
    const CACHE_WIDTH: usize = 4;
    fn row_tile(registers: usize) -> usize {
        fwd_rows_max(registers)
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
            with_rows!(n, fwd_rows::<S, E>(s, ctx, t, b0, units), [1, 2], wide: [3, 4, 5, 6, 7, 8])
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
    let gh = 4 * hp;
    let mut prev = [std::ptr::null::<f32>(); R];
    for (r, p) in prev.iter_mut().enumerate() {
        // SAFETY (all pointer arithmetic below): rows (t, b0 + r) and (t + 1, b0 + r)
        // exist in every [T(+1), B, ·] buffer, and column offsets stay below the row width.
        *p = unsafe { ctx.hs.add((t * ctx.batch + b0 + r) * hp) };
    }
    for q in units {
        let o = q * LANES;
        // SAFETY: see above; b_hh has G·Hp floats.
        let bias = unsafe {
            [
                s.load(ctx.b_hh.add(o)),
                s.load(ctx.b_hh.add(hp + o)),
                s.load(ctx.b_hh.add(2 * hp + o)),
                s.load(ctx.b_hh.add(3 * hp + o)),
            ]
        };
        let mut acc = [bias; R];
        // SAFETY: prev rows hold Hp ≥ H floats; panel q holds H · 4 · 8 floats.
        unsafe {
            microkernel::<S, E, 4, R>(s, &prev, h, ctx.panels.add(q * h * 4 * LANES), &mut acc)
        };
        for (r, u) in acc.iter().enumerate() {
            let row = t * ctx.batch + b0 + r;
            // SAFETY: see above.
            unsafe {
                let a = ctx.a.add(row * gh + o);
                let i = sigmoid(s, s.add(s.load(a), u[0]));
                let f = sigmoid(s, s.add(s.load(a.add(hp)), u[1]));
                let g = tanh(s, s.add(s.load(a.add(2 * hp)), u[2]));
                let og = sigmoid(s, s.add(s.load(a.add(3 * hp)), u[3]));
                let c_old = s.load(ctx.cs.add(row * hp + o));
                let c_new = s.mul_add(f, c_old, s.mul(i, g));
                let next = ((t + 1) * ctx.batch + b0 + r) * hp + o;
                s.store(ctx.cs.add(next), c_new);
                s.store(ctx.hs.add(next), s.mul(og, tanh(s, c_new)));
                let c = ctx.gates.add(row * ctx.cw + o);
                s.store(c, i);
                s.store(c.add(hp), f);
                s.store(c.add(2 * hp), g);
                s.store(c.add(3 * hp), og);
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
    let gh = 4 * hp;
    let one = s.splat(1.0);
    for r in 0..R {
        let b = b0 + r;
        let row = t * ctx.batch + b;
        for q in units.clone() {
            let o = q * LANES;
            // SAFETY: rows (t, b), (t + 1, b) of hs, cs, gates, dh_seq, da and row b of
            // the carries exist; columns o..o + 8 of them are this task's
            // alone (FastCell::bwd_gates); o + 8 ≤ Hp.
            unsafe {
                let mut dh = s.load(carry.cur_h.add(b * hp + o));
                if !ctx.dh_seq.is_null() {
                    dh = s.add(dh, s.load(ctx.dh_seq.add(row * hp + o)));
                }
                let c = ctx.gates.add(row * ctx.cw + o);
                let (i, f, g, og) = (
                    s.load(c),
                    s.load(c.add(hp)),
                    s.load(c.add(2 * hp)),
                    s.load(c.add(3 * hp)),
                );
                let c_prev = s.load(ctx.cs.add(row * hp + o));
                let tc = tanh(s, s.load(ctx.cs.add((row + ctx.batch) * hp + o)));
                let dc = s.mul_add(
                    s.mul(dh, og),
                    s.sub(one, s.mul(tc, tc)),
                    s.load(carry.cur_c.add(b * hp + o)),
                );
                let da = ctx.da.add(row * gh + o);
                s.store(da, s.mul(s.mul(dc, g), s.mul(i, s.sub(one, i))));
                s.store(
                    da.add(hp),
                    s.mul(s.mul(dc, c_prev), s.mul(f, s.sub(one, f))),
                );
                s.store(da.add(2 * hp), s.mul(s.mul(dc, i), s.sub(one, s.mul(g, g))));
                s.store(
                    da.add(3 * hp),
                    s.mul(s.mul(dh, tc), s.mul(og, s.sub(one, og))),
                );
                s.store(carry.next_c.add(b * hp + o), s.mul(dc, f));
                s.store(carry.next_h.add(b * hp + o), s.splat(0.0));
            }
        }
    }
}
