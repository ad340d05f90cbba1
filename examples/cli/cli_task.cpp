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
#include <filesystem>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include "examples/cli/commands.h"
#include "nn/safetensors.h"
#include "tasks/compare.h"
#include "tasks/trainer.h"
#include "tensor/error.h"
#include "tensor/ops.h"

namespace copper::cli {

namespace {
// End the command with `code`: main() prints the message and returns the code. The
// library throws copper::Error; only this command-line front end decides on exit codes.
[[noreturn]] void fail(int code, const std::string& msg) {
  std::fflush(stdout);
  throw ExitError(code, msg);
}

// Run f; a copper::Error becomes `code`.
template <class F>
auto or_fail(int code, F&& f) {
  try {
    return f();
  } catch (const Error& e) {
    fail(code, e.what());
  }
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

void add_train(CLI::App& task) {
  auto* cmd = task.add_subcommand("train", "train a transformer on a task; writes model.safetensors, config.json, "
                                           "results.json into --out");
  struct Opts {
    TaskFlags t;
    std::string pe, preset = "cpu-small", out;
    uint64_t seed = 0;
    std::optional<int64_t> steps;
    bool fresh = false, quiet = false;
    double time_budget = 0;
    std::string init, train_data;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--task", o->t.task, "flipflop, selective-copy or counting")
      ->required()
      ->check(CLI::IsMember(tasks::task_names()));
  cmd->add_option("--vars", o->t.vars, "counting: number of variables (1, 3 or 5 in the paper)");
  cmd->add_option("--pe", o->pe, "position encoding (abs, rope, cope, ...)")->required();
  cmd->add_option("--preset", o->preset, "cpu-small (default) or paper")->check(CLI::IsMember(tasks::preset_names()));
  cmd->add_option("--seed", o->seed, "seed of initialisation, data and dropout");
  cmd->add_option("--steps", o->steps, "training steps (default: the preset's; 0 writes and evaluates the initial "
                                       "model)")
      ->check(kTrainSteps);
  cmd->add_option("--out", o->out, "output folder")->required();
  cmd->add_flag("--fresh", o->fresh, "start over even if --out holds a checkpoint of this run");
  cmd->add_flag("--quiet", o->quiet, "no progress lines");
  cmd->add_option("--time-budget", o->time_budget,
                  "train for this many seconds, the schedule following the fraction of it spent (for wall-clock "
                  "comparisons; not bit-reproducible)")
      ->check(CLI::Range(0.0, 1e7));
  cmd->add_option("--init", o->init,
                  "start from these weights (a model.safetensors of the same config) instead of the seeded ones")
      ->check(CLI::ExistingFile);
  cmd->add_option("--train-data", o->train_data,
                  "train on this data file of the task, its examples in file order (wrapping around), instead of "
                  "generated ones")
      ->check(CLI::ExistingFile);
  cmd->callback([o] {
    tasks::TrainConfig cfg = or_fail(kExitUsage, [&] {
      auto c = tasks::preset_config(o->preset, task_config(o->t), o->pe);
      if (o->steps) tasks::set_steps(c, *o->steps);
      c.seed = o->seed;
      c.train_data = o->train_data;
      return c;
    });
    check_model(cfg);
    tasks::TrainOptions to;
    to.fresh = o->fresh;
    to.quiet = o->quiet;
    to.time_budget_s = o->time_budget;
    to.init_weights = o->init;
    auto res = or_fail(kExitData, [&] { return tasks::train_run(cfg, o->out, to); });
    fmt::print("{}\n", nlohmann::json{{"task", res["task"]}, {"pe", res["pe"]}, {"seed", res["seed"]},
                                      {"steps", res["steps"]}, {"error", res["error"]},
                                      {"train_seconds", res["train_seconds"]}, {"out", o->out}}
                           .dump());
  });
}

// A trained model folder and a data file of its task (eval and gates); bad input exits 3.
std::pair<tasks::TrainedModel, std::vector<tasks::Example>> load_model_and_data(const std::string& model,
                                                                              const std::string& data) {
  auto m = or_fail(kExitData, [&] { return tasks::load_trained(model); });
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
  cmd->add_option("--batch", o->batch, "evaluation batch size")->check(kCount);
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
  cmd->add_option("--pe", o->pes, "comma-separated encodings (default abs,rope,cope)");
  cmd->add_option("--seeds", o->seeds, "seeds per encoding (0..N-1)")->check(CLI::Range(1, 100));
  cmd->add_option("--steps", o->steps, "training steps (default: the preset's)")->check(kSteps);
  cmd->add_option("--preset", o->preset, "cpu-small (default) or paper")->check(CLI::IsMember(tasks::preset_names()));
  cmd->add_option("--out", o->out, "folder for the runs (default runs/compare-<task>)");
  cmd->add_flag("--quiet", o->quiet, "no progress lines");
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
  cmd->add_option("--sample", o->sample, "which line of the file (0-based)")->check(CLI::NonNegativeNumber);
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
  cmd->add_option("--seed", o->seed, "seed");
  cmd->add_option("--out", o->out, "output file")->required();
  cmd->callback([o] {
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

