// test_cli_config.cpp — what a new user meets first in `copper task`: the shared override
// flags and their precedence, the seed check, output-path checks, config files, data files
// of another task and binary data files. (The command line end to end: tests/cli_smoke.sh.)
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

// The command line's helpers are compiled into the copper program only; the test compiles
// them in too.
#include "examples/cli/config_flags.cpp"
#include "tasks/trainer.h"
#include "tests/test_util.h"

using namespace copper;
using namespace copper::cli;
namespace fs = std::filesystem;
using testing_util::error_of;

namespace {
fs::path temp_dir(const std::string& name) { return testing_util::fresh_temp_dir("cli_config_" + name); }
void write_text(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

// Parses `args` (without the program name) into a fresh command with the override flags.
Overrides parse_overrides(std::vector<std::string> args) {
  CLI::App app{"test"};
  Overrides o;
  add_override_flags(&app, o);
  std::reverse(args.begin(), args.end());  // CLI11 takes them last-first
  app.parse(args);
  return o;
}

tasks::TrainConfig cpu_small(const std::string& task, const std::string& pe = "cope") {
  tasks::TaskConfig t;
  t.task = task;
  return tasks::preset_config("cpu-small", t, pe);
}
}  // namespace

TEST(CliOverrides, UnsetFlagsKeepThePresetAndSetOnesWin) {
  tasks::TrainConfig c = cpu_small("flipflop");
  const tasks::TrainConfig before = c;
  apply_overrides(parse_overrides({}), c.model, c.optim, c.schedule, c.batch);
  EXPECT_EQ(c.to_json(), before.to_json());

  apply_overrides(parse_overrides({"--lr", "0.01", "--batch", "8", "--d-model", "32", "--layers", "3", "--heads", "2",
                                   "--context", "50", "--dropout", "0.1", "--weight-decay", "0.05", "--warmup", "7"}),
                  c.model, c.optim, c.schedule, c.batch);
  EXPECT_DOUBLE_EQ(c.optim.lr, 0.01);
  EXPECT_DOUBLE_EQ(c.schedule.lr, 0.01);  // the schedule's peak follows the optimizer's rate
  EXPECT_EQ(c.batch, 8);
  EXPECT_EQ(c.model.d_model, 32);
  EXPECT_EQ(c.model.d_ff, 4 * 32);  // d_ff keeps its ratio to the width
  EXPECT_EQ(c.model.n_layers, 3);
  EXPECT_EQ(c.model.n_heads, 2);
  EXPECT_EQ(c.model.context, 50);
  EXPECT_DOUBLE_EQ(c.model.dropout, 0.1);
  EXPECT_DOUBLE_EQ(c.optim.weight_decay, 0.05);
  EXPECT_EQ(c.schedule.warmup, 7);
  EXPECT_EQ(c.model.pe, before.model.pe);
  EXPECT_EQ(c.steps, before.steps);
}

TEST(CliOverrides, FlagsOverrideAConfigFileWhichOverridesThePreset) {
  // A run's config.json as a --config file: its values replace the preset's, flags replace its.
  tasks::TrainConfig file_cfg = cpu_small("selective-copy");
  file_cfg.optim.lr = 0.002;
  file_cfg.batch = 16;
  auto d = temp_dir("precedence");
  auto js = file_cfg.to_json();
  js["vocab"] = tasks::make_task(file_cfg.task)->vocab();  // as train_run writes it
  write_text(d / "config.json", js.dump(2));
  tasks::TrainConfig c = tasks::TrainConfig::from_json([&] {
    auto j = read_json_file((d / "config.json").string(), "config");
    j.erase("vocab");
    return j;
  }());
  EXPECT_DOUBLE_EQ(c.optim.lr, 0.002);
  apply_overrides(parse_overrides({"--batch", "4"}), c.model, c.optim, c.schedule, c.batch);
  EXPECT_EQ(c.batch, 4);
  EXPECT_DOUBLE_EQ(c.optim.lr, 0.002);  // not given: the file's value stays
}

TEST(CliOverrides, BadCombinationsNameTheFlags) {
  tasks::TrainConfig c = cpu_small("flipflop");
  auto msg = error_of([&] { apply_overrides(parse_overrides({"--heads", "3"}), c.model, c.optim, c.schedule, c.batch); });
  EXPECT_NE(msg.find("--heads"), std::string::npos) << msg;
  c = cpu_small("flipflop");
  msg = error_of([&] {
    apply_overrides(parse_overrides({"--warmup", std::to_string(c.steps + 1)}), c.model, c.optim, c.schedule, c.batch);
  });
  EXPECT_NE(msg.find("--warmup"), std::string::npos) << msg;
  EXPECT_THROW(parse_overrides({"--dropout", "1.5"}), CLI::ValidationError);
  EXPECT_THROW(parse_overrides({"--batch", "0"}), CLI::ValidationError);
}

TEST(CliSeed, NegativeSeedsAreRejectedNotWrapped) {
  CLI::App app{"test"};
  uint64_t seed = 0;
  app.add_option("--seed", seed)->check(seed_check());
  std::vector<std::string> negative{"-1", "--seed"}, largest{"18446744073709551615", "--seed"};  // last first
  EXPECT_THROW(app.parse(negative), CLI::ValidationError);
  app.parse(largest);
  EXPECT_EQ(seed, 18446744073709551615ull);
}

TEST(CliOutputs, ExistingFilesAndEmptyPathsAreNamed) {
  auto d = temp_dir("out");
  write_text(d / "file.txt", "x");
  EXPECT_EQ(out_dir_problem("--out", (d / "new").string()), "");
  EXPECT_EQ(out_dir_problem("--out", d.string()), "");  // an existing folder resumes
  EXPECT_NE(out_dir_problem("--out", "").find("--out is empty"), std::string::npos);
  EXPECT_NE(out_dir_problem("--out", (d / "file.txt").string()).find("is an existing file"), std::string::npos);
  EXPECT_NE(out_dir_problem("--out", (d / "file.txt" / "run").string()).find("which is a file"), std::string::npos);
  EXPECT_EQ(out_file_problem("--out", (d / "data.txt").string()), "");
  EXPECT_NE(out_file_problem("--out", "").find("is empty"), std::string::npos);
  EXPECT_NE(out_file_problem("--out", d.string()).find("is a folder"), std::string::npos);
  EXPECT_NE(out_file_problem("--out", (d / "missing" / "x.txt").string()).find("does not exist"), std::string::npos);
}

TEST(CliConfigFile, MissingAndMalformedFilesSaySo) {
  auto d = temp_dir("json");
  write_text(d / "bad.json", "{\"task\": ");
  EXPECT_NE(error_of([&] { read_json_file((d / "none.json").string(), "config"); }).find("cannot open"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_json_file((d / "bad.json").string(), "config"); }).find("not valid JSON"),
            std::string::npos);
}

TEST(DataFiles, AnotherTasksFileIsNamedAsATaskMismatch) {
  auto d = temp_dir("mismatch");
  tasks::TaskConfig sc;
  sc.task = "selective-copy";
  auto sc_task = tasks::make_task(sc);
  Generator g(1);
  tasks::write_examples(*sc_task, tasks::generate(*sc_task, 3, g), (d / "sc.txt").string());
  tasks::TaskConfig ff;
  ff.task = "flipflop";
  auto ff_task = tasks::make_task(ff);
  const auto msg = error_of([&] { tasks::read_examples(*ff_task, (d / "sc.txt").string()); });
  EXPECT_NE(msg.find("task mismatch"), std::string::npos) << msg;
  EXPECT_NE(msg.find("selective-copy example"), std::string::npos) << msg;
  EXPECT_NE(msg.find("sc.txt:1"), std::string::npos) << msg;
  // A line of no task is an ordinary parse error.
  write_text(d / "bad.txt", "w0i1r0x1\n");
  EXPECT_EQ(error_of([&] { tasks::read_examples(*ff_task, (d / "bad.txt").string()); }).find("task mismatch"),
            std::string::npos);
}

TEST(DataFiles, ABinaryFilesBadByteIsShownEscaped) {
  auto d = temp_dir("binary");
  write_text(d / "bin.dat", std::string("w0\xff" "1r0", 6) + "\n");
  tasks::TaskConfig ff;
  ff.task = "flipflop";
  const auto msg = error_of([&] { tasks::read_examples(*tasks::make_task(ff), (d / "bin.dat").string()); });
  EXPECT_NE(msg.find("'\\xff'"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\xff'), std::string::npos) << msg;
}

TEST(DataFiles, EscapeBytesKeepsTextAndUtf8) {
  EXPECT_EQ(tasks::escape_bytes("plain ± text"), "plain ± text");
  EXPECT_EQ(tasks::escape_bytes(std::string("a\x00z", 3)), "a\\x00z");
  EXPECT_EQ(tasks::escape_bytes("\xc3"), "\\xc3");  // a cut-off two-byte sequence
  EXPECT_EQ(tasks::escape_bytes("\x1b[1m"), "\\x1b[1m");
}
