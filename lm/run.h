// run.h — a language-model run: training one from a prepared data folder, and loading one back.
//
// A run folder (train/trainer.h describes the common files) also holds the tokenizer it was
// trained with, so that `copper lm generate` needs nothing else:
//   config.json  LMConfig (+ "data": the folder it was trained on)
//   tokenizer.*  a copy of the data folder's tokenizer
//   results.json {"valid": {...}, "test": {...}} perplexities of the final model (evaluate.h), ...
#pragma once
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "lm/config.h"
#include "lm/tokenizer.h"
#include "nn/transformer.h"
#include "train/trainer.h"

namespace copper::lm {

// Train (or resume, or find finished) `cfg` on the prepared folder `data_dir` into `out_dir`.
// The vocabulary comes from the data's tokenizer. Returns results.json (or {"stopped_at": n}
// when RunOptions::stop_after stopped it).
nlohmann::json train_lm(LMConfig cfg, const std::string& data_dir, const std::string& out_dir,
                        const train::RunOptions& opt = {});

struct LoadedRun {
  LMConfig cfg;
  std::unique_ptr<nn::TransformerLM> model;
  std::unique_ptr<Tokenizer> tokenizer;
};
// A finished run folder: config.json, model.safetensors (or checkpoints/best/model.safetensors
// with `best`) and its tokenizer. Throws copper::Error saying what is missing or mismatched.
LoadedRun load_run(const std::string& dir, bool best = false);

// Throws unless the data folder's tokenizer is the one the run was trained with.
void check_same_tokenizer(const LMConfig& cfg, const std::string& run_dir, const std::string& data_dir,
                          const std::string& data_tokenizer_sha256);

}  // namespace copper::lm
