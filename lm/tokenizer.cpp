// tokenizer.cpp — the SentencePiece (bpe, unigram) and WikiText word-level tokenizers.
#include "lm/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <unordered_map>

#include "lm/text.h"
#include "tensor/error.h"

namespace copper::lm {
namespace fs = std::filesystem;
namespace {

constexpr char kSpFile[] = "tokenizer.model";
constexpr char kWordFile[] = "tokenizer.vocab";
constexpr char kEos[] = "<eos>";

// ---------------- SentencePiece ----------------
//
// SentencePiece treats its input as sentences without newlines and, by default, normalizes
// text (NFKC, collapsing spaces, a dummy space in front). To make it lossless:
//   - the normalization is the identity, no dummy prefix, extra whitespace kept;
//   - text is encoded line by line and each '\n' becomes the byte piece <0x0A> (byte fallback
//     puts the 256 byte pieces in every model), which decodes back to '\n';
//   - SentencePiece writes a space as U+2581 "▁" and turns every ▁ back into a space when
//     decoding, so a literal ▁ in the text is encoded as its three byte pieces instead;
//   - allow_whitespace_only_pieces lets runs of spaces (code indentation) become one piece.
// Training sees each non-empty line as one sentence.
constexpr char kMetaSpace[] = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space
constexpr int64_t kMinSpVocab = 300;           // 256 byte pieces + <unk> + a few characters
// Lines sampled for training at most (SentencePiece's input_sentence_size, a random sample
// when the text has more). Both corpora fit whole, uncapped: measured wall times, vocab 8192,
// on 2 cores shared with other jobs (load 4-10): BPE on WikiText-2 train (36,718 lines,
// 10.8 MB) 14-20 s, BPE on the code train split (230,368 lines, 8.2 MB) 53-65 s, unigram on
// the code train split 176 s. Slow, but once per prepared folder; lower this to trade
// tokenizer quality for time.
constexpr int64_t kMaxTrainLines = 1000000;
// Longest line used in training, in bytes (WikiText paragraphs run to several KB; longer
// lines are left out of training only, never out of encoding).
constexpr int64_t kMaxTrainLineBytes = 1 << 16;
constexpr unsigned kTrainSeed = 0x5eed;  // SentencePiece's sampling/shuffling seed
constexpr int kTrainThreads = 2;
constexpr char kQuietLogLevel[] = "2";  // SentencePiece logs only errors

// model_type of a serialized SentencePiece ModelProto, read from the protobuf wire format:
// ModelProto field 2 is trainer_spec, whose field 3 is model_type (1 unigram, 2 bpe, 3 word,
// 4 char; absent = unigram). Returns -1 if the bytes do not parse.
int proto_model_type(std::string_view b) {
  auto varint = [](std::string_view& s, uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64 && !s.empty(); shift += 7) {
      auto c = static_cast<unsigned char>(s[0]);
      s.remove_prefix(1);
      v |= uint64_t(c & 0x7F) << shift;
      if (!(c & 0x80)) return true;
    }
    return false;
  };
  // Calls fn(field, wire, payload) for each field of a message; false if malformed.
  auto fields = [&](std::string_view s, auto&& fn) {
    while (!s.empty()) {
      uint64_t key, v;
      if (!varint(s, key)) return false;
      int field = int(key >> 3), wire = int(key & 7);
      std::string_view payload;
      if (wire == 0) {
        std::string_view before = s;
        if (!varint(s, v)) return false;
        payload = before.substr(0, before.size() - s.size());
      } else if (wire == 1 || wire == 5) {
        size_t n = wire == 1 ? 8 : 4;
        if (s.size() < n) return false;
        payload = s.substr(0, n), s.remove_prefix(n);
      } else if (wire == 2) {
        if (!varint(s, v) || v > s.size()) return false;
        payload = s.substr(0, v), s.remove_prefix(v);
      } else {
        return false;
      }
      fn(field, wire, payload);
    }
    return true;
  };
  int type = 1;
  bool ok = fields(b, [&](int field, int wire, std::string_view payload) {
    if (field != 2 || wire != 2) return;
    fields(payload, [&](int f, int w, std::string_view p) {
      uint64_t v;
      if (f == 3 && w == 0 && varint(p, v)) type = int(v);
    });
  });
  return ok ? type : -1;
}

std::string sp_status(const sentencepiece::util::Status& st) { return st.ToString(); }

class SpTokenizer final : public Tokenizer {
 public:
  // `proto`: a serialized ModelProto; `origin` names it in errors.
  SpTokenizer(std::string proto, const std::string& origin) : proto_(std::move(proto)) {
    constexpr char op[] = "load_tokenizer";
    auto st = sp_.LoadFromSerializedProto(proto_);
    COPPER_CHECK(st.ok(), op, "{} is not a SentencePiece model: {}. HINT: re-run `copper lm prepare`", origin,
                 sp_status(st));
    int type = proto_model_type(proto_);
    COPPER_CHECK(type == 1 || type == 2, op, "{} is a SentencePiece model of type {}, not bpe (2) or unigram (1)",
                 origin, type);
    kind_ = type == 2 ? "bpe" : "unigram";
    newline_id_ = sp_.PieceToId("<0x0A>");
    COPPER_CHECK(sp_.IsByte(newline_id_), op, "{} has no byte pieces (it was trained without byte_fallback). "
                 "HINT: train it with train_tokenizer / `copper lm prepare`", origin);
    for (int i = 0; i < 3; ++i) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", unsigned(static_cast<unsigned char>(kMetaSpace[i])));
      meta_space_ids_[i] = uint32_t(sp_.PieceToId(name));
    }
  }

  std::string kind() const override { return kind_; }
  int64_t vocab_size() const override { return sp_.GetPieceSize(); }
  std::string file_name() const override { return kSpFile; }

  std::vector<uint32_t> encode(std::string_view text) const override {
    std::vector<uint32_t> out;
    out.reserve(text.size() / 3);
    std::vector<int> ids;
    auto encode_part = [&](std::string_view part) {
      if (part.empty()) return;
      auto st = sp_.Encode(part, &ids);
      COPPER_CHECK(st.ok(), "tokenizer.encode", "SentencePiece failed: {}", sp_status(st));
      out.insert(out.end(), ids.begin(), ids.end());
    };
    while (!text.empty()) {
      size_t nl = text.find('\n');
      std::string_view line = text.substr(0, nl);
      for (;;) {  // the line, with each literal ▁ as its byte pieces
        size_t m = line.find(kMetaSpace);
        encode_part(line.substr(0, m));
        if (m == std::string_view::npos) break;
        out.insert(out.end(), meta_space_ids_.begin(), meta_space_ids_.end());
        line.remove_prefix(m + 3);
      }
      if (nl == std::string_view::npos) break;
      out.push_back(uint32_t(newline_id_));
      text.remove_prefix(nl + 1);
    }
    return out;
  }

  std::string decode(const std::vector<uint32_t>& ids) const override {
    std::vector<int> v(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      COPPER_CHECK(ids[i] < uint32_t(vocab_size()), "tokenizer.decode", "id {} at position {} is outside the vocabulary "
                   "of {} pieces. HINT: the ids come from another tokenizer", ids[i], i, vocab_size());
      v[i] = int(ids[i]);
    }
    std::string out;
    auto st = sp_.Decode(v, &out);
    COPPER_CHECK(st.ok(), "tokenizer.decode", "SentencePiece failed: {}", sp_status(st));
    return out;
  }

  std::string piece(uint32_t id) const override {
    COPPER_CHECK(id < uint32_t(vocab_size()), "tokenizer.piece", "id {} is outside the vocabulary of {} pieces", id,
                 vocab_size());
    return sp_.IdToPiece(int(id));
  }

  std::string save(const std::string& dir) const override {
    fs::create_directories(dir);
    std::string path = (fs::path(dir) / kSpFile).string();
    write_file_atomic(path, proto_);
    return path;
  }

 private:
  std::string proto_;
  sentencepiece::SentencePieceProcessor sp_;
  std::string kind_;
  int newline_id_ = 0;
  std::array<uint32_t, 3> meta_space_ids_{};
};

// Non-empty lines of a text, one by one, for SentencePiece's trainer.
class LineIterator final : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(std::string_view text) : rest_(text) { Next(); }
  bool done() const override { return done_; }
  void Next() override {
    while (!rest_.empty()) {
      size_t nl = rest_.find('\n');
      std::string_view line = rest_.substr(0, nl);
      rest_.remove_prefix(nl == std::string_view::npos ? rest_.size() : nl + 1);
      if (!line.empty()) {
        line_.assign(line);
        return;
      }
    }
    done_ = true;
  }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  std::string_view rest_;
  std::string line_;
  bool done_ = false;
};

std::unique_ptr<Tokenizer> train_sentencepiece(const std::string& kind, std::string_view text, int64_t vocab) {
  constexpr char op[] = "train_tokenizer";
  COPPER_CHECK(vocab >= kMinSpVocab, op, "vocab {} is too small for a {} tokenizer. HINT: use at least {} (256 of "
               "the ids are byte pieces)", vocab, kind, kMinSpVocab);
  sentencepiece::SetRandomGeneratorSeed(kTrainSeed);
  const std::unordered_map<std::string, std::string> args = {
      {"model_type", kind},
      {"vocab_size", std::to_string(vocab)},
      {"byte_fallback", "true"},
      {"character_coverage", "0.9995"},  // rarer characters are left to the byte pieces
      {"normalization_rule_name", "identity"},
      {"add_dummy_prefix", "false"},
      {"remove_extra_whitespaces", "false"},
      {"allow_whitespace_only_pieces", "true"},
      {"split_digits", "false"},
      {"bos_id", "-1"},  // no <s> </s>: documents are separated by the text itself
      {"eos_id", "-1"},
      {"unk_id", "0"},
      {"hard_vocab_limit", "true"},
      {"input_sentence_size", std::to_string(kMaxTrainLines)},
      {"shuffle_input_sentence", "true"},
      {"max_sentence_length", std::to_string(kMaxTrainLineBytes)},
      {"num_threads", std::to_string(kTrainThreads)},
      {"minloglevel", kQuietLogLevel},
  };
  LineIterator lines(text);
  std::string proto;
  auto st = sentencepiece::SentencePieceTrainer::Train(args, &lines, &proto);
  COPPER_CHECK(st.ok(), op, "SentencePiece {} training with vocab {} failed: {}. HINT: a smaller vocab (the text may "
               "be too small for this many pieces)", kind, vocab, sp_status(st));
  return std::make_unique<SpTokenizer>(std::move(proto), "the trained model");
}

// ---------------- word level ----------------

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Calls fn(word) for each whitespace-separated word of line and returns how many there were.
template <class Fn>
void for_each_word(std::string_view line, Fn&& fn) {
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_space_byte(line[i])) ++i;
    size_t j = i;
    while (j < line.size() && !is_space_byte(line[j])) ++j;
    if (j > i) fn(line.substr(i, j - i));
    i = j;
  }
}

// Calls fn(line, line_number) for each line (the WikiText lines: '\n'-terminated, plus a last
// line without '\n' if it is not empty).
template <class Fn>
void for_each_line(std::string_view text, Fn&& fn) {
  int64_t number = 1;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    fn(text.substr(0, nl), number++);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

class WordTokenizer final : public Tokenizer {
 public:
  explicit WordTokenizer(std::vector<std::string> words, const std::string& origin) : words_(std::move(words)) {
    index_.reserve(words_.size());
    for (size_t i = 0; i < words_.size(); ++i) {
      const auto& w = words_[i];
      COPPER_CHECK(!w.empty() && std::none_of(w.begin(), w.end(), is_space_byte), "load_tokenizer",
                   "{}: entry {} ('{}') is not a word (empty or with whitespace)", origin, i, w);
      bool fresh = index_.emplace(w, uint32_t(i)).second;
      COPPER_CHECK(fresh, "load_tokenizer", "{}: the word '{}' appears twice (ids {} and {})", origin, w,
                   index_.find(w)->second, i);
    }
    auto it = index_.find(std::string_view(kEos));
    COPPER_CHECK(it != index_.end(), "load_tokenizer", "{} has no {} entry. HINT: re-run `copper lm prepare`", origin,
                 kEos);
    eos_ = it->second;
  }

  std::string kind() const override { return "word"; }
  int64_t vocab_size() const override { return int64_t(words_.size()); }
  std::string file_name() const override { return kWordFile; }

  std::vector<uint32_t> encode(std::string_view text) const override {
    std::vector<uint32_t> out;
    out.reserve(text.size() / 5);
    for_each_line(text, [&](std::string_view line, int64_t number) {
      for_each_word(line, [&](std::string_view w) {
        auto it = index_.find(w);
        COPPER_CHECK(it != index_.end(), "tokenizer.encode", "the word '{}' (line {}) is not in the vocabulary of {} "
                     "words. HINT: a word-level tokenizer covers only its train split's words (WikiText writes rare "
                     "words as <unk>); use a bpe or unigram tokenizer for other text", w, number, words_.size());
        out.push_back(it->second);
      });
      out.push_back(eos_);
    });
    return out;
  }

  std::string decode(const std::vector<uint32_t>& ids) const override {
    std::string out;
    for (size_t i = 0; i < ids.size(); ++i) {
      uint32_t id = ids[i];
      COPPER_CHECK(id < words_.size(), "tokenizer.decode", "id {} at position {} is outside the vocabulary of {} "
                   "words. HINT: the ids come from another tokenizer", id, i, words_.size());
      if (id == eos_) {
        out += " \n";  // closes " w1 w2" as " w1 w2 \n", and an empty line as " \n"
        continue;
      }
      out += ' ';
      out += words_[id];
    }
    return out;
  }

  std::string piece(uint32_t id) const override {
    COPPER_CHECK(id < words_.size(), "tokenizer.piece", "id {} is outside the vocabulary of {} words", id,
                 words_.size());
    return words_[id];
  }

  std::string save(const std::string& dir) const override {
    fs::create_directories(dir);
    std::string body;
    for (const auto& w : words_) body += w, body += '\n';
    std::string path = (fs::path(dir) / kWordFile).string();
    write_file_atomic(path, body);
    return path;
  }

 private:
  std::vector<std::string> words_;
  std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> index_;
  uint32_t eos_ = 0;
};

std::unique_ptr<Tokenizer> train_word(std::string_view text, int64_t vocab) {
  std::vector<std::string> words;
  std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> seen;
  auto add = [&](std::string_view w) {
    if (seen.find(w) == seen.end()) {
      seen.emplace(std::string(w), uint32_t(words.size()));
      words.emplace_back(w);
    }
  };
  // PyTorch's data.Dictionary order: each line's words, then <eos>.
  for_each_line(text, [&](std::string_view line, int64_t) {
    for_each_word(line, add);
    add(kEos);
  });
  COPPER_CHECK(vocab <= 0 || vocab == int64_t(words.size()), "train_tokenizer", "a word tokenizer takes every word "
               "of the train split: {} types here, not the {} asked for. HINT: pass vocab 0 for word level",
               words.size(), vocab);
  return std::make_unique<WordTokenizer>(std::move(words), "the trained vocabulary");
}

}  // namespace

std::vector<uint32_t> encode_parallel(const Tokenizer& tok, std::string_view text, int threads) {
  if (threads <= 0) threads = int(std::min<unsigned>(std::max(1u, std::thread::hardware_concurrency()), kMaxEncodeThreads));
  if (threads == 1 || text.size() < kMinParallelBytes) return tok.encode(text);
  // Chunk boundaries: just after the first newline at or past each k/threads of the text.
  std::vector<std::string_view> chunks;
  size_t begin = 0;
  for (int k = 1; k <= threads && begin < text.size(); ++k) {
    size_t end = text.size();
    if (k < threads) {
      size_t nl = text.find('\n', std::max(begin, text.size() * size_t(k) / size_t(threads)));
      if (nl != std::string_view::npos) end = nl + 1;
    }
    chunks.push_back(text.substr(begin, end - begin));
    begin = end;
  }
  std::vector<std::vector<uint32_t>> parts(chunks.size());
  std::vector<std::exception_ptr> errors(chunks.size());
  {
    std::vector<std::jthread> pool;
    for (size_t i = 0; i < chunks.size(); ++i)
      pool.emplace_back([&, i] {
        try {
          parts[i] = tok.encode(chunks[i]);
        } catch (...) {
          errors[i] = std::current_exception();
        }
      });
  }
  // A chunk's error would count lines from the chunk's start: the whole text again on this
  // thread throws the same error with the right line number.
  for (auto& e : errors)
    if (e) return tok.encode(text);
  std::vector<uint32_t> out;
  size_t total = 0;
  for (const auto& p : parts) total += p.size();
  out.reserve(total);
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir) {
  constexpr char op[] = "load_tokenizer";
  std::error_code ec;
  if (fs::is_regular_file(dir, ec)) {  // a model file itself, by its extension
    if (fs::path(dir).extension() == ".model") return std::make_unique<SpTokenizer>(read_binary_file(dir), dir);
    COPPER_CHECK(fs::path(dir).extension() == ".vocab", op, "{} is neither a .model (SentencePiece) nor a .vocab "
                 "(word) file. HINT: give the prepared folder", dir);
    std::string body = read_text_file(dir);
    std::vector<std::string> words;
    for_each_line(body, [&](std::string_view line, int64_t) { words.emplace_back(line); });
    return std::make_unique<WordTokenizer>(std::move(words), dir);
  }
  const fs::path sp = fs::path(dir) / kSpFile, word = fs::path(dir) / kWordFile;
  if (fs::exists(sp, ec)) {
    return load_tokenizer(sp.string());
  }
  if (fs::exists(word, ec)) return load_tokenizer(word.string());
  COPPER_THROW(op, "no tokenizer in {} (neither {} nor {}). HINT: run `copper lm prepare` to make one", dir, kSpFile,
               kWordFile);
}

std::unique_ptr<Tokenizer> train_tokenizer(const std::string& kind, std::string_view train_text, int64_t vocab,
                                           const std::string& out_dir) {
  std::unique_ptr<Tokenizer> tok;
  if (kind == "bpe" || kind == "unigram") tok = train_sentencepiece(kind, train_text, vocab);
  else if (kind == "word") tok = train_word(train_text, vocab);
  else COPPER_THROW("train_tokenizer", "unknown tokenizer kind '{}'. HINT: use bpe, unigram or word", kind);
  if (!out_dir.empty()) tok->save(out_dir);
  return tok;
}

}  // namespace copper::lm
