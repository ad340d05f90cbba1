// kernels.h — the CUDA kernels' launchers, one block per file (copy.cu, elementwise.cu, ...).
//
// They take raw pointers, dtypes and sizes, never Tensors: cuda_backend.cpp unpacks the tensors,
// makes the device current and passes its stream. Every launcher queues its kernel(s) on
// `stream` and returns without waiting. Shapes follow the Backend method of the same name
// (tensor/backend.h); float kernels take f32 and f64.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "tensor/backend_ops.h"
#include "tensor/dtype.h"

namespace copper::cuda {

// An elementwise problem has at most this many dims once size-1 dims are dropped and dims that
// are contiguous in every operand merged (cuda_backend.cpp, make_layout).
inline constexpr int kMaxDims = 8;

// The common shape of an elementwise kernel's operands, row-major.
struct Layout {
  int nd = 0;
  int64_t numel = 0;
  int64_t size[kMaxDims] = {};
};
// One operand: element 0, its dtype, and its stride (in elements, any sign, 0 where broadcast)
// along each dim of the Layout.
struct Operand {
  void* data = nullptr;
  DType dtype = DType::f32;
  int64_t stride[kMaxDims] = {};
};

// copy.cu
void launch_copy(const Layout& l, const Operand& src, const Operand& dst, cudaStream_t stream);  // any dtypes
void launch_fill(const Layout& l, const Operand& dst, double value, cudaStream_t stream);

// elementwise.cu
void launch_unary(UnaryOp op, const Layout& l, const Operand& x, const Operand& out, double a, double b,
                  cudaStream_t stream);
// x, y, grad, out contiguous with n elements
void launch_unary_backward(UnaryOp op, DType dtype, int64_t n, const void* x, const void* y, const void* grad,
                           void* out, double a, double b, cudaStream_t stream);
void launch_binary(BinaryOp op, const Layout& l, const Operand& a, const Operand& b, const Operand& out,
                   cudaStream_t stream);  // f32, f64, i32, i64 (out has a's dtype)
// x, y, slope contiguous [rows, n], bias [n]; slope may be null
void launch_bias_gelu(DType dtype, const void* x, const void* bias, void* y, void* slope, int64_t rows, int64_t n,
                      cudaStream_t stream);
void launch_where(const Layout& l, const Operand& cond, const Operand& a, const Operand& b, const Operand& out,
                  cudaStream_t stream);

// Sums over a long axis that leave few outputs (a bias's gradient: [rows, columns] summed over
// the rows) run in two passes, so that enough threads take part: each of `chunks` runs of rows
// into f64 partials [chunks, columns], then one thread per column adds its chunks in order.
// How many chunks (at least 1) for `rows` rows and `columns` outputs:
int64_t column_chunks(int64_t rows, int64_t columns);

// reduce.cu: x [outer, n, inner] -> out [outer, inner] (i64 for argmax). A sum with inner > 1
// takes the two passes: partials holds column_chunks(n, outer * inner) * outer * inner doubles.
void launch_reduce(ReduceOp op, DType dtype, const void* x, int64_t outer, int64_t n, int64_t inner, void* out,
                   double* partials, cudaStream_t stream);

// softmax.cu: rows of length n (causal: blocks of t rows, row r sees keys j <= r % t + n - t)
void launch_softmax(DType dtype, const void* x, void* y, int64_t rows, int64_t n, bool log, cudaStream_t stream);
void launch_softmax_backward(DType dtype, const void* y, const void* dy, void* dx, int64_t rows, int64_t n, bool log,
                             cudaStream_t stream);
void launch_causal_softmax(DType dtype, const void* x, void* y, int64_t rows, int64_t t, int64_t n,
                           cudaStream_t stream);
void launch_causal_softmax_backward(DType dtype, const void* y, const void* dy, void* dx, int64_t rows, int64_t t,
                                    int64_t n, cudaStream_t stream);
void launch_cross_entropy(DType dtype, const void* logits, const int64_t* targets, void* loss, void* lse, int64_t rows,
                          int64_t n, int64_t ignore_index, cudaStream_t stream);
void launch_cross_entropy_backward(DType dtype, const void* logits, const int64_t* targets, const void* lse,
                                   void* dlogits, int64_t rows, int64_t n, const void* scale,
                                   int64_t ignore_index, cudaStream_t stream);

// scan.cu: x [outer, n, inner], prefix (or suffix) sums along n
void launch_cumsum(DType dtype, const void* x, void* out, int64_t outer, int64_t n, int64_t inner, bool reverse,
                   cudaStream_t stream);

// cope.cu: CoPE's counted positions, rows [rows, Tk] and tables z [rows, npos], all contiguous
// (Backend::cope_positions and its backward)
void launch_cope_positions(DType dtype, const void* gate_logits, const void* z, void* term, void* gates, void* pos,
                           int64_t rows, int64_t Tq, int64_t Tk, int64_t t0, int64_t npos, cudaStream_t stream);
void launch_cope_positions_backward(DType dtype, const void* dterm, const void* z, const void* gates, const void* pos,
                                    void* dgate_logits, void* dz, int64_t rows, int64_t Tq, int64_t Tk, int64_t t0,
                                    int64_t npos, cudaStream_t stream);

// attention.cu: fused causal attention (Backend::attention), plain (z null, npos 0) or with
// CoPE's term (z [bh, Tq, npos]). Heads of at most kMaxAttentionHead channels (a warp keeps a
// row's output in registers).
inline constexpr int64_t kMaxAttentionHead = 256;
struct AttentionDims {
  int64_t bh = 0, Tq = 0, Tk = 0, Dh = 0, npos = 0;
  double scale = 1, p = 0;  // p: dropout probability
  uint64_t key = 0;         // dropout's Philox key
  bool official = false;    // CoPE's term before the scale
};
void launch_attention(DType dtype, const AttentionDims& d, const void* q, const void* k, const void* v, const void* z,
                      void* out, void* lse, cudaStream_t stream);
// Writes ds [bh, Tq, Tk] (dL/d(q·kᵀ) times the scale) and pm (the kept probabilities); with
// CoPE also dz, using dp and gates [bh, Tq, Tk] as workspace. dq, dk, dv are then products.
void launch_attention_backward_rows(DType dtype, const AttentionDims& d, const void* q, const void* k, const void* v,
                                    const void* z, const void* out, const void* lse, const void* dout, void* ds,
                                    void* pm, void* dz, void* dp, void* gates, cudaStream_t stream);

// rotate.cu: x, out [outer, t, p, 2], cs, sn [t, p], all contiguous (Backend::rotate_pairs)
void launch_rotate_pairs(DType dtype, const void* x, const void* cs, const void* sn, void* out, int64_t outer,
                         int64_t t, int64_t p, bool inverse, cudaStream_t stream);

// index.cu (index: i64; an entry outside [0, n) reads as all bits set and adds nothing)
void launch_index_select(DType dtype, const void* x, const int64_t* index, int64_t k, void* out, int64_t outer,
                         int64_t n, int64_t inner, cudaStream_t stream);  // any dtype
void launch_index_add(DType dtype, void* out, const int64_t* index, int64_t k, const void* src, int64_t outer,
                      int64_t n, int64_t inner, cudaStream_t stream);
void launch_gather(DType dtype, const void* x, const int64_t* index, void* out, int64_t outer, int64_t n, int64_t k,
                   int64_t inner, cudaStream_t stream);  // any dtype
void launch_scatter_add(DType dtype, void* out, const int64_t* index, const void* src, int64_t outer, int64_t n,
                        int64_t k, int64_t inner, cudaStream_t stream);

// norm.cu: rows of length n; weight/bias/dx/dweight/dbias may be null. The weight's and the
// bias's gradients are column sums in two passes: partials holds column_chunks(rows, n) * n
// doubles for each of them (2x for layer_norm_backward).
void launch_layer_norm(DType dtype, const void* x, const void* weight, const void* bias, void* y, void* mean,
                       void* rstd, int64_t rows, int64_t n, double eps, cudaStream_t stream);
void launch_layer_norm_backward(DType dtype, const void* x, const void* weight, const void* mean, const void* rstd,
                                const void* dy, void* dx, void* dweight, void* dbias, int64_t rows, int64_t n,
                                double* partials, cudaStream_t stream);
void launch_rms_norm(DType dtype, const void* x, const void* weight, void* y, void* rstd, int64_t rows, int64_t n,
                     double eps, cudaStream_t stream);
void launch_rms_norm_backward(DType dtype, const void* x, const void* weight, const void* rstd, const void* dy,
                              void* dx, void* dweight, int64_t rows, int64_t n, double* partials,
                              cudaStream_t stream);

// optim.cu: one AdamW step over n contiguous elements (inv_bc1 = 1 / bias correction 1, ...)
void launch_adamw(DType dtype, void* p, const void* g, void* m, void* v, int64_t n, double lr, double b1, double b2,
                  double eps, double wd, double inv_bc1, double inv_bc2, cudaStream_t stream);

// optim.cu: AdamW over `count` parameters in one launch; `slots` is a device array of
// AdamWSlot (all of one dtype), each with its own weight decay and bias corrections.
struct AdamWSlot {
  void* p;
  const void* g;
  void* m;
  void* v;
  int64_t n;
  double wd, inv_bc1, inv_bc2;
};
void launch_adamw_many(DType dtype, const AdamWSlot* slots, int count, int64_t max_n, double lr, double b1, double b2,
                       double eps, cudaStream_t stream);

// optim.cu: the squared global norm (Backend::sum_squares). Block (x, y) sums the squares of
// chunk x (`chunk` elements) of tensor y into partials[slots[y].first_partial + x]; a second
// one-block kernel adds the `num_partials` partial sums in order into out[0]. f64 throughout.
struct SumSquaresSlot {
  const void* x;
  int64_t n;
  int64_t first_partial;
  int64_t is_f64;  // else f32
};
void launch_sum_squares_chunks(const SumSquaresSlot* slots, int count, int64_t max_chunks, int64_t chunk,
                               double* partials, cudaStream_t stream);
void launch_sum_partials(const double* partials, int64_t num_partials, double* out, cudaStream_t stream);

// random.cu: dropout's scaled keep-mask over n contiguous elements from the Philox stream `key`
// (Backend::dropout_mask): out[i] = u_i >= p ? scale : 0.
void launch_dropout_mask(DType dtype, void* out, int64_t n, float p, double scale, uint64_t key, cudaStream_t stream);
// random.cu: rand/randn (Backend::random_fill): out[i] = a + (b - a) u_i, or a + b z_i.
void launch_random_fill(DType dtype, void* out, int64_t n, bool normal, double a, double b, uint64_t key,
                        cudaStream_t stream);

}  // namespace copper::cuda
