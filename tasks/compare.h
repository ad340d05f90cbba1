// compare.h — the paper-style comparison of position encodings, and CoPE gate read-outs.
//
// run_comparison trains one model per (encoding, seed) with train_run and gathers the
// held-out errors; comparison_table prints them like the paper's tables (percent, mean and
// spread over seeds). gates_text shows, token by token, each CoPE head's gate for the last
// query; gate_summary says what a head counts (its mean gate per token type).
#pragma once
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tasks/trainer.h"

namespace copper::tasks {

struct CompareOptions {
  TaskConfig task;
  std::string preset = "cpu-small";
  std::vector<std::string> pes{"abs", "rope", "cope"};
  int seeds = 3;
  std::optional<int64_t> steps;  // overrides the preset's step count
  std::string out_dir;           // one sub-folder per run: <pe>-seed<k>
  bool quiet = false;
  bool fresh = false;            // retrain even where a run's folder holds a checkpoint
  std::FILE* progress = stderr;
};
// {"task", "preset", "steps", "runs": [results.json of each run], "splits": [names]}
nlohmann::json run_comparison(const CompareOptions& opt);
std::string comparison_table(const nlohmann::json& comparison);

// Gates of every CoPE layer/head for the last query of one example (the model is run on
// it). Throws if the model has no CoPE layer.
std::string gates_text(nn::TransformerLM& model, const Task& task, const Example& ex);
// For the head whose gates vary most across token types: which tokens it counts.
std::string gate_summary(nn::TransformerLM& model, const Task& task, const std::vector<Example>& examples);

}  // namespace copper::tasks
