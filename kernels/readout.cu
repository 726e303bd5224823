// readout.cu: the readout's weighted softmax cross-entropy (MATH.md §5), f32.
//   readout_ce_rows_f32  one warp per row r of h [rows, H]: the logits y = W_out h_r + b_out
//                        (lane c holds class c; C <= 32), the first argmax, the log-sum-exp,
//                        then per row
//                          g[r, c]        = w_r / rows * (softmax(y)_c - [c == t_r])
//                          dh[r, :]       = sum_c g[r, c] W_out[c, :]
//                          row_stats[r,:] = [w_r / rows * CE_r, report hit, report row,
//                                            silence hit, silence row]
//                        A target that is not a whole number in [0, C) gives NaN loss and
//                        NaN gradients for its row (every backend does the same).
//                        Launch: block 256 (8 rows), grid ceil(rows / 8).
//   readout_argmax_f32   one warp per row r of h [rows, H]: the logits as above, NaN taken
//                        as -inf, and out[r] = the first largest one's class (the CPU's
//                        strict `>` scan from -inf; 0 when none is above -inf).
//                        Launch: block 256 (8 rows), grid ceil(rows / 8).
// The host then forms dW_out = g^T h (cuBLAS), db_out and the batch's stats as column sums
// of g and row_stats (small.cu's col_sum_f32): no atomics, so the result is deterministic.

#include "common.cuh"

extern "C" __global__ void readout_ce_rows_f32(const MrReadoutParams P) {
    const float* __restrict__ h = P.h;
    const float* __restrict__ W = P.readout;
    const float* __restrict__ targets = P.targets;
    const float* __restrict__ weights = P.weights;
    float* __restrict__ g_out = P.g;
    float* __restrict__ dh = P.dh;
    float* __restrict__ row_stats = P.row_stats;
    const int rows = P.rows, H = P.H, C = P.C;
    const float inv_rows = P.inv_rows;
    const int r = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (r >= rows) return;  // whole warps leave together (8 rows per block of 256)
    const float* hr = h + (size_t)r * H;
    const float* b = W + (size_t)C * H;

    // Lane c < C holds the logit of class c; the others hold -inf.
    float y = -INFINITY;
    for (int c = 0; c < C; ++c) {
        const float* wc = W + (size_t)c * H;
        float acc = 0.0f;
        for (int j = lane; j < H; j += 32) acc += wc[j] * hr[j];
        for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
        if (lane == c) y = b[c] + acc;
    }
    // The first largest logit (the CPU's strict `>` scan), as (value, index) pairs.
    float mx = y;
    int arg = lane;
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, mx, off);
        const int oi = __shfl_xor_sync(0xffffffffu, arg, off);
        if (ov > mx || (ov == mx && oi < arg)) {
            mx = ov;
            arg = oi;
        }
    }
    const float e = lane < C ? expf(y - mx) : 0.0f;
    float z = e;
    for (int off = 16; off > 0; off >>= 1) z += __shfl_xor_sync(0xffffffffu, z, off);

    const float t = targets[r];
    const bool valid = t >= 0.0f && t < (float)C && floorf(t) == t;
    const int tgt = valid ? (int)t : 0;
    const float y_t = __shfl_sync(0xffffffffu, y, tgt);
    const float w = weights[r];
    const float g = valid ? w * inv_rows * (e / z - (lane == tgt ? 1.0f : 0.0f)) : NAN;
    if (lane < C) g_out[(size_t)r * C + lane] = g;

    for (int j0 = 0; j0 < H; j0 += 32) {
        const int j = j0 + lane;
        float acc = 0.0f;
        for (int c = 0; c < C; ++c) {
            const float gc = __shfl_sync(0xffffffffu, g, c);
            if (j < H) acc += gc * W[(size_t)c * H + j];
        }
        if (j < H) dh[(size_t)r * H + j] = acc;
    }

    if (lane == 0) {
        float* s = row_stats + (size_t)r * 5;
        s[0] = valid ? w * (logf(z) + mx - y_t) * inv_rows : NAN;
        const bool hit = valid && arg == tgt;
        const bool report = valid && tgt != 0;
        const bool silence = valid && tgt == 0;
        s[1] = report && hit ? 1.0f : 0.0f;
        s[2] = report ? 1.0f : 0.0f;
        s[3] = silence && hit ? 1.0f : 0.0f;
        s[4] = silence ? 1.0f : 0.0f;
    }
}

extern "C" __global__ void readout_argmax_f32(const MrArgmaxParams P) {
    const float* __restrict__ W = P.readout;
    const int rows = P.rows, H = P.H, C = P.C;
    const int r = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (r >= rows) return;  // whole warps leave together (8 rows per block of 256)
    const float* hr = P.h + (size_t)r * H;
    const float* b = W + (size_t)C * H;
    float y = -INFINITY;
    for (int c = 0; c < C; ++c) {
        const float* wc = W + (size_t)c * H;
        float acc = 0.0f;
        for (int j = lane; j < H; j += 32) acc += wc[j] * hr[j];
        for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
        if (lane == c) y = b[c] + acc;
    }
    if (isnan(y)) y = -INFINITY;  // a NaN logit never wins
    // The first largest logit: ties go to the lower class, so all -inf answers 0.
    float mx = y;
    int arg = lane;
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, mx, off);
        const int oi = __shfl_xor_sync(0xffffffffu, arg, off);
        if (ov > mx || (ov == mx && oi < arg)) {
            mx = ov;
            arg = oi;
        }
    }
    if (lane == 0) P.out[r] = (float)arg;
}
