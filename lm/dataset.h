// dataset.h — prepared language-model data: token files on disk, training windows, and the
// sliding windows of perplexity evaluation.
//
// prepare() turns three text splits into a folder:
//   tokenizer.model | tokenizer.vocab   the tokenizer (SentencePiece bpe/unigram, or word level)
//   train.bin valid.bin test.bin        token ids, raw little-endian uint16 (vocab <= 65536)
//                                       or uint32
//   manifest.json                       {"format": 1,
//                                        "tokenizer": {"kind", "vocab", "file", "sha256"},
//                                        "splits": {"train"|"valid"|"test": {"source",
//                                          "source_sha256" (of the unpacked text), "bytes",
//                                          "lines", "words" (whitespace words + one <eos> per
//                                          line: the denominator of word-level perplexity),
//                                          "tokens", "dtype" ("uint16"|"uint32"), "file",
//                                          "sha256" (of the .bin)}}}
// open_prepared() checks that folder and memory-maps the token files, so a corpus is held once
// (by the page cache), never copied.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lm/tokenizer.h"
#include "tensor/random.h"
#include "train/trainer.h"

namespace copper::lm {

inline constexpr int kManifestFormat = 1;
inline const std::vector<std::string> kSplits = {"train", "valid", "test"};

// Prepares out_dir from the three text files (.txt or .txt.xz, read with read_text_file):
// trains a tokenizer of `kind` ("bpe", "unigram": `vocab` pieces; "word": vocab 0 or the
// exact number of types) on the train split, encodes the three splits, writes the files
// above into a temporary sibling folder and renames it into place, so out_dir is never half
// written. If out_dir already holds a prepared folder made from the same texts with the same
// kind and vocab, nothing is done. A different prepared folder is replaced only with force
// (else copper::Error with a HINT); a folder that is not a prepared one (no manifest.json)
// and is not empty is never replaced. Progress goes to stderr. Returns the manifest.
nlohmann::json prepare(const std::string& train_path, const std::string& valid_path, const std::string& test_path,
                       const std::string& kind, int64_t vocab, const std::string& out_dir, bool force = false);

// One split's token ids, memory-mapped read-only.
class TokenFile {
 public:
  // Maps `path` holding `tokens` ids of `bytes_per_token` (2 or 4) bytes each; throws if the
  // file's size is not tokens * bytes_per_token.
  TokenFile(const std::string& path, int64_t tokens, int bytes_per_token);
  ~TokenFile();
  TokenFile(TokenFile&& other) noexcept;
  TokenFile& operator=(TokenFile&& other) noexcept;
  TokenFile(const TokenFile&) = delete;
  TokenFile& operator=(const TokenFile&) = delete;

  int64_t size() const { return tokens_; }
  int bytes_per_token() const { return width_; }
  const std::string& path() const { return path_; }
  // The id at position i, 0 <= i < size() (unchecked, like std::vector's []).
  uint32_t operator[](int64_t i) const {
    return width_ == 2 ? static_cast<const uint16_t*>(data_)[i] : static_cast<const uint32_t*>(data_)[i];
  }
  // Copies ids [start, start + n) into out[0..n) as int64 (the dtype of the models' ids);
  // throws if the range is not inside the file.
  void copy(int64_t start, int64_t n, int64_t* out) const;
  // The mapped bytes (size() * bytes_per_token()).
  std::string_view bytes() const;

 private:
  std::string path_;
  const void* data_ = nullptr;
  size_t map_bytes_ = 0;
  int64_t tokens_ = 0;
  int width_ = 2;
};

// A prepared folder, opened.
struct PreparedData {
  std::string dir;
  nlohmann::json manifest;
  std::unique_ptr<Tokenizer> tokenizer;
  std::map<std::string, TokenFile> splits;  // "train", "valid", "test"

  const TokenFile& split(const std::string& name) const;  // throws on an unknown name
  // The split's manifest entry (bytes, lines, words, tokens ...).
  const nlohmann::json& split_info(const std::string& name) const;
};

// Opens a folder made by prepare(). Checks the manifest's format and fields, that every token
// file exists with size tokens * dtype size and the manifest's sha256, and that the tokenizer
// file's sha256 is the manifest's; on a mismatch throws copper::Error ("the token files do not
// match the tokenizer ...", HINT: re-run prepare with --force).
PreparedData open_prepared(const std::string& dir);

// Random training windows over one token file: each of the B rows is T+1 consecutive tokens
// from a uniformly drawn offset; ids are the first T, targets the last T (next tokens).
// Offsets come from a copper::Generator seeded with `seed`; state() holds that generator and
// the next step, so a restored source continues with exactly the batches it would have given.
class WindowSource : public train::DataSource {
 public:
  // `tokens` must outlive the source and hold at least T+1 ids.
  WindowSource(const TokenFile& tokens, int64_t batch_size, int64_t context, uint64_t seed);
  // Batch of `step`: ids, targets (B, T) i64; tokens = B*T. Steps must come in order from 0
  // or from the step restore() continues at (else copper::Error).
  train::Batch batch(int64_t step) override;
  nlohmann::json state() const override;  // {"generator": ..., "next_step": n}
  void restore(const nlohmann::json& state) override;

 private:
  const TokenFile& tokens_;
  int64_t B_, T_;
  Generator gen_;
  int64_t next_step_ = 0;
};

// One window of sliding-window evaluation.
struct EvalWindow {
  int64_t start = 0;             // position in the file of ids[0]
  int64_t length = 0;            // L = ids.size() = targets.size() (= context, unless the file is shorter)
  int64_t score_from = 0;        // targets[score_from .. L) are scored for the first time here
  std::vector<int64_t> ids;      // (L) tokens start .. start+L-1
  std::vector<int64_t> targets;  // (L) tokens start+1 .. start+L
  int64_t scored() const { return length - score_from; }
};

// Sliding-window perplexity evaluation over a token file of N ids: every target position
// 1..N-1 is scored exactly once, each with as much left context as the window allows.
// Windows start at 0, stride, 2*stride, ... and hold `context` tokens; the first scores all
// its targets, a later one only the targets past the previous window's end (its last
// `stride` ones when stride < context). The last window is moved back to end exactly at
// the file's end, so every window has `context` tokens (a file shorter than context+1 gives
// one window of N-1). Requires 1 <= stride <= context and N >= 2.
void for_each_window(const TokenFile& tokens, int64_t context, int64_t stride,
                     const std::function<void(const EvalWindow&)>& fn);
// How many windows for_each_window gives (for progress bars).
int64_t count_windows(int64_t n_tokens, int64_t context, int64_t stride);

}  // namespace copper::lm
