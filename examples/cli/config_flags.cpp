// config_flags.cpp — the shared training flags of config_flags.h.
#include "examples/cli/config_flags.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "dist/comm.h"
#include "tensor/backend.h"
#include "tensor/error.h"

namespace copper::cli {

namespace fs = std::filesystem;

namespace {
// Bounds of the override flags: wide enough for any run that fits in memory, narrow enough
// to catch a typo (an extra zero) before a model is built.
constexpr int64_t kMaxBatch = 1 << 20;
constexpr int64_t kMaxWidth = 1 << 16;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxContext = 1 << 24;
constexpr int64_t kMaxWarmup = 1000000000;
constexpr double kMaxLr = 10.0;
}  // namespace

bool Overrides::any() const {
  return lr || batch || d_model || layers || heads || context || dropout || weight_decay || warmup || dtype;
}

void add_override_flags(CLI::App* cmd, Overrides& o) {
  const std::string g = "Overrides (default: the --config file's value, else the preset's; see the table below)";
  cmd->add_option("--lr", o.lr, "peak learning rate")->check(CLI::Range(0.0, kMaxLr))->group(g);
  cmd->add_option("--batch", o.batch, "sequences per training step")->check(CLI::Range(int64_t(1), kMaxBatch))->group(g);
  cmd->add_option("--d-model", o.d_model, "model width (d_ff keeps its ratio to it)")
      ->check(CLI::Range(int64_t(1), kMaxWidth))
      ->group(g);
  cmd->add_option("--layers", o.layers, "transformer blocks")->check(CLI::Range(int64_t(1), kMaxLayers))->group(g);
  cmd->add_option("--heads", o.heads, "attention heads (must divide the width)")
      ->check(CLI::Range(int64_t(1), kMaxWidth))
      ->group(g);
  cmd->add_option("--context", o.context, "positions the model sees (a longer example keeps its last ones)")
      ->check(CLI::Range(int64_t(1), kMaxContext))
      ->group(g);
  cmd->add_option("--dropout", o.dropout, "dropout probability, in [0, 1)")->check(CLI::Range(0.0, 0.99))->group(g);
  cmd->add_option("--weight-decay", o.weight_decay, "decoupled weight decay (AdamW)")
      ->check(CLI::Range(0.0, 1.0))
      ->group(g);
  cmd->add_option("--warmup", o.warmup, "steps of linear learning-rate warmup")
      ->check(CLI::Range(int64_t(0), kMaxWarmup))
      ->group(g);
  cmd->add_option("--dtype", o.dtype, "precision of the matrix products: f32, or bf16 (mixed precision: bf16 "
                                      "products summed in f32; weights, optimizer, norms, softmax and loss stay f32)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->group(g);
}

void apply_overrides(const Overrides& o, nn::TransformerConfig& model, nn::OptimConfig& optim, nn::Schedule& schedule,
                     int64_t& batch) {
  if (o.lr) {
    optim.lr = *o.lr;
    schedule.lr = *o.lr;
  }
  if (o.batch) batch = *o.batch;
  if (o.d_model) {
    // d_ff = 0 means 4 * d_model and follows by itself; an explicit one keeps its ratio.
    if (model.d_ff > 0) model.d_ff = std::max<int64_t>(1, model.d_ff * *o.d_model / model.d_model);
    model.d_model = *o.d_model;
  }
  if (o.layers) model.n_layers = *o.layers;
  if (o.heads) model.n_heads = *o.heads;
  if (o.context) model.context = *o.context;
  if (o.dropout) model.dropout = *o.dropout;
  if (o.weight_decay) optim.weight_decay = *o.weight_decay;
  if (o.warmup) schedule.warmup = *o.warmup;
  COPPER_CHECK(model.d_model % model.n_heads == 0, "config",
               "{} heads do not divide the width {} (each head gets width / heads dimensions). HINT: choose --heads "
               "and --d-model so that --heads divides --d-model, e.g. --d-model {} --heads {}",
               model.n_heads, model.d_model, model.n_heads * std::max<int64_t>(1, model.d_model / model.n_heads),
               model.n_heads);
  COPPER_CHECK(schedule.total == 0 || schedule.warmup <= schedule.total, "config",
               "--warmup {} is longer than the run ({} steps). HINT: use a warmup shorter than --steps",
               schedule.warmup, schedule.total);
  schedule.validate();
}

Device usable_device(const std::string& name) {
  Device d = device_from_name(name);
  COPPER_CHECK(has_backend(d.type), "device",
               "--device {}: this copper was built without that backend. HINT: build with -DCOPPER_CUDA=ON where the "
               "CUDA toolkit is installed; `copper info` lists what this binary can use", name);
  if (name == "cuda" && dist::launched_by_mpi() && dist::world().size() > 1) d.index = dist::world().local_rank();
  try {
    Tensor probe = Tensor::empty({1}, DType::f32, d);  // no driver or no such GPU: the backend's error says which
  } catch (const Error& e) {
    if (name != "cuda" || d.index == 0) throw;
    COPPER_THROW("device", "--device cuda: this rank is number {} of {} on its machine, so it takes {}, which failed: "
                 "{}. HINT: start at most as many ranks per machine as it has GPUs", d.index,
                 dist::world().local_size(), d.str(), e.what());
  }
  return d;
}

const CLI::Validator& seed_check() {
  static const CLI::Validator v(
      [](std::string& s) -> std::string {
        if (!s.empty() && s[0] == '-')
          return "a seed is a whole number in 0..18446744073709551615, got " + s + " (negative seeds are not allowed)";
        return {};
      },
      "SEED in 0..2^64-1", "seed");
  return v;
}

std::string out_dir_problem(const std::string& flag, const std::string& path) {
  if (path.empty()) return fmt::format("{} is empty. HINT: name the folder to write into, e.g. {} runs/my-run", flag, flag);
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (fs::exists(st) && !fs::is_directory(st))
    return fmt::format("{} '{}' is an existing file, not a folder. HINT: name a new or existing folder", flag, path);
  // A parent that is a file makes create_directories fail: find the first such component.
  for (fs::path p = fs::path(path).parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path()) {
    const auto ps = fs::status(p, ec);
    if (fs::exists(ps) && !fs::is_directory(ps))
      return fmt::format("{} '{}' lies inside '{}', which is a file, not a folder. HINT: name a folder elsewhere", flag,
                         path, p.string());
    if (p == p.parent_path()) break;
  }
  return {};
}

std::string out_file_problem(const std::string& flag, const std::string& path) {
  if (path.empty()) return fmt::format("{} is empty. HINT: name the file to write", flag);
  std::error_code ec;
  if (fs::is_directory(path, ec))
    return fmt::format("{} '{}' is a folder. HINT: name a file, e.g. {}/out.txt", flag, path, path);
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec))
    return fmt::format("{} '{}': its folder '{}' does not exist (or is a file). HINT: create the folder first", flag,
                       path, parent.string());
  return {};
}

nlohmann::json read_json_file(const std::string& path, const char* op) {
  std::ifstream in(path, std::ios::binary);
  COPPER_CHECK(in.good(), op, "cannot open '{}'. HINT: check the path", path);
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    auto js = nlohmann::json::parse(ss.str());
    COPPER_CHECK(js.is_object(), op, "'{}' holds JSON but not an object {{...}}", path);
    return js;
  } catch (const nlohmann::json::exception& e) {
    COPPER_THROW(op, "'{}' is not valid JSON ({}). HINT: use a config.json written by a run as a template", path,
                 e.what());
  }
}

}  // namespace copper::cli
