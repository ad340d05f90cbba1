// cublas_loader.cpp — see cublas_loader.h.
#include "cuda/cublas_loader.h"

#include <dlfcn.h>

#include <atomic>
#include <mutex>

#include "cuda/cuda.h"
#include "tensor/error.h"

#ifndef COPPER_CUBLAS_LIBRARY
#error "COPPER_CUBLAS_LIBRARY (libcublas.so.<CUDA major>) is set by cuda/CMakeLists.txt"
#endif

namespace copper::cuda::cublas {

namespace {

// The functions looked up, with the signatures cublas_api.h declares for them. (In C++ the
// header adds an inline overload of cublasGemmStridedBatchedEx taking the older compute
// type, so the types are spelled out rather than taken with decltype.)
struct Functions {
  cublasStatus_t (*create)(cublasHandle_t*) = nullptr;
  cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t) = nullptr;
  cublasStatus_t (*set_math_mode)(cublasHandle_t, cublasMath_t) = nullptr;
  cublasStatus_t (*gemm_strided_batched_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                            const void*, const void*, cudaDataType, int, long long, const void*,
                                            cudaDataType, int, long long, const void*, void*, cudaDataType, int,
                                            long long, int, cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
};

Functions table;
std::atomic<bool> opened{false};
std::mutex load_mutex;

template <class F>
void look_up(void* library, const char* symbol, F& out) {
  void* p = dlsym(library, symbol);
  if (!p) {
    const char* why = dlerror();
    COPPER_THROW("cublas", "{} has no function {}: {}. HINT: the library does not match the CUDA toolkit copper was "
                 "built with; rebuild, or put that toolkit's lib folder first in LD_LIBRARY_PATH",
                 COPPER_CUBLAS_LIBRARY, symbol, why ? why : "not found");
  }
  out = reinterpret_cast<F>(p);
}

const Functions& functions() {
  load();
  return table;
}

}  // namespace

const char* library_name() { return COPPER_CUBLAS_LIBRARY; }

void load() {
  if (opened.load(std::memory_order_acquire)) return;
  std::lock_guard<std::mutex> lock(load_mutex);
  if (opened.load(std::memory_order_relaxed)) return;
  void* library = dlopen(COPPER_CUBLAS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  if (!library) {
    const char* why = dlerror();
    COPPER_THROW("cublas", "cannot open {}, which GPU matrix products need: {}. HINT: install the CUDA toolkit's "
                 "cuBLAS, or add the folder that holds it to LD_LIBRARY_PATH",
                 COPPER_CUBLAS_LIBRARY, why ? why : "unknown error");
  }
  Functions f;
  look_up(library, "cublasCreate_v2", f.create);  // what cublas_v2.h maps cublasCreate to
  look_up(library, "cublasSetStream_v2", f.set_stream);
  look_up(library, "cublasSetMathMode", f.set_math_mode);
  look_up(library, "cublasGemmStridedBatchedEx", f.gemm_strided_batched_ex);
  table = f;  // the library stays open until the process ends
  opened.store(true, std::memory_order_release);
}

bool loaded() { return opened.load(std::memory_order_acquire); }

cublasStatus_t create(cublasHandle_t* handle) { return functions().create(handle); }

cublasStatus_t set_stream(cublasHandle_t handle, cudaStream_t stream) {
  return functions().set_stream(handle, stream);
}

cublasStatus_t set_math_mode(cublasHandle_t handle, cublasMath_t mode) {
  return functions().set_math_mode(handle, mode);
}

cublasStatus_t gemm_strided_batched_ex(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                       int m, int n, int k, const void* alpha, const void* A, cudaDataType Atype,
                                       int lda, long long strideA, const void* B, cudaDataType Btype, int ldb,
                                       long long strideB, const void* beta, void* C, cudaDataType Ctype, int ldc,
                                       long long strideC, int batchCount, cublasComputeType_t computeType,
                                       cublasGemmAlgo_t algo) {
  return functions().gemm_strided_batched_ex(handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B,
                                             Btype, ldb, strideB, beta, C, Ctype, ldc, strideC, batchCount,
                                             computeType, algo);
}

}  // namespace copper::cuda::cublas

namespace copper::cuda {

std::string cublas_library() { return cublas::library_name(); }

std::string cublas_error() {
  try {
    cublas::load();
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

}  // namespace copper::cuda
