// cuda_bf16.h for the SIMT simulator: found before the CUDA toolkit's through
// `-I crates/memrnn-cuda/sim/include`. The subset a kernel needs to store values in
// bfloat16 and compute in f32: the `__nv_bfloat16` storage type and its two conversions,
// with the device's results bit for bit (round to nearest, ties to even; a NaN narrows to
// the canonical 0x7fff, as CUDA's `__float2bfloat16_rn` does). Standalone (no
// cuda_sim.h); tested against the `half` crate from Rust (half_conv.cpp).
#pragma once
#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
    unsigned short __x;
};

namespace mr_sim_bf16 {

// f32 → bfloat16 bits, round to nearest, ties to even (bfloat16 is f32's top half, so
// subnormals and overflow to infinity fall out of the same rounding).
inline unsigned short f32_to_bf16_rn(float f) {
    uint32_t x;
    std::memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;  // NaN: canonical
    return (unsigned short)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

// bfloat16 bits → f32 (exact).
inline float bf16_to_f32(unsigned short b) {
    const uint32_t x = (uint32_t)b << 16;
    float f;
    std::memcpy(&f, &x, sizeof f);
    return f;
}

}  // namespace mr_sim_bf16

inline float __bfloat162float(__nv_bfloat16 b) { return mr_sim_bf16::bf16_to_f32(b.__x); }

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    return __nv_bfloat16{mr_sim_bf16::f32_to_bf16_rn(f)};
}
