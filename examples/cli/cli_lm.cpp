// cli_lm.cpp — `copper lm prepare|train|eval|generate|attention-map|gates`: language models on
// WikiText and on code.
//
//   copper lm prepare --train T --valid V --test S --tokenizer bpe --vocab 8192 --out data/wt2-bpe
//   copper lm train   --data data/wt2-bpe --pe cope --preset cpu-small --out runs/wt2-cope
//   copper lm eval    --model runs/wt2-cope --data data/wt2-bpe --split test [--context 1024 --stride 256]
//   copper lm generate --model runs/wt2-cope --prompt " = Valkyria Chronicles = " --tokens 100
//   copper lm attention-map --model runs/wt2-cope --text FILE --layer 0 --head 1 --out map.png
//   copper lm gates   --model runs/wt2-cope --text FILE --layer 0 --out gates.png
//
// The work is in lm/ (data, tokenizers, training, evaluation, sampling) and viz/ (pictures);
// this file parses flags, checks them, and maps failures to the exit codes of commands.h.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include "autograd/grad_mode.h"
#include "examples/cli/commands.h"
#include "examples/cli/config_flags.h"
#include "lm/config.h"
#include "lm/dataset.h"
#include "lm/evaluate.h"
#include "lm/generate.h"
#include "lm/run.h"
#include "lm/text.h"
#include "nn/config.h"
#include "tensor/error.h"
#include "tensor/ops.h"
#include "viz/heatmap.h"
#include "viz/tokens.h"

namespace copper::cli {

namespace {

constexpr int64_t kDefaultSubwordVocab = 8192;  // the cpu-small preset's BPE vocabulary
const CLI::Range kTrainSteps(int64_t(0), int64_t(1000000000), "a step count in 0..1e9");
const CLI::Range kPositive(int64_t(1), int64_t(1) << 24, "a positive count");

std::string preset_help() {
  std::string s = "preset:";
  for (auto& p : lm::presets()) s += fmt::format("\n  {:<11} {} ({} on 2 CPU cores)", p.name, p.description, p.expected_time);
  return s;
}

// The keys --set accepts, from the config's one list of fields.
std::string settable_keys() {
  std::string keys;
  for (auto& [key, help] : config::describe(lm::preset_config("cpu-small", "cope", kDefaultSubwordVocab)))
    keys += (keys.empty() ? "" : ", ") + key;
  return keys;
}

std::vector<std::string> preset_names() {
  std::vector<std::string> n;
  for (auto& p : lm::presets()) n.push_back(p.name);
  return n;
}

// ------------------------------------------------------------------ prepare

void add_prepare(CLI::App& lm) {
  auto* cmd = lm.add_subcommand("prepare", "train a tokenizer on the train split and write token files and "
                                           "manifest.json into --out");
  struct Opts {
    std::string train, valid, test, tokenizer = "bpe", out;
    std::optional<int64_t> vocab;
    bool force = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--train", o->train, "train split (.txt or .txt.xz)")->required();
  cmd->add_option("--valid", o->valid, "validation split")->required();
  cmd->add_option("--test", o->test, "test split")->required();
  cmd->add_option("--tokenizer", o->tokenizer, "bpe, unigram (sentencepiece, byte fallback) or word (WikiText's own "
                                               "vocabulary)")
      ->check(CLI::IsMember({"bpe", "unigram", "word"}));
  cmd->add_option("--vocab", o->vocab, fmt::format("vocabulary size (bpe, unigram: default {}; word: every word of the "
                                                   "train split, so it may be left out)", kDefaultSubwordVocab))
      ->check(CLI::Range(int64_t(1), int64_t(1) << 22));
  cmd->add_option("--out", o->out, "output folder")->required();
  cmd->add_flag("--force", o->force, "replace an existing prepared folder");
  cmd->callback([o] {
    if (auto p = out_dir_problem("--out", o->out); !p.empty()) fail(kExitUsage, p);
    auto m = or_fail(kExitData, [&] {
      const int64_t vocab = o->vocab.value_or(o->tokenizer == "word" ? 0 : kDefaultSubwordVocab);
      return lm::prepare(o->train, o->valid, o->test, o->tokenizer, vocab, o->out, o->force);
    });
    fmt::print("{}\n", m.dump());
  });
}

// ------------------------------------------------------------------ train

void add_train(CLI::App& lm) {
  auto* cmd = lm.add_subcommand("train", "train a language model on a prepared folder; writes model.safetensors, "
                                         "config.json, results.json, log.jsonl and checkpoints/ into --out");
  struct Opts {
    std::string data, pe, preset = "cpu-small", out, config, device = "cpu";
    uint64_t seed = 0;
    std::optional<int64_t> steps;
    bool fresh = false, quiet = false;
    double time_budget = 0;
    Overrides ov;
    std::vector<std::string> set;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--data", o->data, "a folder written by `copper lm prepare`")->required();
  cmd->add_option("--pe", o->pe, "position encoding (abs, rel, rope, alibi, cope, cope+rel, cope+rope, none, ...)")
      ->required();
  cmd->add_option("--preset", o->preset, preset_help())->capture_default_str()->check(CLI::IsMember(preset_names()));
  cmd->add_option("--config", o->config, "a config.json (e.g. one a run wrote): its values replace the preset's");
  cmd->add_option("--seed", o->seed, "seed of initialisation, data order and dropout")->capture_default_str()->check(seed_check());
  cmd->add_option("--steps", o->steps, "training steps (default: the preset's)")->check(kTrainSteps);
  cmd->add_option("--out", o->out, "output folder")->required();
  cmd->add_flag("--fresh", o->fresh, "start over even if --out holds this run (the old outputs stay until the new "
                                     "run has finished)");
  cmd->add_flag("--quiet", o->quiet, "no progress lines");
  cmd->add_option("--device", o->device, kDeviceHelp)->capture_default_str();
  cmd->add_option("--time-budget", o->time_budget, "train for this many seconds, the schedule following the "
                                                   "fraction spent (not bit-reproducible)")
      ->check(CLI::Range(0.0, 1e8));
  add_override_flags(cmd, o->ov);
  cmd->add_option("--set", o->set, "KEY=VALUE for any field of the run's config.json, after the flags above; "
                                    "e.g. --set model.npos=128 --set loop.clip=0.5. Keys: " + settable_keys())
      ->group("Overrides");
  cmd->callback([o, cmd] {
    if (auto p = out_dir_problem("--out", o->out); !p.empty()) fail(kExitUsage, p);
    const Device device = or_fail(kExitUsage, [&] { return usable_device(o->device); });
    auto data = or_fail(kExitData, [&] { return lm::open_prepared(o->data); });
    lm::LMConfig cfg = or_fail(kExitUsage, [&] {
      lm::LMConfig c = lm::preset_config(o->preset, o->pe, int64_t(data.tokenizer->vocab_size()));
      if (!o->config.empty()) {
        c = lm::LMConfig::from_json(read_json_file(o->config, "lm train"));
        c.model.vocab = int64_t(data.tokenizer->vocab_size());
        if (cmd->count("--pe")) c.model.pe = o->pe;
      }
      if (o->steps) lm::set_steps(c, *o->steps);
      int64_t batch = c.batch;
      apply_overrides(o->ov, c.model, c.loop.optim, c.loop.schedule, batch);
      if (o->ov.dtype) c.loop.dtype = *o->ov.dtype;
      c.batch = batch;
      c.loop.seed = o->seed;
      for (const auto& kv : o->set) config::set_field(c, kv, "lm train");
      c.validate();
      nn::TransformerLM probe(c.model);  // checks the encoding name and the shapes
      return c;
    });
    train::RunOptions ro;
    ro.fresh = o->fresh;
    ro.quiet = o->quiet;
    ro.time_budget_s = o->time_budget;
    ro.resume_command = "the same command again (without --fresh)";
    ro.device = device;
    auto res = or_fail(kExitData, [&] { return lm::train_lm(cfg, o->data, o->out, ro); });
    fmt::print("{}\n", nlohmann::json{{"pe", cfg.model.pe}, {"seed", cfg.loop.seed}, {"steps", res.value("steps", 0)},
                                      {"valid", res.value("valid", nlohmann::json())},
                                      {"test", res.value("test", nlohmann::json())}, {"out", o->out}}
                           .dump());
  });
}

// ------------------------------------------------------------------ eval

void add_eval(CLI::App& lm) {
  auto* cmd = lm.add_subcommand("eval", "perplexity of a trained model on a split; prints {\"ppl\", \"word_ppl\", "
                                        "\"bits_per_byte\", \"tokens\", \"context\", \"stride\"}");
  struct Opts {
    std::string model, data, split = "test", device = "cpu";
    int64_t context = 0, stride = 0, batch = 16, tokens = 0;
    bool best = false, quiet = false;
    std::optional<bool> rel_reuse_last;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--model", o->model, "a folder written by `copper lm train`")->required();
  cmd->add_option("--data", o->data, "the prepared folder (same tokenizer as the model's)")->required();
  cmd->add_option("--split", o->split, "valid or test")->capture_default_str()->check(CLI::IsMember({"valid", "test"}));
  cmd->add_option("--context", o->context, "tokens per window (default: the model's; longer is allowed for "
                                           "encodings that extrapolate)")
      ->check(kPositive);
  cmd->add_option("--stride", o->stride, "tokens between window starts (default: the context, i.e. no overlap)")
      ->check(kPositive);
  cmd->add_option("--batch", o->batch, "windows per forward")->capture_default_str()->check(kPositive);
  cmd->add_option("--tokens", o->tokens,
                  "score only about the first N targets of the split, whole windows (default: all; word_ppl and "
                  "bits_per_byte need the whole split)")
      ->check(kPositive);
  cmd->add_flag("--best", o->best, "the best validation checkpoint instead of the final model");
  cmd->add_option("--device", o->device, kDeviceHelp)->capture_default_str();
  cmd->add_option("--rel-reuse-last", o->rel_reuse_last,
                  "rel: distances past the training context reuse the last learned one (true, 'capped') or add "
                  "nothing (false)");
  cmd->add_flag("--quiet", o->quiet, "no progress line");
  cmd->callback([o] {
    auto run = or_fail(kExitData, [&] { return lm::load_run(o->model, o->best); });
    auto data = or_fail(kExitData, [&] { return lm::open_prepared(o->data); });
    or_fail(kExitData, [&] {
      lm::check_same_tokenizer(run.cfg, o->model, o->data, data.manifest.at("tokenizer").at("sha256").get<std::string>());
      return 0;
    });
    if (o->rel_reuse_last) {
      auto mc = run.cfg.model;
      mc.rel_reuse_last = *o->rel_reuse_last;
      auto m = std::make_unique<nn::TransformerLM>(mc);
      m->load_state_dict(run.model->state_dict());
      run.model = std::move(m);
    }
    run.model->to(or_fail(kExitUsage, [&] { return usable_device(o->device); }));
    const int64_t ctx = o->context > 0 ? o->context : run.cfg.model.context;
    if (lm::max_sequence(*run.model) >= 0 && ctx > lm::max_sequence(*run.model))
      fail(kExitUsage, fmt::format("--context {} is longer than the {} positions of this model's '{}' table. HINT: "
                                   "evaluate at most at --context {}, or train an encoding that extrapolates "
                                   "(rel, rope, cope)",
                                   ctx, lm::max_sequence(*run.model), run.cfg.model.pe, lm::max_sequence(*run.model)));
    const auto& tokens = data.split(o->split);
    const auto& info = data.split_info(o->split);
    const int64_t targets = o->tokens > 0 ? std::min<int64_t>(o->tokens, tokens.size() - 1) : tokens.size() - 1;
    train::Progress prog(stderr, fmt::format("eval {} ", o->split), targets, o->quiet);
    lm::EvalOptions eo;
    eo.context = ctx;
    eo.stride = o->stride;
    eo.batch = o->batch;
    eo.max_tokens = o->tokens;
    eo.progress = [&](int64_t done, int64_t) { prog.update(done); };
    auto p = or_fail(kExitData, [&] { return lm::perplexity(*run.model, tokens, info.value("words", int64_t(0)), info.value("bytes", int64_t(0)), eo);
    });
    prog.finish();
    auto js = p.to_json();
    js["split"] = o->split;
    fmt::print("{}\n", js.dump());
  });
}

// ------------------------------------------------------------------ generate

void add_generate(CLI::App& lm) {
  auto* cmd = lm.add_subcommand("generate", "continue a prompt with a trained model (KV cache for every encoding)");
  struct Opts {
    std::string model, prompt, device = "cpu";
    lm::SampleOptions s;
    bool no_cache = false;
  };
  auto o = std::make_shared<Opts>();
  o->s.temperature = 0.8;
  o->s.top_k = 40;
  cmd->add_option("--model", o->model, "a folder written by `copper lm train`")->required();
  cmd->add_option("--prompt", o->prompt, "the text to continue")->required();
  cmd->add_option("--tokens", o->s.tokens, "new tokens")->capture_default_str()->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd->add_option("--temperature", o->s.temperature, "sampling temperature (0: greedy)")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", o->s.top_k, "sample among the k most likely tokens (0: all)")->capture_default_str()
      ->check(CLI::Range(int64_t(0), int64_t(1) << 24));
  cmd->add_option("--top-p", o->s.top_p, "nucleus: the smallest set of tokens whose probability reaches p")->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", o->s.seed, "sampling seed")->capture_default_str()->check(seed_check());
  cmd->add_flag("--no-cache", o->no_cache, "recompute the whole sequence for every token (to compare)");
  cmd->add_option("--device", o->device, kDeviceHelp)->capture_default_str();
  cmd->callback([o] {
    const Device device = or_fail(kExitUsage, [&] { return usable_device(o->device); });
    auto run = or_fail(kExitData, [&] { return lm::load_run(o->model); });
    run.model->to(device);
    auto ids32 = run.tokenizer->encode(o->prompt);
    std::vector<int64_t> prompt(ids32.begin(), ids32.end());
    if (prompt.empty()) fail(kExitUsage, "--prompt encodes to no tokens. HINT: give some text");
    o->s.use_cache = !o->no_cache;
    const auto t0 = std::chrono::steady_clock::now();
    std::fflush(stdout);
    auto out = or_fail(kExitUsage, [&] {
      return lm::generate(*run.model, prompt, o->s, [&](int64_t tok) {
        fmt::print("{}", run.tokenizer->decode({uint32_t(tok)}));
        std::fflush(stdout);
      });
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("\n");
    fmt::print(stderr, "{} prompt tokens, {} new tokens in {:.2f} s ({:.1f} tokens/s{})\n", prompt.size(), out.size(), s,
               double(out.size()) / std::max(s, 1e-9), o->no_cache ? ", no cache" : ", KV cache");
  });
}

// ------------------------------------------------------------------ pictures

// The first tokens of a text file, at most `limit`, and each token's text as decoded alone
// (a newline token decodes to "\n", sentencepiece's word marker to a space).
struct TextTokens {
  std::vector<int64_t> ids;
  std::vector<std::string> pieces;
};
TextTokens text_tokens(const lm::Tokenizer& tok, const std::string& path, int64_t limit) {
  std::string text = or_fail(kExitData, [&] { return lm::read_text_file(path); });
  auto ids = tok.encode(text);
  if (ids.empty()) fail(kExitData, fmt::format("'{}' encodes to no tokens", path));
  TextTokens t;
  for (size_t i = 0; i < ids.size() && int64_t(i) < limit; ++i) {
    t.ids.push_back(int64_t(ids[i]));
    t.pieces.push_back(tok.decode({ids[i]}));
  }
  return t;
}

// Where WikiText's lines start: a heading line (" = = History = = ", titles " = T = ") is a
// section mark, any other non-empty line a paragraph mark. A token that ends a line is one
// whose text holds a newline (the newline byte of subword tokenizers, the word tokenizer's
// <eos>).
std::vector<viz::HeatmapMark> line_marks(const std::vector<std::string>& pieces) {
  std::vector<viz::HeatmapMark> marks;
  size_t i = 0;
  while (i < pieces.size()) {
    std::string line;
    size_t j = i;
    for (; j < pieces.size(); ++j) {
      if (pieces[j].find('\n') != std::string::npos) break;
      line += pieces[j];
    }
    const auto first = line.find_first_not_of(" \t");
    if (i > 0 && first != std::string::npos) {
      const bool heading = line.compare(first, 2, "= ") == 0 || line[first] == '=';
      auto label = line.substr(first, 40);
      marks.push_back({int64_t(i), heading ? "section" : "paragraph", heading ? label : ""});
    }
    i = j + 1;
  }
  return marks;
}

// The position encoding of layer L (an error naming the valid layers otherwise); null when
// the layer has none.
nn::PositionEncoding* layer_pe(nn::TransformerLM& model, int64_t layer) {
  const auto& blocks = model.blocks;
  if (layer < 0 || layer >= int64_t(blocks.size()))
    fail(kExitUsage, fmt::format("--layer {} but the model has {} layers (0..{})", layer, blocks.size(),
                                 int64_t(blocks.size()) - 1));
  return blocks[size_t(layer)]->attn->pe().get();
}

void check_head(int64_t head, int64_t heads) {
  if (head < 0 || head >= heads) fail(kExitUsage, fmt::format("--head {} but the model has {} heads (0..{})", head, heads, heads - 1));
}

void add_attention_map(CLI::App& lm) {
  auto* cmd = lm.add_subcommand("attention-map", "a PNG heat map of one head's attention over a text, paragraph "
                                                 "breaks and section headings marked");
  struct Opts {
    std::string model, text, out;
    int64_t layer = 0, head = 0, tokens = 0;
    bool position_only = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--model", o->model, "a folder written by `copper lm train`")->required();
  cmd->add_option("--text", o->text, "a text file (.txt or .txt.xz); its first tokens are used")->required();
  cmd->add_option("--layer", o->layer, "layer (0-based)")->required();
  cmd->add_option("--head", o->head, "head (0-based)")->required();
  cmd->add_option("--tokens", o->tokens, "tokens of the text to use (default: the model's context)")->check(kPositive);
  cmd->add_flag("--position-only", o->position_only, "what CoPE's position term alone would give: softmax of the "
                                                     "interpolated position logits");
  cmd->add_option("--out", o->out, "the PNG to write")->required();
  cmd->callback([o] {
    if (auto p = out_file_problem("--out", o->out); !p.empty()) fail(kExitUsage, p);
    auto run = or_fail(kExitData, [&] { return lm::load_run(o->model); });
    auto& model = *run.model;
    const int64_t H = run.cfg.model.n_heads;
    check_head(o->head, H);
    nn::PositionEncoding* pe = layer_pe(model, o->layer);
    const int64_t limit = o->tokens > 0 ? o->tokens : run.cfg.model.context;
    auto tt = text_tokens(*run.tokenizer, o->text, limit);
    const int64_t T = int64_t(tt.ids.size());
    auto& attn = *model.blocks[size_t(o->layer)]->attn;
    attn.set_record_attention(true);
    {
      NoGradGuard ng;
      model.forward(from_vector(tt.ids, {1, T}));
    }
    Tensor m;  // (T, T) queries x keys
    if (o->position_only) {
      Tensor z = pe ? pe->last_term() : Tensor();  // z: (1, H, T, T)
      if (!z.defined())
        fail(kExitUsage, fmt::format("--position-only needs a CoPE layer; layer {} of this '{}' model has none",
                                     o->layer, run.cfg.model.pe));
      m = causal_softmax(z.select(0, 0).select(0, o->head).to(DType::f32));
    } else {
      m = attn.last_attention().select(0, 0).select(0, o->head);  // (T, T)
    }
    viz::HeatmapSpec s;
    s.rows = T;
    s.cols = T;
    s.values = m.to(DType::f32).contiguous().to_vector<float>();
    s.title = fmt::format("{} layer {} head {}{}: {} tokens of {}", run.cfg.model.pe, o->layer, o->head,
                          o->position_only ? " (position term only)" : "", T,
                          std::filesystem::path(o->text).filename().string());
    s.marks = line_marks(tt.pieces);
    auto size = or_fail(kExitData, [&] { return viz::heatmap_png(o->out, s); });
    fmt::print(stderr, "wrote {} ({}x{} px, {} tokens, {} marks)\n", o->out, size.width, size.height, T, s.marks.size());
  });
}

void add_gates(CLI::App& lm) {
  auto* cmd = lm.add_subcommand("gates", "what each CoPE head counts: the last query's gates over a text as a "
                                         "picture, and the most counted tokens on stdout");
  struct Opts {
    std::string model, text, out;
    int64_t layer = 0, tokens = 0;
    std::optional<int64_t> head;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--model", o->model, "a folder written by `copper lm train --pe cope`")->required();
  cmd->add_option("--text", o->text, "a text file (.txt or .txt.xz); its first tokens are used")->required();
  cmd->add_option("--layer", o->layer, "layer (0-based)")->required();
  cmd->add_option("--head", o->head, "the head to draw (default 0); stdout lists every head");
  cmd->add_option("--tokens", o->tokens, "tokens of the text to use (default: the model's context)")->check(kPositive);
  cmd->add_option("--out", o->out, "the PNG to write")->required();
  cmd->callback([o] {
    if (auto p = out_file_problem("--out", o->out); !p.empty()) fail(kExitUsage, p);
    auto run = or_fail(kExitData, [&] { return lm::load_run(o->model); });
    const int64_t H = run.cfg.model.n_heads;
    const int64_t head = o->head.value_or(0);
    check_head(head, H);
    nn::PositionEncoding* pe = layer_pe(*run.model, o->layer);
    const int64_t limit = o->tokens > 0 ? o->tokens : run.cfg.model.context;
    auto tt = text_tokens(*run.tokenizer, o->text, limit);
    const int64_t T = int64_t(tt.ids.size());
    {
      NoGradGuard ng;
      run.model->set_record_attention(true);  // CoPE keeps its gates only then (the fused path makes none)
      run.model->forward(from_vector(tt.ids, {1, T}));
    }
    Tensor gates = pe ? pe->last_gates() : Tensor();  // gates: (1, H, T, T)
    if (!gates.defined())
      fail(kExitUsage, fmt::format("layer {} of this '{}' model has no CoPE gates. HINT: pick a layer with CoPE "
                                   "(every layer unless cope_every > 1)", o->layer, run.cfg.model.pe));
    Tensor g = gates.select(0, 0).to(DType::f32).contiguous();  // g: (H, T, T)
    const auto gv = g.to_vector<float>();
    auto gate = [&](int64_t h, int64_t i, int64_t j) { return gv[size_t((h * T + i) * T + j)]; };
    // Per head: the mean gate of each token text over every (query, visible key) pair.
    for (int64_t h = 0; h < H; ++h) {
      std::map<std::string, std::pair<double, int64_t>> by_piece;
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j <= i; ++j) {
          auto& e = by_piece[tt.pieces[size_t(j)]];
          e.first += gate(h, i, j);
          e.second += 1;
        }
      std::vector<std::pair<double, std::string>> ranked;
      for (auto& [piece, e] : by_piece)
        if (e.second >= 3) ranked.push_back({e.first / double(e.second), piece});
      std::sort(ranked.rbegin(), ranked.rend());
      double mean_all = 0;
      for (int64_t j = 0; j < T; ++j) mean_all += gate(h, T - 1, j);
      fmt::print("L{}H{}  mean gate of the last query {:.3f}; most counted:", o->layer, h, mean_all / double(T));
      for (size_t k = 0; k < std::min<size_t>(8, ranked.size()); ++k)
        fmt::print("  {:?} {:.2f}", ranked[k].second, ranked[k].first);
      fmt::print("\n");
    }
    std::vector<float> last(static_cast<size_t>(T));
    for (int64_t j = 0; j < T; ++j) last[size_t(j)] = gate(head, T - 1, j);
    auto title = fmt::format("CoPE gates of the last query, layer {} head {} ({} tokens)", o->layer, head, T);
    auto size = or_fail(kExitData, [&] { return viz::token_gates_png(o->out, tt.pieces, last, title); });
    fmt::print(stderr, "wrote {} ({}x{} px)\n", o->out, size.width, size.height);
  });
}

}  // namespace

void add_lm(CLI::App& app) {
  auto* lm = app.add_subcommand("lm", "language models on WikiText and code: prepare, train, eval, generate, "
                                      "attention-map, gates");
  lm->require_subcommand(1);
  add_prepare(*lm);
  add_train(*lm);
  add_eval(*lm);
  add_generate(*lm);
  add_attention_map(*lm);
  add_gates(*lm);
}

}  // namespace copper::cli
