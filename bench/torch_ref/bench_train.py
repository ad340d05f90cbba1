#!/usr/bin/env python3
"""bench_train.py — the PyTorch side of `copper bench train`: the same model, the same step,
the same JSON line.

The model is fixed by ../shared/bench/README.md (keys vocab/d/h/layers/ctx/batch/npos):
GPT-style pre-norm transformer, float32, token embedding (+ a learned ctx x d table with
`abs`), per block x += proj(attn(LN(x))); x += fc2(gelu(fc1(LN(x)))) with qkv d->3d and proj
d->d with bias, fc1 d->4d and fc2 4d->d with bias, exact (erf) GELU, LayerNorm eps 1e-5 with
weight and bias, final LayerNorm, untied head d->vocab without bias; causal attention with
logits q.k/sqrt(d/h); `rope` rotates q and k in interleaved pairs (base 10000); `cope` adds
its interpolated position logits after the scaling (the paper's appendix form), one
(npos x d/h) table per layer shared by the heads, positions clamped at npos - 1.
A step: forward, mean cross-entropy over all batch*ctx positions, backward, AdamW (lr 3e-4,
betas (0.9, 0.999), eps 1e-8, weight decay 0.01 on every parameter). Inputs and targets are
uniform random ids from a fixed seed.

Attention: `abs` and `rope` call F.scaled_dot_product_attention(is_causal=True) — what a
PyTorch user would write, and PyTorch's fastest CPU path; `cope` needs the logits themselves
(its gates are sigmoid(q.k/sqrt(Dh))), so it is written out: logits, + CoPE term, causal
mask, softmax, @ v. --no-sdpa writes abs and rope out the same way.

    python bench_train.py --config ../shared/bench/lm-small.json --pe abs,rope,cope [--steps 8] [--threads 2] [--compile]
        [--dtype bf16] [--device cuda]

--dtype bf16 is PyTorch's own mixed precision, the counterpart of copper's: the forward and
the loss under torch.autocast("cpu", dtype=torch.bfloat16) (the products in bf16 on oneDNN,
f32 weights and optimizer), and the sgemm reference a bf16 torch.mm.

--device cuda runs the model on the GPU (autocast on "cuda" with --dtype bf16), the sgemm
reference there at n = 8192 as copper's does, and adds device_peak_mb, the largest
torch.cuda.max_memory_allocated() of the encoding's run.

One JSON line per encoding, the keys of copper's:
  {"bench":"train","framework":"torch"|"torch.compile","pe","tokens_per_s","step_ms","peak_rss_mb",
   "gflops","mfu","sgemm_gflops","sgemm_n","flop_per_token","params","threads","steps","loss",
   "config","dtype","torch","blas"}
step_ms is the median over the steps after 2 warm-up steps (which include torch.compile's
compilation); mfu is the model FLOP/s (the formula of bench/train.cpp) over a square sgemm
(torch.mm) of n = 4d (clamped to [512, 2048]) measured in the same process after the steps.
"""
import argparse
import json
import os
import re
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

# The model is lm_ref.py's (the same directory): one definition for the reference's training
# runs, its parity checks against copper, and this benchmark.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lm_ref import LM  # noqa: E402

LR, BETAS, EPS, WEIGHT_DECAY = 3e-4, (0.9, 0.999), 1e-8, 0.01
DATA_SEED = 1234  # bench/train.cpp's kDataSeed (the generators differ; the distribution is the same)
WARMUP_STEPS = 2
SGEMM_WIDTH_FACTOR, SGEMM_MIN, SGEMM_MAX = 4, 512, 2048
SGEMM_BUDGET_S = 0.3
SGEMM_GPU = 8192  # bench/train.cpp's kSgemmGpu
KEYS = ("vocab", "d", "h", "layers", "ctx", "batch", "npos")


def build_model(m, pe, sdpa):
    """The benchmark model: lm_ref.py's LM (the one model definition of the PyTorch reference)
    at the benchmark's shape, without dropout, d_ff = 4d."""
    return LM(vocab=m["vocab"], pe=pe, d_model=m["d"], layers=m["layers"], heads=m["h"], d_ff=4 * m["d"],
              context=m["ctx"], npos=m["npos"], dropout=0.0, sdpa=sdpa)


def flop_per_token(m):
    """bench/train.cpp's count: 6 * (matmul parameters: 12 d^2 per layer + d vocab) + 12 layers ctx d."""
    d = m["d"]
    return 6.0 * (m["layers"] * 12.0 * d * d + d * m["vocab"]) + 12.0 * m["layers"] * m["ctx"] * d


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS (Linux)
    except OSError:
        pass


def peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def sgemm_gflops(n, dtype, device):
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):
        torch.mm(a, b)
    sync()
    times, start = [], time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < SGEMM_BUDGET_S:
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync()
        times.append(time.perf_counter() - t0)
        if len(times) >= 200:
            break
    return 2.0 * n ** 3 / statistics.median(times) / 1e9


def blas_info():
    """Which BLAS and oneDNN this torch was built with (torch.__config__.show())."""
    cfg = torch.__config__.show()
    parts = []
    for pat in (r"BLAS_INFO=(\w+)", r"Intel\(R\) (?:oneAPI )?Math Kernel Library Version ([\d.]+)",
                r"Intel\(R\) MKL-DNN (v[\d.]+)", r"oneDNN (v[\d.]+)", r"CPU capability usage: (\w+)"):
        mm = re.search(pat, cfg)
        if mm:
            parts.append(mm.group(0).replace("Intel(R) ", "").replace("MKL-DNN", "oneDNN (MKL-DNN)"))
    return "; ".join(parts) or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="benchmark model file, e.g. ../shared/bench/lm-small.json")
    ap.add_argument("--pe", default="abs,rope,cope", help="encodings, comma-separated (abs, rope, cope)")
    ap.add_argument("--steps", type=int, default=8, help="steps per encoding, the first 2 untimed")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (PyTorch >= 2.0)")
    ap.add_argument("--no-sdpa", action="store_true", help="write abs/rope attention out instead of SDPA")
    ap.add_argument("--dtype", default="f32", choices=("f32", "bf16"),
                    help="f32, or bf16: mixed precision (torch.autocast)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    args = ap.parse_args()
    if args.steps <= WARMUP_STEPS:
        sys.exit(f"[bench_train] --steps {args.steps} leaves no timed step. HINT: use --steps {WARMUP_STEPS + 1} or more")
    with open(args.config) as f:
        m = json.load(f)
    missing = [k for k in KEYS if not isinstance(m.get(k), int) or m[k] <= 0]
    if missing:
        sys.exit(f"[bench_train] {args.config} needs positive integers {missing}. HINT: see ../shared/bench/README.md")
    if args.compile and not hasattr(torch, "compile"):
        sys.exit(f"[bench_train] torch {torch.__version__} has no torch.compile. HINT: run scripts/setup_torch.sh for PyTorch 2.x")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("[bench_train] --device cuda but torch sees no GPU. HINT: run where nvidia-smi lists one")
    tokens = m["batch"] * m["ctx"]
    fpt = flop_per_token(m)
    sgemm_n = SGEMM_GPU if device.type == "cuda" else min(max(SGEMM_WIDTH_FACTOR * m["d"], SGEMM_MIN), SGEMM_MAX)

    for pe in [p for p in args.pe.split(",") if p]:
        if pe not in ("abs", "rope", "cope"):
            sys.exit(f"[bench_train] unknown encoding '{pe}'. HINT: abs, rope or cope")
        reset_peak_rss()
        torch.manual_seed(0)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        model = build_model(m, pe, sdpa=not args.no_sdpa).to(device)
        gen = torch.Generator().manual_seed(DATA_SEED)
        ids = torch.randint(0, m["vocab"], (m["batch"], m["ctx"]), generator=gen).to(device)
        targets = torch.randint(0, m["vocab"], (tokens,), generator=gen).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
        fwd = torch.compile(model) if args.compile else model

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
                loss = F.cross_entropy(fwd(ids).view(tokens, m["vocab"]), targets)
            loss.backward()
            opt.step()
            return loss.item()

        for _ in range(WARMUP_STEPS):
            loss = step()
        times = []
        for _ in range(args.steps - WARMUP_STEPS):
            t0 = time.perf_counter()
            loss = step()
            times.append(time.perf_counter() - t0)
        step_s = statistics.median(times)
        rss = peak_rss_mb()
        device_peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
        sgemm = sgemm_gflops(sgemm_n, torch.bfloat16 if args.dtype == "bf16" else torch.float32, device)
        tok_s = tokens / step_s
        gflops = fpt * tok_s / 1e9
        print(json.dumps({
            "bench": "train", "framework": "torch.compile" if args.compile else "torch", "pe": pe,
            "tokens_per_s": round(tok_s, 1), "step_ms": round(step_s * 1e3, 3), "peak_rss_mb": round(rss, 1),
            "gflops": round(gflops, 2), "mfu": round(gflops / sgemm, 4), "sgemm_gflops": round(sgemm, 2),
            "sgemm_n": sgemm_n, "flop_per_token": fpt, "params": sum(p.numel() for p in model.parameters()),
            "threads": torch.get_num_threads(), "steps": len(times), "loss": round(loss, 4),
            "config": args.config, "device": str(device), "dtype": args.dtype,
            "device_peak_mb": round(device_peak, 1), "torch": torch.__version__, "blas": blas_info(),
            "attention": "sdpa" if model.blocks[0].attn.sdpa else "explicit"}), flush=True)
        del model, opt, fwd


if __name__ == "__main__":
    main()
