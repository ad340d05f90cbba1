// dataset.cpp — prepare(), open_prepared(), TokenFile, WindowSource, for_each_window.
#include "lm/dataset.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "lm/text.h"
#include "nn/checkpoint.h"
#include "tensor/error.h"
#include "tensor/ops.h"

namespace copper::lm {
namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little, "token files are little-endian; add byte swapping here");

namespace {

constexpr char kManifest[] = "manifest.json";
constexpr int64_t kMaxU16Vocab = 65536;  // ids 0..65535 fit a uint16
constexpr char kRerunHint[] = "HINT: re-run `copper lm prepare` for this folder with --force";

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string mb(int64_t bytes) { return fmt::format("{:.1f} MB", double(bytes) / 1e6); }

// Removes a folder when it goes out of scope unless released (the staging folder of prepare).
struct RemoveOnExit {
  fs::path path;
  ~RemoveOnExit() {
    if (!path.empty()) {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  }
};

// Whether an existing manifest describes the folder prepare() was asked for.
bool same_request(const nlohmann::json& m, const std::string& kind, int64_t vocab,
                  const std::map<std::string, std::string>& source_sha) {
  try {
    if (m.at("format") != kManifestFormat || m.at("tokenizer").at("kind") != kind) return false;
    const int64_t have = m.at("tokenizer").at("vocab");
    if (!(have == vocab || (kind == "word" && vocab <= 0))) return false;
    for (const auto& [name, sha] : source_sha)
      if (m.at("splits").at(name).at("source_sha256") != sha) return false;
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

}  // namespace

// ---------------- prepare ----------------

nlohmann::json prepare(const std::string& train_path, const std::string& valid_path, const std::string& test_path,
                       const std::string& kind, int64_t vocab, const std::string& out_dir, bool force) {
  constexpr char op[] = "prepare";
  COPPER_CHECK(kind == "bpe" || kind == "unigram" || kind == "word", op,
               "unknown tokenizer kind '{}'. HINT: use bpe, unigram or word", kind);
  COPPER_CHECK(!out_dir.empty(), op, "no output folder given");
  const auto t_start = std::chrono::steady_clock::now();
  const fs::path out = fs::absolute(out_dir).lexically_normal();
  const std::map<std::string, std::string> paths = {{"train", train_path}, {"valid", valid_path}, {"test", test_path}};

  std::map<std::string, std::string> texts, source_sha;
  for (const auto& name : kSplits) {
    texts[name] = read_text_file(paths.at(name));
    source_sha[name] = sha256_hex(texts[name]);
  }

  // What is in out_dir already decides between nothing to do, replace, and refuse.
  std::error_code ec;
  bool replace = false;
  if (fs::exists(out, ec)) {
    COPPER_CHECK(fs::is_directory(out, ec), op, "{} exists and is not a folder. HINT: choose another output folder",
                 out.string());
    if (fs::exists(out / kManifest, ec)) {
      nlohmann::json old;
      try {
        old = nlohmann::json::parse(read_binary_file((out / kManifest).string()));
      } catch (const nlohmann::json::exception&) {
      }
      if (!force && same_request(old, kind, vocab, source_sha)) {
        try {
          open_prepared(out.string());
          fmt::print(stderr, "[prepare] {} already holds these texts prepared with {} (vocab {}): nothing to do\n",
                     out.string(), kind, old["tokenizer"]["vocab"].get<int64_t>());
          return old;
        } catch (const Error& e) {
          fmt::print(stderr, "[prepare] {} is damaged ({}); preparing it again\n", out.string(), e.what());
        }
      } else {
        COPPER_CHECK(force, op, "{} already holds prepared data of other texts or another tokenizer. HINT: pass "
                     "--force to replace it, or choose another output folder", out.string());
      }
      replace = true;
    } else {
      COPPER_CHECK(fs::is_empty(out, ec), op, "{} exists, is not empty and is not a prepared data folder (no {}); it "
                   "is left alone even with --force. HINT: choose another output folder", out.string(), kManifest);
      fs::remove(out, ec);
    }
  }

  // Everything is written into a staging sibling, then renamed into place. Staging folders
  // of earlier runs that were killed (their process is gone) are removed first.
  const std::string stage_prefix = fmt::format(".{}.tmp-", out.filename().string());
  if (fs::exists(out.parent_path(), ec))
    for (const auto& e : fs::directory_iterator(out.parent_path(), ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind(stage_prefix, 0) != 0) continue;
      const long pid = std::strtol(name.c_str() + stage_prefix.size(), nullptr, 10);
      if (pid > 0 && ::kill(pid_t(pid), 0) != 0 && errno == ESRCH) fs::remove_all(e.path(), ec);
    }
  const fs::path stage = out.parent_path() / fmt::format("{}{}", stage_prefix, ::getpid());
  fs::remove_all(stage, ec);
  fs::create_directories(stage);
  RemoveOnExit stage_guard{stage};

  auto t0 = std::chrono::steady_clock::now();
  fmt::print(stderr, "[prepare] training the {} tokenizer{} on {} ({}) ...\n", kind,
             kind == "word" ? "" : fmt::format(" (vocab {})", vocab), paths.at("train"), mb(texts["train"].size()));
  auto tok = train_tokenizer(kind, texts["train"], vocab, stage.string());
  const std::string tok_file = tok->file_name();
  fmt::print(stderr, "[prepare] tokenizer: {} pieces in {:.1f} s\n", tok->vocab_size(), seconds_since(t0));

  const bool u16 = tok->vocab_size() <= kMaxU16Vocab;
  const char* dtype = u16 ? "uint16" : "uint32";
  nlohmann::json manifest = {
      {"format", kManifestFormat},
      {"tokenizer",
       {{"kind", kind}, {"vocab", tok->vocab_size()}, {"file", tok_file},
        {"sha256", sha256_file((stage / tok_file).string())}}},
      {"splits", nlohmann::json::object()}};
  for (const auto& name : kSplits) {
    t0 = std::chrono::steady_clock::now();
    const std::string& text = texts[name];
    std::vector<uint32_t> ids;
    try {
      ids = encode_parallel(*tok, text);
    } catch (const Error& e) {
      COPPER_THROW(op, "encoding the {} split ({}): {}", name, paths.at(name), e.what());
    }
    std::string bin;
    if (u16) {
      std::vector<uint16_t> narrow(ids.begin(), ids.end());
      bin.assign(reinterpret_cast<const char*>(narrow.data()), narrow.size() * sizeof(uint16_t));
    } else {
      bin.assign(reinterpret_cast<const char*>(ids.data()), ids.size() * sizeof(uint32_t));
    }
    const std::string file = name + ".bin";
    write_file_atomic((stage / file).string(), bin);
    const int64_t bytes = count_bytes(text);
    manifest["splits"][name] = {{"source", fs::absolute(paths.at(name)).lexically_normal().string()},
                                {"source_sha256", source_sha[name]},
                                {"bytes", bytes},
                                {"lines", count_lines(text)},
                                {"words", count_words(text)},
                                {"tokens", int64_t(ids.size())},
                                {"dtype", dtype},
                                {"file", file},
                                {"sha256", sha256_hex(bin)}};
    fmt::print(stderr, "[prepare] {}: {} bytes -> {} tokens ({:.2f} bytes/token) in {:.1f} s\n", name, bytes,
               ids.size(), double(bytes) / double(std::max<size_t>(ids.size(), 1)), seconds_since(t0));
    texts[name].clear();
    texts[name].shrink_to_fit();
  }
  write_file_atomic((stage / kManifest).string(), manifest.dump(2) + "\n");

  // Swap into place: the old folder (force) is moved aside first and removed last.
  if (replace) {
    const fs::path old = out.parent_path() / fmt::format(".{}.old-{}", out.filename().string(), ::getpid());
    fs::remove_all(old, ec);
    fs::rename(out, old);
    fs::rename(stage, out);
    fs::remove_all(old, ec);
  } else {
    fs::rename(stage, out);
  }
  stage_guard.path.clear();
  fmt::print(stderr, "[prepare] wrote {} in {:.1f} s\n", out.string(), seconds_since(t_start));
  return manifest;
}

// ---------------- TokenFile ----------------

TokenFile::TokenFile(const std::string& path, int64_t tokens, int bytes_per_token)
    : path_(path), tokens_(tokens), width_(bytes_per_token) {
  constexpr char op[] = "TokenFile";
  COPPER_CHECK(width_ == 2 || width_ == 4, op, "{}: {} bytes per token; only 2 (uint16) and 4 (uint32) exist", path,
               width_);
  COPPER_CHECK(tokens >= 0, op, "{}: negative token count {}", path, tokens);
  int fd = ::open(path.c_str(), O_RDONLY);
  COPPER_CHECK(fd >= 0, op, "cannot open the token file {}: {}. {}", path, std::strerror(errno), kRerunHint);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    COPPER_THROW(op, "cannot stat {}: {}", path, std::strerror(errno));
  }
  const int64_t want = tokens * width_;
  if (int64_t(st.st_size) != want) {
    ::close(fd);
    COPPER_THROW(op, "{} has {} bytes but the manifest says {} tokens of {} bytes ({} bytes): the token file is "
                 "truncated or was replaced. {}", path, int64_t(st.st_size), tokens, width_, want, kRerunHint);
  }
  if (want > 0) {
    void* p = ::mmap(nullptr, size_t(want), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      COPPER_THROW(op, "cannot memory-map {}: {}", path, std::strerror(errno));
    }
    data_ = p;
    map_bytes_ = size_t(want);
  }
  ::close(fd);  // the mapping stays valid
}

TokenFile::~TokenFile() {
  if (data_) ::munmap(const_cast<void*>(data_), map_bytes_);
}

TokenFile::TokenFile(TokenFile&& o) noexcept
    : path_(std::move(o.path_)), data_(o.data_), map_bytes_(o.map_bytes_), tokens_(o.tokens_), width_(o.width_) {
  o.data_ = nullptr, o.map_bytes_ = 0, o.tokens_ = 0;
}

TokenFile& TokenFile::operator=(TokenFile&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(const_cast<void*>(data_), map_bytes_);
    path_ = std::move(o.path_), data_ = o.data_, map_bytes_ = o.map_bytes_, tokens_ = o.tokens_, width_ = o.width_;
    o.data_ = nullptr, o.map_bytes_ = 0, o.tokens_ = 0;
  }
  return *this;
}

void TokenFile::copy(int64_t start, int64_t n, int64_t* out) const {
  COPPER_CHECK(start >= 0 && n >= 0 && start + n <= tokens_, "TokenFile.copy", "window [{}, {}) is outside {} ({} "
               "tokens)", start, start + n, path_, tokens_);
  if (width_ == 2) {
    const auto* p = static_cast<const uint16_t*>(data_) + start;
    for (int64_t i = 0; i < n; ++i) out[i] = p[i];
  } else {
    const auto* p = static_cast<const uint32_t*>(data_) + start;
    for (int64_t i = 0; i < n; ++i) out[i] = p[i];
  }
}

std::string_view TokenFile::bytes() const {
  return data_ ? std::string_view(static_cast<const char*>(data_), map_bytes_) : std::string_view();
}

// ---------------- open_prepared ----------------

const TokenFile& PreparedData::split(const std::string& name) const {
  auto it = splits.find(name);
  COPPER_CHECK(it != splits.end(), "PreparedData", "no split '{}' in {}. HINT: the splits are train, valid, test",
               name, dir);
  return it->second;
}

const nlohmann::json& PreparedData::split_info(const std::string& name) const {
  split(name);
  return manifest.at("splits").at(name);
}

PreparedData open_prepared(const std::string& dir) {
  constexpr char op[] = "open_prepared";
  const fs::path d(dir);
  std::error_code ec;
  COPPER_CHECK(fs::exists(d / kManifest, ec), op, "{} is not a prepared data folder (no {}). HINT: run `copper lm "
               "prepare --out {}` first", dir, kManifest, dir);
  PreparedData data;
  data.dir = dir;
  try {
    data.manifest = nlohmann::json::parse(read_binary_file((d / kManifest).string()));
  } catch (const nlohmann::json::exception& e) {
    COPPER_THROW(op, "{} is not valid JSON ({}). {}", (d / kManifest).string(), e.what(), kRerunHint);
  }
  const auto& m = data.manifest;
  try {
    COPPER_CHECK(m.at("format") == kManifestFormat, op, "{}/{} has format {}, this program reads format {}. {}", dir,
                 kManifest, m.at("format").dump(), kManifestFormat, kRerunHint);
    const auto& t = m.at("tokenizer");
    const std::string tok_file = t.at("file");
    const fs::path tok_path = d / tok_file;
    COPPER_CHECK(fs::exists(tok_path, ec), op, "the tokenizer file {} is missing. {}", tok_path.string(), kRerunHint);
    const std::string tok_sha = sha256_file(tok_path.string());
    COPPER_CHECK(tok_sha == t.at("sha256").get<std::string>(), op, "{} was changed after the token files were made "
                 "(sha256 {} where the manifest says {}): the token files do not match the tokenizer. {}",
                 tok_path.string(), tok_sha, t.at("sha256").get<std::string>(), kRerunHint);
    data.tokenizer = load_tokenizer(dir);
    COPPER_CHECK(data.tokenizer->kind() == t.at("kind").get<std::string>() &&
                     data.tokenizer->vocab_size() == t.at("vocab").get<int64_t>(),
                 op, "the tokenizer in {} is {} with {} ids, the manifest says {} with {}: the token files do not "
                 "match the tokenizer. {}", dir, data.tokenizer->kind(), data.tokenizer->vocab_size(),
                 t.at("kind").get<std::string>(), t.at("vocab").get<int64_t>(), kRerunHint);
    for (const auto& name : kSplits) {
      const auto& s = m.at("splits").at(name);
      const std::string dtype = s.at("dtype");
      COPPER_CHECK(dtype == "uint16" || dtype == "uint32", op, "split {} has dtype '{}'; only uint16 and uint32 "
                   "exist. {}", name, dtype, kRerunHint);
      TokenFile f((d / s.at("file").get<std::string>()).string(), s.at("tokens").get<int64_t>(),
                  dtype == "uint16" ? 2 : 4);
      const std::string sha = sha256_hex(f.bytes());
      COPPER_CHECK(sha == s.at("sha256").get<std::string>(), op, "{} was changed after prepare (sha256 {} where the "
                   "manifest says {}): the token files do not match the manifest and tokenizer. {}", f.path(), sha,
                   s.at("sha256").get<std::string>(), kRerunHint);
      data.splits.emplace(name, std::move(f));
    }
  } catch (const nlohmann::json::exception& e) {
    COPPER_THROW(op, "{}/{} lacks a field or has one of the wrong type: {}. {}", dir, kManifest, e.what(), kRerunHint);
  }
  return data;
}

// ---------------- WindowSource ----------------

WindowSource::WindowSource(const TokenFile& tokens, int64_t batch_size, int64_t context, uint64_t seed)
    : tokens_(tokens), B_(batch_size), T_(context), gen_(seed) {
  constexpr char op[] = "WindowSource";
  COPPER_CHECK(B_ >= 1 && T_ >= 1, op, "batch size {} and context {} must both be at least 1", B_, T_);
  COPPER_CHECK(tokens_.size() >= T_ + 1, op, "{} holds {} tokens, fewer than one window of context {} + 1. HINT: a "
               "shorter context", tokens_.path(), tokens_.size(), T_);
}

train::Batch WindowSource::batch(int64_t step) {
  COPPER_CHECK(step == next_step_, "WindowSource.batch", "asked for step {} but the next step is {}: batches must be "
               "asked for in order (restore() sets where to continue)", step, next_step_);
  std::vector<int64_t> ids(size_t(B_ * T_)), targets(size_t(B_ * T_)), row(size_t(T_ + 1));
  // Offsets 0 .. N-T-1, so that the window's last token (offset + T) is inside the file.
  const uint64_t n_offsets = uint64_t(tokens_.size() - T_);
  for (int64_t b = 0; b < B_; ++b) {
    const int64_t off = int64_t(gen_.below(n_offsets));
    tokens_.copy(off, T_ + 1, row.data());
    std::copy(row.begin(), row.end() - 1, ids.begin() + b * T_);
    std::copy(row.begin() + 1, row.end(), targets.begin() + b * T_);
  }
  ++next_step_;
  train::Batch out;
  out.ids = from_vector(ids, {B_, T_});
  out.targets = from_vector(targets, {B_, T_});
  out.tokens = B_ * T_;
  return out;
}

nlohmann::json WindowSource::state() const {
  return {{"generator", nn::generator_to_json(gen_)}, {"next_step", next_step_}};
}

void WindowSource::restore(const nlohmann::json& state) {
  try {
    nn::generator_from_json(gen_, state.at("generator"));
    next_step_ = state.at("next_step").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    COPPER_THROW("WindowSource.restore", "the saved data state is not a WindowSource state ({}). HINT: resume with "
                 "the data the run was started with", e.what());
  }
}

// ---------------- sliding-window evaluation ----------------

int64_t count_windows(int64_t n_tokens, int64_t context, int64_t stride) {
  const int64_t m = n_tokens - 1;  // targets
  if (m <= context) return m >= 1 ? 1 : 0;
  return (m - context + stride - 1) / stride + 1;
}

void for_each_window(const TokenFile& tokens, int64_t context, int64_t stride,
                     const std::function<void(const EvalWindow&)>& fn) {
  constexpr char op[] = "for_each_window";
  COPPER_CHECK(context >= 1 && stride >= 1 && stride <= context, op, "need 1 <= stride <= context, got stride {} and "
               "context {}. HINT: stride = context scores disjoint windows; a smaller stride gives more context",
               stride, context);
  const int64_t m = tokens.size() - 1;  // target positions 1..m
  COPPER_CHECK(m >= 1, op, "{} holds {} tokens; evaluation needs at least 2", tokens.path(), tokens.size());
  EvalWindow w;
  int64_t scored_end = 0;  // targets up to this window-end position are scored
  for (int64_t start = 0;; start += stride) {
    const bool last = start + context >= m;
    if (last) start = std::max<int64_t>(0, m - context);
    w.start = start;
    w.length = last ? m - start : context;
    const int64_t end = start + w.length;
    w.score_from = w.length - (end - scored_end);
    w.ids.resize(size_t(w.length));
    w.targets.resize(size_t(w.length));
    tokens.copy(start, w.length, w.ids.data());
    tokens.copy(start + 1, w.length, w.targets.data());
    fn(w);
    scored_end = end;
    if (last) break;
  }
}

}  // namespace copper::lm
