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
  Tensor forward(const Tensor& x);  // (B, T, D) -> (B, T, D)

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

  Tensor forward(const Tensor& ids);  // ids (B, T) integer -> logits (B, T, vocab)
  const TransformerConfig& config() const { return cfg_; }
  // The gates of each CoPE layer (in layer order) from the last forward, (B, H, T, T) each.
  std::vector<Tensor> cope_gates() const;

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
