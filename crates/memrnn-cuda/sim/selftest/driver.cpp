// Self-test driver for the SIMT simulator: plain host C++ (no cuda_sim.h), launching the
// kernels of kernels.cu through the C ABI exactly as the Rust side does.
//   driver            run every test, print a timing line; exit 1 on any failure
//   driver oob-shared a kernel reading past its dynamic shared memory (ASan must report)
//   driver oob-global a kernel reading past a heap buffer (ASan must report)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "../mr_sim.h"

// The two __syncthreads lines of k_divergent (selftest.sh passes them).
#ifndef SITE_A
#error "build with -DSITE_A=\"<line>\" -DSITE_B=\"<line>\" (selftest.sh does)"
#endif

extern "C" {
void k_barrier(int* out, int rounds);
void k_sync_or(int* out, int chosen);
void k_shfl(float* out_xor, int* out_up, int* out_down, int* out_idx);
void k_warp_reduce(const float* in, float* sums, int* scans);
void k_dims(unsigned* out);
void k_partial_warp(int* out, unsigned mask1);
void k_half_warps(int* out, int overlap);
void k_ring(int* slots, int* errors, int iters);
void k_grid_sync(int skip_block);
void k_divergent(int* out);
void k_exited_lane(int* out);
void k_deadlock(int* out);
void k_static_shared_coop(int* out);
void k_dyn_shared(unsigned* out, int n);
void k_oob_shared(float* out, int n);
void k_pingpong(int n);
void k_shfl_many(float* out, int n);
void k_misc(float* outf, int* outi);
}

static int g_failures = 0;
#define CHECK(cond, ...)                                                \
    do {                                                                \
        if (!(cond)) {                                                  \
            ++g_failures;                                               \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                               \
            fprintf(stderr, "\n");                                      \
        }                                                               \
    } while (0)

// Launch `f` (a callable running one kernel call) on every simulated thread.
template <class F>
static int launch(const char* name, MrSimDim3 grid, MrSimDim3 block, uint64_t smem, bool coop,
                  F f, std::string* err = nullptr) {
    MrSimLaunch l{name, grid, block, smem, coop ? 1 : 0};
    char buf[2048];
    const int rc = mr_sim_launch(&l, [](void* p) { (*static_cast<F*>(p))(); }, &f, buf, sizeof buf);
    if (err) *err = buf;
    return rc;
}
static MrSimDim3 d3(uint32_t x, uint32_t y = 1, uint32_t z = 1) { return MrSimDim3{x, y, z}; }
static bool has(const std::string& s, const char* sub) { return s.find(sub) != std::string::npos; }

static void test_barrier() {
    const int nb = 3, nt = 256, rounds = 5;
    std::vector<int> out(nb * nt, -1);
    std::string e;
    int rc = launch("k_barrier", d3(nb), d3(nt), nt * sizeof(int), false,
                    [&] { k_barrier(out.data(), rounds); }, &e);
    CHECK(rc == 0, "%s", e.c_str());
    for (int b = 0; b < nb; ++b)
        for (int t = 0; t < nt; ++t) {
            int want = 0;
            for (int r = 0; r < rounds; ++r)
                want += ((t + 1) % nt) * 7 + r + b + ((t + nt - 1) % nt) * 3 - r;
            CHECK(out[b * nt + t] == want, "block %d thread %d: %d != %d", b, t, out[b * nt + t], want);
        }
}

static void test_sync_or() {
    for (int chosen : {-1, 0, 77, 255}) {
        std::vector<int> out(256 * 3, -1);
        std::string e;
        int rc = launch("k_sync_or", d3(1), d3(256), 0, false, [&] { k_sync_or(out.data(), chosen); }, &e);
        CHECK(rc == 0, "%s", e.c_str());
        for (int t = 0; t < 256; ++t) {
            CHECK(out[t * 3] == (chosen >= 0), "or, chosen %d thread %d: %d", chosen, t, out[t * 3]);
            CHECK(out[t * 3 + 1] == (chosen < 0), "and, chosen %d thread %d", chosen, t);
            CHECK(out[t * 3 + 2] == 86, "count, thread %d: %d", t, out[t * 3 + 2]);
        }
    }
}

// The CUDA Programming Guide's definitions, written independently of runtime.cpp's PTX form.
static int ref_src(char op, int lane, int b, int w) {
    const int seg = lane / w;
    switch (op) {
        case 'x': { const int s = lane ^ b; return s / w > seg ? lane : s; }  // later group: own
        case 'u': { const int s = lane - b; return s < seg * w ? lane : s; }
        case 'd': { const int s = lane + b; return s >= (seg + 1) * w ? lane : s; }
        case 'i': return seg * w + b % w;
    }
    return -1;
}

static void test_shfl() {
    const int nc = 3 * 32;
    std::vector<float> ox(nc * 32);
    std::vector<int> ou(nc * 32), od(nc * 32), oi(nc * 32);
    std::string e;
    int rc = launch("k_shfl", d3(1), d3(32), 0, false,
                    [&] { k_shfl(ox.data(), ou.data(), od.data(), oi.data()); }, &e);
    CHECK(rc == 0, "%s", e.c_str());
    const int widths[3] = {32, 16, 8};
    int bad = 0;
    for (int c = 0; c < nc; ++c) {
        const int w = widths[c / 32], b = c % 32;
        for (int l = 0; l < 32; ++l) {
            const int x = ref_src('x', l, b, w) * 100 + c, u = ref_src('u', l, b, w) * 100 + c;
            const int d = ref_src('d', l, b, w) * 100 + c, i = ref_src('i', l, b, w) * 100 + c;
            if (ox[c * 32 + l] != (float)x || ou[c * 32 + l] != u || od[c * 32 + l] != d ||
                oi[c * 32 + l] != i) {
                if (bad++ < 5)
                    fprintf(stderr, "  width %d b %d lane %d: xor %g/%d up %d/%d down %d/%d idx %d/%d\n",
                            w, b, l, ox[c * 32 + l], x, ou[c * 32 + l], u, od[c * 32 + l], d,
                            oi[c * 32 + l], i);
            }
        }
    }
    CHECK(bad == 0, "%d shuffle results differ from CUDA's definition", bad);
}

static void test_warp_reduce() {
    const int n = 16 * 8;  // block (16, 8): 4 warps spanning rows
    std::vector<float> in(n), sums(n);
    std::vector<int> scans(n);
    for (int i = 0; i < n; ++i) in[i] = (float)(i * 3 % 17);
    std::string e;
    int rc = launch("k_warp_reduce", d3(1), d3(16, 8), 0, false,
                    [&] { k_warp_reduce(in.data(), sums.data(), scans.data()); }, &e);
    CHECK(rc == 0, "%s", e.c_str());
    for (int t = 0; t < n; ++t) {
        float s = 0;
        for (int l = 0; l < 32; ++l) s += in[(t & ~31) + l];
        CHECK(sums[t] == s, "warp sum thread %d: %g != %g", t, sums[t], s);
        const int lane = t & 31;
        CHECK(scans[t] == (lane + 1) * (lane + 2) / 2, "scan thread %d: %d", t, scans[t]);
    }
}

static void test_dims() {
    const MrSimDim3 g = d3(3, 2, 2), b = d3(4, 3, 2);
    const int nt = 24, nb = 12;
    std::vector<unsigned> out(nt * nb * 12, 0xdeadu);
    std::string e;
    int rc = launch("k_dims", g, b, 0, false, [&] { k_dims(out.data()); }, &e);
    CHECK(rc == 0, "%s", e.c_str());
    int bad = 0;
    for (unsigned bz = 0; bz < 2; ++bz)
        for (unsigned by = 0; by < 2; ++by)
            for (unsigned bx = 0; bx < 3; ++bx)
                for (unsigned tz = 0; tz < 2; ++tz)
                    for (unsigned ty = 0; ty < 3; ++ty)
                        for (unsigned tx = 0; tx < 4; ++tx) {
                            const unsigned bl = (bz * 2 + by) * 3 + bx, tl = (tz * 3 + ty) * 4 + tx;
                            const unsigned* o = &out[(bl * nt + tl) * 12];
                            const unsigned want[12] = {tx, ty, tz, bx, by, bz, 4, 3, 2, 3, 2, 2};
                            if (memcmp(o, want, sizeof want)) ++bad;
                        }
    CHECK(bad == 0, "%d threads saw wrong indices", bad);
    // Cooperative, multi-dimensional too.
    std::fill(out.begin(), out.end(), 0xdeadu);
    rc = launch("k_dims", g, b, 0, true, [&] { k_dims(out.data()); }, &e);
    CHECK(rc == 0 && out[5 * 12 + 1] == 1 && out[(nt * nb - 1) * 12 + 5] == 1, "%s", e.c_str());
}

static void test_partial_warp() {
    std::vector<int> out(48, -1);
    std::string e;
    int rc = launch("k_partial_warp", d3(1), d3(48), 0, false, [&] { k_partial_warp(out.data(), 0xffffu); }, &e);
    CHECK(rc == 0, "%s", e.c_str());
    for (int t = 0; t < 48; ++t) CHECK(out[t] == (t ^ 1), "thread %d: %d", t, out[t]);
    rc = launch("k_partial_warp", d3(1), d3(48), 0, false, [&] { k_partial_warp(out.data(), 0xffffffffu); }, &e);
    CHECK(rc != 0 && has(e, "beyond the block's last (partial) warp"), "%s", e.c_str());
}

static void test_half_warps() {
    const int n = 64;
    std::vector<int> out(3 * n, -1);
    std::string e;
    int rc = launch("k_half_warps", d3(1), d3(n), 0, false, [&] { k_half_warps(out.data(), 0); }, &e);
    CHECK(rc == 0, "%s", e.c_str());
    std::vector<int> v(n), nv(n);
    for (int t = 0; t < n; ++t) v[t] = t;
    int bad = 0;
    for (int r = 0; r < 3; ++r) {
        for (int t = 0; t < n; ++t) {
            const int lane = t & 31;
            nv[t] = (lane < 16 ? v[t ^ 1] : (lane == 16 ? v[t] : v[t - 1])) + 1;
        }
        v = nv;
        for (int t = 0; t < n; ++t) bad += out[r * n + t] != v[t];
    }
    CHECK(bad == 0, "%d half-warp results wrong", bad);
    rc = launch("k_half_warps", d3(1), d3(n), 0, false, [&] { k_half_warps(out.data(), 1); }, &e);
    CHECK(rc != 0 && has(e, "divergent warp ops"), "%s", e.c_str());
    printf("  overlapping masks: %s\n", e.c_str());
}

static bool ring_ok(int nb, int nt, int iters, std::string* err) {
    std::vector<int> slots(nb, -1), errors(nb * nt, 0);
    const int rc = launch("k_ring", d3(nb), d3(nt), 16, true,
                          [&] { k_ring(slots.data(), errors.data(), iters); }, err);
    if (rc != 0) return false;
    for (int v : errors)
        if (v) {
            *err = "ring: a block read a stale slot";
            return false;
        }
    return true;
}

static void test_ring() {
    std::string e;
    CHECK(ring_ok(8, 64, 50, &e), "%s", e.c_str());
    CHECK(ring_ok(3, 32, 200, &e), "%s", e.c_str());
}

static void test_errors() {
    std::string e;
    int rc = launch("k_grid_sync", d3(2), d3(32), 0, false, [&] { k_grid_sync(-1); }, &e);
    CHECK(rc != 0 && has(e, "non-cooperative") && has(e, "k_grid_sync"), "%s", e.c_str());
    printf("  non-cooperative grid sync: %s\n", e.c_str());

    rc = launch("k_grid_sync", d3(4), d3(32), 0, true, [&] { k_grid_sync(2); }, &e);
    CHECK(rc != 0 && has(e, "grid sync that block (2,0,0) skipped"), "%s", e.c_str());
    printf("  skipped grid sync: %s\n", e.c_str());

    std::vector<int> out(1024);
    rc = launch("k_divergent", d3(1), d3(64), 0, false, [&] { k_divergent(out.data()); }, &e);
    // Both call sites: the two __syncthreads lines of k_divergent.
    CHECK(rc != 0 && has(e, "divergent __syncthreads") && has(e, "kernels.cu:" SITE_A) &&
              has(e, "kernels.cu:" SITE_B),
          "%s", e.c_str());
    printf("  divergent: %s\n", e.c_str());

    rc = launch("k_exited_lane", d3(1), d3(32), 0, false, [&] { k_exited_lane(out.data()); }, &e);
    CHECK(rc != 0 && has(e, "thread (5,0,0)") && has(e, "exited"), "%s", e.c_str());
    printf("  exited lane: %s\n", e.c_str());

    rc = launch("k_deadlock", d3(1), d3(64), 0, false, [&] { k_deadlock(out.data()); }, &e);
    CHECK(rc != 0 && has(e, "deadlock") && has(e, "__shfl_xor_sync") && has(e, "__syncthreads"),
          "%s", e.c_str());
    printf("  deadlock: %s\n", e.c_str());

    rc = launch("k_static_shared_coop", d3(2), d3(32), 0, true, [&] { k_static_shared_coop(out.data()); }, &e);
    CHECK(rc != 0 && has(e, "static __shared__"), "%s", e.c_str());
    rc = launch("k_static_shared_coop", d3(1), d3(32), 0, true, [&] { k_static_shared_coop(out.data()); }, &e);
    CHECK(rc == 0, "one-block cooperative launch with static shared: %s", e.c_str());

    rc = launch("k_bad_config", d3(1), d3(2048), 0, false, [&] {}, &e);
    CHECK(rc != 0 && has(e, "invalid launch configuration"), "%s", e.c_str());

    // And everything works again after the errors.
    test_barrier();
    CHECK(ring_ok(4, 64, 10, &e), "after errors: %s", e.c_str());
}

static void test_dyn_shared() {
    for (int n : {1, 7, 64}) {
        std::vector<unsigned> out(n, 0);
        std::string e;
        int rc = launch("k_dyn_shared", d3(2), d3(32), (uint64_t)n * 4, false,
                        [&] { k_dyn_shared(out.data(), n); }, &e);
        CHECK(rc == 0, "%s", e.c_str());
        for (int i = 0; i < n; ++i) CHECK(out[i] == 0x7fc00000u, "smem[%d] = 0x%08x", i, out[i]);
    }
}

static void test_threads() {
    std::string e1, e2;
    bool ok1 = false, ok2 = false;
    std::thread a([&] { ok1 = ring_ok(16, 64, 100, &e1); });
    std::thread b([&] {
        ok2 = ring_ok(5, 96, 150, &e2);
        test_shfl();
    });
    a.join();
    b.join();
    CHECK(ok1, "thread 1: %s", e1.c_str());
    CHECK(ok2, "thread 2: %s", e2.c_str());
}

static void test_misc() {
    float f[3] = {0, 0, 0};
    int i[3] = {0, 0, 0};
    std::string e;
    int rc = launch("k_misc", d3(1), d3(1), 0, false, [&] { k_misc(f, i); }, &e);
    CHECK(rc == 0, "%s", e.c_str());
    CHECK(f[0] == 8.5f && f[1] == 4.0f && f[2] == 0.5f, "%g %g %g", f[0], f[1], f[2]);
    CHECK(i[0] == -4 + 7 + 5 && i[1] == 1 && i[2] == 10 + 8, "%d %d %d", i[0], i[1], i[2]);
}

// CPU time of this OS thread: the machines these run on are often shared.
static double cpu_now() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void timing() {
    std::string e;
    const int n = 1000000;
    double t0 = cpu_now();
    int rc = launch("k_pingpong", d3(1), d3(2), 0, false, [&] { k_pingpong(n); }, &e);
    const double ping = cpu_now() - t0;
    CHECK(rc == 0, "%s", e.c_str());
    std::vector<float> out(256);
    const int ns = 10000;
    t0 = cpu_now();
    rc = launch("k_shfl_many", d3(1), d3(256), 0, false, [&] { k_shfl_many(out.data(), ns); }, &e);
    const double sh = cpu_now() - t0;
    CHECK(rc == 0, "%s", e.c_str());
    printf("timing (thread CPU time): %.1f ns per fiber switch (2-thread __syncthreads ping-pong, %d barriers); "
           "256-thread block x %d shuffles: %.1f ms (%.1f ns per lane-shuffle)\n",
           ping * 1e9 / n, n, ns, sh * 1e3, sh * 1e9 / (256.0 * ns));
}

int main(int argc, char** argv) {
    if (argc > 1) {
        std::vector<float> out(32);
        std::string e;
        if (!strcmp(argv[1], "oob-shared")) {
            launch("k_oob_shared", d3(1), d3(32), 64 * 4, false, [&] { k_oob_shared(out.data(), 64); }, &e);
        } else if (!strcmp(argv[1], "oob-global")) {
            // A 16-float heap buffer read at 16 + tid through the same kernel: out[i] = in[n+i].
            float* buf = (float*)malloc(16 * sizeof(float));
            launch("k_warp_reduce", d3(1), d3(64), 0, false, [&] {
                std::vector<int> scans(64);
                std::vector<float> sums(64);
                k_warp_reduce(buf, sums.data(), scans.data());  // reads buf[0..64)
            }, &e);
            free(buf);
        }
        printf("no AddressSanitizer report (%s)\n", e.c_str());
        return 0;
    }
    test_barrier();
    test_sync_or();
    test_shfl();
    test_warp_reduce();
    test_dims();
    test_partial_warp();
    test_half_warps();
    test_ring();
    test_dyn_shared();
    test_misc();
    test_errors();
    test_threads();
    timing();
    if (g_failures) {
        printf("selftest: %d FAILED checks\n", g_failures);
        return 1;
    }
    printf("selftest: all checks passed\n");
    return 0;
}
