// run.cpp — training a language model and loading one back (see run.h).
#include "lm/run.h"

#include <filesystem>

#include "lm/dataset.h"
#include "lm/evaluate.h"
#include "lm/text.h"
#include "nn/checkpoint.h"
#include "tensor/error.h"
#include "tensor/ops.h"

namespace copper::lm {

namespace fs = std::filesystem;

namespace {
// Random streams of an LM run (train::stream_seed); the trainer owns kDropoutStream.
enum Stream : uint64_t { kInitStream = 1, kWindowStream = 2 };

// The mean next-token cross-entropy of a batch, ids (B, T) against targets (B, T), positions
// at kIgnoreIndex not counted (TransformerLM::loss: no (B, T, V) logits tensor).
Tensor lm_loss(nn::TransformerLM& model, const train::Batch& b) {
  return model.loss(b.ids, b.targets, train::kIgnoreIndex);
}

Perplexity split_perplexity(nn::TransformerLM& model, const PreparedData& data, const std::string& split,
                            int64_t max_tokens) {
  const auto& info = data.split_info(split);
  EvalOptions eo;
  eo.max_tokens = max_tokens;
  return perplexity(model, data.split(split), info.value("words", int64_t(0)), info.value("bytes", int64_t(0)), eo);
}
}  // namespace

void check_same_tokenizer(const LMConfig& cfg, const std::string& run_dir, const std::string& data_dir,
                          const std::string& data_tokenizer_sha256) {
  COPPER_CHECK(cfg.tokenizer_sha256.empty() || cfg.tokenizer_sha256 == data_tokenizer_sha256, "lm",
               "'{}' was prepared with another tokenizer than the model in '{}' was trained with (tokenizer sha256 {} "
               "vs {}): its token ids mean other things to this model. HINT: evaluate on the data folder the model "
               "was trained on (its config.json names it), or prepare one with that tokenizer",
               data_dir, run_dir, data_tokenizer_sha256.substr(0, 12), cfg.tokenizer_sha256.substr(0, 12));
}

nlohmann::json train_lm(LMConfig cfg, const std::string& data_dir, const std::string& out_dir,
                        const train::RunOptions& opt) {
  PreparedData data = open_prepared(data_dir);
  const std::string tok_sha = data.manifest.at("tokenizer").at("sha256").get<std::string>();
  cfg.model.vocab = data.tokenizer->vocab_size();
  cfg.tokenizer_sha256 = tok_sha;
  cfg.validate();
  const TokenFile& train_tokens = data.split("train");
  COPPER_CHECK(train_tokens.size() > cfg.model.context, "lm train",
               "the train split of '{}' has {} tokens, fewer than one window of context {} + 1. HINT: use a shorter "
               "--context or more text", data_dir, train_tokens.size(), cfg.model.context);

  const uint64_t seed = cfg.loop.seed;
  Generator init_gen(train::stream_seed(seed, kInitStream));
  nn::TransformerLM model(cfg.model, &init_gen);
  model.to(opt.device);  // before the trainer makes the optimizer, whose state lives with the parameters
  model.train(true);
  WindowSource windows(train_tokens, cfg.batch, cfg.model.context, train::stream_seed(seed, kWindowStream));

  train::Hooks hooks;
  hooks.loss = [&](const train::Batch& b) { return lm_loss(model, b); };
  hooks.evaluate = [&] { return split_perplexity(model, data, "valid", cfg.eval_tokens).to_json(); };
  nlohmann::json config = cfg.to_json();
  config["data"] = data_dir;
  train::Trainer trainer(model, windows, cfg.loop, hooks, config, cfg.model.to_json(), out_dir, opt);
  train::RunResult rr = trainer.run();
  if (rr.already_done) return rr.results;
  if (!rr.completed) return {{"stopped_at", rr.steps}};

  data.tokenizer->save(trainer.work_dir());  // the run folder is self-contained for generate
  nlohmann::json res = {{"pe", cfg.model.pe},
                        {"preset", cfg.preset},
                        {"seed", seed},
                        {"steps", rr.steps},
                        {"tokens_seen", rr.steps * cfg.batch * cfg.model.context},
                        {"train_seconds", rr.train_seconds},
                        {"final_loss", rr.final_loss},
                        {"best_valid", rr.best_eval}};
  // The loop's evaluation after the last step already scored the whole validation split
  // when eval_tokens is 0.
  const bool have_valid = cfg.eval_tokens == 0 && rr.last_eval.is_object();
  res["valid"] = have_valid ? rr.last_eval : split_perplexity(model, data, "valid", 0).to_json();
  res["test"] = split_perplexity(model, data, "test", 0).to_json();
  trainer.finish(res);
  return res;
}

LoadedRun load_run(const std::string& dir, bool best) {
  const fs::path d(dir);
  const fs::path cfg_path = d / "config.json";
  const fs::path model_path = best ? d / "checkpoints" / "best" / "model.safetensors" : d / "model.safetensors";
  COPPER_CHECK(fs::exists(cfg_path) && fs::exists(model_path), "lm",
               "'{}' is not a finished language-model run (needs config.json and {}). HINT: train one with `copper lm "
               "train --out {}`{}",
               dir, fs::relative(model_path, d).string(), dir,
               fs::exists(d.string() + ".next") ? fmt::format("; a newer run is still training in {}.next", dir) : "");
  nlohmann::json js;
  try {
    js = nlohmann::json::parse(nn::read_text(cfg_path.string(), "lm"));
  } catch (const nlohmann::json::exception& e) {
    COPPER_THROW("lm", "'{}' is not valid JSON ({})", cfg_path.string(), e.what());
  }
  LoadedRun r;
  r.cfg = LMConfig::from_json(js);
  r.tokenizer = load_tokenizer(dir);
  COPPER_CHECK(r.tokenizer->vocab_size() == r.cfg.model.vocab, "lm",
               "the tokenizer in '{}' has {} tokens but the model was built for {}. HINT: the folder was changed by "
               "hand; train again or restore its tokenizer file", dir, r.tokenizer->vocab_size(), r.cfg.model.vocab);
  r.model = std::make_unique<nn::TransformerLM>(r.cfg.model);
  nn::load_model_checked(model_path.string(), r.model->named_state(), r.cfg.model.to_json(), cfg_path.string());
  r.model->eval();
  return r;
}

}  // namespace copper::lm
