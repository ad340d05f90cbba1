// check.cpp — the messages behind COPPER_CUDA_CHECK and COPPER_CUBLAS_CHECK (cuda/check.h).
#include "cuda/check.h"

#include <cublas_api.h>

#include <string>

#include "cuda/cuda.h"
#include "cuda/device.h"
#include "tensor/error.h"

#ifndef COPPER_CUDA_ARCHITECTURES
#define COPPER_CUDA_ARCHITECTURES "unknown"
#endif

namespace copper::cuda {

namespace {

int current_device_or(int fallback) {
  int d = fallback;
  if (cudaGetDevice(&d) != cudaSuccess) return fallback;
  return d;
}

// What to do about err, or "" when there is nothing better to say than its name.
std::string hint_for(cudaError_t err) {
  switch (err) {
    case cudaErrorNoDevice:
      return "no GPU is visible to this process. HINT: check `nvidia-smi` and CUDA_VISIBLE_DEVICES, or run on cpu";
    case cudaErrorInsufficientDriver: {
      int driver = 0, runtime = 0;
      cudaDriverGetVersion(&driver);
      cudaRuntimeGetVersion(&runtime);
      if (driver == 0)
        return "no NVIDIA driver is installed or loaded. HINT: run on a machine with a GPU and its driver "
               "(`nvidia-smi` lists it), or on cpu";
      return fmt::format("the driver supports CUDA {} but copper was built with CUDA {}. HINT: update the NVIDIA "
                         "driver, or build copper with a toolkit no newer than the driver",
                         version_string(driver), version_string(runtime));
    }
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorInvalidDeviceFunction:
    case cudaErrorUnsupportedPtxVersion: {
      cudaDeviceProp p{};
      const int d = current_device_or(0);
      const bool known = cudaGetDeviceProperties(&p, d) == cudaSuccess;
      return fmt::format("this binary has GPU code for {} only, and cuda:{} is sm_{}{}. HINT: rebuild with "
                         "-DCMAKE_CUDA_ARCHITECTURES={}{} (or \"native\")",
                         COPPER_CUDA_ARCHITECTURES, d, known ? p.major : 0, known ? p.minor : 0, known ? p.major : 0,
                         known ? p.minor : 0);
    }
    case cudaErrorMemoryAllocation: {
      const int d = current_device_or(0);
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      return fmt::format("out of memory on cuda:{} ({} free of {} MiB; copper: {}). HINT: a smaller batch or context, "
                         "or free tensors before the next step",
                         d, free_b >> 20, total_b >> 20, allocator_summary(d));
    }
    case cudaErrorInvalidDevice:
      return fmt::format("HINT: {} GPU(s) are visible; devices are cuda:0 .. cuda:{}", device_count(),
                         device_count() - 1);
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
      return "a kernel read or wrote memory it does not own; the GPU context is lost. HINT: rerun with "
             "CUDA_LAUNCH_BLOCKING=1 under compute-sanitizer to find the kernel";
    case cudaErrorLaunchOutOfResources:
      return "a kernel asked for more registers or shared memory than the GPU has. HINT: a bug in copper's launch "
             "configuration; report it with the shapes";
    default: return "";
  }
}

const char* cublas_status_name(int status) {
  switch (status) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
  }
}

std::string cublas_hint(int status) {
  switch (status) {
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "HINT: cuBLAS could not start: usually no GPU, a driver older than the toolkit, or no memory left";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "HINT: out of GPU memory for cuBLAS's workspace; a smaller batch, or free tensors first";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "HINT: a bug in copper's gemm arguments (leading dimensions, sizes); report it with the shapes";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "HINT: this GPU lacks a feature the call needs (e.g. bf16 tensor cores before sm_80)";
    default: return "";
  }
}

}  // namespace

[[noreturn]] void fail_cuda(cudaError_t err, const char* call, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so that the caller may go on after catching
  const std::string hint = hint_for(err);
  throw Error(fmt::format("[cuda] {} failed at {}:{}: {} ({}){}{}", call, file, line, cudaGetErrorName(err),
                          cudaGetErrorString(err), hint.empty() ? "" : ": ", hint));
}

[[noreturn]] void fail_cublas(int status, const char* call, const char* file, int line) {
  const std::string hint = cublas_hint(status);
  throw Error(fmt::format("[cublas] {} failed at {}:{}: {}{}{}", call, file, line, cublas_status_name(status),
                          hint.empty() ? "" : ". ", hint));
}

[[noreturn]] void fail_unsupported(const char* op, const char* what) {
  throw Error(fmt::format("[{}] the CUDA kernel does not take {}. HINT: convert with .to(DType::f32), or run this op "
                          "on cpu",
                          op, what));
}

}  // namespace copper::cuda
