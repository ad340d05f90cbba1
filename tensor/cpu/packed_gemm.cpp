// packed_gemm.cpp — the layers' f32 products on a register tile, B packed once (packed_gemm.h).
#include "tensor/cpu/packed_gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "tensor/cpu/gemm_tile.h"
#include "tensor/cpu/tiled_product.h"
#include "tensor/cpu/transpose.h"

namespace copper::cpu {

void packed_gemm_reference(int64_t m, int64_t n, int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb,
                           bool trans_b, bool accumulate, float* c, int64_t ldc, const float* bias) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, int(m), int(n), int(K), 1.0f, a,
              int(lda), b, int(ldb), accumulate ? 1.0f : 0.0f, c, int(ldc));
  if (bias) add_bias_to_rows(m, n, bias, c, ldc);
}

#if defined(__AVX512F__) || defined(__AVX2__)
namespace {

using gemm_tile::kLanes;
using gemm_tile::kTileRows;
using gemm_tile::kTileVectors;

constexpr int64_t kPanel = kLanes * kTileVectors;  // columns of B per packed panel: the tile's width
// The loops' blocks, for a core's caches: a tile sums at most kDepth values of k before it
// writes C (a panel's slice of kDepth rows is 128 KB on AVX-512, 48 KB on AVX2, in L2), and a
// thread passes over every panel for kBand rows of A at a time (192 KB of A at kDepth, in L2).
constexpr int64_t kDepth = 512;
constexpr int64_t kBand = 96;
// The products packed_gemm takes: enough rows for every thread to have several bands, no
// dimension so small that the tile is mostly edge, and B narrow: at most kMaxColumns columns,
// or at most kMaxDepth rows (a layer's width either way). Where B is large both ways (a
// square product of 1024, or 512 deep and 1536 wide) the rows of A are read again for so many
// panels that BLAS, which packs them, is as fast or faster; on AVX2 already at 512 columns
// (docs/PERF.md).
constexpr int64_t kMinRows = 256, kMinColumns = 32, kMinDepth = 32, kMaxDepth = 384;
constexpr int64_t kMaxColumns = kLanes == 16 ? 512 : 256;

// Panel p of op(B) into packed[p·K·kPanel ...]: its K rows of kPanel columns, those past n zero.
void pack_panel(int64_t p, int64_t n, int64_t K, const float* b, int64_t ldb, bool trans_b, float* packed) {
  const int64_t j0 = p * kPanel, width = std::min(kPanel, n - j0);
  float* dst = packed + p * K * kPanel;
  if (trans_b)  // op(B)[k, j0 + x] = b[(j0 + x)·ldb + k]: the rows x of b turned into columns
    transpose(b + j0 * ldb, ldb, dst, kPanel, width, K);
  else
    for (int64_t k = 0; k < K; ++k) std::memcpy(dst + k * kPanel, b + k * ldb + j0, size_t(width) * sizeof(float));
  if (width < kPanel)
    for (int64_t k = 0; k < K; ++k) std::memset(dst + k * kPanel + width, 0, size_t(kPanel - width) * sizeof(float));
}

// The rows [r0, r1) of C, every column: bands of kBand rows, each over every panel, each
// panel a column of tiles; the depth in slices of kDepth, the first written, the others added,
// the bias with the last.
void tile_rows(int64_t r0, int64_t r1, int64_t n, int64_t K, const float* a, int64_t lda, const float* packed,
               bool accumulate, float* c, int64_t ldc, const float* bias) {
  const int64_t panels = (n + kPanel - 1) / kPanel;
  for (int64_t k0 = 0; k0 < K; k0 += kDepth) {
    const int64_t depth = std::min(kDepth, K - k0);
    const bool add = accumulate || k0 > 0;
    const float* last_bias = k0 + depth == K ? bias : nullptr;
    for (int64_t band = r0; band < r1; band += kBand)
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t j0 = p * kPanel, width = std::min(kPanel, n - j0);
        const int V = int((width + kLanes - 1) / kLanes);
        const int64_t last = width - kLanes * (V - 1);  // lanes of the last vector
        const float* panel = packed + (p * K + k0) * kPanel;
        for (int64_t i = band; i < std::min(r1, band + kBand); i += kTileRows) {
          const int R = int(std::min<int64_t>(kTileRows, r1 - i));
          gemm_tile::tile_of_size<false>(R, V, depth, 1.0f, a + i * lda + k0, lda, panel, kPanel, add,
                                         c + i * ldc + j0, ldc, last, last_bias ? last_bias + j0 : nullptr);
        }
      }
  }
}

}  // namespace

bool packed_gemm_takes(int64_t m, int64_t n, int64_t K) {
  return m >= kMinRows && n >= kMinColumns && K >= kMinDepth && (n <= kMaxColumns || K <= kMaxDepth);
}

void packed_gemm(int64_t m, int64_t n, int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb,
                 bool trans_b, bool accumulate, float* c, int64_t ldc, const float* bias) {
  if (m == 0 || n == 0) return;
  if (K == 0) return product_without_terms(m, n, accumulate, c, ldc, bias);
  const int64_t panels = (n + kPanel - 1) / kPanel;
  // The calling thread's buffer, 64-byte aligned: on AVX-512 a panel row is four cache lines.
  struct PackedB {};
  float* packed = thread_scratch<PackedB, float>(panels * K * kPanel);
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int64_t p = 0; p < panels; ++p) pack_panel(p, n, K, b, ldb, trans_b, packed);
    // (the for's barrier: every panel is packed before any thread reads one)
    const auto [r0, r1] = thread_rows(m, kTileRows, omp_get_thread_num(), omp_get_num_threads());
    tile_rows(r0, r1, n, K, a, lda, packed, accumulate, c, ldc, bias);
  }
}
#else
bool packed_gemm_takes(int64_t, int64_t, int64_t) { return false; }

void packed_gemm(int64_t m, int64_t n, int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb,
                 bool trans_b, bool accumulate, float* c, int64_t ldc, const float* bias) {
  packed_gemm_reference(m, n, K, a, lda, b, ldb, trans_b, accumulate, c, ldc, bias);
}
#endif

}  // namespace copper::cpu
