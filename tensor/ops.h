// ops.h — every tensor operation of copper, in one list.
//
// Each op is defined in tensor/ops/<family>.cpp: argument checks, the kernel call
// through the device's Backend (tensor/backend.h), and its backward. Every
// differentiable op is enrolled in tests/test_ops.cpp, which gradchecks it in f64.
// Broadcasting follows numpy: shapes align from the right, size-1 dims stretch.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "tensor/tensor.h"

namespace copper {

class Generator;  // tensor/random.h

// ---------------- factories (tensor/factory.cpp) ----------------
Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = kCPU);
Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = kCPU);
Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = kCPU);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
// [start, end) with step; dtype i64 unless given.
Tensor arange(double start, double end, double step = 1, DType dtype = DType::i64, Device device = kCPU);
Tensor arange(int64_t end, DType dtype = DType::i64);
// Uniform [lo, hi) and normal (mean, stddev), made on `device`: one draw of the given generator
// (or the thread's default one) keys a Philox stream (tensor/philox.h), so the same generator
// state gives the same tensor on every device. Floating dtypes only.
Tensor rand(const Shape& shape, DType dtype = DType::f32, Generator* gen = nullptr, double lo = 0, double hi = 1,
            Device device = kCPU);
Tensor randn(const Shape& shape, DType dtype = DType::f32, Generator* gen = nullptr, double mean = 0,
             double stddev = 1, Device device = kCPU);
// Uniform integers in [lo, hi).
Tensor randint(int64_t lo, int64_t hi, const Shape& shape, DType dtype = DType::i64, Generator* gen = nullptr);
// From values in row-major order; the shape defaults to 1-d.
Tensor from_vector(const std::vector<float>& v, const Shape& shape = {});
Tensor from_vector(const std::vector<double>& v, const Shape& shape = {});
Tensor from_vector(const std::vector<int32_t>& v, const Shape& shape = {});
Tensor from_vector(const std::vector<int64_t>& v, const Shape& shape = {});
Tensor scalar_tensor(double v, DType dtype = DType::f32, Device device = kCPU);

// ---------------- elementwise binary, broadcasting (ops/binary.cpp) ----------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);  // gradient to the larger (a on ties)
Tensor minimum(const Tensor& a, const Tensor& b);
// comparisons give 1 or 0 in a's dtype; no gradient
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
// with a scalar on one side (the scalar takes the tensor's dtype)
Tensor add(const Tensor& a, double b);
Tensor sub(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor div(const Tensor& a, double b);
Tensor rsub(double a, const Tensor& b);  // a - b
Tensor rdiv(double a, const Tensor& b);  // a / b

// ---------------- elementwise unary (ops/unary.cpp) ----------------
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor pow(const Tensor& x, double exponent);
Tensor square(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x, bool tanh_approx = false);  // exact erf form unless tanh_approx
// gelu(x + bias), erf form, bias [n] added to every row of x [..., n]: an MLP's first layer and
// activation with one pass over memory each way instead of two.
Tensor bias_gelu(const Tensor& x, const Tensor& bias);
Tensor silu(const Tensor& x);
Tensor abs(const Tensor& x);
// Clamp to [lo, hi]; gradient 1 inside the bounds, bounds included (as PyTorch), 0 outside.
Tensor clamp(const Tensor& x, std::optional<double> lo, std::optional<double> hi);
Tensor floor(const Tensor& x);  // no gradient (zero almost everywhere)
Tensor ceil(const Tensor& x);   // no gradient

// ---------------- selection (ops/where.cpp) ----------------
// out = cond != 0 ? a : b, all broadcast together.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// out = mask != 0 ? value : x (mask broadcast to x).
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

// ---------------- reductions (ops/reduce.cpp) ----------------
// Over the given dims (all dims if empty). Negative dims count from the end.
Tensor sum(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
// max/min over one dim; the gradient flows to the first maximal element.
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& x);  // over everything
Tensor min(const Tensor& x);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // i64, no gradient
// Sum a gradient down to a broadcast input's shape (used by every broadcasting backward).
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---------------- softmax family and losses (ops/softmax.cpp) ----------------
Tensor softmax(const Tensor& x, int64_t dim = -1);       // max-subtracted, stable
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
// x [..., T, S] with S >= T: softmax over the last dim in which query i sees only keys
// j <= i + (S - T); the others get probability exactly 0. The same values and gradients as
// softmax(masked_fill(x, causal_mask(T, S), -inf), -1) (the reference the tests hold it to),
// without the mask pass and with half the exp work.
Tensor causal_softmax(const Tensor& x);
// Causal attention without position terms (ops/attention.cpp): q (..., Tq, Dh), k, v (..., Tk,
// Dh), Tq <= Tk, the queries being the last Tq positions:
//   dropout(causal_softmax(q kᵀ · scale), p, gen) v  ->  (..., Tq, Dh)
// Fused where the backend has the kernel (no (Tq, Tk) tensor kept for the backward); the
// reference composes matmul, causal_softmax and dropout. Both mask the same elements.
Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, double dropout_p = 0,
                        Generator* gen = nullptr);
Tensor causal_attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                                  double dropout_p = 0, Generator* gen = nullptr);
// The same over q and k turned by RoPE's tables (nn/pe/rope.h): cs, sn (Tk, Dh/2), row j for
// key j, the queries taking the last Tq rows:
//   causal_attention(rotate_pairs(q, cs[Tk-Tq:], sn[Tk-Tq:]), rotate_pairs(k, cs, sn), v, ...)
// A backend that rotates inside its fused kernel (the CPU) turns each block's rows as it
// reads them: no rotated copies of q and k are made, and dq and dk are written where they
// would be for plain attention (side by side with dv for heads split from one product).
// Differentiable in q, k and v; the tables take no gradient.
Tensor causal_rotary_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cs, const Tensor& sn,
                               double scale, double dropout_p = 0, Generator* gen = nullptr);
Tensor causal_rotary_attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cs,
                                         const Tensor& sn, double scale, double dropout_p = 0,
                                         Generator* gen = nullptr);
// The same with CoPE's position term in the logits (nn/pe/cope.h), for the position table e
// (npos, Dh): z (..., Tq, npos) = q·eᵀ, s = q kᵀ · scale, term = cope_positions(s, z, Tk -
// Tq).term (the gates are sigmoid(s)), and
//   dropout(causal_softmax(s + term), p, gen) v        (s + term · scale when `official`)
// Fused where the backend has the kernel: no (Tq, Tk) gates, positions or probabilities are
// kept, and a backend that reads the table (the CPU) computes z inside the kernel.
// Differentiable in q, k, v and e.
Tensor causal_cope_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& e, double scale,
                             bool official, double dropout_p = 0, Generator* gen = nullptr);
Tensor causal_cope_attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& e,
                                       double scale, bool official, double dropout_p = 0, Generator* gen = nullptr);
// logits [N, C] (or [..., C], flattened), targets i64 [N]; mean over targets != ignore_index.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);
// cross_entropy(linear(x, weight, bias), targets) without the logits as a tensor
// (ops/linear_cross_entropy.cpp): x [..., in], weight [classes, in], bias [classes] or
// undefined, targets x's shape without its last dim. Under grad the logits are written into
// the [rows, classes] buffer of their gradient and turned into it in place; without grad the
// rows go in chunks (16 MB of logits on the CPU, all rows elsewhere) through one chunk's
// buffer. chunk_rows > 0 sets the chunks either way. Differentiable in x, weight and bias.
// A language model's head and loss: TransformerLM::loss.
Tensor linear_cross_entropy(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& targets,
                            int64_t ignore_index = -100, int64_t chunk_rows = 0);

// ---------------- matmul (ops/matmul.cpp) ----------------
// [.., n, k] x [.., k, m] -> [.., n, m], batch dims broadcast; 1-d operands as numpy.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [.., in] · weight[out, in]^T + bias[out]
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---------------- joining and splitting (ops/join.cpp) ----------------
Tensor cat(const std::vector<Tensor>& xs, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);  // last piece may be smaller
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);

// ---------------- indexing (ops/index.cpp) ----------------
// out = x.index_select(dim, index): index is i64/i32 1-d. Backward scatter-adds.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// weight [V, D], ids any shape of ints -> [..ids.shape, D]. Backward scatter-adds rows.
Tensor embedding(const Tensor& weight, const Tensor& ids);
// out[i][j] = x[i][index[i][j]] along dim (index same rank as x). Backward scatter-adds.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// out = x with src added at index along dim (out[index[i][j]][j] += src[i][j] for dim 0).
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);

// ---------------- scans (ops/scan.cpp) ----------------
// Inclusive prefix sum along dim; reverse = suffix sum (out[i] = sum_{j>=i} x[j]).
Tensor cumsum(const Tensor& x, int64_t dim, bool reverse = false);

// ---------------- rotation (ops/rotate.cpp) ----------------
// x [..., t, 2p]: each pair (x[.., i, 2m], x[.., i, 2m+1]) turned by the angle with cosine
// cs[i, m] and sine sn[i, m] (cs, sn [t, p], x's dtype and device; no gradient reaches them);
// inverse turns by minus the angle. RoPE (nn/pe/rope.h) is this with its angle tables.
Tensor rotate_pairs(const Tensor& x, const Tensor& cs, const Tensor& sn, bool inverse = false);

// ---------------- counted positions (ops/cope.cpp) ----------------
// CoPE's positions and position logits (nn/pe/cope.h) in one op. gate_logits [..., Tq, Tk]
// are the gates' logits of Tq queries at absolute positions [t0, t0 + Tq) over Tk keys; z
// [..., Tq, npos] is each query's logit for every integer position (q·e[p]). For query i and
// key j <= i: gates g_j = sigmoid(l_j), positions p_j = min(sum_{t=j..i} g_t, npos - 1), and
// term_j = z at p_j, linearly interpolated between floor p_j and ceil p_j. Keys j > i get gate
// 0, position 0 and term z[0]. The term is differentiable in both inputs; gates and positions
// are returned for inspection and take no gradient. A NaN gate logit makes its own and every
// earlier key's position npos - 1 (the NaN stays in the gates and in the logits it came from).
struct CopePositions {
  Tensor term, gates, positions;  // each [..., Tq, Tk], in the inputs' dtype
};
CopePositions cope_positions(const Tensor& gate_logits, const Tensor& z, int64_t t0 = 0);

// ---------------- normalisation (ops/norm.cpp) ----------------
// Over the last dim: (x - mean) / sqrt(var + eps) * weight + bias (weight/bias optional).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// x / sqrt(mean(x^2) + eps) * weight
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6);

// ---------------- randomness (ops/misc.cpp) ----------------
// Zero each element with probability p and scale the rest by 1/(1-p); identity if !train.
// The mask comes from a Philox stream keyed by one draw of `gen` (default: the thread's
// generator), made on x's device: the same generator state gives the same mask on every device.
Tensor dropout(const Tensor& x, double p, bool train = true, Generator* gen = nullptr);

// ---------------- masks (ops/misc.cpp) ----------------
// [T, S] with 1 where key j is in the future of query i (j > i + (S - T)): positions to hide.
Tensor causal_mask(int64_t T, int64_t S = -1, DType dtype = DType::f32);

// ---------------- in place, no autograd: optimizers, initialisers (ops/misc.cpp) ----------------
// These refuse a tensor that requires grad while grad mode is on.
void fill_(const Tensor& x, double value);
void copy_(const Tensor& dst, const Tensor& src);        // src broadcast to dst, cast, from any device
void add_(const Tensor& x, const Tensor& y, double alpha = 1);  // x += alpha * y
void mul_(const Tensor& x, double s);

// ---------------- operators ----------------
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, double b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, double b) { return div(a, b); }
inline Tensor operator+(double a, const Tensor& b) { return add(b, a); }
inline Tensor operator-(double a, const Tensor& b) { return rsub(a, b); }
inline Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
inline Tensor operator/(double a, const Tensor& b) { return rdiv(a, b); }

}  // namespace copper
