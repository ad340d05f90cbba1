// config_flags.h — flags shared by the training commands (`copper task train`, `copper lm
// train`): overrides of the fields users change most, a seed check, output-path checks and
// reading a JSON config file.
//
// Precedence of a run's settings: a flag given on the command line overrides the config file
// (--config), which overrides the preset. An override left unset keeps the value below it.
//
//   Overrides o;
//   add_override_flags(cmd, o);                      // --lr --batch --d-model ... on `cmd`
//   ...
//   apply_overrides(o, cfg.model, cfg.optim, cfg.schedule, cfg.batch);  // after --steps
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "nn/optim.h"
#include "nn/schedule.h"
#include "nn/transformer.h"

namespace copper::cli {

// The fields users change most. Unset: keep the preset's (or the config file's) value.
struct Overrides {
  std::optional<double> lr;            // peak learning rate (optimizer and schedule)
  std::optional<int64_t> batch;        // sequences per step
  std::optional<int64_t> d_model;      // model width; d_ff keeps its ratio to d_model
  std::optional<int64_t> layers;       // transformer blocks
  std::optional<int64_t> heads;        // attention heads (must divide d_model)
  std::optional<int64_t> context;      // positions the model sees (longer examples keep their end)
  std::optional<double> dropout;       // dropout probability
  std::optional<double> weight_decay;  // AdamW decoupled weight decay
  std::optional<int64_t> warmup;       // steps of linear warmup
  std::optional<std::string> dtype;    // precision of the matrix products (f32, bf16); the caller applies it

  bool any() const;
};

// Adds --lr --batch --d-model --layers --heads --context --dropout --weight-decay --warmup --dtype to
// cmd, writing into o (which must outlive parsing), in an option group "Overrides".
void add_override_flags(CLI::App* cmd, Overrides& o);

// Writes the set fields into the configs. Call it after anything that recomputes the schedule
// from the step count (tasks::set_steps), so that --warmup survives. Throws copper::Error
// naming the flag when the result is not a valid model or schedule (e.g. --heads 3 with
// --d-model 64).
void apply_overrides(const Overrides& o, nn::TransformerConfig& model, nn::OptimConfig& optim,
                     nn::Schedule& schedule, int64_t& batch);

// Validator for --seed: seeds are whole numbers in 0..2^64-1. CLI11 would otherwise read
// "-1" into a uint64_t as 18446744073709551615 without a word.
const CLI::Validator& seed_check();

// --device NAME: where the model runs. The help text of the flag, and the device it names
// once checked: "cpu", "cuda" or "cuda:N", a backend this binary was built with, and a device
// that exists (copper::Error otherwise, saying which of the three failed).
inline constexpr const char* kDeviceHelp =
    "where the model runs: cpu, cuda or cuda:N (a GPU needs a build with CUDA; with several ranks per machine, "
    "plain cuda gives each rank its own GPU)";
// The device --device names, checked to exist. Plain "cuda" in a run of several ranks means
// the GPU numbered as this rank's place on its machine (dist::Communicator::local_rank()).
Device usable_device(const std::string& name);

// What is wrong with `path` as an output folder (empty string: nothing). An existing folder
// is fine (a run resumes from it); an empty path or an existing file is not.
std::string out_dir_problem(const std::string& flag, const std::string& path);
// The same for an output file: empty, an existing folder, or a parent that is not a folder.
std::string out_file_problem(const std::string& flag, const std::string& path);

// A JSON object read from a file; throws copper::Error ("[op] ...") saying whether the file
// is missing or not valid JSON.
nlohmann::json read_json_file(const std::string& path, const char* op);

}  // namespace copper::cli
