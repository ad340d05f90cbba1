// cli_task.cpp — `copper task train|eval|compare|gates|data|grads`: the paper's synthetic tasks.
//
//   copper task train   --task flipflop --pe cope --preset cpu-small --seed 0 --out runs/ff-cope
//   copper task eval    --model runs/ff-cope --data ff.txt
//   copper task compare --task flipflop --pe abs,rope,cope --seeds 3 [--steps N]
//   copper task gates   --model runs/ff-cope --data ff.txt [--sample N]
//   copper task data    --task flipflop --p 0.98 --n 1000 --seed 1 --out ff_sparse.txt
//   copper task grads   --model runs/ff-cope --data ff.txt --n 8 --out grads.safetensors
//
// The work is in tasks/ (generators, trainer, comparison); this file parses flags, checks
// them, and maps failures to the exit codes of commands.h.
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include "examples/cli/commands.h"
#include "examples/cli/config_flags.h"
#include "nn/safetensors.h"
#include "tasks/compare.h"
#include "tasks/trainer.h"
#include "tensor/error.h"
#include "tensor/ops.h"

namespace copper::cli {

namespace {
// Ends with a usage error when `problem` (from out_dir_problem / out_file_problem) is set.
void check_out(const std::string& problem) {
  if (!problem.empty()) fail(kExitUsage, problem);
}

const CLI::Range kSteps(int64_t(1), int64_t(1000000000), "a step count in 1..1e9");
const CLI::Range kTrainSteps(int64_t(0), int64_t(1000000000), "a step count in 0..1e9");
const CLI::Range kCount(int64_t(1), int64_t(100000000), "a count in 1..1e8");

struct TaskFlags {
  std::string task;
  std::optional<int64_t> vars;
};

// Check the position encoding by building the model once: the model factory throws listing
// the valid names.
void check_model(const tasks::TrainConfig& cfg) {
  or_fail(kExitUsage, [&] {
    nn::TransformerLM probe(cfg.model);
    return 0;
  });
}

tasks::TaskConfig task_config(const TaskFlags& f) {
  tasks::TaskConfig t;
  t.task = f.task;
  if (f.vars) {
    if (*f.vars != 1 && *f.vars != 3 && *f.vars != 5 && f.task == "counting")
      fmt::print(stderr, "copper task: note: the paper uses 1, 3 or 5 variables; {} is allowed\n", *f.vars);
    if (*f.vars < 1 || *f.vars > 26) fail(kExitUsage, fmt::format("--vars must lie in 1..26, got {}", *f.vars));
    if (f.task != "counting") fail(kExitUsage, "--vars applies to --task counting only");
    t.vars = *f.vars;
  }
  return t;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

// Milliseconds per training step of CoPE (the slowest encoding; abs and RoPE take 60-70 %
// of it) with 2 OpenMP threads on a 2-core machine: cpu-small and demo from the comment in
// tasks::preset_config, paper from docs/RESULTS.md ("The `paper` preset"). The preset table
// of `--help` multiplies it by the preset's steps: a guide, not a promise.
struct StepCost {
  const char* preset;
  const char* task;
  double ms;
};
constexpr StepCost kCopeStepMs[] = {
    {"cpu-small", "flipflop", 212}, {"cpu-small", "selective-copy", 93}, {"cpu-small", "counting", 268},
    {"demo", "flipflop", 47},       {"demo", "selective-copy", 93},      {"demo", "counting", 268},
    {"paper", "flipflop", 2900},    {"paper", "selective-copy", 900},    {"paper", "counting", 14300},
};

std::string format_seconds(double s) {
  if (s < 90) return fmt::format("{:.0f} s", s);
  if (s < 5400) return fmt::format("{:.0f} min", s / 60);
  return fmt::format("{:.1f} h", s / 3600);
}

// Every preset of every task with its size, defaults of the override flags, steps and the
// expected time of one CoPE run on 2 cores: the footer of `copper task train --help`.
std::string preset_table() {
  std::string out =
      "Presets (--preset; the override flags above change single fields; time: one CoPE run, 2 threads on 2 cores,\n"
      "from measured ms/step):\n";
  out += fmt::format("  {:<10}{:<15}{:>8}{:>7}{:>6}{:>8}{:>6}{:>8}{:>8}{:>5}{:>7}{:>7}{:>9}\n", "preset", "task",
                     "d-model", "layers", "heads", "context", "batch", "lr", "dropout", "wd", "warmup", "steps",
                     "time");
  for (const auto& preset : tasks::preset_names())
    for (const auto& task : tasks::task_names()) {
      tasks::TaskConfig t;
      t.task = task;
      const tasks::TrainConfig c = tasks::preset_config(preset, t, "cope");
      double ms = 0;
      for (const auto& sc : kCopeStepMs)
        if (preset == sc.preset && task == sc.task) ms = sc.ms;
      out += fmt::format("  {:<10}{:<15}{:>8}{:>7}{:>6}{:>8}{:>6}{:>8.0e}{:>8}{:>5}{:>7}{:>7}{:>9}\n", preset, task,
                         c.model.d_model, c.model.n_layers, c.model.n_heads, c.model.context, c.batch, c.optim.lr,
                         c.model.dropout, c.optim.weight_decay, c.schedule.warmup, c.steps,
                         ms > 0 ? format_seconds(double(c.steps) * ms / 1000) : "?");
    }
  out += "A config.json written by a run is a valid --config file; flags given explicitly override it.\n";
  return out;
}

// A TrainConfig JSON file (--config): what `copper task train` writes as config.json, whose
// extra "vocab" list (the task's tokens) must match the task if present.
tasks::TrainConfig read_train_config(const std::string& path) {
  const nlohmann::json js = read_json_file(path, "config");
  tasks::TrainConfig c = tasks::TrainConfig::from_json(js);  // skips "vocab"
  if (js.contains("vocab")) {
    const auto task = tasks::make_task(c.task);
    COPPER_CHECK(js.at("vocab") == nlohmann::json(task->vocab()), "config",
                 "'{}': its \"vocab\" list does not match the tokens of task {} as configured. HINT: remove the "
                 "\"vocab\" key (it is written for reading, and is not needed to train)",
                 path, c.task.task);
  }
  return c;
}

void add_train(CLI::App& task) {
  auto* cmd = task.add_subcommand("train", "train a transformer on a task; writes model.safetensors, config.json, "
                                           "results.json, log.jsonl and checkpoints/ into --out (docs/outputs.md)");
  struct Opts {
    TaskFlags t;
    std::string pe, preset = "cpu-small", out, config;
    std::optional<uint64_t> seed;
    std::optional<int64_t> steps;
    Overrides ov;
    bool fresh = false, quiet = false;
    double time_budget = 0;
    std::string init, train_data, device = "cpu";
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--task", o->t.task, "flipflop, selective-copy or counting (required unless --config)")
      ->check(CLI::IsMember(tasks::task_names()));
  cmd->add_option("--vars", o->t.vars, "counting: number of variables (1, 3 or 5 in the paper; default 3)");
  cmd->add_option("--pe", o->pe, "position encoding (abs, rope, cope, ...; required unless --config)");
  auto* preset = cmd->add_option("--preset", o->preset, "size and schedule; see the table below")
                     ->check(CLI::IsMember(tasks::preset_names()))
                     ->capture_default_str();
  cmd->add_option("--config", o->config,
                  "start from this TrainConfig JSON file instead of a preset (a run's config.json is one); flags "
                  "given explicitly override it")
      ->check(CLI::ExistingFile)
      ->excludes(preset);
  cmd->add_option("--seed", o->seed, "seed of initialisation, data and dropout, 0..2^64-1 (default 0)")
      ->check(seed_check());
  cmd->add_option("--steps", o->steps, "training steps (default: the preset's; 0 writes and evaluates the initial "
                                       "model)")
      ->check(kTrainSteps);
  cmd->add_option("--out", o->out, "output folder (created; one holding this run's checkpoint resumes it)")->required();
  cmd->add_flag("--fresh", o->fresh, "start over even if --out holds a checkpoint of this run");
  cmd->add_flag("--quiet", o->quiet, "no progress lines");
  cmd->add_option("--device", o->device, kDeviceHelp)->capture_default_str();
  cmd->add_option("--time-budget", o->time_budget,
                  "train for this many seconds, the schedule following the fraction of it spent (for wall-clock "
                  "comparisons; not bit-reproducible; default 0 = off)")
      ->check(CLI::Range(0.0, 1e7));
  cmd->add_option("--init", o->init,
                  "start from these weights (a model.safetensors of the same config) instead of the seeded ones")
      ->check(CLI::ExistingFile);
  cmd->add_option("--train-data", o->train_data,
                  "train on this data file of the task, its examples in file order (wrapping around), instead of "
                  "generated ones")
      ->check(CLI::ExistingFile);
  add_override_flags(cmd, o->ov);
  cmd->footer([] { return preset_table(); });
  cmd->callback([o] {
    check_out(out_dir_problem("--out", o->out));
    const Device device = or_fail(kExitUsage, [&] { return usable_device(o->device); });
    tasks::TrainConfig cfg;
    if (!o->config.empty()) {
      if (o->t.vars) fail(kExitUsage, "--vars with --config: set \"vars\" in the file's \"task\" object instead");
      cfg = or_fail(kExitData, [&] { return read_train_config(o->config); });
      if (!o->t.task.empty() && o->t.task != cfg.task.task)
        fail(kExitUsage, fmt::format("--task {} but '{}' configures a {} run. HINT: drop --task, or use a config of "
                                     "that task",
                                     o->t.task, o->config, cfg.task.task));
      if (!o->pe.empty()) cfg.model.pe = o->pe;
    } else {
      if (o->t.task.empty() || o->pe.empty())
        fail(kExitUsage, "--task and --pe are required (or --config FILE). HINT: e.g. copper task train --task "
                         "flipflop --pe cope --out runs/ff-cope");
      cfg = or_fail(kExitUsage, [&] { return tasks::preset_config(o->preset, task_config(o->t), o->pe); });
    }
    or_fail(kExitUsage, [&] {
      if (o->steps) tasks::set_steps(cfg, *o->steps);
      if (o->seed) cfg.seed = *o->seed;
      if (!o->train_data.empty()) cfg.train_data = o->train_data;
      apply_overrides(o->ov, cfg.model, cfg.optim, cfg.schedule, cfg.batch);
      if (o->ov.dtype) cfg.dtype = *o->ov.dtype;
      return 0;
    });
    check_model(cfg);
    tasks::TrainOptions to;
    to.fresh = o->fresh;
    to.quiet = o->quiet;
    to.time_budget_s = o->time_budget;
    to.init_weights = o->init;
    to.device = device;
    auto res = or_fail(kExitData, [&] { return tasks::train_run(cfg, o->out, to); });
    fmt::print("{}\n", nlohmann::json{{"task", res["task"]}, {"pe", res["pe"]}, {"seed", res["seed"]},
                                      {"steps", res["steps"]}, {"error", res["error"]},
                                      {"train_seconds", res["train_seconds"]}, {"out", o->out}}
                           .dump());
  });
}

// A trained model folder and a data file of its task (eval and gates); bad input exits 3.
// Weights that hold NaN or Inf (a diverged run) make every prediction argmax(NaN): an error
// of 1.0 that looks like a result. Exits 3 naming the first such parameter instead.
void check_finite_weights(nn::TransformerLM& model, const std::string& dir) {
  int64_t bad = 0, total = 0;
  std::string first;
  for (auto& [name, p] : model.named_parameters()) {
    const auto v = p.to(DType::f64).contiguous().to_vector<double>();
    for (double x : v) {
      if (std::isfinite(x)) continue;
      if (bad++ == 0) first = name;
    }
    total += int64_t(v.size());
  }
  if (bad > 0)
    fail(kExitData, fmt::format("[eval] the weights in '{}' hold NaN or Inf ({} of {} values, first in '{}'): the "
                                "training diverged. HINT: train again with --fresh and a lower --lr",
                                dir, bad, total, first));
}

std::pair<tasks::TrainedModel, std::vector<tasks::Example>> load_model_and_data(const std::string& model,
                                                                              const std::string& data) {
  auto m = or_fail(kExitData, [&] { return tasks::load_trained(model); });
  check_finite_weights(*m.model, model);
  auto examples = or_fail(kExitData, [&] { return tasks::read_examples(*m.task, data); });
  return {std::move(m), std::move(examples)};
}

void add_eval(CLI::App& task) {
  auto* cmd = task.add_subcommand("eval", "error of a trained model on a data file; prints {\"task\",\"error\",\"samples\"}");
  struct Opts {
    std::string model, data;
    int64_t batch = tasks::kEvalBatch;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--model", o->model, "a folder written by `copper task train`")->required();
  cmd->add_option("--data", o->data, "a data file of the model's task")->required();
  cmd->add_option("--batch", o->batch, "evaluation batch size")->check(kCount)->capture_default_str();
  cmd->callback([o] {
    auto [m, data] = load_model_and_data(o->model, o->data);
    auto r = tasks::evaluate(*m.model, *m.task, data, o->batch);
    if (r.trimmed > 0)
      fmt::print(stderr, "copper task: note: {} of {} examples are longer than the model's context ({}) and keep their "
                         "last {} tokens\n",
                 r.trimmed, r.samples, m.model->config().context, m.model->config().context + 1);
    fmt::print("{}\n", nlohmann::json{{"task", m.task->name()}, {"error", r.error}, {"samples", r.samples}}.dump());
  });
}

void add_compare(CLI::App& task) {
  auto* cmd = task.add_subcommand("compare", "train each encoding with several seeds and print a table like the paper's");
  struct Opts {
    TaskFlags t;
    std::string pes = "abs,rope,cope", preset = "cpu-small", out;
    int seeds = 3;
    std::optional<int64_t> steps;
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--task", o->t.task, "flipflop, selective-copy or counting")
      ->required()
      ->check(CLI::IsMember(tasks::task_names()));
  cmd->add_option("--vars", o->t.vars, "counting: number of variables");
  cmd->add_option("--pe", o->pes, "comma-separated encodings")->capture_default_str();
  cmd->add_option("--seeds", o->seeds, "seeds per encoding (0..N-1)")->check(CLI::Range(1, 100))->capture_default_str();
  cmd->add_option("--steps", o->steps, "training steps (default: the preset's)")->check(kSteps);
  cmd->add_option("--preset", o->preset, "size and schedule; see the table below")
      ->check(CLI::IsMember(tasks::preset_names()))
      ->capture_default_str();
  cmd->add_option("--out", o->out, "folder for the runs (default runs/compare-<task>)");
  cmd->add_flag("--quiet", o->quiet, "no progress lines");
  cmd->footer([] { return preset_table(); });
  cmd->callback([o] {
    tasks::CompareOptions c;
    c.task = task_config(o->t);
    c.preset = o->preset;
    c.pes = split_list(o->pes);
    if (c.pes.empty()) fail(kExitUsage, "--pe needs at least one encoding, e.g. abs,rope,cope");
    c.seeds = o->seeds;
    c.steps = o->steps;
    c.quiet = o->quiet;
    c.out_dir = o->out.empty() ? "runs/compare-" + o->t.task : o->out;
    for (auto& pe : c.pes) {  // every encoding checked before hours of training
      auto cfg = or_fail(kExitUsage, [&] { return tasks::preset_config(c.preset, c.task, pe); });
      check_model(cfg);
    }
    auto cmp = or_fail(kExitData, [&] { return tasks::run_comparison(c); });
    fmt::print("{}", tasks::comparison_table(cmp));
    nn::write_text_atomic((std::filesystem::path(c.out_dir) / "comparison.json").string(), cmp.dump(2) + "\n");
  });
}

void add_gates(CLI::App& task) {
  auto* cmd = task.add_subcommand("gates", "print one sequence with each CoPE head's gates for the last query");
  struct Opts {
    std::string model, data;
    int64_t sample = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--model", o->model, "a folder written by `copper task train` (with --pe cope)")->required();
  cmd->add_option("--data", o->data, "a data file of the model's task")->required();
  cmd->add_option("--sample", o->sample, "which line of the file (0-based)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->callback([o] {
    auto [m, data] = load_model_and_data(o->model, o->data);
    if (o->sample >= int64_t(data.size()))
      fail(kExitUsage, fmt::format("--sample {} but '{}' holds {} examples", o->sample, o->data, data.size()));
    fmt::print("{}", or_fail(kExitUsage, [&] { return tasks::gates_text(*m.model, *m.task, data[size_t(o->sample)]); }));
  });
}

void add_data(CLI::App& task) {
  auto* cmd = task.add_subcommand("data", "write a data file of a task (one example per line)");
  struct Opts {
    TaskFlags t;
    std::optional<double> p;
    std::optional<int64_t> blanks, pairs, max_steps;
    int64_t n = 0;
    uint64_t seed = 0;
    std::string out;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--task", o->t.task, "flipflop, selective-copy or counting")
      ->required()
      ->check(CLI::IsMember(tasks::task_names()));
  cmd->add_option("--p", o->p, "flipflop: probability of an ignore instruction (0.8 in-dist, 0.98 sparse, 0.1 dense)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--pairs", o->pairs, "flipflop: instruction/bit pairs per sequence (default 64)")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 20));
  cmd->add_option("--blanks", o->blanks, "selective-copy: blank tokens (default 64)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd->add_option("--vars", o->t.vars, "counting: number of variables (default 3)");
  cmd->add_option("--max-steps", o->max_steps, "counting: most statements per program (default 128)")
      ->check(CLI::Range(int64_t(3), int64_t(1) << 20));
  cmd->add_option("--n", o->n, "number of examples")->required()->check(kCount);
  cmd->add_option("--seed", o->seed, "seed, 0..2^64-1")->check(seed_check())->capture_default_str();
  cmd->add_option("--out", o->out, "output file")->required();
  cmd->callback([o] {
    check_out(out_file_problem("--out", o->out));
    tasks::TaskConfig t = task_config(o->t);
    auto only = [&](bool given, const char* flag, const char* for_task) {
      if (given && t.task != for_task) fail(kExitUsage, fmt::format("{} applies to --task {} only", flag, for_task));
    };
    only(o->p.has_value(), "--p", "flipflop");
    only(o->pairs.has_value(), "--pairs", "flipflop");
    only(o->blanks.has_value(), "--blanks", "selective-copy");
    only(o->max_steps.has_value(), "--max-steps", "counting");
    if (o->p) t.p = *o->p;
    if (o->pairs) t.pairs = *o->pairs;
    if (o->blanks) t.blanks = *o->blanks;
    if (o->max_steps) t.max_steps = *o->max_steps;
    auto task_ = or_fail(kExitUsage, [&] { return tasks::make_task(t); });
    Generator g(o->seed);
    auto ex = tasks::generate(*task_, o->n, g);
    or_fail(kExitRuntime, [&] {
      tasks::write_examples(*task_, ex, o->out);
      return 0;
    });
    fmt::print(stderr, "wrote {} {} examples to {}\n", ex.size(), t.task, o->out);
  });
}
void add_grads(CLI::App& task) {
  auto* cmd = task.add_subcommand(
      "grads", "the training loss of the first --n examples of a data file as one batch, and its gradient for every "
               "parameter (safetensors, the parameters' names); for checking against another implementation");
  struct Opts {
    std::string model, data, out;
    int64_t n = 8;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--model", o->model, "a folder written by `copper task train`")->required();
  cmd->add_option("--data", o->data, "a data file of the model's task")->required();
  cmd->add_option("--n", o->n, "examples in the batch (the file's first N; default 8)")->check(kCount);
  cmd->add_option("--out", o->out, "the gradients' safetensors file")->required();
  cmd->callback([o] {
    check_out(out_file_problem("--out", o->out));
    auto [m, data] = load_model_and_data(o->model, o->data);
    if (o->n > int64_t(data.size()))
      fail(kExitUsage, fmt::format("--n {} but '{}' holds {} examples", o->n, o->data, data.size()));
    m.model->train(false);  // no dropout: the gradient of the deterministic loss
    int64_t positions = 0;
    Tensor loss = tasks::batch_loss(*m.model, data, 0, size_t(o->n), &positions);
    loss.backward();
    nn::NamedTensors grads;
    for (auto& [name, p] : m.model->named_parameters())
      grads.emplace_back(name, p.grad().defined() ? p.grad() : zeros_like(p));
    or_fail(kExitData, [&] {
      nn::save_safetensors(o->out, grads, {{"loss", fmt::format("{:.9g}", loss.item())}});
      return 0;
    });
    fmt::print("{}\n", nlohmann::json{{"loss", loss.item()}, {"examples", o->n}, {"positions", positions},
                                      {"out", o->out}}
                           .dump());
  });
}
}  // namespace

void add_task(CLI::App& app) {
  auto* task = app.add_subcommand("task", "the paper's tasks: Flip-Flop, selective copy, counting");
  task->require_subcommand(1);
  add_train(*task);
  add_eval(*task);
  add_compare(*task);
  add_gates(*task);
  add_data(*task);
  add_grads(*task);
}

}  // namespace copper::cli

