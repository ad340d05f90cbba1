#!/usr/bin/env bash
# lm_vs_torch.sh — copper's language model vs the plain PyTorch reference
# (bench/torch_ref/lm_ref.py): the cpu-small preset, the same token files, the same
# wall-clock budget, one thread each, run side by side; then test perplexity per encoding.
#
#   scripts/lm_vs_torch.sh SECONDS SEED [PES]     PES default "abs rel rope cope cope+rel cope+rope"
#   scripts/lm_vs_torch.sh 600 0 "abs cope"       (a subset; commas work too)
#   DATA=data/code-bpe8192 scripts/lm_vs_torch.sh 600 1 abs,rope,cope,cope+rope
#   FRESH=1 scripts/lm_vs_torch.sh 600 0          (retrain runs that are already there)
#
# DATA (default data/wikitext-bpe8192) is a folder written by `copper lm prepare`. For each
# encoding copper trains into runs/lm_torch/copper-PE-sSEED (then `copper lm eval --split test`
# writes copper-PE-sSEED.eval.json) while the reference trains and evaluates in one process
# (torch-PE-sSEED.json); logs beside them. Both schedules follow the fraction of the budget
# spent; the reference takes the preset's step count (which sets the warmup) from copper's
# config.json. A pair whose two results are already there is only printed again, unless FRESH=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  echo "usage: scripts/lm_vs_torch.sh SECONDS SEED [PES]   (DATA=folder, FRESH=1 to retrain)" >&2
  exit 2
fi
seconds=$1
seed=$2
pes=${3:-abs rel rope cope cope+rel cope+rope}
pes=${pes//,/ }
data=${DATA:-data/wikitext-bpe8192}
out=runs/lm_torch
copper=build/bin/copper
py=/usr/bin/python3  # Debian's python3-torch
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
[ -x "$copper" ] || { echo "lm_vs_torch: $copper is missing. HINT: make (or cmake --build build)" >&2; exit 2; }
[ -f "$data/manifest.json" ] || { echo "lm_vs_torch: $data is not a prepared folder. HINT: copper lm prepare --out $data" >&2; exit 2; }
fresh=()
[ "${FRESH:-0}" = 1 ] && fresh=(--fresh)
mkdir -p "$out"

# The preset's step count (schedule.total) from copper's config.json of run $1, written when
# the run starts (in DIR, or DIR.next when it replaces a finished run); waits while copper
# ($2) runs, up to a minute. Prints nothing if it cannot be found.
nominal_steps() {
  local dir=$1 pid=$2
  for _ in $(seq 60); do
    for f in "$dir.next/config.json" "$dir/config.json"; do
      if [ -f "$f" ]; then
        $py -c '
import json, sys
def find(o):  # the first {"schedule": {"total": N}} anywhere in the config
    if isinstance(o, dict):
        s = o.get("schedule")
        if isinstance(s, dict) and isinstance(s.get("total"), int):
            return s["total"]
        o = list(o.values())
    for v in o if isinstance(o, list) else []:
        r = find(v)
        if r is not None:
            return r
r = find(json.load(open(sys.argv[1])))
if r:
    print(r)' "$f" && return
      fi
    done
    kill -0 "$pid" 2> /dev/null || return 0
    sleep 1
  done
}

for pe in $pes; do
  tag=$pe-s$seed
  dir=$out/copper-$tag
  if [ -z "${fresh[*]}" ] && [ -f "$dir/results.json" ] && [ -s "$out/copper-$tag.eval.json" ] && [ -s "$out/torch-$tag.json" ]; then
    echo "$tag: both runs are there (FRESH=1 retrains them)"
    continue
  fi
  echo "$tag: training copper and the reference for $seconds s each ($(date +%H:%M:%S))"
  ( $copper lm train --data "$data" --pe "$pe" --preset cpu-small --seed "$seed" --time-budget "$seconds" \
      --out "$dir" --quiet "${fresh[@]}" > "$dir.train.log" 2>&1 ) &
  cpid=$!
  nominal=$(nominal_steps "$dir" "$cpid")
  [ -n "$nominal" ] || echo "$tag: no schedule.total in copper's config.json; the reference uses its default" >&2
  $py bench/torch_ref/lm_ref.py --data "$data" --pe "$pe" --seconds "$seconds" --seed "$seed" --threads 1 \
    ${nominal:+--nominal-steps "$nominal"} > "$out/torch-$tag.json.tmp" 2> "$out/torch-$tag.log" ||
    { echo "$tag: the reference FAILED (see $out/torch-$tag.log)" >&2; wait "$cpid" || true; exit 1; }
  mv "$out/torch-$tag.json.tmp" "$out/torch-$tag.json"
  wait "$cpid" || { echo "$tag: copper lm train FAILED (see $dir.train.log)" >&2; exit 1; }
  $copper lm eval --model "$dir" --data "$data" --split test --quiet > "$out/copper-$tag.eval.json" ||
    { echo "$tag: copper lm eval FAILED" >&2; exit 1; }
done

# The table: test perplexity of each, their ratio, and the steps each took in the budget.
$py - "$out" "$seed" $pes <<'EOF'
import json, os, sys
out, seed, pes = sys.argv[1], sys.argv[2], sys.argv[3:]
def read_json(path):  # a JSON file, or the last JSON line of a log; {} if neither
    try:
        text = open(path).read()
    except OSError:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        for line in reversed(text.splitlines()):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return {}
def num(x, fmt):
    return format(x, fmt) if isinstance(x, (int, float)) else "-"
print(f"test perplexity, seed {seed}")
print(f"{'pe':<10} {'copper':>9} {'torch':>9} {'ratio':>6} {'copper steps':>13} {'torch steps':>12}")
for pe in pes:
    tag = f"{pe}-s{seed}"
    c = read_json(os.path.join(out, f"copper-{tag}.eval.json"))
    t = read_json(os.path.join(out, f"torch-{tag}.json"))
    steps = c.get("steps", read_json(os.path.join(out, f"copper-{tag}", "results.json")).get("steps"))
    cp, tp = c.get("ppl"), t.get("ppl")
    ratio = cp / tp if isinstance(cp, (int, float)) and isinstance(tp, (int, float)) else None
    print(f"{pe:<10} {num(cp, '9.2f')} {num(tp, '9.2f')} {num(ratio, '6.3f')} {num(steps, '13d')} {num(t.get('steps'), '12d')}")
EOF
