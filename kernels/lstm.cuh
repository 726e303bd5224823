// lstm.cuh: the LSTM's gate arithmetic for one unit (MATH.md §2–§3, torch.nn.LSTM: gate
// order i, f, g, o; the state row is [h | c]), the one device-side definition shared by
// the recurrence (lstm.cu) and the slow-point search (slowpoints.cu). Inputs are
// pre-activations pre_g = a_g + u_g (a = W_ih x + b_ih, u = W_hh h + b_hh); the callers
// load and store.
#pragma once
#include "common.cuh"

namespace mr {

struct LstmGates {
    float i, f, g, o;
};

// i = σ(pre_i), f = σ(pre_f), g = tanh(pre_g), o = σ(pre_o).
__device__ __forceinline__ LstmGates lstm_gates(const float pre[4]) {
    LstmGates q;
    q.i = sigmoid(pre[0]);
    q.f = sigmoid(pre[1]);
    q.g = tanhf(pre[2]);
    q.o = sigmoid(pre[3]);
    return q;
}

// c' = f ⊙ c + i ⊙ g (then h' = o ⊙ tanh(c')).
__device__ __forceinline__ float lstm_c(const LstmGates& q, float cp) {
    return q.f * cp + q.i * q.g;
}

// h' = o ⊙ tanh(c'), given tc = tanh(c').
__device__ __forceinline__ float lstm_h(const LstmGates& q, float tc) { return q.o * tc; }

// The gate gradients from the upstream dh and dc_in (the gradient reaching c' directly),
// with tc = tanh(c') and cp = c: ∂L/∂a = ∂L/∂u per gate, and the direct term ∂L/∂c
// through f (the direct term ∂L/∂h is zero: h enters only through u).
struct LstmGrads {
    float da[4];
    float d_c;
};

__device__ __forceinline__ LstmGrads lstm_backward(const LstmGates& q, float tc, float cp,
                                                   float dh, float dc_in) {
    const float dc = dc_in + dh * q.o * (1.0f - tc * tc);
    LstmGrads d;
    d.da[0] = dc * q.g * q.i * (1.0f - q.i);
    d.da[1] = dc * cp * q.f * (1.0f - q.f);
    d.da[2] = dc * q.i * (1.0f - q.g * q.g);
    d.da[3] = dh * tc * q.o * (1.0f - q.o);
    d.d_c = dc * q.f;
    return d;
}

}  // namespace mr
