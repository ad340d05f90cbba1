// test_nn.cpp — Module (names, order, modes, state dicts and their errors), the layers
// against hand-computed values, and TransformerLM (config JSON, init, shapes, names).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "nn/attention.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/mlp.h"
#include "nn/norm.h"
#include "nn/transformer.h"
#include "tensor/ops.h"
#include "tensor/random.h"

using namespace copper;
using namespace copper::nn;

namespace {

std::vector<std::string> names_of(const Module& m) {
  std::vector<std::string> n;
  for (auto& [k, v] : m.named_parameters()) n.push_back(k);
  return n;
}

void expect_values(const Tensor& t, const std::vector<double>& want, double tol) {
  auto v = t.to(DType::f64).contiguous().to_vector<double>();
  ASSERT_EQ(v.size(), want.size());
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(v[i], want[i], tol) << "element " << i;
}

// ---------------------------------------------------------------- Module

class Leaf : public Module {
 public:
  Leaf() {
    w = register_parameter("w", ones({2, 3}));
    b = register_parameter("b", zeros({3}));
  }
  Tensor w, b;
};

class Tree : public Module {
 public:
  Tree() {
    scale = register_parameter("scale", ones({1}));
    left = register_module("left", std::make_shared<Leaf>());
    auto list = register_module("items", std::make_shared<ModuleList>());
    list->push_back(std::make_shared<Leaf>());
    list->push_back(std::make_shared<Leaf>());
  }
  Tensor scale;
  std::shared_ptr<Leaf> left;
};

TEST(Module, DottedNamesInRegistrationOrder) {
  Tree t;
  EXPECT_EQ(names_of(t), (std::vector<std::string>{"scale", "left.w", "left.b", "items.0.w", "items.0.b", "items.1.w",
                                                   "items.1.b"}));
  EXPECT_EQ(t.num_parameters(), 1 + 3 * 9);
  EXPECT_EQ(t.parameters().size(), 7u);
  EXPECT_EQ(t.named_parameters(false).size(), 1u);
  for (auto& p : t.parameters()) EXPECT_TRUE(p.requires_grad());
  auto mods = t.named_modules();
  ASSERT_EQ(mods.size(), 5u);
  EXPECT_EQ(mods[0].first, "");
  EXPECT_EQ(mods[4].first, "items.1");
}

TEST(Module, BadNames) {
  Leaf l;
  EXPECT_THROW(l.register_parameter("w", ones({1})), Error);      // taken
  EXPECT_THROW(l.register_parameter("a.b", ones({1})), Error);    // dot
  EXPECT_THROW(l.register_parameter("", ones({1})), Error);
  EXPECT_THROW(l.register_module("w", std::make_shared<Leaf>()), Error);
}

TEST(Module, SharedParametersListedOnce) {
  Tree t;
  t.register_parameter("alias", t.left->w);
  auto n = names_of(t);
  // A module's own parameters come before its children's: the tensor is reached first as
  // "alias" and not listed again as "left.w" (an optimizer must not update it twice).
  EXPECT_EQ(std::count(n.begin(), n.end(), "alias"), 1);
  EXPECT_EQ(std::count(n.begin(), n.end(), "left.w"), 0);
  EXPECT_EQ(t.parameters().size(), 7u);
}

TEST(Module, TrainEvalRecursive) {
  Tree t;
  EXPECT_TRUE(t.is_training());
  t.eval();
  EXPECT_FALSE(t.left->is_training());
  t.train();
  EXPECT_TRUE(t.left->is_training());
}

TEST(Module, ZeroGrad) {
  Leaf l;
  sum(l.w * 2.0).backward();
  ASSERT_TRUE(l.w.grad().defined());
  l.zero_grad();
  EXPECT_FALSE(l.w.grad().defined());
}

TEST(Module, StateDictRoundTrip) {
  Tree a, b;
  {
    NoGradGuard ng;
    fill_(a.left->w, 3.0);
  }
  auto sd = a.state_dict();
  EXPECT_EQ(sd.keys(), names_of(a));
  EXPECT_TRUE(sd.at("left.w").same_storage(a.left->w));  // handles, not copies
  b.load_state_dict(sd);
  EXPECT_EQ(b.left->w.to_vector<float>(), std::vector<float>(6, 3.0f));
  EXPECT_FALSE(b.left->w.same_storage(a.left->w));  // values copied in
  // a std::map works too
  std::map<std::string, Tensor> m;
  for (auto& [k, v] : sd) m[k] = v;
  b.load_state_dict(m);
}

TEST(Module, StateDictErrorsNameTheTensor) {
  Tree a;
  StateDict sd;
  for (auto& [k, v] : a.state_dict()) sd.insert(k, k == "items.1.w" ? zeros({4, 5}) : v);
  try {
    a.load_state_dict(sd);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[load_state_dict] items.1.w: checkpoint [4,5] vs model [2,3]"),
              std::string::npos)
        << e.what();
  }
  StateDict partial;
  partial.insert("left.w", ones({2, 3}));
  partial.insert("extra.x", ones({1}));
  try {
    a.load_state_dict(partial);
    FAIL() << "no throw";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("missing in checkpoint: scale, left.b"), std::string::npos) << m;
    EXPECT_NE(m.find("unexpected in checkpoint: extra.x"), std::string::npos) << m;
  }
  EXPECT_NO_THROW(a.load_state_dict(partial, /*strict=*/false));
  EXPECT_THROW(sd.insert("scale", ones({1})), Error);  // duplicate key
  EXPECT_THROW(sd.at("nope"), Error);
}

TEST(Module, ToDtypeKeepsHandles) {
  Leaf l;
  Tensor w = l.w;
  l.to(DType::f64);
  EXPECT_EQ(w.dtype(), DType::f64);
  EXPECT_EQ(l.state_dict().at("w").dtype(), DType::f64);
  EXPECT_TRUE(w.requires_grad());
}

// A module with a persistent buffer (saved) and a non-persistent one (a cache).
class WithBuffers : public Module {
 public:
  WithBuffers() {
    w = register_parameter("w", ones({2}));
    register_buffer("count", zeros({1}), /*persistent=*/true);
    register_buffer("table", full({3}, 2.0));
    child = register_module("child", std::make_shared<Leaf>());
  }
  Tensor w;
  std::shared_ptr<Leaf> child;
};

TEST(Module, Buffers) {
  WithBuffers m;
  // not parameters: no optimizer sees them, no grad
  EXPECT_EQ(names_of(m), (std::vector<std::string>{"w", "child.w", "child.b"}));
  auto bufs = m.named_buffers();
  ASSERT_EQ(bufs.size(), 2u);
  EXPECT_EQ(bufs[0].first, "count");
  EXPECT_EQ(bufs[1].first, "table");
  EXPECT_FALSE(bufs[1].second.requires_grad());
  // persistent ones are in the state dict (after the parameters), caches are not
  auto sd = m.state_dict();
  EXPECT_EQ(sd.keys(), (std::vector<std::string>{"w", "child.w", "child.b", "count"}));
  // and load back
  WithBuffers other;
  std::map<std::string, Tensor> src;
  for (auto& [n, t] : sd) src[n] = t.clone();
  src["count"] = full({1}, 7.0);
  other.load_state_dict(src);
  EXPECT_EQ(other.buffer("count").at({0}), 7.0);
  src.erase("count");
  EXPECT_THROW(other.load_state_dict(src), Error);  // strict: a persistent buffer is missing
  // replacing a cache; names are shared with parameters and children
  m.set_buffer("table", zeros({5}));
  EXPECT_EQ(m.buffer("table").shape(), (Shape{5}));
  EXPECT_THROW(m.set_buffer("nope", zeros({1})), Error);
  EXPECT_THROW(m.register_buffer("w", zeros({1})), Error);
  EXPECT_THROW(m.buffer("nope"), Error);
  // to(dtype) converts persistent floating buffers; caches are their owner's business
  m.to(DType::f64);
  EXPECT_EQ(m.buffer("count").dtype(), DType::f64);
  EXPECT_EQ(m.buffer("table").dtype(), DType::f32);
}

// The position encodings' tables are non-persistent buffers: a model's state dict holds
// parameters only, whatever it has run.
TEST(Module, EncodingTablesAreUnsavedBuffers) {
  for (const char* pe : {"rope", "alibi", "rel", "sinusoidal"}) {
    TransformerConfig cfg;
    cfg.vocab = 5;
    cfg.d_model = 8;
    cfg.n_heads = 2;
    cfg.n_layers = 1;
    cfg.context = 6;
    cfg.pe = pe;
    TransformerLM m(cfg);
    const size_t before = m.state_dict().size();
    m.forward(from_vector(std::vector<int64_t>{1, 2, 3}, {1, 3}));
    EXPECT_FALSE(m.named_buffers().empty()) << pe;
    EXPECT_EQ(m.state_dict().size(), before) << pe;
    EXPECT_EQ(m.state_dict().size(), m.named_parameters().size()) << pe;
  }
}

// ---------------------------------------------------------------- layers

TEST(Layers, LinearHandComputed) {
  Linear lin(3, 2);
  {
    NoGradGuard ng;
    copy_(lin.weight, from_vector(std::vector<float>{1, 2, 3, -1, 0, 1}, {2, 3}));
    copy_(lin.bias, from_vector(std::vector<float>{0.5f, -0.5f}, {2}));
  }
  Tensor y = lin.forward(from_vector(std::vector<float>{1, 1, 1, 2, 0, -1}, {2, 3}));
  expect_values(y, {6.5, -0.5, -0.5, -3.5}, 1e-6);
  EXPECT_EQ(names_of(lin), (std::vector<std::string>{"weight", "bias"}));
  EXPECT_EQ(names_of(Linear(3, 2, false)), (std::vector<std::string>{"weight"}));
  EXPECT_THROW(lin.forward(ones({2, 4})), Error);
}

TEST(Layers, LinearInitBoundsAndSeed) {
  Generator g1(42), g2(42);
  Linear a(16, 32, true, &g1), b(16, 32, true, &g2);
  EXPECT_EQ(a.weight.to_vector<float>(), b.weight.to_vector<float>());
  auto w = a.weight.to_vector<float>();
  const float bound = 0.25f;  // 1/sqrt(16)
  double mx = 0;
  for (float v : w) {
    EXPECT_LE(std::abs(v), bound);
    mx = std::max(mx, double(std::abs(v)));
  }
  EXPECT_GT(mx, 0.2);  // spread over the range
}

TEST(Layers, EmbeddingLooksUpRows) {
  Generator g(1);
  Embedding e(5, 3, 0.1, &g);
  Tensor y = e.forward(from_vector(std::vector<int64_t>{4, 0, 4}, {3}));
  EXPECT_EQ(y.shape(), (Shape{3, 3}));
  for (int64_t c = 0; c < 3; ++c) {
    EXPECT_EQ(y.at({0, c}), e.weight.at({4, c}));
    EXPECT_EQ(y.at({1, c}), e.weight.at({0, c}));
  }
  Embedding big(100, 100, 0.1, &g);  // std ≈ 0.1
  Tensor sd = sqrt(mean(square(big.weight)));
  EXPECT_NEAR(sd.item(), 0.1, 0.01);
  EXPECT_THROW(e.forward(ones({2})), Error);
}

TEST(Layers, LayerNormAndRMSNormHandComputed) {
  Tensor x = from_vector(std::vector<float>{1, 2, 3, 4}, {1, 4});
  // mean 2.5, var 1.25
  const double s = 1 / std::sqrt(1.25 + 1e-5);
  expect_values(LayerNorm(4).forward(x), {-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s}, 1e-5);
  // mean of squares 7.5
  const double r = 1 / std::sqrt(7.5 + 1e-6);
  expect_values(RMSNorm(4).forward(x), {1 * r, 2 * r, 3 * r, 4 * r}, 1e-5);
  Norm n("rmsnorm", 4);
  EXPECT_EQ(names_of(n), (std::vector<std::string>{"weight"}));
  EXPECT_EQ(names_of(Norm("layernorm", 4)), (std::vector<std::string>{"weight", "bias"}));
  EXPECT_THROW(Norm("batchnorm", 4), Error);
}

TEST(Layers, DropoutSeededAndOffInEval) {
  Generator g1(5), g2(5);
  Dropout d1(0.5, &g1), d2(0.5, &g2);
  Tensor x = ones({1000});
  Tensor a = d1.forward(x), b = d2.forward(x);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  auto v = a.to_vector<float>();
  int zeros_n = 0;
  for (float f : v) {
    EXPECT_TRUE(f == 0.0f || f == 2.0f);
    zeros_n += f == 0.0f;
  }
  EXPECT_GT(zeros_n, 400);
  EXPECT_LT(zeros_n, 600);
  d1.eval();
  EXPECT_EQ(d1.forward(x).to_vector<float>(), x.to_vector<float>());
  EXPECT_THROW(Dropout(1.0), Error);
}

TEST(Layers, MLPVariants) {
  Generator g(2);
  Tensor x = randn({2, 3, 4}, DType::f32, &g);
  for (const std::string act : {"relu", "gelu", "swiglu"}) {
    MLP m(4, 0, act, &g);
    EXPECT_EQ(m.forward(x).shape(), (Shape{2, 3, 4}));
    EXPECT_EQ(m.fc1->out_features(), 16);
  }
  EXPECT_EQ(names_of(MLP(4, 8, "swiglu")),
            (std::vector<std::string>{"fc1.weight", "fc1.bias", "gate.weight", "gate.bias", "fc2.weight", "fc2.bias"}));
  // relu by hand: fc1 = identity-ish, fc2 sums
  MLP r(2, 2, "relu");
  {
    NoGradGuard ng;
    copy_(r.fc1->weight, from_vector(std::vector<float>{1, 0, 0, 1}, {2, 2}));
    fill_(r.fc1->bias, 0);
    copy_(r.fc2->weight, from_vector(std::vector<float>{1, 1, 1, -1}, {2, 2}));
    fill_(r.fc2->bias, 1);
  }
  expect_values(r.forward(from_vector(std::vector<float>{2, -3}, {1, 2})), {3, 3}, 1e-6);
  EXPECT_THROW(MLP(4, 0, "tanh"), Error);
}

TEST(Layers, MLPAndNormGradcheck) {
  for (const std::string act : {"relu", "gelu", "swiglu"}) {
    MLP m(3, 5, act);
    m.to(DType::f64);
    Generator g(3);
    std::vector<Tensor> in = {randn({2, 3}, DType::f64, &g).requires_grad_()};
    for (auto& p : m.parameters()) in.push_back(p);
    auto r = gradcheck([&](const std::vector<Tensor>& v) { return m.forward(v[0]); }, in);
    EXPECT_TRUE(r.ok) << act << ": " << r.message;
  }
}

// Attention by hand: one head, D = 1 — q = k = v = x, so the output at t is the softmax-
// weighted mean of x_0..x_t with weights exp(x_t x_j).
TEST(Attention, OneHeadHandComputed) {
  CausalSelfAttention a(1, 1);
  a.to(DType::f64);
  {
    NoGradGuard ng;
    fill_(a.qkv->weight, 1.0);
    fill_(a.qkv->bias, 0.0);
    fill_(a.proj->weight, 1.0);
    fill_(a.proj->bias, 0.0);
  }
  std::vector<double> xs = {0.5, -1.0, 2.0};
  Tensor y = a.forward(from_vector(xs, {1, 3, 1}));
  for (int64_t t = 0; t < 3; ++t) {
    double num = 0, den = 0;
    for (int64_t j = 0; j <= t; ++j) {
      const double w = std::exp(xs[size_t(t)] * xs[size_t(j)]);
      num += w * xs[size_t(j)];
      den += w;
    }
    EXPECT_NEAR(y.at({0, t, 0}), num / den, 1e-12);
  }
  EXPECT_EQ(names_of(a), (std::vector<std::string>{"qkv.weight", "qkv.bias", "proj.weight", "proj.bias"}));
  EXPECT_THROW(CausalSelfAttention(10, 4), Error);
}

// ---------------------------------------------------------------- TransformerLM

TransformerConfig small() {
  TransformerConfig c;
  c.vocab = 11;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 4;
  c.context = 8;
  return c;
}

TEST(Transformer, ConfigJsonRoundTripAndErrors) {
  TransformerConfig c = small();
  c.pe = "cope+rope";
  c.cope_scale = "official";
  c.dropout = 0.1;
  c.norm = "rmsnorm";
  auto js = c.to_json();
  TransformerConfig d = TransformerConfig::from_json(js);
  EXPECT_EQ(d.to_json(), js);
  EXPECT_THROW(TransformerConfig::from_json({{"vocab", 3}, {"d_modle", 8}}), Error);  // typo
  EXPECT_THROW(TransformerConfig::from_json({{"d_model", 8}}), Error);                // no vocab
  EXPECT_THROW(TransformerConfig::from_json({{"vocab", "x"}}), Error);                // wrong type
  EXPECT_EQ(TransformerConfig::from_json({{"vocab", 3}}).pe, "cope");                 // defaults
  for (auto bad : std::vector<std::pair<std::string, nlohmann::json>>{
           {"pe", "cope2"}, {"mlp", "tanh"}, {"norm", "bn"}, {"cope_scale", "x"}, {"n_heads", 5}}) {
    auto j = js;
    j[bad.first] = bad.second;
    EXPECT_THROW(TransformerLM(TransformerConfig::from_json(j)), Error) << bad.first;
  }
}

TEST(Transformer, ParameterNames) {
  TransformerLM m(small());
  auto n = names_of(m);
  const std::vector<std::string> first = {"embed.weight",           "blocks.0.norm1.weight", "blocks.0.norm1.bias",
                                          "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight",
                                          "blocks.0.attn.proj.bias", "blocks.0.attn.pe.pos_emb"};
  ASSERT_GE(n.size(), first.size());
  EXPECT_EQ(std::vector<std::string>(n.begin(), n.begin() + long(first.size())), first);
  EXPECT_EQ(n.back(), "head.weight");
  EXPECT_EQ(m.state_dict().at("blocks.0.attn.qkv.weight").shape(), (Shape{48, 16}));
  TransformerConfig t = small();
  t.tie_embeddings = true;
  t.pre_norm = false;
  t.pe = "abs";
  auto tn = names_of(TransformerLM(t));
  EXPECT_EQ(tn[1], "pe.weight");
  EXPECT_EQ(std::count(tn.begin(), tn.end(), "head.weight"), 0);
  EXPECT_EQ(std::count(tn.begin(), tn.end(), "norm_f.weight"), 0);  // post-norm has no final norm
}

TEST(Transformer, DeterministicInitAndShapes) {
  Generator g1(7), g2(7), g3(8);
  TransformerLM a(small(), &g1), b(small(), &g2), c(small(), &g3);
  auto sa = a.state_dict(), sb = b.state_dict(), sc = c.state_dict();
  EXPECT_EQ(sa.at("blocks.1.mlp.fc1.weight").to_vector<float>(), sb.at("blocks.1.mlp.fc1.weight").to_vector<float>());
  EXPECT_NE(sa.at("blocks.1.mlp.fc1.weight").to_vector<float>(), sc.at("blocks.1.mlp.fc1.weight").to_vector<float>());
  TransformerLM d(small()), e(small());  // no generator: a fixed seed
  EXPECT_EQ(d.state_dict().at("embed.weight").to_vector<float>(), e.state_dict().at("embed.weight").to_vector<float>());
  Tensor ids = randint(0, 11, {3, 8}, DType::i64, &g1);
  EXPECT_EQ(a.forward(ids).shape(), (Shape{3, 8, 11}));
  EXPECT_THROW(a.forward(ones({3, 8})), Error);
}

TEST(Transformer, LoadStateDictMismatchMessage) {
  TransformerConfig big = small();
  big.d_model = 32;
  TransformerLM a(small()), b(big);
  try {
    a.load_state_dict(b.state_dict());
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[load_state_dict] embed.weight: checkpoint [11,32] vs model [11,16]"),
              std::string::npos)
        << e.what();
  }
}

TEST(Transformer, LossIsTheCrossEntropyOfTheLogits) {
  // TransformerLM::loss (the head and the loss as one op) against cross_entropy of forward's
  // logits: the value and every parameter's gradient, with the head untied and tied, an
  // ignored target among them.
  Generator g(4);
  Tensor ids = randint(0, 11, {3, 8}, DType::i64, &g);
  Tensor targets = randint(0, 11, {3, 8}, DType::i64, &g);
  targets.data<int64_t>()[5] = -100;
  for (bool tied : {false, true}) {
    TransformerConfig c = small();
    c.tie_embeddings = tied;
    TransformerLM a(c), b(c);
    Tensor want = cross_entropy(a.forward(ids).reshape({-1, c.vocab}), targets.reshape({-1}));
    Tensor got = b.loss(ids, targets);
    EXPECT_NEAR(got.item(), want.item(), 1e-5) << "tied " << tied;
    want.backward();
    got.backward();
    const auto pa = a.named_parameters(), pb = b.named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (size_t i = 0; i < pa.size(); ++i)
      EXPECT_LT(max(abs(sub(pb[i].second.grad(), pa[i].second.grad()))).item(), 1e-5)
          << pa[i].first << ", tied " << tied;
  }
}

TEST(Transformer, EveryVariantTrainsAStep) {
  // Each switch of the config builds, runs forward and backward, and the loss falls after
  // a few plain gradient steps on one batch.
  std::vector<std::function<void(TransformerConfig&)>> variants = {
      [](TransformerConfig&) {},
      [](TransformerConfig& c) { c.pre_norm = false; },
      [](TransformerConfig& c) { c.tie_embeddings = true; },
      [](TransformerConfig& c) { c.mlp = "swiglu"; c.norm = "rmsnorm"; },
      [](TransformerConfig& c) { c.mlp = "relu"; c.dropout = 0.1; },
  };
  Generator g(9);
  Tensor ids = randint(0, 11, {4, 8}, DType::i64, &g);
  Tensor targets = randint(0, 11, {4, 8}, DType::i64, &g);
  for (size_t v = 0; v < variants.size(); ++v) {
    TransformerConfig c = small();
    variants[v](c);
    TransformerLM m(c);
    double first = 0, last = 0;
    for (int step = 0; step < 8; ++step) {
      m.zero_grad();
      Tensor loss = cross_entropy(m.forward(ids), targets);
      loss.backward();
      if (step == 0) first = loss.item();
      last = loss.item();
      NoGradGuard ng;
      for (auto& p : m.parameters())
        if (p.grad().defined()) add_(p, p.grad(), -0.05);
    }
    EXPECT_LT(last, first) << "variant " << v;
  }
}

}  // namespace
