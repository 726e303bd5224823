// slowpoints.cu: the batched slow-point search (MATH.md §4), many Adam iterations per
// launch, candidates independent (no grid-wide sync).
//
// Per iteration and candidate s (state h, or [h | c] for the LSTM), at the constant input x̄:
//   u = W_hh h (+ b_hh), s' = F(s) from ā = W_ih x̄ + b_ih (computed once per call by
//   cuBLAS) and u, e = s' − s, S = ‖e‖²; then memrnn_core's CandidateStatus::check (ported
//   below as sp_check: the same decision, the same order of tests); and when it steps:
//   ∇S = 2 (J − I)ᵀ e by one vector–Jacobian product (the cell's gate backward from
//   rnn.cuh / gru.cuh / lstm.cuh, shared with the recurrence kernels, with upstream 2e,
//   then W_hhᵀ du), then Adam on the state with the
//   candidate's own moments and step count (memrnn_core::adam_update_host; the bias
//   corrections use compiler-rt's __powisf2 algorithm, as Rust's f32::powi does).
//
// Block = a tile of CT candidates (CT = 32: `<cell>_slowpoints_f32`; CT = 8:
// `<cell>_slowpoints_narrow_f32`, for few candidates or large H), 256 threads. Both
// products are tile GEMMs over the CT candidates, so every W_hh element read from L2 is
// used CT times: each warp owns output tiles of CT candidates × 32 outputs, each thread
// CT/4 candidates × 4 consecutive outputs (lane = og·4 + cg); the weights stream from
// global memory (L2-resident: 480 KB for GRU H 200) with 16-byte loads, one group of 8
// k-rows prefetched into registers while the previous group is multiplied; the candidate
// vectors (h forward, du backward) sit transposed in shared memory ([k][CT]), read as
// float4 / float2.
//   forward:  U[o][c]  = Σ_k wf[k][o] hT[k][c]    wf = W_hhᵀ padded  [Hk][GHn]
//   backward: dh[k][c] = Σ_o wb[o][k] U[o][c]     wb = W_hh padded   [GHk][Hn]
// (U is overwritten in place by the gate pass with du.) The gate pass maps lanes to
// candidates (conflict-free), accumulates per-thread partial S, and the CT threads
// 0..CT-1 sum the 256/CT partials in a fixed order, then decide. The Adam update is the
// backward GEMM's epilogue (m, v in global memory, states in shared memory until the end
// of the launch).
//
// Padding: Hk = ceil8(H), GHk = ceil8(G·H), GHn = ceil32(G·H), Hn = ceil32(H); the pads of
// wf / wb are zero (slowpoints_pack_f32 writes them).
//
// Status per candidate (global, [K][4] u32): iters, speed_sq bits, window_speed_sq bits,
// stop code (0 running, 1 converged, 2 stalled, 3 max-iters, 4 non-finite). Each member's
// idx lists its candidates this launch works on (slowpoints_compact_f32 builds it).
//
// Ensembles: one launch searches the candidates of E networks of one cell and shape. The
// buffers of network e (packed weights, ā, b_hh, states, moments, status, idx) are entry e
// of a device table (MrSpMember); a tile belongs to one network: tiles[i] = (member,
// first, count) gives block i the candidates idx[first .. first + count) of that member,
// and it reads that member's weights. A single network is the ensemble of one. The
// arithmetic per candidate is the same whatever the other tiles hold, so a network's
// candidates end exactly as they end searched alone, given the same tile width CT (the
// partial sums of S depend on it; ops/slowpoints.rs picks it per member).
//
// Shared memory (dynamic, floats, × CT): hT Hk rows | U GHn rows | Gd H rows
// [| cT H rows | Gc H rows (LSTM)], then 256 floats of partial sums and 8·CT words of
// per-candidate scalars (memrnn-cuda/src/ops/slowpoints.rs computes the same size).
// Limits: K·S, G·H·H below 2^31.
//
// Entry points:
//   rnn_slowpoints_f32, gru_slowpoints_f32, lstm_slowpoints_f32           (CT = 32)
//   rnn_slowpoints_narrow_f32, gru_slowpoints_narrow_f32, lstm_slowpoints_narrow_f32 (CT = 8)
//     (MrSlowPointsParams: members [E] of MrSpMember {wf, wb, a_bar [G·H], b_hh [G·H],
//      states [K_e, S], m [K_e, S], v [K_e, S], status [K_e, 4], idx}, tiles [grid][3],
//      H, iters, lr, beta1, beta2, eps, tol, stall_rel, max_iters, stall_window)
//     Launch: block 256, grid = the number of tiles, dynamic shared memory as above.
//   slowpoints_pack_f32(MrPackParams: w_hh [GH, H], wf, wb, H, GH)
//     Launch: 1-D, grid-stride.
//   slowpoints_compact_f32(MrCompactParams: status, K, with_max_iters, idx, count)
//     Active candidates (running, and max-iters when with_max_iters) in index order.
//     Launch: exactly one block of 1024 threads.

#include "common.cuh"
#include "gru.cuh"
#include "lstm.cuh"
#include "rnn.cuh"

#define SP_THREADS 256
#define SP_WARPS (SP_THREADS / 32)

namespace sp {

enum Stop : unsigned { RUNNING = 0, CONVERGED = 1, STALLED = 2, MAX_ITERS = 3, NON_FINITE = 4 };

struct Cfg {
    float lr, beta1, beta2, eps, tol, stall_rel;
    unsigned max_iters, stall_window;
};

__device__ __forceinline__ int ceil8(int v) { return (v + 7) & ~7; }
__device__ __forceinline__ int ceil32(int v) { return (v + 31) & ~31; }

// compiler-rt's __powisf2 (what Rust's f32::powi calls for a run-time exponent).
__device__ __forceinline__ float powi_f32(float a, int b) {
    const bool recip = b < 0;
    float r = 1.0f;
    while (true) {
        if (b & 1) r = __fmul_rn(r, a);
        b /= 2;
        if (b == 0) break;
        a = __fmul_rn(a, a);
    }
    return recip ? 1.0f / r : r;
}

// memrnn_core::CandidateStatus::check, decision for decision.
__device__ __forceinline__ bool check(float s, unsigned iters, float& speed, float& window,
                                      unsigned& stop, const Cfg& cfg) {
    // A candidate resumed after MAX_ITERS is at the iteration count (and state) where it
    // stopped, whose stall check was made then: it is not made twice.
    const bool resumed = stop == MAX_ITERS;
    speed = s;
    if (!isfinite(s)) {
        stop = NON_FINITE;
        return false;
    }
    if (s < cfg.tol) {
        stop = CONVERGED;
        return false;
    }
    if (iters == 0 || !isfinite(window)) {
        window = s;
    } else if (!resumed && cfg.stall_window > 0 && iters % cfg.stall_window == 0) {
        if (__fsub_rn(window, s) <= __fmul_rn(cfg.stall_rel, window)) {
            stop = STALLED;
            return false;
        }
        window = s;
    }
    if (iters >= cfg.max_iters) {
        stop = MAX_ITERS;
        return false;
    }
    stop = RUNNING;
    return true;
}

// Loads this thread's TC = CT/4 consecutive candidates of row k of a [*, CT] shared array.
template <int CT>
__device__ __forceinline__ void load_row(const float* row, float (&a)[CT / 4]) {
    if constexpr (CT == 32) {
        const float4 p = *reinterpret_cast<const float4*>(row);
        const float4 q = *reinterpret_cast<const float4*>(row + 4);
        a[0] = p.x; a[1] = p.y; a[2] = p.z; a[3] = p.w;
        a[4] = q.x; a[5] = q.y; a[6] = q.z; a[7] = q.w;
    } else {
        static_assert(CT == 8, "tiles of 32 or 8 candidates");
        const float2 p = *reinterpret_cast<const float2*>(row);
        a[0] = p.x; a[1] = p.y;
    }
}

__device__ __forceinline__ void load_w(const float* bp, int ldb, int k0, float4 (&w)[8]) {
#pragma unroll
    for (int u = 0; u < 8; ++u)
        w[u] = __ldg(reinterpret_cast<const float4*>(bp + (size_t)(k0 + u) * ldb));
}

template <int CT>
__device__ __forceinline__ void fma_group(float (&acc)[CT / 4][4], const float* As, int k0,
                                          int c0, const float4 (&w)[8]) {
    constexpr int TC = CT / 4;
#pragma unroll
    for (int u = 0; u < 8; ++u) {
        float a[TC];
        load_row<CT>(As + (size_t)(k0 + u) * CT + c0, a);
#pragma unroll
        for (int i = 0; i < TC; ++i) {
            acc[i][0] = fmaf(a[i], w[u].x, acc[i][0]);
            acc[i][1] = fmaf(a[i], w[u].y, acc[i][1]);
            acc[i][2] = fmaf(a[i], w[u].z, acc[i][2]);
            acc[i][3] = fmaf(a[i], w[u].w, acc[i][3]);
        }
    }
}

// acc[i][q] = Σ_{k < Kp} As[k][c0 + i] · B[k][n0 + q], Kp a multiple of 8, B [Kp][ldb]
// (global, ldb a multiple of 4, n0 a multiple of 4: 16-byte aligned loads).
template <int CT>
__device__ __forceinline__ void tile_gemm(float (&acc)[CT / 4][4], const float* As,
                                          const float* __restrict__ B, int ldb, int Kp,
                                          int c0, int n0) {
    constexpr int TC = CT / 4;
#pragma unroll
    for (int i = 0; i < TC; ++i)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[i][q] = 0.0f;
    const float* bp = B + n0;
    // Two register buffers of 8 k-rows each: the next group's loads are in flight while
    // the current group is multiplied.
    float4 wa[8], wz[8];
    load_w(bp, ldb, 0, wa);
#pragma unroll 1
    for (int k0 = 0; k0 < Kp; k0 += 16) {
        if (k0 + 8 < Kp) load_w(bp, ldb, k0 + 8, wz);
        fma_group<CT>(acc, As, k0, c0, wa);
        if (k0 + 8 >= Kp) break;
        if (k0 + 16 < Kp) load_w(bp, ldb, k0 + 16, wa);
        fma_group<CT>(acc, As, k0 + 8, c0, wz);
    }
}

// What the gate pass of one (candidate column c, unit j) needs.
template <int CT>
struct Smem {
    float* hT;  // [Hk][CT]
    float* U;   // [GHn][CT]: u, then du
    float* Gd;  // [H][CT]: the direct part of ∂S/∂h
    float* cT;  // [H][CT] (LSTM)
    float* Gc;  // [H][CT] (LSTM): ∂S/∂c, complete
};

struct RnnSp {
    static constexpr int G = 1;
    static constexpr bool LSTM = false;
    template <int CT>
    static __device__ __forceinline__ float gate(const Smem<CT>& s, const float* a_bar,
                                                 const float* b_hh, int H, int j, int c) {
        (void)H;
        const size_t jc = (size_t)j * CT + c;
        const float hp = s.hT[jc];
        const float hn = mr::rnn_forward(__ldg(a_bar + j), s.U[jc] + __ldg(b_hh + j));
        const float e = hn - hp;
        const float dh = 2.0f * e;
        s.U[jc] = mr::rnn_backward(hn, dh);
        s.Gd[jc] = -dh;
        return e * e;
    }
};

struct GruSp {
    static constexpr int G = 3;
    static constexpr bool LSTM = false;
    template <int CT>
    static __device__ __forceinline__ float gate(const Smem<CT>& s, const float* a_bar,
                                                 const float* b_hh, int H, int j, int c) {
        const size_t jc = (size_t)j * CT + c;
        const size_t hc = (size_t)H * CT;
        const float ur = s.U[jc] + __ldg(b_hh + j);
        const float uz = s.U[jc + hc] + __ldg(b_hh + H + j);
        const float un = s.U[jc + 2 * hc] + __ldg(b_hh + 2 * H + j);
        const mr::GruGates q =
            mr::gru_gates(__ldg(a_bar + j), __ldg(a_bar + H + j), __ldg(a_bar + 2 * H + j), ur,
                          uz, un);
        const float hp = s.hT[jc];
        const float hn = mr::gru_h(q, hp);
        const float e = hn - hp;
        const float dh = 2.0f * e;
        // gru.cu's backward with upstream dh (and no D carried in).
        const mr::GruGrads d = mr::gru_backward(q, un, hp, dh);
        s.U[jc] = d.da_r;
        s.U[jc + hc] = d.da_z;
        s.U[jc + 2 * hc] = d.du_n;
        s.Gd[jc] = d.d_h - dh;
        return e * e;
    }
};

struct LstmSp {
    static constexpr int G = 4;
    static constexpr bool LSTM = true;
    template <int CT>
    static __device__ __forceinline__ float gate(const Smem<CT>& s, const float* a_bar,
                                                 const float* b_hh, int H, int j, int c) {
        const size_t jc = (size_t)j * CT + c;
        const size_t hc = (size_t)H * CT;
        float pre[4];
#pragma unroll
        for (int g = 0; g < 4; ++g)
            pre[g] = __ldg(a_bar + g * H + j) + (s.U[jc + g * hc] + __ldg(b_hh + g * H + j));
        const mr::LstmGates q = mr::lstm_gates(pre);
        const float hp = s.hT[jc];
        const float cp = s.cT[jc];
        const float cn = mr::lstm_c(q, cp);
        const float tc = tanhf(cn);
        const float hn = mr::lstm_h(q, tc);
        const float eh = hn - hp;
        const float ec = cn - cp;
        const float dh = 2.0f * eh;
        // lstm.cu's backward with upstream dh and D_c = 2 e_c.
        const mr::LstmGrads d = mr::lstm_backward(q, tc, cp, dh, 2.0f * ec);
#pragma unroll
        for (int g = 0; g < 4; ++g) s.U[jc + g * hc] = d.da[g];
        s.Gd[jc] = -dh;
        s.Gc[jc] = d.d_c - 2.0f * ec;
        return eh * eh + ec * ec;
    }
};

// One Adam update of p (memrnn_core::adam_update_host for one element).
__device__ __forceinline__ void adam(float& p, float g, float* m, float* v, const Cfg& cfg,
                                     float step_size, float bc2_sqrt) {
    const float mi = cfg.beta1 * *m + (1.0f - cfg.beta1) * g;
    const float vi = cfg.beta2 * *v + (1.0f - cfg.beta2) * g * g;
    *m = mi;
    *v = vi;
    const float denom = sqrtf(vi) / bc2_sqrt + cfg.eps;
    p -= step_size * mi / denom;
}

template <class Cell, int CT>
__device__ __forceinline__ void search(const MrSpMember* members, const int* tiles, int H,
                                       int iters, const Cfg& cfg) {
    // This block's tile: `count` candidates of one member, idx[first ..].
    const int member = __ldg(tiles + 3 * (size_t)blockIdx.x);
    const int first = __ldg(tiles + 3 * (size_t)blockIdx.x + 1);
    const int count = __ldg(tiles + 3 * (size_t)blockIdx.x + 2);
    const MrSpMember& mb = members[member];
    const float* __restrict__ wf = mb.wf;
    const float* __restrict__ wb = mb.wb;
    const float* __restrict__ a_bar = mb.a_bar;
    const float* __restrict__ b_hh = mb.b_hh;
    float* states = mb.states;
    float* m = mb.m;
    float* v = mb.v;
    unsigned* status = mb.status;
    const int* idx = mb.idx;
    constexpr int G = Cell::G;
    constexpr int TC = CT / 4;
    constexpr int JPAR = SP_THREADS / CT;  // threads per candidate in the gate pass
    MR_DYNAMIC_SHARED(float, smem);
    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int S = Cell::LSTM ? 2 * H : H;
    const int GH = G * H;
    const int Hk = ceil8(H), Hn = ceil32(H), GHk = ceil8(GH), GHn = ceil32(GH);
    const int base = first;
    const int nc = min(CT, count);

    Smem<CT> sm;
    sm.hT = smem;
    sm.U = sm.hT + (size_t)Hk * CT;
    sm.Gd = sm.U + (size_t)GHn * CT;
    float* after = sm.Gd + (size_t)H * CT;
    sm.cT = after;
    sm.Gc = after;
    if (Cell::LSTM) {
        sm.cT = after;
        sm.Gc = after + (size_t)H * CT;
        after += 2 * (size_t)H * CT;
    }
    float* red = after;                                        // [JPAR][CT]
    int* id = reinterpret_cast<int*>(red + SP_THREADS);        // [CT]
    int* live = id + CT;                                       // [CT]
    unsigned* st_iters = reinterpret_cast<unsigned*>(live + CT);
    float* st_speed = reinterpret_cast<float*>(st_iters + CT);
    float* st_window = st_speed + CT;
    unsigned* st_stop = reinterpret_cast<unsigned*>(st_window + CT);
    float* st_step = reinterpret_cast<float*>(st_stop + CT);   // lr / (1 - beta1^t)
    float* st_bc2 = st_step + CT;                              // sqrt(1 - beta2^t)

    if (tid < CT) {
        const int c = tid;
        const int i = c < nc ? __ldg(idx + base + c) : -1;
        id[c] = i;
        if (i >= 0) {
            const unsigned* st = status + (size_t)i * 4;
            st_iters[c] = st[0];
            st_speed[c] = __uint_as_float(st[1]);
            st_window[c] = __uint_as_float(st[2]);
            st_stop[c] = st[3];
        }
        live[c] = i >= 0;
    }
    __syncthreads();
    // States into shared memory (pads and empty slots zero).
    for (int e = tid; e < Hk * CT; e += SP_THREADS) {
        const int c = e % CT, k = e / CT;
        const int i = id[c];
        sm.hT[e] = (i >= 0 && k < H) ? states[(size_t)i * S + k] : 0.0f;
    }
    if (Cell::LSTM) {
        for (int e = tid; e < H * CT; e += SP_THREADS) {
            const int c = e % CT, k = e / CT;
            const int i = id[c];
            sm.cT[e] = i >= 0 ? states[(size_t)i * S + H + k] : 0.0f;
        }
    }
    __syncthreads();

    const int cg = lane & 3;   // candidate group: candidates c0 .. c0 + TC
    const int og = lane >> 2;  // output group: outputs n0 .. n0 + 4 within the warp's 32
    const int c0 = cg * TC;
    const int gc = tid % CT;   // gate pass: candidate
    const int gj = tid / CT;   // gate pass: first unit

    for (int it = 0; it < iters; ++it) {
        // u = W_hh h for every candidate of the tile (b_hh added in the gate pass).
        for (int tile = warp; tile * 32 < GHn; tile += SP_WARPS) {
            const int n0 = tile * 32 + og * 4;
            float acc[TC][4];
            tile_gemm<CT>(acc, sm.hT, wf, GHn, Hk, c0, n0);
#pragma unroll
            for (int q = 0; q < 4; ++q)
#pragma unroll
                for (int i = 0; i < TC; ++i) sm.U[(size_t)(n0 + q) * CT + c0 + i] = acc[i][q];
        }
        __syncthreads();
        // Gates, e, partial S, du (in place), direct terms.
        float part = 0.0f;
        for (int j = gj; j < H; j += JPAR) part += Cell::template gate<CT>(sm, a_bar, b_hh, H, j, gc);
        // Zero du's padding rows (the backward product reads rows < GHk).
        for (int e = GH * CT + tid; e < GHk * CT; e += SP_THREADS) sm.U[e] = 0.0f;
        red[gj * CT + gc] = part;
        __syncthreads();
        // The decision, per candidate, in a fixed summation order.
        if (tid < CT) {
            const int c = tid;
            bool go = false;
            if (live[c]) {
                float s = 0.0f;
                for (int p = 0; p < JPAR; ++p) s += red[p * CT + c];
                unsigned stop = st_stop[c];
                float speed = st_speed[c], window = st_window[c];
                const unsigned t = st_iters[c];
                go = check(s, t, speed, window, stop, cfg);
                st_speed[c] = speed;
                st_window[c] = window;
                st_stop[c] = stop;
                if (go) {
                    const int tp = (int)min(t + 1u, 2147483647u);
                    const float bc1 = 1.0f - powi_f32(cfg.beta1, tp);
                    const float bc2 = 1.0f - powi_f32(cfg.beta2, tp);
                    st_step[c] = cfg.lr / bc1;
                    st_bc2[c] = sqrtf(bc2);
                    st_iters[c] = t + 1;
                }
                live[c] = go;
            }
        }
        const int any = __syncthreads_or(tid < CT ? live[tid] : 0);
        if (!any) break;
        // ∂S/∂h = W_hhᵀ du + direct, and Adam, for the candidates that step.
        for (int tile = warp; tile * 32 < Hn; tile += SP_WARPS) {
            const int n0 = tile * 32 + og * 4;
            float acc[TC][4];
            tile_gemm<CT>(acc, sm.U, wb, Hn, GHk, c0, n0);
#pragma unroll
            for (int i = 0; i < TC; ++i) {
                const int c = c0 + i;
                if (!live[c]) continue;
                const size_t row = (size_t)id[c] * S;
                const float ss = st_step[c], b2 = st_bc2[c];
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    const int k = n0 + q;
                    if (k >= H) continue;
                    const size_t kc = (size_t)k * CT + c;
                    adam(sm.hT[kc], acc[i][q] + sm.Gd[kc], m + row + k, v + row + k, cfg, ss,
                         b2);
                    if (Cell::LSTM)
                        adam(sm.cT[kc], sm.Gc[kc], m + row + H + k, v + row + H + k, cfg, ss,
                             b2);
                }
            }
        }
        __syncthreads();
    }

    // States and status back.
    for (int e = tid; e < H * CT; e += SP_THREADS) {
        const int c = e % CT, k = e / CT;
        const int i = id[c];
        if (i < 0) continue;
        states[(size_t)i * S + k] = sm.hT[e];
        if (Cell::LSTM) states[(size_t)i * S + H + k] = sm.cT[e];
    }
    if (tid < CT && id[tid] >= 0) {
        unsigned* st = status + (size_t)id[tid] * 4;
        st[0] = st_iters[tid];
        st[1] = __float_as_uint(st_speed[tid]);
        st[2] = __float_as_uint(st_window[tid]);
        st[3] = st_stop[tid];
    }
}

}  // namespace sp

#define SP_DEFINE(NAME, CELL, CT, MINB)                                                      \
    extern "C" __global__ void __launch_bounds__(SP_THREADS, MINB)                         \
        NAME(const MrSlowPointsParams p) {                                                 \
        const sp::Cfg cfg{p.lr,  p.beta1,     p.beta2,     p.eps,                          \
                          p.tol, p.stall_rel, p.max_iters, p.stall_window};                \
        sp::search<CELL, CT>(p.members, p.tiles, p.H, p.iters, cfg);                       \
    }

SP_DEFINE(rnn_slowpoints_f32, sp::RnnSp, 32, 1)
SP_DEFINE(gru_slowpoints_f32, sp::GruSp, 32, 1)
SP_DEFINE(lstm_slowpoints_f32, sp::LstmSp, 32, 1)
SP_DEFINE(rnn_slowpoints_narrow_f32, sp::RnnSp, 8, 2)
SP_DEFINE(gru_slowpoints_narrow_f32, sp::GruSp, 8, 2)
SP_DEFINE(lstm_slowpoints_narrow_f32, sp::LstmSp, 8, 2)

extern "C" __global__ void slowpoints_pack_f32(const MrPackParams P) {
    const float* __restrict__ w_hh = P.w_hh;
    float* __restrict__ wf = P.wf;
    float* __restrict__ wb = P.wb;
    const int H = P.H, GH = P.GH;
    const int Hk = sp::ceil8(H), Hn = sp::ceil32(H), GHk = sp::ceil8(GH), GHn = sp::ceil32(GH);
    const long long nf = (long long)Hk * GHn;
    const long long total = nf + (long long)GHk * Hn;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        if (e < nf) {
            const int k = (int)(e / GHn), o = (int)(e % GHn);
            wf[e] = (k < H && o < GH) ? w_hh[(size_t)o * H + k] : 0.0f;
        } else {
            const long long f = e - nf;
            const int o = (int)(f / Hn), k = (int)(f % Hn);
            wb[f] = (k < H && o < GH) ? w_hh[(size_t)o * H + k] : 0.0f;
        }
    }
}

extern "C" __global__ void __launch_bounds__(1024)
    slowpoints_compact_f32(const MrCompactParams P) {
    const unsigned* __restrict__ status = P.status;
    const int K = P.K, with_max_iters = P.with_max_iters;
    int* __restrict__ idx = P.idx;
    int* __restrict__ count = P.count;
    __shared__ int warp_sums[32];
    __shared__ int running_total;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    if (tid == 0) running_total = 0;
    __syncthreads();
    for (int b0 = 0; b0 < K; b0 += 1024) {
        const int i = b0 + tid;
        int flag = 0;
        if (i < K) {
            const unsigned s = status[(size_t)i * 4 + 3];
            flag = s == sp::RUNNING || (with_max_iters && s == sp::MAX_ITERS);
        }
        // Inclusive scan within the warp, then over the warps.
        int x = flag;
        for (int off = 1; off < 32; off <<= 1) {
            const int y = __shfl_up_sync(0xffffffffu, x, off);
            if (lane >= off) x += y;
        }
        if (lane == 31) warp_sums[warp] = x;
        __syncthreads();
        if (warp == 0) {
            int w = warp_sums[lane];
            for (int off = 1; off < 32; off <<= 1) {
                const int y = __shfl_up_sync(0xffffffffu, w, off);
                if (lane >= off) w += y;
            }
            warp_sums[lane] = w;  // inclusive over warps
        }
        __syncthreads();
        const int before = running_total + (warp > 0 ? warp_sums[warp - 1] : 0) + x - flag;
        if (flag) idx[before] = i;
        __syncthreads();
        if (tid == 0) running_total += warp_sums[31];
        __syncthreads();
    }
    if (tid == 0) *count = running_total;
}
