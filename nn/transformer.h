// transformer.h — TransformerLM: a decoder-only language model with pluggable position
// encodings (CoPE above all), and its config.
//
//   ids (B, T) -> token embedding (+ pe embedding term) -> dropout
//   -> n_layers × Block -> final norm (pre-norm only) -> head -> logits (B, T, vocab)
//   pre-norm Block:  x = x + drop(attn(norm1(x)));  x = x + drop(mlp(norm2(x)))
//   post-norm Block: x = norm1(x + drop(attn(x)));  x = norm2(x + drop(mlp(x)))
// Parameter names: embed.weight, pe.weight (abs), blocks.<i>.norm1.weight,
// blocks.<i>.attn.qkv.weight, blocks.<i>.attn.pe.pos_emb (cope), blocks.<i>.mlp.fc1.weight,
// norm_f.weight, head.weight (untied only).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/attention.h"
#include "nn/embedding.h"
#include "nn/mlp.h"
#include "nn/norm.h"

namespace copper::nn {

struct TransformerConfig {
  int64_t vocab = 0;
  int64_t d_model = 64;
  int64_t n_layers = 2;
  int64_t n_heads = 4;
  int64_t context = 128;
  int64_t d_ff = 0;                    // 0 -> 4 * d_model
  std::string mlp = "gelu";            // relu | gelu | swiglu
  bool pre_norm = true;
  bool tie_embeddings = false;
  double dropout = 0;
  std::string pe = "cope";             // none | sinusoidal | abs | rel | rope | alibi | cope | cope+rel | cope+rope
  int64_t npos = 0;                    // CoPE positions; 0 -> context + 1
  std::string cope_scale = "appendix"; // | official
  bool cope_sep_key = false;
  int64_t cope_every = 1;
  bool rel_reuse_last = true;
  std::string norm = "layernorm";      // | rmsnorm

  template <class Self, class Visit>
  static void fields(Self& c, Visit&& visit) {  // the one list of fields (nn/config.h)
    visit("vocab", c.vocab, "vocabulary size (required)");
    visit("d_model", c.d_model, "model width");
    visit("n_layers", c.n_layers, "transformer blocks");
    visit("n_heads", c.n_heads, "attention heads (dividing d_model)");
    visit("context", c.context, "the longest sequence the model is built for");
    visit("d_ff", c.d_ff, "MLP width (0: 4 * d_model)");
    visit("mlp", c.mlp, "relu, gelu or swiglu");
    visit("pre_norm", c.pre_norm, "normalise before each sublayer (else after)");
    visit("tie_embeddings", c.tie_embeddings, "the head reuses the token embedding");
    visit("dropout", c.dropout, "dropout probability");
    visit("pe", c.pe, "position encoding (none, sinusoidal, abs, rel, rope, alibi, cope, or a+b)");
    visit("npos", c.npos, "CoPE positions (0: context + 1)");
    visit("cope_scale", c.cope_scale, "appendix or official");
    visit("cope_sep_key", c.cope_sep_key, "CoPE gates from a separate key projection");
    visit("cope_every", c.cope_every, "CoPE on layers 0, k, 2k, ...");
    visit("rel_reuse_last", c.rel_reuse_last, "rel: distances past the table reuse its last row");
    visit("norm", c.norm, "layernorm or rmsnorm");
  }

  nlohmann::json to_json() const;
  // Missing keys keep their defaults except vocab (required); unknown keys are errors.
  static TransformerConfig from_json(const nlohmann::json& js);
  // Throws copper::Error naming the first bad field.
  void validate() const;
};

// One transformer block (pre- or post-norm).
class Block : public Module {
 public:
  Block(const TransformerConfig& cfg, int64_t layer, Generator* init_gen);
  std::string type_name() const override { return "Block"; }
  // (B, T, D) -> (B, T, D); with a cache, the tokens continue the cached ones (attention.h).
  Tensor forward(const Tensor& x, KVCache::Layer* cache = nullptr);

  std::shared_ptr<Norm> norm1, norm2;
  std::shared_ptr<CausalSelfAttention> attn;
  std::shared_ptr<MLP> mlp;
  std::shared_ptr<Dropout> drop;

 private:
  bool pre_norm_;
};

class TransformerLM : public Module {
 public:
  // Parameters are drawn from init_gen, or from a Generator with a fixed seed when null
  // (so that two models built from one config start equal either way).
  explicit TransformerLM(const TransformerConfig& cfg, Generator* init_gen = nullptr);
  std::string type_name() const override { return "TransformerLM"; }

  // ids (B, T) integer -> logits (B, T, vocab). With a cache (from make_cache(), used under
  // NoGradGuard) the tokens are at positions [cache->length(), cache->length() + T), attend
  // to every cached token and to themselves, and are appended: feeding a sequence in chunks
  // gives the logits of one full forward. Learned absolute positions (abs) stop at the
  // context (an error with a HINT); the other encodings run on. ids on the host are copied to
  // the model's device.
  Tensor forward(const Tensor& ids, KVCache* cache = nullptr);
  // The same up to the head: (B, T, d_model), after the final norm.
  Tensor hidden(const Tensor& ids, KVCache* cache = nullptr);
  // The mean next-token cross-entropy of ids (B, T) against targets (B, T), positions whose
  // target is ignore_index not counted: cross_entropy(forward(ids)) without the (B, T, vocab)
  // logits as a tensor (linear_cross_entropy: the loss's gradient written over the logits).
  Tensor loss(const Tensor& ids, const Tensor& targets, int64_t ignore_index = -100);
  // An empty cache with one layer per block; capacity > 0 preallocates that many tokens.
  KVCache make_cache(int64_t capacity = 0) const;
  const TransformerConfig& config() const { return cfg_; }

  // Inspection (of the last forward made while recording attention, below; without grad;
  // with a cache, of its new queries over all keys). Per CoPE layer in layer order (B, H,
  // Tq, Tk): the gates and the position logit term z (CoPE::last_term()).
  std::vector<Tensor> cope_gates() const;
  std::vector<Tensor> cope_terms() const;
  // Turns recording of attention probabilities on or off in every layer; attention_maps()
  // then gives one (B, H, Tq, Tk) per layer (undefined while recording is off).
  void set_record_attention(bool on);
  std::vector<Tensor> attention_maps() const;

  std::shared_ptr<Embedding> embed;
  std::shared_ptr<PositionEncoding> pe;  // the embedding-level encoding (abs, sinusoidal) or null
  std::vector<std::shared_ptr<Block>> blocks;
  std::shared_ptr<Norm> norm_f;          // pre-norm only
  std::shared_ptr<Linear> head;          // untied only

 private:
  TransformerConfig cfg_;
  std::shared_ptr<Dropout> drop_;
};

}  // namespace copper::nn
