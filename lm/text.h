// text.h — reading a corpus file into memory as checked UTF-8 text, and counting it.
//
// read_text_file() takes a plain .txt or an xz-compressed .txt.xz (decoded with liblzma as a
// stream straight into the result string) and checks that the text is UTF-8, so that every
// later stage (tokenizer training, encoding, counting) can assume valid UTF-8.
// Also here: SHA-256 (the checksums of the prepared-data manifest) and the counts that
// language-model papers report (bytes, lines, words with one <eos> per line).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace copper::lm {

// The whole text of `path`: a .txt file, or an xz file (name ending in .xz, or any file that
// starts with the xz magic bytes). Throws copper::Error, naming the file, when it is missing
// or unreadable, empty (also when it decompresses to nothing), a corrupt or truncated xz
// stream, or not UTF-8 (the message gives the byte offset, the line and column, and the bad
// byte escaped like \xff).
std::string read_text_file(const std::string& path);

// The bytes of a file as they are (no decompression, no UTF-8 check); throws if it is
// missing or unreadable.
std::string read_binary_file(const std::string& path);

// True if `text` is well-formed UTF-8 (no overlong forms, no surrogates, nothing above
// U+10FFFF). If not and bad_offset is given, it receives the offset of the first bad byte.
bool is_valid_utf8(std::string_view text, size_t* bad_offset = nullptr);

// Throws copper::Error "[op] <what> is not UTF-8 text: byte \xff at byte offset N (line L,
// column C)" if `text` is not UTF-8; `what` names the text (a file path, "the input").
void check_utf8(std::string_view text, const std::string& what, const char* op = "read_text_file");

// Lowercase hex SHA-256 of the bytes (FIPS 180-4).
std::string sha256_hex(std::string_view bytes);
// SHA-256 of a file's bytes, read in chunks. Throws if the file cannot be read.
std::string sha256_file(const std::string& path);

// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so
// the file is either the old one or the whole new one. Throws copper::Error on failure.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Counts, WikiText / PyTorch word_language_model convention:
//   lines: '\n'-terminated lines, plus a last line without '\n' if it is not empty;
//   words: whitespace-separated words (ASCII whitespace: space \t \n \v \f \r) plus one <eos>
//          for every line, empty lines included (= the word-level token count);
//   bytes: UTF-8 bytes.
int64_t count_lines(std::string_view text);
int64_t count_words(std::string_view text);
inline int64_t count_bytes(std::string_view text) { return int64_t(text.size()); }

// ASCII whitespace, the separator of words above.
inline bool is_space_byte(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

}  // namespace copper::lm
