// runtime.cpp: the SIMT simulator's scheduler (see README.md for the model and its limits).
//
// One launch = one call of mr_sim_launch on the calling OS thread. Every CUDA thread is a
// fiber with its own mmap'd stack. Fibers are cooperative: a fiber runs until it waits at a
// barrier (warp op, __syncthreads*, grid sync), exits, or hits a kernel bug; it then
// switches DIRECTLY to the next runnable fiber (a FIFO ready queue = round robin), or to the
// launching context ("main") when none is runnable. Main therefore regains control only
// when the group is done, deadlocked, or failed: no scheduler round trip per switch.
//
// A barrier is completed by its last arriver, which computes everyone's result, marks the
// waiters runnable and carries on; so a warp shuffle costs each lane exactly one switch.
//
// All state is per OS thread (`thread_local` / `__thread`): concurrent launches from
// different OS threads (cargo's test threads) share nothing. A fiber never migrates.

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include "mr_sim.h"
#include "sim_api.h"

#if defined(__SANITIZE_ADDRESS__)
#define MR_SIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MR_SIM_ASAN 1
#endif
#endif
#ifndef MR_SIM_ASAN
#define MR_SIM_ASAN 0
#endif
#if MR_SIM_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// x86-64: a hand-written switch (below). Elsewhere, or with -DMR_SIM_USE_UCONTEXT:
// ucontext (correct, but swapcontext makes a sigprocmask syscall per switch).
#if !defined(__x86_64__) && !defined(MR_SIM_USE_UCONTEXT)
#define MR_SIM_USE_UCONTEXT 1
#endif
#ifdef MR_SIM_USE_UCONTEXT
#include <ucontext.h>
#endif

__thread const mr_sim::View* mr_sim_view = nullptr;

#ifndef MR_SIM_USE_UCONTEXT
// mr_sim_swap(save, load): push the System V callee-saved registers on the current stack,
// store rsp in *save, load rsp = load, pop the target's registers and `ret` into it. The
// caller-saved registers are dead across the call by the ABI, so this is a complete
// switch. MXCSR / x87 control words are not switched: nothing in a kernel changes them.
extern "C" void mr_sim_swap(void** save, void* load);
asm(R"(
    .text
    .p2align 4
    .globl mr_sim_swap
    .hidden mr_sim_swap
    .type mr_sim_swap, @function
mr_sim_swap:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size mr_sim_swap, .-mr_sim_swap
)");
#endif

extern "C" [[noreturn]] void mr_sim_fiber_start();

namespace mr_sim {
namespace {

// ---------------------------------------------------------------------------------------
// Stacks: mmap'd, a PROT_NONE guard page below, pooled per OS thread.

constexpr size_t kPage = 4096;
constexpr long kGuardBudget = 16384;       // guarded stacks per process (2 VMAs each)
constexpr size_t kCanaryWords = 32;        // checked on unguarded stacks
constexpr uint64_t kCanary = 0x6d7273696d5f5f21ull;

// vm.max_map_count is 65530 by default and a guarded stack costs 2 mappings; a big
// cooperative launch (25,600 threads) on several test threads would exhaust it. Beyond the
// budget stacks come without a guard page (adjacent anonymous mappings merge into one)
// and a canary at their low end, checked when the fiber is done with the stack.
std::atomic<long> g_guarded{0};

size_t stack_size() {
    static const size_t size = [] {
        size_t kb = MR_SIM_ASAN ? 128 : 64;  // ASan frames are larger (redzones)
        if (const char* e = getenv("MEMRNN_SIM_STACK_KB")) {
            const long v = atol(e);
            if (v >= 16) kb = (size_t)v;
        }
        return (kb * 1024 + kPage - 1) / kPage * kPage;
    }();
    return size;
}

// Stacks kept per OS thread between launches: enough for a 128-block x 256-thread
// cooperative launch, so repeated launches make no mmap / page-fault at all. Each used
// stack keeps ~4-8 KiB resident. MEMRNN_SIM_POOL_STACKS overrides.
size_t pool_cap() {
    static const size_t cap = [] {
        size_t n = 32768;
        if (const char* e = getenv("MEMRNN_SIM_POOL_STACKS")) n = (size_t)atol(e);
        return n;
    }();
    return cap;
}

struct Stack {
    char* map = nullptr;  // the mapping (guard page first when guarded)
    size_t map_len = 0;
    char* lo = nullptr;   // usable [lo, lo + size)
    size_t size = 0;
    bool guarded = false;
    bool dirty = false;   // ASan: abandoned mid-run, its whole shadow must be cleared
};

struct Pool {
    std::vector<Stack> free;
    ~Pool() {
        for (Stack& s : free) unmap(s);
    }
    static void unmap(Stack& s) {
        munmap(s.map, s.map_len);
        if (s.guarded) g_guarded.fetch_sub(1, std::memory_order_relaxed);
    }
};
thread_local Pool t_pool;

bool acquire_stack(Stack& out) {
    const size_t size = stack_size();
    if (!t_pool.free.empty() && t_pool.free.back().size == size) {
        out = t_pool.free.back();
        t_pool.free.pop_back();
        return true;
    }
    const bool guard = g_guarded.fetch_add(1, std::memory_order_relaxed) < kGuardBudget;
    if (!guard) g_guarded.fetch_sub(1, std::memory_order_relaxed);
    Stack s;
    s.map_len = size + (guard ? kPage : 0);
    void* p = mmap(nullptr, s.map_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        if (guard) g_guarded.fetch_sub(1, std::memory_order_relaxed);
        return false;
    }
    s.map = (char*)p;
    s.guarded = guard && mprotect(s.map, kPage, PROT_NONE) == 0;
    if (guard && !s.guarded) g_guarded.fetch_sub(1, std::memory_order_relaxed);
    s.lo = s.map + (guard ? kPage : 0);
    s.size = size;
    out = s;
    return true;
}

void arm_canary(Stack& s) {
    if (s.guarded) return;
    uint64_t* w = (uint64_t*)s.lo;
    for (size_t i = 0; i < kCanaryWords; ++i) w[i] = kCanary;
}

bool canary_intact(const Stack& s) {
    if (s.guarded) return true;
    const uint64_t* w = (const uint64_t*)s.lo;
    for (size_t i = 0; i < kCanaryWords; ++i)
        if (w[i] != kCanary) return false;
    return true;
}

void release_stack(Stack& s) {
    if (t_pool.free.size() < pool_cap() && s.size == stack_size()) {
        t_pool.free.push_back(s);
    } else {
        Pool::unmap(s);
    }
    s = Stack();
}

// Before a stack is reused under ASan, clear the poisoning the previous fiber left:
// redzones of frames that never returned (the exit path's own frames on a normal exit,
// every frame of an abandoned fiber).
void clean_shadow(Stack& s) {
#if MR_SIM_ASAN
    const size_t top = s.dirty ? s.size : (s.size < 16384 ? s.size : 16384);
    ASAN_UNPOISON_MEMORY_REGION(s.lo + (s.size - top), top);
    s.dirty = false;
#else
    (void)s;
#endif
}

// ---------------------------------------------------------------------------------------
// Fibers, warps, blocks.

// A resumable context: a fiber or the launching thread ("main").
struct Ctx {
#ifdef MR_SIM_USE_UCONTEXT
    ucontext_t uc;
#else
    void* sp = nullptr;
#endif
    // ASan fiber bookkeeping: the stack bounds to announce when switching to this context,
    // and its fake stack while it is switched out.
    const void* stack_lo = nullptr;
    size_t stack_size = 0;
    void* fake = nullptr;
};

enum class St : uint8_t { Ready, Running, WaitWarp, WaitBlock, WaitGrid, Done };

struct Block;
struct Warp;

// Hot fields first: warp_op and the switch touch only the first cache line or two, which
// matters with tens of thousands of fibers (a cooperative launch) cycling through the cache.
struct Fiber {
    Ctx ctx;
    Warp* warp = nullptr;
    Block* block = nullptr;
    uint32_t lane = 0;
    St st = St::Ready;
    // The barrier it waits at: for results and for messages.
    int op = 0, b = 0, width = 32;
    uint64_t result = 0;
    const char* file = "";
    int line = 0;
    View view;
    Stack stack;
};

struct Warp {
    uint32_t valid = 0;    // lanes that exist (a block's last warp may be partial)
    uint32_t exited = 0;
    // Warp ops in progress, one per distinct mask (independent thread scheduling, Volta+:
    // lanes not yet arrived at one op may run others, e.g. each half-warp shuffling with its
    // own 16-lane mask while the other half already waits in __syncwarp()). A lane arriving
    // with mask M joins the op in progress with mask M, or starts one. Ops that can never
    // complete (say, half the warp at mask 0xffffffff, half at 0xffff0000) end as a
    // deadlock report naming both.
    struct Op {
        uint32_t mask, arrived;
        int op;
    };
    uint32_t nops = 0;
    Op ops[32];  // at most 32: each has an arrived lane
    uint64_t slot[32];     // the values the arrived lanes posted
    Fiber* lane[32];
};

struct Block {
    uint3 idx{0, 0, 0};
    uint32_t n = 0;         // threads
    uint32_t live = 0;      // threads not exited
    uint32_t arrived = 0;   // threads waiting at the barrier
    int op = 0, acc = 0;    // barrier flavour and its running reduction
    const char* file = "";  // where the first arriver waits
    int line = 0;
    Fiber* first = nullptr;
    Fiber* fibers = nullptr;
    void* smem = nullptr;
};

struct Sched {
    bool active = false;
    const char* kernel = "?";
    MrSimEntry entry = nullptr;
    void* ectx = nullptr;
    bool cooperative = false;
    uint64_t nblocks = 0;
    uint64_t smem_bytes = 0;
    dim3 grid, block;

    Ctx main;
    Fiber* cur = nullptr;
    Ctx* came_from = nullptr;  // ASan: whose stack bounds finish_switch_fiber reports

    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    std::vector<Block> blocks;
    std::vector<Fiber*> q;  // ready ring buffer, capacity = fibers in the group
    size_t qh = 0, qn = 0;
    Fiber* group = nullptr;  // the fibers running together (a block, or the whole grid)
    size_t group_n = 0, done = 0;

    uint64_t grid_arrived = 0;
    Fiber* grid_exited = nullptr;  // first thread that exited (cooperative launches)

    bool failed = false;
    std::string error;

    void push(Fiber* f) {  // at the back: runs after every fiber already runnable
        f->st = St::Ready;
        size_t i = qh + qn++;
        q[i >= q.size() ? i - q.size() : i] = f;
    }
    void push_front(Fiber* f) {  // runs next
        f->st = St::Ready;
        qh = qh == 0 ? q.size() - 1 : qh - 1;
        ++qn;
        q[qh] = f;
    }
    Fiber* pop() {
        if (qn == 0) return nullptr;
        Fiber* f = q[qh];
        if (++qh == q.size()) qh = 0;
        --qn;
        return f;
    }
};

thread_local Sched t_sched_storage;
__thread Sched* t_sched = nullptr;  // hot-path access without the thread_local wrapper

// ---------------------------------------------------------------------------------------
// Switching.

#if MR_SIM_ASAN
void after_switch(Sched& s, void* fake) {
    const void* lo;
    size_t size;
    __sanitizer_finish_switch_fiber(fake, &lo, &size);
    if (s.came_from) {  // learn the bounds of the stack we came from (main's, the first time)
        s.came_from->stack_lo = lo;
        s.came_from->stack_size = size;
    }
}
#endif

// Switch from `from` to `to`. `dying`: `from` is never resumed (exited or abandoned), so
// ASan may free its fake stack.
inline void switch_ctx(Sched& s, Ctx* from, Ctx* to, bool dying) {
#if MR_SIM_ASAN
    s.came_from = from;
    __sanitizer_start_switch_fiber(dying ? nullptr : &from->fake, to->stack_lo, to->stack_size);
#else
    (void)s;
    (void)dying;
#endif
#ifdef MR_SIM_USE_UCONTEXT
    swapcontext(&from->uc, &to->uc);
#else
    mr_sim_swap(&from->sp, to->sp);
#endif
#if MR_SIM_ASAN
    after_switch(s, from->fake);
#endif
}

// Leave fiber f (already marked waiting or done) for the next runnable one, or for main.
inline void leave(Sched& s, Fiber* f, bool dying) {
    Fiber* n = s.pop();
#ifndef MR_SIM_USE_UCONTEXT
    // With thousands of fibers their stacks are cold: start loading the top of the stack of
    // the fiber that runs after `n` (its saved registers and the kernel frames above them),
    // so that its switch does not stall (measured: ~25% faster on a 32k-thread launch).
    // Small groups stay in cache: no prefetch.
    if (s.group_n > 512 && s.qn) {
        const char* sp = (const char*)s.q[s.qh]->ctx.sp;
        for (int i = 0; i < 512; i += 64) __builtin_prefetch(sp + i);
    }
#endif
    if (n) {
        n->st = St::Running;
        s.cur = n;
        mr_sim_view = &n->view;
        switch_ctx(s, &f->ctx, &n->ctx, dying);
    } else {
        s.cur = nullptr;
        switch_ctx(s, &f->ctx, &s.main, dying);
    }
    // Resumed: whoever switched here set s.cur = f and the view.
}

void init_ctx(Fiber& f) {
    Stack& st = f.stack;
    f.ctx.stack_lo = st.lo;
    f.ctx.stack_size = st.size;
    f.ctx.fake = nullptr;
#ifdef MR_SIM_USE_UCONTEXT
    getcontext(&f.ctx.uc);
    f.ctx.uc.uc_stack.ss_sp = st.lo;
    f.ctx.uc.uc_stack.ss_size = st.size;
    f.ctx.uc.uc_link = nullptr;
    makecontext(&f.ctx.uc, (void (*)())mr_sim_fiber_start, 0);
#else
    // The frame mr_sim_swap pops: six zero registers, then the "return address"
    // mr_sim_fiber_start, entered with rsp = top - 8 (== 8 mod 16, as after a call).
    void** sp = (void**)(st.lo + st.size);
    *--sp = nullptr;  // fake return address of mr_sim_fiber_start (never used)
    *--sp = (void*)&mr_sim_fiber_start;
    for (int i = 0; i < 6; ++i) *--sp = nullptr;  // r15 r14 r13 r12 rbx rbp (rbp = 0 ends
                                                  // frame-pointer unwinds here)
    f.ctx.sp = sp;
#endif
}

// ---------------------------------------------------------------------------------------
// Messages.

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

// A thread's name, in a trivially destructible value: the message of fail() is built on
// a fiber that never returns, so no temporary there may own heap memory (it would leak).
struct Name {
    char s[96];
};
Name who(const Fiber* f) {
    const View& v = f->view;
    Name n;
    snprintf(n.s, sizeof n.s, "block (%u,%u,%u) thread (%u,%u,%u)", v.block_idx.x, v.block_idx.y,
               v.block_idx.z, v.thread_idx.x, v.thread_idx.y, v.thread_idx.z);
    return n;
}

const char* op_name(int op) {
    switch (op) {
        case OP_SYNCWARP: return "__syncwarp";
        case OP_IDX: return "__shfl_sync";
        case OP_UP: return "__shfl_up_sync";
        case OP_DOWN: return "__shfl_down_sync";
        case OP_XOR: return "__shfl_xor_sync";
        case OP_BALLOT: return "__ballot_sync";
        case OP_ANY: return "__any_sync";
        case OP_ALL: return "__all_sync";
    }
    return "warp op";
}

const char* bar_name(int op) {
    switch (op) {
        case BAR_OR: return "__syncthreads_or";
        case BAR_AND: return "__syncthreads_and";
        case BAR_COUNT: return "__syncthreads_count";
    }
    return "__syncthreads";
}

uint32_t waiting_lanes(const Warp& w) {
    uint32_t a = 0;
    for (uint32_t i = 0; i < w.nops; ++i) a |= w.ops[i].arrived;
    return a;
}

// What a waiting fiber waits on, without naming it (deadlock reports group by this).
std::string waiting_on(const Fiber* f) {
    switch (f->st) {
        case St::WaitWarp: {
            const Warp* w = f->warp;
            uint32_t m = 0;
            for (uint32_t i = 0; i < w->nops; ++i)
                if (w->ops[i].arrived >> f->lane & 1u) m = w->ops[i].mask;
            return fmt("%s(mask 0x%08x) at %s:%d, lanes 0x%08x of its warp not arrived",
                       op_name(f->op), m, f->file, f->line, m & ~waiting_lanes(*w));
        }
        case St::WaitBlock: {
            const Block* b = f->block;
            return fmt("%s at %s:%d, %u of the block's %u live threads arrived", bar_name(f->op),
                       f->file, f->line, b->arrived, b->live);
        }
        case St::WaitGrid: return fmt("grid.sync() at %s:%d", f->file, f->line);
        default: return "(runnable)";
    }
}

// A kernel bug in the running fiber: record the message, abandon the fiber (its stack is
// reclaimed by the launch), return to main. Never returns.
[[noreturn]] void fail(Sched& s, const char* format, ...) __attribute__((format(printf, 2, 3)));
[[noreturn]] void fail(Sched& s, const char* format, ...) {
    char buf[2048];  // on the fiber's stack: nothing here may own heap memory
    va_list ap;
    va_start(ap, format);
    vsnprintf(buf, sizeof buf, format, ap);
    va_end(ap);
    s.failed = true;
    s.error.assign(buf);
    Fiber* f = s.cur;
    f->stack.dirty = true;
    s.cur = nullptr;
    switch_ctx(s, &f->ctx, &s.main, true);
    __builtin_unreachable();
}

// ---------------------------------------------------------------------------------------
// Barriers.

// Source lane of a shuffle, PTX shfl.sync's definition (CUDA's __shfl*_sync pass
// c = ((32 - width) << 8) | (up ? 0 : 0x1f)): segments of `width` lanes; a lane whose source
// falls outside [its segment start, its segment end] reads its own value. So xor may read
// an EARLIER segment (CUDA documents this), up never crosses below its segment start.
uint32_t shfl_src(int op, uint32_t lane, int b, int width) {
    const int c = ((32 - width) << 8) | (op == OP_UP ? 0 : 0x1f);
    const int seg = (c >> 8) & 0x1f, cval = c & 0x1f;
    const int l = (int)lane, bv = b & 0x1f;
    const int max_lane = (l & seg) | (cval & ~seg);
    const int min_lane = l & seg;
    int j = l;
    bool ok = false;
    switch (op) {
        case OP_UP: j = l - bv; ok = j >= max_lane; break;
        case OP_DOWN: j = l + bv; ok = j <= max_lane; break;
        case OP_XOR: j = l ^ bv; ok = j <= max_lane; break;
        case OP_IDX: j = min_lane | (bv & ~seg); ok = j <= max_lane; break;
    }
    return ok ? (uint32_t)j : lane;
}

// The last lane of a warp op arrived (it is `self`): give every lane its result, wake the
// others, reset the warp. Scheduling is warp-major: the woken lanes go to the FRONT of the
// ready queue (in lane order), so a warp runs through a chain of shuffles while its 32
// fibers' stacks are still in cache, instead of after every other runnable fiber of a
// cooperative launch (measured: several times faster at 128 blocks x 256 threads). Order
// is free: fibers switch only at barriers and never spin, so every order makes progress.
void complete_warp(Sched& s, Warp& w, Fiber* self, uint32_t k) {
    const uint32_t m = w.ops[k].mask;
    uint32_t ballot = 0;
    for (uint32_t r = m; r; r &= r - 1) {
        const int i = __builtin_ctz(r);
        if (w.slot[i]) ballot |= 1u << i;
    }
    for (uint32_t r = m; r; r &= r - 1) {
        const int i = __builtin_ctz(r);
        Fiber* g = w.lane[i];
        switch (g->op) {
            case OP_SYNCWARP: g->result = 0; break;
            case OP_BALLOT: g->result = ballot; break;
            case OP_ANY: g->result = ballot != 0; break;
            case OP_ALL: g->result = ballot == m; break;
            default: {
                const uint32_t j = shfl_src(g->op, (uint32_t)i, g->b, g->width);
                if (!((m >> j) & 1u))
                    fail(s, "kernel %s: %s at %s:%d: %s (lane %d) reads lane %u, which is "
                            "not in the mask 0x%08x (undefined on the GPU)",
                            s.kernel, op_name(g->op), g->file, g->line, who(g).s, i,
                            j, m);
                g->result = w.slot[j];
            }
        }
    }
    for (uint32_t r = m & ~(1u << self->lane); r;) {  // highest lane first: lane order at front
        const int i = 31 - __builtin_clz(r);
        r &= ~(1u << i);
        s.push_front(w.lane[i]);
    }
    w.ops[k] = w.ops[--w.nops];
}

void complete_block(Sched& s, Block& b) {
    const int r = b.acc;
    for (uint32_t i = 0; i < b.n; ++i) {
        Fiber* g = &b.fibers[i];
        if (g->st == St::WaitBlock) {
            g->result = (uint64_t)(int64_t)r;
            s.push(g);
        }
    }
    b.arrived = 0;
}

bool same_site(const char* f1, int l1, const char* f2, int l2) {
    return l1 == l2 && (f1 == f2 || strcmp(f1, f2) == 0);
}

// The fiber just returned from the kernel.
[[noreturn]] void fiber_exit(Sched& s, Fiber* f) {
    if (!canary_intact(f->stack))
        fail(s, "kernel %s: %s overflowed its %zu KiB stack (set MEMRNN_SIM_STACK_KB)",
                s.kernel, who(f).s, f->stack.size / 1024);
    Warp& w = *f->warp;
    const uint32_t bit = 1u << f->lane;
    for (uint32_t i = 0; i < w.nops; ++i) {
        if (!(w.ops[i].mask & bit)) continue;
        const uint32_t m = w.ops[i].mask;
        const Fiber* g = w.lane[__builtin_ctz(w.ops[i].arrived)];
        fail(s, "kernel %s: %s exited while %s waits for it in %s(mask 0x%08x) at %s:%d",
                s.kernel, who(f).s, who(g).s, op_name(g->op), m,
                g->file, g->line);
    }
    if (s.cooperative && s.grid_arrived) {
        const Fiber* g = nullptr;
        for (size_t i = 0; i < s.group_n && !g; ++i)
            if (s.group[i].st == St::WaitGrid) g = &s.group[i];
        fail(s, "kernel %s: grid sync that block (%u,%u,%u) skipped: its %s exited while "
                "%s waits at grid.sync() at %s:%d",
                s.kernel, f->view.block_idx.x, f->view.block_idx.y, f->view.block_idx.z,
                who(f).s, who(g).s, g->file, g->line);
    }
    if (!s.grid_exited) s.grid_exited = f;
    w.exited |= bit;
    f->st = St::Done;
    ++s.done;
    Block& b = *f->block;
    --b.live;
    // Exited threads count as arrived at __syncthreads (Volta and later).
    if (b.arrived && b.arrived == b.live) complete_block(s, b);
    leave(s, f, true);
    __builtin_unreachable();
}

}  // namespace

// ---------------------------------------------------------------------------------------
// The calls cuda_sim.h makes.

uint64_t warp_op(uint32_t mask, uint64_t value, int op, int b, int width, const char* file,
                 int line) {
    Sched& s = *t_sched;
    Fiber* f = s.cur;
    Warp& w = *f->warp;
    const uint32_t bit = 1u << f->lane;
    f->op = op;
    f->file = file;
    f->line = line;
    if (!(mask & bit))
        fail(s, "kernel %s: %s at %s:%d: %s (lane %u) is not in its own mask 0x%08x",
                s.kernel, op_name(op), file, line, who(f).s, f->lane, mask);
    if (mask & ~w.valid)
        fail(s, "kernel %s: %s(mask 0x%08x) at %s:%d by %s names lanes 0x%08x beyond the "
                "block's last (partial) warp",
                s.kernel, op_name(op), mask, file, line, who(f).s, mask & ~w.valid);
    if (mask & w.exited) {
        const Fiber* g = w.lane[__builtin_ctz(mask & w.exited)];
        fail(s, "kernel %s: %s(mask 0x%08x) at %s:%d by %s names %s (lane %u), which has "
                "exited",
                s.kernel, op_name(op), mask, file, line, who(f).s, who(g).s,
                g->lane);
    }
    if (op >= OP_IDX && op <= OP_XOR && (width < 1 || width > 32 || (width & (width - 1))))
        fail(s, "kernel %s: %s at %s:%d by %s: width %d is not a power of two in 1..32",
                s.kernel, op_name(op), file, line, who(f).s, width);
    uint32_t k = 0;
    while (k < w.nops && w.ops[k].mask != mask) ++k;
    if (k == w.nops) {
        w.ops[k] = Warp::Op{mask, 0, op};  // starts one
        ++w.nops;
    } else if (w.ops[k].op != op) {
        // Same mask, another instruction: PTX requires the same one (and qualifiers).
        const Fiber* g = w.lane[__builtin_ctz(w.ops[k].arrived)];
        fail(s, "kernel %s: divergent warp ops: %s waits in %s(mask 0x%08x) at %s:%d "
                "while %s arrives at %s(mask 0x%08x) at %s:%d",
                s.kernel, who(g).s, op_name(g->op), mask, g->file, g->line,
                who(f).s, op_name(op), mask, file, line);
    }
    f->b = b;
    f->width = width;
    w.slot[f->lane] = value;
    if ((w.ops[k].arrived |= bit) == mask) {
        complete_warp(s, w, f, k);
        return f->result;
    }
    f->st = St::WaitWarp;
    leave(s, f, false);
    return f->result;
}

int block_sync(int op, int pred, const char* file, int line) {
    Sched& s = *t_sched;
    Fiber* f = s.cur;
    Block& b = *f->block;
    f->op = op;
    f->file = file;
    f->line = line;
    if (b.arrived == 0) {
        b.op = op;
        b.file = file;
        b.line = line;
        b.first = f;
        b.acc = op == BAR_AND ? 1 : 0;
    } else if (b.op != op || !same_site(b.file, b.line, file, line)) {
        fail(s, "kernel %s: divergent __syncthreads: %s waits at %s (%s:%d) while %s "
                "arrives at %s (%s:%d)",
                s.kernel, who(b.first).s, bar_name(b.op), b.file, b.line,
                who(f).s, bar_name(op), file, line);
    }
    switch (op) {
        case BAR_OR: b.acc |= pred != 0; break;
        case BAR_AND: b.acc &= pred != 0; break;
        case BAR_COUNT: b.acc += pred != 0; break;
    }
    if (++b.arrived == b.live) {
        const int r = b.acc;
        complete_block(s, b);
        return r;
    }
    f->st = St::WaitBlock;
    leave(s, f, false);
    return (int)(int64_t)f->result;
}

void grid_sync(const char* file, int line) {
    Sched& s = *t_sched;
    Fiber* f = s.cur;
    f->file = file;
    f->line = line;
    if (!s.cooperative)
        fail(s, "kernel %s: grid.sync() at %s:%d by %s in a non-cooperative launch",
                s.kernel, file, line, who(f).s);
    if (s.grid_exited) {
        const Fiber* g = s.grid_exited;
        fail(s, "kernel %s: grid sync that block (%u,%u,%u) skipped: its %s exited before "
                "%s reached grid.sync() at %s:%d",
                s.kernel, g->view.block_idx.x, g->view.block_idx.y, g->view.block_idx.z,
                who(g).s, who(f).s, file, line);
    }
    if (++s.grid_arrived == s.group_n) {
        s.grid_arrived = 0;
        for (size_t i = 0; i < s.group_n; ++i)
            if (s.group[i].st == St::WaitGrid) s.push(&s.group[i]);
        return;
    }
    f->st = St::WaitGrid;
    leave(s, f, false);
}

bool grid_is_cooperative() {
    Sched* s = t_sched;
    return s && s->active && s->cooperative;
}

void* dynamic_shared() {
    Sched* s = t_sched;
    return s && s->cur ? s->cur->block->smem : nullptr;
}

void static_shared_check(const char* file, int line) {
    Sched* s = t_sched;
    if (!s || !s->cur || !s->cooperative || s->nblocks <= 1) return;
    fail(*s, "kernel %s: static __shared__ at %s:%d in a cooperative launch of %llu blocks: "
             "the simulator keeps one copy per OS thread, which the blocks running "
             "together would share; use MR_DYNAMIC_SHARED",
             s->kernel, file, line, (unsigned long long)s->nblocks);
}

void trap(const char* what, const char* file, int line) {
    Sched* s = t_sched;
    if (!s || !s->cur) abort();
    fail(*s, "kernel %s: %s at %s:%d by %s", s->kernel, what, file, line,
             who(s->cur).s);
}

}  // namespace mr_sim

// First code a fiber runs (entered by `ret` from mr_sim_swap, or by makecontext).
extern "C" void mr_sim_fiber_start() {
    using namespace mr_sim;
    Sched& s = *t_sched;
#if MR_SIM_ASAN
    after_switch(s, nullptr);
#endif
    Fiber* f = s.cur;
    s.entry(s.ectx);  // must not unwind (the Rust side calls the kernel without panicking)
    fiber_exit(s, f);
}

// ---------------------------------------------------------------------------------------
// The launch.

namespace mr_sim {
namespace {

// Deadlock: no fiber runnable, some not done. One line per distinct waiting condition.
std::string deadlock_message(Sched& s) {
    std::vector<std::string> keys;
    std::vector<const Fiber*> example;
    std::vector<size_t> count;
    for (size_t i = 0; i < s.group_n; ++i) {
        const Fiber* f = &s.group[i];
        if (f->st == St::Done) continue;
        const std::string k = waiting_on(f);
        size_t j = 0;
        while (j < keys.size() && keys[j] != k) ++j;
        if (j == keys.size()) {
            keys.push_back(k);
            example.push_back(f);
            count.push_back(0);
        }
        ++count[j];
    }
    std::string m = fmt("kernel %s: deadlock: %zu of %zu threads wait and none can run:",
                        s.kernel, s.group_n - s.done, s.group_n);
    for (size_t j = 0; j < keys.size() && j < 8; ++j)
        m += fmt(" [%zu thread(s), e.g. %s: %s]", count[j], who(example[j]).s,
                 keys[j].c_str());
    if (keys.size() > 8) m += fmt(" [... %zu more conditions]", keys.size() - 8);
    return m;
}

// Set up the fibers of blocks [b0, b0 + nb) (consecutive in s.fibers from index 0) and run
// them until they are all done, or deadlock, or a kernel bug. Returns false on error.
bool run_group(Sched& s, uint64_t b0, uint64_t nb) {
    const uint32_t nt = s.block.x * s.block.y * s.block.z;
    const uint32_t wpb = (nt + 31) / 32;
    s.group = s.fibers.data();
    s.group_n = (size_t)(nb * nt);
    s.done = 0;
    s.qh = s.qn = 0;
    s.grid_arrived = 0;
    s.grid_exited = nullptr;
    for (uint64_t bi = 0; bi < nb; ++bi) {
        const uint64_t lin = b0 + bi;
        Block& b = s.blocks[bi];
        b = Block();
        b.idx = uint3{(unsigned)(lin % s.grid.x), (unsigned)(lin / s.grid.x % s.grid.y),
                      (unsigned)(lin / s.grid.x / s.grid.y)};
        b.n = b.live = nt;
        b.fibers = &s.fibers[bi * nt];
        // Exactly smem_bytes (ASan's bounds), 16-byte aligned for float4 (posix_memalign:
        // plain malloc under ASan only promises 8).
        b.smem = nullptr;
        if (posix_memalign(&b.smem, 16, s.smem_bytes ? s.smem_bytes : 1) != 0) b.smem = nullptr;
        if (!b.smem) {
            s.error = fmt("kernel %s: cannot allocate %llu bytes of dynamic shared memory",
                          s.kernel, (unsigned long long)s.smem_bytes);
            for (uint64_t i = 0; i < bi; ++i) free(s.blocks[i].smem);
            return false;
        }
        // Quiet NaN everywhere (as f32 words; a tail of <4 bytes gets the low bytes).
        const uint32_t nan = 0x7fc00000u;
        unsigned char* p = (unsigned char*)b.smem;
        for (uint64_t o = 0; o < s.smem_bytes; o += 4)
            memcpy(p + o, &nan, s.smem_bytes - o < 4 ? s.smem_bytes - o : 4);
        for (uint32_t w = 0; w < wpb; ++w) {
            Warp& wp = s.warps[bi * wpb + w];
            const uint32_t lanes = nt - w * 32 < 32 ? nt - w * 32 : 32;
            wp.valid = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
            wp.exited = 0;
            wp.nops = 0;
        }
        for (uint32_t t = 0; t < nt; ++t) {
            Fiber& f = b.fibers[t];
            f.block = &b;
            f.warp = &s.warps[bi * wpb + t / 32];
            f.lane = t % 32;
            f.warp->lane[f.lane] = &f;
            f.view.thread_idx = uint3{t % s.block.x, t / s.block.x % s.block.y,
                                      t / s.block.x / s.block.y};
            f.view.block_idx = b.idx;
            f.view.block_dim = s.block;
            f.view.grid_dim = s.grid;
            f.op = 0;
            f.result = 0;
            f.file = "";
            f.line = 0;
            clean_shadow(f.stack);
            arm_canary(f.stack);
            init_ctx(f);
            s.push(&f);
        }
    }
    s.failed = false;
    Fiber* f = s.pop();
    f->st = St::Running;
    s.cur = f;
    mr_sim_view = &f->view;
    switch_ctx(s, &s.main, &f->ctx, false);
    // Back on main: done, deadlocked or failed.
    s.cur = nullptr;
    mr_sim_view = nullptr;
    bool ok = !s.failed;
    if (ok && s.done != s.group_n) {
        s.error = deadlock_message(s);
        ok = false;
    }
    for (uint64_t bi = 0; bi < nb; ++bi) {
        free(s.blocks[bi].smem);
        s.blocks[bi].smem = nullptr;
    }
    if (!ok)
        for (size_t i = 0; i < s.group_n; ++i)
            if (s.group[i].st != St::Done) s.group[i].stack.dirty = true;
    return ok;
}

int32_t report(const std::string& m, char* err, size_t err_len) {
    if (err && err_len) {
        const size_t n = m.size() < err_len - 1 ? m.size() : err_len - 1;
        memcpy(err, m.data(), n);
        err[n] = 0;
    }
    return 1;
}

}  // namespace
}  // namespace mr_sim

#if MR_SIM_ASAN
// ASan's report names the kernel's source line; this adds which simulated thread ran it.
static void asan_death_callback() {
    using namespace mr_sim;
    Sched* s = t_sched;
    if (s && s->active && s->cur)
        fprintf(stderr, "mr_sim: the report above comes from kernel %s, %s\n", s->kernel,
                who(s->cur).s);
}
#endif

extern "C" int32_t mr_sim_launch(const MrSimLaunch* launch, MrSimEntry entry, void* ctx,
                                 char* err, size_t err_len) {
    using namespace mr_sim;
    if (err && err_len) err[0] = 0;
#if MR_SIM_ASAN
    static const bool hooked = (__sanitizer_set_death_callback(asan_death_callback), true);
    (void)hooked;
#endif
    if (!launch || !entry) return report("mr_sim_launch: null launch or entry", err, err_len);
    if (!t_sched) t_sched = &t_sched_storage;
    Sched& s = *t_sched;
    const char* name = launch->kernel ? launch->kernel : "?";
    if (s.active)
        return report(fmt("kernel %s: mr_sim_launch called from inside a simulated kernel", name),
                      err, err_len);
    const MrSimDim3 g = launch->grid, bl = launch->block;
    const uint64_t nt = (uint64_t)bl.x * bl.y * bl.z;
    const uint64_t nb = (uint64_t)g.x * g.y * g.z;
    // CUDA's launch limits (cudaErrorInvalidConfiguration on the GPU).
    if (!g.x || !g.y || !g.z || !bl.x || !bl.y || !bl.z || nt > 1024 || bl.z > 64 ||
        g.x > 2147483647u || g.y > 65535 || g.z > 65535)
        return report(fmt("kernel %s: invalid launch configuration grid (%u,%u,%u) block "
                          "(%u,%u,%u)",
                          name, g.x, g.y, g.z, bl.x, bl.y, bl.z),
                      err, err_len);
    const bool coop = launch->cooperative != 0;
    const uint64_t per_group = coop ? nt * nb : nt;
    // Every thread of a cooperative launch lives at once, each with a stack.
    if (per_group > (1u << 20))
        return report(fmt("kernel %s: cooperative launch of %llu threads exceeds the "
                          "simulator's 2^20",
                          name, (unsigned long long)per_group),
                      err, err_len);
    if (launch->dynamic_shared_bytes > (1ull << 32))
        return report(fmt("kernel %s: %llu bytes of dynamic shared memory", name,
                          (unsigned long long)launch->dynamic_shared_bytes),
                      err, err_len);

    s.active = true;
    s.kernel = name;
    s.entry = entry;
    s.ectx = ctx;
    s.cooperative = coop;
    s.nblocks = nb;
    s.smem_bytes = launch->dynamic_shared_bytes;
    s.grid = dim3(g.x, g.y, g.z);
    s.block = dim3(bl.x, bl.y, bl.z);
    s.error.clear();
    const uint64_t groups_blocks = coop ? nb : 1;
    s.fibers.resize(per_group);
    s.warps.resize(groups_blocks * ((nt + 31) / 32));
    s.blocks.resize(groups_blocks);
    s.q.resize(per_group);
    bool ok = true;
    size_t got = 0;
    for (; got < per_group; ++got)
        if (!acquire_stack(s.fibers[got].stack)) break;
    if (got < per_group) {
        s.error = fmt("kernel %s: cannot map %llu fiber stacks (%s; vm.max_map_count?)", name,
                      (unsigned long long)per_group, strerror(errno));
        ok = false;
    }
    // A normal launch runs its blocks one after another on the same fibers' stacks.
    for (uint64_t b0 = 0; ok && b0 < nb; b0 += groups_blocks) ok = run_group(s, b0, groups_blocks);
    for (size_t i = 0; i < got; ++i) release_stack(s.fibers[i].stack);
    s.active = false;
    s.cur = nullptr;
    mr_sim_view = nullptr;
    if (!ok) return report(s.error, err, err_len);
    return 0;
}
