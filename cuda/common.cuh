// common.cuh — what the kernels share: launch sizes, dtype dispatch, value conversion,
// strided offsets and block-wide reductions.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/check.h"
#include "cuda/kernels.h"

namespace copper::cuda {

// Threads per block for every kernel: one warp multiple, enough to hide memory latency.
inline constexpr int kBlock = 256;
// Grid-stride loops cap the grid here; more blocks would only wait for a free multiprocessor.
inline constexpr int64_t kMaxBlocks = 65536;

inline unsigned grid_for(int64_t n) {
  const int64_t b = (n + kBlock - 1) / kBlock;
  return unsigned(b < 1 ? 1 : (b > kMaxBlocks ? kMaxBlocks : b));
}
// One block per row, as many rows as the grid allows; kernels loop over the rest.
inline unsigned grid_rows(int64_t rows) { return unsigned(rows < 1 ? 1 : (rows > kMaxBlocks ? kMaxBlocks : rows)); }

#define COPPER_CUDA_GRID_STRIDE(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

// The dispatch macros below run `body` (a lambda) with T bound to the C++ type of the dtype;
// a dtype outside the list is an error naming the op.
#define COPPER_CUDA_CASE(dt, type, ...) \
  case ::copper::DType::dt: {           \
    using T = type;                     \
    return __VA_ARGS__();               \
  }
#define COPPER_CUDA_FLOAT_CASES(...)               \
  COPPER_CUDA_CASE(f32, float, __VA_ARGS__)        \
  COPPER_CUDA_CASE(f64, double, __VA_ARGS__)
#define COPPER_CUDA_NUMERIC_CASES(...)             \
  COPPER_CUDA_FLOAT_CASES(__VA_ARGS__)             \
  COPPER_CUDA_CASE(i32, int32_t, __VA_ARGS__)      \
  COPPER_CUDA_CASE(i64, int64_t, __VA_ARGS__)
#define COPPER_CUDA_ALL_CASES(...)                 \
  COPPER_CUDA_NUMERIC_CASES(__VA_ARGS__)           \
  COPPER_CUDA_CASE(bf16, ::copper::bf16, __VA_ARGS__) \
  COPPER_CUDA_CASE(f16, ::copper::f16, __VA_ARGS__)
#define COPPER_CUDA_DISPATCH(cases, dtype, op, ...)                               \
  [&] {                                                                           \
    switch (dtype) {                                                              \
      cases(__VA_ARGS__)                                                          \
      default: ::copper::cuda::fail_unsupported(op, ::copper::dtype_name(dtype)); \
    }                                                                             \
  }()

// float dtypes (f32, f64); numeric (those and i32, i64); all (those and bf16, f16)
#define COPPER_CUDA_DISPATCH_FLOAT(dtype, op, ...) COPPER_CUDA_DISPATCH(COPPER_CUDA_FLOAT_CASES, dtype, op, __VA_ARGS__)
#define COPPER_CUDA_DISPATCH_NUMERIC(dtype, op, ...) \
  COPPER_CUDA_DISPATCH(COPPER_CUDA_NUMERIC_CASES, dtype, op, __VA_ARGS__)
#define COPPER_CUDA_DISPATCH_ALL(dtype, op, ...) COPPER_CUDA_DISPATCH(COPPER_CUDA_ALL_CASES, dtype, op, __VA_ARGS__)

// By element size only, for kernels that move elements without looking at them (U is an
// unsigned integer of that size).
#define COPPER_CUDA_DISPATCH_BYTES(dtype, op, ...)                        \
  [&] {                                                                   \
    switch (::copper::dtype_size(dtype)) {                                \
      case 2: { using U = uint16_t; return __VA_ARGS__(); }               \
      case 4: { using U = uint32_t; return __VA_ARGS__(); }               \
      case 8: { using U = uint64_t; return __VA_ARGS__(); }               \
    }                                                                     \
    ::copper::cuda::fail_unsupported(op, "this element size");            \
  }()

// ---- values of any dtype, as the CPU converts them (tensor/cpu/loops.h) ----
template <class T>
__device__ __forceinline__ double to_double(T v) {
  if constexpr (std::is_same_v<T, bf16>) return double(__uint_as_float(uint32_t(v.bits) << 16));
  else if constexpr (std::is_same_v<T, f16>) {
    __half_raw r;
    r.x = v.bits;
    return double(__half2float(__half(r)));
  } else return double(v);
}
template <class T>
__device__ __forceinline__ T from_double(double v) {
  if constexpr (std::is_same_v<T, bf16>) {
    const uint32_t u = __float_as_uint(float(v));
    if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40)};  // keep NaN a NaN
    const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);                          // round half to even
    return bf16{uint16_t((u + rounding) >> 16)};
  } else if constexpr (std::is_same_v<T, f16>) {
    const __half_raw r = __half_raw(__float2half_rn(float(v)));
    return f16{r.x};
  } else return T(v);
}
template <class To, class From>
__device__ __forceinline__ To convert(From v) {
  if constexpr (std::is_same_v<To, From>) return v;
  else if constexpr (std::is_arithmetic_v<To> && std::is_arithmetic_v<From>) return To(v);
  else if constexpr (std::is_arithmetic_v<From>) return from_double<To>(double(v));
  else return from_double<To>(to_double(v));
}

// ---- strided elementwise problems ----
// K operands' offsets (in elements) of the element with row-major linear index i.
template <int K>
struct Operands {
  Operand op[K];
};
// A 64-bit division costs several times a 32-bit one on a GPU, and it is on every element, so
// a layout of one dim (a contiguous tensor) takes none, and one of fewer than 2^32 elements
// takes 32-bit ones. The branches are the same for every thread of a launch.
template <int K>
__device__ __forceinline__ void offsets_of(int64_t i, const Layout& l, const Operands<K>& ops, int64_t* off) {
  if (l.nd == 1) {
    for (int k = 0; k < K; ++k) off[k] = i * ops.op[k].stride[0];
    return;
  }
  for (int k = 0; k < K; ++k) off[k] = 0;
  if (l.numel <= int64_t(UINT32_MAX)) {
    uint32_t u = uint32_t(i);
    for (int d = l.nd - 1; d >= 0; --d) {
      const uint32_t size = uint32_t(l.size[d]), idx = u % size;
      u /= size;
      for (int k = 0; k < K; ++k) off[k] += int64_t(idx) * ops.op[k].stride[d];
    }
    return;
  }
  for (int d = l.nd - 1; d >= 0; --d) {
    const int64_t idx = i % l.size[d];
    i /= l.size[d];
    for (int k = 0; k < K; ++k) off[k] += idx * ops.op[k].stride[d];
  }
}

// ---- block-wide reductions (blockDim.x a multiple of 32, every thread of the block calls) ----
template <class T>
struct SumOp {
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
template <class T>
struct MaxOp {
  __device__ __forceinline__ T operator()(T a, T b) const { return a > b ? a : b; }
};

// Every thread gets op over all threads' v.
template <class T, class Op>
__device__ T block_reduce(T v, Op op) {
  __shared__ T warp_vals[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = int(blockDim.x + 31) >> 5;
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();  // a previous call may still be reading warp_vals
  if (lane == 0) warp_vals[warp] = v;
  __syncthreads();
  v = warp_vals[0];
  for (int w = 1; w < nwarps; ++w) v = op(v, warp_vals[w]);
  return v;
}
template <class T>
__device__ __forceinline__ T block_sum(T v) { return block_reduce(v, SumOp<T>{}); }
template <class T>
__device__ __forceinline__ T block_max(T v) { return block_reduce(v, MaxOp<T>{}); }

// ---- one warp (every lane calls) ----
inline constexpr int kWarp = 32;
// Kernels that give each row to one warp: kWarpRowsPerBlock rows per block of kBlock threads,
// the grid for `rows` of them, and the grid-stride loop over the rows (row is the loop
// variable; each warp's lanes all take the same rows).
inline constexpr int kWarpRowsPerBlock = kBlock / kWarp;
inline unsigned grid_for_warp_rows(int64_t rows) {
  return grid_for((rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock * kBlock);
}
#define COPPER_CUDA_WARP_ROWS(row, rows)                                                      \
  for (int64_t row = int64_t(blockIdx.x) * ::copper::cuda::kWarpRowsPerBlock + threadIdx.x / \
                     ::copper::cuda::kWarp;                                                  \
       row < (rows); row += int64_t(gridDim.x) * ::copper::cuda::kWarpRowsPerBlock)
// Inclusive scan over the warp's lanes in lane order: lane k gets v_0 + ... + v_k.
template <class F>
__device__ __forceinline__ F warp_inclusive_scan(F v, int lane) {
  for (int off = 1; off < kWarp; off <<= 1) {
    const F o = __shfl_up_sync(0xffffffffu, v, off);
    if (lane >= off) v += o;
  }
  return v;
}
// Every lane gets op over all lanes' v.
template <class F, class Op>
__device__ __forceinline__ F warp_reduce(F v, Op op) {
  for (int off = kWarp / 2; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
template <class F>
__device__ __forceinline__ F warp_total(F v) { return warp_reduce(v, SumOp<F>{}); }
template <class F>
__device__ __forceinline__ F warp_max(F v) { return warp_reduce(v, MaxOp<F>{}); }

// ---- column sums in two passes (kernels.h, column_chunks) ----
// The rows [first, end) of chunk c when `rows` rows are cut into `chunks` runs of equal length
// (the last ones may be shorter or empty).
struct ChunkRows {
  int64_t first, end;
  __device__ ChunkRows(int64_t c, int64_t chunks, int64_t rows) {
    const int64_t len = (rows + chunks - 1) / chunks;
    first = c * len;
    end = first + len < rows ? first + len : rows;
  }
};
// Pass 2: out[u] = partials[0 * m + u] + partials[1 * m + u] + ... over the chunks, in order.
template <class T>
__global__ void sum_chunks_kernel(const double* partials, int64_t chunks, int64_t m, T* out) {
  COPPER_CUDA_GRID_STRIDE(u, m) {
    double acc = 0;
    for (int64_t c = 0; c < chunks; ++c) acc += partials[c * m + u];
    out[u] = T(acc);
  }
}

// CoPE's interpolation at a clamped position c >= 0, as on the CPU (tensor/cpu/cope_interp.h):
// floor, ceil and the weight of the ceiling.
template <class F>
struct CopeInterp {
  int64_t lo, hi;
  F w;
  __device__ explicit CopeInterp(F c) : lo(int64_t(c)), hi(lo + (c > F(lo))), w(c - F(lo)) {}
  __device__ F at(const F* z) const { return z[lo] + w * (z[hi] - z[lo]); }
};

}  // namespace copper::cuda
