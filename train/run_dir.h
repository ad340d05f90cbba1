// run_dir.h — the output folder of a run (internal to train/): which folder a run writes to,
// and the swap that publishes a replacement run. See the Trainer comment in trainer.h.
#pragma once
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace copper::train::detail {

struct RunDirPlan {
  std::string work;          // the folder the run trains in: DIR, or DIR.next
  bool staging = false;      // work is DIR.next (DIR holds a finished run that stays until finish)
  bool clear = false;        // start over in work: drop its checkpoints, log and outputs
  bool already_done = false; // DIR holds a finished run of this config: nothing to do
  nlohmann::json results;    // its results.json when already_done
};

std::string staging_dir(const std::string& out);  // DIR.next
std::string old_dir(const std::string& out);      // DIR.old, only during a swap
// `out` without a trailing slash, so that its siblings are DIR.next and DIR.old.
std::string normalize_dir(const std::string& out);

// Complete a swap that a crash interrupted (DIR missing beside DIR.old), and drop a DIR.old
// left after a completed one.
void recover_swap(const std::string& out);
// Decide where a run of `config` goes (may clear a stale DIR.next; otherwise writes nothing).
RunDirPlan plan_run_dir(const std::string& out, const nlohmann::json& config, bool fresh);
// Replace DIR by the finished DIR.next: DIR -> DIR.old, DIR.next -> DIR, DIR.old removed.
void publish_staging(const std::string& out);

// The config.json a folder holds (null when none or unreadable).
nlohmann::json read_json_or_null(const std::string& path);

}  // namespace copper::train::detail
