// Test kernels for the simulator, written in CUDA syntax and compiled exactly as the real
// kernels are: g++ -x c++ -include cuda_sim.h (driver.cpp launches them).
#include <cooperative_groups.h>

namespace cg = cooperative_groups;

// Block barrier ordering: every thread writes, syncs, reads its neighbour's slot (static
// and dynamic shared memory); several rounds so a missing barrier would show.
extern "C" __global__ void k_barrier(int* out, int rounds) {
    __shared__ int st[1024];
    MR_DYNAMIC_SHARED(int, dyn);
    const int n = blockDim.x, t = threadIdx.x;
    int acc = 0;
    for (int r = 0; r < rounds; ++r) {
        st[t] = t * 7 + r + (int)blockIdx.x;
        dyn[t] = t * 3 - r;
        __syncthreads();
        acc += st[(t + 1) % n] + dyn[(t + n - 1) % n];
        __syncthreads();  // the next round's writes wait for these reads
    }
    out[blockIdx.x * n + t] = acc;
}

// __syncthreads_or / _and / _count.
extern "C" __global__ void k_sync_or(int* out, int chosen) {
    const int t = threadIdx.x;
    const int any = __syncthreads_or(t == chosen);
    const int all = __syncthreads_and(t != chosen);
    const int cnt = __syncthreads_count(t % 3 == 0);
    out[t * 3 + 0] = any;
    out[t * 3 + 1] = all;
    out[t * 3 + 2] = cnt;
}

// Shuffles at widths 32/16/8: for every (op, width, b) case the lane's result. Values are
// lane * 100 + case so a wrong source shows which lane it came from.
extern "C" __global__ void k_shfl(float* out_xor, int* out_up, int* out_down, int* out_idx) {
    const int lane = threadIdx.x & 31;
    int c = 0;
    const int widths[3] = {32, 16, 8};
    for (int wi = 0; wi < 3; ++wi) {
        const int w = widths[wi];
        for (int b = 0; b < 32; ++b, ++c) {
            out_xor[c * 32 + lane] = __shfl_xor_sync(0xffffffffu, (float)(lane * 100 + c), b, w);
            out_up[c * 32 + lane] = __shfl_up_sync(0xffffffffu, lane * 100 + c, b, w);
            out_down[c * 32 + lane] = __shfl_down_sync(0xffffffffu, (unsigned)(lane * 100 + c), b, w);
            out_idx[c * 32 + lane] = __shfl_sync(0xffffffffu, lane * 100 + c, b, w);
        }
    }
}

// Warp reduction (xor butterfly) and inclusive scan (shfl_up), per warp of a 2-D block.
extern "C" __global__ void k_warp_reduce(const float* in, float* sums, int* scans) {
    const int t = threadIdx.y * blockDim.x + threadIdx.x;
    const int lane = t & 31;
    float v = in[t];
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    sums[t] = v;
    int x = lane + 1;
    for (int off = 1; off < 32; off <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, x, off);
        if (lane >= off) x += y;
    }
    scans[t] = x;
}

// Multi-dimensional blocks and grids: every thread writes its indices at its global slot.
extern "C" __global__ void k_dims(unsigned* out) {
    const unsigned bl = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    const unsigned tl = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    const unsigned nt = blockDim.x * blockDim.y * blockDim.z;
    unsigned* o = out + (size_t)(bl * nt + tl) * 12;
    o[0] = threadIdx.x; o[1] = threadIdx.y; o[2] = threadIdx.z;
    o[3] = blockIdx.x; o[4] = blockIdx.y; o[5] = blockIdx.z;
    o[6] = blockDim.x; o[7] = blockDim.y; o[8] = blockDim.z;
    o[9] = gridDim.x; o[10] = gridDim.y; o[11] = gridDim.z;
}

// A partial last warp (blockDim 48): lanes 0..15 of warp 1 exist; mask 0xffff works.
extern "C" __global__ void k_partial_warp(int* out, unsigned mask1) {
    const int t = threadIdx.x, lane = t & 31;
    const unsigned mask = t < 32 ? 0xffffffffu : mask1;
    out[t] = __shfl_xor_sync(mask, t, 1);
    (void)lane;
}

// Independent thread scheduling (Volta+): the low half-warp xor-shuffles with 0xffff and
// then waits in __syncwarp() while the high half up-shuffles with 0xffff0000. With
// `overlap` the high half shuffles with the full mask that the low half's __syncwarp()
// waits on: two different instructions on one mask, an error.
extern "C" __global__ void k_half_warps(int* out, int overlap) {
    const int lane = threadIdx.x & 31;
    int v = (int)threadIdx.x;
    for (int r = 0; r < 3; ++r) {
        if (lane < 16) v = __shfl_xor_sync(0x0000ffffu, v, 1) + 1;
        else v = __shfl_up_sync(overlap ? 0xffffffffu : 0xffff0000u, v, 1, 16) + 1;
        out[r * blockDim.x + threadIdx.x] = v;
        __syncwarp();
    }
}

// Cooperative grid-sync ring: block i reads what block i-1 wrote before the sync.
extern "C" __global__ void k_ring(int* slots, int* errors, int iters) {
    MR_DYNAMIC_SHARED(int, sh);
    cg::grid_group grid = cg::this_grid();
    const int nb = gridDim.x, b = blockIdx.x, t = threadIdx.x;
    for (int it = 0; it < iters; ++it) {
        if (t == 0) slots[b] = it * 1000 + b;
        grid.sync();
        if (t == 0) sh[0] = slots[(b + nb - 1) % nb];
        __syncthreads();
        if (sh[0] != it * 1000 + (b + nb - 1) % nb) errors[b * blockDim.x + t] += 1;
        grid.sync();  // nobody overwrites a slot before its reader has read it
    }
}

// Grid sync in a non-cooperative launch (error), and with a block that returns (error).
extern "C" __global__ void k_grid_sync(int skip_block) {
    if ((int)blockIdx.x == skip_block) return;
    cg::this_grid().sync();
}

// Divergent __syncthreads: two call sites (error naming both lines).
extern "C" __global__ void k_divergent(int* out) {
    if (threadIdx.x < 16) {
        __syncthreads();  // SITE_A
    } else {
        __syncthreads();  // SITE_B
    }
    out[threadIdx.x] = 1;
}

// A lane exits before a full-mask shuffle (error).
extern "C" __global__ void k_exited_lane(int* out) {
    if (threadIdx.x == 5) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
}

// Deadlock: half the warp at a shuffle, the other half at __syncthreads.
extern "C" __global__ void k_deadlock(int* out) {
    if (threadIdx.x < 16) out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1);
    else __syncthreads();
}

// Static __shared__ in a cooperative launch of several blocks (error).
extern "C" __global__ void k_static_shared_coop(int* out) {
    __shared__ int s;
    s = blockIdx.x;
    cg::this_grid().sync();
    out[blockIdx.x] = s;
}

// Dynamic shared memory: report the bit patterns (NaN-filled, exactly sized).
extern "C" __global__ void k_dyn_shared(unsigned* out, int n) {
    MR_DYNAMIC_SHARED(float, smem);
    if (threadIdx.x == 0)
        for (int i = 0; i < n; ++i) out[i] = __float_as_uint(smem[i]);
}

// Out of bounds: reads one float past the dynamic shared allocation (ASan must report).
extern "C" __global__ void k_oob_shared(float* out, int n) {
    MR_DYNAMIC_SHARED(float, smem);
    out[threadIdx.x] = smem[n + threadIdx.x];
}

// Timing: a 2-thread block bouncing on __syncthreads (one switch per barrier), and a
// 256-thread block doing `n` shuffles per thread.
extern "C" __global__ void k_pingpong(int n) {
    for (int i = 0; i < n; ++i) __syncthreads();
}
extern "C" __global__ void k_shfl_many(float* out, int n) {
    float v = (float)threadIdx.x;
    for (int i = 0; i < n; ++i) v = __shfl_xor_sync(0xffffffffu, v, 1 + (i & 15)) * 0.5f + 1.0f;
    out[threadIdx.x] = v;
}

// The atomics, fences, float intrinsics, min/max and vector types the header maps.
extern "C" __global__ void k_misc(float* outf, int* outi) {
    __threadfence();
    const float4 q = make_float4(1.f, 2.f, 3.f, 4.f);
    const float2 p = __ldg(reinterpret_cast<const float2*>(&q));
    outf[0] = __fmaf_rn(p.x, p.y, __fadd_rn(__fmul_rn(2.f, 3.f), __fsub_rn(1.f, 0.5f)));
    outf[1] = min(1.5f, 2.5f) + max(1.5f, 2.5f);
    outf[2] = isfinite(outf[0]) ? rsqrtf(4.0f) : -1.f;
    outi[0] = min(3, -4) + (int)max(2u, 7u) + (int)min(5u, 9);
    outi[1] = __float_as_int(1.0f) == 0x3f800000 && __int_as_float(0x40000000) == 2.0f;
    outi[2] = (int)min(10ll, 20ll) + (int)__ldcg(&outi[0]);
}
