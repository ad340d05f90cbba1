#!/usr/bin/env python3
"""tasks_ref.py — a plain PyTorch reference for copper's task benchmarks.

The same model as copper's cpu-small preset (pre-norm GPT: width 64, 2 layers, 4 heads,
GELU MLP 4x, learned token embedding, untied head, AdamW without weight decay, batch 32)
with position encodings abs, rope, cope (the paper's CoPE, appendix scaling), trained on
Flip-Flop, selective copy or counting for a fixed wall-clock budget, then evaluated on
fresh held-out data, in-distribution and out-of-distribution.

It is the yardstick of issue 3: copper's held-out error must be no worse than this at the
same wall-clock time on the same machine. Run with Debian's python3-torch:

    /usr/bin/python3 bench/torch_ref/tasks_ref.py --task flipflop --pe cope --seconds 420 --seed 0

With --steps N it trains exactly N steps instead (the schedule over the steps, as copper's
--steps), to set it to the step count of a timed copper run. Prints one JSON line with the
errors.
"""
import argparse
import json
import math
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------- tasks
# Each task yields (tokens, loss_mask) pairs: a token-id list and, per position t, whether
# the prediction of tokens[t+1] counts (loss and error).


class FlipFlop:
    """FFL(p): instruction/bit pairs over {w,r,i}x{0,1}; first a write, last a read."""

    vocab = ["w", "r", "i", "0", "1"]

    def __init__(self, pairs=64, p=0.8):
        self.pairs, self.p = pairs, p

    def sample(self, rng):
        ins, bits = ["w"], [rng.randint(0, 1)]
        for k in range(1, self.pairs):
            if k == self.pairs - 1:
                c = "r"
            else:
                u = rng.random()
                c = "i" if u < self.p else ("w" if u < self.p + (1 - self.p) / 2 else "r")
            ins.append(c)
            bits.append(rng.randint(0, 1))
        last = None
        toks, mask = [], []
        for c, b in zip(ins, bits):
            if c == "w":
                last = b
            if c == "r":
                b = last
            toks += [self.vocab.index(c), self.vocab.index(str(b))]
            mask += [c == "r", False]  # predict the bit after each read
        return toks, mask

    def ood(self):
        return {"in": FlipFlop(self.pairs, 0.8), "sparse": FlipFlop(self.pairs, 0.98), "dense": FlipFlop(self.pairs, 0.1)}


class SelectiveCopy:
    """16 content tokens (16 symbols) among `blanks` blanks; then copy the content in order."""

    def __init__(self, blanks=64, content=16, symbols=16):
        self.blanks, self.content, self.symbols = blanks, content, symbols
        self.vocab = [chr(ord("a") + i) for i in range(symbols)] + ["_", "|"]

    def sample(self, rng):
        n = self.blanks + self.content
        where = sorted(rng.sample(range(n), self.content))
        seq = [self.symbols] * n
        content = [rng.randrange(self.symbols) for _ in range(self.content)]
        for pos, s in zip(where, content):
            seq[pos] = s
        toks = seq + [self.symbols + 1] + content
        mask = [False] * (n) + [True] * self.content + [False]
        return toks, mask[: len(toks)]

    def ood(self):
        b = self.blanks
        return {"in": SelectiveCopy(b), "dense": SelectiveCopy(b // 2), "sparse": SelectiveCopy(2 * b)}


class Counting:
    """Statements `v = 0 ;`, `pass;`, `v ++;` (weights 1:50:7), values <= 10; `print v`."""

    def __init__(self, nvars=3, max_steps=128):
        self.nvars, self.max_steps = nvars, max_steps
        self.names = [chr(ord("a") + i) for i in range(nvars)]
        self.vocab = self.names + ["=", "0", ";", "pass;", "++;", "print"] + [str(i) for i in range(1, 11)]

    def sample(self, rng):
        steps = rng.randint(3, self.max_steps)
        values = {}
        toks = []
        for _ in range(steps):
            incable = [v for v in values if values[v] < 10]
            while True:  # increments only of set variables below the cap: redraw otherwise
                kind = rng.choices(["set", "pass", "inc"], weights=[1, 50, 7])[0]
                if kind != "inc" or incable:
                    break
            if kind == "set":
                v = rng.choice(self.names)
                values[v] = 0
                toks += [v, "=", "0", ";"]
            elif kind == "inc":
                v = rng.choice(incable)
                values[v] += 1
                toks += [v, "++;"]
            else:
                toks += ["pass;"]
        if not values:
            v = rng.choice(self.names)
            values[v] = 0
            toks += [v, "=", "0", ";"]
        q = rng.choice(sorted(values))
        toks += ["print", q]
        ans = str(values[q])
        ids = [self.vocab.index(t) for t in toks] + [self.vocab.index(ans)]
        mask = [False] * (len(ids) - 2) + [True, False]
        return ids, mask

    def ood(self):
        return {"in": self}


class CountingFile:
    """Counting examples read from JSON lines {"context","question","answer"} — the files
    `copper task data --task counting` writes — so both frameworks see the same distribution."""

    def __init__(self, path):
        self.vocab = [chr(ord("a") + i) for i in range(26)] + [str(i) for i in range(11)]
        self.vocab += ["=", ";", "pass;", "++;", "print"]
        self.examples = []
        for line in open(path):
            js = json.loads(line)
            words = js["context"].split() + js["question"].split() + [js["answer"]]
            ids = [self.vocab.index(w) for w in words]
            self.examples.append((ids, [False] * (len(ids) - 2) + [True, False]))
        self.i = 0

    def sample(self, rng):
        self.i += 1
        return self.examples[(self.i - 1) % len(self.examples)]

    def ood(self):
        return {"in": self}


# ----------------------------------------------------------------------------- model


class CoPE(nn.Module):
    """Contextual position logits: gates -> positions (reverse cumsum) -> interpolated q.e."""

    def __init__(self, npos, head_dim):
        super().__init__()
        self.npos = npos
        self.pos_emb = nn.Parameter(torch.zeros(1, head_dim, npos))

    def forward(self, q, attn_logits):
        # q: (B, H, T, Dh); attn_logits: (B, H, T, T) = q.k/sqrt(Dh) with -inf above the diagonal
        gates = torch.sigmoid(attn_logits)  # masked entries -> 0
        pos = gates.flip(-1).cumsum(dim=-1).flip(-1).clamp(max=self.npos - 1)
        pos_ceil, pos_floor = pos.ceil().long(), pos.floor().long()
        logits_int = torch.matmul(q, self.pos_emb)  # (B, H, T, npos)
        lc, lf = logits_int.gather(-1, pos_ceil), logits_int.gather(-1, pos_floor)
        w = pos - pos_floor
        return lc * w + lf * (1 - w)


def rope(x, base=10000.0):
    # x: (B, H, T, Dh), interleaved pairs
    T, Dh = x.shape[-2], x.shape[-1]
    inv = base ** (-torch.arange(0, Dh, 2, dtype=torch.float32) / Dh)
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class RelLogits(nn.Module):
    """Learned relative logits q_i . e[i - j]; distances past the table reuse its last row."""

    def __init__(self, maxdist, head_dim):
        super().__init__()
        self.maxdist = maxdist
        self.emb = nn.Parameter(torch.randn(maxdist, head_dim) * 0.02)

    def forward(self, q):
        T = q.shape[-2]
        dist = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).clamp(0, self.maxdist - 1)
        z = q @ self.emb.t()  # (B, H, T, maxdist)
        return z.gather(-1, dist.expand(*q.shape[:-1], T))


class Block(nn.Module):
    def __init__(self, d, h, pe, npos):
        super().__init__()
        self.h, self.pe = h, pe
        self.rel = RelLogits(npos, d // h) if pe == "rel" else None
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.cope = CoPE(npos, d // h) if pe == "cope" else None

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
        if self.pe == "rope":
            q, k = rope(q), rope(k)
        att = q @ k.transpose(-1, -2)
        if self.rel is not None:  # added before the scale
            att = att + self.rel(q)
        att = att / math.sqrt(D // self.h)
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        att = att.masked_fill(mask, float("-inf"))
        if self.cope is not None:
            att = att + self.cope(q, att)
        y = att.softmax(-1) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, D))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class LM(nn.Module):
    def __init__(self, vocab, ctx, pe, d=64, layers=2, heads=4):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(ctx, d) if pe == "abs" else None
        self.blocks = nn.ModuleList([Block(d, heads, pe, ctx + 1) for _ in range(layers)])
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        x = self.tok(ids)
        if self.pos is not None:
            x = x + self.pos(torch.arange(ids.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x))


# ----------------------------------------------------------------------------- train/eval


# copper's cpu-small preset per task: peak learning rate, context, and the preset's step count
# (which sets the warmup's share of a timed run).
RECIPES = {"flipflop": (3e-3, 128, 2000), "selective-copy": (1e-3, 161, 4000), "counting": (1e-3, 512, 1800)}


def train_step(model, opt, ids, tgt, rate):
    """One step of the recipe: mean cross-entropy over the counted positions, AdamW at
    `rate`, gradients clipped at global norm 1. Returns the loss (before the step)."""
    for g in opt.param_groups:
        g["lr"] = rate
    loss = F.cross_entropy(model(ids).flatten(0, 1), tgt.flatten(), ignore_index=-100)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


def lr_at_step(s, total, lr):
    """copper's Schedule (cosine kind, min_lr_ratio 0.1, warmup total // 20) at the
    real-valued step s: linear warmup lr (s+1)/warmup capped at lr, then cosine to 10 %."""
    warm = max(1, total // 20)
    if s < warm:
        return lr * min(1.0, (s + 1) / warm)
    t = min(1.0, (s - warm) / max(1, total - warm))
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def lr_at_fraction(f, nominal, lr):
    """copper's Schedule::lr_at_fraction: the rate once a fraction f of a time budget is spent,
    the step curve of `nominal` steps stretched over the budget."""
    return lr_at_step(min(max(f, 0.0), 1.0) * nominal, nominal, lr)


CONTEXT = 512  # set by main()


def batch(task, rng, n, pool=None):
    # from a fixed training set when given (counting: 10k samples), else fresh samples
    seqs = [rng.choice(pool) if pool else task.sample(rng) for _ in range(n)]
    # longer examples keep their last CONTEXT tokens (as copper and the paper's code do)
    seqs = [(s[-CONTEXT:], m[-CONTEXT:]) for s, m in seqs]
    T = max(len(s) for s, _ in seqs)
    ids = torch.zeros(n, T, dtype=torch.long)
    tgt = torch.full((n, T), -100, dtype=torch.long)
    for i, (s, m) in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        for t in range(len(s) - 1):
            if m[t]:
                tgt[i, t] = s[t + 1]
    return ids, tgt


def evaluate(model, task, rng, n=1000, bs=100):
    model.eval()
    wrong_samples = wrong_tok = tokens = 0
    with torch.no_grad():
        for _ in range(n // bs):
            ids, tgt = batch(task, rng, bs)
            pred = model(ids).argmax(-1)
            counted = tgt != -100
            bad = (pred != tgt) & counted
            wrong_tok += bad.sum().item()
            tokens += counted.sum().item()
            wrong_samples += bad.any(-1).sum().item()
    model.train()
    return wrong_samples / n, wrong_tok / max(tokens, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=["flipflop", "selective-copy", "counting"], required=True)
    ap.add_argument("--pe", choices=["abs", "rope", "cope", "rel", "none"], required=True)
    ap.add_argument("--seconds", type=float, default=420)
    ap.add_argument("--steps", type=int, default=0,
                    help="train exactly this many steps (schedule over the steps, as copper's --steps) "
                         "instead of a time budget")
    ap.add_argument("--vars", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-file", help="counting: train on these examples instead of generating them")
    ap.add_argument("--eval-file", help="counting: evaluate on these examples")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    lr, ctx, nominal = RECIPES[args.task]
    if args.task == "flipflop":
        task = FlipFlop()
    elif args.task == "selective-copy":
        task = SelectiveCopy()
    else:
        task = Counting(args.vars)
        if args.train_file:
            task = CountingFile(args.train_file)
    global CONTEXT
    CONTEXT = ctx
    model = LM(len(task.vocab), ctx, args.pe)
    # counting trains on a fixed set of 10k samples (as the paper and copper's preset); the
    # other tasks draw a fresh sample every time
    if args.task == "counting":
        pool = task.examples if args.train_file else [task.sample(rng) for _ in range(10_000)]
    else:
        pool = None
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    # The same recipe as copper's cpu-small preset: 5% linear warmup, cosine down to 10% of
    # the rate, gradient clipping at global norm 1. The schedule follows the fraction of the
    # time budget spent, as copper's --time-budget does (Schedule::lr_at_fraction), so it
    # reaches its end however fast the machine is. `nominal` is the preset's step count, which
    # only sets the warmup's first rate, as in copper.
    # With --steps N the schedule runs over N steps instead (copper's --steps: warmup N // 20),
    # so that a run can be set to the step count of the other trainer's timed run.
    t0, step = time.time(), 0
    while (step < args.steps) if args.steps else (time.time() - t0 < args.seconds):
        if args.steps:
            rate = lr_at_step(step, args.steps, lr)
        else:
            rate = lr_at_fraction((time.time() - t0) / args.seconds, nominal, lr)
        ids, tgt = batch(task, rng, 32, pool)
        train_step(model, opt, ids, tgt, rate)
        step += 1
    erng = random.Random(10_000 + args.seed)
    out = {"task": args.task, "pe": args.pe, "seed": args.seed, "steps": step, "seconds": round(time.time() - t0, 1)}
    splits = {"in": CountingFile(args.eval_file)} if args.eval_file else task.ood()
    for name, t in splits.items():
        sample_err, tok_err = evaluate(model, t, erng)
        # Flip-Flop and counting report per-read / per-answer error; selective copy per sample
        out[name] = round(100 * (tok_err if args.task != "selective-copy" else sample_err), 2)
        if args.task == "selective-copy":
            out[name + "_token"] = round(100 * tok_err, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
