// profile.h — a per-op profile: where a training step spends its time.
//
// Off by default. `COPPER_PROFILE=1` in the environment turns it on when the program
// starts and prints the table to stderr when it exits; `profile::enable()` turns it on from
// code (`copper bench train --profile`, tests/test_profile.cpp).
//
// What is timed, and where:
//  - every kernel call through the Backend (tensor/backend.cpp wraps the CPU backend in a
//    timing decorator while profiling): one row per kernel, named after the op it computes
//    ("matmul", "add", "gelu_erf", "layer_norm", ...), with the FLOPs (matmul: 2·M·N·K) or
//    the bytes it must read and write once (everything else) for a GFLOP/s or GB/s column;
//  - every autograd node's backward closure (autograd/engine.cpp), one row per node name
//    ("matmul", "cope", ...). The kernels a closure calls add their FLOPs and bytes to the
//    node's row instead of getting rows of their own, so nothing is counted twice;
//  - any region wrapped in a `profile::Scope` (a fused op whose loops bypass the Backend
//    should open one, or its time is left in the "not in any row" remainder).
// Each row belongs to a phase: forward (the default), backward (set by the engine while
// it runs) or optimizer (set by a `PhaseScope` around the update).
//
// Cost when off: a `Scope` reads one global bool; backend_for() returns the plain backend.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace copper {
class Backend;
}

namespace copper::profile {

namespace detail {
extern bool g_on;  // written only by enable(); read on every Scope and kernel call
}

inline bool enabled() { return detail::g_on; }
// Turn the profiler on or off. Kernels called through a Backend reference obtained earlier
// keep their old (un)timed path; ops fetch backend_for() on every call, so that is none of them.
void enable(bool on);
// Forget every row and restart the wall clock that shares are computed against.
void reset();
// A backend whose kernels run asynchronously (the CUDA one) registers how to wait for them.
// While profiling, each outermost Scope then waits before it starts and before it stops, so
// that a row holds its own kernels' time rather than the time to queue them. nullptr: none.
using DeviceWait = void (*)();
void set_device_wait(DeviceWait wait);

enum class Phase { forward, backward, optimizer };
const char* phase_name(Phase p);

// Sets this thread's phase for its lifetime (the engine: backward; a training loop: optimizer).
class PhaseScope {
 public:
  explicit PhaseScope(Phase p);
  ~PhaseScope();
  PhaseScope(const PhaseScope&) = delete;
  PhaseScope& operator=(const PhaseScope&) = delete;

 private:
  Phase saved_;
};

// Times a named region as one row of the current phase. Kernels called inside add their
// FLOPs and bytes to this row and get no row of their own; a Scope inside a Scope is timed
// into the outer one only (the outermost region owns the time).
class Scope {
 public:
  explicit Scope(const char* name, double flops = 0, double bytes = 0) {
    if (detail::g_on) begin(name, flops, bytes);
  }
  ~Scope() {
    if (active_) end();
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  void begin(const char* name, double flops, double bytes);
  void end();
  bool active_ = false;
  bool outermost_ = false;
  const char* name_ = nullptr;
  double flops_ = 0, bytes_ = 0;
  int64_t t0_ns_ = 0;
};

// One line of the table.
struct Row {
  Phase phase = Phase::forward;
  std::string name;
  int64_t calls = 0;
  double seconds = 0;
  double flops = 0;  // 0 where not counted
  double bytes = 0;  // 0 where not counted
};

// The rows so far, forward first, then backward, then optimizer; each phase by time, largest first.
std::vector<Row> rows();
// Wall seconds since enable() or the last reset().
double wall_seconds();

// A training loop calls this once per optimizer step, so that the table printed at exit can
// divide by the steps taken. Counts from enable()/reset(); a no-op while profiling is off.
void count_step();
// The steps counted since enable() or the last reset().
int64_t counted_steps();

// Prints the table: calls, total ms, ms per step, share, GFLOP/s or GB/s; a subtotal per phase
// and a "not in any row" remainder. `total_s` is the time shares are taken of (0: the wall
// time since enable()/reset()); `steps` divides the per-step column (0: the steps counted by
// count_step(); with none counted, the column is left empty).
void report(std::FILE* out, double total_s = 0, int64_t steps = 0);

// A Backend that times every kernel of `inner` (as a Scope named after the kernel's op) and
// forwards the call. backend_for() hands it out while the profiler is on. Never freed.
Backend* timing_backend(Backend* inner);

}  // namespace copper::profile
