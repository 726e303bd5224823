// sim_api.h: the C++ interface between the kernel translation units (through cuda_sim.h)
// and runtime.cpp. Private to the simulator: the Rust side uses mr_sim.h only.
#pragma once
#include <stddef.h>
#include <stdint.h>

// CUDA's vector index types, in the global namespace as in CUDA.
struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

namespace mr_sim {

// What threadIdx & co. read: one per simulated thread, owned by the runtime.
struct View {
    uint3 thread_idx;
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
};

// Warp-level operations, all one warp barrier over the lanes of `mask`.
enum WarpOp : int { OP_SYNCWARP, OP_IDX, OP_UP, OP_DOWN, OP_XOR, OP_BALLOT, OP_ANY, OP_ALL };
// Block barrier flavours (__syncthreads, __syncthreads_or/_and/_count).
enum BlockOp : int { BAR_SYNC, BAR_OR, BAR_AND, BAR_COUNT };

// Every call below is made from inside a simulated thread. On a kernel bug they do not
// return: the launch fails with a message and the fiber is abandoned.
uint64_t warp_op(uint32_t mask, uint64_t value, int op, int b, int width, const char* file,
                 int line);
int block_sync(int op, int pred, const char* file, int line);
void grid_sync(const char* file, int line);
bool grid_is_cooperative();
void* dynamic_shared();
void static_shared_check(const char* file, int line);
[[noreturn]] void trap(const char* what, const char* file, int line);

}  // namespace mr_sim

// The current simulated thread's indices. `__thread`, not `thread_local`: a plain TLS
// pointer with no C++ initialisation wrapper, so `threadIdx.x` is two loads.
extern __thread const mr_sim::View* mr_sim_view;
