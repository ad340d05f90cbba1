// test_runtime.cpp — the OpenBLAS kernel decision of tensor/runtime.h, on made-up CPUs.
//
// coretype_to_set() is pure, so each case below describes a CPU and what OpenBLAS said
// about it, whatever machine the test runs on. The last tests look at this process.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "tensor/runtime.h"

using namespace copper;

namespace {

CpuFeatures avx512_cpu() {
  CpuFeatures f;
  f.avx512f = f.avx512bw = f.avx512dq = f.avx512vl = true;
  f.avx2 = f.fma = true;
  return f;
}
CpuFeatures avx2_cpu() {
  CpuFeatures f;
  f.avx2 = f.fma = true;
  return f;
}
CpuFeatures old_cpu() { return CpuFeatures{}; }  // SSE only

std::string str(const char* s) { return s ? s : "(leave alone)"; }

}  // namespace

TEST(Runtime, FallbackCoreOnAvx512CpuPicksSkylakeX) {
  // Debian's OpenBLAS 0.3.21 calls some AVX-512 Xeons "Prescott".
  EXPECT_EQ(str(coretype_to_set("Prescott", false, avx512_cpu())), "SkylakeX");
  EXPECT_EQ(str(coretype_to_set("Core2", false, avx512_cpu())), "SkylakeX");
  EXPECT_EQ(str(coretype_to_set("Nehalem", false, avx512_cpu())), "SkylakeX");
  EXPECT_EQ(str(coretype_to_set("prescott", false, avx512_cpu())), "SkylakeX");  // any case
}

TEST(Runtime, FallbackCoreOnAvx2CpuPicksHaswell) {
  EXPECT_EQ(str(coretype_to_set("Prescott", false, avx2_cpu())), "Haswell");
}

TEST(Runtime, UserValueIsRespected) {
  // OPENBLAS_CORETYPE set by the user (or by copper's own earlier re-exec): never override.
  EXPECT_EQ(coretype_to_set("Prescott", true, avx512_cpu()), nullptr);
  EXPECT_EQ(coretype_to_set("SkylakeX", true, avx512_cpu()), nullptr);
  EXPECT_EQ(coretype_to_set("Haswell", true, old_cpu()), nullptr);
}

TEST(Runtime, GoodDetectionIsLeftAlone) {
  EXPECT_EQ(coretype_to_set("SkylakeX", false, avx512_cpu()), nullptr);
  EXPECT_EQ(coretype_to_set("Haswell", false, avx2_cpu()), nullptr);
  EXPECT_EQ(coretype_to_set("Zen", false, avx2_cpu()), nullptr);
  // Cooperlake/SapphireRapids are better than SkylakeX, not fallbacks
  EXPECT_EQ(coretype_to_set("Cooperlake", false, avx512_cpu()), nullptr);
}

TEST(Runtime, NothingBetterOnAnOldCpu) {
  // A real Prescott-class CPU: the generic kernel is the right one.
  EXPECT_EQ(coretype_to_set("Prescott", false, old_cpu()), nullptr);
}

TEST(Runtime, UnknownDetectionIsLeftAlone) { EXPECT_EQ(coretype_to_set(nullptr, false, avx512_cpu()), nullptr); }

TEST(Runtime, FallbackList) {
  EXPECT_TRUE(is_fallback_core("Prescott"));
  EXPECT_TRUE(is_fallback_core("Katmai"));
  EXPECT_FALSE(is_fallback_core("SkylakeX"));
  EXPECT_FALSE(is_fallback_core(""));
}

TEST(Runtime, BestCoreNeedsAllFourAvx512Parts) {
  CpuFeatures f = avx512_cpu();
  f.avx512vl = false;  // e.g. Knights Landing: AVX-512F without VL/BW/DQ
  EXPECT_EQ(str(best_core_for(f)), "Haswell");
}

TEST(Runtime, OmpWaitPolicyPassiveByDefault) {
  EXPECT_EQ(str(omp_wait_policy_to_set(false, false, 2)), "passive");
  EXPECT_EQ(str(omp_wait_policy_to_set(false, false, 64)), "passive");
}

TEST(Runtime, OmpUserSettingIsRespected) {
  EXPECT_EQ(omp_wait_policy_to_set(true, false, 2), nullptr);   // OMP_WAIT_POLICY set
  EXPECT_EQ(omp_wait_policy_to_set(false, true, 2), nullptr);   // GOMP_SPINCOUNT set
  EXPECT_EQ(omp_wait_policy_to_set(true, true, 2), nullptr);
}

TEST(Runtime, OmpOneThreadNeedsNothing) { EXPECT_EQ(omp_wait_policy_to_set(false, false, 1), nullptr); }

// OpenBLAS's pthread workers poll briefly, unless the user chose, or no worker exists.
TEST(Runtime, BlasThreadTimeoutDecision) {
  EXPECT_EQ(str(blas_thread_timeout_to_set(false, true, 2)), "18");
  EXPECT_EQ(blas_thread_timeout_to_set(true, true, 2), nullptr);   // OPENBLAS_THREAD_TIMEOUT set
  EXPECT_EQ(blas_thread_timeout_to_set(false, false, 2), nullptr);  // an OpenMP or serial OpenBLAS
  EXPECT_EQ(blas_thread_timeout_to_set(false, true, 1), nullptr);   // one thread: no worker
}

TEST(Runtime, InfoOfThisProcess) {
  // test_main.cpp called runtime_init(); whatever this machine is, the report is coherent.
  RuntimeInfo r = runtime_info();
  EXPECT_FALSE(r.blas_core.empty());
  EXPECT_GE(r.blas_threads, 1);
  EXPECT_GE(r.omp_threads, 1);
  const char* env = std::getenv("OPENBLAS_CORETYPE");
  if (env == nullptr) {
    EXPECT_EQ(r.coretype_src, "detected");
    // Had OpenBLAS fallen back on a CPU with something better, runtime_init would have re-executed.
    EXPECT_EQ(coretype_to_set(r.blas_core.c_str(), false, detect_cpu_features()), nullptr) << r.blas_core;
  } else {
    EXPECT_TRUE(r.coretype_src == "user" || r.coretype_src == "auto") << r.coretype_src;
    EXPECT_EQ(r.coretype_env, env);
  }
  // test_main.cpp's runtime_init() re-executed with OMP_WAIT_POLICY=passive unless the
  // user chose a policy, turned re-exec off, or runs OpenMP on one thread.
  if (std::getenv("COPPER_NO_REEXEC") == nullptr && r.omp_threads > 1) {
    EXPECT_TRUE(r.omp_wait_src == "auto" || r.omp_wait_src == "user") << r.omp_wait_src;
    if (r.omp_wait_src == "auto") {
      EXPECT_EQ(r.omp_wait_policy, "passive");
    }
  }
  // Likewise OPENBLAS_THREAD_TIMEOUT, when OpenBLAS runs its own pthreads on more than one.
  if (std::getenv("COPPER_NO_REEXEC") == nullptr && r.blas_parallel == "pthreads" && r.blas_threads > 1) {
    EXPECT_TRUE(r.blas_timeout_src == "auto" || r.blas_timeout_src == "user") << r.blas_timeout_src;
    if (r.blas_timeout_src == "auto") {
      EXPECT_EQ(r.blas_thread_timeout, "18");
    }
  }
}
