// bf16_gemm.cpp — bf16 products with f32 sums (bf16_gemm.h): on AVX512_BF16 a register tile
// over pairs of k, elsewhere sgemm on the widened operands.
//
// VDPBF16PS takes, in each 32-bit lane, a pair of bf16 values from each operand and adds both
// products to the lane's f32 sum. So the operands are laid out in "words": two bf16 values
// along k, op(X)[2kk, x] in the lower half and op(X)[2kk + 1, x] in the upper. B is packed
// once per call into panels of 64 columns (the tile's width, as in packed_gemm.cpp), each a
// row of 64 words per pair of k; the tile broadcasts one word of A per row and multiplies it
// with four vectors of B's words, so the loop over k takes half the steps of the f32 tile's
// for the same multiply-adds. A is read where it lies when its rows hold the words already
// (A in rows, K even); otherwise (the weight gradient's transposed A, or an odd K) each band
// of rows is packed into words first, by the thread that multiplies it.
#include "tensor/cpu/bf16_gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "tensor/cpu/tiled_product.h"
#include "tensor/error.h"

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
#include <immintrin.h>

#include "tensor/cpu/lanes.h"
#endif

namespace copper::cpu {

namespace {
// The product takes the first K rows and n columns of the packed op(B).
void check_panels(int64_t n, int64_t K, const Bf16Panels& b) {
  if (n > b.width() || K > b.depth())
    throw Error(fmt::format("[bf16_gemm_panels] asks for {} x {} of a B packed as {} x {}. HINT: pack all of op(B) "
                            "that the products read", K, n, b.depth(), b.width()));
}
}  // namespace

void bf16_gemm_reference(int64_t m, int64_t n, int64_t K, const bf16* a, int64_t lda, bool trans_a, const bf16* b,
                         int64_t ldb, bool trans_b, bool accumulate, float* c, int64_t ldc, const float* bias) {
  if (m == 0 || n == 0) return;
  // Each operand as stored, widened into a dense f32 copy.
  auto widen = [](const bf16* x, int64_t rows, int64_t cols, int64_t ld) {
    std::vector<float> w(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j) w[size_t(r * cols + j)] = bf16_to_float(x[r * ld + j]);
    return w;
  };
  const int64_t a_cols = trans_a ? m : K, b_cols = trans_b ? K : n;
  const std::vector<float> wa = widen(a, trans_a ? K : m, a_cols, lda), wb = widen(b, trans_b ? n : K, b_cols, ldb);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, int(m), int(n),
              int(K), 1.0f, wa.data(), int(std::max<int64_t>(a_cols, 1)), wb.data(),
              int(std::max<int64_t>(b_cols, 1)), accumulate ? 1.0f : 0.0f, c, int(ldc));
  if (bias) add_bias_to_rows(m, n, bias, c, ldc);
}

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
// (A named namespace: the unity build compiles packed_gemm.cpp's own kPanel, tile_rows, ... in
// the same unit.)
namespace bf16_tile {

using Word = uint32_t;  // two bf16 values along k: the even k in the lower half

constexpr int kTileRows = 6;     // 6 rows by 4 vectors: 24 sums, 4 vectors of B, a broadcast
constexpr int kTileVectors = 4;
constexpr int64_t kLanes = 16;
constexpr int64_t kPanel = kLanes * kTileVectors;  // columns of B per packed panel
// The loops' blocks, the byte sizes of packed_gemm's f32 ones: a tile sums kDepth values of k
// (kDepth / 2 words) before it writes C, a panel's slice of 128 KB; a thread passes over
// every panel for kBand rows of A at a time (192 KB of A). kDepth is even, so every slice
// but the last starts and ends on whole words.
constexpr int64_t kDepth = 1024;
constexpr int64_t kBand = 96;

Word word_of(const bf16* p) {
  Word w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

// The words of op(X)[k, x], k < depth, x < width, into dst[kk·ldd + x] for kk = k / 2, the
// upper half 0 where k + 1 = depth. X's layout is one of two:
//   k_major: op(X)[k, x] = src[k·ld + x]. A row of words interleaves two rows of src, 32
//            values of each at a time (one two-source permute per 16 words).
//   else:    op(X)[k, x] = src[x·ld + k]. Each word lies whole in src's row x; sixteen rows'
//            words at a time, by a gather.
void pack_words(const bf16* src, int64_t ld, bool k_major, int64_t depth, int64_t width, Word* dst, int64_t ldd) {
  const int64_t whole = depth / 2;
  if (k_major) {
    alignas(64) static constexpr std::array<uint16_t, 64> kInterleave = [] {
      std::array<uint16_t, 64> idx{};  // word t: lo[t] and hi[t] (the permute's second source: +32)
      for (int t = 0; t < 32; ++t) idx[size_t(2 * t)] = uint16_t(t), idx[size_t(2 * t + 1)] = uint16_t(32 + t);
      return idx;
    }();
    const __m512i first = _mm512_load_si512(kInterleave.data()), second = _mm512_load_si512(kInterleave.data() + 32);
    for (int64_t kk = 0; kk < (depth + 1) / 2; ++kk) {
      const bf16* lo_row = src + 2 * kk * ld;
      const bf16* hi_row = kk < whole ? lo_row + ld : nullptr;
      Word* out = dst + kk * ldd;
      for (int64_t x = 0; x < width; x += 32) {
        const int64_t count = std::min<int64_t>(32, width - x);
        const __mmask32 m = count == 32 ? __mmask32(~0u) : __mmask32((1u << count) - 1);
        const __m512i lo = _mm512_maskz_loadu_epi16(m, lo_row + x);
        const __m512i hi = hi_row ? _mm512_maskz_loadu_epi16(m, hi_row + x) : _mm512_setzero_si512();
        _mm512_mask_storeu_epi32(out + x, first_lanes(count), _mm512_permutex2var_epi16(lo, first, hi));
        _mm512_mask_storeu_epi32(out + x + 16, first_lanes(count - 16), _mm512_permutex2var_epi16(lo, second, hi));
      }
    }
    return;
  }
  const bool gather = 16 * ld <= INT32_MAX;  // the gather's offsets are 32-bit
  const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(gather ? int(ld) : 0));
  for (int64_t x0 = 0; x0 < width; x0 += 16) {
    const int64_t count = std::min<int64_t>(16, width - x0);
    const bf16* base = src + x0 * ld;
    if (gather) {
      const __mmask16 m = first_lanes(count);
      for (int64_t kk = 0; kk < whole; ++kk)  // offsets in bf16 values: the scale is 2 bytes
        _mm512_mask_storeu_epi32(dst + kk * ldd + x0, m,
                                 _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, rows, base + 2 * kk, 2));
    } else {
      for (int64_t kk = 0; kk < whole; ++kk)
        for (int64_t t = 0; t < count; ++t) dst[kk * ldd + x0 + t] = word_of(base + t * ld + 2 * kk);
    }
    if (depth % 2)
      for (int64_t t = 0; t < count; ++t) dst[whole * ldd + x0 + t] = base[t * ld + depth - 1].bits;
  }
}

// One tile of R rows and V vectors of C, the last with `last` lanes (1..16): for each of
// `words` pairs of k, the panel's row of V vectors of words times each row's word of A,
// broadcast. The word of row r at pair kk is at a + r·rs + kk·ks (in bf16 values: A in place
// has rs = lda, ks = 2; a packed band rs = 2, ks = 2·rows). The bias, if any, is added as C
// is written (after the whole sum).
template <int R, int V>
void tile(int64_t words, const bf16* a, int64_t rs, int64_t ks, const Word* b, bool accumulate, float* c,
          int64_t ldc, int64_t last, const float* bias) {
  __m512 sum[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) sum[r][v] = _mm512_setzero_ps();
  for (int64_t kk = 0; kk < words; ++kk) {
    __m512bh row[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) row[v] = (__m512bh)_mm512_load_si512(b + kk * kPanel + kLanes * v);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512bh x = (__m512bh)_mm512_set1_epi32(int(word_of(a + r * rs + kk * ks)));
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) sum[r][v] = _mm512_dpbf16_ps(sum[r][v], x, row[v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      float* out = c + r * ldc + kLanes * v;
      const __mmask16 m = v == V - 1 ? first_lanes(last) : __mmask16(0xFFFF);
      __m512 y = sum[r][v];
      if (accumulate) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m, out));
      if (bias) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m, bias + kLanes * v));
      _mm512_mask_storeu_ps(out, m, y);
    }
}

using TileFn = void (*)(int64_t, const bf16*, int64_t, int64_t, const Word*, bool, float*, int64_t, int64_t,
                        const float*);
// tile<R, V> for every R <= kTileRows and V <= kTileVectors, at [(R - 1)·kTileVectors + V - 1].
template <int... I>
constexpr std::array<TileFn, sizeof...(I)> tiles_of(std::integer_sequence<int, I...>) {
  return {&tile<I / kTileVectors + 1, I % kTileVectors + 1>...};
}
constexpr auto kTiles = tiles_of(std::make_integer_sequence<int, kTileRows * kTileVectors>{});

struct PackedB {};  // the calling thread's panels of B
struct PackedA {};  // each thread's band of A, where A is packed

// The rows [r0, r1) of C, every column: the depth in slices of kDepth (the first written, the
// others added, the bias with the last), each in bands of kBand rows over every panel.
// The panels are `panel_words` words deep (the packed depth, K or more).
void tile_rows(int64_t r0, int64_t r1, int64_t n, int64_t K, const bf16* a, int64_t lda, bool trans_a,
               const Word* packed, int64_t panel_words, bool accumulate, float* c, int64_t ldc, const float* bias) {
  const int64_t panels = (n + kPanel - 1) / kPanel;
  const bool in_place = !trans_a && K % 2 == 0;
  Word* band_words = in_place ? nullptr : thread_scratch<PackedA, Word>(kBand * kDepth / 2);
  for (int64_t k0 = 0; k0 < K; k0 += kDepth) {
    const int64_t depth = std::min(kDepth, K - k0), words = (depth + 1) / 2;
    const bool add = accumulate || k0 > 0;
    const float* last_bias = k0 + depth == K ? bias : nullptr;
    for (int64_t band = r0; band < r1; band += kBand) {
      const int64_t rows = std::min(kBand, r1 - band);
      const bf16* ab = a + band * lda + k0;
      int64_t rs = lda, ks = 2;
      if (!in_place) {
        pack_words(trans_a ? a + k0 * lda + band : ab, lda, trans_a, depth, rows, band_words, rows);
        ab = reinterpret_cast<const bf16*>(band_words);
        rs = 2, ks = 2 * rows;
      }
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t j0 = p * kPanel, width = std::min(kPanel, n - j0);
        const int V = int((width + kLanes - 1) / kLanes);
        const int64_t last = width - kLanes * (V - 1);
        const Word* panel = packed + (p * panel_words + k0 / 2) * kPanel;
        for (int64_t i = 0; i < rows; i += kTileRows) {
          const int R = int(std::min<int64_t>(kTileRows, rows - i));
          kTiles[size_t((R - 1) * kTileVectors + V - 1)](words, ab + i * rs, rs, ks, panel, add,
                                                         c + (band + i) * ldc + j0, ldc, last,
                                                         last_bias ? last_bias + j0 : nullptr);
        }
      }
    }
  }
}

// Panel p of op(B) [K, n]: its columns [j0, j0 + width), then zeros to the panel's width.
void pack_panel(int64_t p, int64_t K, int64_t n, const bf16* b, int64_t ldb, bool trans_b, Word* packed) {
  const int64_t j0 = p * kPanel, width = std::min(kPanel, n - j0), panel_words = (K + 1) / 2;
  Word* dst = packed + p * panel_words * kPanel;
  pack_words(trans_b ? b + j0 * ldb : b + j0, ldb, !trans_b, K, width, dst, kPanel);
  if (width < kPanel)
    for (int64_t kk = 0; kk < panel_words; ++kk)
      std::memset(dst + kk * kPanel + width, 0, size_t(kPanel - width) * sizeof(Word));
}

}  // namespace bf16_tile

void bf16_gemm(int64_t m, int64_t n, int64_t K, const bf16* a, int64_t lda, bool trans_a, const bf16* b, int64_t ldb,
               bool trans_b, bool accumulate, float* c, int64_t ldc, const float* bias) {
  using namespace bf16_tile;
  if (m == 0 || n == 0) return;
  if (K == 0) return product_without_terms(m, n, accumulate, c, ldc, bias);
  const int64_t panels = (n + kPanel - 1) / kPanel, panel_words = (K + 1) / 2;
  Word* packed = thread_scratch<PackedB, Word>(panels * panel_words * kPanel);
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int64_t p = 0; p < panels; ++p) pack_panel(p, K, n, b, ldb, trans_b, packed);
    // (the for's barrier: every panel is packed before any thread reads one)
    const auto [r0, r1] = thread_rows(m, kTileRows, omp_get_thread_num(), omp_get_num_threads());
    tile_rows(r0, r1, n, K, a, lda, trans_a, packed, panel_words, accumulate, c, ldc, bias);
  }
}

void Bf16Panels::pack(int64_t K, int64_t n, const bf16* b, int64_t ldb, bool trans_b) {
  using namespace bf16_tile;
  K_ = K, n_ = n;
  const int64_t panels = (n + kPanel - 1) / kPanel;
  words_.resize(size_t(panels * ((K + 1) / 2) * kPanel));
  for (int64_t p = 0; p < panels; ++p) pack_panel(p, K, n, b, ldb, trans_b, words_.data());
}

void bf16_gemm_panels(int64_t m, int64_t n, int64_t K, const bf16* a, int64_t lda, bool trans_a, const Bf16Panels& b,
                      bool accumulate, float* c, int64_t ldc) {
  check_panels(n, K, b);
  if (m == 0 || n == 0) return;
  if (K == 0) return product_without_terms(m, n, accumulate, c, ldc, nullptr);
  bf16_tile::tile_rows(0, m, n, K, a, lda, trans_a, b.words_.data(), (b.K_ + 1) / 2, accumulate, c, ldc, nullptr);
}
#else
void bf16_gemm(int64_t m, int64_t n, int64_t K, const bf16* a, int64_t lda, bool trans_a, const bf16* b, int64_t ldb,
               bool trans_b, bool accumulate, float* c, int64_t ldc, const float* bias) {
  bf16_gemm_reference(m, n, K, a, lda, trans_a, b, ldb, trans_b, accumulate, c, ldc, bias);
}

void Bf16Panels::pack(int64_t K, int64_t n, const bf16* b, int64_t ldb, bool trans_b) {
  K_ = K, n_ = n;
  rows_.resize(size_t(K * n));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t j = 0; j < n; ++j) rows_[size_t(k * n + j)] = trans_b ? b[j * ldb + k] : b[k * ldb + j];
}

void bf16_gemm_panels(int64_t m, int64_t n, int64_t K, const bf16* a, int64_t lda, bool trans_a, const Bf16Panels& b,
                      bool accumulate, float* c, int64_t ldc) {
  check_panels(n, K, b);
  bf16_gemm_reference(m, n, K, a, lda, trans_a, b.rows_.data(), b.n_, false, accumulate, c, ldc);
}
#endif

}  // namespace copper::cpu
