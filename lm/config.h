// config.h — a language-model run described once: the model, the loop (optimizer, schedule,
// steps, intervals), the batch, and the presets `copper lm train --preset` picks from.
//
//   cpu-small   the model of shared/bench/lm-small.json: 4 layers, width 256, 4 heads,
//               context 256, CoPE npos 64, batch 16 — WikiText-2 on 2 CPU cores
//   code-small  the same shape for the code corpus
//   gpt2-small  the paper's WikiText-103 shape: 12 layers, width 768, 12 heads, context 1024,
//               npos 64 — for GPUs; on a CPU it runs, slowly
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/transformer.h"
#include "train/trainer.h"

namespace copper::lm {

struct LMConfig {
  std::string preset = "custom";
  nn::TransformerConfig model;
  train::LoopConfig loop;
  int64_t batch = 16;             // sequences of model.context tokens per step
  int64_t eval_tokens = 0;        // validation tokens scored per periodic evaluation (0: the whole split)
  std::string tokenizer_sha256;   // of the tokenizer the run was trained with (checked against data folders)

  template <class Self, class Visit>
  static void fields(Self& c, Visit&& visit) {  // the one list of fields (nn/config.h)
    visit("preset", c.preset, "where the values came from");
    visit("model", c.model, "");
    visit("loop", c.loop, "");
    visit("batch", c.batch, "sequences per step");
    visit("eval_tokens", c.eval_tokens, "validation tokens per periodic evaluation (0: all)");
    visit("tokenizer_sha256", c.tokenizer_sha256, "the tokenizer the run was trained with");
  }

  nlohmann::json to_json() const;
  static LMConfig from_json(const nlohmann::json& js);
  void validate() const;  // throws copper::Error naming the bad field
};

struct PresetInfo {
  std::string name, description, expected_time;  // expected time of the whole run on 2 CPU cores
};
const std::vector<PresetInfo>& presets();

// The preset `name` for position encoding `pe` and a vocabulary of `vocab` tokens; throws
// listing the valid names on an unknown one.
LMConfig preset_config(const std::string& name, const std::string& pe, int64_t vocab);
// Sets the step count; warmup, the schedule's length and the log/eval/checkpoint intervals follow.
void set_steps(LMConfig& cfg, int64_t steps);

}  // namespace copper::lm
