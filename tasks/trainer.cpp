// trainer.cpp — presets, the training loop, checkpoints/resume and held-out evaluation.
#include "tasks/trainer.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>

#include "autograd/grad_mode.h"
#include "nn/checkpoint.h"
#include "tensor/ops.h"

namespace copper::tasks {

namespace fs = std::filesystem;

namespace {
// Independent, reproducible random streams of one run (Generator seeds through splitmix64).
enum Stream : uint64_t { kInit = 1, kData = 2, kTrainSet = 3, kEpoch = 4, kDropout = 5, kHeldout = 100 };
uint64_t stream_seed(uint64_t seed, uint64_t stream) {
  return seed * 0x9E3779B97F4A7C15ull ^ (stream + 1) * 0xBF58476D1CE4E5B9ull;
}

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = int64_t(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t / 60) % 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

nn::NamedTensors state_of(nn::TransformerLM& model) {
  nn::NamedTensors out;
  for (auto& [name, t] : model.state_dict()) out.emplace_back(name, t);
  return out;
}
}  // namespace

// ---------------------------------------------------------------- configs and presets

nlohmann::json TrainConfig::to_json() const {
  return {{"preset", preset},
          {"task", task.to_json()},
          {"model", model.to_json()},
          {"optim", optim.to_json()},
          {"schedule", schedule.to_json()},
          {"batch", batch},
          {"steps", steps},
          {"seed", seed},
          {"clip", clip},
          {"train_samples", train_samples},
          {"train_data", train_data},
          {"eval_samples", eval_samples},
          {"eval_batch", eval_batch},
          {"checkpoint_every", checkpoint_every},
          {"log_every", log_every}};
}

TrainConfig TrainConfig::from_json(const nlohmann::json& js) {
  COPPER_CHECK(js.is_object() && js.contains("task") && js.contains("model"), "task",
               "config needs 'task' and 'model' objects");
  TrainConfig c;
  try {
    c.preset = js.value("preset", std::string("custom"));
    c.task = TaskConfig::from_json(js.at("task"));
    c.model = nn::TransformerConfig::from_json(js.at("model"));
    c.optim = nn::OptimConfig::from_json(js.value("optim", nlohmann::json::object()));
    c.schedule = nn::Schedule::from_json(js.value("schedule", nlohmann::json::object()));
    c.batch = js.value("batch", c.batch);
    c.steps = js.value("steps", c.steps);
    c.seed = js.value("seed", c.seed);
    c.clip = js.value("clip", c.clip);
    c.train_samples = js.value("train_samples", c.train_samples);
    c.train_data = js.value("train_data", c.train_data);
    c.eval_samples = js.value("eval_samples", c.eval_samples);
    c.eval_batch = js.value("eval_batch", c.eval_batch);
    c.checkpoint_every = js.value("checkpoint_every", c.checkpoint_every);
    c.log_every = js.value("log_every", c.log_every);
  } catch (const nlohmann::json::exception& e) {
    COPPER_THROW("task", "config has a field of the wrong type: {}", e.what());
  }
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
    // Step counts: the slowest encoding (CoPE) fits in 10 minutes on 2 cores with room for
    // evaluation and a busy machine. Measured with 2 OpenMP threads on the shared machine
    // (load average ~2), ms/step for cope / rope / abs over 30 steps:
    //   flipflop 212 / 136 / 119, selective-copy 93 / 65 / 58, counting 268 / 149 / 129,
    //   demo (32 pairs) 47 / 37 / 33.
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

EvalResult evaluate(nn::TransformerLM& model, const Task& task, const std::vector<Example>& data, int64_t batch) {
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
        if (t[k] == -100) continue;
        ++r.tokens;
        if (p[k] != t[k]) {
          ++wrong_tokens;
          bad = true;
        }
      }
      wrong_samples += bad;
    }
    r.trimmed += bt.trimmed;
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
// The training examples of one step. With a fixed training set, sample k of the run is
// set[perm_e[k % N]] with e = k / N and perm_e a Fisher-Yates shuffle seeded by (seed, e),
// so the data position is a function of the step alone. A training file is read in order:
// sample k is file[k % N].
class DataStream {
 public:
  DataStream(const TrainConfig& cfg, const Task& task) : cfg_(cfg), task_(task), gen_(stream_seed(cfg.seed, kData)) {
    if (!cfg.train_data.empty()) {
      set_ = read_examples(task, cfg.train_data);
    } else if (cfg.train_samples > 0) {
      Generator g(stream_seed(cfg.seed, kTrainSet));
      set_ = generate(task, cfg.train_samples, g);
    }
  }
  std::vector<Example> batch(int64_t step) {
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
  Generator& generator() { return gen_; }

 private:
  const TrainConfig& cfg_;
  const Task& task_;
  Generator gen_;
  std::vector<Example> set_;
  std::vector<int64_t> perm_;
  int64_t perm_epoch_ = -1;
};

// Keep the log lines of steps <= `step` (the ones a resumed run will not write again).
void truncate_log(const fs::path& log, int64_t step) {
  if (!fs::exists(log)) return;
  std::ifstream in(log);
  std::string kept, line;
  while (std::getline(in, line)) {
    try {
      auto js = nlohmann::json::parse(line);
      if (js.value("step", int64_t(0)) <= step) kept += line + "\n";
    } catch (const nlohmann::json::exception&) {
      // a half-written last line from a killed run: dropped
    }
  }
  nn::write_text_atomic(log.string(), kept);
}
}  // namespace

Tensor batch_loss(nn::TransformerLM& model, const std::vector<Example>& examples, size_t begin, size_t end,
                  int64_t* positions) {
  const auto& mc = model.config();
  Batch b = make_batch(examples, begin, end, mc.context);
  Tensor logits = model.forward(b.ids);  // [B, T, V]
  const int64_t B = b.ids.size(0), T = b.ids.size(1);
  if (positions) *positions = B * T;
  return cross_entropy(logits.reshape({B * T, mc.vocab}), b.targets.reshape({B * T}), -100);
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
  const fs::path dir(out_dir);
  fs::create_directories(dir);
  const nlohmann::json cfg_js = cfg.to_json();
  const int threads = omp_get_max_threads();

  // Model, optimizer, data: everything seeded from cfg.seed.
  Generator init_gen(stream_seed(cfg.seed, kInit));
  nn::TransformerLM model(cfg.model, &init_gen);
  model.train(true);
  auto params = model.named_parameters();
  auto optim = nn::make_optimizer(cfg.optim, params);
  DataStream data(cfg, *task);
  manual_seed(stream_seed(cfg.seed, kDropout));

  int64_t start = 0;
  double prior_s = 0;  // training seconds before this process (a resumed time-budget run)
  const fs::path ckpt_dir = dir / "checkpoints";
  const fs::path log_path = dir / "log.jsonl";
  if (opt.fresh) {
    fs::remove_all(ckpt_dir);
    fs::remove(log_path);
  } else if (auto latest = nn::latest_checkpoint(ckpt_dir.string())) {
    auto st = nn::load_training_checkpoint(*latest, state_of(model), cfg_js, *optim);
    start = st.at("step").get<int64_t>();
    prior_s = st.value("elapsed_s", 0.0);
    nn::generator_from_json(data.generator(), st.at("data_rng"));
    nn::generator_from_json(default_generator(), st.at("dropout_rng"));
    const int saved_threads = st.value("threads", threads);
    if (!opt.quiet)
      fmt::print(opt.progress, "{}resuming from {} (step {}/{}){}\n", opt.label, *latest, start, cfg.steps,
                 saved_threads != threads
                     ? fmt::format("; note: saved with {} threads, now {}: not bit-identical", saved_threads, threads)
                     : "");
    truncate_log(log_path, start);
  } else {
    fs::remove(log_path);
  }
  if (start == 0 && !opt.init_weights.empty()) {  // a new run from given weights (a resumed one has its own)
    nn::LoadedModel init = nn::load_model(opt.init_weights);
    nn::copy_weights_into(opt.init_weights, init.weights, state_of(model), true);
  }
  nn::write_text_atomic((dir / "config.json").string(), [&] {
    auto js = cfg_js;
    js["vocab"] = task->vocab();
    return js.dump(2) + "\n";
  }());

  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(clock::now() - t0).count(); };
  auto save_ckpt = [&](int64_t step) {
    nlohmann::json st = {{"step", step},
                         {"elapsed_s", prior_s + seconds()},
                         {"data_rng", nn::generator_to_json(data.generator())},
                         {"dropout_rng", nn::generator_to_json(default_generator())},
                         {"threads", threads}};
    nn::save_training_checkpoint(ckpt_dir.string(), step, state_of(model), cfg_js, *optim, st);
  };

  double loss_sum = 0, last_loss = NAN;
  int64_t loss_n = 0, tokens = 0;
  std::FILE* log = std::fopen(log_path.string().c_str(), "a");
  COPPER_CHECK(log != nullptr, "train", "cannot open '{}' for appending", log_path.string());
  // With a time budget the run ends when the budget is spent and the schedule follows the
  // fraction of the budget used so far, so it always reaches its end whatever the speed.
  const bool timed = opt.time_budget_s > 0;
  int64_t steps = !timed ? cfg.steps : prior_s < opt.time_budget_s ? std::numeric_limits<int64_t>::max() : start;
  try {
    for (int64_t step = start; step < steps; ++step) {
      optim->set_lr(timed ? cfg.schedule.lr_at_fraction((prior_s + seconds()) / opt.time_budget_s)
                          : cfg.schedule.lr_at(step));
      auto examples = data.batch(step);
      int64_t positions = 0;
      Tensor loss = batch_loss(model, examples, 0, examples.size(), &positions);
      optim->zero_grad();
      loss.backward();
      if (cfg.clip > 0) nn::clip_grad_norm(params, cfg.clip);
      optim->step();
      const double lv = loss.item();
      loss_sum += lv;
      ++loss_n;
      tokens += positions;
      const int64_t done = step + 1;
      if (timed && prior_s + seconds() >= opt.time_budget_s) steps = done;  // out of time: the last step
      if (done % cfg.log_every == 0 || done == steps) {
        const double el = seconds();
        last_loss = loss_sum / double(loss_n);
        const double tps = double(tokens) / std::max(el, 1e-9);
        const double eta = timed ? std::max(0.0, opt.time_budget_s - prior_s - el)
                                 : el / double(done - start) * double(steps - done);
        fmt::print(log, "{}\n",
                   nlohmann::json{{"step", done}, {"loss", last_loss}, {"lr", optim->lr()}, {"tokens_per_s", tps},
                                  {"elapsed_s", el}}
                       .dump());
        std::fflush(log);
        if (!opt.quiet)
          fmt::print(opt.progress, "{}step {:>6}/{}  loss {:.4f}  lr {:.2e}  {:.0f} tok/s  {:.1f} ms/step  ETA {}\n",
                     opt.label, done, timed ? fmt::format("{:.0f} s", opt.time_budget_s) : fmt::format("{}", steps),
                     last_loss, optim->lr(), tps, 1000 * el / double(done - start),
                     fmt_duration(eta));
        loss_sum = 0;
        loss_n = 0;
      }
      if (done % cfg.checkpoint_every == 0 || done == steps) save_ckpt(done);
      if (done == opt.stop_after) {
        std::fclose(log);
        return {{"stopped_at", done}};
      }
    }
  } catch (...) {
    std::fclose(log);
    throw;
  }
  std::fclose(log);
  const double train_s = prior_s + seconds();

  nn::save_model((dir / "model.safetensors").string(), state_of(model), cfg.model.to_json());

  // Fresh held-out data for every split.
  nlohmann::json res = {{"task", task->name()},   {"pe", cfg.model.pe}, {"preset", cfg.preset},
                        {"seed", cfg.seed},       {"steps", steps},     {"train_seconds", train_s},
                        {"threads", threads},     {"final_loss", last_loss}};
  nlohmann::json errors = nlohmann::json::object(), detail = nlohmann::json::object();
  auto splits = task->splits();
  for (size_t i = 0; i < splits.size(); ++i) {
    auto split_task = make_task(splits[i].second);
    auto ex = heldout_examples(splits[i].second, cfg.seed, int64_t(i), cfg.eval_samples);
    EvalResult r = evaluate(model, *split_task, ex, cfg.eval_batch);
    errors[splits[i].first] = r.error;
    auto d = r.to_json();
    d["task"] = splits[i].second.to_json();
    detail[splits[i].first] = d;
  }
  res["error"] = errors;
  res["splits"] = detail;
  nn::write_text_atomic((dir / "results.json").string(), res.dump(2) + "\n");
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
  nn::LoadedModel lm = nn::load_model(model_path.string());
  if (!lm.config.is_null()) {
    auto diff = nn::config_differences(lm.config, t.cfg.model.to_json());
    COPPER_CHECK(diff.empty(), "task", "'{}' holds a model of another config than '{}' ({}...)", model_path.string(),
                 cfg_path.string(), diff[0]);
  }
  t.model = std::make_unique<nn::TransformerLM>(t.cfg.model);
  nn::copy_weights_into(model_path.string(), lm.weights, state_of(*t.model), true);
  t.model->eval();
  return t;
}

}  // namespace copper::tasks
