// gru.cu: the GRU, forward and backward through time (MATH.md §2–§3, torch.nn.GRU:
// gate order r, z, n; the reset gate applied after the recurrent product):
//   r = σ(a_r + u_r), z = σ(a_z + u_z), n = tanh(a_n + r ⊙ u_n), h' = (1 − z) ⊙ n + z ⊙ h,
//   a = W_ih x + b_ih (A from cuBLAS, bias added here), u = W_hh h + b_hh (fused product).
// Cache per (t, b): [r | z | n | u_n] (4H), so the backward recomputes nothing.
// Backward: dA and dU differ in the n block (du_n = da_n ⊙ r); direct term D_h = z ⊙ dh.
//
// Entry points (see common.cuh for the argument lists, launch shape and limits):
//   gru_seq_fwd_f32, gru_step_fwd_f32, gru_seq_bwd_f32, gru_step_bwd_f32, and the
//   same with W_hh stored in bf16 (_bf16) and f16 (_f16), f32 arithmetic throughout.

#include "common.cuh"
#include "gru.cuh"

struct GruCell {
    static constexpr int G = 3;
    static constexpr int STATE_PARTS = 1;
    static constexpr int NCACHE = 4;

    static __device__ __forceinline__ void fwd(const mr::FwdArgs& a, int t, int unit, int b,
                                               const float* u) {
        const int H = a.H;
        const size_t GH = 3 * (size_t)H;
        const size_t tb = (size_t)t * a.B + b;
        const float* Ar = a.A + tb * GH;
        const float ar = __ldg(Ar + unit) + __ldg(a.b_ih + unit);
        const float az = __ldg(Ar + H + unit) + __ldg(a.b_ih + H + unit);
        const float an = __ldg(Ar + 2 * H + unit) + __ldg(a.b_ih + 2 * H + unit);
        const float ur = u[0] + __ldg(a.b_hh + unit);
        const float uz = u[1] + __ldg(a.b_hh + H + unit);
        const float un = u[2] + __ldg(a.b_hh + 2 * H + unit);
        const mr::GruGates q = mr::gru_gates(ar, az, an, ur, uz, un);
        // h_{t-1}: written by this very thread at step t-1 (or s0): a coherent load.
        const float hp = t == 0 ? __ldcg(a.s0 + (size_t)b * H + unit)
                                : __ldcg(a.h_seq + (tb - a.B) * H + unit);
        const float h = mr::gru_h(q, hp);
        float* gc = a.gates + tb * 4 * H;
        gc[unit] = q.r;
        gc[H + unit] = q.z;
        gc[2 * H + unit] = q.n;
        gc[3 * H + unit] = un;
        a.h_seq[tb * H + unit] = h;
        if (t == a.T - 1) a.s_final[(size_t)b * H + unit] = h;
    }

    static __device__ __forceinline__ void bwd(const mr::BwdArgs& a, int t, int unit, int b,
                                               float dh) {
        const int H = a.H;
        const size_t GH = 3 * (size_t)H;
        const size_t tb = (size_t)t * a.B + b;
        const float* gc = a.gates + tb * 4 * H;
        mr::GruGates q;
        q.r = __ldg(gc + unit);
        q.z = __ldg(gc + H + unit);
        q.n = __ldg(gc + 2 * H + unit);
        const float un = __ldg(gc + 3 * H + unit);
        const float hp = t == 0 ? __ldg(a.s0 + (size_t)b * H + unit)
                                : __ldg(a.h_seq + (tb - a.B) * H + unit);
        const mr::GruGrads d = mr::gru_backward(q, un, hp, dh);
        float* dA = a.dA + tb * GH;
        float* dU = a.dU + tb * GH;
        dA[unit] = d.da_r;
        dA[H + unit] = d.da_z;
        dA[2 * H + unit] = d.da_n;
        dU[unit] = d.da_r;
        dU[H + unit] = d.da_z;
        dU[2 * H + unit] = d.du_n;
        a.D[(size_t)b * H + unit] = d.d_h;
    }
};

MR_DEFINE_CELL_KERNELS(gru, GruCell)
