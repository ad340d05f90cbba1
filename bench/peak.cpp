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

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

namespace copper::bench {

namespace {

constexpr int kChains = 12;               // independent accumulators per thread
constexpr int64_t kIterations = 1 << 21;  // of kChains FMAs each: 8 ms a thread at 100 GFLOP/s on AVX-512
constexpr int kRepeats = 3;               // the fastest of these counts (a shared VM has slow moments)

#if defined(__AVX512F__)
constexpr int kLanes = 16;
const char* const kUnit = "avx512 fma";
// kIterations rounds of kChains FMAs on 16 lanes; returns a value that depends on all of
// them, so that the compiler keeps the work.
float chains() {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(1e-3f * float(i));
  const __m512 scale = _mm512_set1_ps(0.999999f), shift = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < kIterations; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], scale, shift);
  __m512 total = acc[0];
  for (int i = 1; i < kChains; ++i) total = _mm512_add_ps(total, acc[i]);
  alignas(64) float lanes[16];  // (not _mm512_reduce_add_ps: GCC 12 warns inside it)
  _mm512_store_ps(lanes, total);
  float sum = 0;
  for (float x : lanes) sum += x;
  return sum;
}
#elif defined(__FMA__)
constexpr int kLanes = 8;
const char* const kUnit = "avx2 fma";
float chains() {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(1e-3f * float(i));
  const __m256 scale = _mm256_set1_ps(0.999999f), shift = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < kIterations; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], scale, shift);
  __m256 total = acc[0];
  for (int i = 1; i < kChains; ++i) total = _mm256_add_ps(total, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, total);
  float sum = 0;
  for (float x : lanes) sum += x;
  return sum;
}
#else
// No vector FMA in this build: scalar fmaf chains, which the compiler may or may not turn into
// vector code; the number is then the rate of this build, not of the machine.
constexpr int kLanes = 1;
const char* const kUnit = "scalar fma";
float chains() {
  float acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = 1e-3f * float(i);
  for (int64_t it = 0; it < kIterations; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = std::fma(acc[i], 0.999999f, 1e-7f);
  float sum = 0;
  for (float x : acc) sum += x;
  return sum;
}
#endif

}  // namespace

FmaPeak fma_peak(int threads) {
  using clock = std::chrono::steady_clock;
  const double flop_per_thread = 2.0 * kLanes * kChains * double(kIterations);
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
