#!/usr/bin/env bash
# bench_vs_torch.sh — training throughput of the benchmark model (../shared/bench/README.md):
# copper (`copper bench train`) against PyTorch eager and torch.compile
# (bench/torch_ref/bench_train.py), then the ratios.
#
#   scripts/bench_vs_torch.sh                                   lm-small, abs rope cope, all cores
#   CONFIG=../shared/bench/lm-long.json THREADS=1 STEPS=8 ROUNDS=2 scripts/bench_vs_torch.sh
#   FRAMEWORKS="copper torch" scripts/bench_vs_torch.sh         (skip torch.compile)
#   DTYPE=bf16 scripts/bench_vs_torch.sh                        mixed precision in both
#
# One process per (framework, encoding), so each one's peak RSS is its own and no framework
# inherits the other's warm caches; within a round the frameworks alternate per encoding
# (copper, torch, torch.compile, next encoding ...), so that a change in machine load hits all
# of them. Every framework gets the same thread count (THREADS, default: all cores) through its
# own flag and the environment (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS).
# PyTorch comes from scripts/setup_torch.sh (a venv with PyTorch 2.x from pip, or Debian's
# python3-torch 1.13, which has no torch.compile: that framework is then skipped).
#
# Output: the JSON lines in $OUT/lines.jsonl (default runs/bench_vs_torch/<config>-t<threads>),
# then a table per encoding: tokens/s (median over rounds), step ms, peak RSS, MFU, and
# copper's tokens/s over each PyTorch's. Each line names the BLAS/oneDNN it ran on.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${CONFIG:-../shared/bench/lm-small.json}
pes=${PES:-"abs rope cope"}
steps=${STEPS:-8}
rounds=${ROUNDS:-1}
threads=${THREADS:-$(nproc)}
frameworks=${FRAMEWORKS:-"copper torch torch.compile"}
dtype=${DTYPE:-f32}
copper=${COPPER:-build/bin/copper}
out=${OUT:-runs/bench_vs_torch/$(basename "$config" .json)-t$threads$([ "$dtype" = f32 ] || echo "-$dtype")}

[ -x "$copper" ] || { echo "[bench_vs_torch] no $copper. HINT: make, or COPPER=build-x/bin/copper" >&2; exit 2; }
case $dtype in f32|bf16) ;; *) echo "[bench_vs_torch] unknown DTYPE '$dtype'. HINT: f32 or bf16" >&2; exit 2 ;; esac
[ -f "$config" ] || { echo "[bench_vs_torch] no config $config. HINT: CONFIG=../shared/bench/lm-small.json" >&2; exit 2; }
py=$(scripts/setup_torch.sh | tail -1)
if [[ " $frameworks " == *" torch.compile "* ]] && ! "$py" -c 'import torch, sys; sys.exit(0 if hasattr(torch, "compile") else 1)'; then
  echo "bench_vs_torch: torch $("$py" -c 'import torch; print(torch.__version__)') has no torch.compile; skipping it" >&2
  frameworks=${frameworks//torch.compile/}
fi
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
mkdir -p "$out"
lines=$out/lines.jsonl
: > "$lines"
echo "bench_vs_torch: $config, $dtype, threads $threads, $steps steps, $rounds round(s); lines in $lines" >&2
for ((r = 1; r <= rounds; r++)); do
  for pe in $pes; do
    for fw in $frameworks; do
      echo "  round $r  $pe  $fw" >&2
      case $fw in
        copper) "$copper" bench train --config "$config" --pe "$pe" --steps "$steps" --threads "$threads" --dtype "$dtype" >> "$lines" ;;
        torch) "$py" bench/torch_ref/bench_train.py --config "$config" --pe "$pe" --steps "$steps" --threads "$threads" --dtype "$dtype" >> "$lines" ;;
        torch.compile) "$py" bench/torch_ref/bench_train.py --config "$config" --pe "$pe" --steps "$steps" --threads "$threads" --dtype "$dtype" --compile >> "$lines" ;;
        *) echo "[bench_vs_torch] unknown framework '$fw'. HINT: copper, torch, torch.compile" >&2; exit 2 ;;
      esac
    done
  done
done

"$py" - "$lines" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault((r["pe"], r["framework"]), []).append(r)
fws = list(dict.fromkeys(r["framework"] for r in rows))
med = lambda rs, k: statistics.median(x[k] for x in rs)
# The machine's f32 FMA ceiling, the highest in copper's lines (bench/peak.cpp): every
# framework's rate as a fraction of it, the one ratio no framework can pass.
peaks = [r["fma_peak_gflops"] for r in rows if r.get("fma_peak_gflops")]
peak = max(peaks) if peaks else None
print(f"{'pe':6} {'framework':14} {'tokens/s':>10} {'step ms':>10} {'peak MB':>9} {'GFLOP/s':>9} {'mfu':>7} "
      f"{'of FMA peak':>11} {'copper/this':>12}")
for pe in dict.fromkeys(r["pe"] for r in rows):
    base = by.get((pe, "copper"))
    for fw in fws:
        rs = by.get((pe, fw))
        if not rs:
            continue
        ratio = f"{med(base, 'tokens_per_s') / med(rs, 'tokens_per_s'):.3f}" if base else ""
        of_peak = f"{med(rs, 'gflops') / peak:.3f}" if peak else "-"
        print(f"{pe:6} {fw:14} {med(rs, 'tokens_per_s'):10.1f} {med(rs, 'step_ms'):10.2f} {med(rs, 'peak_rss_mb'):9.1f} "
              f"{med(rs, 'gflops'):9.2f} {med(rs, 'mfu'):7.3f} {of_peak:>11} {ratio:>12}")
print()
if peak:
    unit = next(r["fma_unit"] for r in rows if r.get("fma_peak_gflops"))
    print(f"FMA ceiling: {peak:.1f} GFLOP/s ({unit}, the highest of copper's {len(peaks)} measurement(s))")
for fw in fws:
    r = next(x for x in rows if x["framework"] == fw)
    extra = f", torch {r['torch']}" if "torch" in r else ""
    print(f"{fw}: {r['blas']}{extra}, threads {r['threads']}")
PY
