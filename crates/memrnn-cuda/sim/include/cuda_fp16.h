// cuda_fp16.h for the SIMT simulator: found before the CUDA toolkit's through
// `-I crates/memrnn-cuda/sim/include`. The subset a kernel needs to store values in IEEE
// half precision and compute in f32: the `__half` storage type and its two conversions,
// with the device's results bit for bit (round to nearest, ties to even; subnormals,
// infinities and overflow as IEEE 754 binary16; a NaN narrows to the canonical 0x7fff, as
// CUDA's `__float2half_rn` does). Standalone (no cuda_sim.h), so that the runtime's test
// hook (half_conv.cpp) can use it too; tested against the `half` crate from Rust.
#pragma once
#include <cstdint>
#include <cstring>

struct __half {
    unsigned short __x;
};

namespace mr_sim_half {

inline uint32_t f32_bits(float f) {
    uint32_t x;
    std::memcpy(&x, &f, sizeof x);
    return x;
}

inline float f32_from_bits(uint32_t x) {
    float f;
    std::memcpy(&f, &x, sizeof f);
    return f;
}

// f32 → binary16 bits, round to nearest, ties to even.
inline unsigned short f32_to_f16_rn(float f) {
    const uint32_t x = f32_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return 0x7fffu;                        // NaN: canonical
    if (ax >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // ≥ 65520: ±inf
    if (ax >= 0x38800000u) {                                       // ≥ 2^-14: normal
        // Rebias the exponent (127 → 15), then round the 13 dropped bits to even; a
        // carry out of the mantissa moves into the exponent, as it should.
        const uint32_t r = ax - ((127u - 15u) << 23);
        return (unsigned short)(sign | ((r + 0x0fffu + ((r >> 13) & 1u)) >> 13));
    }
    // Subnormal (or zero) result: round(|f| · 2^24) to an integer, ties to even.
    const uint32_t e = ax >> 23;
    if (e < 101u) return (unsigned short)sign;  // |f| < 2^-26: rounds to ±0
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;  // |f| = m · 2^(e-150)
    const uint32_t shift = 126u - e;                  // 14 ≤ shift ≤ 25
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q += 1u;  // may reach 0x400: 2^-14
    return (unsigned short)(sign | q);
}

// binary16 bits → f32 (exact).
inline float f16_to_f32(unsigned short h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0x1fu) return f32_from_bits(sign | 0x7f800000u | (m << 13));  // inf, NaN
    if (e != 0u) return f32_from_bits(sign | ((e + 112u) << 23) | (m << 13));
    if (m == 0u) return f32_from_bits(sign);
    uint32_t fe = 113u;  // normalise the subnormal m · 2^-24
    while ((m & 0x400u) == 0u) {
        m <<= 1;
        fe -= 1u;
    }
    return f32_from_bits(sign | (fe << 23) | ((m & 0x3ffu) << 13));
}

}  // namespace mr_sim_half

inline float __half2float(__half h) { return mr_sim_half::f16_to_f32(h.__x); }

inline __half __float2half_rn(float f) { return __half{mr_sim_half::f32_to_f16_rn(f)}; }
