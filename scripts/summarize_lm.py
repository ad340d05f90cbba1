#!/usr/bin/env python3
"""summarize_lm.py — the language-model table of docs/RESULTS.md from a folder of runs.

    python3 scripts/summarize_lm.py runs/lm-wikitext-s150

Reads every RUN/results.json under the folder (written by `copper lm train`; runs named
PE-seedS by scripts/lm_results.sh) and prints one Markdown row per encoding: the mean over
seeds of valid and test perplexity (per BPE token), test word-level perplexity and bits per
byte, with the per-seed values beside them.
"""
import json
import pathlib
import statistics
import sys
from collections import defaultdict


def main(root):
    rows = defaultdict(list)
    for res in sorted(pathlib.Path(root).glob("*/results.json")):
        r = json.loads(res.read_text())
        rows[r["pe"]].append(r)
    if not rows:
        sys.exit(f"summarize_lm: no */results.json under {root}")
    print("| encoding | seeds | steps | valid ppl | test ppl | test word ppl | test bits/byte | per seed (test ppl) |")
    print("|---|---|---|---|---|---|---|---|")
    for pe, rs in rows.items():
        mean = lambda split, key: statistics.mean(r[split][key] for r in rs)
        per_seed = ", ".join(f"{r['test']['ppl']:.1f} (seed {r['seed']})" for r in sorted(rs, key=lambda r: r["seed"]))
        print(f"| {pe} | {len(rs)} | {rs[0]['steps']} | {mean('valid', 'ppl'):.1f} | {mean('test', 'ppl'):.1f} | "
              f"{mean('test', 'word_ppl'):.0f} | {mean('test', 'bits_per_byte'):.3f} | {per_seed} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/lm-wikitext")
