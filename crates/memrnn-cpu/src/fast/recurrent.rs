//! The recurrent product, fused with the gates: packing of `W_hh` into panels, the
//! register-tiled micro-kernel, and the raw views the per-cell step code works on.
//!
//! Padding: inside the fast path every `H`-sized block is padded to `Hp = ⌈H/16⌉·16`
//! columns (the backward output tiles are 16 wide, the forward unit tiles 8). Padded
//! weights are zero, so padded units stay exactly zero in the forward pass and carry zero
//! gradient in the backward pass; the public outputs are unpadded.
//!
//! Forward panel `q` (units `8q..8q+8`) holds, for each `k < H`, the `G` gate vectors
//! `W_hh[g·H + 8q + l, k]`, `l < 8`: one panel is all the recurrent weights one
//! output tile needs, streamed from L1 while `R` batch rows accumulate in registers.
//! Backward panel `q` (columns `16q..16q+16` of `∂L/∂h`) holds, for each padded gate row
//! `j < G·Hp`, the 16 weights `W_hh[j, 16q + l]`.
//!
//! Storage precision: the panels hold `W_hh` rounded to the precision, as f32, bf16 or
//! f16 ([`WeightElem`]); the micro-kernel widens each weight vector to f32 as it loads
//! it, so the products and sums are f32 whatever the storage, and a half-width run
//! equals the f32 run on the rounded weights bit for bit. Half-width panels halve the
//! bytes streamed per step (the small-batch LSTM's `W_hh` at H 256 is 1 MiB in f32,
//! 0.5 MiB in bf16); where the f32 panels stay in cache anyway, f32 panels of the
//! rounded values skip the widening (`super::panel_format`).

use super::simd::{Simd, LANES};
use memrnn_core::{CellDims, Precision};

/// The element type of the packed recurrent weights: f32, or a half-width format that
/// the micro-kernel widens to f32 on load.
pub trait WeightElem: Copy + Default + Send + Sync + 'static {
    const PRECISION: Precision;
    /// `w` rounded to this format (nearest, ties to even).
    fn from_f32(w: f32) -> Self;
    /// Loads 8 values from `p`, widened to f32.
    ///
    /// # Safety
    /// `p..p+8` must be readable.
    unsafe fn load8<S: Simd>(s: S, p: *const Self) -> S::V;
    /// Loads 16 values from `p`, widened to f32, as one [`Simd::V2`] (lanes 0..8 the
    /// first 8 values: `load8(p)` and `load8(p + 8)` joined).
    ///
    /// # Safety
    /// `p..p+16` must be readable.
    unsafe fn load16<S: Simd>(s: S, p: *const Self) -> S::V2;
}

impl WeightElem for f32 {
    const PRECISION: Precision = Precision::F32;
    #[inline(always)]
    fn from_f32(w: f32) -> Self {
        w
    }
    #[inline(always)]
    unsafe fn load8<S: Simd>(s: S, p: *const f32) -> S::V {
        // SAFETY: forwarded contract.
        unsafe { s.load(p) }
    }
    #[inline(always)]
    unsafe fn load16<S: Simd>(s: S, p: *const f32) -> S::V2 {
        // SAFETY: forwarded contract.
        unsafe { s.load2(p) }
    }
}

impl WeightElem for half::bf16 {
    const PRECISION: Precision = Precision::Bf16;
    #[inline(always)]
    fn from_f32(w: f32) -> Self {
        half::bf16::from_f32(w)
    }
    #[inline(always)]
    unsafe fn load8<S: Simd>(s: S, p: *const Self) -> S::V {
        // SAFETY: forwarded contract; bf16 is a transparent u16.
        unsafe { s.load_bf16(p.cast()) }
    }
    #[inline(always)]
    unsafe fn load16<S: Simd>(s: S, p: *const Self) -> S::V2 {
        // SAFETY: forwarded contract; bf16 is a transparent u16.
        unsafe { s.load2_bf16(p.cast()) }
    }
}

impl WeightElem for half::f16 {
    const PRECISION: Precision = Precision::F16;
    #[inline(always)]
    fn from_f32(w: f32) -> Self {
        half::f16::from_f32(w)
    }
    #[inline(always)]
    unsafe fn load8<S: Simd>(s: S, p: *const Self) -> S::V {
        // SAFETY: forwarded contract; f16 is a transparent u16.
        unsafe { s.load_f16(p.cast()) }
    }
    #[inline(always)]
    unsafe fn load16<S: Simd>(s: S, p: *const Self) -> S::V2 {
        // SAFETY: forwarded contract; f16 is a transparent u16.
        unsafe { s.load2_f16(p.cast()) }
    }
}

/// `⌈h / 16⌉ · 16`.
pub fn padded(h: usize) -> usize {
    h.div_ceil(16) * 16
}

/// Forward panels of `W_hh [G·H, H]` rounded to `precision`, held as `E` (the format
/// itself, or f32 holding the rounded values); see the module docs.
pub fn pack_forward<E: WeightElem>(cell: &CellDims, w_hh: &[f32], precision: Precision) -> Vec<E> {
    let (g, h) = (cell.gates(), cell.hidden);
    let hp = padded(h);
    let tiles = hp / LANES;
    let mut out = vec![E::default(); tiles * h * g * LANES];
    for q in 0..tiles {
        for k in 0..h {
            for gate in 0..g {
                let base = ((q * h + k) * g + gate) * LANES;
                for l in 0..LANES {
                    let unit = q * LANES + l;
                    if unit < h {
                        out[base + l] =
                            E::from_f32(precision.round(w_hh[(gate * h + unit) * h + k]));
                    }
                }
            }
        }
    }
    out
}

/// Backward panels of `W_hh [G·H, H]` rounded to `precision`, held as `E`; see the
/// module docs.
pub fn pack_backward<E: WeightElem>(cell: &CellDims, w_hh: &[f32], precision: Precision) -> Vec<E> {
    let (g, h) = (cell.gates(), cell.hidden);
    let hp = padded(h);
    let gh = g * hp;
    let tiles = hp / (2 * LANES);
    let mut out = vec![E::default(); tiles * gh * 2 * LANES];
    for q in 0..tiles {
        for gate in 0..g {
            for jj in 0..h {
                let j = gate * hp + jj;
                let base = (q * gh + j) * 2 * LANES;
                for l in 0..2 * LANES {
                    let col = q * 2 * LANES + l;
                    if col < h {
                        out[base + l] =
                            E::from_f32(precision.round(w_hh[(gate * h + jj) * h + col]));
                    }
                }
            }
        }
    }
    out
}

/// `acc[r][w] += Σ_k a[r][k] · panel[k][w]` for `R` rows and `W` vectors of 8 columns,
/// the panel's weights widened to f32 as they load.
///
/// Vectors `2p, 2p + 1` (adjacent in the panel) are handled as one [`Simd::V2`] pair, a
/// 512-bit register at the AVX-512VL level, two 8-lane vectors elsewhere; a last odd
/// vector (the GRU's third gate, the RNN's only one) as an 8-lane vector. Per lane the
/// arithmetic is the same either way (one FMA per `k`, `k` ascending), so the result does
/// not depend on the level. Registers live in the loop: `R · (W/2)` pair and `R · (W mod
/// 2)` single accumulators, `W/2` pair and `W mod 2` single weight vectors, a broadcast.
///
/// # Safety
/// Each `a[r]` must be readable for `k_len` floats and `panel` for `k_len · W · 8`
/// elements.
#[inline(always)]
pub unsafe fn microkernel<S: Simd, E: WeightElem, const W: usize, const R: usize>(
    s: S,
    a: &[*const f32; R],
    k_len: usize,
    panel: *const E,
    acc: &mut [[S::V; W]; R],
) {
    // Stable const generics cannot size an array `W / 2`: the pair arrays are `W` long
    // and only their first `pairs` entries are used (the rest are dead and never reach
    // a register).
    let pairs = W / 2;
    let odd = W % 2 == 1;
    let mut acc2 = [[s.splat2(0.0); W]; R];
    for (a2, a1) in acc2.iter_mut().zip(acc.iter()) {
        for p in 0..pairs {
            a2[p] = s.join(a1[2 * p], a1[2 * p + 1]);
        }
    }
    let mut wp = panel;
    for k in 0..k_len {
        let mut w2 = [s.splat2(0.0); W];
        for (p, wv) in w2.iter_mut().enumerate().take(pairs) {
            // SAFETY: wp + 16p + 16 ≤ panel + k_len·W·8 (caller's contract).
            *wv = unsafe { E::load16(s, wp.add(2 * p * LANES)) };
        }
        let w1 = if odd {
            // SAFETY: wp + 8(W − 1) + 8 ≤ panel + k_len·W·8 (caller's contract).
            unsafe { E::load8(s, wp.add((W - 1) * LANES)) }
        } else {
            s.splat(0.0)
        };
        for r in 0..R {
            // SAFETY: k < k_len (caller's contract on a[r]).
            let x = unsafe { *a[r].add(k) };
            let x2 = s.splat2(x);
            for p in 0..pairs {
                acc2[r][p] = s.mul_add2(x2, w2[p], acc2[r][p]);
            }
            if odd {
                acc[r][W - 1] = s.mul_add(s.splat(x), w1, acc[r][W - 1]);
            }
        }
        // SAFETY: stays within (or one past) the panel.
        wp = unsafe { wp.add(W * LANES) };
    }
    for (a2, a1) in acc2.iter().zip(acc.iter_mut()) {
        for p in 0..pairs {
            (a1[2 * p], a1[2 * p + 1]) = s.split(a2[p]);
        }
    }
}

/// Raw views of the forward pass's buffers, shared by the tasks of one call. Every task
/// owns a disjoint range of batch rows and writes only those rows. `E`: the panels'
/// storage.
#[derive(Clone, Copy)]
pub struct FwdCtx<E = f32> {
    pub batch: usize,
    pub h: usize,
    pub hp: usize,
    /// Input pre-activations `a = x W_ihᵀ + b_ih`, `[T·B, G·Hp]`.
    pub a: *const f32,
    /// `b_hh`, padded, `[G·Hp]`.
    pub b_hh: *const f32,
    /// Forward panels (`pack_forward`).
    pub panels: *const E,
    /// Hidden states `h_0..h_T`, `[T+1, B, Hp]`.
    pub hs: *mut f32,
    /// Cell states `c_0..c_T` (LSTM), `[T+1, B, Hp]`.
    pub cs: *mut f32,
    /// Per-step cache of gate values, `[T, B, cw]`.
    pub gates: *mut f32,
    pub cw: usize,
}

impl FwdCtx {
    /// The same views with `panels` as the forward panels.
    pub fn with_panels<E: WeightElem>(self, panels: *const E) -> FwdCtx<E> {
        let FwdCtx {
            batch,
            h,
            hp,
            a,
            b_hh,
            hs,
            cs,
            gates,
            cw,
            ..
        } = self;
        FwdCtx {
            batch,
            h,
            hp,
            a,
            b_hh,
            panels,
            hs,
            cs,
            gates,
            cw,
        }
    }
}

// SAFETY: the pointers refer to buffers that outlive the parallel region (the caller
// joins every task before dropping or reading them), inputs are only read, and each task
// writes only the rows of its own batch range, so no two threads write the same element.
unsafe impl<E: WeightElem> Send for FwdCtx<E> {}
// SAFETY: as above.
unsafe impl<E: WeightElem> Sync for FwdCtx<E> {}

/// Raw views of the backward pass's buffers, shared by the tasks of one call. Tasks write
/// disjoint blocks: their own batch rows (batch split), or, in the small-batch unit split,
/// the unit/column tiles of the part the `PhaseTeam` (`fast::team`) gave them
/// for the current phase, every row. `E`: the panels' storage.
#[derive(Clone, Copy)]
pub struct BwdCtx<E = f32> {
    pub batch: usize,
    pub h: usize,
    pub hp: usize,
    /// `G·Hp`: the width of a `da` / `du` row.
    pub gh: usize,
    pub hs: *const f32,
    pub cs: *const f32,
    pub gates: *const f32,
    pub cw: usize,
    /// `∂L/∂h_t` from the loss, padded `[T, B, Hp]`, or null.
    pub dh_seq: *const f32,
    /// `∂L/∂a`, `[T, B, G·Hp]`.
    pub da: *mut f32,
    /// `∂L/∂u`, `[T, B, G·Hp]`: the same buffer as `da` except for the GRU.
    pub du: *mut f32,
    /// Backward panels (`pack_backward`).
    pub panels: *const E,
}

impl BwdCtx {
    /// The same views with `panels` as the backward panels.
    pub fn with_panels<E: WeightElem>(self, panels: *const E) -> BwdCtx<E> {
        let BwdCtx {
            batch,
            h,
            hp,
            gh,
            hs,
            cs,
            gates,
            cw,
            dh_seq,
            da,
            du,
            ..
        } = self;
        BwdCtx {
            batch,
            h,
            hp,
            gh,
            hs,
            cs,
            gates,
            cw,
            dh_seq,
            da,
            du,
            panels,
        }
    }
}

// SAFETY: the pointers refer to buffers that outlive the parallel region (seq_backward
// joins every task before reading or dropping them) and the inputs are only read. Writes
// to `da`/`du` go to disjoint blocks (see above); in the unit split a block written in
// one phase is read by other tasks only in a later phase, after the PhaseTeam's
// Release/Acquire hand-over, so no element is written by two threads or read while
// written.
unsafe impl<E: WeightElem> Send for BwdCtx<E> {}
// SAFETY: as above.
unsafe impl<E: WeightElem> Sync for BwdCtx<E> {}

/// The gradient carried between steps: `∂L/∂h` (and `∂L/∂c`) for the step being
/// processed (`cur`) and the one before it (`next`), `[B, Hp]` each. Every task holds
/// its own copy of the pointers (and swaps them itself after each step); the buffers are
/// shared.
#[derive(Clone, Copy)]
pub struct Carry {
    pub cur_h: *mut f32,
    pub next_h: *mut f32,
    pub cur_c: *mut f32,
    pub next_c: *mut f32,
}

impl Carry {
    pub fn swap(&mut self) {
        std::mem::swap(&mut self.cur_h, &mut self.next_h);
        std::mem::swap(&mut self.cur_c, &mut self.next_c);
    }
}

// SAFETY: as for BwdCtx: the buffers outlive the region; a task writes only its own block
// of `next_h`/`next_c` (its batch rows, or its part's columns in the unit split) and
// reads `cur_h`/`cur_c` only after the step that wrote them is complete (the same task's
// earlier step in the batch split, a finished PhaseTeam phase in the unit split).
unsafe impl Send for Carry {}
// SAFETY: as above.
unsafe impl Sync for Carry {}

/// `next_h[b] += Σ_j du[t, b, j] · W_hh[j, ·]` for rows `b0..b0+R` and the 16-column
/// tiles `cols`: the recurrent part of `∂L/∂h_{t−1}`.
///
/// # Safety
/// The buffers behind `ctx` and `next_h` must have the sizes the docs state, no other
/// task may touch the block (rows `b0..b0+R`, column tiles `cols`) of `next_h`
/// meanwhile, and `du` must be complete for step `t` (rows `b0..b0+R`, every column).
#[inline(always)]
pub unsafe fn recurrent_grad<S: Simd, E: WeightElem, const R: usize>(
    s: S,
    ctx: &BwdCtx<E>,
    t: usize,
    b0: usize,
    next_h: *mut f32,
    cols: std::ops::Range<usize>,
) {
    let (hp, gh) = (ctx.hp, ctx.gh);
    let mut rows = [std::ptr::null::<f32>(); R];
    for (r, row) in rows.iter_mut().enumerate() {
        // SAFETY: row (t, b0 + r) lies inside du [T, B, G·Hp].
        *row = unsafe { ctx.du.add((t * ctx.batch + b0 + r) * gh) };
    }
    for q in cols {
        let mut acc = [[s.splat(0.0); 2]; R];
        for (r, a) in acc.iter_mut().enumerate() {
            // SAFETY: columns 16q..16q+16 < Hp of row b0 + r of next_h.
            unsafe {
                let p = next_h.add((b0 + r) * hp + q * 2 * LANES);
                a[0] = s.load(p);
                a[1] = s.load(p.add(LANES));
            }
        }
        // SAFETY: each du row holds gh floats; panel q holds gh · 16 floats.
        unsafe {
            microkernel::<S, E, 2, R>(s, &rows, gh, ctx.panels.add(q * gh * 2 * LANES), &mut acc)
        };
        for (r, a) in acc.iter().enumerate() {
            // SAFETY: as for the loads above.
            unsafe {
                let p = next_h.add((b0 + r) * hp + q * 2 * LANES);
                s.store(p, a[0]);
                s.store(p.add(LANES), a[1]);
            }
        }
    }
}
