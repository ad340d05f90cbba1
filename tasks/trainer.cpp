// trainer.cpp — the paper's tasks on the generic trainer (train/trainer.h): presets, the
// task data source, the loss, and held-out evaluation of every split.
#include "tasks/trainer.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "autograd/grad_mode.h"
#include "nn/checkpoint.h"
#include "nn/config.h"
#include "tensor/ops.h"
#include "train/trainer.h"

namespace copper::tasks {

namespace fs = std::filesystem;

namespace {
// The random streams of a task run besides the trainer's dropout stream
// (train::kDropoutStream): Generator(train::stream_seed(seed, stream)).
enum Stream : uint64_t { kInit = 1, kData = 2, kTrainSet = 3, kEpoch = 4, kHeldout = 100 };
static_assert(train::kDropoutStream != kInit && train::kDropoutStream != kData && train::kDropoutStream != kTrainSet &&
              train::kDropoutStream != kEpoch);
using train::stream_seed;

}  // namespace

// ---------------------------------------------------------------- configs and presets

nlohmann::json TrainConfig::to_json() const { return config::to_json(*this); }

TrainConfig TrainConfig::from_json(const nlohmann::json& js) {
  COPPER_CHECK(js.is_object() && js.contains("task") && js.contains("model"), "task",
               "config needs 'task' and 'model' objects");
  COPPER_CHECK(js.at("model").is_object() && js.at("model").contains("vocab"), "task",
               "config's 'model' has no 'vocab'. HINT: the vocabulary size is required");
  // A run's config.json also lists the task's tokens under "vocab", for readers: not a field.
  nlohmann::json fields = js;
  fields.erase("vocab");
  TrainConfig c;
  c.preset = "custom";
  config::from_json(c, fields, "task config");
  c.schedule.validate();
  return c;
}

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> n{"cpu-small", "paper", "demo"};
  return n;
}

void set_steps(TrainConfig& cfg, int64_t steps) {
  COPPER_CHECK(steps >= 0, "task", "--steps must be at least 0, got {}", steps);
  cfg.steps = steps;
  cfg.schedule.total = steps;
  cfg.schedule.warmup = cfg.schedule.kind == "constant" ? 0 : std::max<int64_t>(1, steps / 20);
  cfg.checkpoint_every = std::max<int64_t>(1, std::min<int64_t>(cfg.checkpoint_every, steps));
  cfg.log_every = std::max<int64_t>(1, std::min<int64_t>(cfg.log_every, steps));
}

int64_t longest_split_tokens(const TaskConfig& task) {
  int64_t n = 0;
  auto t = make_task(task);
  for (auto& [name, cfg] : t->splits()) n = std::max(n, make_task(cfg)->max_tokens());
  return n;
}

TrainConfig preset_config(const std::string& preset, const TaskConfig& task_in, const std::string& pe) {
  TrainConfig c;
  c.preset = preset;
  c.task = task_in;
  nn::TransformerConfig& m = c.model;
  m.pe = pe;
  m.mlp = "gelu";
  c.optim.name = "adamw";
  c.optim.weight_decay = 0;
  c.schedule.kind = "cosine";
  c.schedule.min_lr_ratio = 0.1;
  const std::string& t = task_in.task;
  if (preset == "cpu-small" || preset == "demo") {
    m.d_model = 64;
    m.n_layers = 2;
    m.n_heads = 4;
    m.d_ff = 4 * 64;
    m.pre_norm = true;
    c.batch = 32;
    // Step counts: a run of the slowest encoding (CoPE) fits in the preset's 10 minutes on 2
    // cores, evaluation included, even at one thread beside another run (docs/RESULTS.md,
    // "Training time per run", has the measured times).
    if (t == "flipflop") {
      c.task.pairs = preset == "demo" ? 32 : 64;
      c.task.p = 0.8;
      c.optim.lr = 3e-3;
      c.steps = preset == "demo" ? 800 : 2000;
    } else if (t == "selective-copy") {
      c.task.blanks = 64;
      c.task.content = 16;
      c.task.symbols = 16;
      c.optim.lr = 1e-3;
      c.steps = 4000;
      // `copper demo`: at this rate CoPE's loss is below 0.03 by step 200 and its error 0 % on
      // every split after 300 steps (seed 1, one thread, as the demo trains), where abs and
      // RoPE are at 100 %. About 1.5 minutes for the three on 2 otherwise idle cores.
      if (preset == "demo") {
        c.optim.lr = 3e-3;
        c.steps = 300;
      }
    } else if (t == "counting") {
      c.task.max_steps = 128;
      c.train_samples = 10000;
      c.optim.lr = 1e-3;
      c.steps = 1800;
    }
    if (preset == "demo") c.eval_samples = 300;
  } else if (preset == "paper") {
    m.d_model = 256;
    m.n_layers = 4;
    m.n_heads = 4;
    m.d_ff = 4 * 256;
    c.batch = 64;
    c.checkpoint_every = 500;
    c.log_every = 100;
    if (t == "counting") {  // the paper's run.sh: 100 epochs of 10k samples
      c.task.max_steps = 512;
      c.train_samples = 10000;
      c.optim.name = "adam";
      c.optim.lr = 7e-5;
      c.schedule.kind = "constant";
      m.dropout = 0.1;
      m.pre_norm = false;
      m.tie_embeddings = true;
      c.clip = 0;
      c.steps = 15625;
    } else {  // same model; the optimizer settings are ours
      if (t == "flipflop") {
        c.task.pairs = 128;
        c.task.p = 0.8;
      } else {
        c.task.blanks = 64;
      }
      m.pre_norm = true;
      c.optim.lr = 3e-4;
      c.steps = 10000;
    }
  } else {
    COPPER_THROW("task", "unknown preset '{}'. HINT: valid presets are cpu-small, paper, demo", preset);
  }
  auto task = make_task(c.task);
  m.vocab = task->vocab_size();
  // The context covers the longest evaluation split (counting: the paper's 512, longer
  // programs keep their last 512 tokens as in the paper's code).
  m.context = t == "counting" ? 512 : longest_split_tokens(c.task);
  c.schedule.lr = c.optim.lr;
  set_steps(c, c.steps);
  return c;
}

// ---------------------------------------------------------------- evaluation

nlohmann::json EvalResult::to_json() const {
  return {{"error", error},     {"token_error", token_error}, {"sample_error", sample_error},
          {"samples", samples}, {"tokens", tokens},           {"trimmed", trimmed}};
}

std::vector<Example> heldout_examples(const TaskConfig& split, uint64_t seed, int64_t split_index, int64_t n) {
  Generator g(stream_seed(seed, kHeldout + uint64_t(split_index)));
  return generate(*make_task(split), n, g);
}

EvalResult evaluate(nn::TransformerLM& model, const Task& task, const std::vector<Example>& data, int64_t batch,
                    const std::function<void(int64_t)>& on_batch) {
  COPPER_CHECK(!data.empty(), "evaluate", "no examples to evaluate");
  COPPER_CHECK(task.vocab_size() == model.config().vocab, "evaluate",
               "the model has a vocabulary of {} tokens but task '{}' has {}. HINT: evaluate on the task it was "
               "trained on",
               model.config().vocab, task.name(), task.vocab_size());
  COPPER_CHECK(batch >= 1, "evaluate", "batch size must be at least 1, got {}", batch);
  NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  EvalResult r;
  int64_t wrong_tokens = 0, wrong_samples = 0;
  for (size_t b = 0; b < data.size(); b += size_t(batch)) {
    const size_t e = std::min(data.size(), b + size_t(batch));
    Batch bt = make_batch(data, b, e, model.config().context);
    Tensor pred = argmax(model.forward(bt.ids), -1);  // [B, T] i64
    const auto p = pred.to_vector<int64_t>();
    const auto t = bt.targets.to_vector<int64_t>();
    const int64_t T = bt.ids.size(1);
    for (int64_t row = 0; row < int64_t(e - b); ++row) {
      bool bad = false;
      for (int64_t col = 0; col < T; ++col) {
        const size_t k = size_t(row * T + col);
        if (t[k] == train::kIgnoreIndex) continue;
        ++r.tokens;
        if (p[k] != t[k]) {
          ++wrong_tokens;
          bad = true;
        }
      }
      wrong_samples += bad;
    }
    r.trimmed += bt.trimmed;
    if (on_batch) on_batch(int64_t(e));
  }
  model.train(was_training);
  r.samples = int64_t(data.size());
  r.token_error = r.tokens ? double(wrong_tokens) / double(r.tokens) : 0;
  r.sample_error = double(wrong_samples) / double(r.samples);
  r.error = task.error_per_sample() ? r.sample_error : r.token_error;
  return r;
}

// ---------------------------------------------------------------- training

namespace {
// Mean cross-entropy over the counted positions of one batch, with the autograd graph.
// ids, targets: [B, T] i64.
Tensor loss_of(nn::TransformerLM& model, const Tensor& ids, const Tensor& targets) {
  return model.loss(ids, targets, train::kIgnoreIndex);
}

// The training batches of a task run. Generated data: cfg.batch fresh examples per step from
// the data generator, whose state is the source's state. With a fixed training set, sample k
// of the run is set[perm_e[k % N]] with e = k / N and perm_e a Fisher-Yates shuffle seeded by
// (seed, e), so the data position is a function of the step alone. A training file is read
// in order: sample k is file[k % N].
class TaskData : public train::DataSource {
 public:
  TaskData(const TrainConfig& cfg, const Task& task, int64_t context)
      : cfg_(cfg), task_(task), context_(context), gen_(stream_seed(cfg.seed, kData)) {
    if (!cfg.train_data.empty()) {
      set_ = read_examples(task, cfg.train_data);
    } else if (cfg.train_samples > 0) {
      Generator g(stream_seed(cfg.seed, kTrainSet));
      set_ = generate(task, cfg.train_samples, g);
    }
  }

  train::Batch batch(int64_t step) override {
    auto ex = examples(step);
    Batch b = make_batch(ex, 0, ex.size(), context_);
    return {b.ids, b.targets, b.ids.size(0) * b.ids.size(1)};
  }
  nlohmann::json state() const override { return nn::generator_to_json(gen_); }
  void restore(const nlohmann::json& state) override { nn::generator_from_json(gen_, state); }

 private:
  std::vector<Example> examples(int64_t step) {
    std::vector<Example> out;
    out.reserve(size_t(cfg_.batch));
    if (set_.empty()) {
      for (int64_t i = 0; i < cfg_.batch; ++i) out.push_back(task_.sample(gen_));
      return out;
    }
    const int64_t n = int64_t(set_.size());
    for (int64_t i = 0; i < cfg_.batch; ++i) {
      const int64_t k = step * cfg_.batch + i;
      if (!cfg_.train_data.empty()) {  // a training file: in order
        out.push_back(set_[size_t(k % n)]);
        continue;
      }
      const int64_t epoch = k / n;
      if (epoch != perm_epoch_) {
        perm_.resize(size_t(n));
        std::iota(perm_.begin(), perm_.end(), 0);
        Generator g(stream_seed(cfg_.seed, kEpoch) + uint64_t(epoch));
        for (int64_t j = n - 1; j > 0; --j) std::swap(perm_[size_t(j)], perm_[size_t(g.below(uint64_t(j + 1)))]);
        perm_epoch_ = epoch;
      }
      out.push_back(set_[size_t(perm_[size_t(k % n)])]);
    }
    return out;
  }

  const TrainConfig& cfg_;
  const Task& task_;
  int64_t context_;
  Generator gen_;
  std::vector<Example> set_;
  std::vector<int64_t> perm_;
  int64_t perm_epoch_ = -1;
};

train::LoopConfig loop_config(const TrainConfig& cfg) {
  train::LoopConfig l;
  l.steps = cfg.steps;
  l.seed = cfg.seed;
  l.clip = cfg.clip;
  l.log_every = cfg.log_every;
  l.checkpoint_every = cfg.checkpoint_every;
  l.eval_every = 0;  // the splits are evaluated once, after training
  l.optim = cfg.optim;
  l.schedule = cfg.schedule;
  l.dtype = cfg.dtype;
  return l;
}
}  // namespace

Tensor batch_loss(nn::TransformerLM& model, const std::vector<Example>& examples, size_t begin, size_t end,
                  int64_t* positions) {
  Batch b = make_batch(examples, begin, end, model.config().context);
  if (positions) *positions = b.ids.size(0) * b.ids.size(1);
  return loss_of(model, b.ids, b.targets);
}

nlohmann::json train_run(const TrainConfig& cfg, const std::string& out_dir, const TrainOptions& opt) {
  COPPER_CHECK(cfg.batch >= 1 && cfg.steps >= 0 && cfg.eval_samples >= 1 && cfg.eval_batch >= 1 &&
                   cfg.log_every >= 1 && cfg.checkpoint_every >= 1,
               "train",
               "need batch >= 1, steps >= 0, eval_samples >= 1, eval_batch >= 1, log_every >= 1 and "
               "checkpoint_every >= 1; got batch={} steps={} eval_samples={} eval_batch={} log_every={} "
               "checkpoint_every={}",
               cfg.batch, cfg.steps, cfg.eval_samples, cfg.eval_batch, cfg.log_every, cfg.checkpoint_every);
  cfg.schedule.validate();
  auto task = make_task(cfg.task);
  COPPER_CHECK(cfg.model.vocab == task->vocab_size(), "train", "model vocab {} but task '{}' has {} tokens",
               cfg.model.vocab, task->name(), task->vocab_size());
  nlohmann::json cfg_js = cfg.to_json();
  cfg_js["vocab"] = task->vocab();

  // Model and data, seeded from cfg.seed (the trainer seeds dropout).
  Generator init_gen(stream_seed(cfg.seed, kInit));
  nn::TransformerLM model(cfg.model, &init_gen);
  model.to(opt.device);  // before the trainer makes the optimizer, whose state lives with the parameters
  TaskData data(cfg, *task, cfg.model.context);
  train::Hooks hooks;
  hooks.loss = [&](const train::Batch& b) { return loss_of(model, b.ids, b.targets); };
  train::Trainer trainer(model, data, loop_config(cfg), std::move(hooks), cfg_js, cfg.model.to_json(), out_dir, opt);
  train::RunResult run = trainer.run();
  if (run.already_done) return run.results;
  if (!run.completed) return {{"stopped_at", run.steps}};

  // Fresh held-out data for every split.
  nlohmann::json res = {{"task", task->name()},
                        {"pe", cfg.model.pe},
                        {"preset", cfg.preset},
                        {"seed", cfg.seed},
                        {"steps", run.steps},
                        {"train_seconds", run.train_seconds},
                        {"threads", omp_get_max_threads()},
                        {"final_loss", run.final_loss}};
  nlohmann::json errors = nlohmann::json::object(), detail = nlohmann::json::object();
  auto splits = task->splits();
  train::Progress progress(opt.progress, opt.label + "evaluating ", int64_t(splits.size()) * cfg.eval_samples,
                           opt.quiet, /*every=*/0);
  for (size_t i = 0; i < splits.size(); ++i) {
    auto split_task = make_task(splits[i].second);
    auto ex = heldout_examples(splits[i].second, cfg.seed, int64_t(i), cfg.eval_samples);
    const int64_t before = int64_t(i) * cfg.eval_samples;
    EvalResult r = evaluate(model, *split_task, ex, cfg.eval_batch, [&](int64_t done) {
      trainer.check_interrupted();
      progress.update(before + done, fmt::format("samples (split '{}')", splits[i].first));
    });
    errors[splits[i].first] = r.error;
    auto d = r.to_json();
    d["task"] = splits[i].second.to_json();
    detail[splits[i].first] = d;
  }
  progress.finish("samples, all splits");
  res["error"] = errors;
  res["splits"] = detail;
  trainer.finish(res);
  return res;
}

TrainedModel load_trained(const std::string& dir) {
  const fs::path d(dir);
  const fs::path cfg_path = d / "config.json", model_path = d / "model.safetensors";
  COPPER_CHECK(fs::exists(cfg_path) && fs::exists(model_path), "task",
               "'{}' is not a trained model folder (needs config.json and model.safetensors). HINT: train one with "
               "`copper task train --out DIR`",
               dir);
  nlohmann::json js;
  try {
    js = nlohmann::json::parse(nn::read_text(cfg_path.string(), "task"));
  } catch (const nlohmann::json::exception& e) {
    COPPER_THROW("task", "'{}' is not valid JSON ({})", cfg_path.string(), e.what());
  }
  TrainedModel t;
  t.cfg = TrainConfig::from_json(js);
  t.task = make_task(t.cfg.task);
  t.model = std::make_unique<nn::TransformerLM>(t.cfg.model);
  nn::load_model_checked(model_path.string(), t.model->named_state(), t.cfg.model.to_json(), cfg_path.string());
  t.model->eval();
  return t;
}

}  // namespace copper::tasks
