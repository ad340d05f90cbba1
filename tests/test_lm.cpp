// test_lm.cpp — language-model runs (lm/config, lm/run, lm/evaluate, lm/generate) on a tiny
// corpus prepared with the word tokenizer: exact resume, perplexity against a direct
// computation, sliding windows, sampling and the KV cache in generation.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "autograd/grad_mode.h"
#include "lm/config.h"
#include "lm/dataset.h"
#include "lm/evaluate.h"
#include "lm/generate.h"
#include "lm/run.h"
#include "nn/config.h"
#include "tensor/error.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace copper;
namespace fs = std::filesystem;

namespace {

// A WikiText-like corpus of a few hundred lines from a 40-word vocabulary (every word
// occurs in train, so valid and test encode with the word tokenizer).
std::string corpus(int lines, uint64_t seed) {
  Generator g(seed);
  std::string text;
  for (int l = 0; l < lines; ++l) {
    if (l % 9 == 0) {
      text.append(" = = Heading ").append(std::to_string(g.below(40))).append(" = = \n");
      continue;
    }
    text += " ";
    const int n = 3 + int(g.below(12));
    for (int w = 0; w < n; ++w) text.append("w").append(std::to_string(g.below(40))).append(" ");
    text += "\n";
  }
  return text;
}

// A prepared word-level folder under `root` (once per test binary run).
std::string prepared(const fs::path& root) {
  const fs::path out = root / "data";
  if (fs::exists(out / "manifest.json")) return out.string();
  fs::create_directories(root);
  const std::string numbers = [] {  // make sure every word of valid/test is in train
    std::string s = " = = Heading";
    for (int i = 0; i < 40; ++i) s.append(" ").append(std::to_string(i)).append(" w").append(std::to_string(i));
    return s + " = = \n";
  }();
  for (auto [name, lines, seed] : {std::tuple{"train", 400, 1}, {"valid", 60, 2}, {"test", 60, 3}}) {
    std::ofstream f(root / (std::string(name) + ".txt"));
    f << (std::string(name) == "train" ? numbers : "") << corpus(lines, uint64_t(seed));
  }
  lm::prepare((root / "train.txt").string(), (root / "valid.txt").string(), (root / "test.txt").string(), "word", 0,
              out.string());
  return out.string();
}

lm::LMConfig tiny_config(const std::string& pe, int64_t steps) {
  lm::LMConfig c = lm::preset_config("cpu-small", pe, 100);
  c.model.d_model = 32;
  c.model.n_layers = 2;
  c.model.n_heads = 4;
  c.model.d_ff = 64;
  c.model.context = 16;
  c.model.npos = 8;
  c.model.dropout = 0.1;
  c.batch = 4;
  lm::set_steps(c, steps);
  c.loop.eval_every = 3;
  c.eval_tokens = 64;
  return c;
}

std::string file_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

}  // namespace

TEST(LMConfig, JsonRoundTripAndPresets) {
  for (auto& p : lm::presets()) {
    lm::LMConfig c = lm::preset_config(p.name, "cope", 8192);
    c.validate();
    EXPECT_EQ(lm::LMConfig::from_json(c.to_json()).to_json(), c.to_json()) << p.name;
  }
  lm::LMConfig s = lm::preset_config("cpu-small", "cope", 8192);  // the model of shared/bench/lm-small.json
  EXPECT_EQ(s.model.n_layers, 4);
  EXPECT_EQ(s.model.d_model, 256);
  EXPECT_EQ(s.model.n_heads, 4);
  EXPECT_EQ(s.model.context, 256);
  EXPECT_EQ(s.model.npos, 64);
  EXPECT_EQ(s.batch, 16);
  lm::LMConfig g = lm::preset_config("gpt2-small", "cope", 50304);
  EXPECT_EQ(g.model.n_layers, 12);
  EXPECT_EQ(g.model.d_model, 768);
  EXPECT_EQ(g.model.n_heads, 12);
  EXPECT_EQ(g.model.context, 1024);
  EXPECT_THROW(lm::preset_config("huge", "cope", 10), Error);
}

TEST(LMRun, ResumeIsBitIdenticalAndEvaluates) {
  const fs::path root = testing_util::fresh_temp_dir("lm_resume");
  const std::string data = prepared(root);
  const lm::LMConfig cfg = tiny_config("cope", 6);
  train::RunOptions quiet;
  quiet.quiet = true;
  auto whole = lm::train_lm(cfg, data, (root / "whole").string(), quiet);
  train::RunOptions stop = quiet;
  stop.stop_after = 4;
  auto part = lm::train_lm(cfg, data, (root / "parts").string(), stop);
  EXPECT_EQ(part.value("stopped_at", int64_t(0)), 4);
  auto rest = lm::train_lm(cfg, data, (root / "parts").string(), quiet);
  EXPECT_EQ(file_bytes(root / "whole" / "model.safetensors"), file_bytes(root / "parts" / "model.safetensors"));
  EXPECT_EQ(whole["test"]["ppl"], rest["test"]["ppl"]);
  // results.json: perplexities of both splits, word-level on WikiText's scale
  for (const char* split : {"valid", "test"}) {
    const auto& r = whole.at(split);
    EXPECT_GT(r.at("ppl").get<double>(), 1.0) << split;
    EXPECT_GT(r.at("word_ppl").get<double>(), 1.0) << split;
    EXPECT_GT(r.at("bits_per_byte").get<double>(), 0.0) << split;
  }
  EXPECT_TRUE(fs::exists(root / "whole" / "tokenizer.vocab"));  // the run folder is self-contained
  EXPECT_TRUE(fs::exists(root / "whole" / "checkpoints" / "best" / "model.safetensors"));
  // loaded back: the same test perplexity
  lm::LoadedRun run = lm::load_run((root / "whole").string());
  lm::PreparedData pd = lm::open_prepared(data);
  const auto& info = pd.split_info("test");
  lm::Perplexity p = lm::perplexity(*run.model, pd.split("test"), info.at("words").get<int64_t>(),
                                    info.at("bytes").get<int64_t>(), {});
  EXPECT_DOUBLE_EQ(p.ppl(), whole["test"]["ppl"].get<double>());
}

TEST(LMEval, PerplexityEqualsTheDirectSumAndEveryStrideScoresEveryToken) {
  const fs::path root = testing_util::fresh_temp_dir("lm_eval");
  const std::string data = prepared(root);
  lm::PreparedData pd = lm::open_prepared(data);
  lm::LMConfig cfg = tiny_config("rope", 1);
  cfg.model.vocab = pd.tokenizer->vocab_size();
  Generator gen(7);
  nn::TransformerLM model(cfg.model, &gen);
  model.eval();
  const lm::TokenFile& toks = pd.split("valid");
  const int64_t C = cfg.model.context;  // 5 whole windows: targets 1..5C
  lm::EvalOptions eo;
  eo.max_tokens = 5 * C;
  lm::Perplexity p = lm::perplexity(model, toks, 0, 0, eo);
  EXPECT_EQ(p.scored, 5 * C);
  // direct: each non-overlapping window's log-softmax at its targets
  double nll = 0;
  {
    NoGradGuard ng;
    for (int64_t w = 0; w < 5; ++w) {
      std::vector<int64_t> ids(static_cast<size_t>(C)), tg(static_cast<size_t>(C));
      toks.copy(w * C, C, ids.data());
      toks.copy(w * C + 1, C, tg.data());
      Tensor lp = log_softmax(model.forward(from_vector(ids, {1, C})), -1).to(DType::f64);  // (1, C, V)
      for (int64_t t = 0; t < C; ++t) nll -= lp.at({0, t, tg[size_t(t)]});
    }
  }
  EXPECT_NEAR(p.nll, nll, 1e-4 * std::abs(nll));
  // whole split at several strides and a longer context: every target scored once
  for (int64_t stride : std::vector<int64_t>{C, C / 2, 3}) {
    lm::EvalOptions o;
    o.stride = stride;
    o.batch = 3;
    lm::Perplexity q = lm::perplexity(model, toks, 10, 100, o);
    EXPECT_EQ(q.scored, toks.size() - 1) << stride;
    EXPECT_TRUE(std::isfinite(q.word_ppl()));
  }
  lm::EvalOptions longer;
  longer.context = 2 * C;
  longer.stride = C;
  EXPECT_EQ(lm::perplexity(model, toks, 0, 0, longer).scored, toks.size() - 1);
  lm::EvalOptions bad;
  bad.stride = C + 1;
  EXPECT_THROW(lm::perplexity(model, toks, 0, 0, bad), Error);
}

TEST(LMGenerate, GreedyWithTheCacheEqualsWithoutForEveryEncoding) {
  for (const char* pe : {"abs", "rel", "rope", "alibi", "cope", "cope+rel", "cope+rope"}) {
    lm::LMConfig cfg = tiny_config(pe, 1);
    cfg.model.vocab = 50;
    cfg.model.dropout = 0;
    Generator gen(3);
    nn::TransformerLM model(cfg.model, &gen);
    std::vector<int64_t> prompt{1, 5, 9, 2};
    lm::SampleOptions o;
    o.temperature = 0;
    o.tokens = 10;
    auto with = lm::generate(model, prompt, o);
    o.use_cache = false;
    auto without = lm::generate(model, prompt, o);
    EXPECT_EQ(with, without) << pe;
    EXPECT_EQ(with.size(), 10u) << pe;
  }
}

TEST(LMGenerate, AbsoluteTableLimitsTheLengthWithAHint) {
  lm::LMConfig cfg = tiny_config("abs", 1);
  cfg.model.vocab = 20;
  nn::TransformerLM model(cfg.model);
  lm::SampleOptions o;
  o.tokens = 10;
  std::vector<int64_t> prompt(size_t(cfg.model.context - 3), 1);
  try {
    lm::generate(model, prompt, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("HINT"), std::string::npos) << e.what();
  }
  EXPECT_THROW(lm::generate(model, {}, o), Error);
  EXPECT_EQ(lm::max_sequence(model), cfg.model.context);
}

TEST(LMGenerate, SamplingRespectsTopKTopPAndTheSeed) {
  const std::vector<float> logits{0.f, 3.f, 1.f, 2.9f, -1.f};
  lm::SampleOptions greedy;
  greedy.temperature = 0;
  Generator g(1);
  EXPECT_EQ(lm::sample_token(logits, greedy, g), 1);
  lm::SampleOptions k2;
  k2.top_k = 2;
  for (int i = 0; i < 200; ++i) {
    const int64_t t = lm::sample_token(logits, k2, g);
    EXPECT_TRUE(t == 1 || t == 3) << t;
  }
  lm::SampleOptions p;
  p.top_p = 0.3;  // the most likely token alone holds more than 0.3
  for (int i = 0; i < 50; ++i) EXPECT_EQ(lm::sample_token(logits, p, g), 1);
  lm::SampleOptions any;
  Generator a(9), b(9);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(lm::sample_token(logits, any, a), lm::sample_token(logits, any, b));
  // NaN logits (a diverged model) are named, greedy or not, rather than sampled from.
  std::vector<float> broken = logits;
  broken[2] = std::nanf("");
  for (const lm::SampleOptions& o : {greedy, k2, any}) {
    try {
      lm::sample_token(broken, o, g);
      ADD_FAILURE() << "NaN logits were sampled from";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
    }
  }
}

TEST(LMRun, ATokenizerMismatchIsNamed) {
  lm::LMConfig cfg = tiny_config("cope", 1);
  cfg.tokenizer_sha256 = std::string(64, 'a');
  try {
    lm::check_same_tokenizer(cfg, "runs/x", "data/y", std::string(64, 'b'));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("another tokenizer"), std::string::npos) << e.what();
  }
}

TEST(LMConfig, OneListOfFieldsGivesJsonErrorsAndSetters) {
  lm::LMConfig c = lm::preset_config("cpu-small", "cope", 8192);
  config::set_field(c, "model.npos=128", "test");
  config::set_field(c, "loop.optim.lr=0.002", "test");
  config::set_field(c, "loop.schedule.kind=linear", "test");
  config::set_field(c, "model.pre_norm=false", "test");
  EXPECT_EQ(c.model.npos, 128);
  EXPECT_DOUBLE_EQ(c.loop.optim.lr, 0.002);
  EXPECT_EQ(c.loop.schedule.kind, "linear");
  EXPECT_FALSE(c.model.pre_norm);
  EXPECT_EQ(lm::LMConfig::from_json(c.to_json()).to_json(), c.to_json());
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string unknown = message([&] { config::set_field(c, "model.npso=3", "lm train"); });
  EXPECT_NE(unknown.find("unknown key 'npso'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("npos"), std::string::npos) << unknown;  // the valid keys are listed
  const std::string type = message([&] { config::set_field(c, "model.n_layers=four", "lm train"); });
  EXPECT_NE(type.find("'n_layers' has the wrong type"), std::string::npos) << type;
  EXPECT_NE(message([&] { config::set_field(c, "batch", "lm train"); }).find("KEY=VALUE"), std::string::npos);
  bool listed = false;
  for (auto& [key, help] : config::describe(c)) listed |= key == "loop.schedule.warmup";
  EXPECT_TRUE(listed);
}
