// runtime.cpp — see runtime.h for why this exists.
#include "tensor/runtime.h"

#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

namespace copper {

namespace {
constexpr const char* kGuard = "COPPER_CORETYPE_SET";

bool is_fallback_core(const std::string& core) {
  // OpenBLAS's generic x86-64 kernels; a modern CPU reported as one of these was misdetected.
  for (const char* slow : {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Barcelona", "Katmai"})
    if (core == slow) return true;
  return false;
}

const char* best_core_for_cpu() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return nullptr;
}
}  // namespace

void runtime_init(int /*argc*/, char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr || std::getenv(kGuard) != nullptr) return;
  const char* core = openblas_get_corename();
  if (!core || !is_fallback_core(core)) return;
  const char* best = best_core_for_cpu();
  if (!best) return;
  setenv("OPENBLAS_CORETYPE", best, 1);
  setenv(kGuard, "1", 1);
  execv("/proc/self/exe", argv);
  // exec failed (unusual /proc): carry on with the slow kernel, and say so.
  fmt::print(stderr, "copper: warning: OpenBLAS uses the slow '{}' kernel and re-exec failed ({}). HINT: run with OPENBLAS_CORETYPE={}\n",
             core, std::strerror(errno), best);
}

RuntimeInfo runtime_info() {
  RuntimeInfo r;
  const char* core = openblas_get_corename();
  r.blas_core = core ? core : "unknown";
  r.coretype_src = std::getenv(kGuard) ? "auto" : (std::getenv("OPENBLAS_CORETYPE") ? "user" : "detected");
  r.blas_threads = openblas_get_num_threads();
  r.omp_threads = omp_get_max_threads();
  __builtin_cpu_init();
  // __builtin_cpu_supports needs a literal, hence no loop
  auto add = [&](bool has, const char* name) {
    if (has) r.cpu_features += std::string(r.cpu_features.empty() ? "" : " ") + name;
  };
  add(__builtin_cpu_supports("avx512f"), "avx512f");
  add(__builtin_cpu_supports("avx512bw"), "avx512bw");
  add(__builtin_cpu_supports("avx2"), "avx2");
  add(__builtin_cpu_supports("fma"), "fma");
  return r;
}

}  // namespace copper
