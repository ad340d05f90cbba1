// test_tasks.cpp — the three tasks: generators, file formats, malformed lines, batches;
// and (tiny) training runs through the task trainer.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>

#include "tasks/task.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace copper;
using namespace copper::tasks;
namespace fs = std::filesystem;
using testing_util::error_of;

namespace {
fs::path temp_dir(const std::string& name) { return testing_util::fresh_temp_dir("tasks_" + name); }
void write_text(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }
TaskConfig cfg_of(const std::string& name) {
  TaskConfig c;
  c.task = name;
  return c;
}
}  // namespace

TEST(Tasks, FlipFlopSemantics) {
  TaskConfig c = cfg_of("flipflop");
  c.pairs = 40;
  auto task = make_task(c);
  Generator g(3);
  int64_t ins[3] = {0, 0, 0};
  for (int n = 0; n < 200; ++n) {
    Example ex = task->sample(g);
    ASSERT_EQ(ex.tokens.size(), 80u);
    EXPECT_EQ(task->vocab()[size_t(ex.tokens[0])], "w");
    EXPECT_EQ(task->vocab()[size_t(ex.tokens[78])], "r");
    int64_t last = -1;
    for (size_t k = 0; k < 80; k += 2) {
      const std::string i = task->vocab()[size_t(ex.tokens[k])], b = task->vocab()[size_t(ex.tokens[k + 1])];
      ins[ex.tokens[k]]++;
      if (i == "w") last = b == "1";
      if (i == "r") {
        EXPECT_EQ(b == "1", last == 1);
      }
      EXPECT_EQ(ex.mask[k], i == "r");
      EXPECT_EQ(ex.mask[k + 1], 0);
    }
  }
  // p(i) = 0.8 among the free instructions (38 of 40 per sequence)
  const double frac_i = double(ins[2]) / (200 * 38);
  EXPECT_NEAR(frac_i, 0.8, 0.02);
  EXPECT_EQ(task->splits().size(), 3u);
  EXPECT_EQ(task->splits()[1].second.p, 0.98);
  EXPECT_EQ(task->splits()[2].second.p, 0.1);
}

TEST(Tasks, SelectiveCopySemantics) {
  auto task = make_task(cfg_of("selective-copy"));
  Generator g(5);
  for (int n = 0; n < 50; ++n) {
    Example ex = task->sample(g);
    ASSERT_EQ(ex.tokens.size(), size_t(64 + 16 + 1 + 16));
    std::vector<int64_t> content;
    for (size_t t = 0; t < 80; ++t)
      if (ex.tokens[t] != 16) content.push_back(ex.tokens[t]);
    ASSERT_EQ(content.size(), 16u);
    EXPECT_EQ(ex.tokens[80], 17);  // separator
    EXPECT_TRUE(std::equal(content.begin(), content.end(), ex.tokens.begin() + 81));
    EXPECT_EQ(std::count(ex.mask.begin(), ex.mask.end(), 1), 16);
    EXPECT_EQ(ex.mask[80], 1);
  }
  auto sp = task->splits();
  EXPECT_EQ(sp[1].second.blanks, 32);
  EXPECT_EQ(sp[2].second.blanks, 128);
  EXPECT_EQ(make_task(sp[2].second)->max_tokens(), 161);
}

TEST(Tasks, CountingSemantics) {
  TaskConfig c = cfg_of("counting");
  c.vars = 3;
  c.max_steps = 64;
  auto task = make_task(c);
  Generator g(11);
  double pass = 0, statements = 0;
  for (int n = 0; n < 300; ++n) {
    Example ex = task->sample(g);
    // Re-run the program from the tokens.
    std::vector<int64_t> val(26, -1);
    size_t t = 0, steps = 0;
    const auto& v = task->vocab();
    while (v[size_t(ex.tokens[t])] != "print") {
      const std::string w = v[size_t(ex.tokens[t])];
      ++steps;
      if (w == "pass;") {
        ++pass;
        ++t;
      } else if (v[size_t(ex.tokens[t + 1])] == "++;") {
        ASSERT_GE(val[size_t(w[0] - 'a')], 0) << "increment of an unset variable";
        ++val[size_t(w[0] - 'a')];
        ASSERT_LE(val[size_t(w[0] - 'a')], 10);
        t += 2;
      } else {
        ASSERT_EQ(v[size_t(ex.tokens[t + 1])], "=");
        ASSERT_LT(w[0] - 'a', 3);
        val[size_t(w[0] - 'a')] = 0;
        t += 4;
      }
    }
    statements += double(steps);
    ASSERT_GE(steps, 3u);
    ASSERT_LE(steps, 64u);
    ASSERT_EQ(t + 3, ex.tokens.size());
    const int q = v[size_t(ex.tokens[t + 1])][0] - 'a';
    ASSERT_GE(val[size_t(q)], 0);
    EXPECT_EQ(v[size_t(ex.tokens[t + 2])], std::to_string(val[size_t(q)]));
    EXPECT_EQ(std::count(ex.mask.begin(), ex.mask.end(), 1), 1);
    EXPECT_EQ(ex.mask[t + 1], 1);
  }
  // 50/58 of the draws are pass; increments drawn before any set are redrawn, so a bit more.
  EXPECT_GT(pass / statements, 0.84);
  EXPECT_LT(pass / statements, 0.95);
}

TEST(Tasks, FilesRoundTripAndSeedsRepeat) {
  auto d = temp_dir("files");
  for (const std::string name : {"flipflop", "selective-copy", "counting"}) {
    auto task = make_task(cfg_of(name));
    Generator g1(9), g2(9);
    auto a = generate(*task, 20, g1), b = generate(*task, 20, g2);
    const std::string path = (d / (name + ".txt")).string();
    write_examples(*task, a, path);
    auto r = read_examples(*task, path);
    ASSERT_EQ(r.size(), a.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].tokens, b[i].tokens) << name;
      EXPECT_EQ(r[i].tokens, a[i].tokens) << name;
      EXPECT_EQ(r[i].mask, a[i].mask) << name;
    }
  }
  // The documented formats, written by hand.
  write_text(d / "ff.txt", "w0i1r0i1w1r1\n");
  auto ff = read_examples(*make_task(cfg_of("flipflop")), (d / "ff.txt").string());
  EXPECT_EQ(ff[0].tokens.size(), 12u);
  write_text(d / "sc.jsonl", "{\"input\": \"a _ _ c\", \"output\": \"a c\"}\n");
  auto sc = read_examples(*make_task(cfg_of("selective-copy")), (d / "sc.jsonl").string());
  EXPECT_EQ(sc[0].tokens, (std::vector<int64_t>{0, 16, 16, 2, 17, 0, 2}));
  write_text(d / "c.jsonl", "{\"context\": \"a = 0 ; pass; a ++; b = 0 ; a ++;\", \"question\": \"print a\", "
                            "\"answer\": \"2\"}\n");
  auto ct = read_examples(*make_task(cfg_of("counting")), (d / "c.jsonl").string());
  EXPECT_EQ(ct[0].tokens.size(), 4u + 1 + 2 + 4 + 2 + 3);
  fs::remove_all(d);
}

TEST(Tasks, MalformedLinesNameFileAndLine) {
  auto d = temp_dir("bad");
  auto check = [&](const std::string& task, const std::string& text, const std::string& what) {
    const fs::path p = d / "bad.txt";
    write_text(p, text);
    std::string e = error_of([&] { read_examples(*make_task(cfg_of(task)), p.string()); });
    EXPECT_NE(e.find(p.string() + ":2"), std::string::npos) << task << ": " << e;
    EXPECT_NE(e.find(what), std::string::npos) << task << ": " << e;
  };
  check("flipflop", "w0r0\nw0r1\n", "last write was 0");
  check("flipflop", "w0r0\nw0x1\n", "not an instruction");
  check("flipflop", "w0r0\nw0r\n", "characters");
  check("flipflop", "w0r0\n\nw0r0\n", "empty line");
  check("flipflop", "w0r0\nr0w0r0\n", "must be a write");
  check("selective-copy", "{\"input\": \"a _\", \"output\": \"a\"}\n{\"input\": \"a _\", \"output\": \"b\"}\n",
        "not the input's content");
  check("selective-copy", "{\"input\": \"a _\", \"output\": \"a\"}\n{\"input\": \"a _ z\", \"output\": \"a z\"}\n",
        "'z'");
  check("selective-copy", "{\"input\": \"a _\", \"output\": \"a\"}\nnot json\n", "not valid JSON");
  const std::string ok = "{\"context\": \"a = 0 ;\", \"question\": \"print a\", \"answer\": \"0\"}\n";
  check("counting", ok + "{\"context\": \"a = 0 ; a ++;\", \"question\": \"print a\", \"answer\": \"0\"}\n",
        "running the context gives a = 1");
  check("counting", ok + "{\"context\": \"a = 0 ;\", \"question\": \"print b\", \"answer\": \"0\"}\n", "never sets");
  check("counting", ok + "{\"context\": \"a = 0 ; b ++;\", \"question\": \"print a\", \"answer\": \"0\"}\n",
        "before b was set");
  check("counting", ok + "{\"context\": \"a = 0\", \"question\": \"print a\", \"answer\": \"0\"}\n", "expected");
  check("counting", ok + "{\"question\": \"print a\", \"answer\": \"0\"}\n", "needs fields");
  fs::remove_all(d);
}

TEST(Tasks, BatchesMaskAndTrim) {
  auto task = make_task(cfg_of("selective-copy"));
  Generator g(1);
  auto ex = generate(*task, 4, g);
  Batch b = make_batch(ex, 0, 4, 200);
  EXPECT_EQ(b.ids.shape(), (Shape{4, 96}));
  EXPECT_EQ(b.counted, 64);
  EXPECT_EQ(b.trimmed, 0);
  // targets are the next tokens where the mask is set
  EXPECT_EQ(b.targets.at({0, 80}), double(ex[0].tokens[81]));
  EXPECT_EQ(b.targets.at({0, 79}), -100.0);
  // A context shorter than the example keeps the end (and so every target).
  Batch t = make_batch(ex, 0, 2, 50);
  EXPECT_EQ(t.ids.shape(), (Shape{2, 50}));
  EXPECT_EQ(t.trimmed, 2);
  EXPECT_EQ(t.counted, 32);
  EXPECT_EQ(t.targets.at({1, 49}), double(ex[1].tokens.back()));
  EXPECT_THROW(make_task(cfg_of("sorting")), Error);
}

// ---------------------------------------------------------------- training
#include "nn/checkpoint.h"
#include "tasks/compare.h"
#include "tasks/trainer.h"

namespace {
TrainConfig tiny_config(const std::string& task_name, const std::string& pe) {
  TaskConfig t = cfg_of(task_name);
  TrainConfig c = preset_config("cpu-small", t, pe);
  c.task.pairs = 8;
  c.task.blanks = 8;
  c.task.content = 4;
  c.task.max_steps = 12;
  auto task = make_task(c.task);
  c.model.d_model = 16;
  c.model.n_layers = 1;
  c.model.n_heads = 2;
  c.model.d_ff = 32;
  c.model.context = task_name == "counting" ? 64 : longest_split_tokens(c.task);
  c.batch = 4;
  c.eval_samples = 20;
  c.eval_batch = 10;
  c.log_every = 5;
  c.checkpoint_every = 4;
  if (task_name == "counting") {
    c.train_samples = 10;  // several epochs in 12 steps
    c.model.dropout = 0.1;
  }
  set_steps(c, 12);
  c.checkpoint_every = 4;
  return c;
}
std::vector<std::vector<float>> weights_of(const fs::path& model_file) {
  std::vector<std::vector<float>> out;
  for (auto& [name, t] : nn::load_model(model_file.string()).weights) out.push_back(t.to(DType::f32).to_vector<float>());
  return out;
}
}  // namespace

// The presets hold the numbers issue 3 names for them.
TEST(TaskPresets, CpuSmallAndPaperHoldTheIssuesSettings) {
  for (const std::string name : {"flipflop", "selective-copy", "counting"}) {
    SCOPED_TRACE(name);
    TrainConfig s = preset_config("cpu-small", cfg_of(name), "cope");
    EXPECT_EQ(s.model.d_model, 64);
    EXPECT_EQ(s.model.n_layers, 2);
    EXPECT_EQ(s.model.n_heads, 4);
    EXPECT_EQ(s.model.d_ff, 4 * 64);
    EXPECT_EQ(s.model.mlp, "gelu");
    EXPECT_TRUE(s.model.pre_norm);
    EXPECT_EQ(s.optim.name, "adamw");
    EXPECT_EQ(s.optim.weight_decay, 0);
    EXPECT_EQ(s.batch, 32);

    TrainConfig p = preset_config("paper", cfg_of(name), "cope");
    EXPECT_EQ(p.model.d_model, 256);
    EXPECT_EQ(p.model.n_layers, 4);
    EXPECT_EQ(p.model.n_heads, 4);
    EXPECT_EQ(p.model.pe, "cope");
  }
  TrainConfig ff = preset_config("cpu-small", cfg_of("flipflop"), "abs");
  EXPECT_EQ(ff.task.pairs, 64);
  EXPECT_EQ(ff.task.p, 0.8);
  EXPECT_EQ(ff.optim.lr, 3e-3);
  TrainConfig sc = preset_config("cpu-small", cfg_of("selective-copy"), "abs");
  EXPECT_EQ(sc.task.content, 16);
  EXPECT_EQ(sc.task.blanks, 64);
  EXPECT_EQ(sc.optim.lr, 1e-3);
  EXPECT_EQ(sc.model.context, 161);  // covers the sparse split: 16 content among 128 blanks
  TrainConfig ct = preset_config("cpu-small", cfg_of("counting"), "abs");
  EXPECT_EQ(ct.task.max_steps, 128);
  EXPECT_EQ(ct.train_samples, 10000);
  EXPECT_EQ(ct.optim.lr, 1e-3);

  // Counting at the paper's settings (its run.sh): context 512, 10k samples, batch 64,
  // Adam at 7e-5, dropout 0.1, post-norm, tied embeddings, 100 epochs = 15625 steps.
  TrainConfig pc = preset_config("paper", cfg_of("counting"), "cope");
  EXPECT_EQ(pc.model.context, 512);
  EXPECT_EQ(pc.task.max_steps, 512);
  EXPECT_EQ(pc.train_samples, 10000);
  EXPECT_EQ(pc.batch, 64);
  EXPECT_EQ(pc.optim.name, "adam");
  EXPECT_EQ(pc.optim.lr, 7e-5);
  EXPECT_EQ(pc.schedule.kind, "constant");
  EXPECT_EQ(pc.model.dropout, 0.1);
  EXPECT_FALSE(pc.model.pre_norm);
  EXPECT_TRUE(pc.model.tie_embeddings);
  EXPECT_EQ(pc.steps, 15625);
  EXPECT_EQ(pc.steps * pc.batch, 100 * pc.train_samples);
  EXPECT_THROW(preset_config("gpu", cfg_of("counting"), "cope"), Error);
}

// f throws copper::Error whose message contains `want`.
void expect_error(const std::function<void()>& f, const std::string& want) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one naming '" << want << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
}

// TrainConfig is described once (nn/config.h): its JSON round-trips, and a key it does not
// have or a value of the wrong type is an error naming the key, not silently ignored.
TEST(TaskPresets, TrainConfigJsonRoundTripsAndRejectsUnknownKeys) {
  TaskConfig task;
  task.task = "selective-copy";
  const TrainConfig c = preset_config("cpu-small", task, "cope");
  const nlohmann::json js = c.to_json();
  EXPECT_EQ(TrainConfig::from_json(js).to_json(), js);
  EXPECT_FALSE(js.at("task").contains("pairs")) << "the task's JSON holds only its own fields";

  nlohmann::json with_vocab = js;  // as a run's config.json has it
  with_vocab["vocab"] = {"a", "b"};
  EXPECT_EQ(TrainConfig::from_json(with_vocab).to_json(), js);

  nlohmann::json typo = js;
  typo["bacth"] = 8;
  expect_error([&] { TrainConfig::from_json(typo); }, "bacth");
  nlohmann::json wrong = js;
  wrong["steps"] = "many";
  expect_error([&] { TrainConfig::from_json(wrong); }, "steps");
  nlohmann::json partial = {{"task", js.at("task")}, {"model", js.at("model")}};
  EXPECT_EQ(TrainConfig::from_json(partial).preset, "custom");
  nlohmann::json no_vocab = js;
  no_vocab["model"].erase("vocab");
  expect_error([&] { TrainConfig::from_json(no_vocab); }, "vocab");
}

TEST(TaskTrain, KilledRunResumesBitIdentical) {
  auto d = temp_dir("resume");
  for (const std::string name : {"flipflop", "counting"}) {
    TrainConfig c = tiny_config(name, "cope");
    TrainOptions quiet;
    quiet.quiet = true;
    auto straight = train_run(c, (d / (name + "-a")).string(), quiet);
    TrainOptions killed = quiet;
    killed.stop_after = 10;  // checkpoints at 4 and 8: steps 9 and 10 are lost
    train_run(c, (d / (name + "-b")).string(), killed);
    EXPECT_FALSE(fs::exists(d / (name + "-b") / "model.safetensors"));
    auto resumed = train_run(c, (d / (name + "-b")).string(), quiet);
    EXPECT_EQ(weights_of(d / (name + "-a") / "model.safetensors"), weights_of(d / (name + "-b") / "model.safetensors"))
        << name;
    EXPECT_EQ(straight["error"], resumed["error"]) << name;
    // The log holds each step once.
    std::ifstream log(d / (name + "-b") / "log.jsonl");
    std::vector<int64_t> steps;
    for (std::string line; std::getline(log, line);) steps.push_back(nlohmann::json::parse(line)["step"]);
    EXPECT_EQ(steps, (std::vector<int64_t>{5, 10, 12})) << name;
    // Another config in the same folder is refused, and the outputs stay.
    TrainConfig other = c;
    other.optim.lr *= 2;
    other.schedule.lr *= 2;
    std::string e = error_of([&] { train_run(other, (d / (name + "-b")).string(), quiet); });
    EXPECT_NE(e.find("different config"), std::string::npos) << e;
    EXPECT_TRUE(fs::exists(d / (name + "-b") / "model.safetensors"));
  }
  fs::remove_all(d);
}

// --time-budget: the run ends when the budget is spent (counted across a resume) and the
// schedule follows the fraction spent, so the rate has decayed to near its floor at the end.
TEST(TaskTrain, TimeBudgetEndsTheScheduleOnTime) {
  auto d = temp_dir("budget");
  TrainConfig c = tiny_config("flipflop", "rope");
  set_steps(c, 40);  // a nominal count: sets only the warmup (2 steps' worth of the budget)
  c.log_every = 1;
  c.checkpoint_every = 1000000;  // only the final checkpoint
  TrainOptions o;
  o.quiet = true;
  o.time_budget_s = 1.0;
  auto res = train_run(c, (d / "run").string(), o);
  EXPECT_GE(res["train_seconds"].get<double>(), 1.0);
  // Over a thousand steps in a release build; under ASan (about 20x slower) still past the nominal 40.
  EXPECT_GT(res["steps"].get<int64_t>(), 40) << "a budget run is not bound by the preset's step count";
  std::ifstream log(d / "run" / "log.jsonl");
  std::vector<double> lrs;
  for (std::string line; std::getline(log, line);) lrs.push_back(nlohmann::json::parse(line)["lr"]);
  ASSERT_EQ(int64_t(lrs.size()), res["steps"].get<int64_t>());
  const double peak = c.schedule.lr, floor = peak * c.schedule.min_lr_ratio;
  EXPECT_LT(lrs.front(), peak);                 // warming up
  EXPECT_LT(lrs.back(), floor + 0.1 * peak);    // nearly at the end of the cosine
  EXPECT_GE(lrs.back(), floor);
  // Resuming a finished budget run adds no steps: its budget is spent.
  o.time_budget_s = 0.3;
  auto again = train_run(c, (d / "run").string(), o);
  EXPECT_EQ(again["steps"], res["steps"]);
  fs::remove_all(d);
}

// --train-data reads the file in order, wrapping around; --init starts from given weights.
// Both exist so that another implementation can be fed the same start and the same batches
// (scripts/trajectory_torch.sh).
TEST(TaskTrain, TrainDataInOrderAndInitWeights) {
  auto d = temp_dir("traindata");
  TrainConfig c = tiny_config("flipflop", "rope");
  set_steps(c, 4);  // batch 4: 16 examples, two passes over 8
  auto task = make_task(c.task);
  Generator g(5);
  auto eight = generate(*task, 8, g);
  auto sixteen = eight;
  sixteen.insert(sixteen.end(), eight.begin(), eight.end());
  write_examples(*task, eight, (d / "eight.txt").string());
  write_examples(*task, sixteen, (d / "sixteen.txt").string());
  TrainOptions quiet;
  quiet.quiet = true;
  auto run = [&](const std::string& data, const std::string& out, TrainOptions o) {
    TrainConfig cc = c;
    cc.train_data = (d / data).string();
    train_run(cc, (d / out).string(), o);
    return weights_of(d / out / "model.safetensors");
  };
  const auto a = run("eight.txt", "a", quiet);
  EXPECT_EQ(a, run("sixteen.txt", "b", quiet)) << "the file is read in order and wraps around";
  write_examples(*task, std::vector<Example>(sixteen.rbegin(), sixteen.rend()), (d / "reversed.txt").string());
  EXPECT_NE(a, run("reversed.txt", "c", quiet));
  // Starting from a's weights with a zero learning rate leaves them as they are.
  TrainConfig frozen = c;
  frozen.optim.lr = frozen.schedule.lr = 0;
  TrainOptions from_a = quiet;
  from_a.init_weights = (d / "a" / "model.safetensors").string();
  train_run(frozen, (d / "frozen").string(), from_a);
  EXPECT_EQ(weights_of(d / "frozen" / "model.safetensors"), a);
  // A file of another config is refused with the tensor's name.
  TrainConfig wider = c;
  wider.model.d_model = 32;
  wider.model.d_ff = 64;
  std::string e = error_of([&] { train_run(wider, (d / "wider").string(), from_a); });
  EXPECT_NE(e.find("embed.weight"), std::string::npos) << e;
  fs::remove_all(d);
}

TEST(TaskTrain, EvaluatesOtherLengthsAndShowsGates) {
  auto d = temp_dir("eval");
  TrainConfig c = tiny_config("selective-copy", "cope");
  TrainOptions quiet;
  quiet.quiet = true;
  auto res = train_run(c, (d / "run").string(), quiet);
  for (auto split : {"in", "ood_dense", "ood_sparse"}) {
    EXPECT_GE(res["error"][split].get<double>(), 0.0);
    EXPECT_LE(res["error"][split].get<double>(), 1.0);
  }
  TrainedModel m = load_trained((d / "run").string());
  EXPECT_EQ(m.model->config().context, c.model.context);
  // A file of another density (and a longer one, which keeps its last context+1 tokens).
  for (int64_t blanks : {2, 16, 40}) {
    TaskConfig t = c.task;
    t.blanks = blanks;
    Generator g(blanks);
    auto ex = generate(*make_task(t), 12, g);
    write_examples(*make_task(t), ex, (d / "data.jsonl").string());
    auto back = read_examples(*m.task, (d / "data.jsonl").string());
    EvalResult r = evaluate(*m.model, *m.task, back, 5);
    EXPECT_EQ(r.samples, 12);
    EXPECT_EQ(r.tokens, 12 * 4);
    EXPECT_EQ(r.trimmed, blanks == 40 ? 12 : 0);
  }
  std::string gates = gates_text(*m.model, *m.task, m.task->sample(*std::make_unique<Generator>(3)));
  EXPECT_NE(gates.find("L0H0"), std::string::npos) << gates;
  EXPECT_NE(gates.find("L0H1"), std::string::npos) << gates;
  // A model trained without CoPE has no gates: a clear error.
  TrainConfig a = tiny_config("flipflop", "abs");
  set_steps(a, 2);
  train_run(a, (d / "abs").string(), quiet);
  TrainedModel ma = load_trained((d / "abs").string());
  Generator g(1);
  EXPECT_NE(error_of([&] { gates_text(*ma.model, *ma.task, ma.task->sample(g)); }).find("no CoPE"), std::string::npos);
  // A folder whose weights do not fit its config.
  fs::copy_file(d / "abs" / "model.safetensors", d / "run" / "model.safetensors", fs::copy_options::overwrite_existing);
  EXPECT_NE(error_of([&] { load_trained((d / "run").string()); }).find("model.safetensors"), std::string::npos);
  fs::remove_all(d);
}
