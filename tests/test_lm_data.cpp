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
#include "tests/test_util.h"

using namespace copper;
using namespace copper::lm;
namespace fs = std::filesystem;
using testing_util::error_of;
using testing_util::write_bytes;

namespace {

const std::string kDataDir = COPPER_SOURCE_DIR "/../shared/data";

#define SKIP_WITHOUT_DATA()                                                              \
  do {                                                                                   \
    if (!fs::exists(kDataDir + "/wikitext-2/test.txt.xz"))                               \
      GTEST_SKIP() << "no corpus at " << kDataDir << " (shared/data is not checked out)"; \
  } while (0)

std::string xz_compress(std::string_view text) {
  std::string out(lzma_stream_buffer_bound(text.size()), '\0');
  size_t pos = 0;
  lzma_ret r = lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64, nullptr, reinterpret_cast<const uint8_t*>(text.data()),
                                       text.size(), reinterpret_cast<uint8_t*>(out.data()), &pos, out.size());
  EXPECT_EQ(r, LZMA_OK);
  out.resize(pos);
  return out;
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
  EXPECT_EQ(encode_parallel(*tok, train, 3), tok->encode(train));  // line-local: chunking changes nothing
  // Whitespace, newlines and the meta-space character survive; unseen characters fall back to bytes.
  for (std::string s : {std::string(" a\n\n  b\t\t c  \n"), std::string("\n"), std::string("  "),
                        std::string("x \xE2\x96\x81 y\xE2\x96\x81"), std::string("crlf\r\nline\r\n"), std::string("\xF0\x9F\x98\x80 \xE4\xB8\xAD\n ")}) {
    EXPECT_EQ(tok->decode(tok->encode(s)), s) << s;
  }
  // The saved model loads to the same tokenizer.
  auto again = load_tokenizer(dir.string());
  EXPECT_EQ(again->kind(), "bpe");
  EXPECT_EQ(load_tokenizer((dir / "tokenizer.model").string())->vocab_size(), 1000);
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
  EXPECT_EQ(encode_parallel(*tok, test, 3), ids);
  std::string msg = error_of([&] { tok->encode(" fine words \n zzqqxx \n"); });
  EXPECT_NE(msg.find("'zzqqxx' (line 2)"), std::string::npos) << msg;
  msg = error_of([&] { encode_parallel(*tok, test + " zzqqxx \n", 3); });  // in the last chunk
  EXPECT_NE(msg.find("'zzqqxx' (line 4359)"), std::string::npos) << msg;
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

// ---------------- prepared folders ----------------

namespace {

// Three small WikiText-layout splits in dir: train.txt, valid.txt.xz, test.txt.
struct SmallCorpus {
  fs::path dir;
  std::string train, valid, test;
  explicit SmallCorpus(const std::string& tag) : dir(testing_util::fresh_temp_dir(tag)) {
    for (int i = 0; i < 300; ++i)
      train += i % 7 == 0 ? " \n" : i % 11 == 0 ? " = Title = \n" : " the cat number " + std::to_string(i * 37) + " sat on the mat \n";
    valid = " \n the mat sat on the cat \n";
    test = " = Title = \n \n the cat number 37 \n";
    write_bytes(dir / "train.txt", train);
    write_bytes(dir / "valid.txt.xz", xz_compress(valid));
    write_bytes(dir / "test.txt", test);
  }
  ~SmallCorpus() { fs::remove_all(dir); }
  nlohmann::json prepare(const std::string& kind, int64_t vocab, const fs::path& out, bool force = false) const {
    return lm::prepare((dir / "train.txt").string(), (dir / "valid.txt.xz").string(), (dir / "test.txt").string(),
                       kind, vocab, out.string(), force);
  }
};

}  // namespace

TEST(LmPrepare, WordRoundTrip) {
  SmallCorpus c("lm_prep_word");
  const fs::path out = c.dir / "prepared";
  nlohmann::json m = c.prepare("word", 0, out);
  EXPECT_EQ(m["format"], 1);
  EXPECT_EQ(m["tokenizer"]["kind"], "word");
  EXPECT_EQ(m["tokenizer"]["file"], "tokenizer.vocab");
  EXPECT_EQ(m["splits"]["test"]["tokens"], count_words(c.test));
  EXPECT_EQ(m["splits"]["test"]["words"], count_words(c.test));
  EXPECT_EQ(m["splits"]["valid"]["lines"], 2);
  EXPECT_EQ(m["splits"]["valid"]["bytes"], int64_t(c.valid.size()));
  EXPECT_EQ(m["splits"]["valid"]["source_sha256"], sha256_hex(c.valid));
  EXPECT_EQ(m["splits"]["train"]["dtype"], "uint16");
  EXPECT_TRUE(fs::exists(out / "manifest.json"));
  // No staging folder is left next to it.
  for (const auto& e : fs::directory_iterator(c.dir)) EXPECT_EQ(e.path().filename().string().find(".prepared"), std::string::npos);

  PreparedData d = open_prepared(out.string());
  EXPECT_EQ(d.tokenizer->kind(), "word");
  for (const auto& [name, text] : {std::pair{"train", &c.train}, {"valid", &c.valid}, {"test", &c.test}}) {
    const TokenFile& f = d.split(name);
    EXPECT_EQ(f.size(), d.split_info(name)["tokens"].get<int64_t>());
    EXPECT_EQ(fs::file_size(out / (std::string(name) + ".bin")), uint64_t(f.size()) * 2);
    std::vector<uint32_t> ids(size_t(f.size()));
    for (int64_t i = 0; i < f.size(); ++i) ids[size_t(i)] = f[i];
    EXPECT_TRUE(d.tokenizer->decode(ids) == *text) << name;
    std::vector<int64_t> window(3);
    f.copy(1, 3, window.data());
    EXPECT_EQ(window[2], int64_t(f[3]));
  }
  EXPECT_THROW(d.split("dev"), Error);
}

TEST(LmPrepare, SentencePieceRoundTripAndReuse) {
  SmallCorpus c("lm_prep_bpe");
  const fs::path out = c.dir / "prepared";
  nlohmann::json m = c.prepare("bpe", 300, out);
  EXPECT_EQ(m["tokenizer"]["file"], "tokenizer.model");
  EXPECT_EQ(m["tokenizer"]["vocab"], 300);
  PreparedData d = open_prepared(out.string());
  EXPECT_EQ(d.tokenizer->kind(), "bpe");
  const TokenFile& f = d.split("test");
  std::vector<uint32_t> ids(size_t(f.size()));
  for (int64_t i = 0; i < f.size(); ++i) ids[size_t(i)] = f[i];
  EXPECT_TRUE(d.tokenizer->decode(ids) == c.test);

  // The same request again does nothing; another one is refused without force.
  EXPECT_EQ(c.prepare("bpe", 300, out), m);
  std::string msg = error_of([&] { c.prepare("bpe", 320, out); });
  EXPECT_NE(msg.find("--force"), std::string::npos) << msg;
  EXPECT_EQ(open_prepared(out.string()).manifest, m);  // untouched
  nlohmann::json m2 = c.prepare("unigram", 310, out, /*force=*/true);
  EXPECT_EQ(m2["tokenizer"]["kind"], "unigram");
  EXPECT_EQ(open_prepared(out.string()).tokenizer->kind(), "unigram");

  // A folder that is not a prepared one is never replaced.
  const fs::path other = c.dir / "mine";
  fs::create_directories(other);
  write_bytes(other / "notes.txt", "keep me\n");
  msg = error_of([&] { c.prepare("word", 0, other, true); });
  EXPECT_NE(msg.find("not a prepared data folder"), std::string::npos) << msg;
  EXPECT_TRUE(fs::exists(other / "notes.txt"));
}

TEST(LmPrepare, RejectsTamperedFolders) {
  SmallCorpus c("lm_prep_tamper");
  const fs::path out = c.dir / "prepared";
  c.prepare("word", 0, out);

  // A tokenizer file changed after prepare.
  const std::string vocab = read_binary_file((out / "tokenizer.vocab").string());
  write_bytes(out / "tokenizer.vocab", "extra\n" + vocab);
  std::string msg = error_of([&] { open_prepared(out.string()); });
  EXPECT_NE(msg.find("do not match the tokenizer"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HINT: re-run"), std::string::npos) << msg;
  write_bytes(out / "tokenizer.vocab", vocab);
  EXPECT_NO_THROW(open_prepared(out.string()));

  // A truncated token file.
  const std::string bin = read_binary_file((out / "valid.bin").string());
  write_bytes(out / "valid.bin", std::string_view(bin).substr(0, bin.size() - 2));
  msg = error_of([&] { open_prepared(out.string()); });
  EXPECT_NE(msg.find("valid.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  // Same size, other content.
  std::string swapped = bin;
  std::swap(swapped[0], swapped[2]);
  write_bytes(out / "valid.bin", swapped);
  msg = error_of([&] { open_prepared(out.string()); });
  EXPECT_NE(msg.find("sha256"), std::string::npos) << msg;

  EXPECT_NE(error_of([&] { open_prepared(c.dir.string()); }).find("not a prepared data folder"), std::string::npos);
}

// ---------------- windows ----------------

namespace {

// A token file of ids 0..n-1 (uint16) in dir.
TokenFile counting_file(const fs::path& dir, int64_t n) {
  std::vector<uint16_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = uint16_t(i);
  write_bytes(dir / "count.bin", std::string_view(reinterpret_cast<const char*>(ids.data()), ids.size() * 2));
  return TokenFile((dir / "count.bin").string(), n, 2);
}

std::vector<int64_t> values(const Tensor& t) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < t.size(0); ++i)
    for (int64_t j = 0; j < t.size(1); ++j) v.push_back(int64_t(t.at({i, j})));
  return v;
}

}  // namespace

TEST(LmWindows, WindowSourceShapesAndExactResume) {
  auto dir = testing_util::fresh_temp_dir("lm_windows");
  TokenFile f = counting_file(dir, 1000);
  const int64_t B = 3, T = 16, k = 4, n = 10;
  WindowSource a(f, B, T, /*seed=*/7);
  std::vector<std::vector<int64_t>> ids, targets;
  nlohmann::json state_at_k;
  for (int64_t s = 0; s < n; ++s) {
    if (s == k) state_at_k = a.state();
    train::Batch b = a.batch(s);
    ASSERT_EQ(b.ids.shape(), (Shape{B, T}));
    ASSERT_EQ(b.targets.shape(), (Shape{B, T}));
    EXPECT_EQ(b.ids.dtype(), DType::i64);
    EXPECT_EQ(b.tokens, B * T);
    ids.push_back(values(b.ids)), targets.push_back(values(b.targets));
    for (int64_t i = 0; i < B * T; ++i) EXPECT_EQ(targets.back()[size_t(i)], ids.back()[size_t(i)] + 1);
  }
  EXPECT_NE(ids[0], ids[1]);

  WindowSource resumed(f, B, T, /*seed=*/999);  // the state carries the generator, not the seed
  resumed.restore(nlohmann::json::parse(state_at_k.dump()));
  for (int64_t s = k; s < n; ++s) {
    train::Batch b = resumed.batch(s);
    EXPECT_EQ(values(b.ids), ids[size_t(s)]) << "step " << s;
    EXPECT_EQ(values(b.targets), targets[size_t(s)]) << "step " << s;
  }
  EXPECT_THROW(resumed.batch(3), Error);  // out of order
  EXPECT_THROW(WindowSource(f, 1, 1000, 0), Error);  // shorter than one window
  fs::remove_all(dir);
}

TEST(LmWindows, EveryPositionScoredOnce) {
  auto dir = testing_util::fresh_temp_dir("lm_eval_windows");
  for (int64_t n : {2, 10, 17, 64, 100, 101}) {
    TokenFile f = counting_file(dir, n);
    for (auto [context, stride] : {std::pair<int64_t, int64_t>{16, 16}, {16, 4}, {16, 1}, {16, 5}, {1, 1}, {200, 50}}) {
      std::vector<int> scored(size_t(n), 0);
      int64_t windows = 0;
      bool first = true;
      for_each_window(f, context, stride, [&](const EvalWindow& w) {
        ++windows;
        ASSERT_EQ(int64_t(w.ids.size()), w.length);
        ASSERT_EQ(int64_t(w.targets.size()), w.length);
        EXPECT_EQ(w.length, std::min(context, n - 1));
        if (first) {
          EXPECT_EQ(w.score_from, 0);
        }
        if (!first && stride < context && w.start + w.length < n - 1) {
          EXPECT_EQ(w.scored(), stride);
        }
        first = false;
        for (int64_t i = 0; i < w.length; ++i) {
          EXPECT_EQ(w.ids[size_t(i)], w.start + i);
          EXPECT_EQ(w.targets[size_t(i)], w.start + i + 1);
          if (i >= w.score_from) ++scored[size_t(w.targets[size_t(i)])];
        }
      });
      EXPECT_EQ(windows, count_windows(n, context, stride)) << n << " " << context << " " << stride;
      EXPECT_EQ(scored[0], 0);
      for (int64_t p = 1; p < n; ++p)
        EXPECT_EQ(scored[size_t(p)], 1) << "position " << p << " n " << n << " context " << context << " stride " << stride;
    }
  }
  TokenFile f = counting_file(dir, 50);
  EXPECT_THROW(for_each_window(f, 8, 9, [](const EvalWindow&) {}), Error);
  fs::remove_all(dir);
}

// The full corpora through prepare() with BPE 8192 and word level, timed on stderr. Not part
// of the suite (minutes on 2 cores): run with --gtest_also_run_disabled_tests
// --gtest_filter='*PrepareFullCorpora*'.
TEST(LmPrepare, DISABLED_PrepareFullCorpora) {
  SKIP_WITHOUT_DATA();
  auto dir = testing_util::fresh_temp_dir("lm_full");
  for (auto [corpus, kind, vocab] : {std::tuple{"wikitext-2", "word", 0}, {"wikitext-2", "bpe", 8192},
                                     {"code", "bpe", 8192}, {"code", "unigram", 8192}}) {
    const std::string in = kDataDir + "/" + corpus;
    const fs::path out = dir / fmt::format("{}-{}", corpus, kind);
    nlohmann::json m = prepare(in + "/train.txt.xz", in + "/valid.txt.xz", in + "/test.txt.xz", kind, vocab,
                               out.string());
    PreparedData d = open_prepared(out.string());
    for (const auto& name : kSplits) {
      const TokenFile& f = d.split(name);
      std::vector<uint32_t> ids(size_t(f.size()));
      for (int64_t i = 0; i < f.size(); ++i) ids[size_t(i)] = f[i];
      EXPECT_TRUE(d.tokenizer->decode(ids) == read_text_file(in + "/" + name + ".txt.xz")) << corpus << " " << name;
    }
    std::cerr << m.dump(1) << "\n";
  }
  fs::remove_all(dir);
}
