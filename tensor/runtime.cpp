// runtime.cpp — see runtime.h for why this exists.
#include "tensor/runtime.h"

#include <cblas.h>
#include <omp.h>
#include <strings.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fmt/format.h>

namespace copper {

namespace {
// Markers copper leaves in the environment when it re-executes: kReexec stops a second
// re-exec whatever happens; the other two let runtime_info() say "auto" for what copper set.
constexpr const char* kReexec = "COPPER_REEXECUTED";
constexpr const char* kCoreSet = "COPPER_CORETYPE_SET";
constexpr const char* kWaitSet = "COPPER_OMP_WAIT_SET";
constexpr const char* kTimeoutSet = "COPPER_BLAS_TIMEOUT_SET";
// log2 of the cycles an OpenBLAS worker polls for work before it sleeps (runtime.h, 3.)
constexpr const char* kBlasThreadTimeout = "18";

bool env_set(const char* name) { return std::getenv(name) != nullptr; }
std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// Where one of the settings copper may make came from: "auto" when copper set it (its marker
// is in the environment), "user" when the variable or its alternate was set, else "default".
const char* setting_source(const char* marker, const char* var, const char* alternate) {
  if (env_set(marker)) return "auto";
  return env_set(var) || env_set(alternate) ? "user" : "default";
}
}  // namespace

CpuFeatures detect_cpu_features() {
  __builtin_cpu_init();
  CpuFeatures f;
  // __builtin_cpu_supports needs a string literal, hence one line each
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  return f;
}

bool is_fallback_core(const std::string& core) {
  for (const char* slow : {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Barcelona", "Katmai"})
    if (strcasecmp(core.c_str(), slow) == 0) return true;
  return false;
}

const char* best_core_for(const CpuFeatures& cpu) {
  if (cpu.avx512f && cpu.avx512bw && cpu.avx512dq && cpu.avx512vl) return "SkylakeX";
  if (cpu.avx2 && cpu.fma) return "Haswell";
  return nullptr;
}

const char* coretype_to_set(const char* detected_core, bool user_set, const CpuFeatures& cpu) {
  if (user_set) return nullptr;                                        // the user's word is final
  if (!detected_core || !is_fallback_core(detected_core)) return nullptr;  // detection looks right
  return best_core_for(cpu);                                           // may be nullptr: an old CPU
}

const char* omp_wait_policy_to_set(bool user_set_wait_policy, bool user_set_spincount, int omp_threads) {
  if (user_set_wait_policy || user_set_spincount) return nullptr;  // the user's word is final
  if (omp_threads <= 1) return nullptr;                             // no worker thread to spin
  return "passive";
}

const char* blas_thread_timeout_to_set(bool user_set, bool blas_pthreads, int blas_threads) {
  if (user_set) return nullptr;                            // the user's word is final
  if (!blas_pthreads || blas_threads <= 1) return nullptr;  // no worker of OpenBLAS's own polls
  return kBlasThreadTimeout;
}

void runtime_init(int /*argc*/, char** argv) {
  if (env_set(kReexec) || env_set("COPPER_NO_REEXEC")) return;
  const char* core = openblas_get_corename();
  const char* best = coretype_to_set(core, env_set("OPENBLAS_CORETYPE") || env_set(kCoreSet), detect_cpu_features());
  const char* wait =
      omp_wait_policy_to_set(env_set("OMP_WAIT_POLICY"), env_set("GOMP_SPINCOUNT"), omp_get_max_threads());
  const char* timeout =
      blas_thread_timeout_to_set(env_set("OPENBLAS_THREAD_TIMEOUT") || env_set("GOTO_THREAD_TIMEOUT"),
                                 openblas_get_parallel() == 1, openblas_get_num_threads());
  if (!best && !wait && !timeout) return;
  if (best) {
    setenv("OPENBLAS_CORETYPE", best, 1);
    setenv(kCoreSet, "1", 1);
  }
  if (wait) {
    setenv("OMP_WAIT_POLICY", wait, 1);
    setenv(kWaitSet, "1", 1);
  }
  if (timeout) {
    setenv("OPENBLAS_THREAD_TIMEOUT", timeout, 1);
    setenv(kTimeoutSet, "1", 1);
  }
  setenv(kReexec, "1", 1);
  execv("/proc/self/exe", argv);
  // exec failed (no /proc, binary replaced on disk): carry on as we are. Only the slow
  // BLAS kernel is worth a warning; the wait policy costs a little speed at worst.
  if (best)
    fmt::print(stderr,
               "copper: warning: OpenBLAS uses the slow '{}' kernel and re-exec failed ({}). HINT: run with OPENBLAS_CORETYPE={}\n",
               core, std::strerror(errno), best);
}

RuntimeInfo runtime_info() {
  RuntimeInfo r;
  const char* core = openblas_get_corename();
  r.blas_core = core ? core : "unknown";
  const char* env = std::getenv("OPENBLAS_CORETYPE");
  r.coretype_env = env ? env : "";
  r.coretype_src = env_set(kCoreSet) ? "auto" : (env ? "user" : "detected");
  r.omp_wait_policy = env_or_empty("OMP_WAIT_POLICY");
  r.omp_wait_src = setting_source(kWaitSet, "OMP_WAIT_POLICY", "GOMP_SPINCOUNT");
  r.blas_thread_timeout = env_or_empty("OPENBLAS_THREAD_TIMEOUT");
  r.blas_timeout_src = setting_source(kTimeoutSet, "OPENBLAS_THREAD_TIMEOUT", "GOTO_THREAD_TIMEOUT");
  const char* config = openblas_get_config();
  r.blas_config = config ? config : "";
  // trailing spaces in some builds' config string
  while (!r.blas_config.empty() && r.blas_config.back() == ' ') r.blas_config.pop_back();
  switch (openblas_get_parallel()) {
    case 0: r.blas_parallel = "sequential"; break;
    case 1: r.blas_parallel = "pthreads"; break;
    case 2: r.blas_parallel = "openmp"; break;
    default: r.blas_parallel = "unknown"; break;
  }
  r.blas_threads = openblas_get_num_threads();
  r.omp_threads = omp_get_max_threads();
  const CpuFeatures f = detect_cpu_features();
  auto add = [&](bool has, const char* name) {
    if (has) r.cpu_features += std::string(r.cpu_features.empty() ? "" : " ") + name;
  };
  add(f.avx512f, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512dq, "avx512dq");
  add(f.avx512vl, "avx512vl");
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  return r;
}

}  // namespace copper
