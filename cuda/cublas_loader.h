// cublas_loader.h — cuBLAS, opened when the first GPU product needs it.
//
// Linking libcublas (and through it libcublasLt, 540 MB on disk) would put about 150 MB into
// the resident memory of every copper process, on a GPU or not: the loader writes the
// libraries' large data sections as it maps them. So copper_cuda does not link cuBLAS. The
// first call below opens it with dlopen (the library the toolkit names for its major
// version, found as the dynamic loader finds any library: the program's run path,
// LD_LIBRARY_PATH, the system's list) and looks up the functions gemm.cpp calls; a process
// that never multiplies on a GPU never maps it. The functions have the signatures of the
// cuBLAS functions they stand for, so COPPER_CUBLAS_CHECK wraps them as before.
#pragma once
#include <cublas_v2.h>

namespace copper::cuda::cublas {

cublasStatus_t create(cublasHandle_t* handle);
cublasStatus_t set_stream(cublasHandle_t handle, cudaStream_t stream);
cublasStatus_t set_math_mode(cublasHandle_t handle, cublasMath_t mode);
cublasStatus_t gemm_strided_batched_ex(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                       int m, int n, int k, const void* alpha, const void* A, cudaDataType Atype,
                                       int lda, long long strideA, const void* B, cudaDataType Btype, int ldb,
                                       long long strideB, const void* beta, void* C, cudaDataType Ctype, int ldc,
                                       long long strideC, int batchCount, cublasComputeType_t computeType,
                                       cublasGemmAlgo_t algo);

// Opens cuBLAS and looks up its functions, if not done yet (the calls above do it
// themselves). Throws copper::Error, naming the library and the loader's message, when the
// library or one of the functions cannot be found.
void load();
// Whether this process has opened cuBLAS (tests check that CPU work never does).
bool loaded();
// The file name dlopen is given: libcublas.so.<the toolkit's major version>.
const char* library_name();

}  // namespace copper::cuda::cublas
