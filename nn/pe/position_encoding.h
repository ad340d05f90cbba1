// position_encoding.h — the one interface every position encoding implements, and the
// registry that builds them by name.
//
// Attention asks its encoding three optional questions and never branches on its type:
//   (a) embedding_term: what to add to the token embeddings          (abs, sinusoidal)
//   (b) transform_qk:   how to change q and k before their product   (rope)
//   (c) add_logit_terms: what to add to the attention logits, given q and k
//                        — before or after the 1/sqrt(d_head) scale  (rel, alibi, cope)
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
#include <memory>
#include <string>
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

// What attention hands to add_logit_terms. Shapes for B sequences, H heads, T tokens.
struct AttentionContext {
  Tensor x;              // (B, T, D) the layer's input (for encodings with their own projections)
  Tensor q, k;           // (B, H, T, Dh) after transform_qk
  Tensor scaled_logits;  // (B, H, T, T) q·kᵀ / sqrt(Dh), not masked (attention masks future keys after the terms)
};

// Terms to add to the logits, each broadcastable to (B, H, T, T). The logits become
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

  // (a) (T, D) added to the token embeddings of positions 0..T-1, or undefined.
  virtual Tensor embedding_term(int64_t /*T*/, DType /*dtype*/) const { return Tensor(); }
  // (b) q, k (B, H, T, Dh) replaced by their transformed versions.
  virtual void transform_qk(Tensor& /*q*/, Tensor& /*k*/) const {}
  // (c) adds this encoding's logit terms to `out`.
  virtual void add_logit_terms(const AttentionContext& /*ctx*/, LogitTerms& /*out*/) {}

  // Inspection: CoPE's gates of the last forward (B, H, T, T), recorded without grad;
  // undefined for encodings without gates.
  virtual Tensor last_gates() const { return Tensor(); }
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
