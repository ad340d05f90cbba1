// runtime.h — process start-up: pick the right OpenBLAS kernel, report what is in use.
//
// Debian's OpenBLAS 0.3.21 does not recognise recent AVX-512 Xeons and falls back to
// its "Prescott" kernel, about 6x slower. OpenBLAS reads OPENBLAS_CORETYPE once, when
// the library loads (before main), so setting it later is too late. runtime_init()
// therefore asks OpenBLAS which kernel it chose; if it is a fallback on a CPU that has
// AVX-512 (or AVX2), it sets OPENBLAS_CORETYPE and re-executes the program, once.
// A value the user set is always respected. Every copper program calls it first.
#pragma once
#include <string>

namespace copper {

void runtime_init(int argc, char** argv);

struct RuntimeInfo {
  std::string blas_core;     // the kernel OpenBLAS runs, e.g. "SkylakeX"
  std::string coretype_src;  // "user" (OPENBLAS_CORETYPE was set), "auto" (copper set it) or "detected"
  int blas_threads = 1;
  int omp_threads = 1;
  std::string cpu_features;  // "avx512f avx2 fma" ...
};
RuntimeInfo runtime_info();

}  // namespace copper
