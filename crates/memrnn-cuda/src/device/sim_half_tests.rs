//! The simulated device's half-precision conversions (`sim/include/cuda_fp16.h`,
//! `sim/include/cuda_bf16.h`: `__half2float`, `__float2half_rn`, `__bfloat162float`,
//! `__float2bfloat16_rn`) against the `half` crate, bit for bit: every binary16 and
//! bfloat16 pattern widened, and f32 values narrowed: every half value, its neighbours and
//! the exact midpoints between consecutive half values (the ties), the f16 overflow and
//! underflow boundaries, f32 subnormals, infinities, NaNs, and a million random bit
//! patterns. A NaN must narrow to a NaN (CUDA's canonical 0x7fff; the `half` crate keeps
//! the payload) and widen to a NaN; every other value must match exactly.

unsafe extern "C" {
    // sim/half_conv.cpp.
    fn mr_sim_half_narrow(input: *const f32, n: usize, f16: *mut u16, bf16: *mut u16);
    fn mr_sim_half_widen(input: *const u16, n: usize, from_f16: *mut f32, from_bf16: *mut f32);
}

fn narrow(v: &[f32]) -> (Vec<u16>, Vec<u16>) {
    let (mut f, mut b) = (vec![0u16; v.len()], vec![0u16; v.len()]);
    // SAFETY: the C side reads v.len() floats and writes v.len() values to each output,
    // all of which hold that many.
    unsafe { mr_sim_half_narrow(v.as_ptr(), v.len(), f.as_mut_ptr(), b.as_mut_ptr()) };
    (f, b)
}

fn widen(v: &[u16]) -> (Vec<f32>, Vec<f32>) {
    let (mut f, mut b) = (vec![0f32; v.len()], vec![0f32; v.len()]);
    // SAFETY: as in `narrow`.
    unsafe { mr_sim_half_widen(v.as_ptr(), v.len(), f.as_mut_ptr(), b.as_mut_ptr()) };
    (f, b)
}

#[test]
fn widening_matches_half_for_every_pattern() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    let (f, b) = widen(&all);
    for (i, &bits) in all.iter().enumerate() {
        let (wf, wb) = (
            half::f16::from_bits(bits).to_f32(),
            half::bf16::from_bits(bits).to_f32(),
        );
        if wf.is_nan() {
            assert!(
                f[i].is_nan(),
                "__half2float({bits:#06x}) = {} not NaN",
                f[i]
            );
        } else {
            assert_eq!(f[i].to_bits(), wf.to_bits(), "__half2float({bits:#06x})");
        }
        if wb.is_nan() {
            assert!(
                b[i].is_nan(),
                "__bfloat162float({bits:#06x}) = {} not NaN",
                b[i]
            );
        } else {
            assert_eq!(
                b[i].to_bits(),
                wb.to_bits(),
                "__bfloat162float({bits:#06x})"
            );
        }
    }
}

/// f32 values that exercise every rounding case of both formats.
fn narrowing_inputs() -> Vec<f32> {
    let mut v = Vec::new();
    let f32_next = |x: f32, d: i32| f32::from_bits((x.to_bits() as i64 + d as i64) as u32);
    for bits in 0..0x7c00u16 {
        // Every finite non-negative f16 and bf16 value, ±1 ulp of f32 around it, and the
        // exact midpoint to the next value of its format (a tie: f32 holds it exactly).
        for (x, next) in [
            (
                half::f16::from_bits(bits).to_f32(),
                half::f16::from_bits(bits + 1).to_f32(),
            ),
            (
                half::bf16::from_bits(bits).to_f32(),
                half::bf16::from_bits(bits + 1).to_f32(),
            ),
        ] {
            let mid = x + (next - x) / 2.0;
            for y in [x, mid, f32_next(mid, 1), f32_next(mid, -1)] {
                if y.is_finite() {
                    v.extend([y, -y]);
                }
            }
            if x > 0.0 {
                v.extend([f32_next(x, 1), f32_next(x, -1)]);
            }
        }
    }
    v.extend([
        0.0,
        -0.0,
        65504.0,
        65519.996,
        65520.0,
        65536.0,
        1e10,
        f32::MAX,
        -f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::from_bits(0x007f_ffff),
        (-24f32).exp2(),
        (-25f32).exp2(),
        f32_next((-25f32).exp2(), 1),
        (-26f32).exp2(),
        (-14f32).exp2(),
    ]);
    // A million random bit patterns (xorshift; NaNs among them).
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..1_000_000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.push(f32::from_bits(s as u32));
    }
    v.extend([
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7f80_0001),
        f32::from_bits(0xffc0_1234),
    ]);
    v
}

#[test]
fn narrowing_rounds_to_nearest_even_as_half_does() {
    let v = narrowing_inputs();
    let (f, b) = narrow(&v);
    for (i, &x) in v.iter().enumerate() {
        let (wf, wb) = (half::f16::from_f32(x), half::bf16::from_f32(x));
        if x.is_nan() {
            assert!(
                half::f16::from_bits(f[i]).is_nan() && half::bf16::from_bits(b[i]).is_nan(),
                "NaN {:#010x} narrowed to {:#06x} / {:#06x}",
                x.to_bits(),
                f[i],
                b[i]
            );
            continue;
        }
        assert_eq!(
            f[i],
            wf.to_bits(),
            "__float2half_rn({x:e} = {:#010x})",
            x.to_bits()
        );
        assert_eq!(
            b[i],
            wb.to_bits(),
            "__float2bfloat16_rn({x:e} = {:#010x})",
            x.to_bits()
        );
    }
}
