// bench_attention.cpp — time one training step (forward + backward) of a TransformerLM
// per position encoding, at the size the paper's tasks train on a CPU.
//
//   example_bench_attention [--batch 32] [--T 128] [--d 64] [--layers 2] [--heads 4]
//                           [--reps 5] [--pe cope,abs,...]
// Prints one JSON line per encoding: mean / min milliseconds per step and tokens per second.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nn/transformer.h"
#include "tensor/ops.h"
#include "tensor/random.h"
#include "tensor/runtime.h"

using namespace copper;

int main(int argc, char** argv) {
  runtime_init(argc, argv);
  int64_t batch = 32, T = 128, d = 64, layers = 2, heads = 4, reps = 5;
  std::vector<std::string> pes = {"none", "abs", "rope", "alibi", "rel", "cope", "cope+rope"};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--batch") batch = std::stoll(v);
    else if (a == "--T") T = std::stoll(v);
    else if (a == "--d") d = std::stoll(v);
    else if (a == "--layers") layers = std::stoll(v);
    else if (a == "--heads") heads = std::stoll(v);
    else if (a == "--reps") reps = std::stoll(v);
    else if (a == "--pe") {
      pes.clear();
      size_t s = 0;
      while (s <= v.size()) {
        size_t c = v.find(',', s);
        pes.push_back(v.substr(s, c == std::string::npos ? std::string::npos : c - s));
        if (c == std::string::npos) break;
        s = c + 1;
      }
    } else {
      fmt::print(stderr, "unknown option {}\n", a);
      return 2;
    }
  }
  if (reps < 1) {
    fmt::print(stderr, "--reps must be at least 1, got {}\n", reps);
    return 2;
  }
  for (const auto& pe : pes) {
    nn::TransformerConfig cfg;
    cfg.vocab = 16;
    cfg.d_model = d;
    cfg.n_layers = layers;
    cfg.n_heads = heads;
    cfg.context = T;
    cfg.pe = pe;
    Generator g(1);
    nn::TransformerLM model(cfg, &g);
    Tensor ids = randint(0, cfg.vocab, {batch, T}, DType::i64, &g);
    Tensor targets = randint(0, cfg.vocab, {batch, T}, DType::i64, &g);
    std::vector<double> ms;
    for (int64_t r = 0; r < reps + 1; ++r) {  // the first step warms up
      auto t0 = std::chrono::steady_clock::now();
      model.zero_grad();
      Tensor loss = cross_entropy(model.forward(ids), targets);
      loss.backward();
      auto t1 = std::chrono::steady_clock::now();
      if (r > 0) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    double mean = 0;
    for (double m : ms) mean += m;
    mean /= double(ms.size());
    const double best = *std::min_element(ms.begin(), ms.end());
    fmt::print("{{\"bench\": \"train_step\", \"pe\": \"{}\", \"batch\": {}, \"T\": {}, \"d_model\": {}, \"layers\": {}, "
               "\"heads\": {}, \"threads\": {}, \"ms_mean\": {:.2f}, \"ms_min\": {:.2f}, \"tokens_per_s\": {:.0f}}}\n",
               pe, batch, T, d, layers, heads, omp_get_max_threads(), mean, best, double(batch * T) / (best / 1000));
    std::fflush(stdout);
  }
  return 0;
}
