// lstm.cu: the LSTM, forward and backward through time (MATH.md §2–§3, torch.nn.LSTM:
// gate order i, f, g, o; the state row is [h | c]):
//   i = σ(a_i + u_i), f = σ(a_f + u_f), g = tanh(a_g + u_g), o = σ(a_o + u_o),
//   c' = f ⊙ c + i ⊙ g,  h' = o ⊙ tanh(c'),
//   a = W_ih x + b_ih (A from cuBLAS, bias added here), u = W_hh h + b_hh (fused product).
// Cache per (t, b): [i | f | g | o] (4H) in `gates` and c_t in `c_seq`.
// Backward: dA = dU (the host passes one buffer for both); direct terms D_h = 0,
// D_c = f ⊙ dc (dc the total gradient reaching c_t).
//
// Entry points (see common.cuh for the argument lists, launch shape and limits):
//   lstm_seq_fwd_f32, lstm_step_fwd_f32, lstm_seq_bwd_f32, lstm_step_bwd_f32, and the
//   same with W_hh stored in bf16 (_bf16) and f16 (_f16), f32 arithmetic throughout.

#include "common.cuh"
#include "lstm.cuh"

struct LstmCell {
    static constexpr int G = 4;
    static constexpr int STATE_PARTS = 2;
    static constexpr int NCACHE = 4;

    static __device__ __forceinline__ void fwd(const mr::FwdArgs& a, int t, int unit, int b,
                                               const float* u) {
        const int H = a.H;
        const size_t GH = 4 * (size_t)H;
        const size_t tb = (size_t)t * a.B + b;
        const float* Ar = a.A + tb * GH;
        float pre[4];
#pragma unroll
        for (int g = 0; g < 4; ++g)
            pre[g] = (__ldg(Ar + g * H + unit) + __ldg(a.b_ih + g * H + unit)) +
                     (u[g] + __ldg(a.b_hh + g * H + unit));
        const mr::LstmGates q = mr::lstm_gates(pre);
        // c_{t-1}: written by this very thread at step t-1 (or s0): a coherent load.
        const float cp = t == 0 ? __ldcg(a.s0 + (size_t)b * 2 * H + H + unit)
                                : __ldcg(a.c_seq + (tb - a.B) * H + unit);
        const float c = mr::lstm_c(q, cp);
        const float h = mr::lstm_h(q, tanhf(c));
        float* gc = a.gates + tb * 4 * H;
        gc[unit] = q.i;
        gc[H + unit] = q.f;
        gc[2 * H + unit] = q.g;
        gc[3 * H + unit] = q.o;
        a.c_seq[tb * H + unit] = c;
        a.h_seq[tb * H + unit] = h;
        if (t == a.T - 1) {
            a.s_final[(size_t)b * 2 * H + unit] = h;
            a.s_final[(size_t)b * 2 * H + H + unit] = c;
        }
    }

    static __device__ __forceinline__ void bwd(const mr::BwdArgs& a, int t, int unit, int b,
                                               float dh) {
        const int H = a.H;
        const size_t GH = 4 * (size_t)H;
        const size_t tb = (size_t)t * a.B + b;
        const float* gc = a.gates + tb * 4 * H;
        mr::LstmGates q;
        q.i = __ldg(gc + unit);
        q.f = __ldg(gc + H + unit);
        q.g = __ldg(gc + 2 * H + unit);
        q.o = __ldg(gc + 3 * H + unit);
        const float c = __ldg(a.c_seq + tb * H + unit);
        const float cp = t == 0 ? __ldg(a.s0 + (size_t)b * 2 * H + H + unit)
                                : __ldg(a.c_seq + (tb - a.B) * H + unit);
        const float tc = tanhf(c);
        float* Db = a.D + (size_t)b * 2 * H;
        const mr::LstmGrads d = mr::lstm_backward(q, tc, cp, dh, Db[H + unit]);
        float* dA = a.dA + tb * GH;
#pragma unroll
        for (int g = 0; g < 4; ++g) dA[g * H + unit] = d.da[g];
        Db[unit] = 0.0f;
        Db[H + unit] = d.d_c;
    }
};

MR_DEFINE_CELL_KERNELS(lstm, LstmCell)
