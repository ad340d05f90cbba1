// text.cpp — corpus reading (plain or xz), UTF-8 checks, SHA-256, counts.
#include "lm/text.h"

#include <lzma.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "tensor/error.h"

namespace copper::lm {
namespace {

constexpr size_t kReadChunk = 1 << 16;  // bytes read from disk per call
constexpr char kOp[] = "read_text_file";
constexpr std::array<unsigned char, 6> kXzMagic = {0xFD, '7', 'z', 'X', 'Z', 0x00};

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

File open_or_throw(const std::string& path, const char* op) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec))
    COPPER_THROW(op, "file not found: {}. HINT: check the path (the data lives in ../shared/data from the repository root)",
                 path);
  if (fs::is_directory(path, ec)) COPPER_THROW(op, "{} is a directory, not a text file. HINT: give the file's path", path);
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) COPPER_THROW(op, "cannot open {}: {}. HINT: check the file's permissions", path, std::strerror(errno));
  return f;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && std::string_view(s).substr(s.size() - suffix.size()) == suffix;
}

const char* lzma_error_text(lzma_ret r) {
  switch (r) {
    case LZMA_MEM_ERROR: return "out of memory";
    case LZMA_MEMLIMIT_ERROR: return "memory limit reached";
    case LZMA_FORMAT_ERROR: return "not an xz stream (bad header)";
    case LZMA_OPTIONS_ERROR: return "unsupported xz options";
    case LZMA_DATA_ERROR: return "corrupt compressed data";
    case LZMA_BUF_ERROR: return "the stream ends too early (truncated file)";
    default: return "liblzma error";
  }
}

// Decodes the xz stream of `f` (all of it: concatenated streams too) into `out`.
void read_xz(std::FILE* f, const std::string& path, std::string& out) {
  lzma_stream strm = LZMA_STREAM_INIT;
  lzma_ret r = lzma_stream_decoder(&strm, UINT64_MAX, LZMA_CONCATENATED);
  COPPER_CHECK(r == LZMA_OK, kOp, "cannot start the xz decoder for {}: {}", path, lzma_error_text(r));
  struct Ender {
    lzma_stream* s;
    ~Ender() { lzma_end(s); }
  } ender{&strm};

  std::string in(kReadChunk, '\0');
  lzma_action action = LZMA_RUN;
  size_t used = out.size();
  for (;;) {
    if (strm.avail_in == 0 && action == LZMA_RUN) {
      size_t n = std::fread(in.data(), 1, in.size(), f);
      if (std::ferror(f)) COPPER_THROW(kOp, "read error on {}: {}", path, std::strerror(errno));
      strm.next_in = reinterpret_cast<const uint8_t*>(in.data());
      strm.avail_in = n;
      if (n == 0 || std::feof(f)) action = LZMA_FINISH;
    }
    if (used == out.size()) out.resize(std::max<size_t>(out.size() * 2, kReadChunk * 4));
    strm.next_out = reinterpret_cast<uint8_t*>(out.data() + used);
    strm.avail_out = out.size() - used;
    r = lzma_code(&strm, action);
    used = out.size() - strm.avail_out;
    if (r == LZMA_STREAM_END) break;
    if (r != LZMA_OK)
      COPPER_THROW(kOp, "{} is not a readable xz file: {} (after {} bytes of text). HINT: the file is damaged; "
                   "fetch it again or check it with `xz -t {}`", path, lzma_error_text(r), used, path);
  }
  out.resize(used);
}

// Line (1-based) and column (1-based, in bytes) of byte `offset`.
std::pair<int64_t, int64_t> line_col(std::string_view text, size_t offset) {
  int64_t line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < offset; ++i)
    if (text[i] == '\n') ++line, line_start = i + 1;
  return {line, int64_t(offset - line_start) + 1};
}

}  // namespace

bool is_valid_utf8(std::string_view text, size_t* bad_offset) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  auto fail = [&](size_t at) {
    if (bad_offset) *bad_offset = at;
    return false;
  };
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) {  // ASCII, the common case: skip runs quickly
      ++i;
      continue;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;           // no overlong 3-byte forms
    else if (c >= 0xE1 && c <= 0xEC) len = 3;
    else if (c == 0xED) len = 3, hi = 0x9F;           // no UTF-16 surrogates
    else if (c >= 0xEE && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;           // no overlong 4-byte forms
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F;           // nothing above U+10FFFF
    else return fail(i);
    if (i + len > n) return fail(i);
    if (s[i + 1] < lo || s[i + 1] > hi) return fail(i + 1);
    for (size_t k = 2; k < len; ++k)
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return fail(i + k);
    i += len;
  }
  return true;
}

void check_utf8(std::string_view text, const std::string& what, const char* op) {
  size_t bad = 0;
  if (is_valid_utf8(text, &bad)) return;
  auto [line, col] = line_col(text, bad);
  COPPER_THROW(op, "{} is not UTF-8 text: byte \\x{:02x} at byte offset {} (line {}, column {}). HINT: convert it to "
               "UTF-8 first (e.g. iconv -f latin1 -t utf-8)", what, unsigned(static_cast<unsigned char>(text[bad])), bad,
               line, col);
}

std::string read_text_file(const std::string& path) {
  File f = open_or_throw(path, kOp);
  std::array<unsigned char, kXzMagic.size()> head{};
  size_t got = std::fread(head.data(), 1, head.size(), f.get());
  if (got == 0 && !std::ferror(f.get()))
    COPPER_THROW(kOp, "{} is empty. HINT: give a file that holds the text", path);
  const bool xz_magic = got == head.size() && head == kXzMagic;
  if (ends_with(path, ".xz") && !xz_magic)
    COPPER_THROW(kOp, "{} ends in .xz but is not an xz file (no xz header). HINT: rename it if it is plain text, or "
                 "fetch it again", path);
  std::rewind(f.get());

  std::string text;
  if (xz_magic) {
    read_xz(f.get(), path, text);
  } else {
    std::error_code ec;
    auto size = std::filesystem::file_size(path, ec);
    if (!ec) text.reserve(size);
    std::string buf(kReadChunk, '\0');
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) text.append(buf.data(), n);
    if (std::ferror(f.get())) COPPER_THROW(kOp, "read error on {}: {}", path, std::strerror(errno));
  }
  if (text.empty()) COPPER_THROW(kOp, "{} holds no text (it decompresses to 0 bytes). HINT: give a file with text", path);
  check_utf8(text, path, kOp);
  return text;
}

std::string read_binary_file(const std::string& path) {
  File f = open_or_throw(path, "read_binary_file");
  std::string out, buf(kReadChunk, '\0');
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) out.append(buf.data(), n);
  if (std::ferror(f.get())) COPPER_THROW("read_binary_file", "read error on {}: {}", path, std::strerror(errno));
  return out;
}

// ---------------- SHA-256 (FIPS 180-4) ----------------
namespace {

constexpr std::array<uint32_t, 64> kSha256K = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

class Sha256 {
 public:
  void update(const unsigned char* p, size_t n) {
    total_ += n;
    if (fill_ > 0) {
      size_t take = std::min(n, kBlock - fill_);
      std::memcpy(buf_.data() + fill_, p, take);
      fill_ += take, p += take, n -= take;
      if (fill_ < kBlock) return;
      block(buf_.data());
      fill_ = 0;
    }
    for (; n >= kBlock; p += kBlock, n -= kBlock) block(p);
    std::memcpy(buf_.data(), p, n);
    fill_ = n;
  }
  std::string hex() {
    const uint64_t bits = total_ * 8;
    const unsigned char pad = 0x80, zero = 0;
    update(&pad, 1);
    while (fill_ != kBlock - 8) update(&zero, 1);
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(bits >> (56 - 8 * i));
    update(len, 8);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (uint32_t w : h_)
      for (int s = 28; s >= 0; s -= 4) out += kHex[(w >> s) & 0xF];
    return out;
  }

 private:
  static constexpr size_t kBlock = 64;
  void block(const unsigned char* p) {
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = uint32_t(p[4 * i]) << 24 | uint32_t(p[4 * i + 1]) << 16 | uint32_t(p[4 * i + 2]) << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; ++i) {
      uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kSha256K[i] + w[i];
      uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h_[0] += a, h_[1] += b, h_[2] += c, h_[3] += d, h_[4] += e, h_[5] += f, h_[6] += g, h_[7] += h;
  }
  std::array<uint32_t, 8> h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<unsigned char, kBlock> buf_{};
  size_t fill_ = 0;
  uint64_t total_ = 0;
};

}  // namespace

std::string sha256_hex(std::string_view bytes) {
  Sha256 h;
  h.update(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return h.hex();
}

std::string sha256_file(const std::string& path) {
  File f = open_or_throw(path, "sha256_file");
  Sha256 h;
  std::string buf(kReadChunk, '\0');
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0)
    h.update(reinterpret_cast<const unsigned char*>(buf.data()), n);
  if (std::ferror(f.get())) COPPER_THROW("sha256_file", "read error on {}: {}", path, std::strerror(errno));
  return h.hex();
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  constexpr char op[] = "write_file";
  const std::string tmp = path + ".tmp";
  {
    File f(std::fopen(tmp.c_str(), "wb"));
    if (!f) COPPER_THROW(op, "cannot create {}: {}. HINT: check that the folder exists and is writable", tmp,
                         std::strerror(errno));
    if (std::fwrite(bytes.data(), 1, bytes.size(), f.get()) != bytes.size() || std::fflush(f.get()) != 0)
      COPPER_THROW(op, "cannot write {}: {}. HINT: check the free disk space", tmp, std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) COPPER_THROW(op, "cannot rename {} to {}: {}", tmp, path, ec.message());
}

// ---------------- counts ----------------

int64_t count_lines(std::string_view text) {
  int64_t lines = 0;
  for (char c : text) lines += c == '\n';
  if (!text.empty() && text.back() != '\n') ++lines;
  return lines;
}

int64_t count_words(std::string_view text) {
  int64_t words = 0;
  bool in_word = false;
  for (char c : text) {
    bool space = is_space_byte(c);
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  return words + count_lines(text);
}

}  // namespace copper::lm
