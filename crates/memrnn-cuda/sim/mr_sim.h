/* mr_sim.h: the C ABI of the SIMT simulator (crates/memrnn-cuda/sim/). The Rust side calls
   mr_sim_launch with an entry function that calls one kernel (a kernels/ source compiled
   as host C++ with cuda_sim.h force-included) with the launch's arguments.
   The entry must not unwind (no C++ exception, no Rust panic crossing it). */
#ifndef MR_SIM_H
#define MR_SIM_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
typedef struct { uint32_t x, y, z; } MrSimDim3;
typedef struct {
    const char* kernel;            /* name, for messages */
    MrSimDim3 grid, block;
    uint64_t dynamic_shared_bytes; /* per block, exactly this many bytes, NaN-filled */
    int32_t cooperative;           /* 1: all blocks run together (grid sync allowed) */
} MrSimLaunch;
/* Called once on every simulated thread (fiber) with ctx; it calls the kernel. */
typedef void (*MrSimEntry)(void* ctx);
/* Runs the whole launch on the calling OS thread and returns when it is done.
   0 = success. Nonzero = error, with a NUL-terminated message (truncated to err_len)
   that names the kernel, the block and the thread(s) and what went wrong. */
int32_t mr_sim_launch(const MrSimLaunch* launch, MrSimEntry entry, void* ctx, char* err, size_t err_len);
#ifdef __cplusplus
}
#endif
#endif
