//! The counter-based generator behind every random number of the task, so that any
//! backend (this CPU code, a CUDA kernel) reproduces the same stream bit for bit.
//!
//! # The exact mapping
//!
//! **Generator.** Philox4x32-10 (Salmon et al., SC 2011; Random123's `philox4x32_10`):
//! multipliers `0xD2511F53`, `0xCD9E8D57`, Weyl constants `0x9E3779B9`, `0xBB67AE85`; one
//! round maps counter `(c0, c1, c2, c3)` and key `(k0, k1)` to
//! `(hi(M1·c2) ^ c1 ^ k0, lo(M1·c2), hi(M0·c0) ^ c3 ^ k1, lo(M0·c0))`, the key is bumped
//! by the Weyl constants between rounds, ten rounds.
//!
//! **Key.** From `(seed, step)`: `k = splitmix64(splitmix64(seed) ^ step)`,
//! `k0 = low 32 bits of k`, `k1 = high 32 bits`, where
//! `splitmix64(z) = { z += 0x9E3779B97F4A7C15; z = (z ^ z>>30)·0xBF58476D1CE4E5B9;
//! z = (z ^ z>>27)·0x94D049BB133111EB; z ^ z>>31 }` (wrapping `u64` arithmetic).
//!
//! **Counter.** `(c0, c1, c2, c3) = (j, b, t, stream)`: `j` the group of four values in a
//! row, `b` the batch row (trial), `t` the time step, `stream` one of [`Stream`].
//!
//! **Normals.** One Philox output `(x0, x1, x2, x3)` gives four normals, values
//! `4j .. 4j+3` of the row: `(x0, x1)` → values `4j` (cos) and `4j+1` (sin), `(x2, x3)` →
//! `4j+2`, `4j+3`, by Box–Muller, all in IEEE f32 with round-to-nearest and **no fused
//! multiply-add** (CUDA: `-fmad=false`, or `__fmul_rn` / `__fadd_rn`):
//! - `u1 = ((xa >> 8) + 1) as f32 · 2⁻²⁴` in `(0, 1]`; `r = sqrt(−2 · ln(u1))` with
//!   [`ln_f32`] (Cephes `logf`, written out below) and a correctly rounded `sqrt`.
//! - `n = xb >> 8` (24 bits); octant `o = n >> 21`; `m = n & 0x1FFFFF`; the reduced angle
//!   `a = m' as f32 · C` with `m' = m` for even `o`, `m' = 2²¹ − m` for odd `o`, and
//!   `C = (π/4 as f32) · 2⁻²¹`; `s = sin a`, `c = cos a` by the Cephes `sinf` / `cosf`
//!   polynomials ([`sincos_reduced`]); then the angle `θ = 2π · n / 2²⁴` is rebuilt from
//!   the octant ([`sincos_turns`]).
//! - the normal pair is `(r · cos θ, r · sin θ)`.
//!
//! **Uniform integers.** `below(x, n) = (x as u64 · n) >> 32` for `n < 2³²`.
//!
//! Every operation is `+`, `−`, `·`, `/`, `sqrt`, integer or bit manipulation: all exact
//! or correctly rounded in IEEE arithmetic, so a GPU matches it exactly.

/// What a Philox call is for (the counter's fourth word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Stream {
    /// The noise pixels of the task's input sequences.
    TaskNoise = 0,
    /// Per-trial draws: digit, image, read time, report time (`j = 0, t = 0`).
    TaskTrial = 1,
    /// Delay-period inputs of the speed penalty (`b` = point index, `t = 0`).
    SpeedInput = 2,
    /// Sampling of trajectory states, and other one-off draws.
    Sample = 3,
}

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// `splitmix64` (Steele, Lea & Flood), used to derive keys.
#[inline]
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The Philox key for `(seed, step)`.
#[inline]
pub fn key(seed: u64, step: u64) -> [u32; 2] {
    let k = splitmix64(splitmix64(seed) ^ step);
    [k as u32, (k >> 32) as u32]
}

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// Philox4x32-10.
#[inline(always)]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = ctr;
    let [mut k0, mut k1] = key;
    for r in 0..10 {
        if r > 0 {
            k0 = k0.wrapping_add(W0);
            k1 = k1.wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, c0);
        let (hi1, lo1) = mulhilo(M1, c2);
        let n0 = hi1 ^ c1 ^ k0;
        let n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    [c0, c1, c2, c3]
}

/// A uniform integer in `0..n` from 32 random bits.
#[inline]
pub fn below(x: u32, n: u32) -> u32 {
    ((x as u64 * n as u64) >> 32) as u32
}

const SQRTHF: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Natural logarithm of a positive normal f32 (Cephes `logf`; about 1 ulp), written
/// branch-free so that it vectorises.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    ln_f32_bf(x)
}

/// `(sin a, cos a)` for `0 ≤ a ≤ π/4` (Cephes `sinf` / `cosf` polynomials).
#[inline(always)]
pub fn sincos_reduced(a: f32) -> (f32, f32) {
    let z = a * a;
    let s = ((-1.951_529_6E-4 * z + 8.332_161E-3) * z - 1.666_665_5E-1) * z * a + a;
    let c = ((2.443_315_7E-5 * z - 1.388_731_6E-3) * z + 4.166_664_6E-2) * z * z - 0.5 * z + 1.0;
    (s, c)
}

const ANGLE_UNIT: f32 = std::f32::consts::FRAC_PI_4 / 2_097_152.0; // (π/4) · 2⁻²¹, exact scaling

/// `(sin θ, cos θ)` for `θ = 2π · n / 2²⁴`, `n < 2²⁴`.
#[inline(always)]
pub fn sincos_turns(n: u32) -> (f32, f32) {
    let o = n >> 21;
    let m = n & 0x1F_FFFF;
    let odd = o & 1;
    let mm = if odd == 1 { 0x20_0000 - m } else { m };
    let (s, c) = sincos_reduced(mm as f32 * ANGLE_UNIT);
    // θ = q·π/2 + y with y = +a (even octant) or −a (odd octant).
    let q = ((o + 1) >> 1) & 3;
    let sy = if odd == 1 { -s } else { s };
    match q {
        0 => (sy, c),
        1 => (c, -sy),
        2 => (-sy, -c),
        _ => (-c, sy),
    }
}

/// Two standard normals from two 32-bit words (Box–Muller, see the module docs).
#[inline(always)]
pub fn box_muller(xa: u32, xb: u32) -> (f32, f32) {
    let u1 = ((xa >> 8) + 1) as f32 * (1.0 / 16_777_216.0);
    let r = (-2.0 * ln_f32(u1)).sqrt();
    let (s, c) = sincos_turns(xb >> 8);
    (r * c, r * s)
}

/// Four standard normals from one Philox output.
#[inline(always)]
pub fn normals4(x: [u32; 4]) -> [f32; 4] {
    let (a, b) = box_muller(x[0], x[1]);
    let (c, d) = box_muller(x[2], x[3]);
    [a, b, c, d]
}

/// Philox calls processed together by the block path (eight 32-bit lanes, one AVX2
/// register per counter word).
const LANES: usize = 8;

/// `[x0; LANES]` etc.: Philox4x32-10 on `LANES` counters at once, written lane-wise so
/// that the compiler vectorises it. Same arithmetic as [`philox4x32_10`].
#[inline(always)]
fn philox_lanes(j0: u32, b: u32, t: u32, stream: u32, key: [u32; 2]) -> [[u32; LANES]; 4] {
    let mut c0: [u32; LANES] = std::array::from_fn(|l| j0 + l as u32);
    let mut c1 = [b; LANES];
    let mut c2 = [t; LANES];
    let mut c3 = [stream; LANES];
    let [mut k0, mut k1] = key;
    for r in 0..10 {
        if r > 0 {
            k0 = k0.wrapping_add(W0);
            k1 = k1.wrapping_add(W1);
        }
        for l in 0..LANES {
            let p0 = M0 as u64 * c0[l] as u64;
            let p1 = M1 as u64 * c2[l] as u64;
            let n0 = (p1 >> 32) as u32 ^ c1[l] ^ k0;
            let n2 = (p0 >> 32) as u32 ^ c3[l] ^ k1;
            c0[l] = n0;
            c1[l] = p1 as u32;
            c2[l] = n2;
            c3[l] = p0 as u32;
        }
    }
    [c0, c1, c2, c3]
}

/// Branch-free [`ln_f32`] (the same operations, selects instead of branches).
#[inline(always)]
fn ln_f32_bf(x: f32) -> f32 {
    let bits = x.to_bits();
    let e0 = ((bits >> 23) & 0xff) as i32 - 126;
    let m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F00_0000);
    let small = m < SQRTHF;
    let e = if small { e0 - 1 } else { e0 };
    let xm = if small { m + m } else { m };
    let x = xm - 1.0;
    let ef = e as f32;
    let z = x * x;
    let mut y = 7.037_683_6E-2;
    y = y * x - 1.151_461E-1;
    y = y * x + 1.167_699_9E-1;
    y = y * x - 1.242_014_1E-1;
    y = y * x + 1.424_932_3E-1;
    y = y * x - 1.666_805_8E-1;
    y = y * x + 2.000_071_4E-1;
    y = y * x - 2.499_999_4E-1;
    y = y * x + 3.333_333E-1;
    y = y * x * z;
    y += -2.121_944_4e-4 * ef;
    y += -0.5 * z;
    let mut r = x + y;
    r += 0.693_359_4 * ef;
    r
}

/// Branch-free [`box_muller`]: the same values bit for bit.
#[inline(always)]
fn box_muller_bf(xa: u32, xb: u32) -> (f32, f32) {
    let u1 = ((xa >> 8) + 1) as i32 as f32 * (1.0 / 16_777_216.0);
    let r = (-2.0 * ln_f32_bf(u1)).sqrt();
    let n = xb >> 8;
    let o = n >> 21;
    let m = n & 0x1F_FFFF;
    let odd = o & 1;
    let mm = if odd == 1 { 0x20_0000 - m } else { m };
    let (s, c) = sincos_reduced(mm as i32 as f32 * ANGLE_UNIT);
    let q = ((o + 1) >> 1) & 3;
    // sin y = ±s (sign flipped in odd octants), cos y = c; then rotate by q·π/2:
    // q odd swaps sin and cos; sin is negated for q ∈ {2, 3} (after the swap: for q = 3
    // the new sin is −cos y), cos for q ∈ {1, 2}.
    let sy = f32::from_bits(s.to_bits() ^ (odd << 31));
    let swap = q & 1 == 1;
    let (sa, ca) = if swap { (c, sy) } else { (sy, c) };
    let neg_s = (q >> 1) << 31;
    let neg_c = ((q ^ (q >> 1)) & 1) << 31;
    let sin = f32::from_bits(sa.to_bits() ^ neg_s);
    let cos = f32::from_bits(ca.to_bits() ^ neg_c);
    (r * cos, r * sin)
}

/// `LANES` groups of four values: `out[4l + k] = mean + std · z_k(j0 + l)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn normal_block(
    key: [u32; 2],
    stream: u32,
    t: u32,
    b: u32,
    j0: u32,
    mean: f32,
    std: f32,
    out: &mut [f32; 4 * LANES],
) {
    let x = philox_lanes(j0, b, t, stream, key);
    let mut z = [[0f32; LANES]; 4];
    for l in 0..LANES {
        let (a0, a1) = box_muller_bf(x[0][l], x[1][l]);
        let (b0, b1) = box_muller_bf(x[2][l], x[3][l]);
        z[0][l] = a0;
        z[1][l] = a1;
        z[2][l] = b0;
        z[3][l] = b1;
    }
    for l in 0..LANES {
        for k in 0..4 {
            out[4 * l + k] = mean + std * z[k][l];
        }
    }
}

#[inline(always)]
fn fill_normal_row_impl(
    key: [u32; 2],
    stream: u32,
    t: u32,
    b: u32,
    mean: f32,
    std: f32,
    out: &mut [f32],
) {
    let mut blocks = out.chunks_exact_mut(4 * LANES);
    let mut j = 0u32;
    for blk in &mut blocks {
        let blk: &mut [f32; 4 * LANES] = blk.try_into().expect("chunks_exact gives full blocks");
        normal_block(key, stream, t, b, j, mean, std, blk);
        j += LANES as u32;
    }
    for c in blocks.into_remainder().chunks_mut(4) {
        let x = philox4x32_10([j, b, t, stream], key);
        let (a0, a1) = box_muller_bf(x[0], x[1]);
        let (b0, b1) = box_muller_bf(x[2], x[3]);
        for (o, zk) in c.iter_mut().zip([a0, a1, b0, b1]) {
            *o = mean + std * zk;
        }
        j += 1;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_normal_row_avx2(
    key: [u32; 2],
    stream: u32,
    t: u32,
    b: u32,
    mean: f32,
    std: f32,
    out: &mut [f32],
) {
    // AVX2 only, no FMA: Rust never contracts `a * b + c`, so the values are the same as
    // on the portable path.
    fill_normal_row_impl(key, stream, t, b, mean, std, out)
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVX2.get_or_init(|| std::is_x86_feature_detected!("avx2"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Fills `out` with `mean + std · z`, `z` the standard normals of row `(t, b)` of `stream`
/// under `key`: value `i` of the row comes from counter `(i / 4, b, t, stream)`, lane
/// `i % 4`. The product and sum are two separately rounded f32 operations. Vectorised
/// (AVX2 where the CPU has it); the values do not depend on the path.
pub fn fill_normal_row(
    key: [u32; 2],
    stream: Stream,
    t: u32,
    b: u32,
    mean: f32,
    std: f32,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 (checked at run time just above); the function
        // only needs that target feature and has no other preconditions.
        unsafe { fill_normal_row_avx2(key, stream as u32, t, b, mean, std, out) };
        return;
    }
    fill_normal_row_impl(key, stream as u32, t, b, mean, std, out)
}

/// The scalar definition of [`fill_normal_row`] (one Philox call and [`normals4`] at a
/// time): what the vectorised path is tested against.
pub fn fill_normal_row_scalar(
    key: [u32; 2],
    stream: Stream,
    t: u32,
    b: u32,
    mean: f32,
    std: f32,
    out: &mut [f32],
) {
    for (j, c) in out.chunks_mut(4).enumerate() {
        let z = normals4(philox4x32_10([j as u32, b, t, stream as u32], key));
        for (o, zk) in c.iter_mut().zip(z) {
            *o = mean + std * zk;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random123's known-answer vectors for philox4x32_10.
    #[test]
    fn philox_known_answers() {
        assert_eq!(
            philox4x32_10([0, 0, 0, 0], [0, 0]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn vector_path_matches_scalar_definition_bit_for_bit() {
        for len in [1usize, 3, 4, 31, 32, 33, 784, 1000] {
            for (t, b) in [(0u32, 0u32), (7, 3), (999, 12345)] {
                let key = key(42, 9);
                let mut a = vec![f32::NAN; len];
                let mut s = vec![f32::NAN; len];
                fill_normal_row(key, Stream::TaskNoise, t, b, 0.1307, 0.3081, &mut a);
                fill_normal_row_scalar(key, Stream::TaskNoise, t, b, 0.1307, 0.3081, &mut s);
                let ab: Vec<u32> = a.iter().map(|v| v.to_bits()).collect();
                let sb: Vec<u32> = s.iter().map(|v| v.to_bits()).collect();
                assert_eq!(ab, sb, "len {len} t {t} b {b}");
                let mut p = vec![f32::NAN; len];
                fill_normal_row_impl(key, Stream::TaskNoise as u32, t, b, 0.1307, 0.3081, &mut p);
                assert_eq!(p.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), sb);
            }
        }
        // Every octant and the branch-free sincos against the branchy one.
        for n in (0..(1u32 << 24))
            .step_by(65_537)
            .chain([0, 1 << 21, (1 << 24) - 1])
        {
            let (s, c) = sincos_turns(n);
            let (c2, s2) = box_muller_bf(0xFFFF_FFFF, n << 8); // u1 = 1: r = 0 → use signs only
            assert_eq!((c2, s2), (0.0 * c, 0.0 * s));
            let (bc, bs) = box_muller_bf(0x1234_5678, n << 8);
            let (rc, rs) = box_muller(0x1234_5678, n << 8);
            assert_eq!(
                (bc.to_bits(), bs.to_bits()),
                (rc.to_bits(), rs.to_bits()),
                "n = {n}"
            );
        }
    }

    #[test]
    fn ln_and_sincos_are_accurate() {
        for k in [1u32, 2, 3, 100, 12345, 1 << 20, (1 << 24) - 1, 1 << 24] {
            let u = k as f32 / 16_777_216.0;
            let want = (u as f64).ln();
            let got = ln_f32(u) as f64;
            assert!(
                (got - want).abs() <= 2e-7 * want.abs().max(1.0),
                "ln {u}: {got} vs {want}"
            );
        }
        for n in (0..(1u32 << 24))
            .step_by(99_991)
            .chain([0, (1 << 21) - 1, 1 << 21, (1 << 24) - 1])
        {
            let th = 2.0 * std::f64::consts::PI * n as f64 / 16_777_216.0;
            let (s, c) = sincos_turns(n);
            assert!((s as f64 - th.sin()).abs() < 3e-7, "sin at n={n}");
            assert!((c as f64 - th.cos()).abs() < 3e-7, "cos at n={n}");
        }
    }
}
