// kv_cache.h — KVCache: the keys and values of the tokens a model has already seen, per
// layer, so that generating token t+1 costs one new row of attention instead of a whole
// forward over t+1 tokens.
//
//   nn::TransformerLM model(cfg);  model.eval();
//   NoGradGuard ng;                                      // a cache is for inference only
//   nn::KVCache cache = model.make_cache();              // or make_cache(capacity)
//   Tensor logits = model.forward(prompt, &cache);       // prompt (B, T0): positions [0, T0)
//   Tensor next = argmax(logits.select(1, T0 - 1), -1);  // (B,) greedy
//   logits = model.forward(next.view({B, 1}), &cache);   // position T0, sees all T0 + 1 keys
//   cache.reset();                                       // a new sequence
//
// Each layer keeps k after the position encoding's transform_qk (so RoPE rotates each key
// once, at its own position) and v, both (B, H, length, Dh), plus whatever its encoding
// keeps across calls (PECacheState: CoPE's separate gate keys). Storage either grows by
// concatenation (capacity 0) or is preallocated to `capacity` tokens and written in place
// (doubling if ever exceeded). Caches move but do not copy: a copy would share the
// preallocated storage that appends write in place.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "nn/pe/position_encoding.h"

namespace copper::nn {

class KVCache {
 public:
  class Layer {
   public:
    explicit Layer(int64_t capacity = 0) : capacity_(capacity) {}
    Layer(Layer&&) = default;
    Layer& operator=(Layer&&) = default;
    Layer(const Layer&) = delete;
    Layer& operator=(const Layer&) = delete;
    // Appends k_new, v_new (B, H, T, Dh) and returns all keys and values (B, H, length, Dh),
    // the new ones last. Throws if B, H or Dh differ from what is cached.
    std::pair<Tensor, Tensor> append(const Tensor& k_new, const Tensor& v_new);
    int64_t length() const { return length_; }
    // The cached keys and values (B, H, length, Dh); undefined while empty.
    Tensor keys() const;
    Tensor values() const;
    void reset();

    PECacheState pe_state;  // the layer's position-encoding state across calls

   private:
    int64_t capacity_;
    int64_t length_ = 0;
    Tensor k_, v_;  // (B, H, allocated, Dh), allocated >= length
  };

  // n_layers empty layers; capacity > 0 preallocates that many tokens per layer on first use.
  explicit KVCache(int64_t n_layers = 0, int64_t capacity = 0);
  KVCache(KVCache&&) = default;
  KVCache& operator=(KVCache&&) = default;
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;

  Layer& layer(size_t i);
  size_t size() const { return layers_.size(); }
  // Tokens cached: the position the next token will have. (All layers agree after a
  // model's forward.)
  int64_t length() const { return layers_.empty() ? length_no_layers_ : layers_[0].length(); }
  void reset();  // empties every layer (keeps the preallocated storage)

  // For a model without layers (length has nowhere else to live).
  void advance_no_layers(int64_t T) { length_no_layers_ += T; }

 private:
  std::vector<Layer> layers_;
  int64_t length_no_layers_ = 0;
};

}  // namespace copper::nn
