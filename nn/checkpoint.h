// checkpoint.h — model files and resumable training checkpoints.
//
// A model file is one safetensors file: the weights under their dotted names and the
// model config JSON in the metadata ("config"), so it is self-describing and readable by
// PyTorch/numpy.
//
// A training checkpoint is a folder written whole, then published:
//     <dir>/step-00000400/model.safetensors      weights (+ config in the metadata)
//     <dir>/step-00000400/optimizer.safetensors  optimizer moments ("exp_avg.<param>", ...)
//     <dir>/step-00000400/state.json             step, optimizer scalars, RNG states, data
//                                                position — whatever the trainer puts there
//     <dir>/latest                               "step-00000400"
// The step folder is filled under a temporary name and renamed; `latest` is then replaced
// atomically. A run killed at any moment leaves `latest` naming a complete checkpoint.
//
// Nothing here knows the Module class: weights go in and out as (name, tensor) lists, and
// loading copies into the given tensors in place after checking every name and shape.
#pragma once
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "nn/optim.h"
#include "nn/safetensors.h"
#include "tensor/random.h"

namespace copper::nn {

// ---- model files ----
void save_model(const std::string& path, const NamedTensors& weights, const nlohmann::json& config);
struct LoadedModel {
  std::map<std::string, Tensor> weights;
  nlohmann::json config;  // null if the file has no "config" metadata
};
LoadedModel load_model(const std::string& path);

// Copy `loaded` into `dst` in place (no autograd). Every name of dst must be in loaded with
// the same shape, and (strict) loaded may hold nothing else; a mismatch throws naming the
// file, the tensor and both shapes. Dtypes are converted.
void copy_weights_into(const std::string& path, const std::map<std::string, Tensor>& loaded, const NamedTensors& dst,
                       bool strict = true);

// Load the model file `path` into `weights` in place (copy_weights_into, strict), after
// checking that the model config in its metadata, when it has one, equals `config`; else
// copper::Error naming the first difference and `config_source` (where `config` came from).
void load_model_checked(const std::string& path, const NamedTensors& weights, const nlohmann::json& config,
                        const std::string& config_source);

// Keys whose values differ between two config objects, as "key: a vs b" (empty if equal).
std::vector<std::string> config_differences(const nlohmann::json& a, const nlohmann::json& b);

// ---- generator state as JSON (hex strings: exact in every JSON reader) ----
nlohmann::json generator_to_json(const Generator& g);
void generator_from_json(Generator& g, const nlohmann::json& js);

// ---- training checkpoints ----
// Write a checkpoint of `step` under dir; keep the newest `keep` step folders.
void save_training_checkpoint(const std::string& dir, int64_t step, const NamedTensors& weights,
                              const nlohmann::json& config, const Optimizer& opt, const nlohmann::json& state,
                              int keep = 1);
// The folder `latest` names, or nullopt if there is no checkpoint under dir.
std::optional<std::string> latest_checkpoint(const std::string& dir);
// Load a checkpoint folder into `weights` and `opt` in place. The saved config must equal
// `config` (else copper::Error listing the differences). Returns state.json's "state".
nlohmann::json load_training_checkpoint(const std::string& step_dir, const NamedTensors& weights,
                                        const nlohmann::json& config, Optimizer& opt);

}  // namespace copper::nn
