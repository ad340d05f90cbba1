// linear_cross_entropy.cpp — a language model's head and its loss as one op:
//
//   linear_cross_entropy(x [N, D], weight [V, D], bias [V] or none, targets [N])
//     = cross_entropy(linear(x, weight, bias), targets)
//
// without the [N, V] logits ever being a tensor of their own. Under grad the head's product
// writes the logits into the buffer that will hold their gradient, and the cross-entropy
// turns them into it in place (Backend::cross_entropy_with_grad with dlogits == logits), for
// d(loss) = 1: one [N, V] buffer where the composition has two, and no second stream of
// writes. The backward scales it and multiplies it out:
//   dx = dl W,   dW = (xᵀ dl)ᵀ,   db = the column sums of dl.
// Without grad the rows go through in chunks whose logits take kCpuChunkBytes on the CPU,
// one chunk's buffer reused, so evaluating a batch holds one chunk of logits whatever its
// size. (Under grad the product is not cut into chunks: BLAS would pack the weight again for
// each, and the loss gained nothing measurable from the chunk in cache; docs/PERF.md.)
// `chunk_rows` sets the chunks in both cases, which is how the tests reach the chunked path
// under grad. Under an AutocastGuard(bf16) (tensor/autocast.h) it rounds as the composition
// would: x and the weight rounded once and kept for the backward, the logits and the loss in
// f32, and the backward's products of the gradient rounded alike. The reference it is tested
// against is the composition above (tests/test_ops.cpp), in f32 and under the guard.
#include "tensor/autocast.h"
#include "tensor/ops/common.h"

namespace copper {

using namespace detail;

namespace {

// Without grad, on the CPU, a chunk's logits take at most this many bytes: the memory an
// evaluation holds for them, small enough to stay in the caches between the product and the
// loss.
constexpr int64_t kCpuChunkBytes = int64_t(16) << 20;

int64_t rows_per_chunk(int64_t requested, int64_t rows, int64_t classes, const Tensor& like, bool grad) {
  const int64_t all = std::max<int64_t>(rows, 1);
  if (requested > 0) return std::min(requested, all);
  if (grad || !like.device().is_cpu()) return all;  // one product (a GPU gains nothing by chunks)
  const int64_t per_row = std::max<int64_t>(classes, 1) * int64_t(dtype_size(like.dtype()));
  return std::clamp<int64_t>(kCpuChunkBytes / per_row, 1, all);
}

}  // namespace

Tensor linear_cross_entropy(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& targets,
                            int64_t ignore_index, int64_t chunk_rows) {
  const char* op = "linear_cross_entropy";
  check_float(op, x);
  check_same(op, x, weight);
  COPPER_CHECK(weight.dim() == 2, op, "weight must be [classes, in], got {}", shape_str(weight.shape()));
  COPPER_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), op, "input {} does not match weight {} (in = {})",
               shape_str(x.shape()), shape_str(weight.shape()), weight.size(1));
  if (bias.defined()) {
    check_same(op, x, bias);
    COPPER_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), op, "bias {} for weight {}",
                 shape_str(bias.shape()), shape_str(weight.shape()));
  }
  COPPER_CHECK(chunk_rows >= 0, op, "chunk_rows must be >= 0 (0: chosen for the device), got {}", chunk_rows);
  const int64_t D = weight.size(1), V = weight.size(0);
  // Mixed precision: the product's operands rounded (as matmul.cpp does), the rest f32.
  const DType low = autocast_dtype();
  const bool rounded = x.dtype() == DType::f32 && low != DType::f32;
  const Tensor xd = (rounded ? x.detach().reshape({-1, D}).to(low) : x.detach().reshape({-1, D})).contiguous();
  const Tensor wd = (rounded ? weight.detach().to(low) : weight.detach()).contiguous();  // no copy for a layer's f32 weight
  const Tensor bd = bias.defined() ? bias.detach().contiguous() : Tensor();
  const int64_t N = xd.size(0);
  const Tensor t = cross_entropy_targets(op, targets, x, N, V, ignore_index);
  const Tensor count = counted_targets(t, ignore_index, x.dtype());
  Tensor rows = Tensor::empty({N}, x.dtype(), x.device());
  Tensor lse = Tensor::empty({N}, x.dtype(), x.device());
  Backend& be = backend_of(xd);
  const bool grad = any_requires_grad({x, weight, bias});
  const int64_t chunk = rows_per_chunk(chunk_rows, N, V, x, grad);

  // dl: every row's gradient under grad; else one chunk's logits, reused.
  Tensor dl = Tensor::empty({grad ? N : std::min(chunk, N), V}, x.dtype(), x.device());
  const Tensor wt = wd.t().unsqueeze(0);  // [1, D, V], read transposed
  const Tensor scale = grad ? mean_scale(count) : Tensor();
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    const int64_t m = std::min(chunk, N - r0);
    const Tensor logits = dl.narrow(0, grad ? r0 : 0, m);
    const Tensor xc = xd.narrow(0, r0, m).unsqueeze(0), c = logits.unsqueeze(0);
    if (bd.defined()) be.gemm_bias(xc, wt, bd, c);  // the bias added as the product writes the logits
    else be.gemm(xc, wt, c, false);
    const Tensor tc = t.narrow(0, r0, m), rc = rows.narrow(0, r0, m), lc = lse.narrow(0, r0, m);
    if (grad) be.cross_entropy_with_grad(logits, tc, rc, lc, logits, scale, ignore_index);
    else be.cross_entropy(logits, tc, rc, lc, ignore_index);
  }
  Tensor loss;
  {
    NoGradGuard ng;
    loss = div(sum(rows), count);
  }
  if (!grad) return loss;
  // The weight's gradient is taken as xᵀ·dl, [in, out], and reaches the weight transposed (a
  // copy on arrival), not in the weight's own layout as a linear layer's is (matmul.cpp): at
  // the head's shape OpenBLAS's Haswell kernels, which AMD EPYC machines run, take 8 % longer
  // for dlᵀ·x, more than the copy costs (docs/PERF.md).
  record_op(op, loss, {x, weight, bias},
            [dl, xd, wd, x_shape = x.shape(), gx = x.requires_grad(), gw = weight.requires_grad(),
             gb = bias.defined() && bias.requires_grad()](const Tensor& g) {
              const Tensor d = times_loss_gradient(dl, g);
              // Under mixed precision the gradient is rounded like the kept operands (bf16 ones,
              // which matmul_raw multiplies into f32); the bias's gradient sums it unrounded.
              const Tensor dp = d.dtype() == xd.dtype() ? d : d.to(xd.dtype());
              return std::vector<Tensor>{gx ? matmul_raw(dp, wd).view(x_shape) : Tensor(),
                                         gw ? matmul_raw(xd.t(), dp).t() : Tensor(),
                                         gb ? sum(d, {0}) : Tensor()};
            });
  return loss;
}

}  // namespace copper
