// cuda.h — what the rest of copper may ask about the CUDA backend: which GPUs there are.
//
// Only built with COPPER_HAS_CUDA (cuda/CMakeLists.txt). Nothing here throws: without a GPU
// or a driver, device_count() is 0 and no_device_reason() says why. The kernels themselves
// are reached through backend_for(Device{DeviceType::cuda, i}) like any other backend.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace copper::cuda {

struct DeviceProperties {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;  // compute capability
  int multiprocessors = 0;
  int64_t total_bytes = 0, free_bytes = 0;
};

struct SystemInfo {
  int driver_version = 0;   // e.g. 12080 for 12.8; 0 when no driver is installed
  int runtime_version = 0;  // the CUDA runtime copper was built with
  std::string built_architectures;  // CMAKE_CUDA_ARCHITECTURES of this build, e.g. "80-real,90-real,90-virtual"
  std::string error;                // why no device is usable; empty when one is
  std::vector<DeviceProperties> devices;
};

SystemInfo system_info();
int device_count();               // usable GPUs, 0 when none
std::string no_device_reason();   // empty when device_count() > 0
// "12.8" from 12080
std::string version_string(int cuda_version);

// The cuBLAS library GPU products open at their first call (cublas_loader.h), and why it
// cannot be opened ("" when it can). The check opens it, which maps about 150 MB: for
// `copper info`, not for programs that only want to know whether there is a GPU.
std::string cublas_library();
std::string cublas_error();

}  // namespace copper::cuda
