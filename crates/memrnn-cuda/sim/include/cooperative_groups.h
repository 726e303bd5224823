// cooperative_groups.h for the SIMT simulator: found before the CUDA toolkit's through
// `-I crates/memrnn-cuda/sim/include`. The subset the kernels use, backed by the runtime's
// block and grid barriers.
#pragma once
#include "../cuda_sim.h"

namespace cooperative_groups {

class thread_block {
public:
    void sync(const char* file = __builtin_FILE(), int line = __builtin_LINE()) const {
        ::mr_sim::block_sync(::mr_sim::BAR_SYNC, 0, file, line);
    }
    unsigned thread_rank() const {
        return (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    }
    unsigned size() const { return blockDim.x * blockDim.y * blockDim.z; }
    unsigned num_threads() const { return size(); }
    dim3 group_index() const { return blockIdx; }
    dim3 thread_index() const { return threadIdx; }
    dim3 group_dim() const { return blockDim; }
};

// A grid barrier: completes when every thread of every block has arrived. Only in a
// cooperative launch (mr_sim_launch with cooperative = 1); elsewhere sync() fails the
// launch, as cudaLaunchKernel (non-cooperative) makes grid.sync() invalid on the GPU.
class grid_group {
public:
    void sync(const char* file = __builtin_FILE(), int line = __builtin_LINE()) const {
        ::mr_sim::grid_sync(file, line);
    }
    bool is_valid() const { return ::mr_sim::grid_is_cooperative(); }
    unsigned long long num_blocks() const {
        return (unsigned long long)gridDim.x * gridDim.y * gridDim.z;
    }
    unsigned long long block_rank() const {
        return ((unsigned long long)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    }
    unsigned long long num_threads() const {
        return num_blocks() * blockDim.x * blockDim.y * blockDim.z;
    }
    unsigned long long size() const { return num_threads(); }
    unsigned long long thread_rank() const {
        return block_rank() * (blockDim.x * blockDim.y * blockDim.z) +
               (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    }
    dim3 group_dim() const { return gridDim; }
};

inline thread_block this_thread_block() { return thread_block(); }
inline grid_group this_grid() { return grid_group(); }
inline void sync(const thread_block& g, const char* file = __builtin_FILE(),
                 int line = __builtin_LINE()) {
    g.sync(file, line);
}
inline void sync(const grid_group& g, const char* file = __builtin_FILE(),
                 int line = __builtin_LINE()) {
    g.sync(file, line);
}

}  // namespace cooperative_groups
