// trainer.h — training and evaluating a TransformerLM on one of the paper's tasks.
//
// A run is fully described by a TrainConfig (task, model, optimizer, schedule, batch,
// steps, seed). It repeats bit for bit on the CPU at the same thread count: the model is
// initialised from Generator(seed), training data comes from its own generator (or a
// fixed training set visited in seeded epoch orders), dropout from the thread's default
// generator seeded with the seed, and all three states go into each checkpoint. A run
// killed at any moment and started again with the same command continues from its last
// checkpoint and ends with the same parameters as an uninterrupted one.
//
// Output folder:
//   model.safetensors   final weights, model config in the metadata
//   config.json         the TrainConfig (task, model, optimizer, ...), with the vocabulary
//   results.json        error on fresh held-out data, in-distribution and each OOD split
//   log.jsonl           one line per logged step: step, loss, lr, tokens/s, elapsed
//   checkpoints/        the latest training checkpoint (see nn/checkpoint.h)
// The loop, checkpoints, resume and the rules for a folder that already holds a run (a
// finished run is never overwritten in place) are train::Trainer's (train/trainer.h).
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/optim.h"
#include "nn/schedule.h"
#include "nn/transformer.h"
#include "tasks/task.h"
#include "train/trainer.h"

namespace copper::tasks {

// Evaluation batch size. As small as a training batch on purpose: evaluation then reuses the
// blocks the training steps left in the allocator's cache, where 100 sequences of 512 tokens
// needed about 2 GB of fresh pages, whose first touch cost a 2-core VM 4.6 s of kernel time
// per counting run (docs/PERF.md, "Evaluation batch size").
inline constexpr int64_t kEvalBatch = 32;

struct TrainConfig {
  std::string preset;          // where the values came from ("cpu-small", "paper", "demo", "custom")
  TaskConfig task;
  nn::TransformerConfig model;  // vocab and context are set from the task by the presets
  nn::OptimConfig optim;
  nn::Schedule schedule;
  int64_t batch = 32;
  int64_t steps = 1000;
  uint64_t seed = 0;
  double clip = 1.0;            // max global gradient norm (0: no clipping)
  int64_t train_samples = 0;    // 0: a fresh example every time; N: a fixed set of N, in epochs
  // A data file of the task to train on instead (`copper task train --train-data`): its
  // examples in file order, batch after batch, from the top again when it runs out — so
  // that another implementation can be fed exactly the same batches. Overrides train_samples.
  std::string train_data;
  int64_t eval_samples = 1000;  // per split
  int64_t eval_batch = kEvalBatch;
  int64_t checkpoint_every = 100;
  int64_t log_every = 25;
  std::string dtype = "f32";    // precision of the matrix products: f32 or bf16 (train::LoopConfig::dtype)

  template <class Self, class Visit>
  static void fields(Self& c, Visit&& visit) {  // the one list of fields (nn/config.h)
    visit("preset", c.preset, "where the values came from");
    visit("task", c.task, "the task and its parameters");
    visit("model", c.model, "");
    visit("optim", c.optim, "");
    visit("schedule", c.schedule, "");
    visit("batch", c.batch, "sequences per training step");
    visit("steps", c.steps, "training steps");
    visit("seed", c.seed, "seed of initialisation, data and dropout");
    visit("clip", c.clip, "max global gradient norm (0: off)");
    visit("train_samples", c.train_samples, "0: fresh examples; N: a fixed set of N");
    visit("train_data", c.train_data, "a data file of the task to train on instead");
    visit("eval_samples", c.eval_samples, "held-out examples per split");
    visit("eval_batch", c.eval_batch, "sequences per evaluation batch");
    visit("checkpoint_every", c.checkpoint_every, "steps between checkpoints");
    visit("log_every", c.log_every, "steps between log lines");
    visit("dtype", c.dtype, "precision of the matrix products: f32, or bf16 (mixed precision, f32 weights)");
  }
  nlohmann::json to_json() const;
  // Keys missing from js keep their defaults (preset: "custom"); 'task' and 'model' are
  // required; a run's extra "vocab" list is skipped; an unknown key or a value of the wrong
  // type is an error naming it.
  static TrainConfig from_json(const nlohmann::json& js);
};

// Presets: "cpu-small", "paper", "demo" (a shorter Flip-Flop for `copper demo`).
// Throws listing the valid names. `pe` is the position encoding name.
TrainConfig preset_config(const std::string& preset, const TaskConfig& task, const std::string& pe);
const std::vector<std::string>& preset_names();
// Set the step count; the schedule (total, warmup) and the checkpoint and log intervals
// follow. preset_config ends with it; `--steps` overrides apply it again.
void set_steps(TrainConfig& cfg, int64_t steps);
// The longest example of any evaluation split: what the context must cover.
int64_t longest_split_tokens(const TaskConfig& task);

struct EvalResult {
  double error = 0;         // the task's error: per sample (selective copy, counting) or per token (Flip-Flop)
  double token_error = 0;   // wrong counted tokens / counted tokens
  double sample_error = 0;  // samples with any wrong counted token / samples
  int64_t samples = 0, tokens = 0, trimmed = 0;
  nlohmann::json to_json() const;
};
// Greedy (argmax) predictions under teacher forcing. For selective copy a sample is right
// exactly when greedy decoding would reproduce every output token.
// on_batch, when given, is called after each batch with the number of examples done.
EvalResult evaluate(nn::TransformerLM& model, const Task& task, const std::vector<Example>& data, int64_t batch,
                    const std::function<void(int64_t)>& on_batch = {});
// Held-out examples of one split, from a generator no training stream uses.
std::vector<Example> heldout_examples(const TaskConfig& split, uint64_t seed, int64_t split_index, int64_t n);

// The training loss of examples[begin, end) as one batch: the mean cross-entropy over the
// counted positions (the task's mask), with the autograd graph. train_run and
// `copper task grads` both use it. `positions`, when given, receives B * T of the batch.
Tensor batch_loss(nn::TransformerLM& model, const std::vector<Example>& examples, size_t begin, size_t end,
                  int64_t* positions = nullptr);

// How a run treats its output folder (a finished run, --fresh, resume), signals, progress
// and the device: the shared trainer's options (train/trainer.h), passed through unchanged.
using TrainOptions = train::RunOptions;
// Train (or resume) into out_dir, evaluate every split, write the outputs; returns results.json
// (a finished run of the same config: its results, untouched; stopped by stop_after:
// {"stopped_at": step}). Throws train::Interrupted after SIGINT/SIGTERM, with a checkpoint.
nlohmann::json train_run(const TrainConfig& cfg, const std::string& out_dir, const TrainOptions& opt = {});

// A trained model folder loaded back: config.json + model.safetensors.
struct TrainedModel {
  TrainConfig cfg;
  std::unique_ptr<Task> task;
  std::unique_ptr<nn::TransformerLM> model;
};
TrainedModel load_trained(const std::string& dir);

}  // namespace copper::tasks
