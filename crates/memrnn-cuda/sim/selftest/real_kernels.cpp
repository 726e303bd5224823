// Smoke test of REAL kernels through the simulator: kernels/rnn.cu's persistent
// (cooperative, grid sync per step) and per-step forward kernels against a plain f64
// reference of h_t = tanh(A_t + b_ih + W_hh h_{t-1} + b_hh), plus a timing line at a
// test-suite-like size. The conformance suite (Rust) is the real test; this one only proves
// the simulator runs the kernels' actual launch shape (tile_phase's shuffles, staging,
// grid sync) correctly.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <time.h>
#include <algorithm>
#include <random>
#include <vector>

#include "../mr_sim.h"
#include "params.cuh"

extern "C" void rnn_seq_fwd_f32(const MrRecFwdParams p);
extern "C" void rnn_step_fwd_f32(const MrRecFwdParams p);
extern "C" void slowpoints_compact_f32(const MrCompactParams p);
extern "C" void transpose_f32(const MrTransposeParams p);

// slowpoints_compact_f32 (one 1024-thread block, warp scans with __shfl_up_sync, static
// __shared__) and transpose_f32 (2-D blocks, static __shared__ tile) against plain loops.
static int small_kernels() {
    int fails = 0;
    char err[2048];
    for (int K : {1, 31, 1024, 2500}) {
        std::vector<unsigned> status((size_t)K * 4, 0);
        std::vector<int> want;
        for (int i = 0; i < K; ++i) {
            status[(size_t)i * 4 + 3] = (unsigned)((i * 7 + i / 3) % 5);  // 0 = RUNNING
            if (status[(size_t)i * 4 + 3] == 0 || status[(size_t)i * 4 + 3] == 3) want.push_back(i);
        }
        std::vector<int> idx(K + 1, -1);
        int count = -1;
        MrCompactParams p{status.data(), K, 1, idx.data(), &count};
        MrSimLaunch l{"slowpoints_compact_f32", {1, 1, 1}, {1024, 1, 1}, 0, 0};
        const int rc = mr_sim_launch(&l, [](void* c) { slowpoints_compact_f32(*(MrCompactParams*)c); },
                                     &p, err, sizeof err);
        const bool ok = rc == 0 && count == (int)want.size() &&
                        std::equal(want.begin(), want.end(), idx.begin());
        printf("%s slowpoints_compact_f32 K=%d: %d active %s\n", ok ? "ok  " : "FAIL", K, count,
               rc ? err : "");
        fails += !ok;
    }
    const int R = 45, C = 70;
    std::vector<float> in((size_t)R * C), out((size_t)R * C, NAN);
    for (size_t i = 0; i < in.size(); ++i) in[i] = (float)i;
    MrTransposeParams tp{in.data(), out.data(), R, C};
    MrSimLaunch l{"transpose_f32", {(C + 31) / 32, (R + 31) / 32, 1}, {32, 8, 1}, 0, 0};
    const int rc = mr_sim_launch(&l, [](void* c) { transpose_f32(*(MrTransposeParams*)c); }, &tp,
                                 err, sizeof err);
    bool ok = rc == 0;
    for (int r = 0; r < R && ok; ++r)
        for (int c = 0; c < C; ++c) ok = ok && out[(size_t)c * R + r] == in[(size_t)r * C + c];
    printf("%s transpose_f32 %dx%d %s\n", ok ? "ok  " : "FAIL", R, C, rc ? err : "");
    return fails + !ok;
}

struct Problem {
    int T, B, H, jt, bt, kc, ks;
};

static int run(const Problem& pr, bool persistent, double* secs, double* max_err) {
    const int T = pr.T, B = pr.B, H = pr.H;
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    std::vector<float> A((size_t)T * B * H), w((size_t)H * H), bi(H), bh(H), s0((size_t)B * H);
    for (auto* v : {&A, &w, &bi, &bh, &s0})
        for (float& x : *v) x = u(rng);
    for (float& x : w) x *= 2.0f / sqrtf((float)H);
    std::vector<float> h_seq((size_t)T * B * H, NAN), s_final((size_t)B * H, NAN);
    MrRecFwdParams p;
    memset(&p, 0, sizeof p);
    p.a = mr::FwdArgs{A.data(), w.data(), bi.data(), bh.data(), s0.data(), h_seq.data(),
                      nullptr, nullptr, s_final.data(), T, B, H};
    p.tile = mr::TileArgs{pr.jt, pr.bt, pr.kc, pr.ks};
    const int nj = (H + pr.jt - 1) / pr.jt, nb = (B + pr.bt - 1) / pr.bt;
    const int btp = (pr.bt + 3) & ~3;
    const uint64_t stage = (uint64_t)btp * pr.kc * 4;
    MrSimLaunch l{persistent ? "rnn_seq_fwd_f32" : "rnn_step_fwd_f32",
                  {(uint32_t)(nj * nb), 1, 1}, {256, 1, 1},
                  persistent ? (uint64_t)pr.jt * (H | 1) * 4 + stage : stage, persistent};
    char err[2048];
    timespec c0, c1;  // thread CPU time: the machines these run on are often shared
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    for (int t = 0; t < (persistent ? 1 : T); ++t) {
        p.t = t;
        const int rc = mr_sim_launch(
            &l, persistent ? +[](void* c) { rnn_seq_fwd_f32(*(MrRecFwdParams*)c); }
                           : +[](void* c) { rnn_step_fwd_f32(*(MrRecFwdParams*)c); },
            &p, err, sizeof err);
        if (rc) {
            printf("FAIL %s: %s\n", l.kernel, err);
            return 1;
        }
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    *secs = (c1.tv_sec - c0.tv_sec) + (c1.tv_nsec - c0.tv_nsec) * 1e-9;
    std::vector<double> h(s0.begin(), s0.end()), hn((size_t)B * H);
    double me = 0;
    for (int t = 0; t < T; ++t) {
        for (int b = 0; b < B; ++b)
            for (int j = 0; j < H; ++j) {
                double acc = (double)A[((size_t)t * B + b) * H + j] + bi[j] + bh[j];
                for (int k = 0; k < H; ++k) acc += (double)w[(size_t)j * H + k] * h[(size_t)b * H + k];
                hn[(size_t)b * H + j] = tanh(acc);
                const double d = fabs(hn[(size_t)b * H + j] - h_seq[((size_t)t * B + b) * H + j]);
                if (!(d <= me)) me = d;  // NaN propagates
            }
        h = hn;
    }
    for (size_t i = 0; i < s_final.size(); ++i)
        if (!(fabs(s_final[i] - h[i]) <= 1e-5)) me = fmax(me, 1.0);
    *max_err = me;
    return !(me <= 1e-5);
}

int main(int argc, char** argv) {
    const bool small_only = argc > 1 && !strcmp(argv[1], "--small");
    int fails = small_kernels();
    // Small: multi-pass tiles (jt * ceil(bt/4) * ks > 256), multi-chunk staging (kc < H),
    // partial unit and batch tiles.
    const Problem small[] = {{5, 10, 45, 8, 6, 16, 4}, {4, 3, 33, 32, 4, 33, 8},
                             {3, 17, 20, 4, 17, 8, 32}};
    for (const Problem& pr : small)
        for (bool pers : {true, false}) {
            double s, e;
            const int f = run(pr, pers, &s, &e);
            printf("%s rnn %s T=%d B=%d H=%d jt=%d bt=%d kc=%d ks=%d: max |err| %.2e\n",
                   f ? "FAIL" : "ok  ", pers ? "persistent" : "per-step", pr.T, pr.B, pr.H,
                   pr.jt, pr.bt, pr.kc, pr.ks, e);
            fails += f;
        }
    if (small_only) return fails ? 1 : 0;
    // Timing at a test-suite-like size: 128 blocks x 256 threads, cooperative.
    const Problem big{8, 64, 256, 8, 16, 256, 8};
    for (const char* which : {"first launch, fresh stacks", "again, pooled stacks"}) {
        double s, e;
        const int f = run(big, true, &s, &e);
        fails += f;
        printf("%s timing: rnn persistent T=8 B=64 H=256, 128 blocks x 256 threads "
               "(cooperative), %s: %.2f s CPU (%.1f ms per step), max |err| %.2e\n",
               f ? "FAIL" : "ok  ", which, s, s * 1e3 / big.T, e);
    }
    return fails ? 1 : 0;
}
