// task.h — the paper's synthetic tasks: Flip-Flop, selective copy and counting.
//
// A Task generates examples from a seeded Generator and reads/writes them as text files
// (one example per line). An Example is a token sequence plus a mask: mask[t] says
// whether the prediction of tokens[t+1] (made at position t) counts for the loss and the
// error — the bit after each read (Flip-Flop), the copied tokens (selective copy), the
// answer (counting).
//
// Each task has named evaluation splits ("in" plus out-of-distribution ones) made by
// changing one parameter: Flip-Flop p = 0.98 (sparse) / 0.1 (dense); selective copy B/2
// (dense) / 2B (sparse) blanks; counting twice as many statements (long).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace copper::tasks {

struct Example {
  std::vector<int64_t> tokens;
  std::vector<uint8_t> mask;  // same length as tokens; the last entry is always 0
};

// Every parameter of every task; each task reads its own.
struct TaskConfig {
  std::string task = "flipflop";  // flipflop | selective-copy | counting
  // Flip-Flop: `pairs` instruction/bit pairs, p = P(ignore)
  int64_t pairs = 64;
  double p = 0.8;
  // selective copy: `content` tokens from `symbols` symbols among `blanks` blanks
  int64_t blanks = 64;
  int64_t content = 16;
  int64_t symbols = 16;
  // counting: `vars` variables, 3..max_steps statements
  int64_t vars = 3;
  int64_t max_steps = 128;

  nlohmann::json to_json() const;  // only the fields of its task
  static TaskConfig from_json(const nlohmann::json& js);
};
// For nlohmann::json (a TaskConfig inside another config's JSON): the two functions above.
inline void to_json(nlohmann::json& js, const TaskConfig& c) { js = c.to_json(); }
inline void from_json(const nlohmann::json& js, TaskConfig& c) { c = TaskConfig::from_json(js); }

class Task {
 public:
  explicit Task(TaskConfig cfg) : cfg_(std::move(cfg)) {}
  virtual ~Task() = default;
  const TaskConfig& config() const { return cfg_; }
  const std::string& name() const { return cfg_.task; }

  virtual const std::vector<std::string>& vocab() const = 0;
  int64_t vocab_size() const { return int64_t(vocab().size()); }
  int64_t token_id(const std::string& tok) const;  // -1 if not in the vocabulary

  virtual Example sample(Generator& g) const = 0;
  // The longest example this configuration can produce (tokens).
  virtual int64_t max_tokens() const = 0;
  // Evaluation splits: ("in", this config) first, then the OOD ones.
  virtual std::vector<std::pair<std::string, TaskConfig>> splits() const = 0;
  // True if the task's error counts samples (any wrong token), false if it counts tokens.
  virtual bool error_per_sample() const = 0;

  // One line of the task's file format, and back. parse_line throws copper::Error
  // starting with `where` (e.g. "data.txt:12") and saying what is wrong.
  virtual std::string to_line(const Example& ex) const = 0;
  virtual Example parse_line(const std::string& line, const std::string& where) const = 0;

 protected:
  TaskConfig cfg_;
};

// "flipflop", "selective-copy", "counting"; throws listing the valid names.
std::unique_ptr<Task> make_task(const TaskConfig& cfg);
const std::vector<std::string>& task_names();

// n examples from a generator.
std::vector<Example> generate(const Task& task, int64_t n, Generator& g);
// Files: one example per line. Reading reports the first malformed line as "file:line: ..."
// (copper::Error); empty lines are errors too. A line that another task parses is reported as
// a task mismatch naming both tasks; bytes that are not printable UTF-8 (a binary file) appear
// escaped as \xNN. Writing is atomic (temporary file + rename).
std::vector<Example> read_examples(const Task& task, const std::string& path);
// The task among task_names() other than `task` that parses `line`, or "" if none does.
std::string other_task_of_line(const Task& task, const std::string& line);
// `s` with control characters and bytes outside well-formed UTF-8 written as \xNN, so that
// a message quoting a binary file shows the bad byte.
std::string escape_bytes(const std::string& s);
// One line of a JSON-lines task file, parsed; throws "[op] where: not valid JSON (...).
// HINT: each line is <line_shape>".
nlohmann::json parse_json_line(const std::string& line, const std::string& where, const char* op,
                               const char* line_shape);
void write_examples(const Task& task, const std::vector<Example>& examples, const std::string& path);

// A batch for a language model with `context` positions:
//   ids     [B, T] i64 — tokens[0 .. n-2], right-padded with token 0
//   targets [B, T] i64 — tokens[t+1] where mask[t], else -100 (ignored by cross_entropy)
// with T = min(longest - 1, context). An example longer than context + 1 tokens keeps its
// last context + 1 tokens (as the paper's code does), which keeps the answer.
struct Batch {
  Tensor ids, targets;
  int64_t counted = 0;  // positions with a target
  int64_t trimmed = 0;  // examples cut on the left
};
Batch make_batch(const std::vector<Example>& examples, size_t begin, size_t end, int64_t context);

}  // namespace copper::tasks
