// backend.h — the kernels a device must provide, and how an op finds them.
//
// Ops (tensor/ops/*.cpp) check arguments, allocate outputs and record the backward;
// the arithmetic itself is a call on backend_for(device). The CPU backend lives in
// tensor/cpu/, one file per kernel family; the CUDA backend (cuda/) implements the
// same interface and registers itself at start-up, so a new device is a new folder of
// kernels and no op changes.
//
// Conventions for every kernel:
//  - `out` is allocated by the op, contiguous, with the right shape and dtype.
//  - Inputs are contiguous unless the comment says strides are allowed.
//  - Float kernels handle f32 and f64; the op converts bf16/f16 before calling.
#pragma once
#include <cstdint>
#include <vector>

#include "tensor/backend_ops.h"  // UnaryOp, BinaryOp, ReduceOp
#include "tensor/tensor.h"

namespace copper {

// CoPE's position term inside fused attention (Backend::attention; nn/pe/cope.h). z [bh, Tq,
// npos] holds each query's logit for every integer position (q·eᵀ), in q's dtype. For query
// i, with s_j = q_i·k_j: gates g_j = sigmoid(s_j scale), positions c_j = min(sum_{t=j..i} g_t,
// npos - 1), term_j = z_i interpolated at c_j; the logits are s_j scale + term_j, or (s_j +
// term_j) scale when `official`. A backend that answers true to attention_reads_cope_table
// is given the position table e [npos, Dh] instead and computes z = q·eᵀ itself; its
// backward then adds the gradient through z to dq and writes the table's gradient to de.
// With e, z may be given as well, as a buffer: the forward writes z there and the backward
// reads it back instead of computing it again (dz is then not used). Neither z nor e: plain
// attention.
struct AttentionCope {
  Tensor z;
  Tensor dz;  // the backward writes dL/dz here (same shape as z)
  bool official = false;
  Tensor e{};   // instead of z: the table [npos, Dh], contiguous
  Tensor de{};  // the backward writes dL/de here (same shape as e)
};

// Rotary position embedding inside fused attention (Backend::attention; nn/pe/rope.h): q and
// k are turned pair by pair, as rotate_pairs turns them, before their product. cs and sn
// [Tk, Dh/2] (contiguous, q's dtype) hold the cosines and sines of key j's angles in row j;
// query r, at position r + (Tk - Tq), takes that row. The backward turns dq and dk back by
// minus the angles, so they are the gradients of the unrotated q and k. Undefined tables:
// no rotation. Given only to a backend that answers true to attention_rotates, and never
// with CoPE's term.
struct AttentionRotation {
  Tensor cs, sn;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // ---- between devices ----
  // dst = src across devices (host <-> device, or device i <-> device j): same dtype and element
  // count, both contiguous. Tensor::to(Device) calls it on the backend of the non-CPU side. It
  // returns once src may be reused, and, when dst is on the host, once dst holds the values.
  virtual void transfer(const Tensor& src, const Tensor& dst) = 0;
  // Wait until every kernel queued on device d has finished. Kernels on a GPU run
  // asynchronously in one stream per device; CPU kernels have finished when they return.
  virtual void synchronize(Device d) = 0;

  // dst = cast(src). Same shape; both may have any strides (broadcast or negative); any dtypes.
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  virtual void fill(const Tensor& dst, double value) = 0;  // dst may have any strides

  // out = f(x; a, b) with a, b the op's scalars (pow: a = exponent; clamp: a = lo, b = hi).
  // x may have any strides.
  virtual void unary(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) = 0;
  // out = grad * f'(x), with y = f(x) available for ops whose derivative is cheaper from y.
  virtual void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& grad, const Tensor& out,
                              double a, double b) = 0;
  // The GELU (erf form) of x plus a bias, over contiguous rows: y[r, i] = gelu(x[r, i] + bias[i])
  // for rows x n, and, when slope is defined, the derivative there: slope[r, i] =
  // gelu'(x[r, i] + bias[i]), which the backward needs instead of x. The backward writes
  // dx = g · slope and, when dbias is defined, its column sums. Optional: these defaults
  // compose binary, unary, unary_backward and reduce; a backend that fuses them saves passes
  // over memory (the CPU's does).
  virtual void bias_gelu(const Tensor& x, const Tensor& bias, const Tensor& y, const Tensor& slope, int64_t rows,
                         int64_t n);
  virtual void bias_gelu_backward(const Tensor& slope, const Tensor& g, const Tensor& dx, const Tensor& dbias,
                                  int64_t rows, int64_t n);
  // out = a (op) b; a and b are views expanded to out's shape (stride 0 where broadcast).
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  // out = cond != 0 ? a : b; all three expanded to out's shape, any strides.
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  // x viewed as [outer, n, inner], reduced over the middle axis into out [outer, inner].
  // For argmax `out` is i64.
  virtual void reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& out) = 0;

  // c[i] = op(a[i]) @ op(b[i]) for i < batch; a: [batch, n, k], b: [batch, k, m], c: [batch, n, m].
  // Each of a, b is given as a 3-d view whose last two dims have one unit stride (row- or
  // column-major); batch strides may be anything, including 0 (broadcast). c is contiguous.
  // If accumulate, c += result instead of c = result. a and b share a dtype; c has it too, or
  // (mixed precision, tensor/autocast.h) a and b are bf16 and c is f32: the products of the
  // bf16 values summed in f32. allow_tf32() lets a GPU round f32 operands to TF32.
  virtual void gemm(const Tensor& a, const Tensor& b, const Tensor& c, bool accumulate) = 0;
  // c = a·b + bias, the bias [m] (contiguous, c's dtype) added to every row of each product:
  // a linear layer's forward. a, b and c as in gemm. The default is gemm, then the add; a
  // backend may add the bias as it writes c (the CPU, where packed_gemm serves the product).
  virtual void gemm_bias(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& c);

  // Rows of length n: y = softmax(x) or log_softmax(x).
  virtual void softmax(const Tensor& x, const Tensor& y, int64_t rows, int64_t n, bool log) = 0;
  // dx = y * (dy - sum(dy*y))  or, for log, dx = dy - exp(y) * sum(dy).
  virtual void softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t rows, int64_t n,
                                bool log) = 0;
  // Causal attention's softmax without a mask tensor. Rows of length n come in blocks of t
  // (row r is query i = r % t of a [t, n] block); row r covers keys j <= i + (n - t) only:
  // softmax over those, exact zeros for the rest. n >= t, so every row has a key.
  virtual void causal_softmax(const Tensor& x, const Tensor& y, int64_t rows, int64_t t, int64_t n) = 0;
  // The softmax backward over each row's visible keys, zeros for the hidden ones.
  virtual void causal_softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t rows, int64_t t,
                                       int64_t n) = 0;
  // Per row: loss_i = logsumexp(logits_i) - logits_i[t_i], 0 where t_i == ignore.
  // Writes lse [rows] for the backward. A target outside [0, n) that is not `ignore` makes its
  // row's loss NaN (the op checks CPU targets before the call and throws; a device's targets
  // are not read on the host, so the NaN is how a bad one shows).
  virtual void cross_entropy(const Tensor& logits, const Tensor& targets, const Tensor& loss, const Tensor& lse,
                             int64_t ignore_index) = 0;
  // dlogits = (softmax(logits) - onehot(t)) * scale, zero rows where t == ignore, NaN rows where
  // t is out of range. scale is a 1-element tensor of the logits' dtype on their device,
  // read by the kernel, so that the backward never waits for the device.
  virtual void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse,
                                      const Tensor& dlogits, const Tensor& scale, int64_t ignore_index) = 0;
  // Both at once, for a loss whose gradient will be wanted: loss and lse as cross_entropy, and
  // dlogits as cross_entropy_backward with `scale`. A backend that can fuse them reads each
  // row of logits from memory once instead of twice (the CPU's does); this default calls one
  // after the other. dlogits may be logits itself: a row's loss is taken before its gradient
  // overwrites it (linear_cross_entropy writes the gradient over the logits).
  virtual void cross_entropy_with_grad(const Tensor& logits, const Tensor& targets, const Tensor& loss,
                                       const Tensor& lse, const Tensor& dlogits, const Tensor& scale,
                                       int64_t ignore_index) {
    cross_entropy(logits, targets, loss, lse, ignore_index);
    cross_entropy_backward(logits, targets, lse, dlogits, scale, ignore_index);
  }

  // Rotary position embedding: contiguous x viewed as [outer, t, p, 2], each pair (x0, x1) at
  // row i, pair m turned by the angle whose cosine and sine are cs[i, m] and sn[i, m] (cs, sn
  // contiguous [t, p], x's dtype): out0 = x0 cs - x1 sn, out1 = x0 sn + x1 cs. inverse turns
  // by minus the angle (the transpose of the rotation: the backward). out is contiguous.
  virtual void rotate_pairs(const Tensor& x, const Tensor& cs, const Tensor& sn, const Tensor& out, int64_t outer,
                            int64_t t, int64_t p, bool inverse) = 0;

  // CoPE's counted positions (tensor/ops/cope.cpp has the formulas). Row r of `rows` is query
  // i = t0 + r % Tq over Tk keys: gate_logits, term, gates, pos [rows, Tk]; z [rows, npos]. The
  // backward writes dgate_logits [rows, Tk] and dz [rows, npos] from dterm [rows, Tk] and the
  // forward's z, gates and (clamped) positions.
  virtual void cope_positions(const Tensor& gate_logits, const Tensor& z, const Tensor& term, const Tensor& gates,
                              const Tensor& pos, int64_t rows, int64_t Tq, int64_t Tk, int64_t t0, int64_t npos) = 0;
  virtual void cope_positions_backward(const Tensor& dterm, const Tensor& z, const Tensor& gates, const Tensor& pos,
                                       const Tensor& dgate_logits, const Tensor& dz, int64_t rows, int64_t Tq,
                                       int64_t Tk, int64_t t0, int64_t npos) = 0;

  // Fused causal attention (tensor/ops/attention.cpp) over bh batch·heads: q [bh, Tq, Dh],
  // k, v [bh, Tk, Dh], contiguous (or views: attention_takes_views below), Tq <= Tk, query r seeing keys j <= r + (Tk - Tq):
  //   out = (softmax(logits) ∘ M) v,  logits = q kᵀ scale,  lse [bh, Tq] = each row's log-sum-exp,
  // where M keeps element (b, r, j) with 1/(1-p) when philox::uniform_at(key, (b Tq + r) Tk + j)
  // >= p, else 0 (no dropout when p == 0): the mask dropout_mask would make for the (bh, Tq,
  // Tk) probabilities. With cope.z defined the logits also get CoPE's position term (see
  // AttentionCope). No (Tq, Tk) tensor is made; the backward recomputes the probabilities
  // from q, k (and z) and lse and writes dq, dk, dv (and cope.dz). Optional: a backend without
  // it answers false to has_fused_attention, and the ops compose matmul, [cope_positions,]
  // causal_softmax and dropout instead. `products` is the dtype of the block products'
  // operands: q's own, or bf16 for f32 tensors under an AutocastGuard (tensor/autocast.h),
  // where q, k, v and dO are rounded to bf16 as they are read, and P (after dropout) and the
  // logits' gradient times the scale before they multiply, as the composed ops round them;
  // the sums, the softmax and all else stay f32. The CPU's kernel rounds; the CUDA one
  // computes in q's dtype.
  virtual bool has_fused_attention() const { return false; }
  // True when the fused attention takes views: q, k, v, dout (and out, dq, dk, dv, which the
  // op allocates in q's, k's and v's layouts) may be any (..., T, Dh) tensors with a unit
  // last stride and a row stride of at least Dh, such as heads split off a (B, T, H·Dh)
  // projection. False: the op passes them all contiguous.
  virtual bool attention_takes_views() const { return false; }
  // True when the fused attention takes CoPE's position table (AttentionCope::e) and computes
  // z = q·eᵀ itself, block by block; false: the op computes z with matmul and passes it.
  virtual bool attention_reads_cope_table() const { return false; }
  // True when the fused attention takes RoPE's tables (AttentionRotation) and turns q and k
  // itself; false: the op rotates them with rotate_pairs first and passes no tables.
  virtual bool attention_rotates() const { return false; }
  virtual void attention(const Tensor& /*q*/, const Tensor& /*k*/, const Tensor& /*v*/, const Tensor& /*out*/,
                         const Tensor& /*lse*/, int64_t /*bh*/, int64_t /*Tq*/, int64_t /*Tk*/, int64_t /*Dh*/,
                         double /*scale*/, double /*p*/, uint64_t /*key*/, const AttentionCope& /*cope*/,
                         const AttentionRotation& /*rot*/, DType /*products*/) {
    throw Error(std::string("[attention] the ") + name() + " backend has no fused attention kernel");
  }
  virtual void attention_backward(const Tensor& /*q*/, const Tensor& /*k*/, const Tensor& /*v*/,
                                  const Tensor& /*out*/, const Tensor& /*lse*/, const Tensor& /*dout*/,
                                  const Tensor& /*dq*/, const Tensor& /*dk*/, const Tensor& /*dv*/, int64_t /*bh*/,
                                  int64_t /*Tq*/, int64_t /*Tk*/, int64_t /*Dh*/, double /*scale*/, double /*p*/,
                                  uint64_t /*key*/, const AttentionCope& /*cope*/, const AttentionRotation& /*rot*/,
                                  DType /*products*/) {
    throw Error(std::string("[attention] the ") + name() + " backend has no fused attention kernel");
  }

  // x viewed as [outer, n, inner]; prefix sums along the middle axis (suffix sums if reverse).
  virtual void cumsum(const Tensor& x, const Tensor& out, int64_t outer, int64_t n, int64_t inner, bool reverse) = 0;

  // The index kernels below: the op has checked CPU indices against [0, n). A device's indices
  // are not checked on the host, so a device kernel must guard: an index outside [0, n) reads
  // as all bits set (NaN for floats) and adds nothing.
  // x viewed as [outer, n, inner]; out [outer, k, inner] = x[:, index[j], :]. index i64 [k].
  virtual void index_select(const Tensor& x, const Tensor& index, const Tensor& out, int64_t outer, int64_t n,
                            int64_t inner) = 0;
  // out viewed as [outer, n, inner]; out[:, index[j], :] += src[:, j, :].
  virtual void index_add(const Tensor& out, const Tensor& index, const Tensor& src, int64_t outer, int64_t n,
                         int64_t inner) = 0;
  // Along dim, x/index/out viewed as [outer, n_x, inner] / [outer, k, inner] (index same).
  // gather: out[o, j, i] = x[o, index[o, j, i], i]. index i64.
  virtual void gather(const Tensor& x, const Tensor& index, const Tensor& out, int64_t outer, int64_t n, int64_t k,
                      int64_t inner) = 0;
  // scatter_add: out[o, index[o, j, i], i] += src[o, j, i].
  virtual void scatter_add(const Tensor& out, const Tensor& index, const Tensor& src, int64_t outer, int64_t n,
                           int64_t k, int64_t inner) = 0;

  // Rows of length n. weight/bias may be undefined. Saves mean and rstd [rows] for the backward.
  virtual void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& y,
                          const Tensor& mean, const Tensor& rstd, int64_t rows, int64_t n, double eps) = 0;
  // dx (rows, n); dweight, dbias (n) are written (not accumulated) when defined.
  virtual void layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                   const Tensor& dy, const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                   int64_t rows, int64_t n) = 0;
  virtual void rms_norm(const Tensor& x, const Tensor& weight, const Tensor& y, const Tensor& rstd, int64_t rows,
                        int64_t n, double eps) = 0;
  virtual void rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd, const Tensor& dy,
                                 const Tensor& dx, const Tensor& dweight, int64_t rows, int64_t n) = 0;

  // Dropout's keep-mask, scaled: out[i] = u_i >= p ? 1/(1-p) : 0, where u_i is element i of the
  // Philox stream keyed by `key` as a float in [0, 1) (tensor/philox.h; compared as floats, so
  // every device keeps the same elements). out is contiguous and floating.
  virtual void dropout_mask(const Tensor& out, double p, uint64_t key) = 0;
  // rand and randn (tensor/factory.cpp) on the tensor's device: out[i] = a + (b - a) u_i with u_i
  // as dropout's (uniform), or a + b z_i with z_i = philox::normal_at(key, i) (normal). out is
  // contiguous, f32 or f64.
  virtual void random_fill(const Tensor& out, bool normal, double a, double b, uint64_t key) = 0;

  // One AdamW step on a contiguous f32 parameter, in place:
  //   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr (m/bc1 / (sqrt(v/bc2) + eps) + wd p)
  virtual void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, double lr, double b1,
                          double b2, double eps, double wd, double bc1, double bc2) = 0;
  // The same step for every parameter of an optimizer at once, each with its own weight decay
  // and bias corrections. This default, the reference, calls adamw_step once per parameter (a
  // CPU kernel is already a parallel loop); a GPU backend does them all in one launch.
  struct AdamWParam {
    Tensor p, g, m, v;
    double wd, bc1, bc2;
  };
  virtual void adamw_steps(const std::vector<AdamWParam>& params, double lr, double b1, double b2, double eps) {
    for (const AdamWParam& a : params) adamw_step(a.p, a.g, a.m, a.v, lr, b1, b2, eps, a.wd, a.bc1, a.bc2);
  }

  // out (one f64 element on the tensors' device) = the sum of x² over every element of every
  // tensor of xs (contiguous, f32 or f64, all on one device), accumulated in f64: the squared
  // global norm that gradient clipping needs. Each tensor is cut into chunks of
  // kSumSquaresChunk elements whose partial sums are added in a fixed order, so the result does
  // not depend on the number of threads; a GPU does every tensor in one launch.
  static constexpr int64_t kSumSquaresChunk = 16384;
  virtual void sum_squares(const std::vector<Tensor>& xs, const Tensor& out) = 0;
};

Backend& backend_for(Device d);
inline Backend& backend_of(const Tensor& t) { return backend_for(t.device()); }
// Whether this build has kernels for devices of type t (always for the CPU).
bool has_backend(DeviceType t);
// Called once by a device backend at start-up (the CPU backend is built in).
void register_backend(DeviceType t, Backend* b);
// Wait for every kernel queued on d (see Backend::synchronize).
inline void synchronize(Device d) { backend_for(d).synchronize(d); }

}  // namespace copper
