// attention.cpp — fused causal attention (Backend::attention, attention_backward): for each
// (batch·head) and block of kQueryBlock queries, the logits q·kᵀ of the block's visible keys,
// the causal softmax, dropout and the product with v, in a scratch buffer of one block's rows.
// Nothing of size (Tq, Tk) outlives the call: the forward keeps only each row's log-sum-exp,
// and the backward recomputes the probabilities from it. The products are block_gemm calls on
// the block (BLAS in f64 and without AVX-512); the row work (max, exp, sum, dropout) is plain
// loops over the visible keys.
//
// With CoPE (Backend::attention given an AttentionCope) each row's logits also get CoPE's
// position term before the softmax: the gates are the sigmoids of the row's own scaled q·k,
// their suffix sums are the positions, and the term interpolates the row's z = q·eᵀ at them
// (CopeTerm below; the same formulas as cope_positions, tensor/ops/cope.cpp). z is given, or
// computed block by block from the table e (the op passes e on the CPU). The block keeps its
// rows' gates and positions for the backward, which adds the gradient through the gates to
// the logits' and writes dz, or with e turns it into dq's and de's shares; nothing of size
// (Tq, Tk) outlives the call here either.
//
// With RoPE's tables (Backend::attention given an AttentionRotation) q and k are turned pair
// by pair on the way in, into scratch rows, and dq and dk turned back on the way out.
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

#include "tensor/cpu/block_gemm.h"
#include "tensor/cpu/cope_interp.h"
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/fast_math.h"
#include "tensor/cpu/loops.h"
#include "tensor/cpu/rotate.h"
#include "tensor/cpu/transpose.h"
#include "tensor/philox.h"

namespace copper {

using namespace cpu;

namespace {

// Queries per block: the scratch rows (kQueryBlock x Tk) stay in L2 for Tk up to a few thousand.
constexpr int64_t kQueryBlock = 64;

// The block products, C = alpha op(A) B (+ C with `accumulate`), row-major: op(A) is [m, K],
// A itself or (trans_a) the transpose of a [K, m] matrix; B is [K, n]. f32 runs block_gemm
// (block_gemm.h), whose AVX-512 tile reads both operands in place; f64, the gradchecks' type,
// runs BLAS. `causal` and `shift` say what the causal mask lets the tile skip; BLAS computes all.
void product(bool trans_a, int64_t m, int64_t n, int64_t K, double alpha, const float* a, int64_t lda, const float* b,
             int64_t ldb, bool accumulate, float* c, int64_t ldc, Causal causal = Causal::none, int64_t shift = 0) {
  block_gemm(trans_a, m, n, K, float(alpha), a, lda, b, ldb, accumulate, c, ldc, causal, shift);
}
void product(bool trans_a, int64_t m, int64_t n, int64_t K, double alpha, const double* a, int64_t lda,
             const double* b, int64_t ldb, bool accumulate, double* c, int64_t ldc, Causal = Causal::none,
             int64_t = 0) {
  if (m == 0 || n == 0) return;
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, CblasNoTrans, int(m), int(n), int(K), alpha, a,
              int(lda), b, int(ldb), accumulate ? 1.0 : 0.0, c, int(ldc));
}

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

// The (T, Dh) matrices of a (..., T, Dh) tensor with a unit last stride: where matrix b (the
// leading indices in row-major order) starts, and the row stride the products take as its
// leading dimension. Heads split off a (B, T, H·Dh) projection are such views, read in place.
template <class T>
struct Mats {
  T* base;
  std::vector<int64_t> start;
  int64_t ld;
  Mats(const Tensor& t, int64_t count) : base(static_cast<T*>(t.raw_data())), start(size_t(count)), ld(t.stride(-2)) {
    const int64_t lead = t.dim() - 2;
    std::vector<int64_t> idx(size_t(lead), 0);
    int64_t off = 0;
    for (int64_t b = 0; b < count; ++b) {
      start[size_t(b)] = off;
      for (int64_t d = lead - 1; d >= 0; --d) {  // the next leading index, last dim fastest
        off += t.stride(d);
        if (++idx[size_t(d)] < t.size(d)) break;
        off -= t.stride(d) * t.size(d);
        idx[size_t(d)] = 0;
      }
    }
  }
  T* operator()(int64_t b, int64_t row = 0) const { return base + start[size_t(b)] + row * ld; }
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
      if (r + kRowsAhead < n) {
        if (lds != 2 * p) prefetch_row(src + (r + kRowsAhead) * lds, 2 * p, false);
        if (ldd != 2 * p) prefetch_row(dst + (r + kRowsAhead) * ldd, 2 * p, true);
      }
      rotate_row(src + r * lds, cs + (pos0 + r) * p, sn + (pos0 + r) * p, dst + r * ldd, p, sign);
    }
  }
};

// n rows of Dh elements from src (row stride lds) to dst (row stride ldd).
template <class T>
void copy_rows(const T* src, int64_t lds, T* dst, int64_t ldd, int64_t n, int64_t Dh) {
  for (int64_t r = 0; r < n; ++r) {
    if (r + kRowsAhead < n) {
      if (lds != Dh) prefetch_row(src + (r + kRowsAhead) * lds, Dh, false);
      if (ldd != Dh) prefetch_row(dst + (r + kRowsAhead) * ldd, Dh, true);
    }
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

inline float exp_of(float x) { return exp_fast(x); }
inline double exp_of(double x) { return std::exp(x); }

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
// attention) or CopeTerm. Each has
//   scratch()        the per-thread buffers its rows need;
//   softmax_scale()  the factor the softmax applies to what logits() left in the rows;
//   begin_block()    prepares what the block's rows read (CoPE: their z rows);
//   logits()         turns the block's q·kᵀ [nq, kv] into logits (before that factor);
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
  void begin_block(int64_t, int64_t, int64_t, Scratch&) const {}
  void logits(T*, int64_t, int64_t, int64_t, int64_t, int64_t, Scratch&, bool) const {}
  void grad(T*, int64_t, int64_t, int64_t, int64_t, int64_t, Scratch&) const {}
  void end_block_backward(int64_t, int64_t, int64_t, Scratch&) const {}
};

// CoPE (nn/pe/cope.h) over a block, query i = r0 + r + shift:
//   g_j = sigmoid(s_j scale), c_j = min(sum_{t=j..i} g_t, npos - 1), term_j = z_i at c_j
//   logit_j = s_j scale + term_j ("appendix") or (s_j + term_j) scale ("official")
// Its backward, with d_j = dL/dlogit_j and dterm_j = d_j (appendix) or d_j scale (official):
//   dz_i[floor c_j] += (1 - w_j) dterm_j,  dz_i[ceil c_j] += w_j dterm_j
//   dg_t = sum_{j<=t} dterm_j (z_i[ceil c_j] - z_i[floor c_j]) [c_j < npos - 1]
//   dL/ds_t = scale (d_t + dg_t g_t (1 - g_t))
// so grad() leaves d_t + dg_t g_t (1 - g_t) in the row and the caller's products apply the
// scale. These are cope_positions' formulas (tensor/ops/cope.cpp) with the gate logits
// s_j scale.
//
// Each row is a few passes: the ones without a chain are `omp simd` loops (the gates, the
// table reads, each key's shares of the gradient), and the serial ones do as little as
// possible (suffix_positions, the prefix sums in grad). The dz scatter is the backward's
// trap: adding into dz[floor c_j] key after key makes every add wait for the previous store
// to the same slot. But c_j only falls as j grows (a suffix sum of gates >= 0, and rounding
// keeps that order), so the keys reading slot p as floor are one run of consecutive j:
// dz[p] is a difference of two prefix sums of (1 - w_j) dterm_j, taken at the ends of the
// runs, and the serial pass only stores each slot's latest key (no loads). A key's ceiling
// share goes to slot floor + 1 (where w_j = 0 it is zero, whatever the slot), so the same
// run ends serve the ceilings. The prefix sums run in double, so their differences lose
// nothing.
//
// The cap does the most for speed. Once the count from query i down reaches npos - 1, every
// earlier key sits at the cap: its term is the constant z_i[npos - 1], and no gradient flows
// through its gate (dc_j/dg = 0 there, and dg_t only sums keys j <= t, all capped when t is).
// So a row walks down from its query a chunk of keys at a time and stops at the first chunk
// whose total reaches the cap: the gates, positions and gate gradients of the keys below
// (`start`, most of a long row) are never computed, and their logits take one add. With
// gates near 1/2 that is after about 2 npos keys, whatever the row's length.
// c_j = min(sum_{t=j..hi-1} g_t + acc, cap) for the keys j in [lo, hi), walking down from
// hi - 1 with the running total `acc` of the keys above; returns the total at lo. Four keys at
// a time: their partial sums do not wait for the running total, which then takes one
// addition per four keys. Every c_j is still rounded from one addition to the total before
// it, so c never falls as j falls (what CopeTerm::grad relies on). Called on chunks whose
// length is a multiple of four, it groups the keys exactly as one call over the whole row.
template <class T>
T suffix_positions(const T* g, T* c, int64_t lo, int64_t hi, T acc, T cap) {
  int64_t j = hi - 1;
  for (; j >= lo + 3; j -= 4) {
    const T p1 = g[j], p2 = p1 + g[j - 1], p3 = p2 + g[j - 2], p4 = p3 + g[j - 3];
    c[j] = std::min(acc + p1, cap);
    c[j - 1] = std::min(acc + p2, cap);
    c[j - 2] = std::min(acc + p3, cap);
    acc += p4;
    c[j - 3] = std::min(acc, cap);
  }
  for (; j >= lo; --j) {
    acc += g[j];
    c[j] = std::min(acc, cap);
  }
  return acc;
}

#if defined(__AVX512F__)
// x with its lanes moved up by N, zeros coming in at the bottom. (The maskz forms of the
// intrinsics, all lanes set: GCC 12 warns on the plain ones' undefined source.)
template <int N>
__m512 lanes_up(__m512 x) {
  return _mm512_castsi512_ps(
      _mm512_maskz_alignr_epi32(__mmask16(0xFFFF), _mm512_castps_si512(x), _mm512_setzero_si512(), 16 - N));
}
template <int N>
__m512d lanes_up(__m512d x) {
  return _mm512_castsi512_pd(
      _mm512_maskz_alignr_epi64(__mmask8(0xFF), _mm512_castpd_si512(x), _mm512_setzero_si512(), 8 - N));
}
// Inclusive prefix sums across the lanes of one vector: log2(lanes) adds of the vector with
// its lanes moved up by 1, 2, 4 (and 8).
inline __m512 scan16(__m512 x) {
  x = _mm512_add_ps(x, lanes_up<1>(x));
  x = _mm512_add_ps(x, lanes_up<2>(x));
  x = _mm512_add_ps(x, lanes_up<4>(x));
  return _mm512_add_ps(x, lanes_up<8>(x));
}
inline __m512d scan8(__m512d x) {
  x = _mm512_add_pd(x, lanes_up<1>(x));
  x = _mm512_add_pd(x, lanes_up<2>(x));
  return _mm512_add_pd(x, lanes_up<4>(x));
}
// The sum and the largest of the sixteen lanes of x (in a tree: halves, quarters, ...).
inline __m512 lanes_fold(__m512 x, bool max) {
  const __mmask16 all = 0xFFFF;
  auto step = [&](__m512 y) { return max ? _mm512_maskz_max_ps(all, x, y) : _mm512_add_ps(x, y); };
  x = step(_mm512_maskz_shuffle_f32x4(all, x, x, 0x4E));  // 256-bit halves swapped
  x = step(_mm512_maskz_shuffle_f32x4(all, x, x, 0xB1));  // 128-bit quarters swapped in pairs
  x = step(_mm512_maskz_permute_ps(all, x, 0x4E));        // 64-bit pairs swapped
  x = step(_mm512_maskz_permute_ps(all, x, 0xB1));        // neighbours swapped
  return x;
}
inline float lanes_sum(__m512 x) { return _mm512_cvtss_f32(lanes_fold(x, false)); }
inline float lanes_max(__m512 x) { return _mm512_cvtss_f32(lanes_fold(x, true)); }
// The last lane of x in every lane.
inline __m512 last_lane(__m512 x) { return _mm512_maskz_permutexvar_ps(__mmask16(0xFFFF), _mm512_set1_epi32(15), x); }
inline __m512d last_lane(__m512d x) { return _mm512_maskz_permutexvar_pd(__mmask8(0xFF), _mm512_set1_epi64(7), x); }
#elif defined(__AVX2__)
// The AVX2 forms: inclusive prefix sums across the lanes of one vector, each 128-bit half
// scanned by byte shifts (which stay inside a half) and then the low half's total added to
// the high half; and the last lane in every lane.
inline __m256 scan8(__m256 x) {
  x = _mm256_add_ps(x, _mm256_castsi256_ps(_mm256_slli_si256(_mm256_castps_si256(x), 4)));
  x = _mm256_add_ps(x, _mm256_castsi256_ps(_mm256_slli_si256(_mm256_castps_si256(x), 8)));
  const __m256 totals = _mm256_permute_ps(x, 0xFF);                 // each half's last lane, in all four
  return _mm256_add_ps(x, _mm256_permute2f128_ps(totals, totals, 0x08));  // low half zero, high half the low total
}
inline __m256d scan4(__m256d x) {
  x = _mm256_add_pd(x, _mm256_castsi256_pd(_mm256_slli_si256(_mm256_castpd_si256(x), 8)));
  const __m256d totals = _mm256_permute_pd(x, 0xF);
  return _mm256_add_pd(x, _mm256_permute2f128_pd(totals, totals, 0x08));
}
inline __m256 last_lane(__m256 x) { return _mm256_permutevar8x32_ps(x, _mm256_set1_epi32(7)); }
inline __m256d last_lane(__m256d x) { return _mm256_permute4x64_pd(x, 0xFF); }
#endif

// Keys per step of the walk down a row in CopeTerm::logits: a multiple of four (see above).
constexpr int64_t kCopeChunk = 32;

template <class T>
struct CopeTerm {
  // Per thread: the block's gates and clamped positions, row r at r·kv (or every row at 0
  // when the forward does not keep them), each row's first uncapped key, the backward's
  // per-key values (see grad) and run ends, and with a table the block's z and dz rows.
  struct Scratch {
    std::vector<T> g, c, dg, zblock, dzblock;
    std::vector<int64_t> start;
    std::vector<int32_t> floors;  // below npos
    std::vector<int64_t> end;
    std::vector<double> lo_sum, hi_sum;
    const T* z = nullptr;  // the block's z rows, row r at r·npos
    T* dz = nullptr;       // where grad() writes their gradient
    Scratch(int64_t elements, int64_t Tk, int64_t npos, bool table)
        : g(size_t(elements)), c(size_t(elements)), dg(size_t(Tk)),
          zblock(table ? size_t(kQueryBlock * npos) : 0), dzblock(table ? size_t(kQueryBlock * npos) : 0),
          start(size_t(kQueryBlock)), floors(size_t(Tk)), end(size_t(npos)), lo_sum(size_t(Tk)), hi_sum(size_t(Tk)) {}
  };
  T scale;
  int64_t Tq, npos;
  bool official;
  // Either z itself, [bh·Tq, npos] with row b·Tq + i for query i of batch·head b (and dZ, the
  // same shape, written by grad()), or the table E [npos, Dh]: each block then computes its
  // z rows as Q_block Eᵀ, and its backward adds dz E to dq and Q_blockᵀ dz to dE[b], [bh,
  // npos, Dh], one table gradient per batch·head (summed in order by the caller). With E, Z
  // may be given too: the forward writes the z rows there and the backward reads them back.
  T* Z = nullptr;  // written only by a forward with E
  T* dZ = nullptr;
  const T* E = nullptr;
  const T* Et = nullptr;  // E transposed, [Dh, npos]
  T* dE = nullptr;
  const Mats<const T>* Q = nullptr;
  const Mats<T>* dQ = nullptr;
  int64_t Dh = 0;

  Scratch scratch(int64_t elements, int64_t Tk) const { return Scratch(elements, Tk, npos, E != nullptr); }
  T softmax_scale() const { return T(1); }

  void begin_block(int64_t b, int64_t r0, int64_t nq, Scratch& sc) const {
    T* rows = Z ? Z + (b * Tq + r0) * npos : nullptr;  // the block's rows of z, if given
    if (!E) {
      sc.z = rows;
      sc.dz = dZ ? dZ + (b * Tq + r0) * npos : nullptr;
      return;
    }
    sc.dz = sc.dzblock.data();
    if (rows && dQ) {  // the backward, with the forward's z kept
      sc.z = rows;
      return;
    }
    T* zb = rows ? rows : sc.zblock.data();
    product(false, nq, npos, Dh, 1.0, (*Q)(b, r0), Q->ld, Et, npos, false, zb, npos);  // z = q Eᵀ
    sc.z = zb;
  }

  void end_block_backward(int64_t b, int64_t r0, int64_t nq, Scratch& sc) const {
    if (!E) return;
    product(false, nq, Dh, npos, 1.0, sc.dz, npos, E, Dh, true, (*dQ)(b, r0), dQ->ld);  // dq += dz E
    product(true, npos, Dh, nq, 1.0, sc.dz, npos, (*Q)(b, r0), Q->ld, true, dE + b * npos * Dh,
            Dh);  // dE[b] += dzᵀ q
  }

  void logits(T* s, int64_t nq, int64_t kv, int64_t /*b*/, int64_t r0, int64_t shift, Scratch& sc, bool keep) const {
    const T cap = T(npos - 1), sc_ = scale;
    for (int64_t r = 0; r < nq; ++r) {
      const int64_t n = r0 + r + shift + 1;
      T* row = s + r * kv;
      T* g = sc.g.data() + (keep ? r * kv : 0);
      T* c = sc.c.data() + (keep ? r * kv : 0);
      const T* z = sc.z + r * npos;
      // Down from the query, a chunk at a time, until the count reaches the cap: keys below
      // `start` are all capped.
      int64_t start = n;
      T acc = 0;
      while (start > 0 && acc < cap) {
        const int64_t hi = start;
        start = std::max<int64_t>(0, hi - kCopeChunk);
#pragma omp simd
        for (int64_t j = start; j < hi; ++j) g[j] = T(1) / (T(1) + exp_of(-row[j] * sc_));
        acc = suffix_positions(g, c, start, hi, acc, cap);
      }
      sc.start[size_t(r)] = start;
      const T zcap = z[npos - 1];
      if (official) {
#pragma omp simd
        for (int64_t j = 0; j < start; ++j) row[j] = (row[j] + zcap) * sc_;
      } else {
#pragma omp simd
        for (int64_t j = 0; j < start; ++j) row[j] = row[j] * sc_ + zcap;
      }
#if defined(__AVX512F__)
      if constexpr (std::is_same_v<T, float>) {
        if (npos <= CopeTableInRegisters::kTableInRegisters) {
          window_in_registers(row, c, z, start, n);
          continue;
        }
      }
#elif defined(__AVX2__)
      if constexpr (std::is_same_v<T, float>) {
        window_gathered(row, c, z, start, n);
        continue;
      }
#endif
      if (official) {
#pragma omp simd
        for (int64_t j = start; j < n; ++j) row[j] = (row[j] + CopeInterp<T>(c[j]).at(z)) * sc_;
      } else {
#pragma omp simd
        for (int64_t j = start; j < n; ++j) row[j] = row[j] * sc_ + CopeInterp<T>(c[j]).at(z);
      }
    }
  }

#if defined(__AVX512F__)
  // The last loop of logits() for f32, over the uncapped keys [start, n), the table in
  // registers (cope_interp.h).
  void window_in_registers(float* row, const float* c, const float* z, int64_t start, int64_t n) const {
    const CopeTableInRegisters table(z, npos);
    const __m512 s = _mm512_set1_ps(scale);
    for (int64_t j = start; j < n; j += 16) {
      const __mmask16 m = first_lanes(n - j);
      const __m512 term = table.at(CopeInterp16(_mm512_maskz_loadu_ps(m, c + j)));
      const __m512 x = _mm512_maskz_loadu_ps(m, row + j);
      const __m512 y = official ? _mm512_mul_ps(_mm512_add_ps(x, term), s) : _mm512_fmadd_ps(x, s, term);
      _mm512_mask_storeu_ps(row + j, m, y);
    }
  }
#elif defined(__AVX2__)
  // The same loop on AVX2, eight keys at a time, the table read by gathers (cope_interp.h).
  void window_gathered(float* row, const float* c, const float* z, int64_t start, int64_t n) const {
    const __m256 s = _mm256_set1_ps(scale);
    for (int64_t j = start; j < n; j += 8) {
      const __m256i m = first_lanes8(n - j);
      const __m256 term = cope_table_at(z, CopeInterp8(_mm256_maskload_ps(c + j, m)));
      const __m256 x = _mm256_maskload_ps(row + j, m);
      const __m256 y = official ? _mm256_mul_ps(_mm256_add_ps(x, term), s) : _mm256_fmadd_ps(x, s, term);
      _mm256_maskstore_ps(row + j, m, y);
    }
  }
#endif

  // Steps (1)-(3) of grad() for the keys [start, n) of a row with gradient d, gates g and
  // positions c: each key's floor, the prefix sums over [start, t] of its floor and ceiling
  // shares of dterm and of its own term of dg, and the gates' gradient added to d. Returns the
  // sum of their dterm.
  double key_gradients(T* d, const T* g, const T* c, const T* z, int64_t start, int64_t n, int32_t* floors,
                       double* lo_sum, double* hi_sum, T* dg) const {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
      if (npos <= CopeTableInRegisters::kTableInRegisters)
        return key_gradients_in_registers(d, g, c, z, start, n, floors, lo_sum, hi_sum);
    }
#elif defined(__AVX2__)
    if constexpr (std::is_same_v<T, float>) return key_gradients_gathered(d, g, c, z, start, n, floors, lo_sum, hi_sum);
#endif
    const T cap = T(npos - 1), dterm_scale = official ? scale : T(1);
    double uncapped = 0;
#pragma omp simd reduction(+ : uncapped)
    for (int64_t t = start; t < n; ++t) {  // (1)
      const T dterm = d[t] * dterm_scale;
      const CopeInterp<T> ip(c[t]);
      floors[t] = int32_t(ip.lo);
      lo_sum[t] = double((T(1) - ip.w) * dterm);
      hi_sum[t] = double(ip.w * dterm);
      uncapped += double(dterm);
      dg[t] = c[t] < cap ? dterm * (z[ip.hi] - z[ip.lo]) : T(0);
    }
    double lo_acc = 0, hi_acc = 0;
    T dg_acc = 0;
    for (int64_t t = start; t < n; ++t) {  // (2)
      lo_acc += lo_sum[t];
      lo_sum[t] = lo_acc;
      hi_acc += hi_sum[t];
      hi_sum[t] = hi_acc;
      dg_acc += dg[t];
      dg[t] = dg_acc;
    }
#pragma omp simd
    for (int64_t t = start; t < n; ++t) d[t] += dg[t] * g[t] * (T(1) - g[t]);  // (3)
    return uncapped;
  }

#if defined(__AVX512F__)
  // key_gradients for f32 in one pass, sixteen keys at a time: the table in registers
  // (cope_interp.h), the prefix sums taken inside each vector (scan16, scan8) and carried
  // from one vector to the next, the double shares eight at a time.
  double key_gradients_in_registers(float* d, const float* g, const float* c, const float* z, int64_t start,
                                    int64_t n, int32_t* floors, double* lo_sum, double* hi_sum) const {
    const CopeTableInRegisters table(z, npos);
    const __m512 dterm_scale = _mm512_set1_ps(official ? scale : 1.0f), cap = _mm512_set1_ps(float(npos - 1));
    const __m512 one = _mm512_set1_ps(1.0f);
    // Sixteen floats as two vectors of eight doubles, through memory: GCC 12 warns on the
    // register forms (their undefined source), and on the plain conversions, hence maskz.
    alignas(64) float spill[16];
    auto widen = [&](__m512 x, __m512d& low, __m512d& high) {
      _mm512_store_ps(spill, x);
      low = _mm512_maskz_cvtps_pd(__mmask8(0xFF), _mm256_load_ps(spill));
      high = _mm512_maskz_cvtps_pd(__mmask8(0xFF), _mm256_load_ps(spill + 8));
    };
    // The running sums of the keys before the vector, in every lane.
    __m512 dg_acc = _mm512_setzero_ps();
    __m512d lo_acc = _mm512_setzero_pd(), hi_acc = _mm512_setzero_pd(), total = _mm512_setzero_pd();
    // x's prefix sums, added to the running sum acc, stored to sum[t..t+16) under the masks;
    // acc becomes the last of them.
    auto carry_into = [](__m512d low, __m512d high, __m512d& acc, double* sum, __mmask8 m0, __mmask8 m1) {
      low = _mm512_add_pd(scan8(low), acc);
      high = _mm512_add_pd(scan8(high), last_lane(low));
      _mm512_mask_storeu_pd(sum, m0, low);
      _mm512_mask_storeu_pd(sum + 8, m1, high);
      acc = last_lane(high);
    };
    for (int64_t t = start; t < n; t += 16) {
      const __mmask16 m = first_lanes(n - t);
      const __mmask8 m0 = __mmask8(m), m1 = __mmask8(m >> 8);
      const __m512 cv = _mm512_maskz_loadu_ps(m, c + t), dv = _mm512_maskz_loadu_ps(m, d + t);
      const __m512 dterm = _mm512_mul_ps(dv, dterm_scale);
      const CopeInterp16 ip(cv);
      const __m512 dgt = _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(cv, cap, _CMP_LT_OQ), dterm,
                                             _mm512_sub_ps(table.at(ip.hi), table.at(ip.lo)));
      const __m512 dgs = _mm512_add_ps(scan16(dgt), dg_acc);
      dg_acc = last_lane(dgs);
      const __m512 gv = _mm512_maskz_loadu_ps(m, g + t);
      _mm512_mask_storeu_ps(d + t, m, _mm512_fmadd_ps(_mm512_mul_ps(dgs, gv), _mm512_sub_ps(one, gv), dv));
      _mm512_mask_storeu_epi32(floors + t, m, ip.lo);
      __m512d low, high;
      widen(_mm512_mul_ps(_mm512_sub_ps(one, ip.w), dterm), low, high);
      carry_into(low, high, lo_acc, lo_sum + t, m0, m1);
      widen(_mm512_mul_ps(ip.w, dterm), low, high);
      carry_into(low, high, hi_acc, hi_sum + t, m0, m1);
      widen(dterm, low, high);
      total = _mm512_add_pd(total, _mm512_add_pd(low, high));
    }
    alignas(64) double lanes[8];
    _mm512_store_pd(lanes, total);
    double sum = 0;
    for (double x : lanes) sum += x;
    return sum;
  }
#elif defined(__AVX2__)
  // key_gradients for f32 on AVX2 in one pass, eight keys at a time: the table read by
  // gathers (cope_interp.h), the prefix sums as in key_gradients_in_registers, the double
  // shares four at a time.
  double key_gradients_gathered(float* d, const float* g, const float* c, const float* z, int64_t start, int64_t n,
                                int32_t* floors, double* lo_sum, double* hi_sum) const {
    const __m256 dterm_scale = _mm256_set1_ps(official ? scale : 1.0f), cap = _mm256_set1_ps(float(npos - 1));
    const __m256 one = _mm256_set1_ps(1.0f);
    // The running sums of the keys before the vector, in every lane.
    __m256 dg_acc = _mm256_setzero_ps();
    __m256d lo_acc = _mm256_setzero_pd(), hi_acc = _mm256_setzero_pd(), total = _mm256_setzero_pd();
    // x's prefix sums, in double, added to the running sum acc, stored to sum[t..t+8) under the
    // masks of its two halves; acc becomes the last of them.
    auto carry_into = [](__m256 x, __m256d& acc, double* sum, __m256i m0, __m256i m1) {
      const __m256d low = _mm256_add_pd(scan4(_mm256_cvtps_pd(_mm256_castps256_ps128(x))), acc);
      const __m256d high = _mm256_add_pd(scan4(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1))), last_lane(low));
      _mm256_maskstore_pd(sum, m0, low);
      _mm256_maskstore_pd(sum + 4, m1, high);
      acc = last_lane(high);
    };
    for (int64_t t = start; t < n; t += 8) {
      const __m256i m = first_lanes8(n - t);
      const __m256i m0 = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(m));
      const __m256i m1 = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(m, 1));
      const __m256 cv = _mm256_maskload_ps(c + t, m), dv = _mm256_maskload_ps(d + t, m);
      const __m256 dterm = _mm256_mul_ps(dv, dterm_scale);
      const CopeInterp8 ip(cv);
      const __m256 zlo = _mm256_i32gather_ps(z, ip.lo, 4), zhi = _mm256_i32gather_ps(z, ip.hi, 4);
      const __m256 dgt =
          _mm256_and_ps(_mm256_cmp_ps(cv, cap, _CMP_LT_OQ), _mm256_mul_ps(dterm, _mm256_sub_ps(zhi, zlo)));
      const __m256 dgs = _mm256_add_ps(scan8(dgt), dg_acc);
      dg_acc = last_lane(dgs);
      const __m256 gv = _mm256_maskload_ps(g + t, m);
      _mm256_maskstore_ps(d + t, m, _mm256_fmadd_ps(_mm256_mul_ps(dgs, gv), _mm256_sub_ps(one, gv), dv));
      _mm256_maskstore_epi32(reinterpret_cast<int*>(floors + t), m, ip.lo);
      carry_into(_mm256_mul_ps(_mm256_sub_ps(one, ip.w), dterm), lo_acc, lo_sum + t, m0, m1);
      carry_into(_mm256_mul_ps(ip.w, dterm), hi_acc, hi_sum + t, m0, m1);
      total = _mm256_add_pd(total, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(dterm)),
                                                 _mm256_cvtps_pd(_mm256_extractf128_ps(dterm, 1))));
    }
    alignas(32) double lanes[4];
    _mm256_store_pd(lanes, total);
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  }
#endif

  // Per row: (1) a vector pass gives each uncapped key t its floor, its shares of dterm for
  // the floor and ceiling slots and its own term of dg; (2) a serial pass turns those into
  // prefix sums from the first uncapped key; (3) a vector pass adds the gates' gradient to
  // the row (in f32 the three are one vector pass: key_gradients_in_registers on AVX-512,
  // key_gradients_gathered on AVX2); then each floor's last key is found, and (4) dz comes
  // from the prefix sums at the run ends. The capped keys below `start` all read slot
  // npos - 1 with w = 0 and pass nothing to the gates: their one sum stands for them, as key
  // start - 1.
  void grad(T* ds, int64_t nq, int64_t kv, int64_t /*b*/, int64_t r0, int64_t shift, Scratch& sc) const {
    const int64_t top = npos - 1;
    double* lo_sum = sc.lo_sum.data();  // prefix sums of (1 - w_t) dterm_t, the floor shares
    double* hi_sum = sc.hi_sum.data();  // and of w_t dterm_t, the ceiling shares
    T* dg = sc.dg.data();               // dterm_t (z[ceil] - z[floor]), then its prefix sums dg_t
    int32_t* floors = sc.floors.data();
    int64_t* end = sc.end.data();       // end[p]: the last key whose floor is p, or -1
    for (int64_t r = 0; r < nq; ++r) {
      const int64_t n = r0 + r + shift + 1, start = sc.start[size_t(r)];
      T* d = ds + r * kv;
      const T* g = sc.g.data() + r * kv;
      const T* c = sc.c.data() + r * kv;
      const T* z = sc.z + r * npos;
      const double uncapped = key_gradients(d, g, c, z, start, n, floors, lo_sum, hi_sum, dg);  // sum of their dterm
      std::fill(end, end + npos, int64_t(-1));
      // A softmax's logit gradients sum to zero over the row (sum_j P_j (dP_j - D) = D - D),
      // so the capped keys' sum is minus the others': the floor shares' sum before `start`,
      // where the prefix sums start from 0, is -uncapped, and their long prefix is never read.
      double lo_capped = 0;
      if (start > 0) {
        lo_capped = -uncapped;
        lo_sum[start - 1] = 0;
        hi_sum[start - 1] = 0;
        end[top] = start - 1;
      }
      for (int64_t t = start; t < n; ++t) end[floors[t]] = t;  // a store, no load
      // The keys whose floor is p are those after the last key with a higher floor, up to
      // its own last one: with last(p) the last key whose floor is >= p (-1 for none, where
      // the sums are 0), the floor shares of slot p are lo_sum[last(p)] - lo_sum[last(p + 1)]
      // and the ceiling shares hi_sum[last(p - 1)] - hi_sum[last(p)] (last(-1) = n - 1). The
      // top slot's floor shares take the capped keys' sum too.
      T* dz = sc.dz + r * npos;
      int64_t last = -1;             // last(p + 1), then last(p)
      double lo_above = -lo_capped;  // lo_sum at last(p + 1), less the capped keys' sum at the top
      auto at = [](const double* sum, int64_t key) { return key >= 0 ? sum[key] : 0.0; };
      for (int64_t p = top; p >= 0; --p) {
        last = std::max(last, end[p]);
        const int64_t below = p > 0 ? std::max(last, end[p - 1]) : n - 1;  // last(p - 1)
        const double lo_here = at(lo_sum, last);
        dz[p] = T((lo_here - lo_above) + (at(hi_sum, below) - at(hi_sum, last)));
        lo_above = lo_here;
      }
    }
  }
};

// What the forward and the backward share: the block's logits turned into probabilities.
// s [nq, kv] holds the logits divided by `scale` on entry; on exit P = softmax over each
// row's visible keys (zeros after them). With `lse_out` given (forward) the rows' log-sum-exp
// are written there, and each exp is kept as it is summed and then divided by the sum;
// otherwise (backward) P = exp(logit - lse) with the lse read from `lse_in`. (The two
// differ by rounding only.) The scale is positive, so the largest scaled logit is the
// largest logit scaled.
template <class T>
void block_probs(T* s, int64_t nq, int64_t kv, int64_t first_query, T scale, T* lse_out, const T* lse_in) {
  for (int64_t r = 0; r < nq; ++r) {
    T* row = s + r * kv;
    const int64_t n = first_query + r + 1;  // visible keys of this row
    const T sc = scale;
    if (lse_out) {
      const T mx = row_max(row, n) * sc;
      const double sum = row_sum<T>(n, [=](int64_t j) {
        const T e = exp_of(row[j] * sc - mx);
        row[j] = e;
        return e;
      });
      lse_out[r] = T(double(mx) + std::log(sum));
      const T inv = T(1.0 / sum);
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) row[j] *= inv;
    } else {
      const T l = lse_in[r];
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) row[j] = exp_of(row[j] * sc - l);
    }
    std::fill(row + n, row + kv, T(0));
  }
}

#if defined(__AVX512F__)
// block_probs for f32, sixteen keys at a time with a masked last vector, lanes folded in a
// tree: a row of a block is short (its visible keys), so the scalar tail an `omp simd` loop
// leaves (an exp per element) and a lane-by-lane reduction would be much of a row's work.
// The sum of a row's exps is taken in float lanes, added in double at the end.
void block_probs(float* s, int64_t nq, int64_t kv, int64_t first_query, float scale, float* lse_out,
                 const float* lse_in) {
  const __m512 sc = _mm512_set1_ps(scale);
  for (int64_t r = 0; r < nq; ++r) {
    float* row = s + r * kv;
    const int64_t n = first_query + r + 1;  // visible keys of this row
    if (lse_out) {
      __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
      for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = first_lanes(n - j);
        mx = _mm512_mask_max_ps(mx, m, mx, _mm512_maskz_loadu_ps(m, row + j));
      }
      const __m512 top = _mm512_set1_ps(lanes_max(mx) * scale);
      __m512 sum = _mm512_setzero_ps();
      for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = first_lanes(n - j);
        const __m512 e = _mm512_maskz_mov_ps(m, exp16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(m, row + j), sc, top)));
        _mm512_mask_storeu_ps(row + j, m, e);
        sum = _mm512_add_ps(sum, e);
      }
      const double total = double(lanes_sum(sum));
      lse_out[r] = float(double(_mm512_cvtss_f32(top)) + std::log(total));
      const __m512 inv = _mm512_set1_ps(float(1.0 / total));
      for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = first_lanes(n - j);
        _mm512_mask_storeu_ps(row + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + j), inv));
      }
    } else {
      const __m512 l = _mm512_set1_ps(lse_in[r]);
      for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = first_lanes(n - j);
        _mm512_mask_storeu_ps(row + j, m, exp16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(m, row + j), sc, l)));
      }
    }
    std::fill(row + n, row + kv, 0.0f);
  }
}
#endif

template <class T, class Term>
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
  constexpr bool transposed = kTransposedKeys<T>;
  const int64_t ldt = transposed ? transposed_stride(Tk) : Dh;
  Tensor keys_buffer, values_buffer;
  if (transposed || rot) keys_buffer = Tensor::empty({bh, transposed ? Dh * ldt : Tk * Dh}, q.dtype());
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
    auto scratch = term.scratch(Tk, Tk);  // one row at a time: the forward keeps nothing
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < bh * blocks; ++item) {
      const int64_t b = item / blocks, r0 = (item % blocks) * kQueryBlock;
      const int64_t nq = std::min(kQueryBlock, Tq - r0), kv = r0 + nq + shift;  // keys the block's last row sees
      const auto [qb, ldq] = block_queries(Q, rot, b, r0, nq, r0 + shift, qr.data(), Dh);
      const int64_t seen = r0 + shift;  // the block's first query sees keys <= seen
      product_bt(nq, kv, Dh, qb, ldq, keys_of(b), s.data(), seen);  // s = q kᵀ
      term.begin_block(b, r0, nq, scratch);
      term.logits(s.data(), nq, kv, b, r0, shift, scratch, false);
      block_probs(s.data(), nq, kv, r0 + shift, term.softmax_scale(), L + b * Tq + r0, static_cast<const T*>(nullptr));
      if (p > 0)
        for (int64_t r = 0; r < nq; ++r) {
          const int64_t n = r0 + r + shift + 1;
          keep.row(m.data(), n, uint64_t((b * Tq + r0 + r) * Tk));
          T* row = s.data() + r * kv;
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) row[j] *= m[size_t(j)];
        }
      const HeadRows<T> values = values_of(b);
      product(false, nq, Dh, kv, 1.0, s.data(), kv, values.p, values.ld, false, O(b, r0), O.ld, Causal::a_rows,
              seen);  // out = P v
    }
  }
}

template <class T, class Term>
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
    constexpr bool transposed = kTransposedKeys<T>;
    const int64_t ldt = transposed ? transposed_stride(Tk) : Dh;
    std::vector<T> kr(size_t(Tk * Dh)), kread(transposed ? size_t(Dh * ldt) : 0),
        vread(transposed ? size_t(Dh * ldt) : size_t(Tk * Dh)), dkr(size_t(Tk * Dh)), dvr(size_t(Tk * Dh));
    const HeadRows<T> keys{transposed ? kread.data() : kr.data(), ldt}, values{vread.data(), ldt};
    std::vector<T> qr(rot ? size_t(kQueryBlock * Dh) : 0), dqr(rot ? size_t(kQueryBlock * Dh) : 0);
    auto scratch = term.scratch(kQueryBlock * Tk, Tk);
#pragma omp for schedule(dynamic)
    for (int64_t b = 0; b < bh; ++b) {
      if (rot) rot.rows(K(b), K.ld, kr.data(), Dh, Tk, 0, T(1));
      else copy_rows(K(b), K.ld, kr.data(), Dh, Tk, Dh);
      if (transposed) {
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
        product_bt(nq, kv, Dh, qb, ldq, keys, P.data(), seen);  // P = q kᵀ
        term.begin_block(b, r0, nq, scratch);
        term.logits(P.data(), nq, kv, b, r0, shift, scratch, true);
        block_probs(P.data(), nq, kv, r0 + shift, term.softmax_scale(), static_cast<T*>(nullptr), L + b * Tq + r0);
        product_bt(nq, kv, Dh, dO(b, r0), dO.ld, values, dP.data(), seen);  // dP = dO vᵀ
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

// CopeTerm reads q itself (its z = q·eᵀ), unturned: the two do not combine.
void check_rotation(const AttentionCope& cope, const AttentionRotation& rot) {
  COPPER_CHECK(!rot.cs.defined() || (!cope.z.defined() && !cope.e.defined()), "attention",
               "RoPE's rotation and CoPE's term do not combine in one kernel call. HINT: rotate q and k with "
               "rotate_pairs and pass no tables");
}

}  // namespace

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                           int64_t bh, int64_t Tq, int64_t Tk, int64_t Dh, double scale, double p, uint64_t key,
                           const AttentionCope& cope, const AttentionRotation& rot) {
  check_rotation(cope, rot);
  const Keep keep{key, float(p), 1.0 / (1.0 - p)};
  const SerialBlas serial;
  COPPER_DISPATCH_FLOAT(q.dtype(), "attention", [&] {
    with_term<T>(cope, scale, bh, Tq, q, Tensor(), [&](const auto& term) {
      attention_forward<T>(q, k, v, out, lse, bh, Tq, Tk, Dh, p, keep, term, Rotation<T>(rot, Dh));
    });
  });
}

void CpuBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                    const Tensor& lse, const Tensor& dout, const Tensor& dq, const Tensor& dk,
                                    const Tensor& dv, int64_t bh, int64_t Tq, int64_t Tk, int64_t Dh, double scale,
                                    double p, uint64_t key, const AttentionCope& cope,
                                    const AttentionRotation& rot) {
  check_rotation(cope, rot);
  const Keep keep{key, float(p), 1.0 / (1.0 - p)};
  const SerialBlas serial;
  COPPER_DISPATCH_FLOAT(q.dtype(), "attention_backward", [&] {
    with_term<T>(cope, scale, bh, Tq, q, dq, [&](const auto& term) {
      attention_backward_impl<T>(q, k, v, out, lse, dout, dq, dk, dv, bh, Tq, Tk, Dh, scale, p, keep, term,
                                 Rotation<T>(rot, Dh));
    });
  });
}

}  // namespace copper
