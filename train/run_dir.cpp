// run_dir.cpp — where a run writes, and the swap that publishes a replacement run.
#include "train/run_dir.h"

#include <filesystem>
#include <system_error>

#include "nn/checkpoint.h"
#include "tensor/error.h"

namespace copper::train::detail {

namespace fs = std::filesystem;

namespace {
constexpr const char* kResults = "results.json";
constexpr const char* kConfig = "config.json";
constexpr size_t kMaxListedDifferences = 8;

bool has_checkpoint(const fs::path& dir) {
  try {
    return nn::latest_checkpoint((dir / "checkpoints").string()).has_value();
  } catch (const Error&) {
    return false;  // a `latest` naming nothing: no usable checkpoint
  }
}

std::string differences(const nlohmann::json& saved, const nlohmann::json& now) {
  if (saved.is_null()) return "its config.json is missing or unreadable";
  auto diff = nn::config_differences(saved, now);
  std::string list;
  for (size_t i = 0; i < diff.size() && i < kMaxListedDifferences; ++i) list += (i ? "; " : "") + diff[i];
  return list;
}
}  // namespace

std::string normalize_dir(const std::string& out) {
  fs::path p = fs::path(out).lexically_normal();
  if (!p.empty() && p.filename().empty()) p = p.parent_path();  // "runs/x/" -> "runs/x"
  return p.string();
}
std::string staging_dir(const std::string& out) { return normalize_dir(out) + ".next"; }
std::string old_dir(const std::string& out) { return normalize_dir(out) + ".old"; }

nlohmann::json read_json_or_null(const std::string& path) {
  if (!fs::exists(path)) return nullptr;
  try {
    return nlohmann::json::parse(nn::read_text(path, "train"));
  } catch (const nlohmann::json::exception&) {
    return nullptr;
  }
}

void recover_swap(const std::string& out) {
  const fs::path dir(normalize_dir(out)), next(staging_dir(out)), old(old_dir(out));
  try {
    if (!fs::exists(dir) && fs::exists(old)) {
      // Killed between the two renames of publish_staging: the new run is complete if its
      // results are there; otherwise the old run goes back in place.
      if (fs::exists(next / kResults))
        fs::rename(next, dir);
      else
        fs::rename(old, dir);
    }
    if (fs::exists(dir) && fs::exists(old)) fs::remove_all(old);
  } catch (const fs::filesystem_error& e) {
    COPPER_THROW("train", "cannot restore '{}' after an interrupted swap: {}. HINT: move '{}' or '{}' back to '{}' by hand",
                 dir.string(), e.what(), old.string(), next.string(), dir.string());
  }
}

RunDirPlan plan_run_dir(const std::string& out, const nlohmann::json& config, bool fresh) {
  const fs::path dir(normalize_dir(out)), next(staging_dir(out));
  RunDirPlan plan;
  if (!fs::exists(dir / kResults)) {  // nothing complete to protect: train (or resume) in place
    plan.work = dir.string();
    plan.clear = fresh;
    return plan;
  }
  if (fresh) {
    plan.work = next.string();
    plan.staging = true;
    plan.clear = true;
    return plan;
  }
  // A replacement run of this config that was interrupted continues.
  if (fs::exists(next) && differences(read_json_or_null((next / kConfig).string()), config).empty() &&
      has_checkpoint(next)) {
    plan.work = next.string();
    plan.staging = true;
    return plan;
  }
  const std::string diff = differences(read_json_or_null((dir / kConfig).string()), config);
  COPPER_CHECK(diff.empty(), "train",
               "'{}' holds a finished run of a different config (finished vs now): {}. HINT: pass --fresh to replace "
               "it (its outputs stay until the new run finishes), or choose another output folder",
               dir.string(), diff);
  plan.work = dir.string();
  plan.already_done = true;
  plan.results = read_json_or_null((dir / kResults).string());
  COPPER_CHECK(plan.results.is_object(), "train", "'{}' is not a valid results file. HINT: pass --fresh to retrain",
               (dir / kResults).string());
  return plan;
}

void publish_staging(const std::string& out) {
  const fs::path dir(normalize_dir(out)), next(staging_dir(out)), old(old_dir(out));
  try {
    fs::remove_all(old);
    if (fs::exists(dir)) fs::rename(dir, old);
    fs::rename(next, dir);
    fs::remove_all(old);
  } catch (const fs::filesystem_error& e) {
    COPPER_THROW("train", "cannot move the finished run '{}' into '{}': {}. HINT: the next run in '{}' completes the "
                 "swap; or move the folders by hand",
                 next.string(), dir.string(), e.what(), dir.string());
  }
}

}  // namespace copper::train::detail
