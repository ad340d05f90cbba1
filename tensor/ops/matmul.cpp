// matmul.cpp — matrix products on the backend's gemm, with broadcast batch dimensions.
//
//   a [..., n, k] x b [..., k, m] -> [..., n, m]
// Batch dims broadcast. When b is a plain matrix, a's batch dims fold into its rows so
// the whole product is one gemm. Transposed views are passed to BLAS as "Trans"
// instead of being copied.
//
// Mixed precision (tensor/autocast.h): under an AutocastGuard(bf16), f32 operands are rounded
// to bf16 once, the gemm multiplies the bf16 values with f32 accumulation into an f32 result,
// and the backward multiplies the same bf16 operands by the gradient rounded to bf16.
#include "tensor/autocast.h"
#include "tensor/ops/common.h"

namespace copper {

using namespace detail;

namespace {

// A [batch, r, c] view that gemm accepts: a unit stride in one of the last two dims.
// Copies only when neither layout fits.
Tensor gemm_operand(const Tensor& t3) {
  const int64_t r = t3.size(1), c = t3.size(2);
  Shape st = t3.strides();
  if (c == 1) st[2] = 1;  // the stride of a size-1 dim is free: pick the one BLAS likes
  if (r == 1) st[1] = std::max<int64_t>(c, 1);
  const bool row_major = st[2] == 1 && st[1] >= std::max<int64_t>(c, 1);
  const bool col_major = st[1] == 1 && st[2] >= std::max<int64_t>(r, 1);
  if (row_major || col_major) return as_strided(t3, t3.shape(), st, t3.offset());
  return t3.contiguous();
}

// The dtype of a product of operands of dtype `in`: in's, or f32 for bf16 operands (the gemm
// accumulates in f32 and keeps it).
DType product_dtype(DType in) { return in == DType::bf16 ? DType::f32 : in; }

}  // namespace

namespace detail {

Tensor matmul_raw(const Tensor& a, const Tensor& b, const Tensor& bias) {
  const int64_t n = a.size(-2), k = a.size(-1), m = b.size(-1);
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "matmul");
  Shape out_shape = batch;
  out_shape.push_back(n);
  out_shape.push_back(m);
  const int64_t nb = shape_numel(batch);
  Tensor out = Tensor::empty(out_shape, product_dtype(a.dtype()), a.device());
  auto as3 = [&](const Tensor& t, int64_t r, int64_t c) {
    Shape full = batch;
    full.push_back(r);
    full.push_back(c);
    return t.detach().expand(full).reshape({nb, r, c});  // a view whenever the batch dims merge
  };
  const Tensor a3 = gemm_operand(as3(a, n, k)), b3 = gemm_operand(as3(b, k, m));
  if (bias.defined()) backend_of(a).gemm_bias(a3, b3, bias, out.view({nb, n, m}));
  else backend_of(a).gemm(a3, b3, out.view({nb, n, m}), false);
  return out;
}

}  // namespace detail

namespace {

// b's gradient aᵀ·g. Where b is a transposed matrix (linear passes Wᵀ: W [out, in] seen as
// [in, out]), the product is taken as gᵀ·a, in W's own layout, and handed back transposed:
// the gradient then reaches W contiguous, kept as its .grad without the transposing copy
// that the [in, out] product would need (the two forms of the product run at the same speed
// on BLAS at a layer's shapes; docs/PERF.md).
Tensor gradient_in_layout(const Tensor& a, const Tensor& g, const Tensor& b) {
  const bool transposed_matrix = a.dim() == 2 && b.dim() == 2 && b.size(0) > 1 && b.size(1) > 1 &&
                                 b.strides()[0] == 1 && b.strides()[1] == b.size(0);
  if (transposed_matrix) return matmul_raw(g.transpose(-2, -1), a).transpose(-2, -1);
  return sum_to(matmul_raw(a.transpose(-2, -1), g), b.shape());
}

// matmul, and with `bias` (detached, [m]; b 2-d) the bias added to the result's rows in the
// product's own pass: the same "matmul" node (its backward needs the operands, not the
// result); the bias's node is the caller's.
Tensor product(const Tensor& a, const Tensor& b, const Tensor& bias) {
  check_same("matmul", a, b);
  check_float("matmul", a);
  COPPER_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul", "operands must have at least 1 dim: {} x {}",
               shape_str(a.shape()), shape_str(b.shape()));
  if (a.dim() == 1) {  // a row vector, its added dim removed again; for two 1-d operands that leaves a 0-d dot product
    Tensor out = product(a.unsqueeze(0), b, bias);
    return out.squeeze(b.dim() == 1 ? -1 : -2);
  }
  if (b.dim() == 1) {
    COPPER_CHECK(!bias.defined(), "linear", "a bias needs a 2-d weight");  // (linear passes Wᵀ: never 1-d)
    return matmul(a, b.unsqueeze(-1)).squeeze(-1);
  }
  COPPER_CHECK(a.size(-1) == b.size(-2), "matmul", "inner dimensions differ: {} x {}. HINT: a's last dim must equal b's second-to-last",
               shape_str(a.shape()), shape_str(b.shape()));
  if (b.dim() == 2 && a.dim() > 2) {  // fold a's batch into rows: one big gemm
    Shape out_shape(a.shape().begin(), a.shape().end() - 1);
    out_shape.push_back(b.size(1));
    return product(a.reshape({-1, a.size(-1)}), b, bias).view(out_shape);
  }
  // Under an AutocastGuard(bf16), f32 operands are rounded once and the rounded copies kept for
  // the backward (half the memory of the f32 operands), which rounds the gradient alike.
  const bool rounded = a.dtype() == DType::f32 && autocast_dtype() != DType::f32;
  const Tensor ad = rounded ? a.detach().to(autocast_dtype()) : a.detach();
  const Tensor bd = rounded ? b.detach().to(autocast_dtype()) : b.detach();
  Tensor out = matmul_raw(ad, bd, bias);
  record_op("matmul", out, {a, b}, [ad, bd, ga = a.requires_grad(), gb = b.requires_grad()](const Tensor& g) {
    const Tensor gd = g.dtype() == ad.dtype() ? g : g.to(ad.dtype());
    return std::vector<Tensor>{ga ? sum_to(matmul_raw(gd, bd.transpose(-2, -1)), ad.shape()) : Tensor(),
                               gb ? gradient_in_layout(ad, gd, bd) : Tensor()};
  });
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) { return product(a, b, Tensor()); }

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  COPPER_CHECK(weight.dim() == 2, "linear", "weight must be [out, in], got {}", shape_str(weight.shape()));
  COPPER_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear", "input {} does not match weight {} (in = {})",
               shape_str(x.shape()), shape_str(weight.shape()), weight.size(1));
  if (!bias.defined()) return matmul(x, weight.t());
  COPPER_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "linear", "bias {} for weight {}",
               shape_str(bias.shape()), shape_str(weight.shape()));
  if (bias.dtype() != product_dtype(x.dtype()) || bias.device() != x.device())
    return add(matmul(x, weight.t()), bias);
  // matmul's backward keeps its operands, not its result, so the bias is added in the product's
  // own pass (Backend::gemm_bias): no second pass over the result, no second buffer. The same
  // rounding as add(y, bias).
  const Tensor y = product(x, weight.t(), bias.detach().contiguous());
  Tensor out = y.detach();
  record_op("add", out, {y, bias},
            [bias_shape = bias.shape()](const Tensor& g) { return std::vector<Tensor>{g, sum_to(g, bias_shape)}; });
  return out;
}

}  // namespace copper
