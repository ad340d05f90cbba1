// generate.h — sampling text from a TransformerLM, with a KV cache for every encoding.
//
// With the cache, the prompt is run once and each new token costs one query over the
// cached keys and values (nn::KVCache); without it, every new token recomputes the whole
// sequence. Both give the same tokens (greedy decoding is tested to agree exactly).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "nn/transformer.h"
#include "tensor/random.h"

namespace copper::lm {

struct SampleOptions {
  int64_t tokens = 100;      // new tokens to generate
  double temperature = 1.0;  // 0: greedy (argmax)
  int64_t top_k = 0;         // keep the k most likely tokens (0: all)
  double top_p = 1.0;        // keep the smallest set whose probability reaches p (1: all)
  uint64_t seed = 0;
  bool use_cache = true;
  int64_t stop_token = -1;   // stop after generating this token (-1: never)
};

// One token drawn from `logits` (vocab,) as the options say.
int64_t sample_token(const std::vector<float>& logits, const SampleOptions& opt, Generator& gen);

// Continues `prompt` (at least one token) by opt.tokens tokens; calls on_token for each new
// one as it is made. The longest sequence is the model's context for encodings with a table
// of absolute positions (abs); others may run past it. Throws copper::Error on an empty or
// too long prompt.
std::vector<int64_t> generate(nn::TransformerLM& model, const std::vector<int64_t>& prompt, const SampleOptions& opt,
                              const std::function<void(int64_t)>& on_token = {});

// The most tokens a sequence may hold for this model (context for abs, else unbounded: -1).
int64_t max_sequence(const nn::TransformerLM& model);

}  // namespace copper::lm
