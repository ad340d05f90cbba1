// tokenizer.h — text <-> token ids for the language models.
//
// Three kinds, one interface:
//   "bpe", "unigram"  SentencePiece models (tokenizer.model) trained on the train split. They
//                     are lossless: decode(encode(text)) == text byte for byte, newlines, runs
//                     of spaces and tabs included, and no character is ever unknown (byte
//                     fallback: a character outside the vocabulary becomes its UTF-8 bytes).
//   "word"            WikiText word level (tokenizer.vocab): the whitespace-separated words of
//                     the train split in order of first appearance, plus "<eos>" closing every
//                     line — the same ids as PyTorch's word_language_model data.Dictionary
//                     (33,278 types on WikiText-2). Lossless on WikiText-layout text.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace copper::lm {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // "bpe", "unigram" or "word".
  virtual std::string kind() const = 0;
  // Number of ids; every id is in [0, vocab_size()).
  virtual int64_t vocab_size() const = 0;
  // Token ids of UTF-8 text. "word" throws copper::Error naming the first word that is not in
  // the vocabulary (and its line); the SentencePiece kinds accept any UTF-8 text.
  virtual std::vector<uint32_t> encode(std::string_view text) const = 0;
  // The text of ids (throws on an id >= vocab_size()). For "word": each <eos>-closed line is
  // written the WikiText way, " " + words joined by " " + " \n" (an empty line is " \n");
  // words after the last <eos> are written " w1 w2" without a newline.
  virtual std::string decode(const std::vector<uint32_t>& ids) const = 0;
  // One token as text for printing: the SentencePiece piece ("▁the", "<0x0A>") or the word.
  virtual std::string piece(uint32_t id) const = 0;
  // The model file's name inside a folder: "tokenizer.model" or "tokenizer.vocab".
  virtual std::string file_name() const = 0;
  // Writes the model file into `dir` (created if missing); returns its path.
  virtual std::string save(const std::string& dir) const = 0;
};

// The same ids as tok.encode(text), computed on `threads` threads (0: one per core, at most
// kMaxEncodeThreads). Every tokenizer here encodes line by line, so cutting the text after a
// newline into one chunk per thread and joining the results changes nothing. Texts under
// kMinParallelBytes are encoded on the calling thread.
inline constexpr int kMaxEncodeThreads = 8;
inline constexpr size_t kMinParallelBytes = 1 << 20;
std::vector<uint32_t> encode_parallel(const Tokenizer& tok, std::string_view text, int threads = 0);

// The tokenizer saved in `dir` (tokenizer.model: SentencePiece, bpe or unigram as trained;
// tokenizer.vocab: word), or in the file `dir` names (by its extension, .model or .vocab).
// Throws copper::Error if neither file is there or it does not load.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir);

// Trains a tokenizer of `kind` on `train_text` and saves it into out_dir (if not empty).
//   bpe / unigram: `vocab` ids in all (at least 300: 256 byte pieces, <unk> and some merges).
//     Training samples at most kMaxTrainLines lines of the text (see tokenizer.cpp).
//   word: the vocabulary is every word of train_text; `vocab` must be 0 (take them all) or
//     equal to that number.
// Throws copper::Error on an unknown kind, a bad vocab size, or a SentencePiece failure.
std::unique_ptr<Tokenizer> train_tokenizer(const std::string& kind, std::string_view train_text, int64_t vocab,
                                           const std::string& out_dir);

}  // namespace copper::lm
