// test_kv_cache.cpp — the KV cache and queries at an offset: for every position encoding, a
// small model fed token by token (or in chunks) with a cache gives the logits of one full
// forward; greedy continuation is the same with and without the cache; attention maps, CoPE
// gates and CoPE terms recorded with a cache are the sub-blocks of the full ones.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/grad_mode.h"
#include "nn/attention.h"
#include "nn/kv_cache.h"
#include "nn/pe/cope.h"
#include "nn/transformer.h"
#include "tensor/ops.h"
#include "tensor/random.h"

using namespace copper;
using namespace copper::nn;

namespace {

constexpr double kLogitTol = 1e-5;  // f32 logits, incremental vs full

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  auto x = a.to(DType::f64).contiguous().to_vector<double>();
  auto y = b.to(DType::f64).contiguous().to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

const std::vector<std::string>& all_pes() {
  static const std::vector<std::string> names = {"none", "sinusoidal", "abs",      "rel",      "rope",
                                                 "alibi", "cope",      "cope+rel", "cope+rope"};
  return names;
}

TransformerConfig small_config(const std::string& pe) {
  TransformerConfig cfg;
  cfg.vocab = 11;
  cfg.d_model = 32;
  cfg.n_layers = 2;
  cfg.n_heads = 4;
  cfg.context = 32;
  cfg.dropout = 0;
  cfg.pe = pe;
  return cfg;
}

// A random model in eval mode (CoPE's table starts at zero, which would hide it).
std::unique_ptr<TransformerLM> small_model(const TransformerConfig& cfg, uint64_t seed = 21) {
  auto m = std::make_unique<TransformerLM>(cfg);
  Generator g(seed);
  NoGradGuard ng;
  for (auto& [n, p] : m->named_parameters()) copy_(p, randn(p.shape(), p.dtype(), &g, 0.0, 0.3));
  m->eval();
  return m;
}

Tensor random_ids(int64_t B, int64_t T, int64_t vocab, uint64_t seed) {
  Generator g(seed);
  return randint(0, vocab, {B, T}, DType::i64, &g);
}

// Logits of ids fed through a cache in chunks of `chunk` tokens, joined along T.
Tensor chunked_logits(TransformerLM& m, const Tensor& ids, int64_t chunk, int64_t capacity = 0) {
  NoGradGuard ng;
  KVCache cache = m.make_cache(capacity);
  std::vector<Tensor> parts;
  for (int64_t t = 0; t < ids.size(1); t += chunk) {
    const int64_t n = std::min(chunk, ids.size(1) - t);
    EXPECT_EQ(cache.length(), t);
    parts.push_back(m.forward(ids.narrow(1, t, n).contiguous(), &cache));
  }
  EXPECT_EQ(cache.length(), ids.size(1));
  return cat(parts, 1);
}

std::vector<int64_t> greedy(TransformerLM& m, std::vector<int64_t> seq, int64_t steps, bool use_cache) {
  NoGradGuard ng;
  KVCache cache = m.make_cache();
  Tensor next_in = from_vector(seq, {1, int64_t(seq.size())});
  for (int64_t s = 0; s < steps; ++s) {
    Tensor logits = use_cache ? m.forward(next_in, &cache) : m.forward(from_vector(seq, {1, int64_t(seq.size())}));
    Tensor last = logits.select(1, logits.size(1) - 1);  // (1, vocab)
    const int64_t tok = argmax(last, -1).to_vector<int64_t>()[0];
    seq.push_back(tok);
    next_in = from_vector(std::vector<int64_t>{tok}, {1, 1});
  }
  return seq;
}

class EveryPECache : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryPECache, IncrementalLogitsMatchFullForward) {
  auto m = small_model(small_config(GetParam()));
  Tensor ids = random_ids(2, 13, 11, 3);
  Tensor full;
  {
    NoGradGuard ng;
    full = m->forward(ids);  // (2, 13, vocab)
  }
  for (int64_t chunk : {1, 3, 13}) {
    SCOPED_TRACE(fmt::format("chunk {}", chunk));
    Tensor inc = chunked_logits(*m, ids, chunk);
    EXPECT_LT(max_abs_diff(inc, full), kLogitTol);
    // the last query alone, as generation uses it
    EXPECT_LT(max_abs_diff(inc.select(1, 12), full.select(1, 12)), kLogitTol);
  }
  // preallocated storage, too small at first so that it grows once
  EXPECT_LT(max_abs_diff(chunked_logits(*m, ids, 3, 8), full), kLogitTol);
}

TEST_P(EveryPECache, GreedyContinuationSameWithAndWithoutCache) {
  auto m = small_model(small_config(GetParam()), 33);
  const std::vector<int64_t> prompt = {3, 1, 4, 1, 5};
  auto a = greedy(*m, prompt, 12, false);
  auto b = greedy(*m, prompt, 12, true);
  EXPECT_EQ(a, b);
}

// Attention maps (and CoPE's gates and terms) of a cached chunk are the rows of the full
// forward's maps for those queries, over all keys so far.
TEST_P(EveryPECache, RecordedMapsAreSubBlocksOfTheFullOnes) {
  auto m = small_model(small_config(GetParam()), 44);
  Tensor ids = random_ids(1, 10, 11, 5);
  NoGradGuard ng;
  m->set_record_attention(true);
  m->forward(ids);
  auto full_maps = m->attention_maps();
  auto full_gates = m->cope_gates();
  auto full_terms = m->cope_terms();
  ASSERT_EQ(full_maps.size(), 2u);
  EXPECT_EQ(full_maps[0].shape(), (Shape{1, 4, 10, 10}));
  KVCache cache = m->make_cache();
  m->forward(ids.narrow(1, 0, 6).contiguous(), &cache);
  m->forward(ids.narrow(1, 6, 4).contiguous(), &cache);  // queries 6..9 over keys 0..9
  auto block = [](const Tensor& t) { return t.narrow(2, 6, 4); };
  auto maps = m->attention_maps();
  for (size_t l = 0; l < maps.size(); ++l) {
    ASSERT_EQ(maps[l].shape(), (Shape{1, 4, 4, 10}));
    EXPECT_FALSE(maps[l].requires_grad());
    EXPECT_LT(max_abs_diff(maps[l], block(full_maps[l])), 1e-5) << "layer " << l;
  }
  auto gates = m->cope_gates();
  auto terms = m->cope_terms();
  ASSERT_EQ(gates.size(), full_gates.size());
  ASSERT_EQ(terms.size(), full_terms.size());
  for (size_t l = 0; l < gates.size(); ++l) {
    EXPECT_LT(max_abs_diff(gates[l], block(full_gates[l])), 1e-5) << "layer " << l;
    EXPECT_LT(max_abs_diff(terms[l], block(full_terms[l])), 1e-5) << "layer " << l;
    // a position-only map: softmax of z over the visible keys, rows summing to 1
    Tensor pos_only = causal_softmax(terms[l]);
    EXPECT_NEAR(sum(pos_only.select(2, 0).select(1, 2)).item(), 1.0, 1e-5);
  }
  m->set_record_attention(false);
  m->forward(ids);
  EXPECT_FALSE(m->attention_maps()[0].defined());
}

INSTANTIATE_TEST_SUITE_P(PE, EveryPECache, ::testing::ValuesIn(all_pes()), [](const auto& info) {
  std::string n = info.param;
  std::replace(n.begin(), n.end(), '+', '_');
  return n;
});

// CoPE with its own gate-key projection keeps the earlier tokens' gate keys in the cache.
TEST(KVCache, CopeSeparateKeyAndOfficialScale) {
  TransformerConfig cfg = small_config("cope");
  cfg.cope_sep_key = true;
  cfg.cope_scale = "official";
  cfg.npos = 5;  // positions clamp within the sequence
  auto m = small_model(cfg, 55);
  Tensor ids = random_ids(2, 11, 11, 6);
  Tensor full;
  {
    NoGradGuard ng;
    full = m->forward(ids);
  }
  for (int64_t chunk : {1, 4}) EXPECT_LT(max_abs_diff(chunked_logits(*m, ids, chunk), full), kLogitTol);
}

TEST(KVCache, AbsPastTheContextIsAnErrorWithAHint) {
  auto m = small_model(small_config("abs"));
  NoGradGuard ng;
  KVCache cache = m->make_cache();
  m->forward(random_ids(1, 30, 11, 7), &cache);
  m->forward(random_ids(1, 2, 11, 8), &cache);  // positions 30, 31: the last two of the table
  try {
    m->forward(random_ids(1, 1, 11, 9), &cache);
    FAIL() << "no throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[abs]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("HINT"), std::string::npos) << msg;
  }
}

// Encodings that extrapolate run past the context with a cache just as without one.
TEST(KVCache, RopePastTheContext) {
  auto m = small_model(small_config("rope"));
  Tensor ids = random_ids(1, 40, 11, 10);
  Tensor full;
  {
    NoGradGuard ng;
    full = m->forward(ids);
  }
  EXPECT_LT(max_abs_diff(chunked_logits(*m, ids, 7), full), kLogitTol);
}

TEST(KVCache, NeedsNoGradAndAMatchingCache) {
  auto m = small_model(small_config("rope"));
  KVCache cache = m->make_cache();
  try {
    m->forward(random_ids(1, 3, 11, 1), &cache);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NoGradGuard"), std::string::npos) << e.what();
  }
  NoGradGuard ng;
  KVCache wrong(3);
  EXPECT_THROW(m->forward(random_ids(1, 3, 11, 1), &wrong), Error);
  KVCache ok = m->make_cache();
  m->forward(random_ids(2, 3, 11, 1), &ok);
  EXPECT_THROW(m->forward(random_ids(1, 1, 11, 1), &ok), Error);  // another batch size
  ok.reset();
  EXPECT_EQ(ok.length(), 0);
  EXPECT_EQ(m->forward(random_ids(1, 1, 11, 1), &ok).shape(), (Shape{1, 1, 11}));
  EXPECT_EQ(ok.layer(0).keys().shape(), (Shape{1, 4, 1, 8}));
}

// One attention layer on its own: chunks through a KVCache::Layer give the rows of the
// full forward; recording is off by default.
TEST(KVCache, SingleAttentionLayer) {
  for (const char* pe : {"rope", "cope+rel", "alibi"}) {
    PEConfig pc;
    pc.d_model = 16;
    pc.n_heads = 2;
    pc.context = 8;
    Generator g(2);
    CausalSelfAttention att(16, 2, 0.0, make_position_encoding(pe, pc), &g);
    {
      NoGradGuard ng;
      for (auto& [n, p] : att.named_parameters()) copy_(p, randn(p.shape(), p.dtype(), &g, 0.0, 0.3));
    }
    EXPECT_FALSE(att.record_attention());
    Tensor x = randn({2, 9, 16}, DType::f32, &g);
    NoGradGuard ng;
    Tensor full = att.forward(x);
    EXPECT_FALSE(att.last_attention().defined());
    KVCache::Layer layer;
    Tensor a = att.forward(x.narrow(1, 0, 5).contiguous(), &layer);
    Tensor b = att.forward(x.narrow(1, 5, 4).contiguous(), &layer);
    EXPECT_LT(max_abs_diff(cat({a, b}, 1), full), kLogitTol) << pe;
    EXPECT_EQ(layer.length(), 9);
  }
}

TEST(KVCache, LayerAppendConcatenatesAndPreallocates) {
  Generator g(1);
  for (int64_t capacity : {0, 2, 16}) {
    KVCache::Layer layer(capacity);
    Tensor a = randn({1, 2, 3, 4}, DType::f32, &g), b = randn({1, 2, 2, 4}, DType::f32, &g);
    layer.append(a, a * 2.0);
    auto [k, v] = layer.append(b, b * 2.0);
    EXPECT_EQ(layer.length(), 5);
    EXPECT_EQ(k.shape(), (Shape{1, 2, 5, 4}));
    EXPECT_EQ(max_abs_diff(k, cat({a, b}, 2)), 0.0);
    EXPECT_EQ(max_abs_diff(v, cat({a, b}, 2) * 2.0), 0.0);
    layer.reset();
    EXPECT_EQ(layer.length(), 0);
    EXPECT_FALSE(layer.keys().defined());
  }
}

}  // namespace
