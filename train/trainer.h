// trainer.h — the one training loop of copper: the synthetic tasks (tasks/) and the language
// models (lm/) each bring only their data and presets.
//
// The loop: for each step, the learning rate from the schedule, a batch from the DataSource,
// the loss, backward, gradient clipping, the optimizer step; every log_every steps a JSONL
// log line and a progress line (tokens/s, loss, ETA); every eval_every steps the caller's
// evaluation (validation loss for the LM), whose best value keeps a "best" model; every
// checkpoint_every steps, at the end, and on SIGINT/SIGTERM, an atomic checkpoint.
//
// Exact resume: everything that moves during a run is in the checkpoint — weights, the
// optimizer's moments and step, the data source's position (DataSource::state), the dropout
// generator and the elapsed time — so a run killed at any moment and started again with the
// same command ends with the same parameters as an uninterrupted one (at the same thread
// count: reductions split differently over 1 and 2 threads round differently).
//
// Data parallel: started by mpirun or srun with N ranks (dist/comm.h), every rank draws the
// same global batch and trains on its rows [r*B/N, (r+1)*B/N); the gradients are averaged
// over ranks during the backward pass (train/grad_sync.h), so each rank takes the same
// optimizer step and N ranks of B/N rows equal one process of B rows up to the order of the
// sums. Rank 0 owns the output folder (log, checkpoints, results, progress); the checkpoint
// does not depend on N, so a run saved with N ranks resumes with M. docs/08-data-parallel.md.
//
// Output folder (RunDir) of a run:
//   config.json          what the caller passed as `config` (the whole run, JSON)
//   log.jsonl            one line per logged step: step, loss (mean since the last line), lr,
//                        tokens (all so far), tokens_per_s, elapsed_s (across resumes); and one
//                        line per evaluation: step, "eval": {...}
//   checkpoints/         the latest training checkpoint (nn/checkpoint.h), and with evaluation
//                        best/: model.safetensors and eval.json (its metrics and step) of the
//                        lowest evaluation "loss" so far
//   model.safetensors    the final weights, written by finish() with the model config in its metadata
//   results.json         written by the caller through finish(); its presence marks the run complete
#pragma once
#include <cstdint>
#include <cstdio>
#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "nn/module.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "tensor/random.h"

namespace copper::train {

// The targets value that the loss ignores (padding, the prompt part of a task example).
inline constexpr int64_t kIgnoreIndex = -100;

// Independent, reproducible random streams of one run: Generator(stream_seed(seed, stream)).
// The trainer seeds the dropout generator (default_generator()) from kDropoutStream; callers
// pick their own stream numbers for initialisation and data (tasks: 1-4 and 100+).
inline constexpr uint64_t kDropoutStream = 5;
inline uint64_t stream_seed(uint64_t seed, uint64_t stream) {
  return seed * 0x9E3779B97F4A7C15ull ^ (stream + 1) * 0xBF58476D1CE4E5B9ull;
}

// One training batch: token ids and next-token targets, both (B, T) i64 (kIgnoreIndex where
// no loss is counted). `tokens` is the number of positions the step processes (B * T), the
// throughput the log and the progress line report.
struct Batch {
  Tensor ids, targets;
  int64_t tokens = 0;
};

// Where training batches come from. A source yields the batch of a given step and can save
// and restore its position, so a resumed run sees the same batches as an uninterrupted one.
class DataSource {
 public:
  virtual ~DataSource() = default;
  // The batch of 0-based step `step`. Steps are asked for in order, starting at the first
  // step of this process (0, or the step a resumed run continues from).
  virtual Batch batch(int64_t step) = 0;
  // What restore() needs to continue exactly (RNG states, offsets), as JSON.
  virtual nlohmann::json state() const = 0;
  virtual void restore(const nlohmann::json& state) = 0;
};

// The settings of the loop itself (the model and optimizer configs live with their classes).
struct LoopConfig {
  int64_t steps = 1000;
  uint64_t seed = 0;             // the dropout generator is seeded from it
  double clip = 1.0;             // max global gradient norm (0: no clipping)
  int64_t log_every = 25;
  int64_t checkpoint_every = 100;
  int64_t eval_every = 0;        // 0: no periodic evaluation
  // Precision of the matrix products: "f32", or "bf16" (mixed precision, tensor/autocast.h:
  // products of bf16-rounded operands summed in f32; weights, optimizer state, norms, softmax,
  // the loss and CoPE's positions stay f32). The loss, its backward and the periodic
  // evaluation run under it.
  std::string dtype = "f32";
  nn::OptimConfig optim;
  nn::Schedule schedule;

  template <class Self, class Visit>
  static void fields(Self& c, Visit&& visit) {  // the one list of fields (nn/config.h)
    visit("steps", c.steps, "training steps");
    visit("seed", c.seed, "seed of the run's random streams");
    visit("clip", c.clip, "max global gradient norm (0: off)");
    visit("log_every", c.log_every, "steps between log lines");
    visit("checkpoint_every", c.checkpoint_every, "steps between checkpoints");
    visit("eval_every", c.eval_every, "steps between evaluations (0: none)");
    visit("dtype", c.dtype, "precision of the matrix products: f32, or bf16 (mixed precision, f32 weights)");
    visit("optim", c.optim, "");
    visit("schedule", c.schedule, "");
  }
  nlohmann::json to_json() const;
  static LoopConfig from_json(const nlohmann::json& js);
  void validate() const;  // throws copper::Error naming the bad field
};

struct RunOptions {
  bool fresh = false;             // start over even if the folder holds a run (old outputs stay until replaced)
  bool quiet = false;             // no progress lines
  std::FILE* progress = stderr;   // where progress lines go (a terminal gets one line redrawn in place)
  std::string label;              // printed in front of progress lines ("run 2/9 ")
  int64_t stop_after = -1;        // tests: return after this step as if killed there (no checkpoint of it)
  std::string init_weights;       // a new run starts from these weights (safetensors); ignored on resume
  double time_budget_s = 0;       // train for this many seconds (across resumes); schedule by fraction
  // Where the model trains: the caller moves it there (Module::to) before making the Trainer.
  // Not part of the run's config: a run may resume on another device (checkpoints hold host
  // copies), though its numbers then differ from an uninterrupted run's in the last bits.
  Device device = kCPU;
  // Printed on interruption: how to continue. Empty: this process's own command line
  // (/proc/self/cmdline) without --fresh.
  std::string resume_command;
};

// What the loop asks of its caller.
struct Hooks {
  // Loss of a batch with its autograd graph (a scalar). Required. With several ranks each
  // rank passes its own rows of the batch; the loss must then be the mean over the rows'
  // counted targets (targets != kIgnoreIndex), as cross_entropy with that ignore index is,
  // for the ranks' average to equal the whole batch's loss and gradient.
  std::function<Tensor(const Batch&)> loss;
  // Periodic evaluation (eval_every, and after the last step): metrics as JSON, with "loss"
  // the value a lower of which is better (the best checkpoint follows it). Optional. It must
  // not draw from default_generator() (the dropout stream), or a resumed run would differ.
  std::function<nlohmann::json()> evaluate;
};

struct RunResult {
  bool completed = false;      // the loop reached its last step (false: stopped by stop_after)
  bool already_done = false;   // the folder held a finished run of this config: nothing was done
  int64_t steps = 0;           // steps done in total
  double train_seconds = 0;    // across resumes
  double final_loss = NAN;     // mean loss of the last logged interval
  nlohmann::json best_eval;    // the best evaluation seen (null without evaluation)
  nlohmann::json last_eval;    // the evaluation after the last step, when this process made it (else null)
  nlohmann::json results;      // results.json of an already finished run
};

// Thrown when SIGINT or SIGTERM stopped a run after it wrote a checkpoint; the command line
// turns it into exit code 128 + signal (130, 143).
struct Interrupted : std::exception {
  int signal;
  std::string message;
  Interrupted(int sig, std::string msg) : signal(sig), message(std::move(msg)) {}
  const char* what() const noexcept override { return message.c_str(); }
};

// One run in one output folder DIR. The folder is never left half old and half new:
//   - DIR holds a finished run (results.json) of the same config: run() changes nothing and
//     returns already_done with its results.
//   - DIR holds a finished run and --fresh: the new run trains in the sibling DIR.next; the
//     old outputs stay untouched until finish() swaps the two (DIR -> DIR.old, DIR.next ->
//     DIR, DIR.old removed; an interrupted swap is completed by the next run()). An
//     interrupted DIR.next run resumes when the same command is given without --fresh.
//   - DIR holds a finished run of another config, without --fresh: refused.
//   - DIR holds an unfinished run (checkpoints only): resumed (its config must match), or
//     with --fresh its checkpoints and log are cleared (nothing complete to protect).
class Trainer {
 public:
  // `config` is the caller's whole run config (written as config.json, compared on resume);
  // `model_config` goes into the safetensors metadata of the saved models.
  Trainer(nn::Module& model, DataSource& data, const LoopConfig& loop, Hooks hooks, nlohmann::json config,
          nlohmann::json model_config, std::string out_dir, RunOptions opt = {});
  ~Trainer();

  // Train (or resume, or find the run already finished). Throws Interrupted on a signal.
  // SIGINT/SIGTERM stay caught after a completed run until finish() (or the Trainer's end):
  // the caller's evaluation calls check_interrupted() between its batches.
  RunResult run();
  // After a completed run(): throws Interrupted if a signal came since (the final
  // checkpoint holds the trained model; running the command again only evaluates).
  void check_interrupted() const;
  // Write results.json (plus model.safetensors) and publish the folder: what makes a run
  // complete. Call once after run() returned completed and the caller evaluated.
  void finish(const nlohmann::json& results);

  // Where the run is writing now (out_dir, or its staging sibling).
  const std::string& work_dir() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Progress on a terminal: one line redrawn in place (\r); elsewhere a line every `every`
// calls (0: only the final line) and at the end, so that logs stay short. Evaluations use
// it too. `first` is where counting starts (a resumed run): the ETA is measured from there.
// total <= 0: unknown (no count after the slash; the ETA must be given to update()).
class Progress {
 public:
  Progress(std::FILE* out, std::string label, int64_t total, bool quiet = false, int64_t every = 1,
           int64_t first = 0);
  // "label 12/40  detail  ETA 1m02s"; eta_s < 0: estimated from the rate since `first`.
  void update(int64_t done, const std::string& detail = "", double eta_s = -1);
  // The last line, with the time taken instead of the ETA (on a terminal it ends the
  // redrawn line; elsewhere it is printed unless the last update was). Empty detail: the
  // last update's; nothing when there was no update and no detail.
  void finish(const std::string& detail = "");
  static bool is_terminal(std::FILE* f);

 private:
  std::string line(int64_t done, const std::string& detail, const std::string& tail) const;
  std::FILE* out_;
  std::string label_;
  int64_t total_, every_, first_;
  bool quiet_, tty_;
  double start_;
  double last_print_ = -1;
  int64_t calls_ = 0, last_done_ = 0;
  bool last_printed_ = false, finished_ = false;
  std::string last_detail_;
};

std::string format_duration(double seconds);  // "45s", "3m07s", "2h05m"

}  // namespace copper::train
