//! The SIMD layer of the fast path: 8-lane f32 vectors behind one trait, with AVX2 + FMA
//! implementations chosen at run time and a portable fallback (plain arrays that the
//! compiler vectorises with the baseline instruction set). No `target-cpu=native`.
//!
//! How the dispatch works: a job implements [`SimdJob`]; [`SimdLevel::run`] calls its
//! `run::<S>` either directly (portable) or from a `#[target_feature(enable = "avx2,fma,f16c")]`
//! function (AVX2). Everything the job calls on the hot path is `#[inline(always)]`, so it
//! is compiled inside that function with AVX2 and FMA enabled. A value of type
//! [`Avx2Fma`] is a proof that the CPU has both: only [`SimdLevel::run`] makes one, after
//! checking. The AVX2 level also requires F16C (`vcvtph2ps`, how f16 weights widen);
//! every AVX2 CPU has it, but it is detected like the others.
//!
//! The AVX-512VL level runs the same 8-lane instructions, compiled with AVX-512F and VL
//! enabled as well, for two reasons. EVEX encoding gives the compiler 32 vector registers
//! instead of 16: the register-tiled micro-kernels hold `rows × gates` accumulators, so
//! twice the registers let a tile take twice the batch rows ([`Simd::REGISTERS`] says
//! which budget a job has). And the micro-kernel's pairs of adjacent 8-column vectors
//! ([`Simd::V2`]) become one 512-bit vector: one FMA instruction does the work of two.
//! Per lane the arithmetic is the same (one FMA per term, in the same order, the same
//! `tanh`), so every level gives the same bits. Everything outside the micro-kernel (the
//! gate arithmetic, the loads and stores of activations) stays 8 lanes wide: the panel
//! layouts and the `Hp` padding are in 8-column units.

/// The instruction sets the fast path can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimdLevel {
    /// Baseline x86-64 (SSE2) or whatever the target guarantees, via plain arrays.
    Portable,
    /// AVX2 with fused multiply-add and F16C (x86-64 only): 16 vector registers.
    Avx2Fma,
    /// [`SimdLevel::Avx2Fma`]'s instructions with AVX-512F + VL enabled: 32 vector
    /// registers (x86-64 only).
    Avx512Vl,
}

impl SimdLevel {
    /// The best level this CPU supports.
    pub fn detect() -> SimdLevel {
        *SimdLevel::available()
            .last()
            .expect("the portable level is always available")
    }

    /// Every level this CPU supports, best last (the tests run each).
    pub fn available() -> Vec<SimdLevel> {
        [SimdLevel::Portable, SimdLevel::Avx2Fma, SimdLevel::Avx512Vl]
            .into_iter()
            .filter(|l| l.is_available())
            .collect()
    }

    pub fn is_available(self) -> bool {
        match self {
            SimdLevel::Portable => true,
            SimdLevel::Avx2Fma => avx2_fma_detected(),
            SimdLevel::Avx512Vl => avx2_fma_detected() && avx512vl_detected(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Portable => "portable",
            SimdLevel::Avx2Fma => "avx2+fma",
            SimdLevel::Avx512Vl => "avx512vl",
        }
    }

    /// The level called `name` ([`Self::name`]), if there is one.
    pub fn from_name(name: &str) -> Option<SimdLevel> {
        [SimdLevel::Portable, SimdLevel::Avx2Fma, SimdLevel::Avx512Vl]
            .into_iter()
            .find(|l| l.name() == name)
    }

    /// Vector registers a job running at this level may keep live.
    pub fn registers(self) -> usize {
        match self {
            SimdLevel::Portable | SimdLevel::Avx2Fma => 16,
            SimdLevel::Avx512Vl => 32,
        }
    }

    /// Runs `job` with this level's vectors.
    ///
    /// # Panics
    /// If the level is not available (callers check with [`Self::is_available`] when the
    /// level comes from a user).
    pub fn run<J: SimdJob>(self, job: J) -> J::Output {
        match self {
            SimdLevel::Portable => job.run(Portable),
            SimdLevel::Avx2Fma => {
                assert!(
                    avx2_fma_detected(),
                    "AVX2+FMA+F16C requested on a CPU without it"
                );
                #[cfg(target_arch = "x86_64")]
                {
                    // SAFETY: the assert above checked that the CPU supports AVX2, FMA and
                    // F16C, the features `run_avx2` is compiled with.
                    unsafe { run_avx2(job) }
                }
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!("avx2_fma_detected() is false off x86-64")
            }
            SimdLevel::Avx512Vl => {
                assert!(
                    avx2_fma_detected() && avx512vl_detected(),
                    "AVX-512VL (with AVX2+FMA+F16C) requested on a CPU without it"
                );
                #[cfg(target_arch = "x86_64")]
                {
                    // SAFETY: the assert above checked that the CPU supports AVX2, FMA,
                    // F16C, AVX-512F and AVX-512VL, the features `run_avx512vl` is
                    // compiled with.
                    unsafe { run_avx512vl(job) }
                }
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!("avx512vl_detected() is false off x86-64")
            }
        }
    }
}

fn avx2_fma_detected() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn avx512vl_detected() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn run_avx2<J: SimdJob>(job: J) -> J::Output {
    job.run(Avx2Fma { _proof: () })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
unsafe fn run_avx512vl<J: SimdJob>(job: J) -> J::Output {
    job.run(Avx512Vl { _proof: () })
}

/// A computation generic over the vector type, run through [`SimdLevel::run`].
pub trait SimdJob {
    type Output;
    fn run<S: Simd>(self, s: S) -> Self::Output;
}

/// Number of f32 lanes in every vector type here.
pub const LANES: usize = 8;

/// 8-lane f32 vector operations. `S` values are zero-sized tokens; the methods take one
/// so that AVX2 code can only run where a token was made (after feature detection).
pub trait Simd: Copy + Send + Sync + 'static {
    type V: Copy;
    /// Vector registers the code may keep live ([`SimdLevel::registers`]): what sizes
    /// the micro-kernels' register tiles.
    const REGISTERS: usize;
    /// Loads 8 floats from `p` (no alignment needed).
    ///
    /// # Safety
    /// `p..p+8` must be readable.
    unsafe fn load(self, p: *const f32) -> Self::V;
    /// Stores 8 floats at `p`.
    ///
    /// # Safety
    /// `p..p+8` must be writable and not aliased by a live reference.
    unsafe fn store(self, p: *mut f32, v: Self::V);
    /// Loads 8 bfloat16 values (raw bits) from `p`, widened to f32 (exact: a bf16 is the
    /// top half of an f32, so the widening is a 16-bit shift).
    ///
    /// # Safety
    /// `p..p+8` must be readable.
    unsafe fn load_bf16(self, p: *const u16) -> Self::V;
    /// Loads 8 IEEE half values (raw bits) from `p`, widened to f32 (exact; subnormals,
    /// infinities and NaN included).
    ///
    /// # Safety
    /// `p..p+8` must be readable.
    unsafe fn load_f16(self, p: *const u16) -> Self::V;
    fn splat(self, x: f32) -> Self::V;
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    fn div(self, a: Self::V, b: Self::V) -> Self::V;
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a · b + c`, fused where the hardware has FMA.
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;

    /// Two adjacent 8-lane vectors (16 floats) as one value: a 512-bit register at the
    /// AVX-512VL level, a pair of [`Self::V`] elsewhere. Only the micro-kernel's inner
    /// product uses it, through the few operations below, each the lane-wise equal of
    /// its 8-lane namesake (so the two forms give the same bits).
    type V2: Copy;
    /// `x` in all 16 lanes.
    fn splat2(self, x: f32) -> Self::V2;
    /// `lo` in lanes 0..8 and `hi` in lanes 8..16.
    fn join(self, lo: Self::V, hi: Self::V) -> Self::V2;
    /// The inverse of [`Self::join`]: `(lanes 0..8, lanes 8..16)`.
    fn split(self, v: Self::V2) -> (Self::V, Self::V);
    /// `a · b + c` in every lane, fused where the hardware has FMA (as [`Self::mul_add`]).
    fn mul_add2(self, a: Self::V2, b: Self::V2, c: Self::V2) -> Self::V2;
    /// Loads 16 floats from `p` (no alignment needed).
    ///
    /// # Safety
    /// `p..p+16` must be readable.
    unsafe fn load2(self, p: *const f32) -> Self::V2;
    /// Loads 16 bfloat16 values (raw bits), widened to f32 as [`Self::load_bf16`] does.
    ///
    /// # Safety
    /// `p..p+16` must be readable.
    unsafe fn load2_bf16(self, p: *const u16) -> Self::V2;
    /// Loads 16 IEEE half values (raw bits), widened to f32 as [`Self::load_f16`] does.
    ///
    /// # Safety
    /// `p..p+16` must be readable.
    unsafe fn load2_f16(self, p: *const u16) -> Self::V2;
}

/// The [`Simd::V2`] operations of a level without wider vectors: `V2 = [V; 2]`, each
/// operation its 8-lane namesake on both halves. Expands inside an `impl Simd` block.
macro_rules! pair_of_halves {
    () => {
        type V2 = [Self::V; 2];
        #[inline(always)]
        fn splat2(self, x: f32) -> Self::V2 {
            [self.splat(x), self.splat(x)]
        }
        #[inline(always)]
        fn join(self, lo: Self::V, hi: Self::V) -> Self::V2 {
            [lo, hi]
        }
        #[inline(always)]
        fn split(self, v: Self::V2) -> (Self::V, Self::V) {
            (v[0], v[1])
        }
        #[inline(always)]
        fn mul_add2(self, a: Self::V2, b: Self::V2, c: Self::V2) -> Self::V2 {
            [
                self.mul_add(a[0], b[0], c[0]),
                self.mul_add(a[1], b[1], c[1]),
            ]
        }
        #[inline(always)]
        unsafe fn load2(self, p: *const f32) -> Self::V2 {
            // SAFETY: the caller guarantees p..p+16 is readable.
            unsafe { [self.load(p), self.load(p.add(LANES))] }
        }
        #[inline(always)]
        unsafe fn load2_bf16(self, p: *const u16) -> Self::V2 {
            // SAFETY: as for load2.
            unsafe { [self.load_bf16(p), self.load_bf16(p.add(LANES))] }
        }
        #[inline(always)]
        unsafe fn load2_f16(self, p: *const u16) -> Self::V2 {
            // SAFETY: as for load2.
            unsafe { [self.load_f16(p), self.load_f16(p.add(LANES))] }
        }
    };
}

/// `tanh`, as a [13/6] rational approximation on `[−7.9, 7.9]` (Eigen's
/// `generic_fast_tanh_float`), clamped outside where `tanh` is `±1` to f32 precision.
/// Max abs error 3.5e-7 (tested against `f64::tanh`). The coefficients are kept as
/// published (f32 rounds them).
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn tanh<S: Simd>(s: S, x: S::V) -> S::V {
    let c = 7.905_311_f32;
    let x = s.max(s.min(x, s.splat(c)), s.splat(-c));
    let x2 = s.mul(x, x);
    let mut p = s.mul_add(x2, s.splat(-2.760_768_4e-16), s.splat(2.000_188e-13));
    p = s.mul_add(x2, p, s.splat(-8.604_671_5e-11));
    p = s.mul_add(x2, p, s.splat(5.122_297e-8));
    p = s.mul_add(x2, p, s.splat(1.485_722_4e-5));
    p = s.mul_add(x2, p, s.splat(6.372_619_3e-4));
    p = s.mul_add(x2, p, s.splat(4.893_524_6e-3));
    p = s.mul(x, p);
    let mut q = s.mul_add(x2, s.splat(1.198_258_3e-6), s.splat(1.185_347_1e-4));
    q = s.mul_add(x2, q, s.splat(2.268_434_6e-3));
    q = s.mul_add(x2, q, s.splat(4.893_525e-3));
    s.div(p, q)
}

/// The logistic sigmoid, `σ(x) = ½ + ½ tanh(x / 2)`.
#[inline(always)]
pub fn sigmoid<S: Simd>(s: S, x: S::V) -> S::V {
    let half = s.splat(0.5);
    s.mul_add(half, tanh(s, s.mul(half, x)), half)
}

/// Plain arrays: correct everywhere, vectorised by the compiler for the baseline ISA.
#[derive(Clone, Copy, Debug)]
pub struct Portable;

macro_rules! lanewise {
    ($a:expr, $b:expr, |$x:ident, $y:ident| $e:expr) => {{
        let (a, b) = ($a, $b);
        let mut out = [0.0f32; LANES];
        for l in 0..LANES {
            let ($x, $y) = (a[l], b[l]);
            out[l] = $e;
        }
        out
    }};
}

impl Simd for Portable {
    type V = [f32; LANES];
    const REGISTERS: usize = 16;
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> Self::V {
        // SAFETY: the caller guarantees p..p+8 is readable; read_unaligned needs no alignment.
        unsafe { p.cast::<[f32; LANES]>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: Self::V) {
        // SAFETY: the caller guarantees p..p+8 is writable and unaliased.
        unsafe { p.cast::<[f32; LANES]>().write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn load_bf16(self, p: *const u16) -> Self::V {
        // SAFETY: the caller guarantees p..p+8 is readable; read_unaligned needs no alignment.
        let bits = unsafe { p.cast::<[u16; LANES]>().read_unaligned() };
        bits.map(|b| f32::from_bits((b as u32) << 16))
    }
    #[inline(always)]
    unsafe fn load_f16(self, p: *const u16) -> Self::V {
        // SAFETY: as for load_bf16.
        let bits = unsafe { p.cast::<[u16; LANES]>().read_unaligned() };
        bits.map(|b| half::f16::from_bits(b).to_f32())
    }
    #[inline(always)]
    fn splat(self, x: f32) -> Self::V {
        [x; LANES]
    }
    #[inline(always)]
    fn add(self, a: Self::V, b: Self::V) -> Self::V {
        lanewise!(a, b, |x, y| x + y)
    }
    #[inline(always)]
    fn sub(self, a: Self::V, b: Self::V) -> Self::V {
        lanewise!(a, b, |x, y| x - y)
    }
    #[inline(always)]
    fn mul(self, a: Self::V, b: Self::V) -> Self::V {
        lanewise!(a, b, |x, y| x * y)
    }
    #[inline(always)]
    fn div(self, a: Self::V, b: Self::V) -> Self::V {
        lanewise!(a, b, |x, y| x / y)
    }
    #[inline(always)]
    fn min(self, a: Self::V, b: Self::V) -> Self::V {
        lanewise!(a, b, |x, y| if x < y { x } else { y })
    }
    #[inline(always)]
    fn max(self, a: Self::V, b: Self::V) -> Self::V {
        lanewise!(a, b, |x, y| if x > y { x } else { y })
    }
    #[inline(always)]
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        // Unfused on purpose: `f32::mul_add` without hardware FMA is a slow libm call.
        self.add(self.mul(a, b), c)
    }
    pair_of_halves!();
}

#[cfg(target_arch = "x86_64")]
pub use avx2::{Avx2Fma, Avx512Vl};

#[cfg(not(target_arch = "x86_64"))]
/// Never constructed off x86-64.
#[derive(Clone, Copy, Debug)]
pub enum Avx2Fma {}

#[cfg(not(target_arch = "x86_64"))]
/// Never constructed off x86-64.
#[derive(Clone, Copy, Debug)]
pub enum Avx512Vl {}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Simd, LANES};
    use std::arch::x86_64::*;

    /// A token proving AVX2, FMA and F16C are present; made only by `SimdLevel::run`.
    #[derive(Clone, Copy, Debug)]
    pub struct Avx2Fma {
        pub(super) _proof: (),
    }

    /// A token proving AVX2, FMA, F16C, AVX-512F and AVX-512VL are present; made only by
    /// `SimdLevel::run`. The same 8-lane operations as [`Avx2Fma`], with 32 registers.
    #[derive(Clone, Copy, Debug)]
    pub struct Avx512Vl {
        pub(super) _proof: (),
    }

    // One body for both tokens: the instructions are the same, only the register budget
    // (and the target features the enclosing function is compiled with) differ.
    macro_rules! avx2_simd {
        ($token:ident, $registers:literal, $pairs:ident) => {
            impl Simd for $token {
                type V = __m256;
                const REGISTERS: usize = $registers;
                #[inline(always)]
                unsafe fn load(self, p: *const f32) -> __m256 {
                    unsafe { _mm256_loadu_ps(p) }
                }
                #[inline(always)]
                unsafe fn store(self, p: *mut f32, v: __m256) {
                    unsafe { _mm256_storeu_ps(p, v) }
                }
                #[inline(always)]
                unsafe fn load_bf16(self, p: *const u16) -> __m256 {
                    // Zero-extend each u16 to 32 bits and shift it into the top half.
                    unsafe {
                        let bits = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
                        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(bits))
                    }
                }
                #[inline(always)]
                unsafe fn load_f16(self, p: *const u16) -> __m256 {
                    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
                }
                #[inline(always)]
                fn splat(self, x: f32) -> __m256 {
                    unsafe { _mm256_set1_ps(x) }
                }
                #[inline(always)]
                fn add(self, a: __m256, b: __m256) -> __m256 {
                    unsafe { _mm256_add_ps(a, b) }
                }
                #[inline(always)]
                fn sub(self, a: __m256, b: __m256) -> __m256 {
                    unsafe { _mm256_sub_ps(a, b) }
                }
                #[inline(always)]
                fn mul(self, a: __m256, b: __m256) -> __m256 {
                    unsafe { _mm256_mul_ps(a, b) }
                }
                #[inline(always)]
                fn div(self, a: __m256, b: __m256) -> __m256 {
                    unsafe { _mm256_div_ps(a, b) }
                }
                #[inline(always)]
                fn min(self, a: __m256, b: __m256) -> __m256 {
                    unsafe { _mm256_min_ps(a, b) }
                }
                #[inline(always)]
                fn max(self, a: __m256, b: __m256) -> __m256 {
                    unsafe { _mm256_max_ps(a, b) }
                }
                #[inline(always)]
                fn mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
                    unsafe { _mm256_fmadd_ps(a, b, c) }
                }
                $pairs!();
            }
        };
    }

    /// The [`Simd::V2`] operations of the AVX-512VL level: one 512-bit register, lanes
    /// 0..8 the first 8-lane vector. Every operation is its 8-lane namesake on 16 lanes
    /// (the same FMA, the same exact widening), so a pair gives the bits of two `V`s.
    /// Only AVX-512F instructions (`join`/`split` move 256-bit halves as 4 doubles because
    /// the 8-float forms need AVX-512DQ; the bits are moved unchanged).
    macro_rules! zmm_pairs {
        () => {
            type V2 = __m512;
            #[inline(always)]
            fn splat2(self, x: f32) -> __m512 {
                unsafe { _mm512_set1_ps(x) }
            }
            #[inline(always)]
            fn join(self, lo: __m256, hi: __m256) -> __m512 {
                unsafe {
                    let lo = _mm512_castpd256_pd512(_mm256_castps_pd(lo));
                    _mm512_castpd_ps(_mm512_insertf64x4::<1>(lo, _mm256_castps_pd(hi)))
                }
            }
            #[inline(always)]
            fn split(self, v: __m512) -> (__m256, __m256) {
                unsafe {
                    let hi = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v));
                    (_mm512_castps512_ps256(v), _mm256_castpd_ps(hi))
                }
            }
            #[inline(always)]
            fn mul_add2(self, a: __m512, b: __m512, c: __m512) -> __m512 {
                unsafe { _mm512_fmadd_ps(a, b, c) }
            }
            #[inline(always)]
            unsafe fn load2(self, p: *const f32) -> __m512 {
                unsafe { _mm512_loadu_ps(p) }
            }
            #[inline(always)]
            unsafe fn load2_bf16(self, p: *const u16) -> __m512 {
                // Zero-extend each u16 to 32 bits and shift it into the top half.
                unsafe {
                    let bits = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()));
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(bits))
                }
            }
            #[inline(always)]
            unsafe fn load2_f16(self, p: *const u16) -> __m512 {
                unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
            }
        };
    }

    // SAFETY (for every method of both impls): an `Avx2Fma` exists only inside
    // `run_avx2` and an `Avx512Vl` only inside `run_avx512vl`, each entered after
    // `is_x86_feature_detected!` confirmed AVX2, FMA and F16C (and AVX-512F/VL for the
    // second, the only one whose pairs use 512-bit instructions, all AVX-512F), so the
    // instructions these intrinsics emit are supported. Pointer validity for the loads
    // and stores is the caller's contract, stated on the trait.
    avx2_simd!(Avx2Fma, 16, pair_of_halves);
    avx2_simd!(Avx512Vl, 32, zmm_pairs);

    const _: () = assert!(LANES == 8);
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TanhSigmoid<'a>(&'a [f32]);
    impl SimdJob for TanhSigmoid<'_> {
        type Output = (Vec<f32>, Vec<f32>);
        fn run<S: Simd>(self, s: S) -> Self::Output {
            let mut t = vec![0.0; self.0.len()];
            let mut g = vec![0.0; self.0.len()];
            for ((x, t), g) in self
                .0
                .chunks_exact(LANES)
                .zip(t.chunks_exact_mut(LANES))
                .zip(g.chunks_exact_mut(LANES))
            {
                // SAFETY: each chunk holds exactly LANES floats.
                unsafe {
                    let v = s.load(x.as_ptr());
                    s.store(t.as_mut_ptr(), tanh(s, v));
                    s.store(g.as_mut_ptr(), sigmoid(s, v));
                }
            }
            (t, g)
        }
    }

    /// Widens `bits` 8 at a time (`load_bf16`, `load_f16`) and 16 at a time
    /// (`load2_bf16`, `load2_f16`, split back into two vectors).
    struct WidenHalves<'a>(&'a [u16]);
    impl SimdJob for WidenHalves<'_> {
        type Output = [Vec<f32>; 4];
        fn run<S: Simd>(self, s: S) -> Self::Output {
            let n = self.0.len();
            let mut out = [vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]];
            for (i, bits) in self.0.chunks_exact(2 * LANES).enumerate() {
                let o = i * 2 * LANES;
                // SAFETY: each chunk holds exactly 2·LANES values and every output as many
                // from offset o.
                unsafe {
                    let p = bits.as_ptr();
                    for h in 0..2 {
                        let q = p.add(h * LANES);
                        s.store(out[0][o + h * LANES..].as_mut_ptr(), s.load_bf16(q));
                        s.store(out[1][o + h * LANES..].as_mut_ptr(), s.load_f16(q));
                    }
                    for (k, v) in [s.load2_bf16(p), s.load2_f16(p)].into_iter().enumerate() {
                        let (lo, hi) = s.split(v);
                        s.store(out[2 + k][o..].as_mut_ptr(), lo);
                        s.store(out[2 + k][o + LANES..].as_mut_ptr(), hi);
                    }
                }
            }
            out
        }
    }

    /// Every one of the 65,536 bit patterns (zeros, subnormals, normals, infinities,
    /// NaNs) widens exactly as the `half` crate widens it, at every level, 8 and 16 at a
    /// time.
    #[test]
    fn half_loads_widen_every_bit_pattern_exactly() {
        let all: Vec<u16> = (0..=u16::MAX).collect();
        let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        for level in SimdLevel::available() {
            let [b, f, b2, f2] = level.run(WidenHalves(&all));
            for (i, &bits) in all.iter().enumerate() {
                let want_b = half::bf16::from_bits(bits).to_f32();
                let want_f = half::f16::from_bits(bits).to_f32();
                for (what, got, want) in [
                    ("bf16", b[i], want_b),
                    ("f16", f[i], want_f),
                    ("bf16 x16", b2[i], want_b),
                    ("f16 x16", f2[i], want_f),
                ] {
                    assert!(
                        same(got, want),
                        "{level:?}: {what} {bits:#06x}: {got} vs {want}"
                    );
                }
            }
        }
    }

    /// The pair operations against their 8-lane namesakes on each half: `mul_add2` of
    /// joined vectors, `load2`, `splat2`, split back, give the same bits.
    struct PairOps<'a>(&'a [f32]);
    impl SimdJob for PairOps<'_> {
        type Output = (Vec<f32>, Vec<f32>);
        fn run<S: Simd>(self, s: S) -> Self::Output {
            let n = self.0.len();
            let (mut single, mut pair) = (vec![0.0; n], vec![0.0; n]);
            let x = 0.7311_f32;
            for (i, v) in self.0.chunks_exact(4 * LANES).enumerate() {
                let o = i * 2 * LANES;
                // SAFETY: each chunk holds 4·LANES floats (a, b: 2·LANES each); the
                // outputs hold n / 2 ≥ o + 2·LANES floats.
                unsafe {
                    let (a, b) = (v.as_ptr(), v.as_ptr().add(2 * LANES));
                    for h in 0..2 {
                        let r = s.mul_add(
                            s.mul_add(
                                s.splat(x),
                                s.load(b.add(h * LANES)),
                                s.load(a.add(h * LANES)),
                            ),
                            s.load(a.add(h * LANES)),
                            s.load(b.add(h * LANES)),
                        );
                        s.store(single[o + h * LANES..].as_mut_ptr(), r);
                    }
                    let (a2, b2) = (s.join(s.load(a), s.load(a.add(LANES))), s.load2(b));
                    let r = s.mul_add2(s.mul_add2(s.splat2(x), b2, a2), a2, b2);
                    let (lo, hi) = s.split(r);
                    s.store(pair[o..].as_mut_ptr(), lo);
                    s.store(pair[o + LANES..].as_mut_ptr(), hi);
                }
            }
            single.truncate(n / 2);
            pair.truncate(n / 2);
            (single, pair)
        }
    }

    #[test]
    fn pair_operations_equal_two_vector_operations_bit_for_bit() {
        // Values whose products round: a fused and an unfused multiply-add differ on
        // most of them.
        let xs: Vec<f32> = (0..4096)
            .map(|i| ((i as f32) * 0.618_034).sin() * (1.0 + (i % 7) as f32 * 1e3))
            .collect();
        for level in SimdLevel::available() {
            let (single, pair) = level.run(PairOps(&xs));
            let (a, b): (Vec<u32>, Vec<u32>) = (
                single.iter().map(|v| v.to_bits()).collect(),
                pair.iter().map(|v| v.to_bits()).collect(),
            );
            assert_eq!(a.len(), xs.len() / 2);
            assert!(a == b, "{level:?}: pair operations differ from 8-lane ones");
        }
    }

    #[test]
    fn tanh_and_sigmoid_are_accurate_at_every_level() {
        let xs: Vec<f32> = (0..16_000).map(|i| (i as f32 - 8000.0) / 400.0).collect();
        for level in SimdLevel::available() {
            let (t, g) = level.run(TanhSigmoid(&xs));
            let mut worst_t = 0.0f64;
            let mut worst_g = 0.0f64;
            for (i, &x) in xs.iter().enumerate() {
                let x = x as f64;
                worst_t = worst_t.max((t[i] as f64 - x.tanh()).abs());
                worst_g = worst_g.max((g[i] as f64 - 1.0 / (1.0 + (-x).exp())).abs());
            }
            assert!(worst_t < 5e-7, "{level:?}: tanh max abs error {worst_t:e}");
            assert!(
                worst_g < 3e-7,
                "{level:?}: sigmoid max abs error {worst_g:e}"
            );
        }
    }
}
