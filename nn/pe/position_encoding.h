// position_encoding.h — the one interface every position encoding implements, and the
// registry that builds them by name.
//
// Attention asks its encoding three optional questions and never branches on its type:
//   (a) embedding_term: what to add to the token embeddings          (abs, sinusoidal)
//   (b) transform_qk:   how to change q and k before their product   (rope)
//   (c) add_logit_terms: what to add to the attention logits, given q and k
//                        — before or after the 1/sqrt(d_head) scale  (rel, alibi, cope)
// and, for speed, two more: (d) fused_attention, the whole attention in one op whose kernel
// computes the encoding's logit term itself (cope), so that no (Tq, Tk) logits are made; and
// qk_rotation_tables, with which the fused attention turns q and k itself (rope).
//
// Rectangles. Every question is asked for tokens at absolute positions, not only 0..T-1:
// with a KV cache (nn/kv_cache.h) the Tq new queries sit at positions [t0, t0 + Tq) and see
// the Tk = t0 + Tq keys [0, Tk). So embedding_term takes the offset t0, transform_qk takes
// one offset for q and one for k, and AttentionContext carries the query offset; the logit
// terms are (Tq, Tk) blocks in which query row r is position i = q_offset + r and key j
// is visible when j <= i. Without a cache t0 = 0 and Tq = Tk = T (the square).
//
// The model builds one encoding for the embeddings (Scope::Embedding) and one per attention
// layer (Scope::Layer). A factory returns nullptr when its encoding has nothing to do at a
// scope (abs at a layer, rope at the embeddings, cope on a layer skipped by cope_every), so
// the callers only ever test "is there an encoding here".
//
// Names combine with '+': "cope+rope" builds both and sums what they answer (q/k transforms
// are applied in order). docs/05-adding-a-position-encoding.md adds a new one step by step.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"
#include "tensor/random.h"

namespace copper::nn {

struct PEConfig {
  enum class Scope { Embedding, Layer };
  Scope scope = Scope::Layer;
  int64_t layer = 0;       // which layer (Scope::Layer)
  int64_t n_layers = 1;
  int64_t d_model = 64;
  int64_t n_heads = 4;
  int64_t context = 128;   // the longest sequence the model is built for
  double base = 10000;     // sinusoidal and rope wavelength base
  double embed_std = 1.0;  // abs: the std of its table (the model passes its token embedding's)
  // CoPE
  int64_t npos = 0;                    // 0 -> context + 1
  std::string cope_scale = "appendix"; // "appendix": q·k/sqrt(d) + z; "official": (q·k + z)/sqrt(d)
  bool cope_sep_key = false;           // gates from a separate key projection
  int64_t cope_every = 1;              // CoPE on layers 0, k, 2k, ...
  // rel
  bool rel_reuse_last = true;          // distances >= context reuse the last embedding (else add 0)
  Generator* init_gen = nullptr;       // for learned tables (the default generator when null)

  int64_t d_head() const { return d_model / n_heads; }
};

// State an encoding keeps per layer across the calls of one KV cache, under names of its
// choosing (CoPE's separate gate keys: "cope.gate_k"). Owned by KVCache::Layer.
using PECacheState = std::map<std::string, Tensor>;

// What attention hands to add_logit_terms: B sequences, H heads, Tq queries at absolute
// positions [q_offset, q_offset + Tq), Tk keys at positions [0, Tk), Tk >= q_offset + Tq
// (attention itself always has Tk = q_offset + Tq).
struct AttentionContext {
  Tensor x;                        // (B, Tq, D) the layer's input for the new tokens (for own projections)
  Tensor q, k;                     // q: (B, H, Tq, Dh), k: (B, H, Tk, Dh), after transform_qk
  Tensor scaled_logits;            // (B, H, Tq, Tk) q·kᵀ / sqrt(Dh), unmasked (attention masks after the terms)
  int64_t q_offset = 0;            // absolute position of query row 0
  PECacheState* cache = nullptr;   // this layer's encoding state in the KV cache; null without a cache

  int64_t tq() const { return q.size(-2); }
  int64_t tk() const { return k.size(-2); }
};

// Terms to add to the logits, each broadcastable to (B, H, Tq, Tk). The logits become
//   (q·kᵀ + before_scale) / sqrt(Dh) + after_scale
struct LogitTerms {
  Tensor before_scale, after_scale;
  void add_before(const Tensor& t);
  void add_after(const Tensor& t);
};

class PositionEncoding : public Module {
 public:
  std::string type_name() const override { return "PositionEncoding(" + name() + ")"; }
  virtual std::string name() const = 0;

  // (a) (T, D) added to the token embeddings of positions t0..t0+T-1, or undefined.
  //     Not const: an encoding may cache its table in a buffer.
  virtual Tensor embedding_term(int64_t /*t0*/, int64_t /*T*/, DType /*dtype*/) { return Tensor(); }
  // (b) q (B, H, Tq, Dh) at positions q_offset.., k (B, H, Tk, Dh) at positions k_offset..,
  //     replaced by their transformed versions. Attention passes the new tokens' q and k,
  //     both at the cache length; the cache keeps k transformed.
  virtual void transform_qk(Tensor& /*q*/, Tensor& /*k*/, int64_t /*q_offset*/, int64_t /*k_offset*/) {}
  //     Optional, for speed: when transform_qk turns q and k as RoPE does (rotate_pairs), its
  //     cos and sin tables (n, Dh/2) for positions [0, n), in like's dtype and device, so that
  //     attention can turn them inside its fused kernel (causal_rotary_attention) instead of
  //     calling transform_qk. Undefined tables (the default): attention calls transform_qk.
  virtual std::pair<Tensor, Tensor> qk_rotation_tables(int64_t /*n*/, const Tensor& /*like*/) { return {}; }
  // (c) adds this encoding's logit terms, broadcastable to (B, H, Tq, Tk), to `out`.
  virtual void add_logit_terms(const AttentionContext& /*ctx*/, LogitTerms& /*out*/) {}
  // Whether add_logit_terms may add anything. Attention runs the fused causal_attention (no
  // (Tq, Tk) logits in memory) only when its encoding says false; an encoding that keeps the
  // default no-op add_logit_terms overrides this to say so. Saying true wrongly only costs speed.
  virtual bool adds_logit_terms() const { return true; }
  // (d) Optional: the attention output (B, H, Tq, Dh) = dropout(causal_softmax(logits)) v
  //     with this encoding's terms in the logits, computed by one fused op, or an undefined
  //     tensor when the encoding has none for this call (attention then composes the logits
  //     and (c)). It must equal that composition. ctx.scaled_logits is undefined here; scale
  //     is 1/sqrt(Dh). Attention asks only when it is not recording attention maps, so an
  //     encoding may skip what it records for inspection (CoPE's last_gates).
  virtual Tensor fused_attention(const AttentionContext& /*ctx*/, const Tensor& /*v*/, double /*scale*/,
                                 double /*dropout_p*/) {
    return Tensor();
  }

  // Inspection: CoPE's gates of the last forward (B, H, Tq, Tk), recorded without grad;
  // undefined for encodings without gates, and after a fused forward (d): attention
  // composes the logits, and CoPE records its gates, while it records attention maps.
  virtual Tensor last_gates() const { return Tensor(); }
  // Inspection: CoPE's position logit term z of the last forward (B, H, Tq, Tk), without
  // grad; undefined for other encodings.
  virtual Tensor last_term() const { return Tensor(); }
};

using PEFactory = std::function<std::shared_ptr<PositionEncoding>(const PEConfig&)>;

// Builds the encoding `name` ("cope", "cope+rope", ...) for cfg's scope; nullptr when it does
// nothing there. Throws copper::Error listing the valid names on an unknown one.
std::shared_ptr<PositionEncoding> make_position_encoding(const std::string& name, const PEConfig& cfg);
// Throws as make_position_encoding would on a bad name (or a bad CoPE scale), building nothing.
void check_position_encoding_name(const std::string& name);
// Registers a new encoding (examples/ and tests add their own); throws if the name is taken
// or contains '+'.
void register_position_encoding(const std::string& name, PEFactory factory, const std::string& description = "");
// Registered names (sorted) and their one-line descriptions.
std::vector<std::string> position_encoding_names();
std::string position_encoding_description(const std::string& name);

}  // namespace copper::nn
