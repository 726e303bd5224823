// params.cuh: the one argument struct of every memrnn kernel.
//
// Every `extern "C" __global__` entry point takes exactly one of these structs by value.
// crates/memrnn-cuda/src/kernels.rs mirrors each of them field for field as a
// `#[repr(C)]` struct, and a test there compares every field's offset against the
// `offsetof` table that crates/memrnn-cuda/sim/layout.cpp compiles from this very file:
// an argument out of order, of the wrong width or missing fails that test instead of
// silently reading garbage on the device (which is what ~19 positional arguments per
// launch allowed before).
//
// Rules that keep the two sides identical: only pointers, int, unsigned, long long and
// float fields; no bool, no enums, no bitfields; a field's meaning is documented once,
// here.

#pragma once

namespace mr {

// The forward recurrence's buffers and sizes (layouts in common.cuh).
struct FwdArgs {
    const float* A;     // [T*B, G*H]  x W_ih^T (no bias)
    const void* w_hh;   // [G*H, H], of the entry point's storage type (common.cuh: float
                        // for _f32, __nv_bfloat16 for _bf16, __half for _f16)
    const float* b_ih;  // [G*H]
    const float* b_hh;  // [G*H]
    const float* s0;    // [B, S]
    float* h_seq;       // [T, B, H]
    float* gates;       // [T, B, NCACHE*H]
    float* c_seq;       // [T, B, H] (LSTM only)
    float* s_final;     // [B, S]
    int T, B, H;
};

// The backward recurrence's buffers and sizes.
struct BwdArgs {
    const void* w_t;      // [H, G*H] = W_hh^T, of the entry point's storage type (as w_hh)
    const float* h_seq;   // [T, B, H]
    const float* gates;   // [T, B, NCACHE*H]
    const float* c_seq;   // [T, B, H] (LSTM only)
    const float* s0;      // [B, S]
    const float* dh_seq;  // [T, B, H], read only when has_dh
    float* D;             // [B, S], initialised with dL/ds_T (or zeros)
    float* dA;            // [T*B, G*H]
    float* dU;            // [T*B, G*H] (== dA when the cell's da == du)
    float* ds0;           // [B, S]
    int T, B, H, has_dh;
};

// The recurrence tiling chosen by the host planner (memrnn-cuda/src/ops/recurrence.rs).
struct TileArgs {
    int jt, bt, kc, ks;  // units per tile, batch rows per tile, staged K chunk, lanes/item
};

}  // namespace mr

// <cell>_seq_fwd_{f32,bf16,f16} (t unused) and <cell>_step_fwd_{f32,bf16,f16} (step t).
struct MrRecFwdParams {
    mr::FwdArgs a;
    mr::TileArgs tile;
    int t;
};

// <cell>_seq_bwd_{f32,bf16,f16} (t unused) and <cell>_step_bwd_{f32,bf16,f16} (iteration
// t, T-1 .. -1).
struct MrRecBwdParams {
    mr::BwdArgs a;
    mr::TileArgs tile;
    int t;
};

// <cell>_seq_fwd_ens_f32: the persistent forward of `members` networks of one shape in one
// cooperative launch of members * blocks_per_member blocks (common.cuh); a points to a
// device array of the members' FwdArgs, all with the same T, B and H.
struct MrRecFwdEnsParams {
    const mr::FwdArgs* a;
    mr::TileArgs tile;
    int members, blocks_per_member;
};

// <cell>_seq_bwd_ens_f32: the same for the backward (a device array of BwdArgs).
struct MrRecBwdEnsParams {
    const mr::BwdArgs* a;
    mr::TileArgs tile;
    int members, blocks_per_member;
};

// adam_update_f32: one Adam step in place over n elements.
struct MrAdamParams {
    float* p;
    const float* g;
    float* m;
    float* v;
    long long n;
    float beta1, beta2, step_size, bc2_sqrt, eps;
};

// col_sum_f32: out[c] = sum_r M[r, c], M [R, C].
struct MrColSumParams {
    const float* M;
    float* out;
    long long R;
    int C;
};

// transpose_f32: out [C, R] = in [R, C]^T.
struct MrTransposeParams {
    const float* in;
    float* out;
    int R, C;
};

// speed_f32: per row n of [N, S]: speed[n] = sum (f - s)^2, twice_e = 2 (f - s).
struct MrSpeedParams {
    const float* f;
    const float* s;
    float* speed;
    float* twice_e;
    int N, S;
};

// sub_f32: out[i] = a[i] - b[i], i < n.
struct MrSubParams {
    float* out;
    const float* a;
    const float* b;
    long long n;
};

// repeat_rows_f32: out[(n*S + i), :] = in[n, :] for i < S; in [N, C].
struct MrRepeatRowsParams {
    const float* in;
    float* out;
    int N, S, C;
};

// one_hot_f32: out [N*S, S], row (n*S + i) = e_i.
struct MrOneHotParams {
    float* out;
    int N, S;
};

// round_recurrent_{bf16,f16}: W_hh [R, C] (f32) rounded to the format (nearest, ties to
// even) into whichever outputs are non-null: out [R, C] and out_t [C, R] = out^T in the
// format (the recurrence's weights), out_f32 [R, C] widened back to f32 (the weights of
// the ops that run f32 kernels on rounded weights). first_overflow: 0 (the host zeroes
// it) or R*C - i for the first finite element i that rounds to an infinity.
struct MrRoundParams {
    const float* in;
    void* out;
    void* out_t;
    float* out_f32;
    unsigned* first_overflow;
    int R, C;
};

// fill_f32: out[i] = v, i < n.
struct MrFillParams {
    float* out;
    float v;
    long long n;
};

// One network's buffers in a slow-point search (slowpoints.cu documents every buffer);
// a device table of these, one per member of the ensemble, indexed by a tile's member.
struct MrSpMember {
    const float* wf;
    const float* wb;
    const float* a_bar;
    const float* b_hh;
    float* states;
    float* m;
    float* v;
    unsigned* status;
    const int* idx;
};

// <cell>_slowpoints[_narrow]_f32: members [E] (device table), tiles [blocks][3] (member,
// first position in that member's idx, candidates in the tile).
struct MrSlowPointsParams {
    const MrSpMember* members;
    const int* tiles;
    int H, iters;
    float lr, beta1, beta2, eps, tol, stall_rel;
    unsigned max_iters, stall_window;
};

// slowpoints_pack_f32.
struct MrPackParams {
    const float* w_hh;
    float* wf;
    float* wb;
    int H, GH;
};

// slowpoints_compact_f32.
struct MrCompactParams {
    const unsigned* status;
    int K, with_max_iters;
    int* idx;
    int* count;
};

// readout_ce_rows_f32: one warp per row of h [rows, H]; readout = [W_out (C x H) | b_out (C)],
// C <= 32; writes g [rows, C], dh [rows, H] and row_stats [rows, 5].
struct MrReadoutParams {
    const float* h;
    const float* readout;
    const float* targets;
    const float* weights;
    float* g;
    float* dh;
    float* row_stats;
    int rows, H, C;
    float inv_rows;
};

// axpy_f32: y[i] += alpha * x[i], i < n.
struct MrAxpyParams {
    float* y;
    const float* x;
    long long n;
    float alpha;
};

namespace mr {

// One parameter tensor of a clipped Adam update: values, gradient, moments, length (0 for
// an unused slot).
struct AdamGroupArgs {
    float* p;
    const float* g;
    float* m;
    float* v;
    long long n;
};

}  // namespace mr

// clip_norm_f32 (one block) and clip_adam_f32 (grid-stride over all groups): the global
// gradient norm over up to four groups into clip[0], the clip scale into clip[1], and in
// clip[2] whether the update is skipped (a non-finite norm; with has_guard, also *halted
// already set or a loss *loss that is not finite or above max_loss, which sets *halted);
// then Adam on every group with its gradient times clip[1] unless clip[2] is set.
struct MrClipAdamParams {
    mr::AdamGroupArgs g0, g1, g2, g3;
    float* clip;
    const float* loss;
    float* halted;
    float max_loss;
    int has_guard;
    float max_norm;
    int has_max;
    float beta1, beta2, step_size, bc2_sqrt, eps;
};

// clip_norm_ens_f32 / clip_adam_ens_f32: the clipped, guarded Adam of up to
// MR_CLIP_ENS_MAX ensemble members in one launch each, member k's MrClipAdamParams in m[k]
// (its own groups, norm, scale, guard and bias corrections): clip_norm_ens_f32 runs one
// block per member, clip_adam_ens_f32 blocks_per_member blocks per member (member
// blockIdx.x / blocks_per_member).
#define MR_CLIP_ENS_MAX 8
struct MrClipAdamEnsParams {
    MrClipAdamParams m[MR_CLIP_ENS_MAX];
    int members;
    int blocks_per_member;
};

// task_batch_f32 / task_delay_f32 / task_chunk_f32: x [T, B, P + 1] (task_delay_f32:
// [B, P + 1], T unused), targets and weights [T, B] (task_batch_f32 only), the digit table
// images [N, P] and offsets [11] (as f32), the Philox key (k0, k1) of (seed, step), vocab
// and delta_min, and the noise's mean and std; task_chunk_f32 only: row t of x is step
// t0 + t, every trial reads at t_read and reports at t_report (0xFFFFFFFF: never).
struct MrTaskParams {
    float* x;
    float* targets;
    float* weights;
    const float* images;
    const float* offsets;
    unsigned k0, k1;
    int T, B, P, vocab, delta_min;
    float mean, std_;
    int t0;
    unsigned t_read, t_report;
};

// readout_argmax_f32: one warp per row of h [rows, H]; readout as MrReadoutParams'; out
// [rows] the class of the first largest logit (NaN never wins) as f32.
struct MrArgmaxParams {
    const float* h;
    const float* readout;
    float* out;
    int rows, H, C;
};
