// evaluate.h — perplexity of a language model on a token file, with sliding windows.
//
// Every token t >= 1 of the split is predicted exactly once. Window k reads the tokens
// [k·stride, k·stride + context) and predicts the one after each; it scores only the targets
// that no earlier window scored, so with stride < context every scored token sees at least
// context - stride tokens before it. stride = context (the default) gives non-overlapping
// windows. Contexts longer than the training context are allowed for encodings that
// extrapolate: that is how the paper's context-length curves are made.
//
//   ppl            exp(total NLL / scored tokens)
//   word_ppl       exp(total NLL / words), words = whitespace-separated words plus one <eos>
//                  per line (WikiText's count: 245,569 on its test split), so that subword
//                  and word-level models compare on one scale
//   bits_per_byte  total NLL / ln 2 / UTF-8 bytes of the split's text
#pragma once
#include <cstdint>
#include <functional>

#include <nlohmann/json.hpp>

#include "lm/dataset.h"
#include "nn/transformer.h"

namespace copper::lm {

struct Perplexity {
  double nll = 0;       // summed over the scored tokens, in nats
  int64_t scored = 0;   // tokens predicted
  int64_t words = 0, bytes = 0;  // of the split (0 when only part of it was scored)
  int64_t context = 0, stride = 0;
  double ppl() const;
  double word_ppl() const;       // NaN without a word count
  double bits_per_byte() const;  // NaN without a byte count
  nlohmann::json to_json() const;
};

struct EvalOptions {
  int64_t context = 0;     // 0: the model's
  int64_t stride = 0;      // 0: = context
  int64_t batch = 16;      // windows per forward
  int64_t max_tokens = 0;  // score only the first N tokens (periodic validation); 0: all
  std::function<void(int64_t scored, int64_t total)> progress;
};

// Perplexity of `model` on `tokens`. `words` and `bytes` of the split (SplitInfo in
// dataset.h) give word-level perplexity and bits per byte when the whole split is scored.
Perplexity perplexity(nn::TransformerLM& model, const TokenFile& tokens, int64_t words, int64_t bytes,
                      const EvalOptions& opt);

}  // namespace copper::lm
