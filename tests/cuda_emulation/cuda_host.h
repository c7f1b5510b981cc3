// CUDA on the host: what kernels/cuda/*.cu need to compile with g++ and run on the CPU.
//
// tests/cupy_standin.py compiles each .cu file with this header in front, after rewriting every
// pointer declaration `const T* __restrict__ x` into `dev_ptr<const T> x` and every
// `__shared__ T a[N]` into a static array behind a `dev_ptr<T> a`, and adds one extern "C"
// entry point per template instance. A launch runs every block of the grid, one after another,
// and every thread of each block:
//
//   - the threads of a block run on fibers, one after another; a thread that calls
//     __syncthreads() parks its fiber, and the barrier opens only when every thread of the block
//     that has not returned waits at it. Kernels without a barrier run all of a block's threads
//     on one fiber: a plain loop.
//   - every access through a dev_ptr (x[i], *p) is checked against the extent of the array it
//     points into; an access outside fails the launch with the kernel's name, the parameter,
//     the index and the extent. The access itself goes to a scratch value, so nothing is
//     corrupted; the block runs to its end and the launch stops there.
//   - signed integers wrap as on the GPU (the stand-in compiles with -fwrapv).
//
// Not emulated: threads of one block waiting at different __syncthreads() calls (undefined on a
// GPU; here the barrier opens when every live thread waits at any of them), blocks running at
// the same time (so races between blocks cannot show), warps (no __shfl*, no warp-synchronous
// code), dynamic shared memory, the GPU's rounding of expf/logf/powf (the host libm rounds
// differently, by an ulp or so).
#pragma once

#include <csetjmp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <ucontext.h>
#include <utility>
#include <vector>

// ---------------------------------------------------------------- the CUDA keywords

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static              // one copy per kernel instance, shared by a block's threads
#define __launch_bounds__(...)
#define __restrict__

struct uint3 { unsigned int x, y, z; };
struct dim3 { unsigned int x, y, z; };

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

// ---------------------------------------------------------------- math and bit casts

using std::exp; using std::log; using std::pow; using std::sqrt; using std::fabs;
using std::floor; using std::ceil; using std::tanh; using std::isnan; using std::isinf;
inline float __expf(float a) { return expf(a); }
inline float __logf(float a) { return logf(a); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float a) { return 1.0f / sqrtf(a); }
inline double rsqrt(double a) { return 1.0 / sqrt(a); }
template <typename A, typename B> inline auto min(A a, B b) { return b < a ? b : a; }
template <typename A, typename B> inline auto max(A a, B b) { return a < b ? b : a; }

template <typename To, typename From> inline To tn_bit_cast(From v)
{
    static_assert(sizeof(To) == sizeof(From), "bit cast between types of different sizes");
    To out;
    std::memcpy(&out, &v, sizeof out);
    return out;
}
inline float __int_as_float(int v) { return tn_bit_cast<float>(v); }
inline int __float_as_int(float v) { return tn_bit_cast<int>(v); }
inline double __longlong_as_double(long long v) { return tn_bit_cast<double>(v); }
inline long long __double_as_longlong(double v) { return tn_bit_cast<long long>(v); }

// The blocks run one at a time, so an atomic is a plain read-modify-write.
template <typename T> inline T atomicAdd(T* address, T value) { T old = *address; *address = old + value; return old; }
template <typename T> inline T atomicMax(T* address, T value) { T old = *address; if (old < value) *address = value; return old; }

// ---------------------------------------------------------------- the launch state

namespace tn_emu {

struct Launch {
    const char* kernel = "";
    char error[512] = "";             // the first failure of this launch
    long long errors = 0;             // how many accesses failed
};
inline Launch launch_state;

template <typename... Args> inline void fail(const char* format, Args... args)
{
    if (launch_state.errors++ == 0)
        std::snprintf(launch_state.error, sizeof launch_state.error, format, args...);
}

// ---------------------------------------------------------------- checked pointers

// A pointer into one array: `base` and `count` are the array's extent, `at` where this
// pointer points (pointer arithmetic may leave the extent, as in C; only an access is checked).
template <typename T> class dev_ptr {
    template <typename U> friend class dev_ptr;
    T* base_ = nullptr;
    long long count_ = 0, at_ = 0;
    int param_ = -1;                  // which kernel parameter it came from (-1: shared memory)
    static inline std::remove_const_t<T> scratch_{};

    T& access(long long i) const
    {
        const long long k = at_ + i;
        if (k < 0 || k >= count_) {
            if (param_ >= 0)
                fail("%s: parameter %d read or written at element %lld of an array of %lld (thread (%u,%u,%u) of block (%u,%u,%u))",
                     launch_state.kernel, param_, k, count_, threadIdx.x, threadIdx.y, threadIdx.z,
                     blockIdx.x, blockIdx.y, blockIdx.z);
            else
                fail("%s: __shared__ array read or written at element %lld of %lld (thread (%u,%u,%u) of block (%u,%u,%u))",
                     launch_state.kernel, k, count_, threadIdx.x, threadIdx.y, threadIdx.z,
                     blockIdx.x, blockIdx.y, blockIdx.z);
            scratch_ = {};
            return scratch_;
        }
        return base_[k];
    }

public:
    dev_ptr() = default;
    dev_ptr(T* base, long long count, int param) : base_(base), count_(count), param_(param) {}
    template <std::size_t N> dev_ptr(T (&array)[N]) : base_(array), count_(N) {}   // __shared__ T a[N]
    template <typename U, typename = std::enable_if_t<std::is_convertible_v<U*, T*>>>
    dev_ptr(const dev_ptr<U>& o) : base_(o.base_), count_(o.count_), at_(o.at_), param_(o.param_) {}

    template <typename N> T& operator[](N i) const { return access(static_cast<long long>(i)); }
    T& operator*() const { return access(0); }
    T* operator->() const { return &access(0); }
    template <typename N> dev_ptr operator+(N n) const { dev_ptr p = *this; p.at_ += static_cast<long long>(n); return p; }
    template <typename N> dev_ptr operator-(N n) const { dev_ptr p = *this; p.at_ -= static_cast<long long>(n); return p; }
    template <typename N> dev_ptr& operator+=(N n) { at_ += static_cast<long long>(n); return *this; }
    template <typename N> dev_ptr& operator-=(N n) { at_ -= static_cast<long long>(n); return *this; }
    dev_ptr& operator++() { ++at_; return *this; }
    dev_ptr& operator--() { --at_; return *this; }
    long long operator-(const dev_ptr& o) const { return at_ - o.at_; }
    bool operator==(const dev_ptr& o) const { return base_ == o.base_ && at_ == o.at_; }
    bool operator!=(const dev_ptr& o) const { return !(*this == o); }
    bool operator<(const dev_ptr& o) const { return at_ < o.at_; }
};
template <typename N, typename T> dev_ptr<T> operator+(N n, const dev_ptr<T>& p) { return p + n; }

// ---------------------------------------------------------------- the block scheduler

// A block's threads run on fibers. A fiber takes the next thread that has not started, runs it
// to its end and takes the next; only a thread that waits at __syncthreads() makes the
// scheduler hand the threads still to run to another fiber. Fibers live as long as the process
// and serve every block of every launch. A fiber starts once through ucontext; after that every
// switch is _setjmp/_longjmp between the fiber's stack and the scheduler's (no system call,
// unlike swapcontext, which saves the signal mask: a block of 256 threads that meet at 10
// barriers switches 2,500 times).
constexpr std::size_t kStack = 256 * 1024;

struct Fiber {
    ucontext_t start;                 // used once, to enter fiber_main on this stack
    jmp_buf resume;                   // where the fiber continues when the scheduler hands it work
    std::vector<char> stack = std::vector<char>(kStack);
    unsigned thread = 0;              // the thread it is running (flat index in the block)
    bool waiting = false;             // parked at __syncthreads()
};

struct Block {
    jmp_buf scheduler;                // where a fiber returns to when it parks or runs out of threads
    ucontext_t scheduler_context;     // only for the first entry of each fiber
    std::vector<Fiber*> fibers;       // the pool, reused by every block and launch
    std::size_t live = 0;             // fibers in use by this block
    unsigned next_thread = 0, threads = 0;
    Fiber* current = nullptr;
    void (*body)(void*) = nullptr;    // runs the kernel for the current thread
    void* closure = nullptr;
};
inline Block block;

inline void set_thread(unsigned t)
{
    threadIdx.x = t % blockDim.x;
    threadIdx.y = (t / blockDim.x) % blockDim.y;
    threadIdx.z = t / (blockDim.x * blockDim.y);
}

// From a fiber: back to the scheduler, to continue here when the scheduler says so.
inline void park(Fiber* self)
{
    if (!_setjmp(self->resume)) _longjmp(block.scheduler, 1);
    block.current = self;
    set_thread(self->thread);
}

inline void fiber_main()
{
    Fiber* self = block.current;
    for (;;) {                        // each pass serves one block
        while (block.next_thread < block.threads) {
            self->thread = block.next_thread++;
            set_thread(self->thread);
            block.body(block.closure);
        }
        park(self);                   // no threads left: idle until the next block needs it
    }
}

// From the scheduler: run fiber f until it parks.
inline void resume(Fiber* f)
{
    block.current = f;
    if (!_setjmp(block.scheduler)) _longjmp(f->resume, 1);
}

inline void start_fiber()
{
    if (block.live == block.fibers.size()) {          // a new fiber: enter fiber_main once
        Fiber* f = new Fiber();
        block.fibers.push_back(f);
        getcontext(&f->start);
        f->start.uc_stack.ss_sp = f->stack.data();
        f->start.uc_stack.ss_size = f->stack.size();
        f->start.uc_link = nullptr;                   // fiber_main never returns
        makecontext(&f->start, fiber_main, 0);
        block.live++;
        block.current = f;
        if (!_setjmp(block.scheduler)) swapcontext(&block.scheduler_context, &f->start);
        return;
    }
    resume(block.fibers[block.live++]);               // an idle fiber takes the next threads
}

inline void run_block()
{
    block.live = 0;
    block.next_thread = 0;
    block.threads = blockDim.x * blockDim.y * blockDim.z;
    for (;;) {
        if (block.next_thread < block.threads) {      // the first, or a fiber parked at a barrier
            start_fiber();
            continue;
        }
        // every thread has started; each live fiber has finished or waits at the barrier
        std::vector<Fiber*> waiting;
        for (std::size_t i = 0; i < block.live; ++i)
            if (block.fibers[i]->waiting) waiting.push_back(block.fibers[i]);
        if (waiting.empty()) return;
        for (Fiber* f : waiting) {                    // open the barrier, in thread order
            f->waiting = false;
            resume(f);
        }
    }
}

}  // namespace tn_emu

// All threads of the block meet here: park this thread's fiber until the scheduler opens it.
inline void __syncthreads()
{
    tn_emu::Fiber* self = tn_emu::block.current;
    self->waiting = true;
    tn_emu::park(self);
}

namespace tn_emu {

// ---------------------------------------------------------------- parameters and the launch

// The C type of a kernel parameter as the stand-in checks it: "const float*", "int", ...
template <typename T> struct type_name;
#define TN_TYPE_NAME(T) template <> struct type_name<T> { static constexpr const char* value = #T; };
TN_TYPE_NAME(float) TN_TYPE_NAME(double) TN_TYPE_NAME(int) TN_TYPE_NAME(unsigned int)
TN_TYPE_NAME(long long) TN_TYPE_NAME(unsigned long long) TN_TYPE_NAME(long) TN_TYPE_NAME(unsigned long)
TN_TYPE_NAME(short) TN_TYPE_NAME(unsigned short) TN_TYPE_NAME(char) TN_TYPE_NAME(signed char)
TN_TYPE_NAME(unsigned char) TN_TYPE_NAME(bool)
#undef TN_TYPE_NAME

template <typename P> struct param {                           // a scalar, passed by value
    static std::string name() { return type_name<P>::value; }
    static P make(void* arg, int) { P v; std::memcpy(&v, arg, sizeof v); return v; }
};
template <typename T> struct param<dev_ptr<T>> {              // an array: (address, bytes)
    static std::string name()
    {
        return std::string(std::is_const_v<T> ? "const " : "") + type_name<std::remove_const_t<T>>::value + "*";
    }
    static dev_ptr<T> make(void* arg, int index)
    {
        struct { void* address; long long bytes; } buffer;
        std::memcpy(&buffer, arg, sizeof buffer);
        return dev_ptr<T>(static_cast<T*>(buffer.address), buffer.bytes / (long long)sizeof(T), index);
    }
};

// "const float*;float*;int": the kernel's parameter types, for the stand-in's argument checks.
template <typename... P> std::string param_names(void (*)(P...))
{
    std::string out;
    ((out += (out.empty() ? "" : ";") + param<P>::name()), ...);
    return out;
}

template <typename... P, std::size_t... I>
std::tuple<P...> make_params(void** args, std::index_sequence<I...>)
{
    return std::tuple<P...>(param<P>::make(args[I], (int)I)...);
}

// Runs kernel<<<grid, block>>>(args): every block in (z, y, x) order, every thread of each.
// Returns the number of failed accesses; the first failure's text goes to `error`.
template <typename... P>
long long launch(void (*kernel)(P...), const char* name, const unsigned* grid, const unsigned* threads,
                 void** args, char* error, int error_size)
{
    launch_state = Launch();
    launch_state.kernel = name;
    std::tuple<P...> params = make_params<P...>(args, std::index_sequence_for<P...>{});
    struct Closure { void (*kernel)(P...); std::tuple<P...>* params; } closure{kernel, &params};
    block.closure = &closure;
    block.body = [](void* c) {
        auto* k = static_cast<Closure*>(c);
        std::apply(k->kernel, *k->params);      // each thread gets its own copy of the arguments
    };
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {threads[0], threads[1], threads[2]};
    for (unsigned z = 0; z < gridDim.z && !launch_state.errors; ++z)
        for (unsigned y = 0; y < gridDim.y && !launch_state.errors; ++y)
            for (unsigned x = 0; x < gridDim.x && !launch_state.errors; ++x) {
                blockIdx = {x, y, z};
                run_block();
            }
    std::snprintf(error, error_size, "%s", launch_state.error);
    return launch_state.errors;
}

}  // namespace tn_emu

using tn_emu::dev_ptr;
