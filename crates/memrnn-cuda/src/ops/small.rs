//! Launchers for `kernels/small.cu`: Adam, bias-gradient column sums, the transpose of
//! W_hh, and the small elementwise kernels behind speed, Jacobians and NaN poisoning.
//! Every launcher checks the lengths it relies on before it launches.

use crate::device::{backend_err, Device, LaunchDims, View};
use crate::kernels::DevPtr;
use crate::kernels::{
    self, AdamGroupArgs, AdamParams, AxpyParams, ClipAdamEnsParams, ClipAdamParams, ColSumParams,
    FillParams, OneHotParams, RepeatRowsParams, RoundParams, SpeedParams, SubParams,
    TransposeParams,
};
use memrnn_core::{Precision, Result};

const THREADS: u32 = 256;

/// A grid-stride 1-D launch over `n` elements.
pub(crate) fn grid1d(n: usize, sms: u32) -> LaunchDims {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, sms as usize * 16);
    LaunchDims::linear(blocks as u32, THREADS, 0)
}

fn need(what: &str, got: usize, want: usize) -> Result<()> {
    if got < want {
        Err(backend_err(format!(
            "{what} holds {got} elements, the kernel needs {want}"
        )))
    } else {
        Ok(())
    }
}

fn i32_of(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| backend_err(format!("{what} = {v} exceeds a 32-bit size")))
}

/// Adam's scalars for the update numbered `step + 1`, computed exactly as
/// `memrnn_core::adam_update_host` does.
pub(crate) struct AdamScalars {
    pub beta1: f32,
    pub beta2: f32,
    pub step_size: f32,
    pub bc2_sqrt: f32,
    pub eps: f32,
}

/// One Adam step in place over the first `n` elements.
pub(crate) fn adam_update(
    dev: &Device,
    p: View<'_, f32>,
    g: View<'_, f32>,
    m: View<'_, f32>,
    v: View<'_, f32>,
    n: usize,
    s: &AdamScalars,
) -> Result<()> {
    for (what, len) in [
        ("params", p.len()),
        ("grad", g.len()),
        ("m", m.len()),
        ("v", v.len()),
    ] {
        need(what, len, n)?;
    }
    let params = AdamParams {
        p: dev.ptr(p)?,
        g: dev.ptr(g)?,
        m: dev.ptr(m)?,
        v: dev.ptr(v)?,
        n: n as i64,
        beta1: s.beta1,
        beta2: s.beta2,
        step_size: s.step_size,
        bc2_sqrt: s.bc2_sqrt,
        eps: s.eps,
    };
    // The kernel touches indices < n of each buffer only (checked above).
    dev.launch(&kernels::ADAM_UPDATE, grid1d(n, dev.info().sms), params)
}

/// `out[c] = Σ_r m[r, c]` for `m [rows, cols]`.
pub(crate) fn col_sum(
    dev: &Device,
    m: View<'_, f32>,
    rows: usize,
    cols: usize,
    out: View<'_, f32>,
) -> Result<()> {
    need("col_sum input", m.len(), rows * cols)?;
    need("col_sum output", out.len(), cols)?;
    let params = ColSumParams {
        m: dev.ptr(m)?,
        out: dev.ptr(out)?,
        r: rows as i64,
        c: i32_of(cols, "columns")?,
    };
    let dims = LaunchDims {
        grid: (cols.div_ceil(32) as u32, 1, 1),
        block: (32, 8, 1),
        smem: 0,
        cooperative: false,
    };
    // The kernel reads m[r*cols + c] and writes out[c] for c < cols, r < rows only.
    dev.launch(&kernels::COL_SUM, dims, params)
}

/// `out [cols, rows] = inp [rows, cols]ᵀ`.
pub(crate) fn transpose(
    dev: &Device,
    inp: View<'_, f32>,
    rows: usize,
    cols: usize,
    out: View<'_, f32>,
) -> Result<()> {
    need("transpose input", inp.len(), rows * cols)?;
    need("transpose output", out.len(), rows * cols)?;
    let params = TransposeParams {
        inp: dev.ptr(inp)?,
        out: dev.ptr(out)?,
        r: i32_of(rows, "rows")?,
        c: i32_of(cols, "columns")?,
    };
    let dims = LaunchDims {
        grid: (cols.div_ceil(32) as u32, rows.div_ceil(32) as u32, 1),
        block: (32, 8, 1),
        smem: 0,
        cooperative: false,
    };
    // Both buffers hold rows*cols elements and the kernel guards r < rows, c < cols.
    dev.launch(&kernels::TRANSPOSE, dims, params)
}

/// Per row of `[n, s]`: `speed = Σ (f − x)²`, `twice_e = 2 (f − x)`.
pub(crate) fn speed(
    dev: &Device,
    f: View<'_, f32>,
    x: View<'_, f32>,
    speed: View<'_, f32>,
    twice_e: View<'_, f32>,
    n: usize,
    s: usize,
) -> Result<()> {
    need("F(s)", f.len(), n * s)?;
    need("states", x.len(), n * s)?;
    need("speed", speed.len(), n)?;
    need("2(F(s) - s)", twice_e.len(), n * s)?;
    let params = SpeedParams {
        f: dev.ptr(f)?,
        s: dev.ptr(x)?,
        speed: dev.ptr(speed)?,
        twice_e: dev.ptr(twice_e)?,
        n: i32_of(n, "points")?,
        s_len: i32_of(s, "state size")?,
    };
    // One warp per row n < N, lanes over k < S.
    let dims = LaunchDims::linear(n.div_ceil(8).max(1) as u32, 256, 0);
    dev.launch(&kernels::SPEED, dims, params)
}

/// `out = a − b` over `n` elements.
pub(crate) fn sub(
    dev: &Device,
    out: View<'_, f32>,
    a: View<'_, f32>,
    b: View<'_, f32>,
    n: usize,
) -> Result<()> {
    need("out", out.len(), n)?;
    need("a", a.len(), n)?;
    need("b", b.len(), n)?;
    let params = SubParams {
        out: dev.ptr(out)?,
        a: dev.ptr(a)?,
        b: dev.ptr(b)?,
        n: n as i64,
    };
    dev.launch(&kernels::SUB, grid1d(n, dev.info().sms), params)
}

/// `out[(i·reps + r), :] = inp[i, :]` for `inp [rows, cols]`, `r < reps`.
pub(crate) fn repeat_rows(
    dev: &Device,
    inp: View<'_, f32>,
    out: View<'_, f32>,
    rows: usize,
    reps: usize,
    cols: usize,
) -> Result<()> {
    need("repeat input", inp.len(), rows * cols)?;
    need("repeat output", out.len(), rows * reps * cols)?;
    let params = RepeatRowsParams {
        inp: dev.ptr(inp)?,
        out: dev.ptr(out)?,
        n: i32_of(rows, "rows")?,
        s: i32_of(reps, "repeats")?,
        c: i32_of(cols, "columns")?,
    };
    // Writes e < rows*reps*cols, reads (e / cols / reps)*cols + c < rows*cols.
    let dims = grid1d(rows * reps * cols, dev.info().sms);
    dev.launch(&kernels::REPEAT_ROWS, dims, params)
}

/// `out [n·s, s]`, row `(i·s + j)` = `e_j`.
pub(crate) fn one_hot(dev: &Device, out: View<'_, f32>, n: usize, s: usize) -> Result<()> {
    need("one-hot output", out.len(), n * s * s)?;
    let params = OneHotParams {
        out: dev.ptr(out)?,
        n: i32_of(n, "points")?,
        s: i32_of(s, "state size")?,
    };
    dev.launch(&kernels::ONE_HOT, grid1d(n * s * s, dev.info().sms), params)
}

/// `out[i] = v` for every element of `out`.
pub(crate) fn fill(dev: &Device, out: View<'_, f32>, v: f32) -> Result<()> {
    let n = out.len();
    let params = FillParams {
        out: dev.ptr(out)?,
        v,
        n: n as i64,
    };
    dev.launch(&kernels::FILL, grid1d(n, dev.info().sms), params)
}

/// The copies of `W_hh` that [`round_recurrent`] writes (any subset).
#[derive(Clone, Copy, Default)]
pub(crate) struct RoundOutputs<'a> {
    /// `[R, C]` in the storage format (bf16 / f16 bits): the forward's weights.
    pub half: Option<View<'a, u16>>,
    /// `[C, R]`, the transpose, in the storage format: the backward's weights.
    pub half_t: Option<View<'a, u16>>,
    /// `[R, C]` rounded and widened back to f32: the weights of the ops that run the f32
    /// kernels on rounded weights.
    pub f32: Option<View<'a, f32>>,
}

/// `w [rows, cols]` rounded to `precision` (nearest, ties to even: exactly
/// [`Precision::round`], except that a NaN becomes the canonical NaN) into `out`.
/// `first_overflow` (one element, zeroed by the caller) becomes `rows·cols − i` for the
/// first finite weight `i` that rounds to an infinity, and stays 0 when none does.
pub(crate) fn round_recurrent(
    dev: &Device,
    precision: Precision,
    w: View<'_, f32>,
    rows: usize,
    cols: usize,
    out: RoundOutputs<'_>,
    first_overflow: View<'_, u32>,
) -> Result<()> {
    let kernel = match precision {
        Precision::Bf16 => &kernels::ROUND_RECURRENT_BF16,
        Precision::F16 => &kernels::ROUND_RECURRENT_F16,
        Precision::F32 => {
            return Err(backend_err(
                "internal: round_recurrent called for f32 weights",
            ))
        }
    };
    let n = rows
        .checked_mul(cols)
        .ok_or_else(|| backend_err("W_hh's size overflows"))?;
    need("W_hh", w.len(), n)?;
    need("overflow flag", first_overflow.len(), 1)?;
    let null = DevPtr::default();
    let params = RoundParams {
        inp: dev.ptr(w)?,
        out: match out.half {
            Some(v) => {
                need("half W_hh", v.len(), n)?;
                dev.ptr(v)?
            }
            None => null,
        },
        out_t: match out.half_t {
            Some(v) => {
                need("half W_hhᵀ", v.len(), n)?;
                dev.ptr(v)?
            }
            None => null,
        },
        out_f32: match out.f32 {
            Some(v) => {
                need("rounded W_hh", v.len(), n)?;
                dev.ptr(v)?
            }
            None => null,
        },
        first_overflow: dev.ptr(first_overflow)?,
        r: i32_of(rows, "W_hh rows")?,
        c: i32_of(cols, "W_hh columns")?,
    };
    // Every non-null output holds rows·cols elements (checked above); the kernel writes
    // indices below that and one flag element.
    dev.launch(kernel, grid1d(n, dev.info().sms), params)
}

/// `y += alpha · x` over `n` elements.
pub(crate) fn axpy(
    dev: &Device,
    y: View<'_, f32>,
    alpha: f32,
    x: View<'_, f32>,
    n: usize,
) -> Result<()> {
    need("y", y.len(), n)?;
    need("x", x.len(), n)?;
    let params = AxpyParams {
        y: dev.ptr(y)?,
        x: dev.ptr(x)?,
        n: n as i64,
        alpha,
    };
    dev.launch(&kernels::AXPY, grid1d(n, dev.info().sms), params)
}

/// One group of [`clip_adam`]: params, grad, m, v and the element count.
pub(crate) type GroupViews<'a> = (
    View<'a, f32>,
    View<'a, f32>,
    View<'a, f32>,
    View<'a, f32>,
    usize,
);

/// Threads of clip_norm_f32's single block (`CLIP_THREADS` in kernels/small.cu).
const CLIP_THREADS: u32 = 256;

/// The global norm and clip scale of up to four gradients into `clip [2]`, then Adam on
/// every group with its gradient scaled (kernels/small.cu: clip_norm_f32, clip_adam_f32).
/// The divergence guard of [`clip_adam`]: `loss [1]`, `halted [1]` and the loss limit.
pub(crate) type GuardViews<'a> = (View<'a, f32>, View<'a, f32>, f32);

pub(crate) fn clip_adam(
    dev: &Device,
    groups: &[GroupViews<'_>],
    clip: View<'_, f32>,
    guard: Option<GuardViews<'_>>,
    max_norm: Option<f32>,
    s: &AdamScalars,
) -> Result<()> {
    let params = clip_params(dev, groups, clip, guard, max_norm, s)?;
    // Each kernel touches indices < n of each group's buffers (checked by clip_params;
    // unused slots have n = 0), clip[0..3], and with the guard loss[0] and halted[0].
    dev.launch(
        &kernels::CLIP_NORM,
        LaunchDims::linear(1, CLIP_THREADS, 0),
        params,
    )?;
    let total: usize = groups.iter().map(|g| g.4).sum();
    if total > 0 {
        dev.launch(&kernels::CLIP_ADAM, grid1d(total, dev.info().sms), params)?;
    }
    Ok(())
}

/// One ensemble member's arguments of [`clip_adam_ensemble`]: its groups, its
/// `[norm, scale, skipped]` output, its guard and its Adam scalars.
pub(crate) struct MemberViews<'a> {
    pub groups: Vec<GroupViews<'a>>,
    pub clip: View<'a, f32>,
    pub guard: Option<GuardViews<'a>>,
    pub scalars: AdamScalars,
}

/// [`clip_adam`] for the members of an ensemble: one launch of each kernel per
/// [`kernels::CLIP_ENS_MAX`] members (kernels/small.cu: clip_norm_ens_f32 with a block
/// per member, clip_adam_ens_f32 with the same blocks per member), each member with its
/// own norm, scale and guard and exactly `clip_adam`'s arithmetic.
pub(crate) fn clip_adam_ensemble(
    dev: &Device,
    members: &[MemberViews<'_>],
    max_norm: Option<f32>,
) -> Result<()> {
    for chunk in members.chunks(kernels::CLIP_ENS_MAX) {
        let mut m = [None; kernels::CLIP_ENS_MAX];
        let mut most = 0usize;
        for (slot, mv) in m.iter_mut().zip(chunk) {
            *slot = Some(clip_params(
                dev,
                &mv.groups,
                mv.clip,
                mv.guard,
                max_norm,
                &mv.scalars,
            )?);
            most = most.max(mv.groups.iter().map(|g| g.4).sum());
        }
        let first = m[0].ok_or_else(|| backend_err("internal: an empty ensemble chunk"))?;
        // Unused slots repeat the first member and are never read: clip_norm_ens_f32 has
        // exactly `members` blocks, clip_adam_ens_f32 returns past them.
        let params = ClipAdamEnsParams {
            m: m.map(|p| p.unwrap_or(first)),
            members: chunk.len() as i32,
            blocks_per_member: 1,
        };
        let n = chunk.len() as u32;
        // clip_norm_ens_f32: block k reads member k's groups (indices < n, checked by
        // clip_params) and writes its clip[0..3] (and guard); members' buffers are their
        // own tensors, so no two blocks write the same element.
        dev.launch(
            &kernels::CLIP_NORM_ENS,
            LaunchDims::linear(n, CLIP_THREADS, 0),
            params,
        )?;
        if most > 0 {
            // The blocks one member gets: clip_adam's grid for the largest member, shared
            // out so that the whole launch stays within grid1d's cap.
            let per = grid1d(most, dev.info().sms).grid.0.div_ceil(n).max(1);
            let params = ClipAdamEnsParams {
                blocks_per_member: per as i32,
                ..params
            };
            dev.launch(
                &kernels::CLIP_ADAM_ENS,
                LaunchDims::linear(per * n, THREADS, 0),
                params,
            )?;
        }
    }
    Ok(())
}

/// The kernel arguments of one clipped Adam update, checked against the views.
fn clip_params(
    dev: &Device,
    groups: &[GroupViews<'_>],
    clip: View<'_, f32>,
    guard: Option<GuardViews<'_>>,
    max_norm: Option<f32>,
    s: &AdamScalars,
) -> Result<ClipAdamParams> {
    if groups.len() > 4 {
        return Err(backend_err(format!(
            "clipped Adam takes at most 4 groups, got {}",
            groups.len()
        )));
    }
    need("clip", clip.len(), 3)?;
    let (loss, halted, max_loss) = match guard {
        Some((l, h, m)) => {
            need("guard loss", l.len(), 1)?;
            need("guard halted", h.len(), 1)?;
            (dev.ptr(l)?, dev.ptr(h)?, m)
        }
        None => (DevPtr(0), DevPtr(0), 0.0),
    };
    let mut args = [AdamGroupArgs::default(); 4];
    for (a, &(p, g, m, v, n)) in args.iter_mut().zip(groups) {
        for (what, len) in [
            ("params", p.len()),
            ("grad", g.len()),
            ("m", m.len()),
            ("v", v.len()),
        ] {
            need(what, len, n)?;
        }
        *a = AdamGroupArgs {
            p: dev.ptr(p)?,
            g: dev.ptr(g)?,
            m: dev.ptr(m)?,
            v: dev.ptr(v)?,
            n: n as i64,
        };
    }
    Ok(ClipAdamParams {
        g0: args[0],
        g1: args[1],
        g2: args[2],
        g3: args[3],
        clip: dev.ptr(clip)?,
        loss,
        halted,
        max_loss,
        has_guard: guard.is_some() as i32,
        max_norm: max_norm.unwrap_or(0.0),
        has_max: max_norm.is_some() as i32,
        beta1: s.beta1,
        beta2: s.beta2,
        step_size: s.step_size,
        bc2_sqrt: s.bc2_sqrt,
        eps: s.eps,
    })
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::device::sim::SimDevice;
    use crate::SimProps;

    fn sim() -> Device {
        Device::Sim(SimDevice::new(SimProps::small()).expect("the simulated device"))
    }

    /// Values that exercise every rounding case of both formats: zeros, the f16 and bf16
    /// subnormals and their ties, the overflow boundaries (65504, 65519.99, 65520 in f16;
    /// the largest f32 values, which overflow bf16), infinities, NaNs, and random bits.
    fn rounding_inputs(seed: u64) -> Vec<f32> {
        let mut v = vec![
            0.0,
            -0.0,
            1.0,
            -1.5,
            65504.0,
            65519.99,
            65520.0,
            -65520.0,
            1e5,
            f32::MAX,
            -f32::MAX,
            f32::from_bits(0x7f7f_8000), // ties to even up to an infinity in bf16
            f32::from_bits(0x7f7f_7fff),
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7fa0_0001), // a signalling NaN pattern
            f32::MIN_POSITIVE,
            f32::from_bits(1),                 // the smallest f32 subnormal
            f32::from_bits(0x0040_8000),       // an f32 subnormal, a bf16 tie
            (-24f32).exp2(),                   // the smallest f16 subnormal
            (-25f32).exp2(),                   // half of it: a tie, rounds to 0
            1.5 * (-25f32).exp2(),             // rounds up to the smallest subnormal
            (-14f32).exp2() - (-25f32).exp2(), // rounds up into the normal range
            3.0 * (-26f32).exp2(),
        ];
        for bits in (0..0x7c00u16).step_by(7) {
            let h = half::f16::from_bits(bits).to_f32();
            let next = half::f16::from_bits(bits + 1).to_f32();
            v.extend([h, -h, (h + next) / 2.0, -(h + next) / 2.0]);
        }
        let mut state = seed;
        for _ in 0..20_000 {
            // splitmix64: random f32 bit patterns over the whole range
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            v.push(f32::from_bits((z ^ (z >> 31)) as u32));
        }
        v
    }

    fn same(got: f32, want: f32) -> bool {
        // A NaN narrows to the canonical NaN (CUDA) where `half` keeps the payload.
        if want.is_nan() {
            got.is_nan()
        } else {
            got.to_bits() == want.to_bits()
        }
    }

    /// The rounding kernel against `Precision::round` bit for bit (every output: the
    /// half copy, its transpose and the widened f32 copy), and its overflow flag against
    /// the first finite weight that the host sees overflow.
    #[test]
    fn round_recurrent_matches_precision_round_bit_for_bit() {
        let seed = 0x00f1_6e15_u64;
        let dev = sim();
        let mut input = rounding_inputs(seed);
        let cols = 37;
        input.truncate(input.len() / cols * cols);
        let rows = input.len() / cols;
        let n = rows * cols;
        for p in [Precision::Bf16, Precision::F16] {
            let w = dev.htod(&input).expect("upload");
            let half = dev.alloc::<u16>(n).expect("alloc");
            let half_t = dev.alloc::<u16>(n).expect("alloc");
            let wide = dev.alloc::<f32>(n).expect("alloc");
            let flag = dev.zeros::<u32>(1).expect("alloc");
            let out = RoundOutputs {
                half: Some(half.all()),
                half_t: Some(half_t.all()),
                f32: Some(wide.all()),
            };
            round_recurrent(&dev, p, w.all(), rows, cols, out, flag.all()).expect("launch");
            let (h, ht, f) = (
                dev.dtoh(half.all()).expect("down"),
                dev.dtoh(half_t.all()).expect("down"),
                dev.dtoh(wide.all()).expect("down"),
            );
            let widen = |bits: u16| match p {
                Precision::Bf16 => half::bf16::from_bits(bits).to_f32(),
                _ => half::f16::from_bits(bits).to_f32(),
            };
            for (i, &x) in input.iter().enumerate() {
                let want = p.round(x);
                let (r, c) = (i / cols, i % cols);
                let what = format!("seed {seed:#x}: {p}: round({x:e} = {:#010x})", x.to_bits());
                assert!(same(widen(h[i]), want), "{what}: half {:#06x}", h[i]);
                assert_eq!(h[i], ht[c * rows + r], "{what}: the transpose differs");
                assert!(same(f[i], want), "{what}: f32 copy {:e}", f[i]);
            }
            let first = input
                .iter()
                .position(|x| x.is_finite() && !p.round(*x).is_finite())
                .expect("the inputs overflow both formats");
            let got = dev.dtoh(flag.all()).expect("down")[0] as usize;
            assert_eq!(n - got, first, "{p}: the first overflowing weight");
        }
    }

    /// No overflow leaves the flag at 0, and f32 is refused (an internal misuse).
    #[test]
    fn round_recurrent_flag_stays_clear_and_f32_is_refused() {
        let dev = sim();
        let w = dev
            .htod(&[0.5f32, -3.0, 65504.0, 1e-9, f32::NAN, f32::INFINITY])
            .expect("up");
        let flag = dev.zeros::<u32>(1).expect("alloc");
        let half = dev.alloc::<u16>(6).expect("alloc");
        let out = RoundOutputs {
            half: Some(half.all()),
            ..Default::default()
        };
        round_recurrent(&dev, Precision::F16, w.all(), 2, 3, out, flag.all()).expect("launch");
        assert_eq!(dev.dtoh(flag.all()).expect("down")[0], 0);
        let err = round_recurrent(&dev, Precision::F32, w.all(), 2, 3, out, flag.all())
            .expect_err("f32 has nothing to round");
        assert!(err.to_string().contains("internal"), "{err}");
    }
}
