// test_checkpoint.cpp — safetensors files, model files and exact resumption of training.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "autograd/grad_mode.h"
#include "nn/checkpoint.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace copper;
using namespace copper::nn;
namespace fs = std::filesystem;
using testing_util::error_of;
using testing_util::read_bytes;
using testing_util::write_bytes;

namespace {
fs::path temp_dir(const std::string& name) { return testing_util::fresh_temp_dir("ckpt_" + name); }
}  // namespace

TEST(Safetensors, RoundTripEveryDTypeAndMetadata) {
  auto d = temp_dir("rt");
  Tensor f32 = randn({2, 3});
  Tensor f64 = randn({4}, DType::f64);
  Tensor i32 = from_vector(std::vector<int32_t>{1, -2, 3});
  Tensor i64 = from_vector(std::vector<int64_t>{7, 8}, {2, 1});
  Tensor bf = randn({3, 2}).to(DType::bf16);
  Tensor hf = randn({5}).to(DType::f16);
  Tensor scalar = scalar_tensor(2.5);
  Tensor strided = randn({4, 6}).t();  // not contiguous: written contiguous
  NamedTensors ts{{"blocks.0.w", f32}, {"f64", f64}, {"i32", i32}, {"i64", i64},
                  {"bf16", bf},        {"f16", hf},  {"scalar", scalar}, {"strided", strided}};
  save_safetensors((d / "a.safetensors").string(), ts, {{"config", "{\"d\":1}"}});
  auto f = load_safetensors((d / "a.safetensors").string());
  ASSERT_EQ(f.tensors.size(), ts.size());
  EXPECT_EQ(f.metadata.at("config"), "{\"d\":1}");
  for (auto& [name, t] : ts) {
    const Tensor* l = f.find(name);
    ASSERT_NE(l, nullptr) << name;
    EXPECT_EQ(l->shape(), t.shape()) << name;
    EXPECT_EQ(l->dtype(), t.dtype()) << name;
    EXPECT_EQ(l->to(DType::f64).to_vector<double>(), t.to(DType::f64).to_vector<double>()) << name;
  }
  // The layout is the real format: u64 little-endian header length, JSON, 8-byte aligned data.
  std::string bytes = read_bytes(d / "a.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  auto header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["blocks.0.w"]["dtype"], "F32");
  EXPECT_EQ(header["blocks.0.w"]["shape"], nlohmann::json({2, 3}));
  EXPECT_EQ(header["bf16"]["dtype"], "BF16");
  EXPECT_EQ(header["__metadata__"]["config"], "{\"d\":1}");
  // No temporary file is left behind.
  for (auto& e : fs::directory_iterator(d)) EXPECT_EQ(e.path().filename(), "a.safetensors");
  fs::remove_all(d);
}

TEST(Safetensors, MalformedFilesGiveClearErrors) {
  auto d = temp_dir("bad");
  const fs::path good = d / "good.safetensors";
  save_safetensors(good.string(), {{"w", randn({8, 8})}, {"b", randn({8})}});
  const std::string bytes = read_bytes(good);
  auto load = [&](const std::string& content) {
    write_bytes(d / "x.safetensors", content);
    return error_of([&] { load_safetensors((d / "x.safetensors").string()); });
  };
  EXPECT_NE(load("abc").find("too short"), std::string::npos);
  EXPECT_NE(load(bytes.substr(0, 20)).find("truncated"), std::string::npos);
  std::string e = load(bytes.substr(0, bytes.size() - 10));
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  EXPECT_NE(e.find("x.safetensors"), std::string::npos) << e;
  std::string junk = bytes;
  junk[9] = '#';  // breaks the JSON
  EXPECT_NE(load(junk).find("not valid JSON"), std::string::npos);
  std::string huge = bytes;
  huge[7] = char(0x7f);  // header length enormous
  EXPECT_NE(load(huge).find("header length"), std::string::npos);
  // A shape that does not match its byte range names the tensor.
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  std::string header = bytes.substr(8, n);
  auto js = nlohmann::json::parse(header);
  js["w"]["shape"] = {8, 9};
  std::string h2 = js.dump();
  h2.append(n > h2.size() ? n - h2.size() : 0, ' ');
  if (h2.size() == n) {
    e = load(bytes.substr(0, 8) + h2 + bytes.substr(8 + n));
    EXPECT_NE(e.find("'w'"), std::string::npos) << e;
    EXPECT_NE(e.find("[8,9]"), std::string::npos) << e;
  }
  js = nlohmann::json::parse(header);
  js["w"]["dtype"] = "U8";
  h2 = js.dump();
  h2.append(n > h2.size() ? n - h2.size() : 0, ' ');
  if (h2.size() == n) {
    EXPECT_NE(load(bytes.substr(0, 8) + h2 + bytes.substr(8 + n)).find("U8"), std::string::npos);
  }
  EXPECT_NE(error_of([&] { load_safetensors((d / "missing.safetensors").string()); }).find("cannot open"),
            std::string::npos);
  fs::remove_all(d);
}

TEST(Safetensors, FailedWriteKeepsTheOldFile) {
  auto d = temp_dir("keep");
  const fs::path p = d / "m.safetensors";
  save_safetensors(p.string(), {{"w", ones({2})}});
  const std::string before = read_bytes(p);
  EXPECT_THROW(save_safetensors(p.string(), {{"w", ones({2})}, {"v", Tensor()}}), Error);
  EXPECT_THROW(write_file_atomic(p.string(), [](std::FILE*) { COPPER_THROW("test", "disk on fire"); }), Error);
  EXPECT_EQ(read_bytes(p), before);
  int files = 0;
  for (auto& e : fs::directory_iterator(d)) files += e.exists();
  EXPECT_EQ(files, 1);  // no temporary left
  fs::remove_all(d);
}

TEST(Checkpoint, ModelFileChecksNamesAndShapes) {
  auto d = temp_dir("model");
  const std::string p = (d / "model.safetensors").string();
  nlohmann::json cfg = {{"d_model", 4}, {"pe", "cope"}};
  Tensor w = randn({4, 4}), b = randn({4});
  save_model(p, {{"lin.weight", w}, {"lin.bias", b}}, cfg);
  auto m = load_model(p);
  EXPECT_EQ(m.config, cfg);
  Tensor w2 = zeros({4, 4}), b2 = zeros({4});
  copy_weights_into(p, m.weights, {{"lin.weight", w2}, {"lin.bias", b2}});
  EXPECT_EQ(w2.to_vector<float>(), w.to_vector<float>());
  Tensor w3 = zeros({4, 5});
  std::string e = error_of([&] { copy_weights_into(p, m.weights, {{"lin.weight", w3}, {"lin.bias", b2}}); });
  EXPECT_NE(e.find("lin.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("[4,4]"), std::string::npos) << e;
  EXPECT_NE(e.find("[4,5]"), std::string::npos) << e;
  EXPECT_EQ(w3.to_vector<float>(), std::vector<float>(20, 0.f));  // untouched
  e = error_of([&] { copy_weights_into(p, m.weights, {{"lin.weight", w2}}); });
  EXPECT_NE(e.find("lin.bias"), std::string::npos) << e;  // strict: extra tensor in the file
  auto diff = config_differences(cfg, {{"d_model", 8}, {"pe", "cope"}});
  ASSERT_EQ(diff.size(), 1u);
  EXPECT_NE(diff[0].find("d_model"), std::string::npos);
  fs::remove_all(d);
}

TEST(Checkpoint, GeneratorStateRoundTrip) {
  Generator g(42);
  g.normal();  // leaves a spare normal pending
  auto js = generator_to_json(g);
  Generator h(0);
  generator_from_json(h, js);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(g.normal(), h.normal());
  EXPECT_THROW(generator_from_json(h, nlohmann::json::array({"zz"})), Error);
}

// A tiny model trained on random data: straight N steps vs N/2 + save + load + N/2.
namespace {
struct Tiny {
  Tensor w1, b1, w2;
  NamedTensors params() const { return {{"l1.weight", w1}, {"l1.bias", b1}, {"l2.weight", w2}}; }
};
Tiny make_tiny(uint64_t seed) {
  Generator g(seed);
  return {randn({8, 4}, DType::f32, &g, 0, 0.5).requires_grad_(), zeros({8}).requires_grad_(),
          randn({1, 8}, DType::f32, &g, 0, 0.5).requires_grad_()};
}
void train_steps(Tiny& m, Optimizer& opt, Generator& data, int64_t from, int64_t to) {
  for (int64_t s = from; s < to; ++s) {
    Tensor x = randn({16, 4}, DType::f32, &data);
    Tensor y = sum(x, {1}, true);
    Tensor pred = linear(gelu(linear(x, m.w1, m.b1)), m.w2);
    Tensor loss = mean(square(pred - y));
    opt.zero_grad();
    loss.backward();
    clip_grad_norm(m.params(), 1.0);
    opt.set_lr(0.01 * (1.0 - double(s) / 20));
    opt.step();
  }
}
}  // namespace

TEST(Checkpoint, ResumeIsBitIdentical) {
  auto d = temp_dir("resume");
  nlohmann::json cfg = {{"tiny", true}};
  Tiny a = make_tiny(1);
  AdamW oa(a.params(), {.lr = 0.01});
  Generator da(7);
  train_steps(a, oa, da, 0, 20);

  Tiny b = make_tiny(1);
  AdamW ob(b.params(), {.lr = 0.01});
  Generator db(7);
  train_steps(b, ob, db, 0, 10);
  save_training_checkpoint(d.string(), 10, b.params(), cfg, ob, {{"data_rng", generator_to_json(db)}});
  train_steps(b, ob, db, 10, 13);  // work after the checkpoint is lost ("killed")

  Tiny c = make_tiny(99);  // different start: everything must come from the checkpoint
  AdamW oc(c.params(), {.lr = 0.5});
  auto latest = latest_checkpoint(d.string());
  ASSERT_TRUE(latest.has_value());
  auto state = load_training_checkpoint(*latest, c.params(), cfg, oc);
  Generator dc(0);
  generator_from_json(dc, state["data_rng"]);
  EXPECT_EQ(oc.steps_taken(), 10);
  train_steps(c, oc, dc, 10, 20);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(a.params()[i].second.to_vector<float>(), c.params()[i].second.to_vector<float>()) << a.params()[i].first;

  // A later checkpoint replaces the earlier one; a config change is refused with the difference.
  save_training_checkpoint(d.string(), 20, c.params(), cfg, oc, {});
  EXPECT_FALSE(fs::exists(d / "step-00000010"));
  EXPECT_EQ(*latest_checkpoint(d.string()), (d / "step-00000020").string());
  std::string e = error_of([&] { load_training_checkpoint(*latest_checkpoint(d.string()), c.params(), {{"tiny", false}}, oc); });
  EXPECT_NE(e.find("different config"), std::string::npos) << e;
  EXPECT_NE(e.find("tiny"), std::string::npos) << e;
  // A truncated weights file inside the checkpoint is a clear error, not a crash.
  const fs::path mp = d / "step-00000020" / "model.safetensors";
  std::string bytes = read_bytes(mp);
  write_bytes(mp, bytes.substr(0, bytes.size() / 2));
  e = error_of([&] { load_training_checkpoint(*latest_checkpoint(d.string()), c.params(), cfg, oc); });
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  fs::remove_all(d);
}
