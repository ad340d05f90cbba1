// grad_sync.cpp — bucketed, overlapped all-reduce of the gradients (see grad_sync.h).
#include "train/grad_sync.h"

#include <chrono>

#include "autograd/grad_hook.h"
#include "tensor/ops.h"
#include "tensor/error.h"

namespace copper::train {

namespace {
using clock = std::chrono::steady_clock;
double since(clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); }
}  // namespace

struct GradSync::HookHolder {
  explicit HookHolder(LeafGradHook::Fn fn) : hook(std::move(fn)) {}
  LeafGradHook hook;
};

GradSync::GradSync(dist::Communicator& comm, const nn::NamedTensors& params, bool overlap, int64_t bucket_bytes)
    : comm_(comm), overlap_(overlap) {
  const int64_t per_bucket = std::max<int64_t>(1, bucket_bytes / int64_t(sizeof(float)));
  std::vector<int64_t> sizes;
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    const Tensor& p = it->second;
    COPPER_CHECK(p.dtype() == DType::f32, "train", "data-parallel training all-reduces f32 gradients, but parameter "
                 "'{}' is {}. HINT: keep the parameters in f32", it->first, dtype_name(p.dtype()));
    COPPER_CHECK(p.device() == comm.device(), "train", "parameter '{}' is on {}, but the {} communicator all-reduces "
                 "on {}. HINT: move the model to the communicator's device first", it->first, p.device().str(),
                 comm.backend(), comm.device().str());
    if (sizes.empty() || (sizes.back() > 0 && sizes.back() + p.numel() > per_bucket)) sizes.push_back(0);
    Slot s;
    s.param = p;
    s.bucket = int64_t(sizes.size()) - 1;
    s.offset = sizes.back();
    s.numel = p.numel();
    sizes.back() += p.numel();
    slot_of_[p.impl()] = slots_.size();
    slots_.push_back(s);
  }
  buckets_.resize(sizes.size());
  for (size_t b = 0; b < sizes.size(); ++b) buckets_[b].flat = Tensor::empty({sizes[b]}, DType::f32, comm.device());
}

GradSync::~GradSync() = default;

void GradSync::begin() {
  for (Slot& s : slots_) s.ready = s.has_grad = false;
  for (Bucket& b : buckets_) b.waiting = 0;
  for (const Slot& s : slots_) buckets_[size_t(s.bucket)].waiting++;
  next_launch_ = 0;
  in_backward_ = true;
  if (overlap_) hook_ = std::make_unique<HookHolder>([this](TensorImpl* l) { on_ready(l); });
}

void GradSync::on_ready(TensorImpl* leaf) {
  auto it = slot_of_.find(leaf);
  if (it == slot_of_.end()) return;  // a leaf that is not a parameter (an input that requires grad)
  const auto t = clock::now();
  mark_ready(slots_[it->second]);
  launch_ready();
  for (size_t b = 0; b < next_launch_; ++b)  // move the transfers in flight forward
    if (buckets_[b].pending) buckets_[b].pending->test();
  stats_.hook_s += since(t);
}

void GradSync::mark_ready(Slot& s) {
  if (s.ready) return;
  s.ready = true;
  Tensor dst = buckets_[size_t(s.bucket)].flat.narrow(0, s.offset, s.numel);
  Tensor g = s.param.grad();
  s.has_grad = g.defined();
  if (s.has_grad) {
    copy_(dst, g.reshape({s.numel}));
  } else {
    fill_(dst, 0.0);
  }
  buckets_[size_t(s.bucket)].waiting--;
}

void GradSync::launch_ready() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].waiting == 0) launch(next_launch_++);
}

void GradSync::launch(size_t b) {
  Bucket& k = buckets_[b];
  k.pending = comm_.all_reduce_async(k.flat.data<float>(), k.flat.numel(), dist::Reduce::mean);
  stats_.bytes += k.flat.numel() * int64_t(sizeof(float));
  stats_.buckets++;
  if (in_backward_ && hook_) stats_.overlapped++;
}

void GradSync::finish() {
  const auto t = clock::now();
  hook_.reset();
  in_backward_ = false;
  for (Slot& s : slots_) mark_ready(s);  // no gradient this pass: zeros
  launch_ready();
  for (Bucket& b : buckets_) {
    b.pending->wait();
    b.pending.reset();
  }
  for (Slot& s : slots_) {
    if (!s.has_grad) continue;  // as in a single process: no gradient, no update
    const Tensor src = buckets_[size_t(s.bucket)].flat.narrow(0, s.offset, s.numel).view(s.param.shape());
    Tensor g = s.param.grad();
    if (!g.is_contiguous() || g.shape() != s.param.shape()) {
      g = Tensor::empty(s.param.shape(), DType::f32, s.param.device());
      s.param.set_grad(g);
    }
    copy_(g, src);
  }
  stats_.finish_s += since(t);
}

GradSyncStats GradSync::take_stats() {
  GradSyncStats s = stats_;
  stats_ = {};
  return s;
}

}  // namespace copper::train
