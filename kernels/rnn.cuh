// rnn.cuh: the tanh RNN's gate arithmetic for one unit (MATH.md §2–§3, torch.nn.RNN),
// the one device-side definition shared by the recurrence (rnn.cu) and the slow-point
// search (slowpoints.cu). Inputs are pre-activations: a = (W_ih x)_j + b_ih_j and
// u = (W_hh h)_j + b_hh_j; the callers load and store.
#pragma once
#include "common.cuh"

namespace mr {

// h' = tanh(a + u).
__device__ __forceinline__ float rnn_forward(float a, float u) { return tanhf(a + u); }

// ∂L/∂a (= ∂L/∂u) from the upstream dh and the step's output h; the state enters only
// through u, so the direct term ∂h'/∂h is zero.
__device__ __forceinline__ float rnn_backward(float h, float dh) { return dh * (1.0f - h * h); }

}  // namespace mr
