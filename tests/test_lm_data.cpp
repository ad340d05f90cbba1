// test_lm_data.cpp — the language-model data layer (lm/): text reading, tokenizers, prepared
// folders, training windows and evaluation windows.
#include <gtest/gtest.h>
#include <lzma.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "lm/dataset.h"
#include "lm/text.h"
#include "lm/tokenizer.h"
#include "tensor/error.h"
#include "test_util.h"

using namespace copper;
using namespace copper::lm;
namespace fs = std::filesystem;

namespace {

const std::string kDataDir = COPPER_SOURCE_DIR "/../shared/data";

#define SKIP_WITHOUT_DATA()                                                              \
  do {                                                                                   \
    if (!fs::exists(kDataDir + "/wikitext-2/test.txt.xz"))                               \
      GTEST_SKIP() << "no corpus at " << kDataDir << " (shared/data is not checked out)"; \
  } while (0)

void write_bytes(const fs::path& p, std::string_view bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

std::string xz_compress(std::string_view text) {
  std::string out(lzma_stream_buffer_bound(text.size()), '\0');
  size_t pos = 0;
  lzma_ret r = lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64, nullptr, reinterpret_cast<const uint8_t*>(text.data()),
                                       text.size(), reinterpret_cast<uint8_t*>(out.data()), &pos, out.size());
  EXPECT_EQ(r, LZMA_OK);
  out.resize(pos);
  return out;
}

// The message of the copper::Error that fn throws ("" if it throws none).
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A line-aligned slice of at most `bytes` bytes from the start of text.
std::string head_lines(const std::string& text, size_t bytes) {
  if (text.size() <= bytes) return text;
  size_t nl = text.rfind('\n', bytes);
  return text.substr(0, nl + 1);
}

}  // namespace

// ---------------- text ----------------

TEST(LmText, Sha256KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // 55, 56 and 64 bytes: the padding edge cases
  EXPECT_EQ(sha256_hex(std::string(55, 'a')), "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  EXPECT_EQ(sha256_hex(std::string(56, 'a')), "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  EXPECT_EQ(sha256_hex(std::string(64, 'a')), "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST(LmText, Utf8Validation) {
  EXPECT_TRUE(is_valid_utf8("plain ascii\n"));
  EXPECT_TRUE(is_valid_utf8("caf\xC3\xA9 \xE2\x96\x81 \xF0\x9F\x98\x80"));
  size_t bad = 0;
  EXPECT_FALSE(is_valid_utf8("ab\xFF", &bad));
  EXPECT_EQ(bad, 2u);
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xE2\x96"));          // truncated
}

TEST(LmText, Counts) {
  EXPECT_EQ(count_lines(""), 0);
  EXPECT_EQ(count_lines("a\n\nb"), 3);
  EXPECT_EQ(count_lines("a\n \n"), 2);
  EXPECT_EQ(count_words(" = Title = \n \n a b \n"), 3 + 0 + 2 + 3);
  EXPECT_EQ(count_words("x  y\tz"), 3 + 1);
}

TEST(LmText, ReadsPlainAndXzAlike) {
  auto dir = testing_util::fresh_temp_dir("lm_text");
  std::string text;
  for (int i = 0; i < 20000; ++i) text += " line " + std::to_string(i) + " caf\xC3\xA9\t  x \n";
  write_bytes(dir / "a.txt", text);
  write_bytes(dir / "a.txt.xz", xz_compress(text));
  EXPECT_EQ(read_text_file((dir / "a.txt").string()), text);
  EXPECT_EQ(read_text_file((dir / "a.txt.xz").string()), text);

  // corrupt and truncated xz
  std::string xz = xz_compress(text);
  write_bytes(dir / "trunc.txt.xz", std::string_view(xz).substr(0, xz.size() / 2));
  std::string msg = error_of([&] { read_text_file((dir / "trunc.txt.xz").string()); });
  EXPECT_NE(msg.find("trunc.txt.xz"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  std::string bad = xz;
  bad[bad.size() / 2] ^= 0x55;
  write_bytes(dir / "bad.txt.xz", bad);
  msg = error_of([&] { read_text_file((dir / "bad.txt.xz").string()); });
  EXPECT_NE(msg.find("not a readable xz file"), std::string::npos) << msg;
  write_bytes(dir / "fake.txt.xz", "plain text\n");
  msg = error_of([&] { read_text_file((dir / "fake.txt.xz").string()); });
  EXPECT_NE(msg.find("not an xz file"), std::string::npos) << msg;

  // missing, empty
  msg = error_of([&] { read_text_file((dir / "missing.txt").string()); });
  EXPECT_NE(msg.find("file not found"), std::string::npos) << msg;
  write_bytes(dir / "empty.txt", "");
  msg = error_of([&] { read_text_file((dir / "empty.txt").string()); });
  EXPECT_NE(msg.find("is empty"), std::string::npos) << msg;
  write_bytes(dir / "empty.txt.xz", xz_compress(""));
  msg = error_of([&] { read_text_file((dir / "empty.txt.xz").string()); });
  EXPECT_NE(msg.find("holds no text"), std::string::npos) << msg;
  fs::remove_all(dir);
}

TEST(LmText, NotUtf8NamesByteAndLine) {
  auto dir = testing_util::fresh_temp_dir("lm_utf8");
  std::string text = "first line\nsecond \xFF line\n";
  write_bytes(dir / "latin.txt", text);
  write_bytes(dir / "latin.txt.xz", xz_compress(text));
  for (const char* name : {"latin.txt", "latin.txt.xz"}) {
    std::string msg = error_of([&] { read_text_file((dir / name).string()); });
    EXPECT_NE(msg.find("not UTF-8"), std::string::npos) << msg;
    EXPECT_NE(msg.find("\\xff"), std::string::npos) << msg;
    EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("byte offset 18"), std::string::npos) << msg;
  }
  fs::remove_all(dir);
}

TEST(LmText, WikiText2Counts) {
  SKIP_WITHOUT_DATA();
  std::string test = read_text_file(kDataDir + "/wikitext-2/test.txt.xz");
  EXPECT_EQ(count_bytes(test), 1256449);
  EXPECT_EQ(count_lines(test), 4358);
  EXPECT_EQ(count_words(test), 245569);
  EXPECT_EQ(sha256_hex(test), "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0");
}

// ---------------- tokenizers ----------------

TEST(LmTokenizer, BpeRoundTripsCodeExactly) {
  SKIP_WITHOUT_DATA();
  const std::string train = head_lines(read_text_file(kDataDir + "/code/train.txt.xz"), 1500000);
  const std::string test = read_text_file(kDataDir + "/code/test.txt.xz");
  auto dir = testing_util::fresh_temp_dir("lm_bpe");
  auto tok = train_tokenizer("bpe", train, 1000, dir.string());
  EXPECT_EQ(tok->kind(), "bpe");
  EXPECT_EQ(tok->vocab_size(), 1000);
  std::vector<uint32_t> ids = tok->encode(test);
  EXPECT_LT(ids.size(), test.size() / 2);  // it does compress
  EXPECT_TRUE(tok->decode(ids) == test);
  // Whitespace, newlines and the meta-space character survive; unseen characters fall back to bytes.
  for (std::string s : {std::string(" a\n\n  b\t\t c  \n"), std::string("\n"), std::string("  "),
                        std::string("x \xE2\x96\x81 y\xE2\x96\x81"), std::string("\xF0\x9F\x98\x80 \xE4\xB8\xAD\n ")}) {
    EXPECT_EQ(tok->decode(tok->encode(s)), s) << s;
  }
  // The saved model loads to the same tokenizer.
  auto again = load_tokenizer(dir.string());
  EXPECT_EQ(again->kind(), "bpe");
  EXPECT_EQ(again->encode(test), ids);
  fs::remove_all(dir);
}

TEST(LmTokenizer, UnigramRoundTripsCodeExactly) {
  SKIP_WITHOUT_DATA();
  const std::string train = head_lines(read_text_file(kDataDir + "/code/train.txt.xz"), 400000);
  const std::string test = read_text_file(kDataDir + "/code/test.txt.xz");
  auto dir = testing_util::fresh_temp_dir("lm_uni");
  auto tok = train_tokenizer("unigram", train, 800, dir.string());
  EXPECT_EQ(tok->kind(), "unigram");
  EXPECT_EQ(tok->vocab_size(), 800);
  EXPECT_TRUE(tok->decode(tok->encode(test)) == test);
  auto again = load_tokenizer(dir.string());
  EXPECT_EQ(again->kind(), "unigram");
  fs::remove_all(dir);
}

TEST(LmTokenizer, WordLevelWikiText2) {
  SKIP_WITHOUT_DATA();
  const std::string train = read_text_file(kDataDir + "/wikitext-2/train.txt.xz");
  const std::string test = read_text_file(kDataDir + "/wikitext-2/test.txt.xz");
  auto dir = testing_util::fresh_temp_dir("lm_word");
  auto tok = train_tokenizer("word", train, 0, dir.string());
  EXPECT_EQ(tok->kind(), "word");
  EXPECT_EQ(tok->vocab_size(), 33278);
  EXPECT_EQ(tok->piece(0), "<eos>");  // the first line of train is empty
  std::vector<uint32_t> ids = tok->encode(test);
  EXPECT_EQ(ids.size(), 245569u);
  EXPECT_TRUE(tok->decode(ids) == test);
  auto again = load_tokenizer(dir.string());
  EXPECT_EQ(again->vocab_size(), 33278);
  EXPECT_EQ(again->encode(test), ids);
  std::string msg = error_of([&] { tok->encode(" fine words \n zzqqxx \n"); });
  EXPECT_NE(msg.find("'zzqqxx' (line 2)"), std::string::npos) << msg;
  msg = error_of([&] { train_tokenizer("word", train, 5000, ""); });
  EXPECT_NE(msg.find("33278"), std::string::npos) << msg;
  fs::remove_all(dir);
}

TEST(LmTokenizer, ErrorsAreClear) {
  EXPECT_NE(error_of([] { train_tokenizer("wordpiece", "a b\n", 100, ""); }).find("unknown tokenizer kind"),
            std::string::npos);
  EXPECT_NE(error_of([] { train_tokenizer("bpe", "a b\n", 10, ""); }).find("too small"), std::string::npos);
  auto dir = testing_util::fresh_temp_dir("lm_notok");
  EXPECT_NE(error_of([&] { load_tokenizer(dir.string()); }).find("no tokenizer"), std::string::npos);
  fs::remove_all(dir);
}
