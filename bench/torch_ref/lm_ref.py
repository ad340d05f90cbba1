#!/usr/bin/env python3
"""lm_ref.py — a plain PyTorch reference for copper's language models (copper lm train/eval).

The same model as copper's LM "cpu-small" preset, trained on the same token files (a folder
written by `copper lm prepare`) for the same wall-clock budget, then scored by copper lm
eval's sliding-window perplexity on a split. Its test perplexity is the yardstick for
copper's, seed for seed: same model, data, recipe and evaluation, different RNG streams.

The model (nn/transformer.cpp and the files it uses), float32:
  - token embedding vocab x 256 ~ N(0, 1); with `abs` a learned (context x 256) table ~ N(0, 1)
    added to it; dropout 0.1 on the sum
  - 4 pre-norm blocks: x += drop(proj(attn(LN(x)))); x += drop(fc2(gelu(fc1(LN(x)))))
    qkv Linear 256 -> 768 and proj 256 -> 256 with bias, 4 heads of 32; fc1 256 -> 1024,
    fc2 1024 -> 256 with bias; GELU exact (erf); dropout 0.1 on the attention probabilities
  - final LayerNorm, head Linear 256 -> vocab without bias (not tied); every LayerNorm eps 1e-5
  - Linear weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (= PyTorch's defaults)
  - attention logits (nn/attend.cpp): q.k/sqrt(Dh) + before/sqrt(Dh) + after, causal softmax
      rope: q and k rotated in interleaved pairs (2m, 2m+1) by angle t * 10000^(-2m/Dh)
      rel:  before += q_i . e[min(i - j, context - 1)], one (context x Dh) table per layer
            shared by the heads, ~ N(0, 0.02^2); longer distances (a longer evaluation
            context) reuse its last row, or add nothing with --rel-reuse-last false
      cope: after += CoPE term (the paper's appendix scaling), gates sigmoid(q.k/sqrt(Dh)) of
            the rotated q, k when combined with rope, never including the rel term; one
            (npos x Dh) table per layer, zeros at init, positions clamped at npos - 1
      "a+b": both, their terms summed
Training (train/trainer.cpp): AdamW lr 1e-3, betas (0.9, 0.99), eps 1e-8, weight decay 0.1 on
every parameter, gradients clipped at global norm 1; batch 16 random windows of 257 tokens of
train.bin (ids the first 256, targets the next 256), mean cross-entropy over all positions;
cosine schedule, 5 % linear warmup, down to 0.1 x lr, following the fraction of the time
budget spent (Schedule::lr_at_fraction), or over the steps with --steps N. A timed run also
scores the whole valid split every 400 steps inside its budget, as copper's trainer does.

Run with Debian's python3-torch (torch 1.13):

    /usr/bin/python3 bench/torch_ref/lm_ref.py --data data/wikitext-bpe8192 --pe cope --seconds 600 --seed 0
    /usr/bin/python3 bench/torch_ref/lm_ref.py --data DIR --pe rel --steps 50 --context-eval 512 --stride 256 --rel-reuse-last false
    /usr/bin/python3 bench/torch_ref/lm_ref.py --self-test
    /usr/bin/python3 bench/torch_ref/lm_ref.py --data DIR --eval-run runs/lm_torch/copper-cope-s0

--eval-run trains nothing: it evaluates a copper run's final weights with this file's forward,
a parity check of the two model definitions (its ppl should equal `copper lm eval`'s).

Prints one JSON line: {"ppl", "word_ppl", "bits_per_byte", "tokens", "context", "stride",
"steps", "train_seconds", "pe", "seed"}; progress goes to stderr.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# copper's Schedule, shared with the task reference (not copied: one definition of the curve)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tasks_ref import lr_at_fraction, lr_at_step  # noqa: E402

# ----------------------------------------------------------------------------- the preset

# copper lm's "cpu-small" preset (lm/config.cpp). `nominal_steps` is the preset's step count
# (schedule.total): with a time budget it only sets the warmup's granularity (warmup =
# nominal // 20 steps' worth of the budget; the first rate is lr / warmup). `valid_every` is
# its eval_every: a timed copper run scores the whole valid split every that many steps inside
# its budget, so the reference does the same (--valid-every) to spend its time alike.
# scripts/lm_vs_torch.sh passes both from copper's own config.json.
PRESET = {
    "d_model": 256, "layers": 4, "heads": 4, "d_ff": 1024, "context": 256, "npos": 64, "dropout": 0.1,
    "batch": 16, "lr": 1e-3, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.1, "clip": 1.0,
    "nominal_steps": 800, "valid_every": 200,
}
ENCODINGS = ["abs", "rel", "rope", "cope", "cope+rel", "cope+rope"]

# ----------------------------------------------------------------------------- data


def load_split(data_dir, split):
    """The one place that knows the layout of a prepared folder (lm/dataset.h): manifest.json
    {"tokenizer": {"vocab", ...}, "splits": {split: {"file", "tokens", "dtype" ("uint16" |
    "uint32"), "words", "bytes", ...}}} beside raw little-endian token files.
    Returns (ids as a 1-D int32 tensor, the split's manifest entry, the vocabulary size)."""
    with open(os.path.join(data_dir, "manifest.json")) as f:
        manifest = json.load(f)
    info = manifest["splits"][split]
    width = {"uint16": 2, "uint32": 4}[info["dtype"]]
    path = os.path.join(data_dir, info["file"])
    try:
        import numpy as np

        ids = np.fromfile(path, dtype="<u2" if width == 2 else "<u4")
        # int32 holds every id (vocab <= 2^31) at half the memory of int64; windows are widened
        ids = torch.from_numpy(ids.astype(np.int32))
    except ImportError:  # the stdlib fallback
        import array

        ids = array.array("H" if width == 2 else "I")
        with open(path, "rb") as f:
            ids.frombytes(f.read())
        if sys.byteorder != "little":
            ids.byteswap()
        ids = torch.tensor(ids, dtype=torch.int64).to(torch.int32)
    if ids.numel() != info["tokens"]:
        raise SystemExit(f"lm_ref: {path} holds {ids.numel()} tokens, the manifest says {info['tokens']}")
    return ids, info, int(manifest["tokenizer"]["vocab"])


def train_batch(tokens, batch, context, gen):
    """`batch` windows of context + 1 tokens from uniform offsets 0 .. N - context - 1 (as
    lm::WindowSource): ids the first `context`, targets the next `context`, both (B, T) int64."""
    off = torch.randint(0, tokens.numel() - context, (batch,), generator=gen)
    rows = tokens[off[:, None] + torch.arange(context + 1)].long()  # (B, T + 1)
    return rows[:, :-1], rows[:, 1:]


def eval_windows(n_tokens, context, stride):
    """copper lm eval's windows (lm::for_each_window) over a file of n_tokens ids, as
    (start, length, score_from): the window reads ids [start, start + length) and predicts
    targets [start + 1, start + length]; of those, targets[score_from:] are scored here, the
    ones no earlier window scored. Windows start at 0, stride, 2 stride, ...; the last one is
    moved back to end exactly at the file's end, so each has `context` tokens (one window of
    n_tokens - 1 when the file is shorter than context + 1). Every target 1 .. n_tokens - 1 is
    scored exactly once (self_test checks it)."""
    if not (1 <= stride <= context):
        raise SystemExit(f"lm_ref: need 1 <= stride <= context, got stride {stride} and context {context}")
    m = n_tokens - 1  # targets at positions 1 .. m
    if m < 1:
        raise SystemExit(f"lm_ref: evaluation needs at least 2 tokens, the split has {n_tokens}")
    scored_end, start = 0, 0  # targets up to position scored_end are scored
    while True:
        last = start + context >= m
        if last:
            start = max(0, m - context)
        length = m - start if last else context
        end = start + length
        yield start, length, length - (end - scored_end)
        scored_end = end
        if last:
            return
        start += stride


# ----------------------------------------------------------------------------- encodings


def rope(x, base=10000.0):
    """Rotary embedding of x (B, H, T, Dh) at positions 0..T-1: each interleaved pair
    (x[2m], x[2m+1]) turned by angle t * base^(-2m/Dh); tables in float64, as copper's."""
    T, Dh = x.shape[-2], x.shape[-1]
    inv = base ** (-2.0 * torch.arange(Dh // 2, dtype=torch.float64, device=x.device) / Dh)
    ang = torch.arange(T, dtype=torch.float64, device=x.device)[:, None] * inv[None, :]  # (T, Dh/2)
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)


class RelPE(nn.Module):
    """Learned relative logits q_i . e[i - j] (added before the 1/sqrt(Dh) scale). A distance
    past the table (only at an evaluation context longer than the training one) reuses the
    last row when reuse_last (copper's rel_reuse_last, its default), else adds nothing."""

    def __init__(self, context, d_head):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(context, d_head) * 0.02)
        self.reuse_last = True

    def forward(self, q):  # q: (B, H, T, Dh) -> (B, H, T, T); future keys get distance 0 (masked later)
        T, R = q.shape[-2], self.weight.shape[0]
        pos = torch.arange(T, device=q.device)
        dist = (pos[:, None] - pos[None, :]).clamp(min=0)
        z = q @ self.weight.t()  # (B, H, T, R), z[.., i, d] = q_i . e[d]
        term = z.gather(-1, dist.clamp(max=R - 1).expand(*q.shape[:-1], T))
        return term if self.reuse_last or T <= R else term * (dist < R).to(term.dtype)


class CoPE(nn.Module):
    """Contextual positions (nn/pe/cope.h): gates g_ij = sigmoid(q_i.k_j/sqrt(Dh)) for j <= i
    (0 above the diagonal), positions p_ij = sum_{t=j..i} g_it clamped at npos - 1, and the
    term z_i[p_ij] with z_i[p] = q_i . e[p] interpolated between floor and ceil of p_ij."""

    def __init__(self, npos, d_head):
        super().__init__()
        self.pos_emb = nn.Parameter(torch.zeros(npos, d_head))

    def forward(self, q, gate_logits, future):  # q (B, H, T, Dh), gate_logits (B, H, T, T), future (T, T) bool
        npos = self.pos_emb.shape[0]
        gates = torch.sigmoid(gate_logits).masked_fill(future, 0.0)
        pos = gates.flip(-1).cumsum(-1).flip(-1).clamp(max=npos - 1)  # reverse cumsum along the keys
        z = q @ self.pos_emb.t()  # (B, H, T, npos)
        lo, hi = pos.floor(), pos.ceil()  # no gradient through either; it flows through w
        z_lo, z_hi = z.gather(-1, lo.long()), z.gather(-1, hi.long())
        w = pos - lo
        return z_lo + w * (z_hi - z_lo)


# ----------------------------------------------------------------------------- model
# Module names follow copper's parameter names (embed, pe, blocks.<i>.norm1, .attn.qkv,
# .attn.proj, .norm2, .mlp.fc1, .mlp.fc2, norm_f, head); the layer encodings' tables are
# attn.rel.weight and attn.cope.pos_emb here.


class Attention(nn.Module):
    """sdpa: abs and rope call F.scaled_dot_product_attention(is_causal=True) instead of writing
    the attention out (bench_train.py's speed comparison; rel and cope need the logits)."""

    def __init__(self, d, heads, pe, context, npos, dropout, sdpa=False):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        parts = pe.split("+")
        self.rope = "rope" in parts
        self.rel = RelPE(context, d // heads) if "rel" in parts else None
        self.cope = CoPE(npos, d // heads) if "cope" in parts else None
        self.sdpa = (sdpa and self.rel is None and self.cope is None
                     and hasattr(F, "scaled_dot_product_attention"))
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        B, T, D = x.shape
        Dh = D // self.heads
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, Dh).permute(2, 0, 3, 1, 4)  # each (B, H, T, Dh)
        if self.rope:
            q, k = rope(q), rope(k)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                               is_causal=True)
            return self.proj(y.transpose(1, 2).reshape(B, T, D))
        scale = 1.0 / math.sqrt(Dh)
        scaled = (q * scale) @ k.transpose(-1, -2)  # (B, H, T, T)
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        att = scaled
        if self.rel is not None:  # a "before the scale" term
            att = att + self.rel(q) * scale
        if self.cope is not None:  # an "after the scale" term, gated by the plain q.k/sqrt(Dh)
            att = att + self.cope(q, scaled, future)
        att = att.masked_fill(future, float("-inf")).softmax(-1)
        att = F.dropout(att, self.dropout, self.training)
        y = (att @ v).transpose(1, 2).reshape(B, T, D)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, d, d_ff):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, d_ff), nn.Linear(d_ff, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU


class Block(nn.Module):
    def __init__(self, d, heads, d_ff, pe, context, npos, dropout, sdpa=False):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
        self.attn = Attention(d, heads, pe, context, npos, dropout, sdpa)
        self.mlp = MLP(d, d_ff)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class LM(nn.Module):
    def __init__(self, vocab, pe, d_model, layers, heads, d_ff, context, npos, dropout, sdpa=False, **_):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)  # ~ N(0, 1)
        self.pe = nn.Embedding(context, d_model) if pe == "abs" else None
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(d_model, heads, d_ff, pe, context, npos, dropout, sdpa)
                                     for _ in range(layers)])
        self.norm_f = nn.LayerNorm(d_model, eps=1e-5)
        self.head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, ids):  # (B, T) int64 -> logits (B, T, vocab)
        x = self.embed(ids)
        if self.pe is not None:
            if ids.shape[1] > self.pe.num_embeddings:
                raise SystemExit(f"lm_ref: abs has {self.pe.num_embeddings} positions, asked for {ids.shape[1]} "
                                 "(copper refuses too): evaluate abs at the training context")
            x = x + self.pe.weight[: ids.shape[1]]
        x = self.drop(x)
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm_f(x))


# ----------------------------------------------------------------------------- train / eval


def evaluate(model, tokens, context, stride, batch=8):
    """Total NLL (nats, summed in float64) of every target of `tokens`, scored once each by the
    sliding windows of eval_windows, and the number of targets scored. Windows of equal
    length run `batch` at a time."""
    model.eval()
    total, scored = 0.0, 0
    pending = []

    def flush():
        nonlocal total, scored
        starts = torch.tensor([s for s, _, _ in pending])
        length = pending[0][1]
        rows = tokens[starts[:, None] + torch.arange(length + 1)].long()  # (b, L + 1)
        logp = F.log_softmax(model(rows[:, :-1]).float(), dim=-1)
        nll = -logp.gather(-1, rows[:, 1:, None]).squeeze(-1).double()  # (b, L)
        for i, (_, _, score_from) in enumerate(pending):
            total += nll[i, score_from:].sum().item()
            scored += length - score_from
        pending.clear()

    with torch.no_grad():
        for w in eval_windows(tokens.numel(), context, stride):
            if pending and (len(pending) == batch or w[1] != pending[0][1]):
                flush()
            pending.append(w)
        flush()
    model.train()
    return total, scored


def train(model, tokens, args, cfg, valid=None):
    """Trains in place for args.seconds (schedule by the fraction of the budget spent) or
    exactly args.steps steps (schedule over the steps). With `valid` tokens, a timed run
    scores them every args.valid_every steps within its budget (as copper's periodic
    validation; the score only goes to stderr). Returns (steps, seconds)."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=cfg["betas"], eps=cfg["eps"],
                            weight_decay=cfg["weight_decay"])  # decay on every parameter, as copper
    gen = torch.Generator().manual_seed(args.seed)  # data windows; dropout draws from the global generator
    model.train()
    t0, step, loss_sum, loss_n = time.time(), 0, 0.0, 0
    while True:
        elapsed = time.time() - t0
        if args.steps:
            if step >= args.steps:
                break
            rate = lr_at_step(step, args.steps, cfg["lr"])
        else:
            rate = lr_at_fraction(elapsed / args.seconds, args.nominal_steps, cfg["lr"])
        for g in opt.param_groups:
            g["lr"] = rate
        ids, tgt = train_batch(tokens, cfg["batch"], cfg["context"], gen)
        loss = F.cross_entropy(model(ids).flatten(0, 1), tgt.flatten())  # mean over all B*T positions
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip"])
        opt.step()
        step += 1
        loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
        elapsed = time.time() - t0
        if step % args.log_every == 0:
            print(f"[lm_ref {args.pe} s{args.seed}] step {step} loss {loss_sum / loss_n:.4f} lr {rate:.2e} "
                  f"{elapsed:.0f} s", file=sys.stderr, flush=True)
            loss_sum, loss_n = 0.0, 0
        if not args.steps and elapsed >= args.seconds:  # out of time: that was the last step
            break
        if valid is not None and not args.steps and step % args.valid_every == 0:
            nll, scored = evaluate(model, valid, cfg["context"], cfg["context"])
            print(f"[lm_ref {args.pe} s{args.seed}] step {step} valid ppl {math.exp(nll / scored):.2f} "
                  f"({time.time() - t0 - elapsed:.0f} s)", file=sys.stderr, flush=True)
    return step, time.time() - t0


# ----------------------------------------------------------------------------- copper's weights


def read_safetensors(path):
    """Tensors and metadata of a safetensors file (nn/safetensors.h): a little-endian u64
    header length, the JSON header, the data. F32 only (what copper's models hold)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, h in header.items():
        if h["dtype"] != "F32":
            raise SystemExit(f"lm_ref: {path}: {name} is {h['dtype']}; only F32 is read")
        begin, end = h["data_offsets"]
        buf = bytearray(raw[8 + n + begin:8 + n + end])
        tensors[name] = torch.frombuffer(buf, dtype=torch.float32).reshape(h["shape"]) if buf else \
            torch.zeros(h["shape"])
    return tensors, meta


def load_copper_run(run_dir):
    """The final model of a `copper lm train` run folder as this file's LM: the model config
    from the weights' metadata ("config", TransformerConfig::to_json), refused unless it is a
    variant this reference implements; the weights renamed (copper's attn.pe.* tables are
    attn.rel / attn.cope here) and loaded strictly. Returns (model, config)."""
    tensors, meta = read_safetensors(os.path.join(run_dir, "model.safetensors"))
    if "config" in meta:
        mc = json.loads(meta["config"])
    else:
        with open(os.path.join(run_dir, "config.json")) as f:
            mc = json.load(f)["model"]
    expect = {"mlp": "gelu", "norm": "layernorm", "pre_norm": True, "tie_embeddings": False,
              "cope_scale": "appendix", "cope_sep_key": False, "cope_every": 1}
    bad = {k: mc.get(k) for k, v in expect.items() if mc.get(k, v) != v}
    if bad or mc["pe"] not in ENCODINGS:
        raise SystemExit(f"lm_ref: {run_dir} is a model this reference does not implement ({bad or mc['pe']})")
    model = LM(mc["vocab"], mc["pe"], d_model=mc["d_model"], layers=mc["n_layers"], heads=mc["n_heads"],
               d_ff=mc.get("d_ff") or 4 * mc["d_model"], context=mc["context"],
               npos=mc.get("npos") or mc["context"] + 1, dropout=mc.get("dropout", 0.0))
    for b in model.blocks:
        if b.attn.rel is not None:
            b.attn.rel.reuse_last = mc.get("rel_reuse_last", True)
    renamed = {}
    for name, t in tensors.items():
        for old, new in [(".attn.pe.cope.pos_emb", ".attn.cope.pos_emb"), (".attn.pe.rel.weight", ".attn.rel.weight"),
                         (".attn.pe.pos_emb", ".attn.cope.pos_emb"), (".attn.pe.weight", ".attn.rel.weight")]:
            name = name.replace(old, new)
        renamed[name] = t
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    if missing or unexpected:
        raise SystemExit(f"lm_ref: {run_dir}: weights missing {missing}, not in this model {unexpected}")
    return model, mc


# ----------------------------------------------------------------------------- self-test


def self_test():
    """Checks the evaluation windows (every target scored exactly once, copper's window count,
    every window full length), the CoPE term against its definition written as loops, and
    that a small model runs past its training context with rel, rope and cope."""
    for n in [2, 3, 10, 100, 256, 257, 258, 1000, 1023, 4097]:
        for context in [1, 7, 64, 256]:
            for stride in sorted({1, max(1, context // 2), context // 3 or 1, context}):
                hits = [0] * n
                windows = list(eval_windows(n, context, stride))
                for start, length, score_from in windows:
                    assert length == min(context, n - 1) and 0 <= score_from < length, (n, context, stride)
                    assert start >= 0 and start + length <= n - 1
                    for t in range(start + 1 + score_from, start + length + 1):  # targets scored here
                        hits[t] += 1
                assert hits[0] == 0 and all(h == 1 for h in hits[1:]), (n, context, stride, hits)
                m = n - 1  # lm::count_windows
                assert len(windows) == (1 if m <= context else (m - context + stride - 1) // stride + 1)
    # CoPE against the formula: z_i[p] = q_i.e[p], p_ij = min(sum_{t=j..i} g_it, npos-1), interpolated
    torch.manual_seed(0)
    T, Dh, npos = 9, 4, 5
    cope = CoPE(npos, Dh)
    with torch.no_grad():
        cope.pos_emb.normal_()
    q, k = torch.randn(1, 1, T, Dh), torch.randn(1, 1, T, Dh)
    logits = q @ k.transpose(-1, -2) / math.sqrt(Dh)
    term = cope(q, logits, torch.ones(T, T, dtype=torch.bool).triu(1))[0, 0]
    for i in range(T):
        for j in range(i + 1):
            p = min(sum(torch.sigmoid(logits[0, 0, i, t]).item() for t in range(j, i + 1)), npos - 1)
            lo, hi = math.floor(p), math.ceil(p)
            z = [q[0, 0, i] @ cope.pos_emb[c] for c in range(npos)]
            want = (hi - p) * z[lo] + (p - lo) * z[hi] if hi != lo else z[lo]
            assert abs(term[i, j].item() - float(want)) < 1e-5, (i, j, term[i, j].item(), float(want))
    # rel past its table: the last row (reuse_last) or nothing
    rel = RelPE(4, Dh)
    for reuse in [True, False]:
        rel.reuse_last = reuse
        term = rel(q)[0, 0]
        for i in range(T):
            for j in range(i + 1):
                d = i - j
                want = q[0, 0, i] @ rel.weight[min(d, 3)] if reuse or d < 4 else torch.tensor(0.0)
                assert abs(term[i, j].item() - float(want)) < 1e-6, (reuse, i, j)
    # the encodings that run past the training context, and causality (later tokens change nothing)
    for pe in ENCODINGS:
        model = LM(50, pe, d_model=16, layers=2, heads=2, d_ff=32, context=8, npos=4, dropout=0.1).eval()
        if pe != "abs":
            with torch.no_grad():
                for b in model.blocks:
                    if b.attn.cope is not None:
                        b.attn.cope.pos_emb.normal_()
        ids = torch.randint(0, 50, (2, 8 if pe == "abs" else 20))
        with torch.no_grad():
            full, prefix = model(ids), model(ids[:, :5])
        assert torch.allclose(full[:, :5], prefix, atol=1e-5), pe
        # evaluation scores every target once, and batching the windows changes nothing
        if pe != "abs":
            tokens = torch.randint(0, 50, (61,), dtype=torch.int32)
            one, n_one = evaluate(model, tokens, 12, 5, batch=1)
            many, n_many = evaluate(model, tokens, 12, 5, batch=8)
            assert n_one == n_many == 60 and abs(one - many) < 1e-4 * abs(one), (pe, one, many)
    # the SDPA path (PyTorch 2.x; bench_train.py) gives the written-out attention's logits
    if hasattr(F, "scaled_dot_product_attention"):
        for pe in ["abs", "rope"]:
            torch.manual_seed(3)
            plain = LM(50, pe, d_model=16, layers=2, heads=2, d_ff=32, context=8, npos=4, dropout=0.0).eval()
            fast = LM(50, pe, d_model=16, layers=2, heads=2, d_ff=32, context=8, npos=4, dropout=0.0, sdpa=True).eval()
            fast.load_state_dict(plain.state_dict())
            assert fast.blocks[0].attn.sdpa and not plain.blocks[0].attn.sdpa
            ids = torch.randint(0, 50, (2, 8))
            with torch.no_grad():
                assert torch.allclose(plain(ids), fast(ids), atol=1e-5), pe
    print("lm_ref self-test: ok (windows, CoPE term, causality of every encoding, batched evaluation, SDPA path)")


# ----------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="a folder written by `copper lm prepare`")
    ap.add_argument("--pe", choices=ENCODINGS, default="cope")
    ap.add_argument("--seconds", type=float, default=600, help="wall-clock training budget")
    ap.add_argument("--steps", type=int, default=0,
                    help="train exactly this many steps (schedule over the steps, as copper's --steps) "
                         "instead of a time budget")
    ap.add_argument("--nominal-steps", type=int, default=PRESET["nominal_steps"],
                    help="the preset's step count, which sets the warmup of a timed run (copper's schedule.total)")
    ap.add_argument("--valid-every", type=int, default=PRESET["valid_every"],
                    help="timed runs: score the valid split every this many steps within the budget, as copper "
                         "(its loop.eval_every); 0: never")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--split", default="test", choices=["train", "valid", "test"])
    ap.add_argument("--context-eval", type=int, default=0, help="evaluation window (default: the training context)")
    ap.add_argument("--stride", type=int, default=0, help="evaluation stride (default: the evaluation window)")
    ap.add_argument("--rel-reuse-last", choices=["true", "false"],
                    help="rel at evaluation: distances past the table reuse its last row (true, the default) or "
                         "add nothing")
    ap.add_argument("--eval-run", metavar="DIR",
                    help="no training: evaluate the final weights of this `copper lm train` run with this file's "
                         "forward (a forward-parity check: the ppl should equal `copper lm eval`'s)")
    ap.add_argument("--log-every", type=int, default=50, help="a progress line on stderr every this many steps")
    ap.add_argument("--self-test", action="store_true", help="check the window logic and the encodings, then exit")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.self_test:
        self_test()
        return
    if not args.data:
        ap.error("--data is required")
    cfg = dict(PRESET)
    eval_ids, eval_info, vocab = load_split(args.data, args.split)
    steps, seconds, seed = 0, 0.0, args.seed
    if args.eval_run:  # copper's model: its own context and encoding
        model, mc = load_copper_run(args.eval_run)
        cfg["context"], args.pe = mc["context"], mc["pe"]
        try:
            with open(os.path.join(args.eval_run, "results.json")) as f:
                res = json.load(f)
            steps, seconds, seed = res.get("steps", 0), res.get("train_seconds", 0.0), res.get("seed", seed)
        except OSError:
            pass
    context_eval = args.context_eval or cfg["context"]
    stride = args.stride or context_eval
    next(eval_windows(eval_ids.numel(), context_eval, stride))  # refuses bad settings before training, not after
    if args.pe == "abs" and context_eval > cfg["context"]:
        ap.error(f"abs has {cfg['context']} positions; --context-eval {context_eval} needs an encoding that extrapolates")

    if not args.eval_run:
        train_ids = load_split(args.data, "train")[0]
        torch.manual_seed(args.seed)
        model = LM(vocab, args.pe, **cfg)
        valid_ids = load_split(args.data, "valid")[0] if args.valid_every > 0 and not args.steps else None
        steps, seconds = train(model, train_ids, args, cfg, valid_ids)
    if args.rel_reuse_last:  # training never reaches past the table; only a longer evaluation does
        for b in model.blocks:
            if b.attn.rel is not None:
                b.attn.rel.reuse_last = args.rel_reuse_last == "true"
    nll, scored = evaluate(model, eval_ids, context_eval, stride)
    print(json.dumps({
        "ppl": math.exp(nll / scored),
        "word_ppl": math.exp(nll / eval_info["words"]),
        "bits_per_byte": nll / math.log(2) / eval_info["bytes"],
        "tokens": scored,
        "context": context_eval,
        "stride": stride,
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "pe": args.pe,
        "seed": seed,
    }))


if __name__ == "__main__":
    main()
