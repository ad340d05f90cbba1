// attention.cpp — fused causal attention (Backend::attention, attention_backward): for each
// (batch·head) and block of kQueryBlock queries, the logits q·kᵀ of the block's visible keys,
// the causal softmax, dropout and the product with v, in a scratch buffer of one block's rows.
// Nothing of size (Tq, Tk) outlives the call: the forward keeps only each row's log-sum-exp,
// and the backward recomputes the probabilities from it. The products are BLAS calls on the
// block; the row work (max, exp, sum, dropout) is plain loops over the visible keys.
//
// Row r of batch·head b is query i = r + (Tk - Tq): it sees keys j <= i. The reference that
// tests/test_ops.cpp compares this with is causal_attention_reference (tensor/ops/attention.cpp):
// matmul, causal_softmax, dropout, matmul.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/fast_math.h"
#include "tensor/cpu/loops.h"
#include "tensor/philox.h"

namespace copper {

using namespace cpu;

namespace {

// Queries per block: the scratch rows (kQueryBlock x Tk) stay in L2 for Tk up to a few thousand.
constexpr int64_t kQueryBlock = 64;

// C[n, m] = alpha A[n, k] op(B) + beta C, row-major; B is [m, k] (trans_b) or [k, m].
void gemm_rm(bool trans_a, bool trans_b, int64_t n, int64_t m, int64_t k, double alpha, const float* a, int64_t lda,
             const float* b, int64_t ldb, double beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, int(n), int(m),
              int(k), float(alpha), a, int(lda), b, int(ldb), float(beta), c, int(ldc));
}
void gemm_rm(bool trans_a, bool trans_b, int64_t n, int64_t m, int64_t k, double alpha, const double* a, int64_t lda,
             const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, int(n), int(m),
              int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

// The block products run inside an OpenMP loop, one per thread, so each BLAS call must stay
// on its thread: OpenBLAS's own threads would oversubscribe the cores. Restored on exit.
class SerialBlas {
 public:
  SerialBlas() : before_(openblas_get_num_threads()) { openblas_set_num_threads(1); }
  ~SerialBlas() { openblas_set_num_threads(before_); }

 private:
  int before_;
};

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

// What the forward and the backward share: the block's logits turned into probabilities.
// s [nq, kv] holds q·kᵀ on entry; on exit P = softmax over each row's visible keys (zeros
// after them). With `lse` given (forward) the rows' log-sum-exp are written there; otherwise
// (backward) they are read from `lse_in`.
template <class T>
void block_probs(T* s, int64_t nq, int64_t kv, int64_t first_query, double scale, T* lse_out, const T* lse_in) {
  for (int64_t r = 0; r < nq; ++r) {
    T* row = s + r * kv;
    const int64_t n = first_query + r + 1;  // visible keys of this row
    const T sc = T(scale);
    T l;
    if (lse_out) {
      T mx = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < n; ++j) mx = std::max(mx, row[j] * sc);
      double sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < n; ++j) sum += double(exp_of(row[j] * sc - mx));
      l = T(double(mx) + std::log(sum));
      lse_out[r] = l;
    } else {
      l = lse_in[r];
    }
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) row[j] = exp_of(row[j] * sc - l);
    std::fill(row + n, row + kv, T(0));
  }
}

template <class T>
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                       int64_t bh, int64_t Tq, int64_t Tk, int64_t Dh, double scale, double p, const Keep& keep) {
  const int64_t blocks = (Tq + kQueryBlock - 1) / kQueryBlock, shift = Tk - Tq;
  const T* Q = static_cast<const T*>(q.raw_data());
  const T* K = static_cast<const T*>(k.raw_data());
  const T* V = static_cast<const T*>(v.raw_data());
  T* O = static_cast<T*>(out.raw_data());
  T* L = static_cast<T*>(lse.raw_data());
#pragma omp parallel if (bh * blocks > 1)
  {
    std::vector<T> s(size_t(kQueryBlock * Tk)), m(p > 0 ? size_t(Tk) : 0);
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < bh * blocks; ++item) {
      const int64_t b = item / blocks, r0 = (item % blocks) * kQueryBlock;
      const int64_t nq = std::min(kQueryBlock, Tq - r0), kv = r0 + nq + shift;  // keys the block's last row sees
      const T* Qb = Q + (b * Tq + r0) * Dh;
      const T* Kb = K + b * Tk * Dh;
      gemm_rm(false, true, nq, kv, Dh, 1.0, Qb, Dh, Kb, Dh, 0.0, s.data(), kv);  // s = q kᵀ
      block_probs(s.data(), nq, kv, r0 + shift, scale, L + b * Tq + r0, static_cast<const T*>(nullptr));
      if (p > 0)
        for (int64_t r = 0; r < nq; ++r) {
          const int64_t n = r0 + r + shift + 1;
          keep.row(m.data(), n, uint64_t((b * Tq + r0 + r) * Tk));
          T* row = s.data() + r * kv;
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) row[j] *= m[size_t(j)];
        }
      gemm_rm(false, false, nq, Dh, kv, 1.0, s.data(), kv, V + b * Tk * Dh, Dh, 0.0, O + (b * Tq + r0) * Dh, Dh);
    }
  }
}

template <class T>
void attention_backward_impl(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                             const Tensor& dout, const Tensor& dq, const Tensor& dk, const Tensor& dv, int64_t bh,
                             int64_t Tq, int64_t Tk, int64_t Dh, double scale, double p, const Keep& keep) {
  // One batch·head per item, its query blocks in order: dk and dv of a batch·head are sums over
  // its blocks, added in the same order whatever the thread count.
  const int64_t blocks = (Tq + kQueryBlock - 1) / kQueryBlock, shift = Tk - Tq;
  const T* Q = static_cast<const T*>(q.raw_data());
  const T* K = static_cast<const T*>(k.raw_data());
  const T* V = static_cast<const T*>(v.raw_data());
  const T* O = static_cast<const T*>(out.raw_data());
  const T* L = static_cast<const T*>(lse.raw_data());
  const T* dO = static_cast<const T*>(dout.raw_data());
  T* dQ = static_cast<T*>(dq.raw_data());
  T* dK = static_cast<T*>(dk.raw_data());
  T* dV = static_cast<T*>(dv.raw_data());
#pragma omp parallel if (bh > 1)
  {
    std::vector<T> P(size_t(kQueryBlock * Tk)), dP(size_t(kQueryBlock * Tk)), D(static_cast<size_t>(kQueryBlock));
    std::vector<T> M(p > 0 ? size_t(kQueryBlock * Tk) : 0);  // the block's keep-scales
#pragma omp for schedule(dynamic)
    for (int64_t b = 0; b < bh; ++b) {
      const T* Kb = K + b * Tk * Dh;
      const T* Vb = V + b * Tk * Dh;
      T* dKb = dK + b * Tk * Dh;
      T* dVb = dV + b * Tk * Dh;
      std::fill(dKb, dKb + Tk * Dh, T(0));
      std::fill(dVb, dVb + Tk * Dh, T(0));
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t r0 = blk * kQueryBlock, nq = std::min(kQueryBlock, Tq - r0), kv = r0 + nq + shift;
        const T* Qb = Q + (b * Tq + r0) * Dh;
        const T* dOb = dO + (b * Tq + r0) * Dh;
        const T* Ob = O + (b * Tq + r0) * Dh;
        gemm_rm(false, true, nq, kv, Dh, 1.0, Qb, Dh, Kb, Dh, 0.0, P.data(), kv);    // P = q kᵀ
        block_probs(P.data(), nq, kv, r0 + shift, scale, static_cast<T*>(nullptr), L + b * Tq + r0);
        gemm_rm(false, true, nq, kv, Dh, 1.0, dOb, Dh, Vb, Dh, 0.0, dP.data(), kv);  // dP = dO vᵀ (after dropout)
        for (int64_t r = 0; r < nq; ++r) {
          double d = 0;  // D_r = dO_r · O_r = sum_j P_j dP_j over the kept probabilities
          for (int64_t c = 0; c < Dh; ++c) d += double(dOb[r * Dh + c]) * double(Ob[r * Dh + c]);
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
        for (int64_t r = 0; r < nq; ++r) {  // dS = P ∘ (dP - D), before the scale, in dP's buffer
          const int64_t n = r0 + r + shift + 1;
          const T* pr = P.data() + r * kv;
          T* gr = dP.data() + r * kv;
          const T dr = D[size_t(r)];
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) gr[j] = pr[j] * (gr[j] - dr);
          std::fill(gr + n, gr + kv, T(0));  // keys this row does not see
        }
        if (p > 0) apply_mask(P);
        gemm_rm(true, false, kv, Dh, nq, 1.0, P.data(), kv, dOb, Dh, 1.0, dVb, Dh);          // dv += Pmᵀ dO
        gemm_rm(false, false, nq, Dh, kv, scale, dP.data(), kv, Kb, Dh, 0.0, dQ + (b * Tq + r0) * Dh, Dh);  // dq
        gemm_rm(true, false, kv, Dh, nq, scale, dP.data(), kv, Qb, Dh, 1.0, dKb, Dh);       // dk += dSᵀ q
      }
    }
  }
}

}  // namespace

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                           int64_t bh, int64_t Tq, int64_t Tk, int64_t Dh, double scale, double p, uint64_t key) {
  const Keep keep{key, float(p), 1.0 / (1.0 - p)};
  const SerialBlas serial;
  COPPER_DISPATCH_FLOAT(q.dtype(), "attention",
                        [&] { attention_forward<T>(q, k, v, out, lse, bh, Tq, Tk, Dh, scale, p, keep); });
}

void CpuBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                    const Tensor& lse, const Tensor& dout, const Tensor& dq, const Tensor& dk,
                                    const Tensor& dv, int64_t bh, int64_t Tq, int64_t Tk, int64_t Dh, double scale,
                                    double p, uint64_t key) {
  const Keep keep{key, float(p), 1.0 / (1.0 - p)};
  const SerialBlas serial;
  COPPER_DISPATCH_FLOAT(q.dtype(), "attention_backward", [&] {
    attention_backward_impl<T>(q, k, v, out, lse, dout, dq, dk, dv, bh, Tq, Tk, Dh, scale, p, keep);
  });
}

}  // namespace copper
