// task.cu: the delayed-classification task's batches drawn on the device, bit for bit the
// host definition (memrnn_core::task_gen over memrnn_core::philox): Philox4x32-10, the
// Cephes logf / sinf / cosf polynomials and Box-Muller, every float operation an explicit
// __fmul_rn / __fadd_rn / __fsub_rn / __fsqrt_rn (nvcc contracts a * b + c into an FMA
// otherwise, which rounds once instead of twice and breaks the match).
//   task_batch_f32  row (t, b) of x [T, B, P + 1]: the trial's image at its read time,
//                   noise mean + std * z (stream 0, counter (j, b, t, 0)) elsewhere, the
//                   trigger at its report time; and targets / weights [T, B].
//                   Launch: 1-D, block 128, grid-stride over the T * B rows.
//   task_delay_f32  row i of [N, P + 1]: noise of stream 2 at counter (j, i, 0, 2),
//                   trigger 0 (the speed penalty's inputs). Same launch over N rows.
//   task_chunk_f32  row (t, b) of x [T, B, P + 1] for step t0 + t of a long run
//                   (memrnn_core::task_gen::chunk_trial: digit and image as task_batch_f32
//                   draws them with all ten digits; every trial reads at t_read and
//                   reports at t_report). Same launch over the T * B rows.

#include "common.cuh"

namespace {

constexpr unsigned kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
constexpr unsigned kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;

struct U4 {
    unsigned x0, x1, x2, x3;
};

__device__ __forceinline__ U4 philox(unsigned c0, unsigned c1, unsigned c2, unsigned c3,
                                     unsigned k0, unsigned k1) {
    for (int r = 0; r < 10; ++r) {
        if (r > 0) {
            k0 += kW0;
            k1 += kW1;
        }
        const unsigned long long p0 = (unsigned long long)kM0 * c0;
        const unsigned long long p1 = (unsigned long long)kM1 * c2;
        const unsigned n0 = (unsigned)(p1 >> 32) ^ c1 ^ k0;
        const unsigned n2 = (unsigned)(p0 >> 32) ^ c3 ^ k1;
        c0 = n0;
        c1 = (unsigned)p1;
        c2 = n2;
        c3 = (unsigned)p0;
    }
    return U4{c0, c1, c2, c3};
}

__device__ __forceinline__ unsigned below(unsigned x, unsigned n) {
    return (unsigned)(((unsigned long long)x * n) >> 32);
}

#define MUL __fmul_rn
#define ADD __fadd_rn
#define SUB __fsub_rn

// Cephes logf (memrnn_core::philox::ln_f32).
__device__ __forceinline__ float ln_f32(float x) {
    const unsigned bits = __float_as_uint(x);
    const int e0 = (int)((bits >> 23) & 0xffu) - 126;
    const float m = __uint_as_float((bits & 0x007FFFFFu) | 0x3F000000u);
    const bool small = m < 0.70710678118654752440f;
    const int e = small ? e0 - 1 : e0;
    const float xm = small ? ADD(m, m) : m;
    const float xx = SUB(xm, 1.0f);
    const float ef = (float)e;
    const float z = MUL(xx, xx);
    float y = 7.0376836E-2f;
    y = SUB(MUL(y, xx), 1.151461E-1f);
    y = ADD(MUL(y, xx), 1.1676999E-1f);
    y = SUB(MUL(y, xx), 1.2420141E-1f);
    y = ADD(MUL(y, xx), 1.4249323E-1f);
    y = SUB(MUL(y, xx), 1.6668058E-1f);
    y = ADD(MUL(y, xx), 2.0000714E-1f);
    y = SUB(MUL(y, xx), 2.4999994E-1f);
    y = ADD(MUL(y, xx), 3.333333E-1f);
    y = MUL(MUL(y, xx), z);
    y = ADD(y, MUL(-2.1219444e-4f, ef));
    y = ADD(y, MUL(-0.5f, z));
    float r = ADD(xx, y);
    r = ADD(r, MUL(0.6933594f, ef));
    return r;
}

// Cephes sinf / cosf on the reduced angle (memrnn_core::philox::sincos_reduced).
__device__ __forceinline__ void sincos_reduced(float a, float* s, float* c) {
    const float z = MUL(a, a);
    *s = ADD(MUL(MUL(SUB(MUL(ADD(MUL(-1.9515296E-4f, z), 8.332161E-3f), z), 1.6666655E-1f), z),
                 a),
             a);
    *c = ADD(SUB(MUL(MUL(ADD(MUL(SUB(MUL(2.4433157E-5f, z), 1.3887316E-3f), z),
                                4.1666646E-2f),
                            z),
                        z),
                    MUL(0.5f, z)),
             1.0f);
}

// The normal pair of one Box-Muller draw (memrnn_core::philox::box_muller).
__device__ __forceinline__ void box_muller(unsigned xa, unsigned xb, float* n0, float* n1) {
    const float u1 = MUL((float)((xa >> 8) + 1u), 1.0f / 16777216.0f);
    const float r = __fsqrt_rn(MUL(-2.0f, ln_f32(u1)));
    const unsigned n = xb >> 8;
    const unsigned o = n >> 21;
    const unsigned m = n & 0x1FFFFFu;
    const unsigned odd = o & 1u;
    const unsigned mm = odd ? 0x200000u - m : m;
    float s, c;
    sincos_reduced(MUL((float)mm, 0.785398163397448309616f / 2097152.0f), &s, &c);
    const unsigned q = ((o + 1u) >> 1) & 3u;
    const float sy = odd ? -s : s;
    float sn, cs;
    switch (q) {
        case 0: sn = sy; cs = c; break;
        case 1: sn = c; cs = -sy; break;
        case 2: sn = -sy; cs = -c; break;
        default: sn = -c; cs = sy; break;
    }
    *n0 = MUL(r, cs);
    *n1 = MUL(r, sn);
}

// out[0 .. P) = mean + std * z for row (t, b) of `stream`: group j from counter (j, b, t,
// stream), threads striding over the groups.
__device__ __forceinline__ void noise_row(float* out, int P, unsigned stream, unsigned t,
                                          unsigned b, unsigned k0, unsigned k1, float mean,
                                          float std_) {
    const int groups = (P + 3) / 4;
    for (int j = threadIdx.x; j < groups; j += blockDim.x) {
        const U4 x = philox((unsigned)j, b, t, stream, k0, k1);
        float z[4];
        box_muller(x.x0, x.x1, &z[0], &z[1]);
        box_muller(x.x2, x.x3, &z[2], &z[3]);
        for (int k = 0; k < 4; ++k) {
            const int i = 4 * j + k;
            if (i < P) out[i] = ADD(mean, MUL(std_, z[k]));
        }
    }
}

// The trial's digit and its image's row in the digit table (memrnn_core::task_gen::
// draw_trial's first two draws, from x0 and x1 of counter (0, b, 0, 1)).
__device__ __forceinline__ void trial_image(const MrTaskParams& P, const U4& x, unsigned vocab,
                                            unsigned* digit, unsigned* row) {
    *digit = below(x.x0, vocab);
    const unsigned first = (unsigned)P.offsets[*digit];
    const unsigned count = (unsigned)P.offsets[*digit + 1] - first;
    *row = first + below(x.x1, count);
}

// Row (t, b) of the inputs (memrnn_core::task_gen::fill_task_row): digit-table row `img`
// at t_read, noise elsewhere, the trigger at t_report.
__device__ __forceinline__ void task_row(const MrTaskParams& P, float* out, unsigned t,
                                         unsigned b, unsigned img, unsigned t_read,
                                         unsigned t_report) {
    const int Px = P.P;
    if (t == t_read) {
        const float* src = P.images + (size_t)img * Px;
        for (int i = threadIdx.x; i < Px; i += blockDim.x) out[i] = src[i];
    } else {
        noise_row(out, Px, 0u, t, b, P.k0, P.k1, P.mean, P.std_);
    }
    if (threadIdx.x == 0) out[Px] = t == t_report ? 1.0f : 0.0f;
}

}  // namespace

extern "C" __global__ void task_batch_f32(const MrTaskParams P_) {
    const MrTaskParams P = P_;
    const int T = P.T, B = P.B, Px = P.P;
    const long long rows = (long long)T * B;
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const unsigned t = (unsigned)(row / B);
        const unsigned b = (unsigned)(row - (long long)t * B);
        // The trial (memrnn_core::task_gen::draw_trial): every thread draws it.
        const U4 x = philox(0u, b, 0u, 1u, P.k0, P.k1);
        unsigned digit, img;
        trial_image(P, x, (unsigned)P.vocab, &digit, &img);
        const unsigned span = (unsigned)(P.T - P.delta_min);
        const unsigned t_read = below(x.x2, span);
        const unsigned t_report = t_read + (unsigned)P.delta_min + below(x.x3, span - t_read);
        task_row(P, P.x + row * (Px + 1), t, b, img, t_read, t_report);
        if (threadIdx.x == 0) {
            const bool report = t == t_report;
            P.targets[row] = report ? (float)(digit + 1u) : 0.0f;
            P.weights[row] = report ? (float)(T - 1) : 1.0f;
        }
    }
}

extern "C" __global__ void task_delay_f32(const MrTaskParams P_) {
    const MrTaskParams P = P_;
    const int Px = P.P;
    for (long long row = blockIdx.x; row < (long long)P.B; row += gridDim.x) {
        float* out = P.x + row * (Px + 1);
        noise_row(out, Px, 2u, 0u, (unsigned)row, P.k0, P.k1, P.mean, P.std_);
        if (threadIdx.x == 0) out[Px] = 0.0f;
    }
}

extern "C" __global__ void task_chunk_f32(const MrTaskParams P_) {
    const MrTaskParams P = P_;
    const int B = P.B, Px = P.P;
    const long long rows = (long long)P.T * B;
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const unsigned t = (unsigned)(row / B);
        const unsigned b = (unsigned)(row - (long long)t * B);
        const U4 x = philox(0u, b, 0u, 1u, P.k0, P.k1);
        unsigned digit, img;
        trial_image(P, x, 10u, &digit, &img);
        task_row(P, P.x + row * (Px + 1), (unsigned)P.t0 + t, b, img, P.t_read, P.t_report);
    }
}
