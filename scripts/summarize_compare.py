#!/usr/bin/env python3
"""summarize_compare.py — the markdown table of runs/torch_compare (from compare_torch.sh).

    python3 scripts/summarize_compare.py [runs/torch_compare]

One row per task, encoding and seed: steps and seconds of each trainer, and the held-out
error (%) of each split, copper beside PyTorch. Then one row per task, encoding and split
over the seeds: mean and median of each, in how many seeds copper was no worse, and how
likely copper's errors would rank this high by chance if both frameworks drew their errors
from one distribution (an exact one-sided rank-sum test, ties at mid-rank: a small p says
copper is worse; seeds are independent draws, not pairs, since the two use different
random streams).
"""
import glob
import itertools
import json
import os
import statistics
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "runs/torch_compare"
# copper's split names -> the reference's
splits = {"flipflop": [("in", "in"), ("ood_sparse", "sparse"), ("ood_dense", "dense")],
          "selective-copy": [("in", "in"), ("ood_dense", "dense"), ("ood_sparse", "sparse")],
          "counting": [("in", "in")]}
rows = {}  # (task, pe, split) -> [(copper %, torch %)] over seeds
print("| task | pe | seed | copper steps (s) | torch steps (s) | " + "split: copper / torch error % |")
print("|---|---|---|---|---|---|")
for path in sorted(glob.glob(os.path.join(root, "*.torch.json"))):
    tag = os.path.basename(path)[: -len(".torch.json")]
    cpath = os.path.join(root, tag + ".copper.json")
    if not os.path.exists(cpath):
        continue
    try:
        t = json.load(open(path))
        c = json.load(open(cpath))
    except (json.JSONDecodeError, OSError):
        continue  # a pair still running
    task = t["task"]
    cells = []
    for cs, ts in splits[task]:
        if cs not in c["splits"]:
            continue
        sp = c["splits"][cs]
        # selective copy: samples with any wrong token; others: wrong answers / read bits
        cerr = 100 * (sp["sample_error"] if task == "selective-copy" else sp["error"])
        cells.append(f"{ts} {cerr:.2f} / {t[ts]:.2f}")
        rows.setdefault((task, t["pe"], ts), []).append((cerr, t[ts]))
    print(f"| {task} | {t['pe']} | {t['seed']} | {c['steps']} ({c['train_seconds']:.0f}) | "
          f"{t['steps']} ({t['seconds']:.0f}) | {'; '.join(cells)} |")



def p_copper_worse(c, t):
    """P(rank sum of a random len(c)-subset >= copper's), over all ways to split the pooled
    errors (mid-ranks for ties). Exact enumeration; 1.0 when every error is equal."""
    pooled = sorted(c + t)
    rank = {}
    for v in set(pooled):
        idx = [i for i, x in enumerate(pooled) if x == v]
        rank[v] = (idx[0] + idx[-1]) / 2 + 1
    ranks = [rank[v] for v in c + t]
    observed = sum(rank[v] for v in c)
    hits = total = 0
    for subset in itertools.combinations(range(len(ranks)), len(c)):
        total += 1
        hits += sum(ranks[i] for i in subset) >= observed - 1e-9
    return hits / total


print()
print("| task | pe | split | seeds | copper mean / median | torch mean / median | copper no worse in | p (copper worse) |")
print("|---|---|---|---|---|---|---|---|")
for (task, pe, split), pairs in sorted(rows.items()):
    c = [p[0] for p in pairs]
    t = [p[1] for p in pairs]
    ok = sum(1 for a, b in pairs if a <= b + 1e-9)
    print(f"| {task} | {pe} | {split} | {len(pairs)} | {statistics.mean(c):.2f} / {statistics.median(c):.2f} | "
          f"{statistics.mean(t):.2f} / {statistics.median(t):.2f} | {ok} of {len(pairs)} | {p_copper_worse(c, t):.2f} |")
