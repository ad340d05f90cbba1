// check.h — every CUDA runtime and cuBLAS call goes through one of these macros.
//
//   COPPER_CUDA_CHECK(cudaMalloc(&p, n));
//   COPPER_CUBLAS_CHECK(cublasSgemm(...));
//   kernel<<<grid, block, 0, stream>>>(...);  COPPER_CUDA_LAUNCH_CHECK("softmax");
//
// A failure throws copper::Error naming the call, its file:line, the CUDA error and a HINT
// where one is known (no device, a driver older than the toolkit, a GPU architecture this
// binary was not built for, out of memory with the allocator's statistics). The header is
// free of the Tensor headers, so the kernels (*.cu) include it too.
#pragma once
#include <cuda_runtime_api.h>

namespace copper::cuda {

[[noreturn]] void fail_cuda(cudaError_t err, const char* call, const char* file, int line);
[[noreturn]] void fail_cublas(int status, const char* call, const char* file, int line);
// A kernel of `op` given an input it cannot take (a dtype, a rank): throws copper::Error.
[[noreturn]] void fail_unsupported(const char* op, const char* what);

}  // namespace copper::cuda

#define COPPER_CUDA_CHECK(call)                                                              \
  do {                                                                                       \
    const cudaError_t copper_err_ = (call);                                                  \
    if (copper_err_ != cudaSuccess) ::copper::cuda::fail_cuda(copper_err_, #call, __FILE__, __LINE__); \
  } while (0)

#define COPPER_CUBLAS_CHECK(call)                                                               \
  do {                                                                                          \
    const int copper_status_ = int(call);                                                       \
    if (copper_status_ != 0) ::copper::cuda::fail_cublas(copper_status_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: a launch error (bad configuration, no kernel image for this GPU)
// shows up here; an error inside the kernel shows up at the next synchronizing call.
#define COPPER_CUDA_LAUNCH_CHECK(kernel_name)                                                     \
  do {                                                                                            \
    const cudaError_t copper_err_ = cudaGetLastError();                                           \
    if (copper_err_ != cudaSuccess) ::copper::cuda::fail_cuda(copper_err_, "launch of " kernel_name, __FILE__, __LINE__); \
  } while (0)
