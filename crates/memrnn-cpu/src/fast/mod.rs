//! The fast path (f32): the same equations as the reference, organised for speed.
//!
//! Forward: the input products `a = x W_ihᵀ + b_ih` for all `T·B` rows are one SGEMM;
//! the time loop then runs the recurrent product fused with the gate arithmetic, one
//! output tile (8 units × all gates) at a time while that tile's weights are hot in L1
//! and a few batch rows accumulate in registers ([`recurrent`]). Batch rows never
//! interact, so rayon splits the batch into contiguous ranges and each task runs the
//! whole time loop for its rows with no synchronisation between steps.
//!
//! Backward: the reverse loop computes, per step and row, `∂L/∂a` and `∂L/∂u` from the
//! cached gates and `∂L/∂h_{t−1}` through `W_hh` (again a fused, register-tiled product),
//! storing the gate gradients of every step; the weight gradients, the bias gradients and
//! (optionally) the input gradient are then large products over all `T·B` rows.
//!
//! Results do not depend on the thread count: each row's arithmetic is the same whichever
//! task runs it, the SGEMMs split only their outputs, and column sums run rows in order.
//!
//! Precision ([`FastOptions::precision`]): the recurrent product reads `W_hh` rounded to
//! the precision from panels packed from the f32 master weights at every call, so the
//! rounded copy can never be stale; everything else (the input products, the gates, the
//! caches, the weight gradients) is f32. In bf16 or f16 the panels hold either the
//! half-width format (`recurrent::WeightElem`, widened in registers) or f32 holding the
//! same rounded values, whichever is faster for the pass ([`panel_format`]): the bits are
//! the same.

/// Calls `f::<S, E, N>(args…)` (`E`: the weight storage) with the const row count `N` equal to the run-time `n`, for
/// the counts listed: how `fwd_block`, `bwd_gates` and `recurrent_grad` reach their
/// monomorphised row tiles (also used by the fused slow-point search).
macro_rules! with_rows {
    ($n:expr, $f:ident::<$s:ty, $e:ty> $args:tt, [$($k:literal),+]) => {
        match $n {
            $($k => $f::<$s, $e, $k> $args,)+
            other => unreachable!("row tile of {other} rows: balanced_tile never exceeds the cell's maximum"),
        }
    };
    // The row counts a 16-register level uses, and those a 32-register level adds: the
    // branch on the constant `S::REGISTERS` is resolved at monomorphisation, so each SIMD
    // level compiles only its own tile sizes (all of them for every level tripled the
    // crate's build time).
    ($n:expr, $f:ident::<$s:ty, $e:ty> $args:tt, [$($k:literal),+], wide: [$($w:literal),+]) => {
        if <$s as $crate::fast::simd::Simd>::REGISTERS >= 32 {
            with_rows!($n, $f::<$s, $e> $args, [$($k),+, $($w),+])
        } else {
            with_rows!($n, $f::<$s, $e> $args, [$($k),+])
        }
    };
}

pub mod gemm;
pub mod gru;
pub mod lstm;
pub mod panel_format;
pub mod readout;
pub mod recurrent;
pub mod rnn;
pub mod simd;
mod team;

use gemm::{column_sums_acc, matmul, MatRef};
use memrnn_core::{
    check_finite, check_len, CellDims, CellKind, Error, Precision, Result, SeqShape,
};
pub use panel_format::PanelFormat;
use rayon::prelude::*;
use recurrent::{padded, recurrent_grad, BwdCtx, Carry, FwdCtx, WeightElem};
use simd::{Simd, SimdJob, SimdLevel, LANES};
use std::marker::PhantomData;
use std::ops::Range;
use team::PhaseTeam;

/// Options of a fast-path call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastOptions {
    pub simd: SimdLevel,
    /// Fill every scratch buffer the kernels must write with NaN first, so that an
    /// element a kernel forgets to write shows up in the outputs (tests turn this on).
    pub poison_scratch: bool,
    /// Storage of `W_hh` in the recurrent product (f32 arithmetic whatever it is).
    pub precision: Precision,
    /// How the forward time loop shares its work between threads.
    pub fwd_split: FwdSplit,
    /// In a half precision, whether the recurrent panels hold the format itself or f32
    /// (the same rounded values either way).
    pub panel_format: PanelFormat,
}

/// How the forward time loop shares its work between threads. Results are bit for bit
/// the same whichever is chosen (an element's arithmetic does not depend on the split);
/// only the speed differs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FwdSplit {
    /// [`FwdSplit::Units`] where the batch has fewer row tiles than there are threads
    /// (the batch split would leave threads idle), else [`FwdSplit::Batch`].
    #[default]
    Auto,
    /// Each thread runs the whole time loop for its own batch rows, all units, with no
    /// synchronisation between steps; every thread streams all of `W_hh` each step.
    Batch,
    /// Each thread computes its own range of 8-unit tiles for every row and the threads
    /// meet once per step (the next step reads every unit); each thread streams only its
    /// share of `W_hh`.
    Units,
}

impl Default for FastOptions {
    fn default() -> Self {
        FastOptions {
            simd: SimdLevel::detect(),
            poison_scratch: false,
            precision: Precision::F32,
            fwd_split: FwdSplit::Auto,
            panel_format: PanelFormat::Auto,
        }
    }
}

/// Per-cell step code (see `rnn.rs`, `gru.rs`, `lstm.rs`).
pub trait FastCell {
    /// Floats cached per step and row, in units of `Hp`.
    const CACHE_WIDTH: usize;
    /// Batch rows per forward tile with `registers` vector registers
    /// ([`simd::Simd::REGISTERS`]): rows × gates accumulators, plus the gate vectors and
    /// a broadcast, must fit without spilling.
    fn row_tile(registers: usize) -> usize;

    /// Forward step `t` for rows `b0..b0+n` (`1 ≤ n ≤ row_tile(S::REGISTERS)`) and the
    /// 8-unit tiles `units`.
    ///
    /// # Safety
    /// The buffers behind `ctx` have the documented sizes, no other task touches the
    /// block (rows `b0..b0+n`, unit tiles `units`) of step `t + 1`'s states and step
    /// `t`'s gate cache meanwhile, and step `t`'s states are complete for these rows (all
    /// their units).
    unsafe fn fwd_block<S: Simd, E: WeightElem>(
        s: S,
        ctx: &FwdCtx<E>,
        t: usize,
        b0: usize,
        n: usize,
        units: Range<usize>,
    );

    /// The gate part of backward step `t` for rows `b0..b0+n` (`1 ≤ n ≤ 8`) and the
    /// 8-unit tiles `units`: `∂L/∂a`, `∂L/∂u` and the direct part of `∂L/∂s_{t−1}`;
    /// [`recurrent_grad`] then adds the recurrent part.
    ///
    /// # Safety
    /// The buffers behind `ctx` and `carry` have the documented sizes; no other task
    /// touches the block (rows `b0..b0+n`, unit tiles `units`) of `da`, `du`,
    /// `carry.next_h` and `carry.next_c` meanwhile; steps after `t` are complete for
    /// these rows (all of `carry.cur_h`/`cur_c`'s columns for them).
    unsafe fn bwd_gates<S: Simd, E: WeightElem>(
        s: S,
        ctx: &BwdCtx<E>,
        carry: &Carry,
        t: usize,
        b0: usize,
        n: usize,
        units: Range<usize>,
    );
}

/// Rows per backward tile, every cell, with `registers` vector registers: the recurrent
/// part holds rows × 1 pair of accumulators (16 columns) + 1 pair of weight vectors + 1
/// broadcast. With 16 registers a pair is two 8-lane vectors: 4 rows need 4·2 + 2 + 1 =
/// 11. At AVX-512VL a pair is one 512-bit vector: 8 rows need 8 + 1 + 1 = 10 of 32 (one
/// tile covers the small-batch shape's 8 rows, so the backward panels stream once per
/// step instead of twice; more rows would fit, but each tile size is compiled once per
/// cell and precision, and larger batches are split across tasks anyway).
fn bwd_tile(registers: usize) -> usize {
    if registers >= 32 {
        8
    } else {
        4
    }
}

/// What the fast forward pass keeps for its backward pass.
pub struct FastCache {
    cell: CellDims,
    shape: SeqShape,
    precision: Precision,
    hp: usize,
    /// `h_0..h_T`, `[T+1, B, Hp]`.
    hs: Vec<f32>,
    /// `c_0..c_T` (LSTM only), `[T+1, B, Hp]`.
    cs: Vec<f32>,
    /// Gate cache, `[T, B, CACHE_WIDTH·Hp]`.
    gates: Vec<f32>,
}

impl FastCache {
    /// The cell the forward pass ran.
    pub fn cell(&self) -> CellDims {
        self.cell
    }

    /// The shape the forward pass ran.
    pub fn shape(&self) -> SeqShape {
        self.shape
    }
}

/// Outputs of the fast forward pass.
pub struct FastForward {
    /// `[T, B, H]`.
    pub h_seq: Vec<f32>,
    /// `[B, S]`.
    pub s_final: Vec<f32>,
    pub cache: FastCache,
}

/// Gradients from the fast backward pass, as in the reference.
pub struct FastGrads {
    pub dparams: Vec<f32>,
    pub ds0: Vec<f32>,
    pub dx: Option<Vec<f32>>,
}

/// Fails on NaN or infinity, scanning in parallel (inputs can be large).
fn check_finite_par(what: &str, data: &[f32]) -> Result<()> {
    const CHUNK: usize = 1 << 16;
    let bad = data
        .par_chunks(CHUNK)
        .enumerate()
        .find_first(|(_, c)| c.iter().any(|v| !v.is_finite()));
    match bad {
        None => Ok(()),
        Some((i, c)) => check_finite(what, c).map_err(|e| match e {
            Error::NonFinite { what, index, value } => Error::NonFinite {
                what,
                index: i * CHUNK + index,
                value,
            },
            other => other,
        }),
    }
}

/// Copies `g` gate blocks of `h` rows (each `cols` wide) into blocks of `hp` rows,
/// zero-padded: `[G·H, cols]` → `[G·Hp, cols]`.
fn pad_gate_rows(src: &[f32], g: usize, h: usize, hp: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; g * hp * cols];
    for gate in 0..g {
        out[gate * hp * cols..(gate * hp + h) * cols]
            .copy_from_slice(&src[gate * h * cols..(gate + 1) * h * cols]);
    }
    out
}

/// The inverse of [`pad_gate_rows`], into `dst`.
fn unpad_gate_rows(src: &[f32], g: usize, h: usize, hp: usize, cols: usize, dst: &mut [f32]) {
    for gate in 0..g {
        dst[gate * h * cols..(gate + 1) * h * cols]
            .copy_from_slice(&src[gate * hp * cols..(gate * hp + h) * cols]);
    }
}

/// Copies rows of `src` (`rows × from` floats) into rows of `to` floats (`to ≥ width`,
/// `from ≥ width`), `width` floats each; the rest of each destination row is untouched.
fn copy_rows(src: &[f32], from: usize, dst: &mut [f32], to: usize, width: usize) {
    dst.par_chunks_mut(to)
        .zip(src.par_chunks(from))
        .for_each(|(d, s)| d[..width].copy_from_slice(&s[..width]));
}

/// Contiguous batch ranges, one per task: as many tasks as threads, none empty, and no
/// more tasks than tiles of `tile` rows.
fn batch_tasks(batch: usize, tile: usize) -> Vec<Range<usize>> {
    let tiles = batch.div_ceil(tile);
    let n = rayon::current_num_threads().clamp(1, tiles.max(1));
    let per = batch.div_ceil(n);
    (0..n)
        .map(|i| i * per..((i + 1) * per).min(batch))
        .filter(|r| !r.is_empty())
        .collect()
}

/// The next tile's row count when `left` rows remain and tiles hold at most `max`: the
/// rows are spread evenly over the fewest tiles (4 rows with `max` 3 give 2 + 2, not
/// 3 + 1), since a tile streams the whole weight panel however few rows it has.
fn balanced_tile(left: usize, max: usize) -> usize {
    left.div_ceil(left.div_ceil(max))
}

fn fill_nan_if(poison: bool, v: &mut [f32]) {
    if poison {
        v.par_iter_mut().for_each(|x| *x = f32::NAN);
    }
}

struct FwdJob<C, E> {
    ctx: FwdCtx<E>,
    steps: usize,
    rows: Range<usize>,
    cell: PhantomData<C>,
}

impl<C: FastCell, E: WeightElem> SimdJob for FwdJob<C, E> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let units = 0..self.ctx.hp / LANES;
        for t in 0..self.steps {
            let mut b = self.rows.start;
            while b < self.rows.end {
                let n = balanced_tile(self.rows.end - b, C::row_tile(S::REGISTERS));
                // SAFETY: seq_forward sized every buffer for [T(+1), B, ·] and gave this
                // task the rows self.rows alone (all units); steps run in order.
                unsafe { C::fwd_block(s, &self.ctx, t, b, n, units.clone()) };
                b += n;
            }
        }
    }
}

/// Forward, units split: one member of a [`PhaseTeam`] with one phase per step, whose
/// parts are contiguous ranges of 8-unit tiles, every row.
struct FwdUnitJob<'a, C, E> {
    ctx: FwdCtx<E>,
    steps: usize,
    team: &'a PhaseTeam,
    cell: PhantomData<fn() -> C>,
}

impl<C: FastCell, E: WeightElem> SimdJob for FwdUnitJob<'_, C, E> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let (batch, team) = (self.ctx.batch, self.team);
        let unit_tiles = self.ctx.hp / LANES;
        let home = team.join();
        for t in 0..self.steps {
            // The loop body is written here, not passed as a closure: see
            // `PhaseTeam::phase` for why.
            let mut phase = team.phase(t, home);
            for part in phase.by_ref() {
                let units = split_range(unit_tiles, team.parts(), part);
                let mut b = 0;
                while b < batch {
                    let n = balanced_tile(batch - b, C::row_tile(S::REGISTERS));
                    // SAFETY: the team hands this part to one task alone, and the part
                    // writes only its own unit tiles of step t + 1's states and step t's
                    // gate cache; the phase of step t − 1, which completed every unit of
                    // step t's states, is done.
                    unsafe { C::fwd_block(s, &self.ctx, t, b, n, units.clone()) };
                    b += n;
                }
            }
            phase.wait();
        }
    }
}

struct BwdJob<C, E> {
    ctx: BwdCtx<E>,
    carry: Carry,
    steps: usize,
    rows: Range<usize>,
    cell: PhantomData<C>,
}

impl<C: FastCell, E: WeightElem> SimdJob for BwdJob<C, E> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(mut self, s: S) {
        for t in (0..self.steps).rev() {
            let mut b = self.rows.start;
            while b < self.rows.end {
                let n = balanced_tile(self.rows.end - b, bwd_tile(S::REGISTERS));
                let (units, cols) = (0..self.ctx.hp / LANES, 0..self.ctx.hp / (2 * LANES));
                // SAFETY: seq_backward sized every buffer and gave this task the rows
                // self.rows alone (all units and columns); steps run in reverse order,
                // and the gate part of step t precedes its recurrent part.
                unsafe {
                    C::bwd_gates(s, &self.ctx, &self.carry, t, b, n, units);
                    with_rows!(
                        n,
                        recurrent_grad::<S, E>(s, &self.ctx, t, b, self.carry.next_h, cols),
                        [1, 2, 3, 4],
                        wide: [5, 6, 7, 8]
                    );
                }
                b += n;
            }
            self.carry.swap();
        }
    }
}

/// Contiguous, near-equal parts of `0..n`, one per member of a team of `team`.
fn split_range(n: usize, team: usize, member: usize) -> Range<usize> {
    (member * n / team)..((member + 1) * n / team)
}

/// Whether the backward recurrence splits the hidden units (not the batch) across
/// threads: for small batches, where splitting the batch makes every thread stream all of
/// `W_hh` each step (the LSTM's at H 256 is 1 MiB, an L2's worth, from L3), while
/// splitting the units keeps each thread's half of the backward panels resident in its L2
/// (faster for the small-batch LSTM training step: benches/RESULTS.md). The forward pass
/// decides for itself ([`fwd_split_units`]). Results are identical either way: an
/// element's arithmetic does not depend on the split.
fn split_units(batch: usize, hp: usize, threads: usize) -> bool {
    threads > 1 && batch < 8 * threads && hp / (2 * LANES) >= threads
}

/// Backward, units split: one member of a [`PhaseTeam`] whose parts are contiguous
/// ranges of column tiles (16 wide) and the unit tiles (8 wide) they cover. Each step is
/// two phases: the gate part for a part's unit tiles (the recurrent part reads every
/// unit's ∂L/∂u, so it waits for the whole phase), then the recurrent part for its column
/// tiles (the next step's gate part reads every column of ∂L/∂h).
struct BwdUnitJob<'a, C, E> {
    ctx: BwdCtx<E>,
    carry: Carry,
    steps: usize,
    team: &'a PhaseTeam,
    cell: PhantomData<fn() -> C>,
}

impl<C: FastCell, E: WeightElem> SimdJob for BwdUnitJob<'_, C, E> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(mut self, s: S) {
        let (batch, team) = (self.ctx.batch, self.team);
        let col_tiles = self.ctx.hp / (2 * LANES);
        let cols_of = |part: usize| split_range(col_tiles, team.parts(), part);
        let home = team.join();
        for (i, t) in (0..self.steps).rev().enumerate() {
            let (ctx, carry) = (&self.ctx, &self.carry);
            // The loop bodies are written here, not passed as closures: see
            // `PhaseTeam::phase` for why.
            let mut gate_phase = team.phase(2 * i, home);
            for part in gate_phase.by_ref() {
                let cols = cols_of(part);
                let mut b = 0;
                while b < batch {
                    let n = balanced_tile(batch - b, bwd_tile(S::REGISTERS));
                    // SAFETY: the team hands this part to one task alone, and the part
                    // writes only ∂L/∂a, ∂L/∂u and the direct terms of next_h/next_c of
                    // its own unit tiles; the previous phase (the recurrent part of step
                    // t + 1), which completed ∂L/∂h in cur_h, is done.
                    unsafe { C::bwd_gates(s, ctx, carry, t, b, n, 2 * cols.start..2 * cols.end) };
                    b += n;
                }
            }
            gate_phase.wait();
            let mut grad_phase = team.phase(2 * i + 1, home);
            for part in grad_phase.by_ref() {
                let cols = cols_of(part);
                let mut b = 0;
                while b < batch {
                    let n = balanced_tile(batch - b, bwd_tile(S::REGISTERS));
                    // SAFETY: this part alone writes the column tiles `cols` of next_h
                    // (which hold its own units' direct terms); the gate phase of step t,
                    // which wrote ∂L/∂u of every unit, is done.
                    unsafe {
                        with_rows!(
                            n,
                            recurrent_grad::<S, E>(s, ctx, t, b, carry.next_h, cols.clone()),
                            [1, 2, 3, 4],
                        wide: [5, 6, 7, 8]
                        )
                    };
                    b += n;
                }
            }
            grad_phase.wait();
            self.carry.swap();
        }
    }
}

/// Runs `x [T, B, I]` from `s0 [B, S]` (zeros when `None`). Non-finite parameters,
/// inputs or initial states are errors.
pub fn seq_forward(
    opts: FastOptions,
    cell: &CellDims,
    params: &[f32],
    shape: SeqShape,
    x: &[f32],
    s0: Option<&[f32]>,
) -> Result<FastForward> {
    cell.layout().check("params", params.len())?;
    shape.check_inputs(cell, x.len(), s0.map(<[f32]>::len))?;
    check_finite("params", params)?;
    opts.precision.check_recurrent(cell, params)?;
    check_finite_par("x", x)?;
    if let Some(s0) = s0 {
        check_finite("s0", s0)?;
    }
    if !opts.simd.is_available() {
        return Err(Error::InvalidArgument(format!(
            "SIMD level {} is not available on this CPU",
            opts.simd.name()
        )));
    }
    Ok(match cell.kind {
        CellKind::Rnn => forward_impl::<rnn::Rnn>(opts, cell, params, shape, x, s0),
        CellKind::Gru => forward_impl::<gru::Gru>(opts, cell, params, shape, x, s0),
        CellKind::Lstm => forward_impl::<lstm::Lstm>(opts, cell, params, shape, x, s0),
    })
}

fn forward_impl<C: FastCell>(
    opts: FastOptions,
    cell: &CellDims,
    params: &[f32],
    shape: SeqShape,
    x: &[f32],
    s0: Option<&[f32]>,
) -> FastForward {
    let (steps, batch, input, h, g) = (
        shape.steps,
        shape.batch,
        cell.input,
        cell.hidden,
        cell.gates(),
    );
    let hp = padded(h);
    let gh = g * hp;
    let rows = shape.rows();
    let p = cell.layout().split(params);
    let w_ihp = pad_gate_rows(p.w_ih, g, h, hp, input);
    let b_ihp = pad_gate_rows(p.b_ih, g, h, hp, 1);
    let b_hhp = pad_gate_rows(p.b_hh, g, h, hp, 1);

    // Input side: one SGEMM over all T·B rows, on top of the bias.
    let mut a = vec![0.0f32; rows * gh];
    a.par_chunks_mut(gh)
        .for_each(|row| row.copy_from_slice(&b_ihp));
    matmul(
        &mut a,
        gh,
        true,
        MatRef::new(x, rows, input, input),
        MatRef::new(&w_ihp, gh, input, input).t(),
    );

    let lstm = cell.kind == CellKind::Lstm;
    let sd = cell.state_size();
    let mut hs = vec![0.0f32; (steps + 1) * batch * hp];
    let mut cs = vec![0.0f32; if lstm { (steps + 1) * batch * hp } else { 0 }];
    fill_nan_if(opts.poison_scratch, &mut hs[batch * hp..]);
    if lstm {
        fill_nan_if(opts.poison_scratch, &mut cs[batch * hp..]);
    }
    if let Some(s0) = s0 {
        copy_rows(s0, sd, &mut hs[..batch * hp], hp, h);
        if lstm {
            copy_rows(&s0[h..], sd, &mut cs[..batch * hp], hp, h);
        }
    }
    let mut gates = vec![0.0f32; rows * C::CACHE_WIDTH * hp];
    fill_nan_if(opts.poison_scratch, &mut gates);

    let ctx = FwdCtx {
        batch,
        h,
        hp,
        a: a.as_ptr(),
        b_hh: b_hhp.as_ptr(),
        // Set by `run_forward`, which packs the panels in the chosen precision.
        panels: std::ptr::null(),
        hs: hs.as_mut_ptr(),
        cs: cs.as_mut_ptr(),
        gates: gates.as_mut_ptr(),
        cw: C::CACHE_WIDTH * hp,
    };
    let threads = rayon::current_num_threads();
    let tile = C::row_tile(opts.simd.registers());
    let units = fwd_split_units(opts.fwd_split, batch, hp, tile, threads);
    let per_thread = f32_panel_bytes(cell) / if units { threads } else { 1 };
    match panel_elem(opts, per_thread) {
        Precision::F32 => run_forward::<C, f32>(opts, cell, p.w_hh, ctx, steps, units),
        Precision::Bf16 => run_forward::<C, half::bf16>(opts, cell, p.w_hh, ctx, steps, units),
        Precision::F16 => run_forward::<C, half::f16>(opts, cell, p.w_hh, ctx, steps, units),
    }

    let mut h_seq = vec![0.0f32; rows * h];
    copy_rows(&hs[batch * hp..], hp, &mut h_seq, h, h);
    let mut s_final = vec![0.0f32; batch * sd];
    copy_rows(&hs[steps * batch * hp..], hp, &mut s_final, sd, h);
    if lstm {
        for b in 0..batch {
            let src = &cs[(steps * batch + b) * hp..][..h];
            s_final[b * sd + h..(b + 1) * sd].copy_from_slice(src);
        }
    }
    FastForward {
        h_seq,
        s_final,
        cache: FastCache {
            cell: *cell,
            shape,
            precision: opts.precision,
            hp,
            hs,
            cs,
            gates,
        },
    }
}

/// Backpropagation through time for a forward pass of the fast path. `dh_seq [T, B, H]`
/// (zeros where a step has no loss) and `ds_final [B, S]` are the upstream gradients.
#[allow(clippy::too_many_arguments)]
pub fn seq_backward(
    opts: FastOptions,
    cell: &CellDims,
    params: &[f32],
    shape: SeqShape,
    x: &[f32],
    cache: &FastCache,
    dh_seq: Option<&[f32]>,
    ds_final: Option<&[f32]>,
    want_dx: bool,
) -> Result<FastGrads> {
    cell.layout().check("params", params.len())?;
    shape.check_inputs(cell, x.len(), None)?;
    if cache.cell != *cell || cache.shape != shape {
        return Err(Error::InvalidArgument(format!(
            "the forward cache is for a {} cell (I {}, H {}) over {:?}, not for this call's {} cell (I {}, H {}) over {shape:?}",
            cache.cell.kind, cache.cell.input, cache.cell.hidden, cache.shape, cell.kind, cell.input, cell.hidden
        )));
    }
    if cache.precision != opts.precision {
        return Err(Error::InvalidArgument(format!(
            "the forward cache was made with W_hh in {}, this backward call uses {}: run both \
             with the same precision",
            cache.precision, opts.precision
        )));
    }
    opts.precision.check_recurrent(cell, params)?;
    if let Some(d) = dh_seq {
        check_len("dh_seq", shape.rows() * cell.hidden, d.len(), || {
            format!("[T={}, B={}, H={}]", shape.steps, shape.batch, cell.hidden)
        })?;
        check_finite_par("dh_seq", d)?;
    }
    if let Some(d) = ds_final {
        check_len("ds_final", shape.batch * cell.state_size(), d.len(), || {
            format!("[B={}, S={}]", shape.batch, cell.state_size())
        })?;
        check_finite("ds_final", d)?;
    }
    Ok(match cell.kind {
        CellKind::Rnn => backward_impl::<rnn::Rnn>(
            opts, cell, params, shape, x, cache, dh_seq, ds_final, want_dx,
        ),
        CellKind::Gru => backward_impl::<gru::Gru>(
            opts, cell, params, shape, x, cache, dh_seq, ds_final, want_dx,
        ),
        CellKind::Lstm => backward_impl::<lstm::Lstm>(
            opts, cell, params, shape, x, cache, dh_seq, ds_final, want_dx,
        ),
    })
}

#[allow(clippy::too_many_arguments)]
fn backward_impl<C: FastCell>(
    opts: FastOptions,
    cell: &CellDims,
    params: &[f32],
    shape: SeqShape,
    x: &[f32],
    cache: &FastCache,
    dh_seq: Option<&[f32]>,
    ds_final: Option<&[f32]>,
    want_dx: bool,
) -> FastGrads {
    let (steps, batch, input, h, g) = (
        shape.steps,
        shape.batch,
        cell.input,
        cell.hidden,
        cell.gates(),
    );
    let hp = cache.hp;
    let gh = g * hp;
    let rows = shape.rows();
    let sd = cell.state_size();
    let lstm = cell.kind == CellKind::Lstm;
    let layout = cell.layout();
    let p = layout.split(params);

    let dh_p = dh_seq.map(|d| {
        let mut out = vec![0.0f32; rows * hp];
        copy_rows(d, h, &mut out, hp, h);
        out
    });
    // Ping-pong carries: [B, Hp] each, for h and (LSTM) c.
    let mut carry_h = [vec![0.0f32; batch * hp], vec![0.0f32; batch * hp]];
    let mut carry_c = [vec![0.0f32; batch * hp], vec![0.0f32; batch * hp]];
    if let Some(d) = ds_final {
        copy_rows(d, sd, &mut carry_h[0], hp, h);
        if lstm {
            copy_rows(&d[h..], sd, &mut carry_c[0], hp, h);
        }
    }
    if opts.poison_scratch {
        // Only the real columns of `next` are written before they are read; the padding
        // must stay zero, so poison just the real part.
        for b in 0..batch {
            carry_h[1][b * hp..b * hp + h]
                .iter_mut()
                .for_each(|v| *v = f32::NAN);
        }
    }
    let mut da = vec![0.0f32; rows * gh];
    fill_nan_if(opts.poison_scratch, &mut da);
    let mut du_own = if cell.kind == CellKind::Gru {
        let mut v = vec![0.0f32; rows * gh];
        fill_nan_if(opts.poison_scratch, &mut v);
        v
    } else {
        Vec::new()
    };
    let da_ptr = da.as_mut_ptr();
    let du_ptr = if du_own.is_empty() {
        da_ptr
    } else {
        du_own.as_mut_ptr()
    };
    let ctx = BwdCtx {
        batch,
        h,
        hp,
        hs: cache.hs.as_ptr(),
        cs: cache.cs.as_ptr(),
        gh,
        gates: cache.gates.as_ptr(),
        cw: C::CACHE_WIDTH * hp,
        dh_seq: dh_p.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
        da: da_ptr,
        du: du_ptr,
        // Set by `run_backward`, which packs the panels in the chosen precision.
        panels: std::ptr::null(),
    };
    let [h0, h1] = &mut carry_h;
    let [c0, c1] = &mut carry_c;
    let carry = Carry {
        cur_h: h0.as_mut_ptr(),
        next_h: h1.as_mut_ptr(),
        cur_c: c0.as_mut_ptr(),
        next_c: c1.as_mut_ptr(),
    };
    let threads = rayon::current_num_threads();
    let units = split_units(batch, hp, threads);
    let per_thread = f32_panel_bytes(cell) / if units { threads } else { 1 };
    match panel_elem(opts, per_thread) {
        Precision::F32 => run_backward::<C, f32>(opts, cell, p.w_hh, ctx, carry, steps, units),
        Precision::Bf16 => {
            run_backward::<C, half::bf16>(opts, cell, p.w_hh, ctx, carry, steps, units)
        }
        Precision::F16 => {
            run_backward::<C, half::f16>(opts, cell, p.w_hh, ctx, carry, steps, units)
        }
    }
    // After T swaps the latest carry (∂L/∂s_0) is in buffer T mod 2.
    let last = steps % 2;
    let mut ds0 = vec![0.0f32; batch * sd];
    copy_rows(&carry_h[last], hp, &mut ds0, sd, h);
    if lstm {
        for b in 0..batch {
            ds0[b * sd + h..(b + 1) * sd].copy_from_slice(&carry_c[last][b * hp..b * hp + h]);
        }
    }

    let du: &[f32] = if du_own.is_empty() { &da } else { &du_own };
    let da_m = MatRef::new(&da, rows, gh, gh);
    let du_m = MatRef::new(du, rows, gh, gh);
    let mut dparams = vec![0.0f32; layout.len()];
    let grads = layout.split_mut(&mut dparams);
    // ∂L/∂W_ih = Σ_t daᵀ x, over all T·B rows at once.
    let mut dw = vec![0.0f32; gh * input];
    matmul(
        &mut dw,
        input,
        false,
        da_m.t(),
        MatRef::new(x, rows, input, input),
    );
    unpad_gate_rows(&dw, g, h, hp, input, grads.w_ih);
    // ∂L/∂W_hh = Σ_t duᵀ h_{t−1}: hs rows 0..T·B are exactly h_0..h_{T−1}.
    let mut dw = vec![0.0f32; gh * h];
    matmul(
        &mut dw,
        h,
        false,
        du_m.t(),
        MatRef::new(&cache.hs[..rows * hp], rows, h, hp),
    );
    unpad_gate_rows(&dw, g, h, hp, h, grads.w_hh);
    let mut db = vec![0.0f32; gh];
    column_sums_acc(&da, rows, gh, gh, &mut db);
    unpad_gate_rows(&db, g, h, hp, 1, grads.b_ih);
    if !du_own.is_empty() {
        // Only the GRU's ∂L/∂u differs from ∂L/∂a (in the n block); elsewhere the two
        // bias gradients are the same sums.
        db.iter_mut().for_each(|v| *v = 0.0);
        column_sums_acc(du, rows, gh, gh, &mut db);
    }
    unpad_gate_rows(&db, g, h, hp, 1, grads.b_hh);
    let dx = want_dx.then(|| {
        let w_ihp = pad_gate_rows(p.w_ih, g, h, hp, input);
        let mut dx = vec![0.0f32; rows * input];
        matmul(
            &mut dx,
            input,
            false,
            da_m,
            MatRef::new(&w_ihp, gh, input, input),
        );
        dx
    });
    drop(du_own);
    FastGrads { dparams, ds0, dx }
}

/// The forward time loop with `W_hh` rounded to the precision and packed into panels of
/// `E` (`ctx` complete but for its panels): the unit split ([`fwd_split_units`]) or the
/// batch split.
fn run_forward<C: FastCell, E: WeightElem>(
    opts: FastOptions,
    cell: &CellDims,
    w_hh: &[f32],
    ctx: FwdCtx,
    steps: usize,
    split_units: bool,
) {
    let panels = recurrent::pack_forward::<E>(cell, w_hh, opts.precision);
    let ctx = ctx.with_panels(panels.as_ptr());
    let threads = rayon::current_num_threads();
    if split_units {
        let team = PhaseTeam::new(steps, threads);
        run_team(threads, || {
            opts.simd.run(FwdUnitJob::<C, E> {
                ctx,
                steps,
                team: &team,
                cell: PhantomData,
            })
        });
    } else {
        // Every thread gets rows, even when the batch is a single row tile (the small-
        // batch shape's 8 rows are one tile at AVX-512VL): each task streams the whole
        // W_hh every step from its own core's caches whatever its row count, so splitting
        // the rows across cores divides the FMAs among them and leaves each core's weight
        // traffic as it was (two tiles of 4 rows instead of one of 8 on this 2-core shape).
        batch_tasks(ctx.batch, 1).into_par_iter().for_each(|rows| {
            opts.simd.run(FwdJob::<C, E> {
                ctx,
                steps,
                rows,
                cell: PhantomData,
            })
        });
    }
}

/// Runs `member` on `threads` tasks of the current rayon pool (this one included), the
/// members of a [`PhaseTeam`]. The tasks run on the backend's own pool (the caller
/// installed it); no part waits for a member that has not started (see `team`), so
/// this cannot deadlock however rayon schedules the tasks.
fn run_team(threads: usize, member: impl Fn() + Sync) {
    rayon::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|_| member());
        }
        member();
    });
}

/// Whether the forward time loop splits the units (not the batch) across `threads`:
/// as `split` says, or, for [`FwdSplit::Auto`], when the batch has fewer row tiles of
/// `tile` than there are threads: splitting the batch would then give each thread a
/// partial tile that streams all of `W_hh` for a few rows, while the unit split runs
/// full tiles over half the weights each and meets once per step. Measured (median of 8
/// alternated runs, `benches/RESULTS.md`): the small-batch forward (B 8) at AVX-512VL,
/// 8-row tiles, 30.5 ms split by units against 37.8 by rows (LSTM), 23.1 against 36.6
/// (GRU); with AVX2's 2-row tiles the batch split stays (4 tiles ≥ 2 threads). A single
/// unit tile cannot be split.
fn fwd_split_units(split: FwdSplit, batch: usize, hp: usize, tile: usize, threads: usize) -> bool {
    let possible = threads > 1 && hp / LANES > 1;
    match split {
        FwdSplit::Batch => false,
        FwdSplit::Units => possible,
        FwdSplit::Auto => possible && batch.div_ceil(tile) < threads,
    }
}

/// Bytes of `cell`'s recurrent panels in f32 (forward and backward panels alike hold
/// about `G·Hp·H` weights).
fn f32_panel_bytes(cell: &CellDims) -> usize {
    cell.gates() * padded(cell.hidden) * cell.hidden * std::mem::size_of::<f32>()
}

/// The element type the recurrent panels take for a pass whose threads each stream
/// `f32_bytes_per_thread` bytes of f32 panels per step: f32, or the precision's own
/// half-width format where that pays ([`panel_format`]). Either computes the same bits.
fn panel_elem(opts: FastOptions, f32_bytes_per_thread: usize) -> Precision {
    let half = panel_format::half_width_pays(
        opts.panel_format,
        f32_bytes_per_thread,
        panel_format::l2_bytes_per_core(),
    );
    if half {
        opts.precision
    } else {
        Precision::F32
    }
}

/// The backward time loop with `W_hh` rounded to the precision and packed into panels of
/// `E` (`ctx` complete but for its panels): the unit split for small batches
/// ([`split_units`]), or the batch split.
fn run_backward<C: FastCell, E: WeightElem>(
    opts: FastOptions,
    cell: &CellDims,
    w_hh: &[f32],
    ctx: BwdCtx,
    carry: Carry,
    steps: usize,
    split_units: bool,
) {
    let panels = recurrent::pack_backward::<E>(cell, w_hh, opts.precision);
    let ctx = ctx.with_panels(panels.as_ptr());
    let batch = ctx.batch;
    let threads = rayon::current_num_threads();
    if split_units {
        let team = PhaseTeam::new(2 * steps, threads);
        run_team(threads, || {
            opts.simd.run(BwdUnitJob::<C, E> {
                ctx,
                carry,
                steps,
                team: &team,
                cell: PhantomData,
            })
        });
    } else {
        batch_tasks(batch, bwd_tile(opts.simd.registers()))
            .into_par_iter()
            .for_each(|rows| {
                opts.simd.run(BwdJob::<C, E> {
                    ctx,
                    carry,
                    steps,
                    rows,
                    cell: PhantomData,
                })
            });
    }
}
