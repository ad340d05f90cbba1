// evaluate.cpp — sliding-window perplexity (see evaluate.h).
#include "lm/evaluate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/grad_mode.h"
#include "tensor/error.h"
#include "tensor/ops.h"
#include "train/trainer.h"

namespace copper::lm {

double Perplexity::ppl() const { return std::exp(nll / double(std::max<int64_t>(scored, 1))); }
double Perplexity::word_ppl() const {
  return words > 0 ? std::exp(nll / double(words)) : std::numeric_limits<double>::quiet_NaN();
}
double Perplexity::bits_per_byte() const {
  return bytes > 0 ? nll / std::log(2.0) / double(bytes) : std::numeric_limits<double>::quiet_NaN();
}

nlohmann::json Perplexity::to_json() const {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  return {{"ppl", num(ppl())},
          {"word_ppl", num(word_ppl())},
          {"bits_per_byte", num(bits_per_byte())},
          {"loss", num(nll / double(std::max<int64_t>(scored, 1)))},
          {"tokens", scored},
          {"context", context},
          {"stride", stride}};
}

Perplexity perplexity(nn::TransformerLM& model, const TokenFile& tokens, int64_t words, int64_t bytes,
                      const EvalOptions& opt) {
  const int64_t ctx = opt.context > 0 ? opt.context : model.config().context;
  const int64_t stride = opt.stride > 0 ? opt.stride : ctx;
  COPPER_CHECK(stride <= ctx, "lm eval", "--stride {} is longer than the context {}: tokens between windows would "
               "never be scored. HINT: use a stride of at most the context", stride, ctx);
  COPPER_CHECK(opt.batch >= 1, "lm eval", "batch must be at least 1, got {}", opt.batch);
  COPPER_CHECK(tokens.size() >= 2, "lm eval", "the split has {} tokens: nothing to predict", tokens.size());
  NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  Perplexity r;
  r.context = ctx;
  r.stride = stride;
  const int64_t total = tokens.size() - 1;  // targets 1..N-1
  // Windows of one length go through the model opt.batch at a time.
  std::vector<int64_t> ids, targets;
  int64_t rows = 0, length = 0, count = 0;
  auto flush = [&] {
    if (rows == 0) return;
    Tensor loss = model.loss(from_vector(ids, {rows, length}), from_vector(targets, {rows, length}),
                             train::kIgnoreIndex);
    r.nll += loss.item() * double(count);
    r.scored += count;
    if (opt.progress) opt.progress(r.scored, total);
    ids.clear();
    targets.clear();
    rows = count = 0;
  };
  // With max_tokens the windows past the limit are skipped (building them costs next to nothing).
  for_each_window(tokens, ctx, stride, [&](const EvalWindow& w) {
    if (opt.max_tokens > 0 && r.scored + count >= opt.max_tokens) return;
    if (rows == opt.batch || (rows > 0 && w.length != length)) flush();
    length = w.length;
    ids.insert(ids.end(), w.ids.begin(), w.ids.end());
    for (int64_t t = 0; t < w.length; ++t)
      targets.push_back(t >= w.score_from ? w.targets[size_t(t)] : train::kIgnoreIndex);
    count += w.scored();
    ++rows;
  });
  flush();
  if (r.scored == total) {  // the whole split: word- and byte-level scales apply
    r.words = words;
    r.bytes = bytes;
  }
  model.train(was_training);
  return r;
}

}  // namespace copper::lm
