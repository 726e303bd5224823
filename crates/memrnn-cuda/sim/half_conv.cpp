// half_conv.cpp: a test hook into the simulator's half-precision conversions
// (include/cuda_fp16.h, include/cuda_bf16.h), so that memrnn-cuda's tests can check them
// bit for bit against the `half` crate over every binary16 / bfloat16 pattern and many
// f32 values (ties, subnormals, overflow, infinities, NaN).
#include <cstddef>
#include <cstdint>

#include "cuda_bf16.h"
#include "cuda_fp16.h"

// f32 → (binary16, bfloat16) bits, n values.
extern "C" void mr_sim_half_narrow(const float* in, size_t n, uint16_t* f16, uint16_t* bf16) {
    for (size_t i = 0; i < n; ++i) {
        f16[i] = __float2half_rn(in[i]).__x;
        bf16[i] = __float2bfloat16_rn(in[i]).__x;
    }
}

// (binary16, bfloat16) bits → f32, n values each.
extern "C" void mr_sim_half_widen(const uint16_t* in, size_t n, float* from_f16, float* from_bf16) {
    for (size_t i = 0; i < n; ++i) {
        from_f16[i] = __half2float(__half{in[i]});
        from_bf16[i] = __bfloat162float(__nv_bfloat16{in[i]});
    }
}
