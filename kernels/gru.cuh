// gru.cuh: the GRU's gate arithmetic for one unit (MATH.md §2–§3, torch.nn.GRU: gate
// order r, z, n; the reset gate applied after the recurrent product), the one device-side
// definition shared by the recurrence (gru.cu) and the slow-point search (slowpoints.cu).
// Inputs are pre-activations: a_g = (W_ih x)_g + b_ih_g and u_g = (W_hh h)_g + b_hh_g;
// the callers load and store.
#pragma once
#include "common.cuh"

namespace mr {

struct GruGates {
    float r, z, n;
};

// r = σ(a_r + u_r), z = σ(a_z + u_z), n = tanh(a_n + r ⊙ u_n).
__device__ __forceinline__ GruGates gru_gates(float ar, float az, float an, float ur, float uz,
                                              float un) {
    GruGates g;
    g.r = sigmoid(ar + ur);
    g.z = sigmoid(az + uz);
    g.n = tanhf(an + g.r * un);
    return g;
}

// h' = (1 − z) ⊙ n + z ⊙ h.
__device__ __forceinline__ float gru_h(const GruGates& g, float hp) {
    return (1.0f - g.z) * g.n + g.z * hp;
}

// The gate gradients from the upstream dh: ∂L/∂a per gate, ∂L/∂u_n (= ∂L/∂a_n ⊙ r; the
// r and z blocks of ∂L/∂u equal ∂L/∂a's) and the direct term ∂L/∂h through z.
struct GruGrads {
    float da_r, da_z, da_n, du_n, d_h;
};

__device__ __forceinline__ GruGrads gru_backward(const GruGates& g, float un, float hp,
                                                 float dh) {
    const float dn = dh * (1.0f - g.z);
    const float dz = dh * (hp - g.n);
    const float dpre_n = dn * (1.0f - g.n * g.n);
    const float dr = dpre_n * un;
    GruGrads d;
    d.da_r = dr * g.r * (1.0f - g.r);
    d.da_z = dz * g.z * (1.0f - g.z);
    d.da_n = dpre_n;
    d.du_n = dpre_n * g.r;
    d.d_h = dh * g.z;
    return d;
}

}  // namespace mr
