// cuda_sim.h: force-included (`g++ -include cuda_sim.h`) when a kernels/*.cu file is
// compiled as host C++17 for the SIMT simulator. It maps the CUDA keywords, built-in
// variables and intrinsics the kernels use onto host C++ and the runtime (runtime.cpp),
// so the kernel sources compile unchanged (dynamic shared memory aside: MR_DYNAMIC_SHARED).
//
// Execution model (see README.md): every CUDA thread is a fiber; all fibers of a launch run
// on the calling OS thread and switch only inside the barrier calls below.
#pragma once

#include <math.h>  // expf, tanhf, sqrtf, fmaf, and `isfinite` usable unqualified
#include <string.h>

#include <type_traits>

#include "sim_api.h"

// ---- keywords ----------------------------------------------------------------------------
#define __global__                  // extern "C" __global__ void f(...) stays a plain function
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline     // not always_inline: big templates compile faster
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// __restrict__ is a g++/clang keyword already.

// Static shared memory becomes one copy per OS thread (`static thread_local`). That is
// exact for a normal launch, whose blocks run one after another on one OS thread, and
// wrong for a cooperative launch with several blocks (they run together and would share
// it): the guard object in front makes the runtime fail such a launch the first time the
// declaration executes. Contents persist from one block to the next (a GPU's are garbage).
#define MR_SIM_CAT2(a, b) a##b
#define MR_SIM_CAT(a, b) MR_SIM_CAT2(a, b)
namespace mr_sim {
struct SharedCheck {
    SharedCheck(const char* file, int line) { static_shared_check(file, line); }
};
}  // namespace mr_sim
#define __shared__                                                                     \
    const ::mr_sim::SharedCheck MR_SIM_CAT(mr_sim_shared_check_, __COUNTER__){__FILE__, \
                                                                           __LINE__};  \
    static thread_local

// Dynamic shared memory: kernels write `MR_DYNAMIC_SHARED(float, smem);` (common.cuh
// defines it as `extern __shared__ __align__(16) T name[]` for nvcc). Here: this block's
// fresh, exactly sized, NaN-filled allocation.
#define MR_DYNAMIC_SHARED(T, name) T* const name = reinterpret_cast<T*>(::mr_sim::dynamic_shared())

// ---- built-in variables --------------------------------------------------------------------
#define threadIdx (mr_sim_view->thread_idx)
#define blockIdx (mr_sim_view->block_idx)
#define blockDim (mr_sim_view->block_dim)
#define gridDim (mr_sim_view->grid_dim)
static constexpr int warpSize = 32;

// ---- vector types (CUDA's alignment) ---------------------------------------------------------
struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(8) int2 { int x, y; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(8) uint2 { unsigned x, y; };
struct __align__(16) uint4 { unsigned x, y, z, w; };
static_assert(sizeof(float4) == 16 && alignof(float4) == 16, "float4 layout");
static_assert(sizeof(float2) == 8 && alignof(float2) == 8, "float2 layout");
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline int2 make_int2(int x, int y) { return int2{x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }

// ---- barriers ----------------------------------------------------------------------------------
// The call site comes from __builtin_FILE/__builtin_LINE default arguments (evaluated at
// the caller), so divergent-barrier and deadlock messages name the kernel's own lines.
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::mr_sim::block_sync(::mr_sim::BAR_SYNC, 0, file, line);
}
inline int __syncthreads_or(int p, const char* file = __builtin_FILE(),
                            int line = __builtin_LINE()) {
    return ::mr_sim::block_sync(::mr_sim::BAR_OR, p, file, line);
}
inline int __syncthreads_and(int p, const char* file = __builtin_FILE(),
                             int line = __builtin_LINE()) {
    return ::mr_sim::block_sync(::mr_sim::BAR_AND, p, file, line);
}
inline int __syncthreads_count(int p, const char* file = __builtin_FILE(),
                               int line = __builtin_LINE()) {
    return ::mr_sim::block_sync(::mr_sim::BAR_COUNT, p, file, line);
}
// Every access is sequentially consistent on one OS thread: fences are no-ops.
inline void __threadfence() {}
inline void __threadfence_block() {}
[[noreturn]] inline void __trap(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::mr_sim::trap("__trap()", file, line);
}

// ---- warp operations -----------------------------------------------------------------------
// Exact CUDA/PTX shfl.sync semantics (width, clamping; see runtime.cpp shfl_src) for any
// trivially copyable type of at most 8 bytes (float, int, unsigned, double, long long).
namespace mr_sim {
template <class T>
inline T warp_shfl(unsigned mask, T var, int op, int b, int width, const char* file, int line) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                  "shuffle of a type the simulator does not support");
    uint64_t bits = 0;
    memcpy(&bits, &var, sizeof(T));
    bits = warp_op(mask, bits, op, b, width, file, line);
    T r;
    memcpy(&r, &bits, sizeof(T));
    return r;
}
}  // namespace mr_sim
template <class T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = 32,
                     const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return ::mr_sim::warp_shfl(mask, var, ::mr_sim::OP_IDX, srcLane, width, file, line);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32,
                        const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return ::mr_sim::warp_shfl(mask, var, ::mr_sim::OP_UP, (int)delta, width, file, line);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32,
                          const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return ::mr_sim::warp_shfl(mask, var, ::mr_sim::OP_DOWN, (int)delta, width, file, line);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = 32,
                         const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return ::mr_sim::warp_shfl(mask, var, ::mr_sim::OP_XOR, laneMask, width, file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
    ::mr_sim::warp_op(mask, 0, ::mr_sim::OP_SYNCWARP, 0, 32, file, line);
}
inline unsigned __ballot_sync(unsigned mask, int p, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
    return (unsigned)::mr_sim::warp_op(mask, p != 0, ::mr_sim::OP_BALLOT, 0, 32, file, line);
}
inline int __any_sync(unsigned mask, int p, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
    return (int)::mr_sim::warp_op(mask, p != 0, ::mr_sim::OP_ANY, 0, 32, file, line);
}
inline int __all_sync(unsigned mask, int p, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
    return (int)::mr_sim::warp_op(mask, p != 0, ::mr_sim::OP_ALL, 0, 32, file, line);
}

// ---- loads (cache hints are meaningless here) -------------------------------------------
template <class T>
inline T __ldg(const T* p) { return *p; }
template <class T>
inline T __ldcg(const T* p) { return *p; }
template <class T>
inline T __ldca(const T* p) { return *p; }
template <class T>
inline T __ldcs(const T* p) { return *p; }
template <class T>
inline T __ldlu(const T* p) { return *p; }

// ---- float intrinsics (built with -ffp-contract=off: no hidden fusion) ------------------
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float rsqrtf(float a) { return 1.0f / sqrtf(a); }
inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }

// ---- min / max: the overload set of CUDA's device math headers ---------------------------
// Mixed signed/unsigned pairs go to the unsigned version, as nvcc's do.
#define MR_SIM_MINMAX(R, A, B)                                   \
    inline R min(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; } \
    inline R max(A a, B b) { return (R)a > (R)b ? (R)a : (R)b; }
MR_SIM_MINMAX(int, int, int)
MR_SIM_MINMAX(unsigned, unsigned, unsigned)
MR_SIM_MINMAX(unsigned, int, unsigned)
MR_SIM_MINMAX(unsigned, unsigned, int)
MR_SIM_MINMAX(long, long, long)
MR_SIM_MINMAX(unsigned long, unsigned long, unsigned long)
MR_SIM_MINMAX(unsigned long, long, unsigned long)
MR_SIM_MINMAX(unsigned long, unsigned long, long)
MR_SIM_MINMAX(long long, long long, long long)
MR_SIM_MINMAX(unsigned long long, unsigned long long, unsigned long long)
MR_SIM_MINMAX(unsigned long long, long long, unsigned long long)
MR_SIM_MINMAX(unsigned long long, unsigned long long, long long)
#undef MR_SIM_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }

// ---- atomics: every simulated thread runs on one OS thread and switches only at barriers,
// so a plain read-modify-write is atomic. (Unused by kernels/ today; here for new kernels.)
template <class T>
inline T atomicAdd(T* p, T v) { T o = *p; *p = o + v; return o; }
template <class T>
inline T atomicSub(T* p, T v) { T o = *p; *p = o - v; return o; }
template <class T>
inline T atomicExch(T* p, T v) { T o = *p; *p = v; return o; }
template <class T>
inline T atomicMin(T* p, T v) { T o = *p; *p = o < v ? o : v; return o; }
template <class T>
inline T atomicMax(T* p, T v) { T o = *p; *p = o > v ? o : v; return o; }
template <class T>
inline T atomicCAS(T* p, T cmp, T v) { T o = *p; if (o == cmp) *p = v; return o; }
