// runtime.h — process start-up: settings the libraries read only when they load.
//
// OpenBLAS and libgomp (OpenMP) read their environment variables once, when they load
// (before main), so setting them from main is too late. runtime_init() therefore decides
// what the environment should hold, and if that differs from what the process started
// with, sets it and re-executes the program, once. Two settings:
//
//  1. OPENBLAS_CORETYPE. Debian's OpenBLAS 0.3.21 does not recognise some recent AVX-512
//     Xeons and falls back to its "Prescott" kernel, about 6x slower. If OpenBLAS reports
//     a fallback kernel on a CPU with AVX-512 (or AVX2), copper names the right one.
//  2. OMP_WAIT_POLICY=passive. OpenBLAS (pthreads build) and copper's OpenMP kernels
//     have separate thread pools. By default an OpenMP worker spins for a long while after
//     each parallel region (GOMP_SPINCOUNT 300000 pause loops: milliseconds on CPUs with
//     a slow `pause`), taking a core away from the OpenBLAS call that follows. On the
//     2-core reference machine a 512^3 matmul right after a large add ran 4x slower than
//     alone (docs/PERF.md, the "interleave" line of `copper bench ops`). Passive workers
//     sleep at once and cost a few microseconds to wake instead.
//  3. OPENBLAS_THREAD_TIMEOUT=18. The other side of the same fight: after a BLAS call,
//     OpenBLAS's pthread workers poll for the next one, calling sched_yield, for 2^28
//     cycles (about 0.1 s) before they sleep. A training step calls BLAS every few
//     milliseconds, so they never sleep, and the elementwise kernels between the products
//     (bias adds, GELU, the loss) share their cores with them (docs/PERF.md measures what
//     that costs on 2 cores). With 2^18 cycles (about 0.1 ms) a worker still catches
//     back-to-back products awake.
//
// A value the user set is always respected (OPENBLAS_CORETYPE; OMP_WAIT_POLICY or
// GOMP_SPINCOUNT; OPENBLAS_THREAD_TIMEOUT or GOTO_THREAD_TIMEOUT), and COPPER_NO_REEXEC=1
// turns the whole mechanism off. Every copper
// program calls runtime_init() first.
//
// The decisions are pure functions (coretype_to_set, omp_wait_policy_to_set,
// blas_thread_timeout_to_set) so that they
// can be tested on any machine (tests/test_runtime.cpp); runtime_init() only gathers
// their inputs and acts.
#pragma once
#include <string>

namespace copper {

void runtime_init(int argc, char** argv);

// The CPU features the kernel choice depends on.
struct CpuFeatures {
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx2 = false, fma = false;
};
CpuFeatures detect_cpu_features();  // of the CPU this process runs on

// True for OpenBLAS's generic x86-64 kernels ("Prescott", "Core2", ...): a modern CPU
// reported as one of these was misdetected. Case-insensitive.
bool is_fallback_core(const std::string& core);

// The OpenBLAS kernel that fits these features best: "SkylakeX" (AVX-512 F/BW/DQ/VL),
// "Haswell" (AVX2 + FMA), or nullptr if neither applies.
const char* best_core_for(const CpuFeatures& cpu);

// The start-up decision: the value to put in OPENBLAS_CORETYPE before re-executing, or
// nullptr to leave things as they are. Leaves things alone when the user set a value
// (user_set: OPENBLAS_CORETYPE was in the environment, or copper already re-executed),
// when the detected core is not a fallback, or when the CPU has nothing better.
// detected_core may be null (OpenBLAS did not say).
const char* coretype_to_set(const char* detected_core, bool user_set, const CpuFeatures& cpu);

// The start-up decision for OpenMP: "passive" to put in OMP_WAIT_POLICY, or nullptr to
// leave things alone (the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT, or OpenMP runs one
// thread, so no worker can spin).
const char* omp_wait_policy_to_set(bool user_set_wait_policy, bool user_set_spincount, int omp_threads);

// The start-up decision for OpenBLAS's workers: the value to put in OPENBLAS_THREAD_TIMEOUT
// (log2 of the cycles a worker polls before it sleeps), or nullptr to leave things alone (the
// user set it, OpenBLAS does not run its own pthreads, or it runs one thread).
const char* blas_thread_timeout_to_set(bool user_set, bool blas_pthreads, int blas_threads);

struct RuntimeInfo {
  std::string blas_core;     // the kernel OpenBLAS runs, e.g. "SkylakeX"
  std::string coretype_src;  // "user" (OPENBLAS_CORETYPE was set), "auto" (copper set it) or "detected"
  std::string coretype_env;  // the value of OPENBLAS_CORETYPE, empty if unset
  std::string blas_config;   // openblas_get_config(): version and build options
  std::string blas_parallel; // "sequential", "pthreads" or "openmp": OpenBLAS's own threading
  int blas_threads = 1;
  int omp_threads = 1;
  std::string omp_wait_policy;  // OMP_WAIT_POLICY as the process runs with it, "" if unset (spinning)
  std::string omp_wait_src;     // "user", "auto" (copper set it) or "default"
  std::string blas_thread_timeout;  // OPENBLAS_THREAD_TIMEOUT as the process runs with it, "" if unset (28)
  std::string blas_timeout_src;     // "user", "auto" (copper set it) or "default"
  std::string cpu_features;  // "avx512f avx512bw avx512dq avx512vl avx2 fma" ...
};
RuntimeInfo runtime_info();

}  // namespace copper
