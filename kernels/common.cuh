// common.cuh: what every memrnn kernel family shares.
//
// - Gate nonlinearities (accurate expf / tanhf: the PTX is built WITHOUT --use_fast_math,
//   so the gates match the f64 reference far inside the 1e-4 relative tolerance).
// - The tiled recurrent product `tile_phase`, the heart of the persistent recurrence:
//   a block owns `jt` hidden units x `bt` batch rows; every thread item computes, for one
//   unit and 4 batch rows, GO dot products of length K (the K loop split over `ks` lanes of
//   a warp, reduced with shuffles), then hands the sums to a per-cell epilogue that does
//   the gate arithmetic. The input vectors (h_{t-1} forward, du_{t+1} backward) are staged
//   in shared memory in chunks of `kc` columns; the weights come from shared memory (the
//   persistent kernels: loaded once, kept for all T steps) or from global memory (the
//   per-step fallback kernels).
// - The sequence drivers `seq_fwd_body` / `seq_bwd_body`, templated on a Cell (rnn.cu,
//   gru.cu, lstm.cu define the cells), in two flavours: PERSISTENT (one cooperative
//   launch, one grid-wide sync per step) and STEP (one launch per step, the host loops).
//
// Layouts (row-major, time-major, as memrnn-core's Backend documents):
//   A      [T*B, G*H]  x W_ih^T (no bias), from cuBLAS before the loop
//   w_hh   [G*H, H]    forward weights;  w_t [H, G*H] = W_hh^T (backward weights)
//   s0     [B, S]      S = H, or 2H for the LSTM ([h | c])
//   h_seq  [T, B, H]; gates [T, B, NCACHE*H] (what the cell caches); c_seq [T, B, H] (LSTM)
//   dA, dU [T*B, G*H]  dL/d(pre-activation) input-side and recurrent-side (aliases when
//                      the cell has da == du)
//   D      [B, S]      the "direct" part of dL/ds carried between steps (h: GRU's z*dh;
//                      c: LSTM's f*dc); the host initialises it with dL/ds_T (or zeros)
//
// Launch shape (both flavours): blockDim.x = MR_THREADS, gridDim.x = nj * nb tiles, block
// `i` owning units [j0, j0 + jt) with j0 = (i % nj) * jt and rows [b0, b0 + bt) with
// b0 = (i / nj) * bt. `ks` is a power of two <= 32 and jt * ceil(bt / 4) * ks need not
// fill the block (threads loop over passes). Shared memory (dynamic):
//   persistent: GO * jt * kp weights of the storage type WT (kp = K | 1, odd to spread
//               banks), padded to a whole float, + ceil4(bt) * kc floats of staged input
//               (weight_floats<WT>(GO * jt * kp) + ceil4(bt) * kc floats in all)
//   step:       ceil4(bt) * kc floats of staged input
// The persistent kernels MUST be launched cooperatively with every block co-resident.
// Limits: all sizes fit in int; element offsets are computed in size_t.

#pragma once

#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "params.cuh"

// The dynamic shared-memory declaration, the one line of CUDA syntax that cannot be
// redirected on the host: the simulated device (crates/memrnn-cuda/sim/cuda_sim.h)
// defines this macro first, as a pointer to the launch's per-block allocation.
#ifndef MR_DYNAMIC_SHARED
#define MR_DYNAMIC_SHARED(T, name) extern __shared__ __align__(16) T name[]
#endif

#define MR_THREADS 256
#define MR_ROWS 4  // batch rows per thread item

namespace mr {

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

__device__ __forceinline__ int ceil4(int v) { return (v + 3) & ~3; }

__device__ __forceinline__ int odd_pitch(int k) { return k | 1; }

// Weight storage types of the recurrence (WT): float, or a half-width copy of W_hh made
// by round_recurrent_{bf16,f16} (small.cu). Every weight is widened to f32 as it is
// loaded (exact: every bf16 and f16 value is an f32 value), so the products, sums and
// gates are the f32 computation on the rounded weights, bit for bit.
__device__ __forceinline__ float widen(float w) { return w; }
__device__ __forceinline__ float widen(__half w) { return __half2float(w); }
__device__ __forceinline__ float widen(__nv_bfloat16 w) { return __bfloat162float(w); }

// Floats of shared memory that n weights of type WT take, padded so that the staged
// input after them is float-aligned (the host planner's `weight_smem_bytes`).
template <class WT>
__device__ __forceinline__ size_t weight_floats(size_t n) {
    return (n * sizeof(WT) + sizeof(float) - 1) / sizeof(float);
}

// This block's tile.
struct Tiling {
    int jt, bt, kc, ks;  // units per tile, batch rows per tile, staged K chunk, lanes per item
    int j0, b0;          // this block's origin
    int n_items;         // jt * ceil(bt / 4)
};

// `block` is the block's index within its network's grid: blockIdx.x for one network, the
// virtual block index within its member for an ensemble launch (see seq_*_persistent).
__device__ __forceinline__ Tiling make_tiling(int jt, int bt, int kc, int ks, int H, int block) {
    Tiling t;
    t.jt = jt;
    t.bt = bt;
    t.kc = kc;
    t.ks = ks;
    const int nj = (H + jt - 1) / jt;
    t.j0 = (block % nj) * jt;
    t.b0 = (block / nj) * bt;
    t.n_items = jt * ((bt + MR_ROWS - 1) / MR_ROWS);
    return t;
}

// For every (unit, row) of this block's tile: v[g] = sum_k in(b, k) * W(g, jl, k), then
// epi(unit, b, v). W(g, jl, k) = widen(w[g * w_gs + jl * w_us + k]) (jl the local unit
// index, w of the storage type WT);
// in(b, k) = in[b * in_ld + k] is read with ld.global.cg (L2, never a stale L1 line: the
// persistent kernels read what other blocks wrote in this launch). K == 0 skips the
// product (v = 0). Every thread of the block must call this (it uses __syncthreads).
template <int GO, class WT, class Epi>
__device__ __forceinline__ void tile_phase(const Tiling& tl, const WT* w, size_t w_gs,
                                           int w_us, const float* in, int in_ld, int K,
                                           int H, int B, float* stage, Epi& epi) {
    const int tid = threadIdx.x;
    const int ks = tl.ks;
    const int kl = tid & (ks - 1);
    const int per_pass = blockDim.x / ks;
    const int n_chunks = K > 0 ? (K + tl.kc - 1) / tl.kc : 0;
    const int btp = ceil4(tl.bt);
    for (int p0 = 0; p0 < tl.n_items; p0 += per_pass) {
        const int item = p0 + tid / ks;
        const int jl = item % tl.jt;
        const int bg = item / tl.jt;
        const bool valid = item < tl.n_items && tl.j0 + jl < H;
        float acc[GO][MR_ROWS];
#pragma unroll
        for (int g = 0; g < GO; ++g)
#pragma unroll
            for (int r = 0; r < MR_ROWS; ++r) acc[g][r] = 0.0f;
        for (int c = 0; c < n_chunks; ++c) {
            const int k0 = c * tl.kc;
            const int klen = min(tl.kc, K - k0);
            if (n_chunks > 1 || p0 == 0) {
                __syncthreads();  // the previous readers of `stage` are done
                for (int e = tid; e < btp * klen; e += blockDim.x) {
                    const int r = e / klen;
                    const int k = e - r * klen;
                    const int b = tl.b0 + r;
                    stage[r * tl.kc + k] =
                        (r < tl.bt && b < B) ? __ldcg(in + (size_t)b * in_ld + k0 + k) : 0.0f;
                }
                __syncthreads();
            }
            if (valid) {
                const WT* wr = w + (size_t)jl * w_us + k0;
                const float* s = stage + bg * MR_ROWS * tl.kc;
                // unroll 4: measured to keep every cell's kernels free of spills
#pragma unroll 4
                for (int k = kl; k < klen; k += ks) {
                    float x[MR_ROWS];
#pragma unroll
                    for (int r = 0; r < MR_ROWS; ++r) x[r] = s[r * tl.kc + k];
#pragma unroll
                    for (int g = 0; g < GO; ++g) {
                        const float wv = widen(wr[g * w_gs + k]);
#pragma unroll
                        for (int r = 0; r < MR_ROWS; ++r) acc[g][r] = fmaf(wv, x[r], acc[g][r]);
                    }
                }
            }
        }
        // Reduce over the ks lanes of each item (lane groups are aligned within a warp,
        // and every lane of the warp is here: the pass loop is uniform over the block).
        for (int off = ks >> 1; off > 0; off >>= 1) {
#pragma unroll
            for (int g = 0; g < GO; ++g)
#pragma unroll
                for (int r = 0; r < MR_ROWS; ++r)
                    acc[g][r] += __shfl_xor_sync(0xffffffffu, acc[g][r], off);
        }
        if (valid && kl == 0) {
            const int unit = tl.j0 + jl;
#pragma unroll
            for (int r = 0; r < MR_ROWS; ++r) {
                const int rr = bg * MR_ROWS + r;
                const int b = tl.b0 + rr;
                if (rr < tl.bt && b < B) {
                    float v[GO];
#pragma unroll
                    for (int g = 0; g < GO; ++g) v[g] = acc[g][r];
                    epi(unit, b, v);
                }
            }
        }
    }
}

// An ensemble member's argument struct, read from the launch's device array in 8-byte
// read-only loads: a plain struct copy from global memory made ptxas spill in
// lstm_seq_fwd_ens_f32 (the arguments stay live across every grid sync); this copy does
// not (the same 64 registers as lstm_seq_fwd_f32, no spill).
template <class Args>
__device__ __forceinline__ Args load_args(const Args* src) {
    static_assert(sizeof(Args) % 8 == 0, "argument structs are arrays of 8-byte words");
    constexpr int N = (int)(sizeof(Args) / 8);
    const unsigned long long* s = reinterpret_cast<const unsigned long long*>(src);
    unsigned long long w[N];
#pragma unroll
    for (int i = 0; i < N; ++i) w[i] = __ldg(s + i);
    Args a;
    memcpy(&a, w, sizeof(Args));
    return a;
}

// ---------------------------------------------------------------------------------------
// Forward.

template <class Cell>
struct FwdEpi {
    FwdArgs a;  // by value: a reference would pin the kernel's copy to the stack
    int t;
    __device__ __forceinline__ void operator()(int unit, int b, const float* u) const {
        Cell::fwd(a, t, unit, b, u);
    }
};

template <class Cell, class WT>
__device__ __forceinline__ void fwd_step(const FwdArgs& a, const Tiling& tl, int t,
                                         const WT* w, size_t w_gs, int w_us,
                                         float* stage) {
    const int S = a.H * Cell::STATE_PARTS;
    const float* in = t == 0 ? a.s0 : a.h_seq + (size_t)(t - 1) * a.B * a.H;
    const int in_ld = t == 0 ? S : a.H;
    FwdEpi<Cell> epi{a, t};
    tile_phase<Cell::G, WT>(tl, w, w_gs, w_us, in, in_ld, a.H, a.H, a.B, stage, epi);
}

// Persistent: W_hh's rows for this block's units (all gates) in shared memory for all T
// steps, in the storage type WT; one grid-wide sync per step.
template <class Cell, class WT>
__device__ __forceinline__ void seq_fwd_persistent(const FwdArgs& a, int jt, int bt, int kc,
                                                   int ks, int block) {
    MR_DYNAMIC_SHARED(float, smem);
    const Tiling tl = make_tiling(jt, bt, kc, ks, a.H, block);
    const int H = a.H;
    const int kp = odd_pitch(H);
    const WT* w_g = static_cast<const WT*>(a.w_hh);
    WT* w_s = reinterpret_cast<WT*>(smem);
    float* stage = smem + weight_floats<WT>((size_t)Cell::G * jt * kp);
    for (int e = threadIdx.x; e < Cell::G * jt * H; e += blockDim.x) {
        const int k = e % H;
        const int gj = e / H;
        const int jl = gj % jt;
        const int g = gj / jt;
        const int unit = tl.j0 + jl;
        // Rows of units beyond H are never read (tile_phase skips them): left unwritten.
        if (unit < H) w_s[(size_t)gj * kp + k] = w_g[((size_t)g * H + unit) * H + k];
    }
    __syncthreads();
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();
    for (int t = 0; t < a.T; ++t) {
        fwd_step<Cell, WT>(a, tl, t, w_s, (size_t)jt * kp, kp, stage);
        if (t + 1 < a.T) grid.sync();
    }
}

// One step t, weights (storage type WT) read from global memory (L2): the fallback when
// W_hh's slices do not fit on chip.
template <class Cell, class WT>
__device__ __forceinline__ void seq_fwd_one_step(const FwdArgs& a, int jt, int bt, int kc,
                                                 int ks, int t) {
    MR_DYNAMIC_SHARED(float, smem);
    const Tiling tl = make_tiling(jt, bt, kc, ks, a.H, (int)blockIdx.x);
    const int H = a.H;
    fwd_step<Cell, WT>(a, tl, t, static_cast<const WT*>(a.w_hh) + (size_t)tl.j0 * H,
                       (size_t)H * H, H, smem);
}

// ---------------------------------------------------------------------------------------
// Backward through time.

template <class Cell>
struct BwdEpi {
    BwdArgs a;  // by value (see FwdEpi)
    int t;
    __device__ __forceinline__ void operator()(int unit, int b, const float* v) const {
        const int S = a.H * Cell::STATE_PARTS;
        const size_t sb = (size_t)b * S + unit;
        const float carry_h = v[0] + a.D[sb];
        if (t < 0) {
            a.ds0[sb] = carry_h;
            if (Cell::STATE_PARTS == 2) a.ds0[sb + a.H] = a.D[sb + a.H];
            return;
        }
        const size_t tb = (size_t)t * a.B + b;
        const float dh = carry_h + (a.has_dh ? __ldg(a.dh_seq + tb * a.H + unit) : 0.0f);
        Cell::bwd(a, t, unit, b, dh);
    }
};

// Iteration t of the backward loop (t = T-1 down to -1): the recurrent product
// dh_t += du_{t+1} W_hh for this block's units (skipped at t = T-1), then the cell's gate
// backward for step t writing dA_t, dU_t and D (or, at t = -1, dL/ds_0).
template <class Cell, class WT>
__device__ __forceinline__ void bwd_iter(const BwdArgs& a, const Tiling& tl, int t,
                                         const WT* w, size_t w_gs, int w_us,
                                         float* stage) {
    const int GH = Cell::G * a.H;
    const int K = t < a.T - 1 ? GH : 0;
    const float* in = a.dU + (size_t)(t + 1) * a.B * GH;
    BwdEpi<Cell> epi{a, t};
    tile_phase<1, WT>(tl, w, w_gs, w_us, in, GH, K, a.H, a.B, stage, epi);
}

// Persistent: this block's columns of W_hh (rows of W_hh^T, every gate) in shared memory
// for all T steps, in the storage type WT; one grid-wide sync per step.
template <class Cell, class WT>
__device__ __forceinline__ void seq_bwd_persistent(const BwdArgs& a, int jt, int bt, int kc,
                                                   int ks, int block) {
    MR_DYNAMIC_SHARED(float, smem);
    const Tiling tl = make_tiling(jt, bt, kc, ks, a.H, block);
    const int H = a.H;
    const int GH = Cell::G * H;
    const int kp = odd_pitch(GH);
    const WT* w_g = static_cast<const WT*>(a.w_t);
    WT* w_s = reinterpret_cast<WT*>(smem);
    float* stage = smem + weight_floats<WT>((size_t)jt * kp);
    for (int e = threadIdx.x; e < jt * GH; e += blockDim.x) {
        const int k = e % GH;
        const int jl = e / GH;
        const int unit = tl.j0 + jl;
        // Rows of units beyond H are never read (tile_phase skips them): left unwritten.
        if (unit < H) w_s[(size_t)jl * kp + k] = w_g[(size_t)unit * GH + k];
    }
    __syncthreads();
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();
    for (int t = a.T - 1; t >= -1; --t) {
        bwd_iter<Cell, WT>(a, tl, t, w_s, 0, kp, stage);
        if (t >= 0) grid.sync();
    }
}

template <class Cell, class WT>
__device__ __forceinline__ void seq_bwd_one_step(const BwdArgs& a, int jt, int bt, int kc,
                                                 int ks, int t) {
    MR_DYNAMIC_SHARED(float, smem);
    const Tiling tl = make_tiling(jt, bt, kc, ks, a.H, (int)blockIdx.x);
    const int GH = Cell::G * a.H;
    bwd_iter<Cell, WT>(a, tl, t, static_cast<const WT*>(a.w_t) + (size_t)tl.j0 * GH, 0, GH,
                       smem);
}

}  // namespace mr

// The entry points of a cell family, each taking one parameter struct (params.cuh), in
// three weight storage types SUFFIX / WT: f32 / float, bf16 / __nv_bfloat16, f16 / __half
// (the w_hh / w_t pointers of the struct point at that type):
//   <fam>_seq_fwd_<SUFFIX>   persistent forward (cooperative launch), all T steps
//   <fam>_step_fwd_<SUFFIX>  forward step p.t (fallback; one launch per step)
//   <fam>_seq_bwd_<SUFFIX>   persistent backward (cooperative launch), t = T-1 .. -1
//   <fam>_step_bwd_<SUFFIX>  backward iteration p.t (fallback; the host runs t = T-1 .. -1)
// and, in f32 only (an ensemble in half precision runs its members one by one):
//   <fam>_seq_fwd_ens_f32  the persistent forward of p.members networks of one shape in
//   <fam>_seq_bwd_ens_f32  one cooperative launch (and the backward): gridDim.x =
//                          members * blocks_per_member, block i working for network
//                          i / blocks_per_member (its args p.a[i / blocks_per_member], a
//                          device array) as that network's block i % blocks_per_member of
//                          the launch shape above; all networks share T, so one grid sync
//                          per step serves them all.
#define MR_DEFINE_CELL_KERNELS_WT(FAM, CELL, SUFFIX, WT)                                  \
    extern "C" __global__ void __launch_bounds__(MR_THREADS)                              \
        FAM##_seq_fwd_##SUFFIX(const MrRecFwdParams p) {                                  \
        mr::seq_fwd_persistent<CELL, WT>(p.a, p.tile.jt, p.tile.bt, p.tile.kc, p.tile.ks, \
                                         (int)blockIdx.x);                                \
    }                                                                                     \
    extern "C" __global__ void __launch_bounds__(MR_THREADS)                              \
        FAM##_step_fwd_##SUFFIX(const MrRecFwdParams p) {                                 \
        mr::seq_fwd_one_step<CELL, WT>(p.a, p.tile.jt, p.tile.bt, p.tile.kc, p.tile.ks,   \
                                       p.t);                                              \
    }                                                                                     \
    extern "C" __global__ void __launch_bounds__(MR_THREADS)                              \
        FAM##_seq_bwd_##SUFFIX(const MrRecBwdParams p) {                                  \
        mr::seq_bwd_persistent<CELL, WT>(p.a, p.tile.jt, p.tile.bt, p.tile.kc, p.tile.ks, \
                                         (int)blockIdx.x);                                \
    }                                                                                     \
    extern "C" __global__ void __launch_bounds__(MR_THREADS)                              \
        FAM##_step_bwd_##SUFFIX(const MrRecBwdParams p) {                                 \
        mr::seq_bwd_one_step<CELL, WT>(p.a, p.tile.jt, p.tile.bt, p.tile.kc, p.tile.ks,   \
                                       p.t);                                              \
    }

#define MR_DEFINE_CELL_ENS_KERNELS(FAM, CELL)                                             \
    extern "C" __global__ void __launch_bounds__(MR_THREADS)                              \
        FAM##_seq_fwd_ens_f32(const MrRecFwdEnsParams p) {                                \
        const int bpm = p.blocks_per_member;                                              \
        const mr::FwdArgs a = mr::load_args(p.a + blockIdx.x / bpm);                      \
        mr::seq_fwd_persistent<CELL, float>(a, p.tile.jt, p.tile.bt, p.tile.kc, p.tile.ks, \
                                            (int)(blockIdx.x % bpm));                     \
    }                                                                                     \
    extern "C" __global__ void __launch_bounds__(MR_THREADS)                              \
        FAM##_seq_bwd_ens_f32(const MrRecBwdEnsParams p) {                                \
        const int bpm = p.blocks_per_member;                                              \
        const mr::BwdArgs a = mr::load_args(p.a + blockIdx.x / bpm);                      \
        mr::seq_bwd_persistent<CELL, float>(a, p.tile.jt, p.tile.bt, p.tile.kc, p.tile.ks, \
                                            (int)(blockIdx.x % bpm));                     \
    }

#define MR_DEFINE_CELL_KERNELS(FAM, CELL)                     \
    MR_DEFINE_CELL_KERNELS_WT(FAM, CELL, f32, float)          \
    MR_DEFINE_CELL_KERNELS_WT(FAM, CELL, bf16, __nv_bfloat16) \
    MR_DEFINE_CELL_KERNELS_WT(FAM, CELL, f16, __half)         \
    MR_DEFINE_CELL_ENS_KERNELS(FAM, CELL)
