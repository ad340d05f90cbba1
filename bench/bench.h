// bench.h — the benchmarks behind `copper bench` (examples/cli/cli_bench.cpp).
//
// A benchmark is a program that prints numbers: one JSON object per line, nothing is
// asserted. Every measurement is the median of several repetitions after a warm-up, and
// each copper number is printed beside a reference measured in the same run (raw
// cblas_sgemm for matmul, memcpy for elementwise), so a ratio survives a noisy machine
// better than an absolute number does.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tensor/storage.h"  // Device

namespace copper::bench {

struct Options {
  bool quick = false;      // smaller sizes and fewer repetitions (a smoke run, for tests)
  std::string filter;      // run only the benchmarks whose name contains this
  double budget_s = 0.4;   // target time per measurement (repetitions are sized to it)
};

// `copper bench ops`: matmul, elementwise, softmax, layer_norm, cumsum, ... as JSON lines.
void run_ops(const Options& opt, std::FILE* out);

struct TrainOptions {
  std::string config;            // a benchmark model file, e.g. ../shared/bench/lm-small.json
  std::vector<std::string> pes;  // position encodings, one JSON line each
  int steps = 8;                 // in all, the first 2 untimed (warm-up)
  int threads = 0;               // 0: as the environment says (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS)
  bool profile = false;          // print a per-op table (tensor/profile.h) of the timed steps to stderr
  Device device = kCPU;          // where the model trains (the sgemm reference runs there too)
  std::string dtype = "f32";     // precision of the products: f32 or bf16 (tensor/autocast.h), reference too
};

// `copper bench train`: steps of the benchmark model (bench/train.cpp), one JSON line per encoding.
void run_train(const TrainOptions& opt, std::FILE* out);

// The f32 FMA ceiling of `threads` threads (bench/peak.cpp): GFLOP/s of independent vector FMA
// chains on the widest vectors this build has, the fastest of a few runs; `unit` names them.
struct FmaPeak {
  double gflops = 0;
  const char* unit = "";
};
FmaPeak fma_peak(int threads);

// ---- timing helpers (bench/timing.cpp) ----

// Seconds for one call of f: `warmup` calls untimed, then repetitions until about
// `budget_s` has passed (at least min_reps, at most max_reps); returns the median.
struct Timing {
  double median_s = 0;
  double min_s = 0;
  int reps = 0;
};
template <class F>
Timing time_median(F&& f, double budget_s, int warmup = 2, int min_reps = 5, int max_reps = 200);

// Two functions timed in alternation (a, b, a, b, ...) so that a drift in machine load
// hits both alike; returns the two medians.
template <class A, class B>
std::pair<Timing, Timing> time_pair(A&& a, B&& b, double budget_s, int warmup = 2, int min_reps = 5,
                                    int max_reps = 200);

// Print one JSON object as one line and flush (so a long run shows progress).
void emit(std::FILE* out, const nlohmann::ordered_json& j);

// Minor page faults of this process so far (getrusage).
int64_t minor_faults();

// ---- template definitions ----

double median_of(std::vector<double> v);

template <class F>
Timing time_median(F&& f, double budget_s, int warmup, int min_reps, int max_reps) {
  using clock = std::chrono::steady_clock;
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> ts;
  const auto start = clock::now();
  while (int(ts.size()) < max_reps) {
    const auto t0 = clock::now();
    f();
    const auto t1 = clock::now();
    ts.push_back(std::chrono::duration<double>(t1 - t0).count());
    if (int(ts.size()) >= min_reps && std::chrono::duration<double>(t1 - start).count() >= budget_s) break;
  }
  Timing t;
  t.reps = int(ts.size());
  t.min_s = *std::min_element(ts.begin(), ts.end());
  t.median_s = median_of(std::move(ts));
  return t;
}

template <class A, class B>
std::pair<Timing, Timing> time_pair(A&& a, B&& b, double budget_s, int warmup, int min_reps, int max_reps) {
  using clock = std::chrono::steady_clock;
  for (int i = 0; i < warmup; ++i) {
    a();
    b();
  }
  std::vector<double> ta, tb;
  const auto start = clock::now();
  while (int(ta.size()) < max_reps) {
    auto t0 = clock::now();
    a();
    auto t1 = clock::now();
    b();
    auto t2 = clock::now();
    ta.push_back(std::chrono::duration<double>(t1 - t0).count());
    tb.push_back(std::chrono::duration<double>(t2 - t1).count());
    if (int(ta.size()) >= min_reps && std::chrono::duration<double>(t2 - start).count() >= budget_s) break;
  }
  std::pair<Timing, Timing> r;
  r.first.reps = r.second.reps = int(ta.size());
  r.first.min_s = *std::min_element(ta.begin(), ta.end());
  r.second.min_s = *std::min_element(tb.begin(), tb.end());
  r.first.median_s = median_of(std::move(ta));
  r.second.median_s = median_of(std::move(tb));
  return r;
}

}  // namespace copper::bench
