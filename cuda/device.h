// device.h — the backend's per-GPU state: which device is current, its stream, its allocator.
//
// Every kernel of device i runs in one stream of device i (created on first use), so kernels
// of one device run in the order they were queued and a freed block can be reused by the next
// kernel without waiting. Host code that reads device memory waits on that stream first.
#pragma once
#include <cuda_runtime_api.h>

#include "tensor/storage.h"

namespace copper::cuda {

// Makes device `index` current for the scope (cudaSetDevice), restoring the previous one after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// Throws copper::Error (with a HINT) unless `index` names a visible GPU.
void check_device_index(int index);
// The stream all copper kernels of device `index` run in.
cudaStream_t stream(int index);
// The caching allocator of device `index` (cuda/allocator.cpp); registered with register_allocator.
Allocator& allocator(int index);
// "allocated 1.2 GiB, cached 300 MiB, reserved 1.5 GiB, peak 1.4 GiB" for device `index`, or "" if it has none.
std::string allocator_summary(int index);

}  // namespace copper::cuda
