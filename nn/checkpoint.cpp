// checkpoint.cpp — model files and resumable training checkpoints (see checkpoint.h).
#include "nn/checkpoint.h"

#include <algorithm>
#include <filesystem>

#include <fcntl.h>
#include <unistd.h>

#include "autograd/grad_mode.h"
#include "tensor/ops.h"

namespace copper::nn {

namespace fs = std::filesystem;

// ---------------------------------------------------------------- model files

void save_model(const std::string& path, const NamedTensors& weights, const nlohmann::json& config) {
  std::map<std::string, std::string> md{{"format", "copper"}};
  if (!config.is_null()) md["config"] = config.dump();
  save_safetensors(path, weights, md);
}

LoadedModel load_model(const std::string& path) {
  SafetensorsFile f = load_safetensors(path);
  LoadedModel m;
  for (auto& [n, t] : f.tensors) m.weights[n] = t;
  auto it = f.metadata.find("config");
  if (it != f.metadata.end()) {
    try {
      m.config = nlohmann::json::parse(it->second);
    } catch (const nlohmann::json::exception& e) {
      COPPER_THROW("load_model", "'{}': metadata 'config' is not valid JSON ({})", path, e.what());
    }
  }
  return m;
}

void copy_weights_into(const std::string& path, const std::map<std::string, Tensor>& loaded, const NamedTensors& dst,
                       bool strict) {
  // Check everything before touching anything: a failed load leaves the model as it was.
  for (auto& [name, t] : dst) {
    auto it = loaded.find(name);
    COPPER_CHECK(it != loaded.end(), "load", "'{}' has no tensor '{}' (the model needs it, shape {}). HINT: the file "
                 "was written for a different model", path, name, shape_str(t.shape()));
    COPPER_CHECK(it->second.shape() == t.shape(), "load",
                 "'{}', tensor '{}': the file has shape {} but the model has {}. HINT: the file was written for a "
                 "different config",
                 path, name, shape_str(it->second.shape()), shape_str(t.shape()));
  }
  if (strict) {
    for (auto& [name, t] : loaded) {
      bool found = std::any_of(dst.begin(), dst.end(), [&](auto& p) { return p.first == name; });
      COPPER_CHECK(found, "load", "'{}' has a tensor '{}' {} that the model does not have. HINT: the file was written "
                   "for a different model", path, name, shape_str(t.shape()));
    }
  }
  NoGradGuard ng;
  for (auto& [name, t] : dst) copy_(t, loaded.at(name));
}

void load_model_checked(const std::string& path, const NamedTensors& weights, const nlohmann::json& config,
                        const std::string& config_source) {
  LoadedModel lm = load_model(path);
  if (!lm.config.is_null()) {
    auto diff = config_differences(lm.config, config);
    COPPER_CHECK(diff.empty(), "checkpoint", "'{}' holds a model of another config than '{}' ({}{})", path,
                 config_source, diff[0], diff.size() > 1 ? fmt::format(" and {} more", diff.size() - 1) : "");
  }
  copy_weights_into(path, lm.weights, weights, true);
}

std::vector<std::string> config_differences(const nlohmann::json& a, const nlohmann::json& b) {
  std::vector<std::string> out;
  if (!a.is_object() || !b.is_object()) {
    if (a != b) out.push_back(fmt::format("{} vs {}", a.dump(), b.dump()));
    return out;
  }
  for (auto& [k, v] : a.items()) {
    if (!b.contains(k)) out.push_back(fmt::format("{}: {} vs (missing)", k, v.dump()));
    else if (b.at(k) != v) out.push_back(fmt::format("{}: {} vs {}", k, v.dump(), b.at(k).dump()));
  }
  for (auto& [k, v] : b.items())
    if (!a.contains(k)) out.push_back(fmt::format("{}: (missing) vs {}", k, v.dump()));
  return out;
}

// ---------------------------------------------------------------- generator state

nlohmann::json generator_to_json(const Generator& g) {
  nlohmann::json arr = nlohmann::json::array();
  for (uint64_t w : g.state()) arr.push_back(fmt::format("{:016x}", w));
  return arr;
}

void generator_from_json(Generator& g, const nlohmann::json& js) {
  COPPER_CHECK(js.is_array() && js.size() == 6, "checkpoint", "generator state must be 6 hex words, got {}",
               js.dump().substr(0, 200));
  std::array<uint64_t, 6> s{};
  for (size_t i = 0; i < 6; ++i) {
    COPPER_CHECK(js[i].is_string(), "checkpoint", "generator state word {} is not a string", i);
    try {
      size_t used = 0;
      s[i] = std::stoull(js[i].get<std::string>(), &used, 16);
      COPPER_CHECK(used == js[i].get<std::string>().size(), "checkpoint", "bad hex word '{}'", js[i].get<std::string>());
    } catch (const std::logic_error&) {
      COPPER_THROW("checkpoint", "generator state word '{}' is not hexadecimal", js[i].get<std::string>());
    }
  }
  g.set_state(s);
}

// ---------------------------------------------------------------- training checkpoints

namespace {
std::string step_name(int64_t step) { return fmt::format("step-{:08d}", step); }

void fsync_dir(const fs::path& d) {
  int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}
}  // namespace

void save_training_checkpoint(const std::string& dir, int64_t step, const NamedTensors& weights,
                              const nlohmann::json& config, const Optimizer& opt, const nlohmann::json& state,
                              int keep) {
  const fs::path root(dir);
  std::error_code ec;
  fs::create_directories(root, ec);
  COPPER_CHECK(!ec, "checkpoint", "cannot create '{}': {}", dir, ec.message());
  const std::string name = step_name(step);
  const fs::path tmp = root / (name + ".tmp-" + std::to_string(::getpid()));
  const fs::path final_dir = root / name;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  COPPER_CHECK(!ec, "checkpoint", "cannot create '{}': {}", tmp.string(), ec.message());
  try {
    save_model((tmp / "model.safetensors").string(), weights, config);
    NamedTensors moments;
    for (auto& [k, t] : opt.state_tensors()) moments.emplace_back(k, t);
    save_safetensors((tmp / "optimizer.safetensors").string(), moments, {{"format", "copper-optimizer"}});
    nlohmann::json js = {{"step", step}, {"config", config}, {"optimizer", opt.state_json()}, {"state", state}};
    write_text_atomic((tmp / "state.json").string(), js.dump(1) + "\n");
    fsync_dir(tmp);
    // A folder of this name can only be a complete checkpoint that `latest` did not yet name.
    fs::remove_all(final_dir, ec);
    fs::rename(tmp, final_dir);
    fsync_dir(root);
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(tmp, ec);
    COPPER_THROW("checkpoint", "writing checkpoint '{}' failed: {}", final_dir.string(), e.what());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  write_text_atomic((root / "latest").string(), name + "\n");
  // Drop older step folders beyond `keep` (never the one just written).
  std::vector<std::string> steps;
  for (auto& e : fs::directory_iterator(root, ec)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && n.rfind("step-", 0) == 0 && n.find(".tmp-") == std::string::npos) steps.push_back(n);
  }
  std::sort(steps.begin(), steps.end());
  const size_t k = size_t(std::max(keep, 1));
  for (size_t i = 0; i + k < steps.size(); ++i)
    if (steps[i] != name) fs::remove_all(root / steps[i], ec);
}

std::optional<std::string> latest_checkpoint(const std::string& dir) {
  const fs::path latest = fs::path(dir) / "latest";
  if (!fs::exists(latest)) return std::nullopt;
  std::string name = read_text(latest.string(), "checkpoint");
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  COPPER_CHECK(!name.empty() && name.find('/') == std::string::npos, "checkpoint",
               "'{}' does not name a checkpoint folder. HINT: delete it to start afresh", latest.string());
  const fs::path d = fs::path(dir) / name;
  COPPER_CHECK(fs::is_directory(d), "checkpoint", "'{}' names '{}', which does not exist", latest.string(), d.string());
  return d.string();
}

nlohmann::json load_training_checkpoint(const std::string& step_dir, const NamedTensors& weights,
                                        const nlohmann::json& config, Optimizer& opt) {
  const fs::path d(step_dir);
  const std::string state_path = (d / "state.json").string();
  nlohmann::json js;
  try {
    js = nlohmann::json::parse(read_text(state_path, "checkpoint"));
  } catch (const nlohmann::json::exception& e) {
    COPPER_THROW("checkpoint", "'{}' is not valid JSON ({})", state_path, e.what());
  }
  COPPER_CHECK(js.is_object() && js.contains("step") && js.contains("optimizer") && js.contains("config"), "checkpoint",
               "'{}' lacks step, optimizer or config", state_path);
  auto diff = config_differences(js["config"], config);
  if (!diff.empty()) {
    std::string list;
    for (size_t i = 0; i < diff.size() && i < 8; ++i) list += (i ? "; " : "") + diff[i];
    COPPER_THROW("checkpoint", "'{}' was written for a different config (saved vs now): {}. HINT: use the same "
                 "flags, another output folder, or start over (copper task train --fresh)", step_dir, list);
  }
  const std::string model_path = (d / "model.safetensors").string();
  const std::string opt_path = (d / "optimizer.safetensors").string();
  LoadedModel m = load_model(model_path);
  SafetensorsFile o = load_safetensors(opt_path);
  std::map<std::string, Tensor> moments;
  for (auto& [k, t] : o.tensors) moments[k] = t;
  // Weights first (every name and shape checked before any copy), then the optimizer.
  copy_weights_into(model_path, m.weights, weights, true);
  opt.load_state(moments, js["optimizer"]);
  return js.value("state", nlohmann::json::object());
}

}  // namespace copper::nn
