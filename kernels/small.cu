// small.cu: the small kernels around the recurrences (Adam among them), all
// memory-bound, all f32 arithmetic (round_recurrent_* also store half-width weights).
//   adam_update_f32   one Adam step in place (torch.optim.Adam, no weight decay; the host
//                     passes step_size = lr / (1 - beta1^t) and bc2_sqrt = sqrt(1 - beta2^t),
//                     computed exactly as memrnn_core::adam_update_host does).
//                     Launch: 1-D, any block size, grid-stride.
//   col_sum_f32       out[c] = sum_r M[r, c] for M [R, C] row-major (bias gradients over all
//                     T*B rows, no atomics). Launch: block (32, 8), grid.x = ceil(C / 32).
//   transpose_f32     out [C, R] = in [R, C]^T (W_hh^T for the backward recurrence).
//                     Launch: block (32, 8), grid (ceil(C / 32), ceil(R / 32)).
//   speed_f32         per row n of [N, S]: e = f - s, speed[n] = sum e^2, twice_e = 2 e.
//                     Launch: block 256 (8 warps, one row per warp), grid ceil(N / 8).
//   sub_f32           out[i] = a[i] - b[i]. Launch: 1-D, grid-stride.
//   repeat_rows_f32   out[(n*S + i), :] = in[n, :] for i < S (the Jacobian's N*S rows).
//                     Launch: 1-D, grid-stride over N*S*C.
//   one_hot_f32       out [N*S, S]: row (n*S + i) is e_i. Launch: 1-D, grid-stride.
//   fill_f32          out[i] = v (NaN poisoning in tests, zeros). Launch: 1-D, grid-stride.
//   round_recurrent_bf16, round_recurrent_f16
//                     W_hh [R, C] rounded to the storage format (nearest, ties to even:
//                     `memrnn_core::Precision::round` bit for bit, a NaN becoming the
//                     canonical NaN) into the half copy [R, C], its transpose [C, R] and/or
//                     an f32 copy (params.cuh), made from the f32 master weights at every
//                     call so that they are never stale; flags the first finite weight that
//                     overflows to an infinity (the host turns that into an error).
//                     Launch: 1-D, grid-stride over R * C.
//   axpy_f32          y[i] += alpha * x[i] (the speed penalty's gradient joining the
//                     cross-entropy's). Launch: 1-D, grid-stride.
//   clip_norm_f32     the global norm of up to four gradients, summed in double, into
//                     clip[0], the clip scale (max_norm / norm when above max_norm, in
//                     double, rounded to float, as memrnn_core::clip_scale) into clip[1],
//                     and the skip decision (non-finite norm, or the divergence guard:
//                     halted already, or a bad loss) into clip[2].
//                     Launch: ONE block of CLIP_THREADS threads (the sum order is fixed).
//   clip_adam_f32     adam_update_f32 over up to four groups in one launch, each gradient
//                     times clip[1]; nothing is written when clip[2] is set.
//                     Launch: 1-D, any block size, grid-stride over the groups' total.
//   clip_norm_ens_f32, clip_adam_ens_f32
//                     the same two for up to MR_CLIP_ENS_MAX ensemble members in one launch
//                     each (a member's own norm, scale and guard; the same arithmetic).
//                     Launch: clip_norm_ens_f32 exactly one block of CLIP_THREADS per
//                     member; clip_adam_ens_f32 1-D, members * blocks_per_member blocks.
// Every kernel takes one parameter struct (params.cuh), unpacked into locals first.
// Limits: element counts below 2^31 except where a size_t count is taken.

#include "common.cuh"

extern "C" __global__ void adam_update_f32(const MrAdamParams P) {
    float* __restrict__ p = P.p;
    const float* __restrict__ g = P.g;
    float* __restrict__ m = P.m;
    float* __restrict__ v = P.v;
    const long long n = P.n;
    const float beta1 = P.beta1, beta2 = P.beta2, step_size = P.step_size;
    const float bc2_sqrt = P.bc2_sqrt, eps = P.eps;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const float gi = g[i];
        const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        const float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] -= step_size * mi / denom;
    }
}

extern "C" __global__ void col_sum_f32(const MrColSumParams P) {
    const float* __restrict__ M = P.M;
    float* __restrict__ out = P.out;
    const long long R = P.R;
    const int C = P.C;
    __shared__ float part[8][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    float acc = 0.0f;
    if (c < C)
        for (long long r = threadIdx.y; r < R; r += 8) acc += M[r * C + c];
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float s = 0.0f;
#pragma unroll
        for (int y = 0; y < 8; ++y) s += part[y][threadIdx.x];
        out[c] = s;
    }
}

extern "C" __global__ void transpose_f32(const MrTransposeParams P) {
    const float* __restrict__ in = P.in;
    float* __restrict__ out = P.out;
    const int R = P.R, C = P.C;
    __shared__ float tile[32][33];
    const int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
    for (int y = threadIdx.y; y < 32; y += 8) {
        const int r = r0 + y, c = c0 + threadIdx.x;
        if (r < R && c < C) tile[y][threadIdx.x] = in[(size_t)r * C + c];
    }
    __syncthreads();
    for (int y = threadIdx.y; y < 32; y += 8) {
        const int c = c0 + y, r = r0 + threadIdx.x;
        if (r < R && c < C) out[(size_t)c * R + r] = tile[threadIdx.x][y];
    }
}

extern "C" __global__ void speed_f32(const MrSpeedParams P) {
    const float* __restrict__ f = P.f;
    const float* __restrict__ s = P.s;
    float* __restrict__ speed = P.speed;
    float* __restrict__ twice_e = P.twice_e;
    const int N = P.N, S = P.S;
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (warp >= N) return;
    const size_t base = (size_t)warp * S;
    float acc = 0.0f;
    for (int k = lane; k < S; k += 32) {
        const float e = f[base + k] - s[base + k];
        acc += e * e;
        twice_e[base + k] = 2.0f * e;
    }
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) speed[warp] = acc;
}

extern "C" __global__ void sub_f32(const MrSubParams P) {
    float* __restrict__ out = P.out;
    const float* __restrict__ a = P.a;
    const float* __restrict__ b = P.b;
    const long long n = P.n;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        out[i] = a[i] - b[i];
}

extern "C" __global__ void repeat_rows_f32(const MrRepeatRowsParams P) {
    const float* __restrict__ in = P.in;
    float* __restrict__ out = P.out;
    const int N = P.N, S = P.S, C = P.C;
    const long long total = (long long)N * S * C;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const long long row = e / C;
        const int c = (int)(e - row * C);
        const long long n = row / S;
        out[e] = in[n * C + c];
    }
}

extern "C" __global__ void one_hot_f32(const MrOneHotParams P) {
    float* __restrict__ out = P.out;
    const int N = P.N, S = P.S;
    const long long total = (long long)N * S * S;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const long long row = e / S;
        const int k = (int)(e - row * S);
        const int i = (int)(row % S);
        out[e] = k == i ? 1.0f : 0.0f;
    }
}

extern "C" __global__ void fill_f32(const MrFillParams P) {
    float* __restrict__ out = P.out;
    const float v = P.v;
    const long long n = P.n;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        out[i] = v;
}

namespace mr {

__device__ __forceinline__ __half narrow_to(float w, const __half*) { return __float2half_rn(w); }
__device__ __forceinline__ __nv_bfloat16 narrow_to(float w, const __nv_bfloat16*) {
    return __float2bfloat16_rn(w);
}

template <class WT>
__device__ __forceinline__ void round_recurrent(const MrRoundParams& P) {
    const float* __restrict__ in = P.in;
    WT* __restrict__ out = static_cast<WT*>(P.out);
    WT* __restrict__ out_t = static_cast<WT*>(P.out_t);
    float* __restrict__ out_f32 = P.out_f32;
    const int R = P.R, C = P.C;
    const long long n = (long long)R * C;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const float w = in[i];
        const WT q = narrow_to(w, out);
        if (out != nullptr) out[i] = q;
        if (out_t != nullptr) {
            const long long r = i / C, c = i - r * C;
            out_t[c * R + r] = q;
        }
        const float back = widen(q);
        if (out_f32 != nullptr) out_f32[i] = back;
        if (isfinite(w) && !isfinite(back)) atomicMax(P.first_overflow, (unsigned)(n - i));
    }
}

}  // namespace mr

extern "C" __global__ void round_recurrent_bf16(const MrRoundParams P) {
    mr::round_recurrent<__nv_bfloat16>(P);
}

extern "C" __global__ void round_recurrent_f16(const MrRoundParams P) {
    mr::round_recurrent<__half>(P);
}

extern "C" __global__ void axpy_f32(const MrAxpyParams P) {
    float* __restrict__ y = P.y;
    const float* __restrict__ x = P.x;
    const long long n = P.n;
    const float alpha = P.alpha;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        y[i] += alpha * x[i];
}

#define CLIP_THREADS 256

// The global norm, clip scale and guard of one MrClipAdamParams, by one block of
// CLIP_THREADS threads with `part` its CLIP_THREADS doubles of shared memory.
__device__ void clip_norm_block(const MrClipAdamParams& P, double* part) {
    const mr::AdamGroupArgs gs[4] = {P.g0, P.g1, P.g2, P.g3};
    double acc = 0.0;
    for (int k = 0; k < 4; ++k) {
        const float* __restrict__ g = gs[k].g;
        for (long long i = threadIdx.x; i < gs[k].n; i += CLIP_THREADS) {
            const double v = (double)g[i];
            acc += v * v;
        }
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int half = CLIP_THREADS / 2; half > 0; half >>= 1) {
        if ((int)threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        const double norm = sqrt(part[0]);
        P.clip[0] = (float)norm;
        P.clip[1] = P.has_max && norm > (double)P.max_norm ? (float)((double)P.max_norm / norm)
                                                            : 1.0f;
        bool skip = !isfinite(norm);
        if (P.has_guard) {
            const float loss = P.loss[0];
            if (P.halted[0] != 0.0f || !isfinite(loss) || loss > P.max_loss) {
                P.halted[0] = 1.0f;
                skip = true;
            }
        }
        P.clip[2] = skip ? 1.0f : 0.0f;
    }
}

// Adam on every group of one MrClipAdamParams: elements first, first + stride, ... (a
// grid-stride loop over the blocks given to it).
__device__ void clip_adam_span(const MrClipAdamParams& P, long long first, long long stride) {
    const mr::AdamGroupArgs gs[4] = {P.g0, P.g1, P.g2, P.g3};
    if (P.clip[2] != 0.0f) return;
    const float scale = P.clip[1];
    const float beta1 = P.beta1, beta2 = P.beta2, step_size = P.step_size;
    const float bc2_sqrt = P.bc2_sqrt, eps = P.eps;
    const long long total = gs[0].n + gs[1].n + gs[2].n + gs[3].n;
    for (long long e = first; e < total; e += stride) {
        int k = 0;
        long long i = e;
        while (i >= gs[k].n) i -= gs[k++].n;
        float* __restrict__ p = gs[k].p;
        float* __restrict__ m = gs[k].m;
        float* __restrict__ v = gs[k].v;
        const float gi = gs[k].g[i] * scale;
        const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        const float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] -= step_size * mi / denom;
    }
}

extern "C" __global__ void clip_norm_f32(const MrClipAdamParams P) {
    __shared__ double part[CLIP_THREADS];
    clip_norm_block(P, part);
}

extern "C" __global__ void clip_adam_f32(const MrClipAdamParams P) {
    clip_adam_span(P, (long long)blockIdx.x * blockDim.x + threadIdx.x,
                   (long long)gridDim.x * blockDim.x);
}

// One block per ensemble member (the launch has exactly P.members blocks).
extern "C" __global__ void clip_norm_ens_f32(const MrClipAdamEnsParams P) {
    __shared__ double part[CLIP_THREADS];
    clip_norm_block(P.m[blockIdx.x], part);
}

// P.blocks_per_member blocks per member, in member order.
extern "C" __global__ void clip_adam_ens_f32(const MrClipAdamEnsParams P) {
    const int member = (int)blockIdx.x / P.blocks_per_member;
    if (member >= P.members) return;
    const long long local = (long long)((int)blockIdx.x % P.blocks_per_member);
    clip_adam_span(P.m[member], local * blockDim.x + threadIdx.x,
                   (long long)P.blocks_per_member * blockDim.x);
}
