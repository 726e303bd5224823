//! GRU steps of the fast path (gates `r, z, n`, MATH.md §2), fused with the recurrent
//! product. Cache per step and row: `[r | z | n | u_n]`, `4·Hp` floats (`u_n` is the
//! recurrent part of the new gate, which the reset gate's gradient needs).

use super::recurrent::{microkernel, BwdCtx, Carry, FwdCtx, WeightElem};
use super::simd::{sigmoid, tanh, Simd, LANES};
use super::FastCell;
use std::ops::Range;

pub struct Gru;

/// Rows per forward tile, from the micro-kernel's register count (`recurrent::microkernel`:
/// the 3 gate vectors are 1 pair and 1 single). 16 registers (a pair = two 8-lane
/// vectors): 3 rows × 3 accumulators + 3 weight vectors + 1 broadcast = 13 (4 rows would
/// need all 16 and spill). 32 registers (AVX-512VL, a pair = one 512-bit vector): 8 rows
/// × 2 accumulators + 2 weight vectors + 1 broadcast = 19; more rows would fit, but 8 is
/// the small-batch shape's whole batch and each extra tile size is compiled 3 times.
const fn fwd_rows_max(registers: usize) -> usize {
    if registers >= 32 {
        8
    } else {
        3
    }
}

impl FastCell for Gru {
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
            with_rows!(n, fwd_rows::<S, E>(s, ctx, t, b0, units), [1, 2, 3], wide: [4, 5, 6, 7, 8])
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
    let gh = 3 * hp;
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
            ]
        };
        let mut acc = [bias; R];
        // SAFETY: prev rows hold Hp ≥ H floats; panel q holds H · 3 · 8 floats.
        unsafe {
            microkernel::<S, E, 3, R>(s, &prev, h, ctx.panels.add(q * h * 3 * LANES), &mut acc)
        };
        for (r, u) in acc.iter().enumerate() {
            let row = t * ctx.batch + b0 + r;
            // SAFETY: see above.
            unsafe {
                let a = ctx.a.add(row * gh + o);
                let rg = sigmoid(s, s.add(s.load(a), u[0]));
                let z = sigmoid(s, s.add(s.load(a.add(hp)), u[1]));
                let n = tanh(s, s.mul_add(rg, u[2], s.load(a.add(2 * hp))));
                let h_old = s.load(prev[r].add(o));
                let h_new = s.mul_add(z, s.sub(h_old, n), n);
                s.store(ctx.hs.add(((t + 1) * ctx.batch + b0 + r) * hp + o), h_new);
                let c = ctx.gates.add(row * ctx.cw + o);
                s.store(c, rg);
                s.store(c.add(hp), z);
                s.store(c.add(2 * hp), n);
                s.store(c.add(3 * hp), u[2]);
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
    let gh = 3 * hp;
    let one = s.splat(1.0);
    for r in 0..R {
        let b = b0 + r;
        let row = t * ctx.batch + b;
        for q in units.clone() {
            let o = q * LANES;
            // SAFETY: rows (t, b) of hs, gates, dh_seq, da, du and row b of the carries
            // exist; columns o..o + 8 of them are this task's
            // alone (FastCell::bwd_gates); o + 8 ≤ Hp.
            unsafe {
                let mut dh = s.load(carry.cur_h.add(b * hp + o));
                if !ctx.dh_seq.is_null() {
                    dh = s.add(dh, s.load(ctx.dh_seq.add(row * hp + o)));
                }
                let c = ctx.gates.add(row * ctx.cw + o);
                let (rg, z, n, un) = (
                    s.load(c),
                    s.load(c.add(hp)),
                    s.load(c.add(2 * hp)),
                    s.load(c.add(3 * hp)),
                );
                let h_old = s.load(ctx.hs.add(row * hp + o));
                let dn = s.mul(dh, s.sub(one, z));
                let dz = s.mul(dh, s.sub(h_old, n));
                let dpre_n = s.mul(dn, s.sub(one, s.mul(n, n)));
                let dpre_r = s.mul(s.mul(dpre_n, un), s.mul(rg, s.sub(one, rg)));
                let dpre_z = s.mul(dz, s.mul(z, s.sub(one, z)));
                let da = ctx.da.add(row * gh + o);
                let du = ctx.du.add(row * gh + o);
                s.store(da, dpre_r);
                s.store(da.add(hp), dpre_z);
                s.store(da.add(2 * hp), dpre_n);
                s.store(du, dpre_r);
                s.store(du.add(hp), dpre_z);
                s.store(du.add(2 * hp), s.mul(dpre_n, rg));
                s.store(carry.next_h.add(b * hp + o), s.mul(dh, z));
            }
        }
    }
}
