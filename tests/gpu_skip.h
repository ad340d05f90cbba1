// gpu_skip.h — what the GPU tests share: cuda:0, and skipping with one line of reason when no
// GPU can run them (no device, no driver, or a build without CUDA, where COPPER_HAS_CUDA is
// undefined). Header-only, so that test_cuda_standalone needs no test library.
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "tensor/tensor.h"

#ifdef COPPER_HAS_CUDA
#include "cuda/cuda.h"
#endif

namespace copper::test {

inline const Device kGPU{DeviceType::cuda, 0};

// Why GPU tests cannot run here, or "" when they can.
inline std::string no_gpu_reason() {
#ifdef COPPER_HAS_CUDA
  return cuda::no_device_reason();
#else
  return "this build has no CUDA backend (COPPER_CUDA=OFF or no toolkit)";
#endif
}

// The reason, printed once per test binary (ctest runs one test per process, so one line each).
inline std::string no_gpu_reason_printed_once() {
  static bool printed = false;
  const std::string reason = no_gpu_reason();
  if (!reason.empty() && !printed) fmt::print("no CUDA device: {}\n", reason);
  printed = true;
  return reason;
}

}  // namespace copper::test

#define SKIP_WITHOUT_GPU()                                                              \
  do {                                                                                  \
    const std::string reason_ = ::copper::test::no_gpu_reason_printed_once();           \
    if (!reason_.empty()) GTEST_SKIP() << "no CUDA device: " << reason_;                \
  } while (0)
