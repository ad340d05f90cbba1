// transformer.cpp — TransformerConfig, Block and TransformerLM (see transformer.h).
#include "nn/transformer.h"

#include <algorithm>
#include <cmath>

#include "nn/config.h"
#include "nn/pe/cope.h"
#include "tensor/ops.h"

namespace copper::nn {

// ---------------------------------------------------------------- config

nlohmann::json TransformerConfig::to_json() const { return config::to_json(*this); }

TransformerConfig TransformerConfig::from_json(const nlohmann::json& js) {
  COPPER_CHECK(js.is_object(), "TransformerConfig", "expected a JSON object, got {}", js.dump());
  COPPER_CHECK(js.contains("vocab"), "TransformerConfig", "missing 'vocab'. HINT: the vocabulary size is required");
  TransformerConfig c;
  config::from_json(c, js, "TransformerConfig");
  return c;
}

void TransformerConfig::validate() const {
  const char* op = "TransformerConfig";
  COPPER_CHECK(vocab > 0, op, "vocab must be positive, got {}", vocab);
  COPPER_CHECK(d_model > 0 && n_heads > 0 && d_model % n_heads == 0, op,
               "d_model {} must be a positive multiple of n_heads {}", d_model, n_heads);
  COPPER_CHECK(n_layers >= 0, op, "n_layers must be >= 0, got {}", n_layers);
  COPPER_CHECK(context > 0, op, "context must be positive, got {}", context);
  COPPER_CHECK(d_ff >= 0, op, "d_ff must be >= 0 (0 means 4 * d_model), got {}", d_ff);
  COPPER_CHECK(dropout >= 0 && dropout < 1, op, "dropout must be in [0, 1), got {}", dropout);
  COPPER_CHECK(npos >= 0, op, "npos must be >= 0 (0 means context + 1), got {}", npos);
  COPPER_CHECK(cope_every >= 1, op, "cope_every must be >= 1, got {}", cope_every);
  const auto& acts = mlp_activations();
  COPPER_CHECK(std::find(acts.begin(), acts.end(), mlp) != acts.end(), op,
               "unknown mlp '{}'. HINT: valid names are relu, gelu, swiglu", mlp);
  const auto& norms = norm_names();
  COPPER_CHECK(std::find(norms.begin(), norms.end(), norm) != norms.end(), op,
               "unknown norm '{}'. HINT: valid names are layernorm, rmsnorm", norm);
  check_position_encoding_name(pe);
  cope_scale_from_name(cope_scale);
}

namespace {
PEConfig pe_config(const TransformerConfig& c, PEConfig::Scope scope, int64_t layer, double embed_std, Generator* gen) {
  PEConfig p;
  p.scope = scope;
  p.layer = layer;
  p.n_layers = c.n_layers;
  p.d_model = c.d_model;
  p.n_heads = c.n_heads;
  p.context = c.context;
  p.embed_std = embed_std;
  p.npos = c.npos;
  p.cope_scale = c.cope_scale;
  p.cope_sep_key = c.cope_sep_key;
  p.cope_every = c.cope_every;
  p.rel_reuse_last = c.rel_reuse_last;
  p.init_gen = gen;
  return p;
}
}  // namespace

// ---------------------------------------------------------------- Block

Block::Block(const TransformerConfig& cfg, int64_t layer, Generator* gen) : pre_norm_(cfg.pre_norm) {
  norm1 = register_module("norm1", std::make_shared<Norm>(cfg.norm, cfg.d_model));
  auto layer_pe = make_position_encoding(cfg.pe, pe_config(cfg, PEConfig::Scope::Layer, layer, 1.0, gen));
  attn = register_module("attn", std::make_shared<CausalSelfAttention>(cfg.d_model, cfg.n_heads, cfg.dropout, layer_pe, gen));
  norm2 = register_module("norm2", std::make_shared<Norm>(cfg.norm, cfg.d_model));
  mlp = register_module("mlp", std::make_shared<MLP>(cfg.d_model, cfg.d_ff, cfg.mlp, gen));
  drop = register_module("drop", std::make_shared<Dropout>(cfg.dropout));
}

Tensor Block::forward(const Tensor& x, KVCache::Layer* cache) {  // x: (B, T, D)
  if (pre_norm_) {
    Tensor h = x + drop->forward(attn->forward(norm1->forward(x), cache));
    return h + drop->forward(mlp->forward(norm2->forward(h)));
  }
  Tensor h = norm1->forward(x + drop->forward(attn->forward(x, cache)));
  return norm2->forward(h + drop->forward(mlp->forward(h)));
}

// ---------------------------------------------------------------- TransformerLM

TransformerLM::TransformerLM(const TransformerConfig& cfg, Generator* init_gen) : cfg_(cfg) {
  cfg_.validate();
  Generator fallback(0x5eed);
  Generator* gen = init_gen ? init_gen : &fallback;
  // Token embeddings ~ N(0, 1) as nn.Embedding; tied to the head they are scaled down to
  // N(0, 1/D) so that the initial logits x·eᵀ (x of unit scale after the final norm) are O(1).
  const double embed_std = cfg.tie_embeddings ? 1.0 / std::sqrt(double(cfg.d_model)) : 1.0;
  embed = register_module("embed", std::make_shared<Embedding>(cfg.vocab, cfg.d_model, embed_std, gen));
  pe = make_position_encoding(cfg.pe, pe_config(cfg, PEConfig::Scope::Embedding, -1, embed_std, gen));
  if (pe) register_module("pe", pe);
  drop_ = register_module("drop", std::make_shared<Dropout>(cfg.dropout));
  auto list = register_module("blocks", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < cfg.n_layers; ++i) blocks.push_back(list->push_back(std::make_shared<Block>(cfg, i, gen)));
  if (cfg.pre_norm) norm_f = register_module("norm_f", std::make_shared<Norm>(cfg.norm, cfg.d_model));
  if (!cfg.tie_embeddings) head = register_module("head", std::make_shared<Linear>(cfg.d_model, cfg.vocab, false, gen));
}

Tensor TransformerLM::forward(const Tensor& ids, KVCache* cache) {
  const Tensor x = hidden(ids, cache);
  return head ? head->forward(x) : matmul(x, embed->weight.t());  // (B, T, vocab)
}

Tensor TransformerLM::loss(const Tensor& ids, const Tensor& targets, int64_t ignore_index) {
  const Tensor x = hidden(ids);
  return linear_cross_entropy(x, head ? head->weight : embed->weight, head ? head->bias : Tensor(),
                              targets.to(x.device()), ignore_index);
}

Tensor TransformerLM::hidden(const Tensor& ids, KVCache* cache) {
  COPPER_CHECK(ids.defined() && ids.dim() == 2 && is_integer(ids.dtype()), "TransformerLM",
               "ids must be (B, T) integers, got {}", ids.defined() ? ids.repr_shape() : std::string("undefined"));
  const int64_t T = ids.size(1);
  COPPER_CHECK(T >= 1, "TransformerLM", "empty sequence {}", ids.repr_shape());
  if (cache)
    COPPER_CHECK(cache->size() == blocks.size(), "TransformerLM", "cache of {} layers for a model of {}. HINT: "
                 "build it with model.make_cache()", cache->size(), blocks.size());
  const int64_t t0 = cache ? cache->length() : 0;  // position of ids[:, 0]
  // ids may come from the host: they are copied to the model's device (B x T integers).
  Tensor x = embed->forward(ids.device() == embed->weight.device() ? ids : ids.to(embed->weight.device()));
  if (pe) {
    Tensor p = pe->embedding_term(t0, T, x.dtype());  // p: (T, D), positions t0..t0+T-1
    if (p.defined()) x = x + p;
  }
  x = drop_->forward(x);
  for (size_t i = 0; i < blocks.size(); ++i) x = blocks[i]->forward(x, cache ? &cache->layer(i) : nullptr);
  if (cache && blocks.empty()) cache->advance_no_layers(T);
  if (norm_f) x = norm_f->forward(x);
  return x;
}

KVCache TransformerLM::make_cache(int64_t capacity) const { return KVCache(int64_t(blocks.size()), capacity); }

std::vector<Tensor> TransformerLM::cope_terms() const {
  std::vector<Tensor> out;
  for (auto& b : blocks)
    if (auto& p = b->attn->pe())
      if (Tensor z = p->last_term(); z.defined()) out.push_back(z);
  return out;
}

void TransformerLM::set_record_attention(bool on) {
  for (auto& b : blocks) b->attn->set_record_attention(on);
}

std::vector<Tensor> TransformerLM::attention_maps() const {
  std::vector<Tensor> out;
  for (auto& b : blocks) out.push_back(b->attn->last_attention());
  return out;
}

std::vector<Tensor> TransformerLM::cope_gates() const {
  std::vector<Tensor> out;
  for (auto& b : blocks)
    if (auto& p = b->attn->pe())
      if (Tensor g = p->last_gates(); g.defined()) out.push_back(g);
  return out;
}

}  // namespace copper::nn
