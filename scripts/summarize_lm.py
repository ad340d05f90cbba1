#!/usr/bin/env python3
"""summarize_lm.py — the language-model tables of docs/RESULTS.md from a folder of runs.

    python3 scripts/summarize_lm.py runs/lm-wikitext-s200

Reads every RUN/results.json under the folder (written by `copper lm train`; runs named
PE-seedS by scripts/lm_results.sh) and prints one Markdown row per encoding: the mean over
seeds of valid and test perplexity (per BPE token), test word-level perplexity and bits per
byte, with the per-seed values beside them.

When the folder also holds RUN.eval.jsonl files (lm_results.sh's context-length
evaluations), a second table gives test perplexity against the evaluation context, one row
per encoding and variant (rel capped, rel with --rel-reuse-last false), averaged over the
seeds that have every column, with the number of test targets scored. A context missing from
a run's evaluations (the training one, when lm_results.sh did not evaluate it) is taken from
results.json, and an uncapped rel row takes the capped row's values at contexts where the two
are the same model.
"""
import json
import pathlib
import statistics
import sys
from collections import defaultdict


# The order of the paper's tables, then any other encoding by name.
ORDER = ["abs", "rel", "rope", "alibi", "cope", "cope+rel", "cope+rope"]


def order(pe):
    return (ORDER.index(pe), "") if pe in ORDER else (len(ORDER), pe)


def main(root):
    rows = defaultdict(list)
    for res in sorted(pathlib.Path(root).glob("*/results.json")):
        r = json.loads(res.read_text())
        rows[r["pe"]].append(r)
    if not rows:
        sys.exit(f"summarize_lm: no */results.json under {root}")
    print("| encoding | seeds | steps | valid ppl | test ppl | test word ppl | test bits/byte | per seed (test ppl) |")
    print("|---|---|---|---|---|---|---|---|")
    for pe, rs in sorted(rows.items(), key=lambda kv: order(kv[0])):
        mean = lambda split, key: statistics.mean(r[split][key] for r in rs)
        per_seed = ", ".join(f"{r['test']['ppl']:.1f} (seed {r['seed']})" for r in sorted(rs, key=lambda r: r["seed"]))
        print(f"| {pe} | {len(rs)} | {rs[0]['steps']} | {mean('valid', 'ppl'):.1f} | {mean('test', 'ppl'):.1f} | "
              f"{mean('test', 'word_ppl'):.0f} | {mean('test', 'bits_per_byte'):.3f} | {per_seed} |")
    context_table(root, rows)


def context_table(root, rows):
    # (pe, variant) -> seed -> context -> ppl; variant "" or "uncapped"
    table = defaultdict(lambda: defaultdict(dict))
    scored = set()
    for f in sorted(pathlib.Path(root).glob("*.eval.jsonl")):
        for line in f.read_text().splitlines():
            e = json.loads(line)
            variant = "uncapped" if "--rel-reuse-last false" in e["flags"] else ""
            table[(e["pe"], variant)][e["seed"]][e["eval"]["context"]] = e["eval"]["ppl"]
            scored.add(e["eval"]["tokens"])
    if not table:
        return
    for (pe, variant), seeds in table.items():
        for seed, by_ctx in seeds.items():
            if variant:  # the capped row's contexts that the uncapped one did not need
                for c, v in table[(pe, "")].get(seed, {}).items():
                    by_ctx.setdefault(c, v)
            for r in rows.get(pe, []):  # the training context, if it was not evaluated
                if r["seed"] == seed:
                    by_ctx.setdefault(r["test"]["context"], r["test"]["ppl"])
    cols = sorted({c for seeds in table.values() for by_ctx in seeds.values() for c in by_ctx})
    print()
    print(f"test targets scored per evaluation: {', '.join(str(n) for n in sorted(scored))}")
    print()
    print("| encoding | seeds | " + " | ".join(f"test ppl at {c}" for c in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for (pe, variant), seeds in sorted(table.items(), key=lambda kv: (order(kv[0][0]), kv[0][1])):
        full = [s for s in seeds.values() if all(c in s for c in cols)]
        if not full:
            continue
        name = pe + (" (uncapped: --rel-reuse-last false)" if variant else " (capped)" if "rel" in pe else "")
        cells = " | ".join(f"{statistics.mean(s[c] for s in full):.1f}" for c in cols)
        print(f"| {name} | {len(full)} | {cells} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/lm-wikitext")
