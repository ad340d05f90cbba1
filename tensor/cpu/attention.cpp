// attention.cpp — fused causal attention (Backend::attention, attention_backward): for each
// (batch·head) and block of kQueryBlock queries, the logits q·kᵀ of the block's visible keys,
// the causal softmax, dropout and the product with v, in a scratch buffer of one block's rows.
// Nothing of size (Tq, Tk) outlives the call: the forward keeps only each row's log-sum-exp,
// and the backward recomputes the probabilities from it. The products are block_gemm calls on
// the block (BLAS in f64 and without AVX-512); the row work (max, exp, sum, dropout) runs over
// each row's visible keys only, in vector loops (f32 on AVX-512: intrinsics, block_probs).
//
// With CoPE (Backend::attention given an AttentionCope) each row's logits also get CoPE's
// position term before the softmax: the gates are the sigmoids of the row's own scaled q·k,
// their suffix sums are the positions, and the term interpolates the row's z = q·eᵀ at them
// (CopeTerm, cope_term.h; the same formulas as cope_positions, tensor/ops/cope.cpp). z is
// given, or computed block by block from the table e (the op passes e on the CPU). The
// backward computes each block's gates and positions again and keeps them while it adds the
// gradient through the gates to the logits' and writes dz, or with e turns it into dq's and
// de's shares; nothing of size (Tq, Tk) outlives the call here either.
//
// With RoPE's tables (Backend::attention given an AttentionRotation) q and k are turned pair
// by pair on the way in, into scratch rows, and dq and dk turned back on the way out.
//
// Under mixed precision (products in bf16, for f32 tensors: tensor/autocast.h) the same
// kernels round the products' operands and multiply them on the bf16 tile (bf16_gemm.h): each
// batch·head's keys and values once (HeadPanels), each block's q, dO, P and dS as it goes.
//
// Row r of batch·head b is query i = r + (Tk - Tq): it sees keys j <= i. The references that
// tests/test_ops.cpp compares this with are causal_attention_reference and
// causal_cope_attention_reference (tensor/ops/attention.cpp): matmul, [cope_positions,]
// causal_softmax, dropout, matmul; and causal_rotary_attention_reference, which turns q and k
// with rotate_pairs first.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "tensor/cpu/attention_blocks.h"
#include "tensor/cpu/bf16_gemm.h"
#include "tensor/cpu/block_gemm.h"
#include "tensor/cpu/cope_term.h"
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/fast_math.h"
#include "tensor/cpu/lanes.h"
#include "tensor/cpu/loops.h"
#include "tensor/cpu/rotate.h"
#include "tensor/cpu/transpose.h"
#include "tensor/philox.h"

namespace copper {

using namespace cpu;

namespace {

// The products with a transposed operand: the keys in q kᵀ, the values in dO vᵀ. block_gemm's
// tile reads B in rows, so for it (f32 with AVX-512) each batch·head's keys and values are
// transposed once, [Dh, Tk], and every block's product reads them so. BLAS packs its operands
// anyway, so for it they stay [Tk, Dh] rows, read transposed (NT): no transposes to pay.
template <class T>
constexpr bool kTransposedKeys = std::is_same_v<T, float> && kBlockGemmTiled;

// Rows of a batch·head as a product reads them, with row stride ld: its queries, or its keys
// or values, [Tk, Dh], or for the products with their transpose under kTransposedKeys
// [Dh, Tk].
template <class T>
struct HeadRows {
  const T* p;
  int64_t ld;
};

// C = A Bᵀ for the block's queries (q kᵀ, dO vᵀ), A [nq, Dh], B the keys or values: only
// the columns the causal mask lets a row see are needed (the first sees keys <= seen).
void product_bt(int64_t nq, int64_t kv, int64_t Dh, const float* a, int64_t lda, HeadRows<float> b, float* c,
                int64_t seen) {
  if constexpr (kTransposedKeys<float>)
    block_gemm(false, nq, kv, Dh, 1.0f, a, lda, b.p, b.ld, false, c, kv, Causal::output, seen);
  else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(nq), int(kv), int(Dh), 1.0f, a, int(lda), b.p,
                int(b.ld), 0.0f, c, int(kv));
}
void product_bt(int64_t nq, int64_t kv, int64_t Dh, const double* a, int64_t lda, HeadRows<double> b, double* c,
                int64_t /*seen*/) {
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(nq), int(kv), int(Dh), 1.0, a, int(lda), b.p, int(b.ld),
              0.0, c, int(kv));
}

// The block products run inside an OpenMP loop, one per thread, so each BLAS call (f64, or
// f32 without AVX-512) must stay on its thread: OpenBLAS's own threads would oversubscribe
// the cores. Restored on exit.
class SerialBlas {
 public:
  SerialBlas() : before_(openblas_get_num_threads()) { openblas_set_num_threads(1); }
  ~SerialBlas() { openblas_set_num_threads(before_); }

 private:
  int before_;
};

// Software prefetch for rows of heads viewed out of a (B, T, 3·H·Dh) projection: 256 bytes
// every 3 KB, so that nearly every row starts in a page of its own, where the hardware
// prefetchers do not follow, and each row read or written in turn would wait for memory.
// The loops that copy or turn such rows ask for the row kRowsAhead on; the backward asks
// for a block's rows of dO, O and dq before its products. prefetch_row asks for the Dh
// elements at row, to read or (write) to write.
constexpr int64_t kRowsAhead = 8;
constexpr int64_t kCacheLineBytes = 64;
template <class T>
void prefetch_row(const T* row, int64_t Dh, bool write) {
  constexpr int64_t kLine = kCacheLineBytes / int64_t(sizeof(T));
  for (int64_t c = 0; c < Dh; c += kLine) {
    if (write) __builtin_prefetch(row + c, 1);
    else __builtin_prefetch(row + c, 0);
  }
}
// In a loop over n rows of Dh elements, src's (row stride lds) read into dst's (row stride
// ldd): at row r, asks for row r + kRowsAhead of whichever of the two is strided.
template <class T>
void prefetch_ahead(const T* src, int64_t lds, const T* dst, int64_t ldd, int64_t r, int64_t n, int64_t Dh) {
  if (r + kRowsAhead >= n) return;
  if (lds != Dh) prefetch_row(src + (r + kRowsAhead) * lds, Dh, false);
  if (ldd != Dh) prefetch_row(dst + (r + kRowsAhead) * ldd, Dh, true);
}

// RoPE's rotation of q and k (AttentionRotation), or none. The kernels turn each head's keys
// and each block's queries into scratch rows before their products, and turn dq and dk back
// by minus the angles as they leave: q and k themselves are never written.
template <class T>
struct Rotation {
  const T* cs = nullptr;  // [Tk, p]: row j, the cosines of position j's angles
  const T* sn = nullptr;
  int64_t p = 0;          // pairs per row, Dh / 2
  Rotation(const AttentionRotation& rot, int64_t Dh) {
    if (!rot.cs.defined()) return;
    cs = static_cast<const T*>(rot.cs.raw_data());
    sn = static_cast<const T*>(rot.sn.raw_data());
    p = Dh / 2;
  }
  explicit operator bool() const { return cs != nullptr; }
  // n rows of src (row stride lds) at positions pos0.. turned into dst (row stride ldd);
  // sign -1 turns them by minus the angles.
  void rows(const T* src, int64_t lds, T* dst, int64_t ldd, int64_t n, int64_t pos0, T sign) const {
    for (int64_t r = 0; r < n; ++r) {
      prefetch_ahead(src, lds, dst, ldd, r, n, 2 * p);
      rotate_row(src + r * lds, cs + (pos0 + r) * p, sn + (pos0 + r) * p, dst + r * ldd, p, sign);
    }
  }
};

// n rows of Dh elements from src (row stride lds) to dst (row stride ldd).
template <class T>
void copy_rows(const T* src, int64_t lds, T* dst, int64_t ldd, int64_t n, int64_t Dh) {
  for (int64_t r = 0; r < n; ++r) {
    prefetch_ahead(src, lds, dst, ldd, r, n, Dh);
    const T* from = src + r * lds;
    T* to = dst + r * ldd;
#pragma omp simd
    for (int64_t c = 0; c < Dh; ++c) to[c] = from[c];
  }
}

// A block's nq queries, from row r0 of batch·head b, as its products read them: Q's rows in
// place, or with a rotation turned (to positions pos0 on) into the scratch rows `turned`.
template <class T>
HeadRows<T> block_queries(const Mats<const T>& Q, const Rotation<T>& rot, int64_t b, int64_t r0, int64_t nq,
                          int64_t pos0, T* turned, int64_t Dh) {
  if (!rot) return {Q(b, r0), Q.ld};
  rot.rows(Q(b, r0), Q.ld, turned, Dh, nq, pos0, T(1));
  return {turned, Dh};
}

// n rows of Dh elements from src (row stride lds) to the columns of dst: dst[c·ldd + j] =
// src[j·lds + c] (transpose.h), asking for each run's strided rows one run ahead.
template <class T>
void transpose_rows(const T* src, int64_t lds, T* dst, int64_t ldd, int64_t n, int64_t Dh) {
  for (int64_t j0 = 0; j0 < n; j0 += kTransposeRun) {
    if (lds != Dh)
      for (int64_t j = j0 + kTransposeRun; j < std::min(n, j0 + 2 * kTransposeRun); ++j)
        prefetch_row(src + j * lds, Dh, false);
    transpose_run(src, lds, dst, ldd, j0, std::min(kTransposeRun, n - j0), Dh);
  }
}

// The row stride of n columns transposed: n rounded up to whole cache lines, and an odd
// number of them, so that the rows a product walks down do not all fall in one L1 set (a
// stride of a multiple of 4 KB would).
inline int64_t transposed_stride(int64_t n) {
  constexpr int64_t kLine = kCacheLineBytes / int64_t(sizeof(float));  // the keys are f32 (kTransposedKeys)
  const int64_t lines = (n + kLine - 1) / kLine;
  return kLine * (lines % 2 == 1 ? lines : lines + 1);
}

// Mixed precision (Backend::attention's `products` bf16): the block products take bf16
// operands, rounded where the composed ops would round them (matmul under an AutocastGuard):
// q, k, v and dO as they are read, P after dropout and the logits' gradient times the scale
// before they multiply. Each batch·head's keys and values are rounded and packed once for the
// bf16 tile (Bf16Panels); the block's own operands (q, dO, P, dS) are rounded into scratch
// rows. The sums, the softmax, D and CoPE's term stay f32.
//
// n rows of `width` floats from src (row stride lds), times `scale`, rounded to bf16 into dst
// (row stride ldd). VCVTNEPS2BF16 rounds to nearest even as float_to_bf16 does, but flushes
// subnormal inputs to zero, which the bf16 tile does to its inputs anyway.
void round_rows(const float* src, int64_t lds, bf16* dst, int64_t ldd, int64_t n, int64_t width, float scale = 1.0f) {
  for (int64_t r = 0; r < n; ++r) {
    const float* from = src + r * lds;
    bf16* to = dst + r * ldd;
    int64_t c = 0;
#if defined(__AVX512BF16__)
    const __m512 times = _mm512_set1_ps(scale);
    for (; c + 16 <= width; c += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(to + c),
                          (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(from + c), times)));
#endif
    for (; c < width; ++c) to[c] = float_to_bf16(from[c] * scale);
  }
}

// One batch·head's keys and values rounded to bf16, packed as the block products read them.
struct HeadPanels {
  Bf16Panels keys_t;    // kᵀ [Dh, Tk]: q kᵀ
  Bf16Panels keys;      // k [Tk, Dh]: dq = dS k (backward)
  Bf16Panels values;    // v [Tk, Dh]: P v (forward)
  Bf16Panels values_t;  // vᵀ [Dh, Tk]: dO vᵀ (backward)
  // From Tk rows of keys (row stride ldk; turned, with a rotation) and of values.
  void pack(const float* k, int64_t ldk, const float* v, int64_t ldv, int64_t Tk, int64_t Dh, bool backward) {
    std::vector<bf16> rounded(size_t(Tk * Dh));
    round_rows(k, ldk, rounded.data(), Dh, Tk, Dh);
    keys_t.pack(Dh, Tk, rounded.data(), Dh, true);
    if (backward) keys.pack(Tk, Dh, rounded.data(), Dh, false);
    round_rows(v, ldv, rounded.data(), Dh, Tk, Dh);
    if (backward) values_t.pack(Dh, Tk, rounded.data(), Dh, true);
    else values.pack(Tk, Dh, rounded.data(), Dh, false);
  }
};

// Dropout inside the kernel: the keep-scales of row elements, as dropout_mask writes them at
// element base + j of the (bh, Tq, Tk) probabilities (philox::keep_scales).
struct Keep {
  uint64_t key;
  float p;
  double scale;
  template <class T>
  void row(T* m, int64_t n, uint64_t base) const {
    philox::keep_scales(key, p, T(scale), base, n, m);
  }
};

// What a block's logits add to q·kᵀ. The kernels below take one of two: NoTerm (plain
// attention) or CopeTerm (cope_term.h). Each has
//   scratch()        the per-thread buffers its rows need;
//   softmax_scale()  the factor the softmax applies to what logits() left in the rows;
//   begin_block()    prepares what the block's rows read (CoPE: their z rows);
//   logits()         turns the block's q·kᵀ [nq, kv] into logits (before that factor), but
//                    for the keys it leaves capped;
//   capped()         those keys of each row of the block, which the softmax finishes;
//   grad()           given dL/dlogits, adds the gradient that reaches q·kᵀ through the term
//                    and writes the term's other input gradients;
//   end_block_backward()  adds what grad() left for the block to dq (and the table's gradient).
// Block rows are r < nq of batch·head b, first row r0; row r sees keys j < r0 + r + shift + 1.
template <class T>
struct NoTerm {
  struct Scratch {};
  T scale;
  Scratch scratch(int64_t /*elements*/, int64_t /*Tk*/) const { return {}; }
  T softmax_scale() const { return scale; }
  void begin_block(int64_t, int64_t, int64_t, int64_t, Scratch&) const {}
  void logits(T*, int64_t, int64_t, int64_t, int64_t, int64_t, Scratch&, bool) const {}
  CappedKeys<T> capped(const Scratch&) const { return {}; }
  void grad(T*, int64_t, int64_t, int64_t, int64_t, int64_t, Scratch&) const {}
  void end_block_backward(int64_t, int64_t, int64_t, Scratch&) const {}
};

// What the forward and the backward share: the block's logits turned into probabilities.
// s [nq, kv] holds the logits divided by `scale` on entry, but for the keys a term left
// capped (CappedKeys: x a + b); on exit P = softmax over each row's visible keys (zeros after
// them). With `lse_out` given (forward) the rows' log-sum-exp are written there, and each exp
// is kept as it is summed and then divided by the sum; otherwise (backward) P = exp(logit -
// lse) with the lse read from `lse_in`. (The two differ by rounding only.) The scales are
// positive, so the largest logit of a stretch of keys is its largest entry scaled.
template <class T>
void block_probs(T* s, int64_t nq, int64_t kv, int64_t first_query, T scale, T* lse_out, const T* lse_in,
                 const CappedKeys<T>& capped) {
  for (int64_t r = 0; r < nq; ++r) {
    const int64_t n = first_query + r + 1, m = capped.count(r), left = n - m;  // visible, capped, the rest
    T* row = s + r * kv;
    T* rest = row + m;  // the keys after the capped ones
    const T sc = scale, a = capped.a, b = m > 0 ? capped.b[r] : T(0);
    if (lse_out) {
      T mx = -std::numeric_limits<T>::infinity();
      if (m > 0) mx = row_max(row, m) * a + b;
      if (left > 0) mx = std::max(mx, row_max(rest, left) * sc);
      const T from = b - mx;
      const double sum = row_sum<T>(m, [=](int64_t j) {
                           const T e = exp_of(row[j] * a + from);
                           row[j] = e;
                           return e;
                         }) +
                         row_sum<T>(left, [=](int64_t j) {
                           const T e = exp_of(rest[j] * sc - mx);
                           rest[j] = e;
                           return e;
                         });
      lse_out[r] = T(double(mx) + std::log(sum));
      const T inv = T(1.0 / sum);
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) row[j] *= inv;
    } else {
      const T l = lse_in[r], from = b - l;
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) row[j] = exp_of(row[j] * a + from);
#pragma omp simd
      for (int64_t j = 0; j < left; ++j) rest[j] = exp_of(rest[j] * sc - l);
    }
    std::fill(row + n, row + kv, T(0));
  }
}

#if defined(__AVX512F__)
// The largest of row[lo, hi) and mx's lanes, sixteen keys at a time (a masked last vector).
inline __m512 stretch_max(const float* row, int64_t lo, int64_t hi, __m512 mx) {
  for (int64_t j = lo; j < hi; j += 16) {
    const __mmask16 k = first_lanes(hi - j);
    mx = _mm512_mask_max_ps(mx, k, mx, _mm512_maskz_loadu_ps(k, row + j));
  }
  return mx;
}
// row[j] = exp(row[j] mul + add) over [lo, hi); returns sum plus those exps, in its lanes.
inline __m512 stretch_exps(float* row, int64_t lo, int64_t hi, __m512 mul, __m512 add, __m512 sum) {
  for (int64_t j = lo; j < hi; j += 16) {
    const __mmask16 k = first_lanes(hi - j);
    const __m512 e = _mm512_maskz_mov_ps(k, exp16(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, row + j), mul, add)));
    _mm512_mask_storeu_ps(row + j, k, e);
    sum = _mm512_add_ps(sum, e);
  }
  return sum;
}

// block_probs for f32, sixteen keys at a time with a masked last vector, lanes folded in a
// tree: a row of a block is short (its visible keys), so the scalar tail an `omp simd` loop
// leaves (an exp per element) and a lane-by-lane reduction would be much of a row's work.
// The sum of a row's exps is taken in float lanes, added in double at the end. A row is two
// stretches, the capped keys [0, m) and the rest [m, n), whose logits are x a + b and x scale.
void block_probs(float* s, int64_t nq, int64_t kv, int64_t first_query, float scale, float* lse_out,
                 const float* lse_in, const CappedKeys<float>& capped) {
  const __m512 a = _mm512_set1_ps(capped.a), sc = _mm512_set1_ps(scale);
  const __m512 none = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t r = 0; r < nq; ++r) {
    float* row = s + r * kv;
    const int64_t n = first_query + r + 1, m = capped.count(r);  // visible keys, capped keys
    const float b = m > 0 ? capped.b[r] : 0.0f;
    if (lse_out) {
      float top = -std::numeric_limits<float>::infinity();  // the row's largest logit
      if (m > 0) top = lanes_max(stretch_max(row, 0, m, none)) * capped.a + b;
      if (n > m) top = std::max(top, lanes_max(stretch_max(row, m, n, none)) * scale);
      __m512 sum = stretch_exps(row, 0, m, a, _mm512_set1_ps(b - top), _mm512_setzero_ps());
      sum = stretch_exps(row, m, n, sc, _mm512_set1_ps(-top), sum);
      const double total = double(lanes_sum(sum));
      lse_out[r] = float(double(top) + std::log(total));
      const __m512 inv = _mm512_set1_ps(float(1.0 / total));
      for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 k = first_lanes(n - j);
        _mm512_mask_storeu_ps(row + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, row + j), inv));
      }
    } else {
      stretch_exps(row, 0, m, a, _mm512_set1_ps(b - lse_in[r]), _mm512_setzero_ps());
      stretch_exps(row, m, n, sc, _mm512_set1_ps(-lse_in[r]), _mm512_setzero_ps());
    }
    std::fill(row + n, row + kv, 0.0f);
  }
}
#endif

// Low: the products in bf16 (T is float).
template <class T, class Term, bool Low = false>
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                       int64_t bh, int64_t Tq, int64_t Tk, int64_t Dh, double p, const Keep& keep, const Term& term,
                       const Rotation<T>& rot) {
  const int64_t blocks = (Tq + kQueryBlock - 1) / kQueryBlock, shift = Tk - Tq;
  const Mats<const T> Q(q, bh), K(k, bh), V(v, bh);
  const Mats<T> O(out, bh);
  T* L = static_cast<T*>(lse.raw_data());
  // Once for all blocks (in buffers from the caching allocator): with kTransposedKeys, every
  // batch·head's keys transposed (turned first, with a rotation) and its values in contiguous
  // rows; otherwise, with a rotation, the turned keys in rows, and q, k and v read in place.
  // In bf16 (Low), every batch·head's keys (turned) and values rounded and packed instead.
  constexpr bool transposed = kTransposedKeys<T> && !Low;
  const int64_t ldt = transposed ? transposed_stride(Tk) : Dh;
  std::vector<HeadPanels> heads(Low ? size_t(bh) : 0);
  if constexpr (Low)
    parallel_for(bh, Tk * Dh, [&](int64_t b) {
      std::vector<float> turned(rot ? size_t(Tk * Dh) : 0);
      if (rot) rot.rows(K(b), K.ld, turned.data(), Dh, Tk, 0, 1.0f);
      heads[size_t(b)].pack(rot ? turned.data() : K(b), rot ? Dh : K.ld, V(b), V.ld, Tk, Dh, false);
    });
  Tensor keys_buffer, values_buffer;
  if (!Low && (transposed || rot)) keys_buffer = Tensor::empty({bh, transposed ? Dh * ldt : Tk * Dh}, q.dtype());
  if (transposed) values_buffer = Tensor::empty({bh, Tk * Dh}, q.dtype());
  T* kb = keys_buffer.defined() ? static_cast<T*>(keys_buffer.raw_data()) : nullptr;
  T* vb = values_buffer.defined() ? static_cast<T*>(values_buffer.raw_data()) : nullptr;
  if (kb)
    parallel_for(bh, Tk * Dh, [&](int64_t b) {
      T* keys = kb + b * keys_buffer.size(1);
      if (!transposed) return rot.rows(K(b), K.ld, keys, Dh, Tk, 0, T(1));
      if (rot) {
        std::vector<T> turned(size_t(Tk * Dh));
        rot.rows(K(b), K.ld, turned.data(), Dh, Tk, 0, T(1));
        transpose_rows(turned.data(), Dh, keys, ldt, Tk, Dh);
      } else {
        transpose_rows(K(b), K.ld, keys, ldt, Tk, Dh);
      }
      copy_rows(V(b), V.ld, vb + b * Tk * Dh, Dh, Tk, Dh);
    });
  auto keys_of = [&](int64_t b) {
    return kb ? HeadRows<T>{kb + b * keys_buffer.size(1), ldt} : HeadRows<T>{K(b), K.ld};
  };
  auto values_of = [&](int64_t b) { return vb ? HeadRows<T>{vb + b * Tk * Dh, Dh} : HeadRows<T>{V(b), V.ld}; };
#pragma omp parallel if (bh * blocks > 1)
  {
    std::vector<T> s(size_t(kQueryBlock * Tk)), m(p > 0 ? size_t(Tk) : 0);
    std::vector<T> qr(rot ? size_t(kQueryBlock * Dh) : 0);  // the block's turned queries
    std::vector<bf16> q16(Low ? size_t(kQueryBlock * Dh) : 0), p16(Low ? size_t(kQueryBlock * Tk) : 0);
    auto scratch = term.scratch(Tk, Tk);  // one row at a time: the forward keeps nothing
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < bh * blocks; ++item) {
      const int64_t b = item / blocks, r0 = (item % blocks) * kQueryBlock;
      const int64_t nq = std::min(kQueryBlock, Tq - r0), kv = r0 + nq + shift;  // keys the block's last row sees
      const auto [qb, ldq] = block_queries(Q, rot, b, r0, nq, r0 + shift, qr.data(), Dh);
      const int64_t seen = r0 + shift;  // the block's first query sees keys <= seen
      if constexpr (Low) {
        round_rows(qb, ldq, q16.data(), Dh, nq, Dh);
        bf16_gemm_panels(nq, kv, Dh, q16.data(), Dh, false, heads[size_t(b)].keys_t, false, s.data(), kv);
      } else {
        product_bt(nq, kv, Dh, qb, ldq, keys_of(b), s.data(), seen);  // s = q kᵀ
      }
      term.begin_block(b, r0, nq, shift, scratch);
      term.logits(s.data(), nq, kv, b, r0, shift, scratch, false);
      block_probs(s.data(), nq, kv, r0 + shift, term.softmax_scale(), L + b * Tq + r0, static_cast<const T*>(nullptr),
                  term.capped(scratch));
      if (p > 0)
        for (int64_t r = 0; r < nq; ++r) {
          const int64_t n = r0 + r + shift + 1;
          keep.row(m.data(), n, uint64_t((b * Tq + r0 + r) * Tk));
          T* row = s.data() + r * kv;
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) row[j] *= m[size_t(j)];
        }
      if constexpr (Low) {
        round_rows(s.data(), kv, p16.data(), kv, nq, kv);
        bf16_gemm_panels(nq, Dh, kv, p16.data(), kv, false, heads[size_t(b)].values, false, O(b, r0), O.ld);
      } else {
        const HeadRows<T> values = values_of(b);
        product(false, nq, Dh, kv, 1.0, s.data(), kv, values.p, values.ld, false, O(b, r0), O.ld, Causal::a_rows,
                seen);  // out = P v
      }
    }
  }
}

template <class T, class Term, bool Low = false>
void attention_backward_impl(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                             const Tensor& dout, const Tensor& dq, const Tensor& dk, const Tensor& dv, int64_t bh,
                             int64_t Tq, int64_t Tk, int64_t Dh, double scale, double p, const Keep& keep,
                             const Term& term, const Rotation<T>& rot) {
  // One batch·head per item, its query blocks in order: dk and dv of a batch·head are sums over
  // its blocks, added in the same order whatever the thread count.
  const int64_t blocks = (Tq + kQueryBlock - 1) / kQueryBlock, shift = Tk - Tq;
  const Mats<const T> Q(q, bh), K(k, bh), V(v, bh), O(out, bh), dO(dout, bh);
  const Mats<T> dQ(dq, bh), dK(dk, bh), dV(dv, bh);
  const T* L = static_cast<const T*>(lse.raw_data());
#pragma omp parallel if (bh > 1)
  {
    std::vector<T> P(size_t(kQueryBlock * Tk)), dP(size_t(kQueryBlock * Tk)), D(static_cast<size_t>(kQueryBlock));
    std::vector<T> M(p > 0 ? size_t(kQueryBlock * Tk) : 0);  // the block's keep-scales
    // The batch·head's keys (turned, with a rotation) in contiguous rows, for dq, and as the
    // products with their transpose read them (kTransposedKeys: transposed), its values too,
    // and its dk and dv summed in contiguous rows over the blocks, then written out once (dk
    // turned back). With a rotation, each block's queries are turned too, and its dq is turned
    // back as it leaves.
    // In bf16 (Low) the keys and values are rounded and packed (HeadPanels) instead, and each
    // block's q, dO, P and dS rounded into scratch rows.
    constexpr bool transposed = kTransposedKeys<T> && !Low;
    const int64_t ldt = transposed ? transposed_stride(Tk) : Dh;
    std::vector<T> kr(size_t(Tk * Dh)), kread(transposed ? size_t(Dh * ldt) : 0),
        vread(transposed ? size_t(Dh * ldt) : Low ? 0 : size_t(Tk * Dh)), dkr(size_t(Tk * Dh)), dvr(size_t(Tk * Dh));
    HeadPanels head;
    Bf16Panels q_rows, do_rows;  // the block's rounded q and dO, as dk's and dv's products read them
    std::vector<bf16> q16(Low ? size_t(kQueryBlock * Dh) : 0), do16(Low ? size_t(kQueryBlock * Dh) : 0),
        p16(Low ? size_t(kQueryBlock * Tk) : 0);
    const HeadRows<T> keys{transposed ? kread.data() : kr.data(), ldt}, values{vread.data(), ldt};
    std::vector<T> qr(rot ? size_t(kQueryBlock * Dh) : 0), dqr(rot ? size_t(kQueryBlock * Dh) : 0);
    auto scratch = term.scratch(kQueryBlock * Tk, Tk);
#pragma omp for schedule(dynamic)
    for (int64_t b = 0; b < bh; ++b) {
      if (rot) rot.rows(K(b), K.ld, kr.data(), Dh, Tk, 0, T(1));
      else copy_rows(K(b), K.ld, kr.data(), Dh, Tk, Dh);
      if constexpr (Low) {
        head.pack(kr.data(), Dh, V(b), V.ld, Tk, Dh, true);
      } else if (transposed) {
        transpose_rows(kr.data(), Dh, kread.data(), ldt, Tk, Dh);
        transpose_rows(V(b), V.ld, vread.data(), ldt, Tk, Dh);
      } else {
        copy_rows(V(b), V.ld, vread.data(), Dh, Tk, Dh);
      }
      std::fill(dkr.begin(), dkr.end(), T(0));
      std::fill(dvr.begin(), dvr.end(), T(0));
      const T* kb = kr.data();
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t r0 = blk * kQueryBlock, nq = std::min(kQueryBlock, Tq - r0), kv = r0 + nq + shift;
        for (int64_t r = 0; r < nq; ++r) {  // the block's rows of dO, O and dq, needed below
          prefetch_row(dO(b, r0 + r), Dh, false);
          prefetch_row(O(b, r0 + r), Dh, false);
          prefetch_row(dQ(b, r0 + r), Dh, true);
        }
        const auto [qb, ldq] = block_queries(Q, rot, b, r0, nq, r0 + shift, qr.data(), Dh);
        const int64_t seen = r0 + shift;  // the block's first query sees keys <= seen
        if constexpr (Low) {
          round_rows(qb, ldq, q16.data(), Dh, nq, Dh);
          bf16_gemm_panels(nq, kv, Dh, q16.data(), Dh, false, head.keys_t, false, P.data(), kv);
        } else {
          product_bt(nq, kv, Dh, qb, ldq, keys, P.data(), seen);  // P = q kᵀ
        }
        term.begin_block(b, r0, nq, shift, scratch);
        term.logits(P.data(), nq, kv, b, r0, shift, scratch, true);
        block_probs(P.data(), nq, kv, r0 + shift, term.softmax_scale(), static_cast<T*>(nullptr), L + b * Tq + r0,
                    term.capped(scratch));
        if constexpr (Low) {
          round_rows(dO(b, r0), dO.ld, do16.data(), Dh, nq, Dh);
          bf16_gemm_panels(nq, kv, Dh, do16.data(), Dh, false, head.values_t, false, dP.data(), kv);
        } else {
          product_bt(nq, kv, Dh, dO(b, r0), dO.ld, values, dP.data(), seen);  // dP = dO vᵀ
        }
        if constexpr (!Low)
          for (int64_t r = 0; r < nq; ++r) {
            const T* dor = dO(b, r0 + r);
            const T* orow = O(b, r0 + r);
            double d = 0;  // D_r = dO_r · O_r = sum_j P_j dP_j over the kept probabilities
#pragma omp simd reduction(+ : d)
            for (int64_t c = 0; c < Dh; ++c) d += double(dor[c]) * double(orow[c]);
            D[size_t(r)] = T(d);
          }
        // With dropout the forward used P ∘ M (M the keep-scale): the gradient reaching P is
        // dP ∘ M, and dv takes (P ∘ M)ᵀ dO. D needs no mask: sum_j P_j M_j dP_j = dO · O.
        if (p > 0)  // the keep-scales of the block, once for both uses
          for (int64_t r = 0; r < nq; ++r) keep.row(M.data() + r * kv, r0 + r + shift + 1, uint64_t((b * Tq + r0 + r) * Tk));
        auto apply_mask = [&](std::vector<T>& x) {
          for (int64_t r = 0; r < nq; ++r) {
            const int64_t n = r0 + r + shift + 1;
            T* row = x.data() + r * kv;
            const T* mr = M.data() + r * kv;
#pragma omp simd
            for (int64_t j = 0; j < n; ++j) row[j] *= mr[j];
          }
        };
        if (p > 0) apply_mask(dP);
        // In bf16, O and dP come from rounded operands, and dO · O is not the sum of P dP that
        // the composed softmax's backward takes: D is that sum, over the row's visible keys.
        if constexpr (Low)
          for (int64_t r = 0; r < nq; ++r) {
            const T* pr = P.data() + r * kv;
            const T* gr = dP.data() + r * kv;
            double d = 0;
#pragma omp simd reduction(+ : d)
            for (int64_t j = 0; j < r0 + r + shift + 1; ++j) d += double(pr[j]) * double(gr[j]);
            D[size_t(r)] = T(d);
          }
        for (int64_t r = 0; r < nq; ++r) {  // dS = P ∘ (dP - D), the logits' gradient, in dP's buffer
          const int64_t n = r0 + r + shift + 1;
          const T* pr = P.data() + r * kv;
          T* gr = dP.data() + r * kv;
          const T dr = D[size_t(r)];
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) gr[j] = pr[j] * (gr[j] - dr);
          std::fill(gr + n, gr + kv, T(0));  // keys this row does not see
        }
        term.grad(dP.data(), nq, kv, b, r0, shift, scratch);  // dS: now the gradient of q kᵀ, before the scale
        if (p > 0) apply_mask(P);
        if constexpr (Low) {
          round_rows(P.data(), kv, p16.data(), kv, nq, kv);  // dv += Pmᵀ dO
          do_rows.pack(nq, Dh, do16.data(), Dh, false);
          bf16_gemm_panels(kv, Dh, nq, p16.data(), kv, true, do_rows, true, dvr.data(), Dh);
          round_rows(dP.data(), kv, p16.data(), kv, nq, kv, scale);  // dS times the scale, for dq and dk
          T* dq_rows = rot ? dqr.data() : dQ(b, r0);                  // dq = dS k (turned back below)
          bf16_gemm_panels(nq, Dh, kv, p16.data(), kv, false, head.keys, false, dq_rows, rot ? Dh : dQ.ld);
          if (rot) rot.rows(dqr.data(), Dh, dQ(b, r0), dQ.ld, nq, r0 + shift, T(-1));
          q_rows.pack(nq, Dh, q16.data(), Dh, false);  // dk += dSᵀ q
          bf16_gemm_panels(kv, Dh, nq, p16.data(), kv, true, q_rows, true, dkr.data(), Dh);
        } else {
          product(true, kv, Dh, nq, 1.0, P.data(), kv, dO(b, r0), dO.ld, true, dvr.data(), Dh, Causal::a_columns,
                  seen);  // dv += Pmᵀ dO
          if (rot) {  // dq in the turned frame, then turned back
            product(false, nq, Dh, kv, scale, dP.data(), kv, kb, Dh, false, dqr.data(), Dh, Causal::a_rows, seen);
            rot.rows(dqr.data(), Dh, dQ(b, r0), dQ.ld, nq, r0 + shift, T(-1));
          } else {
            product(false, nq, Dh, kv, scale, dP.data(), kv, kb, Dh, false, dQ(b, r0), dQ.ld, Causal::a_rows,
                    seen);  // dq
          }
          product(true, kv, Dh, nq, scale, dP.data(), kv, qb, ldq, true, dkr.data(), Dh, Causal::a_columns,
                  seen);  // dk += dSᵀ q
        }
        term.end_block_backward(b, r0, nq, scratch);
      }
      if (rot) rot.rows(dkr.data(), Dh, dK(b), dK.ld, Tk, 0, T(-1));
      else copy_rows(dkr.data(), Dh, dK(b), dK.ld, Tk, Dh);
      copy_rows(dvr.data(), Dh, dV(b), dV.ld, Tk, Dh);
    }
  }
}

// Runs `body` with the block term the call asks for: NoTerm, or CopeTerm reading cope.z or
// cope.e (then dq, when given, is where the backward adds dz E, and cope.de gets the table's
// gradient: the batch·heads' terms summed in order, so it does not depend on the threads;
// a cope.z given with e is where the forward keeps z for the backward).
template <class T, class Body>
void with_term(const AttentionCope& cope, double scale, int64_t bh, int64_t Tq, const Tensor& q, const Tensor& dq,
               Body&& body) {
  if (!cope.z.defined() && !cope.e.defined()) return body(NoTerm<T>{T(scale)});
  CopeTerm<T> term{T(scale), Tq, 0, cope.official};
  if (!cope.e.defined()) {
    term.npos = cope.z.size(-1);
    term.Z = static_cast<T*>(cope.z.raw_data());
    term.dZ = cope.dz.defined() ? static_cast<T*>(cope.dz.raw_data()) : nullptr;
    return body(term);
  }
  term.npos = cope.e.size(0);
  term.Dh = cope.e.size(1);
  term.E = static_cast<const T*>(cope.e.raw_data());
  std::vector<T> et(size_t(term.npos * term.Dh));
  transpose_rows(term.E, term.Dh, et.data(), term.npos, term.npos, term.Dh);
  term.Et = et.data();
  term.Z = cope.z.defined() ? static_cast<T*>(cope.z.raw_data()) : nullptr;
  const Mats<const T> Q(q, bh);
  term.Q = &Q;
  if (!dq.defined()) return body(term);
  const Mats<T> dQ(dq, bh);
  const int64_t table = term.npos * term.Dh;
  std::vector<T> dE(size_t(bh * table), T(0));
  term.dQ = &dQ;
  term.dE = dE.data();
  body(term);
  T* de = static_cast<T*>(cope.de.raw_data());
  parallel_for(table, bh, [&](int64_t i) {
    double acc = 0;
    for (int64_t b = 0; b < bh; ++b) acc += double(dE[size_t(b * table + i)]);
    de[i] = T(acc);
  });
}

// CopeTerm reads q itself (its z = q·eᵀ), unturned: the two do not combine. The products are
// in q's dtype, or in bf16 for f32 q. Returns whether they are in bf16.
bool check_call(const Tensor& q, const AttentionCope& cope, const AttentionRotation& rot, DType products) {
  COPPER_CHECK(!rot.cs.defined() || (!cope.z.defined() && !cope.e.defined()), "attention",
               "RoPE's rotation and CoPE's term do not combine in one kernel call. HINT: rotate q and k with "
               "rotate_pairs and pass no tables");
  const bool low = products == DType::bf16 && q.dtype() == DType::f32;
  COPPER_CHECK(low || products == q.dtype(), "attention",
               "products in {} for {} operands: the kernel multiplies in the operands' dtype, or in bf16 for f32",
               dtype_name(products), dtype_name(q.dtype()));
  return low;
}

}  // namespace

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                           int64_t bh, int64_t Tq, int64_t Tk, int64_t Dh, double scale, double p, uint64_t key,
                           const AttentionCope& cope, const AttentionRotation& rot, DType products) {
  const bool low = check_call(q, cope, rot, products);
  const Keep keep{key, float(p), 1.0 / (1.0 - p)};
  const SerialBlas serial;
  COPPER_DISPATCH_FLOAT(q.dtype(), "attention", [&] {
    with_term<T>(cope, scale, bh, Tq, q, Tensor(), [&](const auto& term) {
      using Term = std::decay_t<decltype(term)>;
      if constexpr (std::is_same_v<T, float>)
        if (low)
          return attention_forward<T, Term, true>(q, k, v, out, lse, bh, Tq, Tk, Dh, p, keep, term,
                                                  Rotation<T>(rot, Dh));
      attention_forward<T>(q, k, v, out, lse, bh, Tq, Tk, Dh, p, keep, term, Rotation<T>(rot, Dh));
    });
  });
}

void CpuBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                    const Tensor& lse, const Tensor& dout, const Tensor& dq, const Tensor& dk,
                                    const Tensor& dv, int64_t bh, int64_t Tq, int64_t Tk, int64_t Dh, double scale,
                                    double p, uint64_t key, const AttentionCope& cope,
                                    const AttentionRotation& rot, DType products) {
  const bool low = check_call(q, cope, rot, products);
  const Keep keep{key, float(p), 1.0 / (1.0 - p)};
  const SerialBlas serial;
  COPPER_DISPATCH_FLOAT(q.dtype(), "attention_backward", [&] {
    with_term<T>(cope, scale, bh, Tq, q, dq, [&](const auto& term) {
      using Term = std::decay_t<decltype(term)>;
      if constexpr (std::is_same_v<T, float>)
        if (low)
          return attention_backward_impl<T, Term, true>(q, k, v, out, lse, dout, dq, dk, dv, bh, Tq, Tk, Dh, scale, p,
                                                        keep, term, Rotation<T>(rot, Dh));
      attention_backward_impl<T>(q, k, v, out, lse, dout, dq, dk, dv, bh, Tq, Tk, Dh, scale, p, keep, term,
                                 Rotation<T>(rot, Dh));
    });
  });
}

}  // namespace copper
