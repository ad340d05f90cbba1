// generate.cpp — sampling with and without the KV cache (see generate.h).
#include "lm/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/grad_mode.h"
#include "tensor/error.h"
#include "tensor/ops.h"

namespace copper::lm {

int64_t max_sequence(const nn::TransformerLM& model) {
  const auto& pe = model.config().pe;
  const bool absolute_table = pe == "abs" || pe.rfind("abs+", 0) == 0 || pe.find("+abs") != std::string::npos;
  return absolute_table ? model.config().context : -1;
}

int64_t sample_token(const std::vector<float>& logits, const SampleOptions& opt, Generator& gen) {
  const int64_t V = int64_t(logits.size());
  COPPER_CHECK(V > 0, "generate", "empty logits");
  // (A NaN would also break the ordering the sort below needs.)
  COPPER_CHECK(std::none_of(logits.begin(), logits.end(), [](float x) { return std::isnan(x); }), "generate",
               "the model's next-token logits are NaN. HINT: its weights hold NaN (a run that diverged); load an "
               "earlier checkpoint");
  if (opt.temperature <= 0) return int64_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  // Candidates by decreasing logit; ties keep the lower id first, so sampling is deterministic.
  std::vector<int64_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  const int64_t k = opt.top_k > 0 ? std::min(opt.top_k, V) : V;
  auto by_logit = [&](int64_t a, int64_t b) { return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b); };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), by_logit);
  order.resize(size_t(k));
  // Softmax at the temperature over the k candidates, in double.
  const double mx = logits[size_t(order[0])];
  std::vector<double> p(order.size());
  double total = 0;
  for (size_t i = 0; i < order.size(); ++i) total += p[i] = std::exp((double(logits[size_t(order[i])]) - mx) / opt.temperature);
  for (auto& x : p) x /= total;
  // Nucleus: the shortest prefix whose mass reaches top_p.
  size_t keep = p.size();
  if (opt.top_p < 1) {
    double mass = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      mass += p[i];
      if (mass >= opt.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += p[i];
  double u = gen.uniform() * kept;
  for (size_t i = 0; i < keep; ++i) {
    u -= p[i];
    if (u < 0) return order[i];
  }
  return order[keep - 1];
}

namespace {
// Logits of the last position of a (1, T) forward, as floats.
std::vector<float> last_logits(const Tensor& logits) {  // logits: (1, T, V)
  const int64_t T = logits.size(1);
  return logits.select(1, T - 1).reshape({logits.size(2)}).to(DType::f32).contiguous().to_vector<float>();
}
Tensor ids_tensor(const std::vector<int64_t>& ids) { return from_vector(ids, {1, int64_t(ids.size())}); }
}  // namespace

std::vector<int64_t> generate(nn::TransformerLM& model, const std::vector<int64_t>& prompt, const SampleOptions& opt,
                              const std::function<void(int64_t)>& on_token) {
  COPPER_CHECK(!prompt.empty(), "generate", "the prompt is empty. HINT: give at least one token of text");
  COPPER_CHECK(opt.tokens >= 0, "generate", "--tokens must be >= 0, got {}", opt.tokens);
  const int64_t limit = max_sequence(model);
  COPPER_CHECK(limit < 0 || int64_t(prompt.size()) + opt.tokens <= limit, "generate",
               "the prompt ({} tokens) plus {} new tokens exceeds the model's context of {} ({} has a table of absolute "
               "positions). HINT: shorten the prompt or ask for at most {} tokens",
               prompt.size(), opt.tokens, limit, model.config().pe, std::max<int64_t>(0, limit - int64_t(prompt.size())));
  NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  Generator gen(opt.seed);
  std::vector<int64_t> seq = prompt, out;
  nn::KVCache cache = model.make_cache(opt.use_cache ? int64_t(prompt.size()) + opt.tokens : 0);
  std::vector<float> logits = last_logits(opt.use_cache ? model.forward(ids_tensor(prompt), &cache)
                                                        : model.forward(ids_tensor(prompt)));
  for (int64_t n = 0; n < opt.tokens; ++n) {
    const int64_t tok = sample_token(logits, opt, gen);
    out.push_back(tok);
    seq.push_back(tok);
    if (on_token) on_token(tok);
    if (tok == opt.stop_token || n + 1 == opt.tokens) break;
    logits = last_logits(opt.use_cache ? model.forward(ids_tensor({tok}), &cache) : model.forward(ids_tensor(seq)));
  }
  model.train(was_training);
  return out;
}

}  // namespace copper::lm
