// loops.h — the shared machinery of the CPU kernels: dtype dispatch, the strided
// row iterator, the OpenMP size threshold, row reductions (max, sum) written to vectorize,
// and row passes that also sum columns.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "tensor/tensor.h"

namespace copper::cpu {

// Below this many elements a kernel runs on one thread: waking threads costs more.
inline constexpr int64_t kParallelMin = 1 << 15;

// Run `body` with `T` bound to the C++ type of a float dtype (f32 or f64).
#define COPPER_DISPATCH_FLOAT(dtype, op, ...)                                                          \
  [&] {                                                                                                \
    switch (dtype) {                                                                                   \
      case ::copper::DType::f32: { using T = float; return __VA_ARGS__(); }                            \
      case ::copper::DType::f64: { using T = double; return __VA_ARGS__(); }                           \
      default: COPPER_THROW(op, "dtype {} is not supported here. HINT: convert with .to(DType::f32)", \
                            ::copper::dtype_name(dtype));                                              \
    }                                                                                                  \
  }()

// Float and integer compute types (not the half storage types).
#define COPPER_DISPATCH_NUMERIC(dtype, op, ...)                                                        \
  [&] {                                                                                                \
    switch (dtype) {                                                                                   \
      case ::copper::DType::f32: { using T = float; return __VA_ARGS__(); }                            \
      case ::copper::DType::f64: { using T = double; return __VA_ARGS__(); }                           \
      case ::copper::DType::i32: { using T = int32_t; return __VA_ARGS__(); }                          \
      case ::copper::DType::i64: { using T = int64_t; return __VA_ARGS__(); }                          \
      default: COPPER_THROW(op, "dtype {} is not supported here. HINT: convert with .to(DType::f32)", \
                            ::copper::dtype_name(dtype));                                              \
    }                                                                                                  \
  }()

// The same for every dtype (T is bf16/f16 for the half types).
#define COPPER_DISPATCH_ALL(dtype, op, ...)                                \
  [&] {                                                                    \
    switch (dtype) {                                                       \
      case ::copper::DType::f32: { using T = float; return __VA_ARGS__(); }   \
      case ::copper::DType::f64: { using T = double; return __VA_ARGS__(); }  \
      case ::copper::DType::i32: { using T = int32_t; return __VA_ARGS__(); } \
      case ::copper::DType::i64: { using T = int64_t; return __VA_ARGS__(); } \
      case ::copper::DType::bf16: { using T = ::copper::bf16; return __VA_ARGS__(); } \
      case ::copper::DType::f16: { using T = ::copper::f16; return __VA_ARGS__(); }   \
    }                                                                      \
    COPPER_THROW(op, "unknown dtype");                                     \
  }()

// Values of any dtype to and from double/float, with the half types converted.
template <class T>
inline double to_double(T v) {
  if constexpr (std::is_same_v<T, bf16>) return bf16_to_float(v);
  else if constexpr (std::is_same_v<T, f16>) return f16_to_float(v);
  else return double(v);
}
template <class T>
inline T from_double(double v) {
  if constexpr (std::is_same_v<T, bf16>) return float_to_bf16(float(v));
  else if constexpr (std::is_same_v<T, f16>) return float_to_f16(float(v));
  else return T(v);
}
template <class To, class From>
inline To convert(From v) {
  if constexpr (std::is_same_v<To, From>) return v;
  else if constexpr (std::is_arithmetic_v<To> && std::is_arithmetic_v<From>) return To(v);
  else if constexpr (std::is_arithmetic_v<From>) return from_double<To>(double(v));
  else return from_double<To>(to_double(v));
}

// Iterate over K tensors that share one shape, each with its own strides, as rows of
// the innermost dimension: f(const int64_t* offsets, const int64_t* inner_strides, n).
// Adjacent dims that are contiguous in every operand are merged first, so a fully
// contiguous tensor is one long row; long rows are cut into chunks so that threads
// share the work.
template <size_t K, class F>
void for_each_row(const Shape& shape, const std::array<const Shape*, K>& strides, F&& f) {
  // collapse: drop size-1 dims, merge mergeable neighbours
  std::vector<int64_t> sz;
  std::array<std::vector<int64_t>, K> st;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (shape[d] == 0) return;
    bool merge = !sz.empty();
    for (size_t k = 0; k < K && merge; ++k) merge = st[k].back() == (*strides[k])[d] * shape[d];
    if (merge) {
      sz.back() *= shape[d];
      for (size_t k = 0; k < K; ++k) st[k].back() = (*strides[k])[d];
    } else {
      sz.push_back(shape[d]);
      for (size_t k = 0; k < K; ++k) st[k].push_back((*strides[k])[d]);
    }
  }
  if (sz.empty()) {  // a single element
    sz.push_back(1);
    for (size_t k = 0; k < K; ++k) st[k].push_back(0);
  }
  const int64_t nd = int64_t(sz.size());
  const int64_t inner = sz.back();
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < nd; ++d) rows *= sz[d];
  const int64_t chunk = rows >= 8 ? inner : std::max<int64_t>(4096, (inner + 7) / 8);
  const int64_t nchunks = (inner + chunk - 1) / chunk;
  const int64_t units = rows * nchunks;
  std::array<int64_t, K> inner_st;
  for (size_t k = 0; k < K; ++k) inner_st[k] = st[k].back();

#pragma omp parallel for schedule(static) if (rows * inner >= kParallelMin && units > 1)
  for (int64_t u = 0; u < units; ++u) {
    int64_t row = u / nchunks, c = u % nchunks;
    std::array<int64_t, K> off{};
    int64_t rem = row;
    for (int64_t d = nd - 2; d >= 0; --d) {
      int64_t i = rem % sz[d];
      rem /= sz[d];
      for (size_t k = 0; k < K; ++k) off[k] += i * st[k][d];
    }
    int64_t start = c * chunk, n = std::min(chunk, inner - start);
    for (size_t k = 0; k < K; ++k) off[k] += start * inner_st[k];
    f(off.data(), inner_st.data(), n);
  }
}

// Split [0, n) into per-thread ranges when n * cost is large enough.
template <class F>
void parallel_for(int64_t n, int64_t work_per_item, F&& f) {
#pragma omp parallel for schedule(static) if (n > 1 && n * work_per_item >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) f(i);
}

// The largest of x[0, n) (-inf when n is 0; NaNs are skipped). One running maximum per lane
// of kMaxLanes, so the compiler keeps several vector maxima and no instruction waits for the
// one before (a single `omp simd reduction(max)` chains them all). max is exact, so the
// grouping does not change the result.
inline constexpr int64_t kMaxLanes = 32;

template <class T>
T row_max(const T* __restrict x, int64_t n) {
  constexpr T kNone = -std::numeric_limits<T>::infinity();
  T lane[kMaxLanes];
  std::fill(lane, lane + kMaxLanes, kNone);
  int64_t i = 0;
  for (; i + kMaxLanes <= n; i += kMaxLanes) {
#pragma omp simd
    for (int64_t l = 0; l < kMaxLanes; ++l) lane[l] = x[i + l] > lane[l] ? x[i + l] : lane[l];
  }
  T mx = kNone;
  for (; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  for (int64_t l = 0; l < kMaxLanes; ++l) mx = lane[l] > mx ? lane[l] : mx;
  return mx;
}

// sum_i f(i) over a row: vector partial sums in T over blocks of kSumBlock elements, added
// in double. One double accumulator for the whole row makes every add wait for the one
// before, and converting each float term to double halves the vector width; in a block,
// each vector lane adds only kSumBlock / (lanes) terms in float before the double sum takes
// over. f may also store (a softmax keeps each exp it sums). Callers pass lambdas that
// capture by value: GCC turns the loads of a by-reference capture into gathers.
inline constexpr int64_t kSumBlock = 256;

template <class T, class F>
double row_sum(int64_t n, F f) {
  double total = 0;
  for (int64_t i0 = 0; i0 < n; i0 += kSumBlock) {
    const int64_t i1 = std::min(n, i0 + kSumBlock);
    T part = 0;
#pragma omp simd reduction(+ : part)
    for (int64_t i = i0; i < i1; ++i) part += f(i);
    total += double(part);
  }
  return total;
}

// Column sums taken in chunks of rows, each chunk's partial sums a row of `parts` ([chunks, n]),
// are added here in chunk order, in double, into out[0, n): the same additions in the same
// order whatever thread summed each chunk, so the result does not depend on the thread count.
// The columns go kColumnBlock at a time, their running sums on the stack.
inline constexpr int64_t kColumnBlock = 256;

template <class P, class T>
void add_partials_in_chunk_order(const P* parts, int64_t chunks, int64_t n, T* out) {
  double acc[kColumnBlock];
  for (int64_t c0 = 0; c0 < n; c0 += kColumnBlock) {
    const int64_t len = std::min(kColumnBlock, n - c0);
    std::fill(acc, acc + len, 0.0);
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const P* part = parts + ch * n + c0;
#pragma omp simd
      for (int64_t c = 0; c < len; ++c) acc[c] += double(part[c]);
    }
    for (int64_t c = 0; c < len; ++c) out[c0 + c] = T(acc[c]);
  }
}

// A backward's one pass over rows that also sums columns (a norm's weight and bias
// gradients, a bias's): rows go in chunks of kRowChunk, and `row(r, w, b)` handles row r and
// adds its terms of the two column sums into w and b, the chunk's partial sums (T, n each;
// null when that sum is not wanted: a chunk's few rows are summed in the element type, which
// keeps the per-row adds and stores at the vector width of T). The chunks' sums then go into
// dweight and dbias by add_partials_in_chunk_order, and the rows are read once, not once per
// gradient.
constexpr int64_t kRowChunk = 32;

template <class T, class Row>
void rows_and_column_sums(int64_t rows, int64_t n, const Tensor& dweight, const Tensor& dbias, Row row) {
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  // Kept from call to call (per calling thread and call site): a fresh buffer of this size
  // comes from the OS and costs a page fault per 4 KiB. Each chunk zeroes its own part.
  // The worker threads write through these pointers: inside the loop below, the names wsum and
  // bsum would mean each worker's own (empty) thread_local vectors, not the caller's.
  static thread_local std::vector<T> wsum, bsum;
  wsum.resize(dweight.defined() ? size_t(chunks * n) : 0);
  bsum.resize(dbias.defined() ? size_t(chunks * n) : 0);
  T* const wparts = wsum.empty() ? nullptr : wsum.data();
  T* const bparts = bsum.empty() ? nullptr : bsum.data();
  parallel_for(chunks, kRowChunk * n * 8, [&](int64_t ch) {
    T* w = wparts ? wparts + ch * n : nullptr;
    T* b = bparts ? bparts + ch * n : nullptr;
    if (w) std::fill(w, w + n, T(0));
    if (b) std::fill(b, b + n, T(0));
    for (int64_t r = ch * kRowChunk; r < std::min(rows, (ch + 1) * kRowChunk); ++r) row(r, w, b);
  });
  // On the calling thread: a few thousand adds per chunk, less than waking the workers for
  // them would cost.
  if (wparts) add_partials_in_chunk_order(wparts, chunks, n, static_cast<T*>(dweight.raw_data()));
  if (bparts) add_partials_in_chunk_order(bparts, chunks, n, static_cast<T*>(dbias.raw_data()));
}

}  // namespace copper::cpu
