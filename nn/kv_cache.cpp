// kv_cache.cpp — the per-layer key/value cache (see kv_cache.h).
#include "nn/kv_cache.h"

#include <algorithm>

#include "autograd/grad_mode.h"
#include "tensor/ops.h"

namespace copper::nn {

std::pair<Tensor, Tensor> KVCache::Layer::append(const Tensor& k_new, const Tensor& v_new) {
  COPPER_CHECK(k_new.dim() == 4 && v_new.shape() == k_new.shape(), "kv_cache",
               "k {} and v {} must both be (B, H, T, Dh)", k_new.repr_shape(), v_new.repr_shape());
  COPPER_CHECK(!k_new.requires_grad() && !v_new.requires_grad(), "kv_cache",
               "keys and values that require grad: a cache keeps them without their graph. HINT: run the forward "
               "with a cache under NoGradGuard (it is for inference: generation, attention maps)");
  const int64_t B = k_new.size(0), H = k_new.size(1), T = k_new.size(2), Dh = k_new.size(3);
  if (length_ > 0)
    COPPER_CHECK(k_.size(0) == B && k_.size(1) == H && k_.size(3) == Dh && k_.dtype() == k_new.dtype(), "kv_cache",
                 "new keys {} {} do not match the cached {} {}. HINT: one cache per sequence batch; reset() it "
                 "before a new batch", k_new.repr_shape(), dtype_name(k_new.dtype()), k_.repr_shape(),
                 dtype_name(k_.dtype()));
  if (capacity_ == 0) {  // grow by concatenation
    k_ = length_ == 0 ? k_new.contiguous() : cat({k_, k_new}, 2);  // k_: (B, H, length + T, Dh)
    v_ = length_ == 0 ? v_new.contiguous() : cat({v_, v_new}, 2);
  } else {  // preallocated: write in place, doubling when full
    const bool fits = k_.defined() && k_.size(0) == B && k_.size(1) == H && k_.size(3) == Dh &&
                      k_.dtype() == k_new.dtype() && length_ + T <= k_.size(2);
    if (!fits) {
      const int64_t alloc = std::max(capacity_, k_.defined() && length_ > 0 ? 2 * k_.size(2) : int64_t(0));
      const int64_t n = std::max(alloc, length_ + T);
      Tensor k2 = zeros({B, H, n, Dh}, k_new.dtype(), k_new.device());  // k2: (B, H, n, Dh)
      Tensor v2 = zeros({B, H, n, Dh}, v_new.dtype(), v_new.device());  // v2: (B, H, n, Dh)
      if (length_ > 0) {
        copy_(k2.narrow(2, 0, length_), k_.narrow(2, 0, length_));
        copy_(v2.narrow(2, 0, length_), v_.narrow(2, 0, length_));
      }
      k_ = k2;
      v_ = v2;
    }
    copy_(k_.narrow(2, length_, T), k_new);
    copy_(v_.narrow(2, length_, T), v_new);
  }
  length_ += T;
  return {keys(), values()};
}

Tensor KVCache::Layer::keys() const {
  if (length_ == 0) return Tensor();
  return k_.size(2) == length_ ? k_ : k_.narrow(2, 0, length_);  // (B, H, length, Dh)
}

Tensor KVCache::Layer::values() const {
  if (length_ == 0) return Tensor();
  return v_.size(2) == length_ ? v_ : v_.narrow(2, 0, length_);  // (B, H, length, Dh)
}

void KVCache::Layer::reset() {
  length_ = 0;
  if (capacity_ == 0) {
    k_ = Tensor();
    v_ = Tensor();
  }
  pe_state.clear();
}

KVCache::KVCache(int64_t n_layers, int64_t capacity) {
  COPPER_CHECK(n_layers >= 0 && capacity >= 0, "kv_cache", "need n_layers >= 0 and capacity >= 0, got {} and {}",
               n_layers, capacity);
  for (int64_t i = 0; i < n_layers; ++i) layers_.emplace_back(capacity);
}

KVCache::Layer& KVCache::layer(size_t i) {
  COPPER_CHECK(i < layers_.size(), "kv_cache", "layer {} of a cache with {} layers. HINT: build the cache with "
               "model.make_cache()", i, layers_.size());
  return layers_[i];
}

void KVCache::reset() {
  for (auto& l : layers_) l.reset();
  length_no_layers_ = 0;
}

}  // namespace copper::nn
