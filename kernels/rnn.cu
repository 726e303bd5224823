// rnn.cu: the tanh RNN, forward and backward through time (MATH.md §2–§3, torch.nn.RNN):
//   h_t = tanh(a_t + u_t),  a_t = W_ih x_t + b_ih (A from cuBLAS, bias added here),
//   u_t = W_hh h_{t-1} + b_hh (the fused recurrent product of common.cuh).
// Backward: dA_t = dU_t = dh_t (1 - h_t^2); the state enters only through u, so the
// direct term is zero. Nothing is cached beyond h_seq.
//
// Entry points (see common.cuh for the argument lists, launch shape and limits):
//   rnn_seq_fwd_f32, rnn_step_fwd_f32, rnn_seq_bwd_f32, rnn_step_bwd_f32, and the
//   same with W_hh stored in bf16 (_bf16) and f16 (_f16), f32 arithmetic throughout.
// dU must alias dA (the host passes the same buffer).

#include "common.cuh"
#include "rnn.cuh"

struct RnnCell {
    static constexpr int G = 1;
    static constexpr int STATE_PARTS = 1;
    static constexpr int NCACHE = 0;

    static __device__ __forceinline__ void fwd(const mr::FwdArgs& a, int t, int unit, int b,
                                               const float* u) {
        const size_t tb = (size_t)t * a.B + b;
        const float pre_a = __ldg(a.A + tb * a.H + unit) + __ldg(a.b_ih + unit);
        const float pre_u = u[0] + __ldg(a.b_hh + unit);
        const float h = mr::rnn_forward(pre_a, pre_u);
        a.h_seq[tb * a.H + unit] = h;
        if (t == a.T - 1) a.s_final[(size_t)b * a.H + unit] = h;
    }

    static __device__ __forceinline__ void bwd(const mr::BwdArgs& a, int t, int unit, int b,
                                               float dh) {
        const size_t tb = (size_t)t * a.B + b;
        const float h = __ldg(a.h_seq + tb * a.H + unit);
        a.dA[tb * a.H + unit] = mr::rnn_backward(h, dh);
        a.D[(size_t)b * a.H + unit] = 0.0f;
    }
};

MR_DEFINE_CELL_KERNELS(rnn, RnnCell)
