// task.cpp — task registry, configs, file I/O and batching shared by the three tasks.
#include "tasks/task.h"

#include <algorithm>
#include <fstream>

#include "nn/safetensors.h"
#include "tensor/ops.h"

namespace copper::tasks {

namespace {
// The most symbols (selective copy) and variables (counting) a task allows: the letters a..z.
constexpr int64_t kMaxSymbols = 26;
}  // namespace

// defined in flipflop.cpp, selective_copy.cpp, counting.cpp
std::unique_ptr<Task> make_flipflop(const TaskConfig& cfg);
std::unique_ptr<Task> make_selective_copy(const TaskConfig& cfg);
std::unique_ptr<Task> make_counting(const TaskConfig& cfg);

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names{"flipflop", "selective-copy", "counting"};
  return names;
}

std::unique_ptr<Task> make_task(const TaskConfig& cfg) {
  if (cfg.task == "flipflop") return make_flipflop(cfg);
  if (cfg.task == "selective-copy") return make_selective_copy(cfg);
  if (cfg.task == "counting") return make_counting(cfg);
  COPPER_THROW("task", "unknown task '{}'. HINT: valid tasks are flipflop, selective-copy, counting", cfg.task);
}

nlohmann::json TaskConfig::to_json() const {
  nlohmann::json js = {{"task", task}};
  if (task == "flipflop") {
    js["pairs"] = pairs;
    js["p"] = p;
  } else if (task == "selective-copy") {
    js["blanks"] = blanks;
    js["content"] = content;
    js["symbols"] = symbols;
  } else if (task == "counting") {
    js["vars"] = vars;
    js["max_steps"] = max_steps;
  }
  return js;
}

TaskConfig TaskConfig::from_json(const nlohmann::json& js) {
  TaskConfig c;
  COPPER_CHECK(js.is_object() && js.contains("task"), "task", "task config needs a 'task' field: {}",
               js.dump().substr(0, 200));
  c.task = js.at("task").get<std::string>();
  c.pairs = js.value("pairs", c.pairs);
  c.p = js.value("p", c.p);
  c.blanks = js.value("blanks", c.blanks);
  c.content = js.value("content", c.content);
  c.symbols = js.value("symbols", c.symbols);
  c.vars = js.value("vars", c.vars);
  c.max_steps = js.value("max_steps", c.max_steps);
  return c;
}

int64_t Task::token_id(const std::string& tok) const {
  const auto& v = vocab();
  auto it = std::find(v.begin(), v.end(), tok);
  return it == v.end() ? -1 : int64_t(it - v.begin());
}

std::vector<Example> generate(const Task& task, int64_t n, Generator& g) {
  std::vector<Example> out;
  out.reserve(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) out.push_back(task.sample(g));
  return out;
}

std::vector<Example> read_examples(const Task& task, const std::string& path) {
  std::ifstream in(path);
  COPPER_CHECK(in.good(), "data", "cannot open '{}'. HINT: check the path, or write one with `copper task data`", path);
  std::vector<Example> out;
  std::string line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string where = fmt::format("{}:{}", path, lineno);
    COPPER_CHECK(!line.empty(), "data", "{}: empty line. HINT: every line must hold one {} example", where, task.name());
    try {
      out.push_back(task.parse_line(line, where));
    } catch (const Error& e) {
      const std::string other = other_task_of_line(task, line);
      COPPER_CHECK(other.empty(), "data",
                   "{}: task mismatch: this is a {} example, but the model's task is {}. HINT: give a data file of "
                   "the model's task (copper task data --task {} ...), or a model trained on {}",
                   where, other, task.name(), task.name(), other);
      throw Error(escape_bytes(e.what()));
    }
  }
  COPPER_CHECK(!out.empty(), "data", "'{}' holds no examples", path);
  return out;
}

std::string other_task_of_line(const Task& task, const std::string& line) {
  for (const auto& name : task_names()) {
    if (name == task.name()) continue;
    TaskConfig widest;  // the largest vocabularies, so that any file of that task parses
    widest.task = name;
    widest.symbols = kMaxSymbols;
    widest.vars = kMaxSymbols;
    try {
      make_task(widest)->parse_line(line, "");
      return name;
    } catch (const Error&) {
      // not this task either
    }
  }
  return {};
}

std::string escape_bytes(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = byte(i);
    // Length of a well-formed UTF-8 sequence starting here (0: not one).
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n > 1 && c < 0xC2) n = 0;  // overlong two-byte forms
    for (size_t k = 1; k < n; ++k)
      if (i + k >= s.size() || (byte(i + k) >> 6) != 0x2) n = 0;
    if (n == 1 && (c < 0x20 || c == 0x7F)) n = 0;  // control characters
    if (n == 0) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
    } else {
      out.append(s, i, n);
      i += n;
    }
  }
  return out;
}

nlohmann::json parse_json_line(const std::string& line, const std::string& where, const char* op,
                               const char* line_shape) {
  try {
    return nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    COPPER_THROW(op, "{}: not valid JSON ({}). HINT: each line is {}", where, e.what(), line_shape);
  }
}

void write_examples(const Task& task, const std::vector<Example>& examples, const std::string& path) {
  std::string text;
  for (auto& ex : examples) text += task.to_line(ex) + "\n";
  nn::write_text_atomic(path, text);
}

Batch make_batch(const std::vector<Example>& examples, size_t begin, size_t end, int64_t context) {
  COPPER_CHECK(begin < end && end <= examples.size(), "batch", "bad range [{}, {}) of {} examples", begin, end,
               examples.size());
  Batch b;
  int64_t longest = 0;
  for (size_t i = begin; i < end; ++i) longest = std::max<int64_t>(longest, int64_t(examples[i].tokens.size()));
  const int64_t T = std::min(longest - 1, context);
  COPPER_CHECK(T >= 1, "batch", "examples need at least 2 tokens");
  const int64_t B = int64_t(end - begin);
  std::vector<int64_t> ids(size_t(B * T), 0), tgt(size_t(B * T), -100);
  for (int64_t r = 0; r < B; ++r) {
    const Example& ex = examples[begin + size_t(r)];
    const int64_t n = int64_t(ex.tokens.size());
    const int64_t start = std::max<int64_t>(0, n - (context + 1));  // left-trim to context + 1 tokens
    if (start > 0) ++b.trimmed;
    for (int64_t t = start; t + 1 < n; ++t) {
      const int64_t col = t - start;
      ids[size_t(r * T + col)] = ex.tokens[size_t(t)];
      if (ex.mask[size_t(t)]) {
        tgt[size_t(r * T + col)] = ex.tokens[size_t(t + 1)];
        ++b.counted;
      }
    }
  }
  b.ids = from_vector(ids, {B, T});
  b.targets = from_vector(tgt, {B, T});
  return b;
}

}  // namespace copper::tasks
