// peak.cpp — the CPU's f32 FMA ceiling: what no product can beat.
//
// Each thread runs chains of independent fused multiply-adds on the widest vectors this build
// has, more of them than the FMA units can have in flight (at most 8 on the cores this project
// runs on: two units, 4 cycles of latency), so that no chain waits on its own last result; 12
// fit in AVX2's 16 registers too. Nothing is loaded or stored in the loop. The rate it reaches
// is the machine's peak FLOP/s for those threads, clock boost and any shared core included;
// `copper bench train` prints it beside the step's rate (peak_fraction) and the BLAS
// reference (mfu).
#include <omp.h>

#include <chrono>
#include <cmath>

#include "bench/bench.h"
#include "tensor/cpu/gemm_tile.h"

namespace copper::bench {

namespace {

constexpr int kChains = 12;               // independent accumulators per thread
constexpr int64_t kIterations = 1 << 21;  // of kChains FMAs each: 8 ms a thread at 100 GFLOP/s on AVX-512
constexpr int kRepeats = 3;               // the fastest of these counts (a shared VM has slow moments)

// The vectors of this build: the register tile's (tensor/cpu/gemm_tile.h) on AVX-512 and AVX2,
// whose operations the chains use, or single floats.
#if defined(__AVX512F__) || defined(__AVX2__)
using Ops = cpu::gemm_tile::Vec;
const char* const kUnit = Ops::kLanes == 16 ? "avx512 fma" : "avx2 fma";
#else
// No vector FMA in this build: scalar fmaf chains, which the compiler may or may not turn into
// vector code; the number is then the rate of this build, not of the machine.
struct Ops {
  using V = float;
  static constexpr int kLanes = 1;
  static V all(float x) { return x; }
  static V fma(V a, V b, V c) { return std::fma(a, b, c); }
  static V add(V a, V b) { return a + b; }
  static void store(float* p, V x) { *p = x; }
};
const char* const kUnit = "scalar fma";
#endif

// kIterations rounds of kChains FMAs; returns a value that depends on all of them, so that the
// compiler keeps the work.
float chains() {
  Ops::V acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = Ops::all(1e-3f * float(i));
  const Ops::V scale = Ops::all(0.999999f), shift = Ops::all(1e-7f);
  for (int64_t it = 0; it < kIterations; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = Ops::fma(acc[i], scale, shift);
  Ops::V total = acc[0];
  for (int i = 1; i < kChains; ++i) total = Ops::add(total, acc[i]);
  float lanes[Ops::kLanes];
  Ops::store(lanes, total);
  float sum = 0;
  for (float x : lanes) sum += x;
  return sum;
}

}  // namespace

FmaPeak fma_peak(int threads) {
  using clock = std::chrono::steady_clock;
  const double flop_per_thread = 2.0 * Ops::kLanes * kChains * double(kIterations);
  double best_s = INFINITY;
  volatile float sink = 0;  // keeps every thread's result alive
  for (int r = 0; r < kRepeats; ++r) {
    const auto t0 = clock::now();
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    total += chains();
    best_s = std::min(best_s, std::chrono::duration<double>(clock::now() - t0).count());
    sink = sink + total;
  }
  return {flop_per_thread * threads / best_s / 1e9, kUnit};
}

}  // namespace copper::bench
