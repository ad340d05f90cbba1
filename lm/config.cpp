// config.cpp — LMConfig and the presets (see config.h).
#include "lm/config.h"

#include <algorithm>

#include "nn/config.h"
#include "tensor/error.h"

namespace copper::lm {

nlohmann::json LMConfig::to_json() const { return config::to_json(*this); }

LMConfig LMConfig::from_json(const nlohmann::json& js) {
  COPPER_CHECK(js.is_object() && js.contains("model") && js.contains("loop"), "lm",
               "an LM config needs 'model' and 'loop' objects. HINT: use the config.json a `copper lm train` run wrote");
  COPPER_CHECK(js.at("model").contains("vocab"), "lm", "the model config has no 'vocab'");
  LMConfig c;
  nlohmann::json own = js;
  own.erase("data");  // a run's config.json also names the data folder it was trained on
  config::from_json(c, own, "LMConfig");
  return c;
}

void LMConfig::validate() const {
  model.validate();
  loop.validate();
  COPPER_CHECK(batch >= 1, "lm", "batch must be at least 1, got {}", batch);
  COPPER_CHECK(eval_tokens >= 0, "lm", "eval_tokens must be >= 0 (0: the whole split), got {}", eval_tokens);
}

const std::vector<PresetInfo>& presets() {
  static const std::vector<PresetInfo> p{
      {"cpu-small", "4 layers, width 256, 4 heads, context 256, batch 16 (shared/bench/lm-small.json); WikiText-2",
       "25-35 min"},
      {"code-small", "the cpu-small shape for the code corpus", "25-35 min"},
      {"gpt2-small", "12 layers, width 768, 12 heads, context 1024, batch 8 (the paper's WikiText-103 model); for GPUs",
       "days on a CPU"}};
  return p;
}

void set_steps(LMConfig& cfg, int64_t steps) {
  COPPER_CHECK(steps >= 0, "lm", "--steps must be at least 0, got {}", steps);
  auto& l = cfg.loop;
  l.steps = steps;
  l.schedule.total = steps;
  l.schedule.warmup = std::max<int64_t>(1, steps / 20);
  l.log_every = std::max<int64_t>(1, std::min<int64_t>(25, steps));
  l.checkpoint_every = std::max<int64_t>(1, std::min<int64_t>(100, steps));
  l.eval_every = std::max<int64_t>(1, std::min<int64_t>(std::max<int64_t>(100, steps / 4), steps));
}

LMConfig preset_config(const std::string& name, const std::string& pe, int64_t vocab) {
  LMConfig c;
  c.preset = name;
  nn::TransformerConfig& m = c.model;
  m.vocab = vocab;
  m.pe = pe;
  m.mlp = "gelu";
  m.norm = "layernorm";
  m.pre_norm = true;
  m.tie_embeddings = false;
  m.npos = 64;
  m.rel_reuse_last = true;
  auto& o = c.loop.optim;
  o.name = "adamw";
  o.beta1 = 0.9;
  o.beta2 = 0.99;
  o.weight_decay = 0.1;
  c.loop.clip = 1.0;
  c.loop.schedule.kind = "cosine";
  c.loop.schedule.min_lr_ratio = 0.1;
  int64_t steps = 0;
  if (name == "cpu-small" || name == "code-small") {
    m.d_model = 256;
    m.n_layers = 4;
    m.n_heads = 4;
    m.d_ff = 4 * 256;
    m.context = 256;
    m.dropout = 0.1;
    c.batch = 16;
    o.lr = 1e-3;
    // 800 steps of 16 x 256 tokens = 3.3 M tokens, 1.2 epochs of WikiText-2's 2.79 M BPE-8192
    // training tokens. Steps take 1.9 s (abs) to 2.6 s (cope) on 2 cores of an AMD EPYC with
    // AVX2 (docs/PERF.md), so 25-35 minutes there, plus about a minute per validation pass.
    steps = 800;
    c.eval_tokens = 0;
  } else if (name == "gpt2-small") {
    m.d_model = 768;
    m.n_layers = 12;
    m.n_heads = 12;
    m.d_ff = 4 * 768;
    m.context = 1024;
    m.dropout = 0.1;
    c.batch = 8;
    o.lr = 6e-4;
    steps = 100000;
    c.eval_tokens = 262144;
  } else {
    std::string names;
    for (auto& p : presets()) names += (names.empty() ? "" : ", ") + p.name;
    COPPER_THROW("lm", "unknown preset '{}'. HINT: valid presets are {}", name, names);
  }
  c.loop.schedule.lr = o.lr;
  set_steps(c, steps);
  return c;
}

}  // namespace copper::lm
