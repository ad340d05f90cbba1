// device.cpp — GPUs, the current device, one stream per device, and what `copper info` shows.
#include <mutex>
#include <vector>

#include "cuda/check.h"
#include "cuda/cuda.h"
#include "cuda/device.h"
#include "tensor/error.h"
#include "tensor/profile.h"

#ifndef COPPER_CUDA_ARCHITECTURES
#define COPPER_CUDA_ARCHITECTURES "unknown"
#endif

namespace copper::cuda {

namespace {

// cudaGetDeviceCount's answer, asked once: it fails (rather than returning 0) when there is no
// driver or no GPU, and that error is the reason shown to the user.
struct Census {
  int count = 0;
  cudaError_t error = cudaSuccess;
};
const Census& census() {
  static const Census c = [] {
    Census r;
    r.error = cudaGetDeviceCount(&r.count);
    if (r.error != cudaSuccess) {
      r.count = 0;
      cudaGetLastError();
    }
    return r;
  }();
  return c;
}

}  // namespace

std::string version_string(int v) { return fmt::format("{}.{}", v / 1000, (v % 1000) / 10); }

int device_count() { return census().count; }

std::string no_device_reason() {
  const Census& c = census();
  if (c.error != cudaSuccess) {
    int driver = 0;
    cudaDriverGetVersion(&driver);
    if (driver == 0) return fmt::format("no NVIDIA driver is installed ({})", cudaGetErrorName(c.error));
    return fmt::format("{} ({})", cudaGetErrorName(c.error), cudaGetErrorString(c.error));
  }
  if (c.count == 0) return "cudaGetDeviceCount found 0 GPUs";
  return "";
}

SystemInfo system_info() {
  SystemInfo s;
  cudaDriverGetVersion(&s.driver_version);
  cudaRuntimeGetVersion(&s.runtime_version);
  s.built_architectures = COPPER_CUDA_ARCHITECTURES;
  s.error = no_device_reason();
  for (int i = 0; i < device_count(); ++i) {
    DeviceProperties d;
    d.index = i;
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
      cudaGetLastError();
      d.name = "(properties unavailable)";
    } else {
      d.name = p.name;
      d.major = p.major;
      d.minor = p.minor;
      d.multiprocessors = p.multiProcessorCount;
      d.total_bytes = int64_t(p.totalGlobalMem);
    }
    size_t free_b = 0, total_b = 0;
    {
      DeviceGuard g(i);
      if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) d.free_bytes = int64_t(free_b);
      else cudaGetLastError();
    }
    s.devices.push_back(d);
  }
  return s;
}

void check_device_index(int index) {
  const int n = device_count();
  if (n == 0)
    COPPER_THROW("cuda", "cuda:{} asked for, but no GPU is usable: {}. HINT: check `nvidia-smi` and "
                 "CUDA_VISIBLE_DEVICES, or run on cpu",
                 index, no_device_reason());
  COPPER_CHECK(index >= 0 && index < n, "cuda", "cuda:{} asked for, but {} GPU(s) are visible. HINT: use cuda:0 .. cuda:{}",
               index, n, n - 1);
}

DeviceGuard::DeviceGuard(int index) {
  check_device_index(index);
  COPPER_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != index) COPPER_CUDA_CHECK(cudaSetDevice(index));
  else previous_ = -1;  // nothing to restore
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) cudaSetDevice(previous_);  // a destructor must not throw; the next checked call reports
}

cudaStream_t stream(int index) {
  static std::mutex mu;
  static std::vector<cudaStream_t> streams;
  check_device_index(index);
  std::lock_guard<std::mutex> lock(mu);
  if (streams.empty()) streams.assign(size_t(device_count()), nullptr);
  if (!streams[size_t(index)]) {
    DeviceGuard g(index);
    // Non-blocking: the stream does not wait for work on the legacy default stream, which
    // copper never uses. Streams live until the process ends.
    COPPER_CUDA_CHECK(cudaStreamCreateWithFlags(&streams[size_t(index)], cudaStreamNonBlocking));
    // The profile's rows then time the kernels (each op waits for the GPU before and after;
    // an error is left for the next checked call to report).
    profile::set_device_wait([] { (void)cudaDeviceSynchronize(); });
  }
  return streams[size_t(index)];
}

}  // namespace copper::cuda
