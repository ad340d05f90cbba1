// cuda_backend.cpp — CudaBackend: from Tensors to the launchers of cuda/kernels.h, on the
// tensors' GPU and its stream; transfer between host and devices; synchronize.
#include "cuda/cuda_backend.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/device.h"
#include "cuda/kernels.h"

namespace copper::cuda {

namespace {

int index_of(const Tensor& t, const char* op) {
  COPPER_CHECK(t.device().type == DeviceType::cuda, op, "the CUDA backend got a tensor on {}: {}", t.device().str(),
               t.repr_shape());
  return t.device().index;
}

void* ptr(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

// The common layout of K tensors that share `shape`, each with its own strides: size-1 dims
// dropped, neighbouring dims merged where every operand is contiguous across them (the same
// collapse as the CPU's for_each_row, tensor/cpu/loops.h), so a contiguous tensor is one dim.
template <size_t K>
Layout make_layout(const char* op, const Shape& shape, const std::array<const Tensor*, K>& ts,
                   std::array<Operand, K>& ops) {
  Layout l;
  l.numel = shape_numel(shape);
  for (size_t k = 0; k < K; ++k) {
    ops[k].data = ts[k]->raw_data();
    ops[k].dtype = ts[k]->dtype();
  }
  if (l.numel == 0) return l;
  std::vector<int64_t> sz;
  std::array<std::vector<int64_t>, K> st;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !sz.empty();
    for (size_t k = 0; k < K && merge; ++k) merge = st[k].back() == ts[k]->strides()[d] * shape[d];
    if (merge) {
      sz.back() *= shape[d];
      for (size_t k = 0; k < K; ++k) st[k].back() = ts[k]->strides()[d];
    } else {
      sz.push_back(shape[d]);
      for (size_t k = 0; k < K; ++k) st[k].push_back(ts[k]->strides()[d]);
    }
  }
  if (sz.empty()) {  // one element
    sz.push_back(1);
    for (size_t k = 0; k < K; ++k) st[k].push_back(0);
  }
  COPPER_CHECK(int(sz.size()) <= kMaxDims, op,
               "the CUDA kernel takes at most {} dims after merging contiguous ones; {} with strides {} has {}. HINT: "
               "call .contiguous() first",
               kMaxDims, shape_str(shape), shape_str(ts[0]->strides()), sz.size());
  l.nd = int(sz.size());
  for (int d = 0; d < l.nd; ++d) {
    l.size[d] = sz[size_t(d)];
    for (size_t k = 0; k < K; ++k) ops[k].stride[d] = st[k][size_t(d)];
  }
  return l;
}

// `count` structs of a kernel's argument table, copied to device d in an i64 tensor. The tensor's
// memory returns to the allocator when it goes out of scope, and is reused only by kernels
// queued after the one that reads it.
template <class Slot>
Tensor device_table(const Slot* slots, size_t count, Device d) {
  static_assert(sizeof(Slot) % sizeof(int64_t) == 0, "a table slot is copied as int64 words");
  Tensor host = Tensor::empty({int64_t(count * sizeof(Slot) / sizeof(int64_t))}, DType::i64);
  std::memcpy(host.raw_data(), slots, count * sizeof(Slot));
  return host.to(d);
}

}  // namespace

CudaBackend& backend() {
  static auto* b = new CudaBackend;  // never destroyed, like the CPU backend
  return *b;
}

// ---------------- between devices ----------------

void CudaBackend::transfer(const Tensor& src, const Tensor& dst) {
  COPPER_CHECK(src.dtype() == dst.dtype() && src.numel() == dst.numel() && src.is_contiguous() && dst.is_contiguous(),
               "transfer", "needs contiguous tensors of one dtype and size, got {} on {} and {} on {}",
               src.repr_shape(), src.device().str(), dst.repr_shape(), dst.device().str());
  const size_t bytes = size_t(src.numel()) * dtype_size(src.dtype());
  if (bytes == 0) return;
  const Device s = src.device(), d = dst.device();
  if (s.is_cpu() || d.is_cpu()) {
    // Host <-> device in the device's stream, after the kernels queued before it. It waits for
    // the copy either way: the host tensor may be freed (or read) as soon as this returns.
    const int dev = s.is_cpu() ? d.index : s.index;
    DeviceGuard g(dev);
    cudaStream_t st = stream(dev);
    COPPER_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), bytes,
                                      s.is_cpu() ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost, st));
    COPPER_CUDA_CHECK(cudaStreamSynchronize(st));
  } else if (s.index == d.index) {
    DeviceGuard g(d.index);
    COPPER_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), bytes, cudaMemcpyDeviceToDevice, stream(d.index)));
  } else {
    // Two GPUs, two streams: both are drained first, so that no kernel queued on either side
    // still reads or writes these blocks, and the copy is waited for.
    synchronize(s);
    synchronize(d);
    DeviceGuard g(d.index);
    COPPER_CUDA_CHECK(cudaMemcpyPeerAsync(dst.raw_data(), d.index, src.raw_data(), s.index, bytes, stream(d.index)));
    COPPER_CUDA_CHECK(cudaStreamSynchronize(stream(d.index)));
  }
}

void CudaBackend::synchronize(Device d) {
  COPPER_CHECK(d.type == DeviceType::cuda, "synchronize", "the CUDA backend asked to wait for {}", d.str());
  DeviceGuard g(d.index);
  COPPER_CUDA_CHECK(cudaStreamSynchronize(stream(d.index)));
}

// ---------------- elementwise ----------------

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  const int dev = index_of(dst, "copy");
  DeviceGuard g(dev);
  std::array<Operand, 2> ops;
  const Layout l = make_layout<2>("copy", dst.shape(), {&src, &dst}, ops);
  launch_copy(l, ops[0], ops[1], stream(dev));
}

void CudaBackend::fill(const Tensor& dst, double value) {
  const int dev = index_of(dst, "fill");
  DeviceGuard g(dev);
  std::array<Operand, 1> ops;
  const Layout l = make_layout<1>("fill", dst.shape(), {&dst}, ops);
  launch_fill(l, ops[0], value, stream(dev));
}

void CudaBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) {
  const int dev = index_of(out, "unary");
  DeviceGuard g(dev);
  std::array<Operand, 2> ops;
  const Layout l = make_layout<2>("unary", out.shape(), {&x, &out}, ops);
  launch_unary(op, l, ops[0], ops[1], a, b, stream(dev));
}

void CudaBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& grad, const Tensor& out,
                                 double a, double b) {
  const int dev = index_of(out, "unary_backward");
  DeviceGuard g(dev);
  launch_unary_backward(op, x.dtype(), out.numel(), ptr(x), ptr(y), ptr(grad), ptr(out), a, b, stream(dev));
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  const int dev = index_of(out, "binary");
  DeviceGuard g(dev);
  std::array<Operand, 3> ops;
  const Layout l = make_layout<3>("binary", out.shape(), {&a, &b, &out}, ops);
  launch_binary(op, l, ops[0], ops[1], ops[2], stream(dev));
}

void CudaBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  const int dev = index_of(out, "where");
  DeviceGuard g(dev);
  std::array<Operand, 4> ops;
  const Layout l = make_layout<4>("where", out.shape(), {&cond, &a, &b, &out}, ops);
  launch_where(l, ops[0], ops[1], ops[2], ops[3], stream(dev));
}

void CudaBackend::bias_gelu(const Tensor& x, const Tensor& bias, const Tensor& y, const Tensor& slope, int64_t rows,
                            int64_t n) {
  const int dev = index_of(x, "bias_gelu");
  DeviceGuard g(dev);
  launch_bias_gelu(x.dtype(), ptr(x), ptr(bias), ptr(y), ptr(slope), rows, n, stream(dev));
}

// ---------------- reductions, rows, scans ----------------

void CudaBackend::reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& out) {
  const int dev = index_of(x, "reduce");
  DeviceGuard g(dev);
  Tensor partials;  // a sum's first pass (kernels.h, column_chunks), served by the allocator's cache
  if (op == ReduceOp::sum && inner > 1)
    partials = Tensor::empty({column_chunks(n, outer * inner) * outer * inner}, DType::f64, x.device());
  launch_reduce(op, x.dtype(), ptr(x), outer, n, inner, ptr(out), static_cast<double*>(ptr(partials)),
                stream(dev));
}

void CudaBackend::softmax(const Tensor& x, const Tensor& y, int64_t rows, int64_t n, bool log) {
  const int dev = index_of(x, "softmax");
  DeviceGuard g(dev);
  launch_softmax(x.dtype(), ptr(x), ptr(y), rows, n, log, stream(dev));
}

void CudaBackend::softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t rows, int64_t n,
                                   bool log) {
  const int dev = index_of(y, "softmax_backward");
  DeviceGuard g(dev);
  launch_softmax_backward(y.dtype(), ptr(y), ptr(dy), ptr(dx), rows, n, log, stream(dev));
}

void CudaBackend::causal_softmax(const Tensor& x, const Tensor& y, int64_t rows, int64_t t, int64_t n) {
  const int dev = index_of(x, "causal_softmax");
  DeviceGuard g(dev);
  launch_causal_softmax(x.dtype(), ptr(x), ptr(y), rows, t, n, stream(dev));
}

void CudaBackend::causal_softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t rows, int64_t t,
                                          int64_t n) {
  const int dev = index_of(y, "causal_softmax_backward");
  DeviceGuard g(dev);
  launch_causal_softmax_backward(y.dtype(), ptr(y), ptr(dy), ptr(dx), rows, t, n, stream(dev));
}

void CudaBackend::cross_entropy(const Tensor& logits, const Tensor& targets, const Tensor& loss, const Tensor& lse,
                                int64_t ignore_index) {
  const int dev = index_of(logits, "cross_entropy");
  DeviceGuard g(dev);
  launch_cross_entropy(logits.dtype(), ptr(logits), targets.data<int64_t>(), ptr(loss), ptr(lse), logits.size(0),
                       logits.size(1), ignore_index, stream(dev));
}

void CudaBackend::cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse,
                                         const Tensor& dlogits, const Tensor& scale, int64_t ignore_index) {
  const int dev = index_of(logits, "cross_entropy_backward");
  DeviceGuard g(dev);
  launch_cross_entropy_backward(logits.dtype(), ptr(logits), targets.data<int64_t>(), ptr(lse), ptr(dlogits),
                                logits.size(0), logits.size(1), ptr(scale), ignore_index, stream(dev));
}

void CudaBackend::rotate_pairs(const Tensor& x, const Tensor& cs, const Tensor& sn, const Tensor& out, int64_t outer,
                               int64_t t, int64_t p, bool inverse) {
  const int dev = index_of(x, "rotate_pairs");
  DeviceGuard g(dev);
  launch_rotate_pairs(x.dtype(), ptr(x), ptr(cs), ptr(sn), ptr(out), outer, t, p, inverse, stream(dev));
}

void CudaBackend::cope_positions(const Tensor& gate_logits, const Tensor& z, const Tensor& term, const Tensor& gates,
                                 const Tensor& pos, int64_t rows, int64_t Tq, int64_t Tk, int64_t t0, int64_t npos) {
  const int dev = index_of(gate_logits, "cope_positions");
  DeviceGuard g(dev);
  launch_cope_positions(gate_logits.dtype(), ptr(gate_logits), ptr(z), ptr(term), ptr(gates), ptr(pos), rows, Tq, Tk,
                        t0, npos, stream(dev));
}

void CudaBackend::cope_positions_backward(const Tensor& dterm, const Tensor& z, const Tensor& gates, const Tensor& pos,
                                          const Tensor& dgate_logits, const Tensor& dz, int64_t rows, int64_t Tq,
                                          int64_t Tk, int64_t t0, int64_t npos) {
  const int dev = index_of(dterm, "cope_positions_backward");
  DeviceGuard g(dev);
  launch_cope_positions_backward(dterm.dtype(), ptr(dterm), ptr(z), ptr(gates), ptr(pos), ptr(dgate_logits), ptr(dz),
                                 rows, Tq, Tk, t0, npos, stream(dev));
}

namespace {
AttentionDims attention_dims(int64_t bh, int64_t Tq, int64_t Tk, int64_t Dh, double scale, double p, uint64_t key,
                             const AttentionCope& cope) {
  COPPER_CHECK(Dh <= kMaxAttentionHead, "attention", "the CUDA kernel takes heads of at most {} channels, got {}",
               kMaxAttentionHead, Dh);
  AttentionDims d;
  d.bh = bh;
  d.Tq = Tq;
  d.Tk = Tk;
  d.Dh = Dh;
  d.npos = cope.z.defined() ? cope.z.size(-1) : 0;
  d.scale = scale;
  d.p = p;
  d.key = key;
  d.official = cope.official;
  return d;
}

// attention_rotates() is false here: the op rotates q and k before the kernels.
void no_rotation(const AttentionRotation& rot) {
  COPPER_CHECK(!rot.cs.defined() && !rot.sn.defined(), "attention",
               "the CUDA kernels take no RoPE tables. HINT: rotate q and k with rotate_pairs first");
}
}  // namespace

bool CudaBackend::has_fused_attention() const {
  static const bool on = [] {
    const char* v = std::getenv("COPPER_CUDA_FUSED_ATTENTION");
    return v != nullptr && std::string(v) == "1";
  }();
  return on;
}

void CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                            int64_t bh, int64_t Tq, int64_t Tk, int64_t Dh, double scale, double p, uint64_t key,
                            const AttentionCope& cope, const AttentionRotation& rot, DType /*products*/) {
  const int dev = index_of(q, "attention");
  no_rotation(rot);
  DeviceGuard g(dev);
  launch_attention(q.dtype(), attention_dims(bh, Tq, Tk, Dh, scale, p, key, cope), ptr(q), ptr(k), ptr(v),
                   ptr(cope.z), ptr(out), ptr(lse), stream(dev));
}

void CudaBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                     const Tensor& lse, const Tensor& dout, const Tensor& dq, const Tensor& dk,
                                     const Tensor& dv, int64_t bh, int64_t Tq, int64_t Tk, int64_t Dh, double scale,
                                     double p, uint64_t key, const AttentionCope& cope,
                                     const AttentionRotation& rot, DType /*products*/) {
  const int dev = index_of(q, "attention_backward");
  no_rotation(rot);
  DeviceGuard g(dev);
  const bool with_cope = cope.z.defined();
  // Workspaces for this call only (the caching allocator serves them again next step).
  const Shape square{bh, Tq, Tk};
  Tensor ds = Tensor::empty(square, q.dtype(), q.device()), pm = Tensor::empty(square, q.dtype(), q.device());
  Tensor dp = with_cope ? Tensor::empty(square, q.dtype(), q.device()) : Tensor();
  Tensor gates = with_cope ? Tensor::empty(square, q.dtype(), q.device()) : Tensor();
  launch_attention_backward_rows(q.dtype(), attention_dims(bh, Tq, Tk, Dh, scale, p, key, cope), ptr(q), ptr(k),
                                 ptr(v), ptr(cope.z), ptr(out), ptr(lse), ptr(dout), ptr(ds), ptr(pm), ptr(cope.dz),
                                 ptr(dp), ptr(gates), stream(dev));
  const Tensor q3 = q.view({bh, Tq, Dh}), k3 = k.view({bh, Tk, Dh}), do3 = dout.view({bh, Tq, Dh});
  gemm(ds, k3, dq.view({bh, Tq, Dh}), false);                  // dq = dS k
  gemm(ds.transpose(1, 2), q3, dk.view({bh, Tk, Dh}), false);  // dk = dSᵀ q
  gemm(pm.transpose(1, 2), do3, dv.view({bh, Tk, Dh}), false); // dv = (P∘M)ᵀ dO
}

void CudaBackend::cumsum(const Tensor& x, const Tensor& out, int64_t outer, int64_t n, int64_t inner, bool reverse) {
  const int dev = index_of(x, "cumsum");
  DeviceGuard g(dev);
  launch_cumsum(x.dtype(), ptr(x), ptr(out), outer, n, inner, reverse, stream(dev));
}

// ---------------- indexing ----------------

void CudaBackend::index_select(const Tensor& x, const Tensor& index, const Tensor& out, int64_t outer, int64_t n,
                               int64_t inner) {
  const int dev = index_of(x, "index_select");
  DeviceGuard g(dev);
  launch_index_select(x.dtype(), ptr(x), index.data<int64_t>(), index.numel(), ptr(out), outer, n, inner,
                      stream(dev));
}

void CudaBackend::index_add(const Tensor& out, const Tensor& index, const Tensor& src, int64_t outer, int64_t n,
                            int64_t inner) {
  const int dev = index_of(out, "index_add");
  DeviceGuard g(dev);
  launch_index_add(out.dtype(), ptr(out), index.data<int64_t>(), index.numel(), ptr(src), outer, n, inner,
                   stream(dev));
}

void CudaBackend::gather(const Tensor& x, const Tensor& index, const Tensor& out, int64_t outer, int64_t n, int64_t k,
                         int64_t inner) {
  const int dev = index_of(x, "gather");
  DeviceGuard g(dev);
  launch_gather(x.dtype(), ptr(x), index.data<int64_t>(), ptr(out), outer, n, k, inner, stream(dev));
}

void CudaBackend::scatter_add(const Tensor& out, const Tensor& index, const Tensor& src, int64_t outer, int64_t n,
                              int64_t k, int64_t inner) {
  const int dev = index_of(out, "scatter_add");
  DeviceGuard g(dev);
  launch_scatter_add(out.dtype(), ptr(out), index.data<int64_t>(), ptr(src), outer, n, k, inner, stream(dev));
}

// ---------------- norms, optimizer ----------------

void CudaBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& y,
                             const Tensor& mean, const Tensor& rstd, int64_t rows, int64_t n, double eps) {
  const int dev = index_of(x, "layer_norm");
  DeviceGuard g(dev);
  launch_layer_norm(x.dtype(), ptr(x), ptr(weight), ptr(bias), ptr(y), ptr(mean), ptr(rstd), rows, n, eps,
                    stream(dev));
}

void CudaBackend::layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                      const Tensor& dy, const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                      int64_t rows, int64_t n) {
  const int dev = index_of(x, "layer_norm_backward");
  DeviceGuard g(dev);
  Tensor partials;  // the column sums' first pass (kernels.h), for dweight and dbias
  if (dweight.defined() || dbias.defined())
    partials = Tensor::empty({2 * column_chunks(rows, n) * n}, DType::f64, x.device());
  launch_layer_norm_backward(x.dtype(), ptr(x), ptr(weight), ptr(mean), ptr(rstd), ptr(dy), ptr(dx), ptr(dweight),
                             ptr(dbias), rows, n, static_cast<double*>(ptr(partials)), stream(dev));
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor& weight, const Tensor& y, const Tensor& rstd, int64_t rows,
                           int64_t n, double eps) {
  const int dev = index_of(x, "rms_norm");
  DeviceGuard g(dev);
  launch_rms_norm(x.dtype(), ptr(x), ptr(weight), ptr(y), ptr(rstd), rows, n, eps, stream(dev));
}

void CudaBackend::rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd, const Tensor& dy,
                                    const Tensor& dx, const Tensor& dweight, int64_t rows, int64_t n) {
  const int dev = index_of(x, "rms_norm_backward");
  DeviceGuard g(dev);
  Tensor partials;  // the column sums' first pass (kernels.h), for dweight
  if (dweight.defined()) partials = Tensor::empty({column_chunks(rows, n) * n}, DType::f64, x.device());
  launch_rms_norm_backward(x.dtype(), ptr(x), ptr(weight), ptr(rstd), ptr(dy), ptr(dx), ptr(dweight), rows, n,
                           static_cast<double*>(ptr(partials)), stream(dev));
}

void CudaBackend::adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, double lr, double b1,
                             double b2, double eps, double wd, double bc1, double bc2) {
  const int dev = index_of(p, "adamw_step");
  DeviceGuard guard(dev);
  launch_adamw(p.dtype(), ptr(p), ptr(g), ptr(m), ptr(v), p.numel(), lr, b1, b2, eps, wd, 1.0 / bc1, 1.0 / bc2,
               stream(dev));
}

void CudaBackend::adamw_steps(const std::vector<AdamWParam>& params, double lr, double b1, double b2, double eps) {
  if (params.empty()) return;
  const Device d = params[0].p.device();
  const DType dt = params[0].p.dtype();
  bool one_launch = true;
  for (const AdamWParam& a : params) one_launch = one_launch && a.p.device() == d && a.p.dtype() == dt;
  if (!one_launch) {  // mixed devices or dtypes: one launch each
    Backend::adamw_steps(params, lr, b1, b2, eps);
    return;
  }
  const int dev = index_of(params[0].p, "adamw_steps");
  DeviceGuard guard(dev);
  // The parameters' pointers and constants, in chunks of at most a grid's height, copied to
  // the device in a tensor (its memory is reused only by kernels queued after this one).
  constexpr size_t kMaxSlots = 65535;
  for (size_t at = 0; at < params.size(); at += kMaxSlots) {
    const size_t count = std::min(kMaxSlots, params.size() - at);
    std::vector<AdamWSlot> slots(count);
    int64_t max_n = 0;
    for (size_t i = 0; i < count; ++i) {
      const AdamWParam& a = params[at + i];
      slots[i] = AdamWSlot{ptr(a.p), ptr(a.g), ptr(a.m), ptr(a.v), a.p.numel(), a.wd, 1.0 / a.bc1, 1.0 / a.bc2};
      max_n = std::max(max_n, a.p.numel());
    }
    const Tensor table = device_table(slots.data(), count, d);
    launch_adamw_many(dt, static_cast<const AdamWSlot*>(table.raw_data()), int(count), max_n, lr, b1, b2, eps,
                      stream(dev));
  }
}

void CudaBackend::dropout_mask(const Tensor& out, double p, uint64_t key) {
  const int dev = index_of(out, "dropout_mask");
  DeviceGuard guard(dev);
  launch_dropout_mask(out.dtype(), ptr(out), out.numel(), float(p), 1.0 / (1.0 - p), key, stream(dev));
}

void CudaBackend::random_fill(const Tensor& out, bool normal, double a, double b, uint64_t key) {
  const int dev = index_of(out, "random_fill");
  DeviceGuard guard(dev);
  launch_random_fill(out.dtype(), ptr(out), out.numel(), normal, a, b, key, stream(dev));
}

void CudaBackend::sum_squares(const std::vector<Tensor>& xs, const Tensor& out) {
  const int dev = index_of(out, "sum_squares");
  DeviceGuard guard(dev);
  const int64_t chunk = kSumSquaresChunk;
  // Every tensor's chunks get consecutive partial slots; the table of slots goes to the device
  // in grid-height pieces, as adamw_steps' does, and the partials are added once at the end.
  std::vector<SumSquaresSlot> slots;
  int64_t num_partials = 0;
  for (const Tensor& x : xs) {
    COPPER_CHECK(x.device() == out.device() && (x.dtype() == DType::f32 || x.dtype() == DType::f64) &&
                     x.is_contiguous(),
                 "sum_squares", "takes contiguous f32/f64 tensors on {}, got {} on {}", out.device().str(),
                 x.repr_shape(), x.device().str());
    if (x.numel() == 0) continue;
    slots.push_back(SumSquaresSlot{ptr(x), x.numel(), num_partials, x.dtype() == DType::f64 ? 1 : 0});
    num_partials += (x.numel() + chunk - 1) / chunk;
  }
  Tensor partials = Tensor::empty({std::max<int64_t>(num_partials, 1)}, DType::f64, out.device());
  constexpr size_t kMaxSlots = 65535;
  for (size_t at = 0; at < slots.size(); at += kMaxSlots) {
    const size_t count = std::min(kMaxSlots, slots.size() - at);
    int64_t max_chunks = 0;
    for (size_t i = 0; i < count; ++i) max_chunks = std::max(max_chunks, (slots[at + i].n + chunk - 1) / chunk);
    const Tensor table = device_table(slots.data() + at, count, out.device());
    launch_sum_squares_chunks(static_cast<const SumSquaresSlot*>(table.raw_data()), int(count), max_chunks, chunk,
                              static_cast<double*>(partials.raw_data()), stream(dev));
  }
  launch_sum_partials(static_cast<const double*>(partials.raw_data()), num_partials,
                      static_cast<double*>(out.raw_data()), stream(dev));
}

}  // namespace copper::cuda
