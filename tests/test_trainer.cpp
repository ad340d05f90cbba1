// test_trainer.cpp — the generic trainer (train/trainer.h) on a toy language model: exact
// resume, periodic evaluation with a best model, the output folder never half old and half
// new, SIGINT handling, and progress lines.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "autograd/grad_mode.h"
#include "nn/checkpoint.h"
#include "nn/transformer.h"
#include "tensor/ops.h"
#include "tests/test_util.h"
#include "train/trainer.h"

using namespace copper;
namespace fs = std::filesystem;
using testing_util::error_of;

namespace {

constexpr int64_t kVocab = 11, kContext = 8, kBatch = 4;

fs::path temp_dir(const std::string& name) { return testing_util::fresh_temp_dir("trainer_" + name); }

// Random token windows from a seeded generator: the generator's state is the position.
class ToyData : public train::DataSource {
 public:
  explicit ToyData(uint64_t seed) : gen_(seed) {}
  train::Batch batch(int64_t) override {
    std::vector<int64_t> ids(size_t(kBatch * kContext)), tgt(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int64_t(gen_.below(kVocab));
    for (size_t i = 0; i < ids.size(); ++i)  // target: the next token of the row, ignored at its end
      tgt[i] = (i + 1) % kContext == 0 ? train::kIgnoreIndex : ids[i + 1];
    return {from_vector(ids, {kBatch, kContext}), from_vector(tgt, {kBatch, kContext}),
            kBatch * kContext};
  }
  nlohmann::json state() const override { return nn::generator_to_json(gen_); }
  void restore(const nlohmann::json& st) override { nn::generator_from_json(gen_, st); }

 private:
  Generator gen_;
};

nn::TransformerConfig toy_model() {
  nn::TransformerConfig m;
  m.vocab = kVocab;
  m.context = kContext;
  m.d_model = 8;
  m.n_layers = 1;
  m.n_heads = 2;
  m.d_ff = 16;
  m.pe = "rope";
  m.dropout = 0.1;  // the dropout generator must resume too
  return m;
}

train::LoopConfig toy_loop(int64_t steps) {
  train::LoopConfig l;
  l.steps = steps;
  l.seed = 3;
  l.log_every = 2;
  l.checkpoint_every = 4;
  l.optim.name = "adamw";
  l.optim.lr = 1e-2;
  l.schedule.kind = "cosine";
  l.schedule.lr = 1e-2;
  l.schedule.warmup = 2;
  l.schedule.total = steps;
  return l;
}

Tensor toy_loss(nn::TransformerLM& model, const train::Batch& b) {
  Tensor logits = model.forward(b.ids);  // [B, T, V]
  return cross_entropy(logits.reshape({kBatch * kContext, kVocab}), b.targets.reshape({kBatch * kContext}),
                       train::kIgnoreIndex);
}

struct ToyRun {
  train::RunResult result;
  std::vector<std::vector<float>> weights;
};

// One toy run into `dir`; finish() with a small results.json when it completes.
// before_finish: what the caller does between run() and finish() (its evaluation).
ToyRun toy_run(const fs::path& dir, int64_t steps, train::RunOptions opt, int64_t eval_every = 0,
               int64_t raise_at_step = -1, const std::function<void(train::Trainer&)>& before_finish = {},
               const std::string& dtype = "f32") {
  Generator init(train::stream_seed(3, 1));
  nn::TransformerLM model(toy_model(), &init);
  ToyData data(train::stream_seed(3, 2));
  train::LoopConfig loop = toy_loop(steps);
  loop.eval_every = eval_every;
  loop.dtype = dtype;
  train::Hooks hooks;
  int64_t calls = 0;
  hooks.loss = [&](const train::Batch& b) {
    if (++calls == raise_at_step) std::raise(SIGINT);  // as if Ctrl-C came during this step
    return toy_loss(model, b);
  };
  ToyData eval_data(99);
  const train::Batch eval_batch = eval_data.batch(0);
  hooks.evaluate = [&] {
    NoGradGuard ng;
    model.eval();
    return nlohmann::json{{"loss", toy_loss(model, eval_batch).item()}};
  };
  nlohmann::json config = {{"toy", true}, {"loop", loop.to_json()}, {"model", toy_model().to_json()}};
  opt.quiet = true;
  opt.resume_command = "toy resume";
  train::Trainer trainer(model, data, loop, hooks, config, toy_model().to_json(), dir.string(), opt);
  ToyRun r;
  r.result = trainer.run();
  if (r.result.completed && !r.result.already_done && before_finish) before_finish(trainer);
  if (r.result.completed && !r.result.already_done)
    trainer.finish({{"steps", r.result.steps}, {"final_loss", r.result.final_loss}});
  for (auto& [name, t] : model.state_dict()) r.weights.push_back(t.contiguous().to_vector<float>());
  return r;
}

std::string bytes_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every file under dir with its contents.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = bytes_of(e.path());
  return out;
}

}  // namespace

TEST(Trainer, KilledAndResumedRunIsBitIdentical) {
  auto d = temp_dir("resume");
  const ToyRun straight = toy_run(d / "a", 12, {}, /*eval_every=*/3);
  ASSERT_TRUE(straight.result.completed);
  train::RunOptions killed;
  killed.stop_after = 7;  // checkpoint at 4: steps 5..7 are done again
  const ToyRun part = toy_run(d / "b", 12, killed, 3);
  EXPECT_FALSE(part.result.completed);
  EXPECT_EQ(part.result.steps, 7);
  EXPECT_FALSE(fs::exists(d / "b" / "results.json"));
  const ToyRun resumed = toy_run(d / "b", 12, {}, 3);
  ASSERT_TRUE(resumed.result.completed);
  EXPECT_EQ(straight.weights, resumed.weights);
  EXPECT_EQ(bytes_of(d / "a" / "model.safetensors"), bytes_of(d / "b" / "model.safetensors"));
  EXPECT_DOUBLE_EQ(straight.result.final_loss, resumed.result.final_loss);
  // The best model follows the evaluation loss, across the resume too.
  EXPECT_EQ(straight.result.best_eval, resumed.result.best_eval);
  EXPECT_TRUE(fs::exists(d / "b" / "checkpoints" / "best" / "model.safetensors"));
  auto best = nlohmann::json::parse(bytes_of(d / "b" / "checkpoints" / "best" / "eval.json"));
  EXPECT_EQ(best, resumed.result.best_eval);
  // The log holds each step and each evaluation once, in order.
  std::ifstream log(d / "b" / "log.jsonl");
  std::vector<std::string> entries;
  for (std::string line; std::getline(log, line);) {
    auto js = nlohmann::json::parse(line);
    entries.push_back(fmt::format("{}{}", js.contains("eval") ? "e" : "", js["step"].get<int64_t>()));
  }
  EXPECT_EQ(entries, (std::vector<std::string>{"2", "e3", "4", "6", "e6", "8", "e9", "10", "12", "e12"}));
  // Interrupted by a signal between two log lines (step 3; logs every 2): the resumed run logs
  // the same losses as the straight one.
  EXPECT_THROW(toy_run(d / "c", 12, {}, 3, /*raise_at_step=*/3), train::Interrupted);
  EXPECT_EQ(toy_run(d / "c", 12, {}, 3).weights, straight.weights);
  auto losses = [](const fs::path& log_path) {
    std::ifstream in(log_path);
    std::vector<nlohmann::json> out;
    for (std::string line; std::getline(in, line);) {
      auto js = nlohmann::json::parse(line);
      js.erase("elapsed_s");
      js.erase("tokens_per_s");
      out.push_back(js);
    }
    return out;
  };
  EXPECT_EQ(losses(d / "a" / "log.jsonl"), losses(d / "c" / "log.jsonl"));
  fs::remove_all(d);
}

// Mixed precision (loop.dtype = "bf16"): the products are rounded, so the run differs from
// f32 in its last bits but trains the same; the weights stay f32; resume stays exact.
TEST(Trainer, MixedPrecisionTrainsLikeF32AndResumesExactly) {
  auto d = temp_dir("bf16");
  const ToyRun f32 = toy_run(d / "f32", 12, {});
  const ToyRun bf = toy_run(d / "bf16", 12, {}, 0, -1, {}, "bf16");
  ASSERT_TRUE(bf.result.completed);
  EXPECT_NE(bf.weights, f32.weights) << "the products were not rounded";
  EXPECT_NEAR(bf.result.final_loss, f32.result.final_loss, 0.02 * f32.result.final_loss);
  auto cfg = nlohmann::json::parse(bytes_of(d / "bf16" / "config.json"));
  EXPECT_EQ(cfg["loop"]["dtype"], "bf16");
  train::RunOptions killed;
  killed.stop_after = 7;
  EXPECT_FALSE(toy_run(d / "resumed", 12, killed, 0, -1, {}, "bf16").result.completed);
  EXPECT_EQ(toy_run(d / "resumed", 12, {}, 0, -1, {}, "bf16").weights, bf.weights);
  train::LoopConfig l = toy_loop(4);
  l.dtype = "f16";
  EXPECT_NE(error_of([&] { l.validate(); }).find("bf16"), std::string::npos);
  fs::remove_all(d);
}

TEST(Trainer, RerunOfAFinishedRunChangesNothing) {
  auto d = temp_dir("rerun");
  const ToyRun first = toy_run(d / "run", 6, {});
  const auto before = snapshot(d / "run");
  const ToyRun again = toy_run(d / "run", 6, {});
  EXPECT_TRUE(again.result.already_done);
  EXPECT_EQ(again.result.steps, 6);
  EXPECT_EQ(again.result.results["final_loss"].get<double>(), first.result.final_loss);
  EXPECT_EQ(snapshot(d / "run"), before);
  EXPECT_FALSE(fs::exists(d / "run.next"));
  // Another config over it, without --fresh: refused, nothing changed.
  const std::string e = error_of([&] { toy_run(d / "run", 8, {}); });
  EXPECT_NE(e.find("different config"), std::string::npos) << e;
  EXPECT_NE(e.find("--fresh"), std::string::npos) << e;
  EXPECT_EQ(snapshot(d / "run"), before);
  fs::remove_all(d);
}

TEST(Trainer, FreshRunOverAFinishedOneReplacesItOnlyWhenDone) {
  auto d = temp_dir("fresh");
  toy_run(d / "run", 6, {});
  const auto before = snapshot(d / "run");
  // --fresh with more steps, killed at step 5: the old outputs stay byte-identical.
  train::RunOptions fresh;
  fresh.fresh = true;
  fresh.stop_after = 5;
  EXPECT_FALSE(toy_run(d / "run", 10, fresh).result.completed);
  EXPECT_EQ(snapshot(d / "run"), before);
  EXPECT_TRUE(fs::exists(d / "run.next" / "checkpoints" / "latest"));
  // Interrupted by SIGINT in its 2nd step after resuming: a checkpoint at that step, the old run untouched.
  int sig = 0;
  std::string message;
  try {
    toy_run(d / "run", 10, {}, 0, /*raise_at_step=*/2);
  } catch (const train::Interrupted& e) {
    sig = e.signal;
    message = e.message;
  }
  EXPECT_EQ(sig, SIGINT);
  EXPECT_NE(message.find("step 6"), std::string::npos) << message;  // resumed at 4, interrupted in its 2nd step
  EXPECT_NE(message.find("toy resume"), std::string::npos) << message;
  EXPECT_NE(message.find("step-00000006"), std::string::npos) << message;
  EXPECT_EQ(snapshot(d / "run"), before);
  // Resumed without --fresh, it finishes and takes the folder's place; bit-identical to a straight run.
  const ToyRun done = toy_run(d / "run", 10, {});
  ASSERT_TRUE(done.result.completed);
  EXPECT_FALSE(fs::exists(d / "run.next"));
  EXPECT_FALSE(fs::exists(d / "run.old"));
  EXPECT_EQ(nlohmann::json::parse(bytes_of(d / "run" / "results.json"))["steps"], 10);
  EXPECT_EQ(done.weights, toy_run(d / "straight", 10, {}).weights);
  fs::remove_all(d);
}

TEST(Trainer, AnInterruptedSwapIsCompleted) {
  auto d = temp_dir("swap");
  toy_run(d / "run", 6, {});
  train::RunOptions fresh;
  fresh.fresh = true;
  fresh.stop_after = 3;
  toy_run(d / "run", 6, fresh);
  // A swap killed between its two renames: DIR is gone, DIR.old is the old run, DIR.next unfinished.
  fs::rename(d / "run", d / "run.old");
  const ToyRun r = toy_run(d / "run", 6, {});
  EXPECT_TRUE(r.result.already_done) << "the old complete run goes back in place";
  EXPECT_FALSE(fs::exists(d / "run.old"));
  fs::remove_all(d);
}

TEST(Trainer, FreshOverAnUnfinishedRunStartsOver) {
  auto d = temp_dir("unfinished");
  train::RunOptions killed;
  killed.stop_after = 5;
  toy_run(d / "run", 8, killed);
  train::RunOptions fresh;
  fresh.fresh = true;
  const ToyRun r = toy_run(d / "run", 8, fresh);
  EXPECT_EQ(r.weights, toy_run(d / "straight", 8, {}).weights);
  EXPECT_FALSE(fs::exists(d / "run.next"));
  fs::remove_all(d);
}

TEST(Trainer, ProgressLinesInALogAreSparse) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    train::Progress p(f, "eval ", 10, false, /*every=*/0);
    for (int i = 1; i <= 10; ++i) p.update(i, "samples");
    p.finish();
    train::Progress q(f, "step ", 4, false, /*every=*/2);
    for (int i = 1; i <= 4; ++i) q.update(i, "loss 1.0");
    q.finish();
    train::Progress quiet(f, "x ", 4, /*quiet=*/true);
    quiet.update(1);
    quiet.finish();
  }
  std::rewind(f);
  std::string text;
  for (int c; (c = std::fgetc(f)) != EOF;) text += char(c);
  std::fclose(f);
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 3u) << text;
  EXPECT_EQ(lines[0].rfind("eval 10/10  samples  in ", 0), 0u) << lines[0];
  EXPECT_EQ(lines[1].rfind("step 2/4  loss 1.0  ETA ", 0), 0u) << lines[1];
  EXPECT_EQ(lines[2].rfind("step 4/4  loss 1.0  ETA ", 0), 0u) << lines[2];
  EXPECT_EQ(train::format_duration(45), "45s");
  EXPECT_EQ(train::format_duration(187), "3m07s");
  EXPECT_EQ(train::format_duration(7500), "2h05m");
}

TEST(Trainer, LoopConfigRoundTripsAndValidates) {
  train::LoopConfig l = toy_loop(30);
  l.eval_every = 5;
  EXPECT_EQ(train::LoopConfig::from_json(l.to_json()).to_json(), l.to_json());
  l.log_every = 0;
  EXPECT_NE(error_of([&] { l.validate(); }).find("log_every"), std::string::npos);
}

// A signal during the caller's evaluation (after the loop, before finish): Interrupted from
// check_interrupted; the final checkpoint stays and the same command then only evaluates.
TEST(Trainer, SignalDuringTheCallersEvaluation) {
  auto d = temp_dir("evalsig");
  int sig = 0;
  std::string message;
  try {
    toy_run(d / "run", 6, {}, 0, -1, [](train::Trainer& t) {
      t.check_interrupted();  // nothing yet
      std::raise(SIGTERM);
      t.check_interrupted();
    });
  } catch (const train::Interrupted& e) {
    sig = e.signal;
    message = e.message;
  }
  EXPECT_EQ(sig, SIGTERM);
  EXPECT_NE(message.find("after training, at step 6"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(d / "run" / "results.json"));
  const ToyRun again = toy_run(d / "run", 6, {});
  EXPECT_TRUE(again.result.completed);
  EXPECT_EQ(again.result.steps, 6);
  EXPECT_TRUE(fs::exists(d / "run" / "results.json"));
  EXPECT_EQ(again.weights, toy_run(d / "straight", 6, {}).weights);
  fs::remove_all(d);
}
