#!/usr/bin/env bash
# lm_vs_torch.sh — copper's language model vs the plain PyTorch reference
# (bench/torch_ref/lm_ref.py): the cpu-small preset, the same token files, the same
# wall-clock budget, one thread each, run side by side; then test perplexity per encoding.
#
#   scripts/lm_vs_torch.sh SECONDS SEED [PES]     PES default "abs rel rope cope cope+rel cope+rope"
#   scripts/lm_vs_torch.sh 600 0 "abs cope"       (a subset; commas work too)
#   DATA=data/code-bpe8192 scripts/lm_vs_torch.sh 600 1 abs,rope,cope,cope+rope
#   FRESH=1 scripts/lm_vs_torch.sh 600 0          (retrain runs that are already there)
#   COPPER=path/to/copper scripts/lm_vs_torch.sh ...   (another copper binary)
#
# DATA (default data/wikitext-bpe8192) is a folder written by `copper lm prepare`. For each
# encoding copper trains into runs/lm_torch/copper-PE-sSEED (then `copper lm eval --split test`
# writes copper-PE-sSEED.eval.json) while the reference trains and evaluates in one process
# (torch-PE-sSEED.json); logs beside them. Then the reference scores copper's final weights
# with its own forward (parity-PE-sSEED.json), a check that both define the same model.
# Both schedules follow the fraction of the budget spent; the reference takes the preset's
# step count (which sets the warmup) and validation interval from copper's config.json, so
# both spend their budgets alike. A pair whose two results are already there is only printed
# again, unless FRESH=1.
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
copper=${COPPER:-build/bin/copper}
py=/usr/bin/python3  # Debian's python3-torch
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
[ -x "$copper" ] || { echo "lm_vs_torch: $copper is missing. HINT: make (or cmake --build build)" >&2; exit 2; }
[ -f "$data/manifest.json" ] || { echo "lm_vs_torch: $data is not a prepared folder. HINT: copper lm prepare --out $data" >&2; exit 2; }
fresh=()
[ "${FRESH:-0}" = 1 ] && fresh=(--fresh)
mkdir -p "$out"

# The reference's flags for copper's loop settings of run $1, from the config.json copper
# writes when the run starts (in DIR, or DIR.next when it replaces a finished run):
# --nominal-steps (loop.schedule.total, which sets the warmup) and --valid-every
# (loop.eval_every: validation inside the budget). Waits while copper ($2) runs, up to a
# minute; prints nothing if there is no such file.
copper_loop_flags() {
  local dir=$1 pid=$2
  for _ in $(seq 60); do
    for f in "$dir.next/config.json" "$dir/config.json"; do
      if [ -f "$f" ]; then
        $py -c '
import json, sys
loop = json.load(open(sys.argv[1]))["loop"]
print("--nominal-steps", loop["schedule"]["total"], "--valid-every", loop["eval_every"])' "$f" 2> /dev/null && return
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
  loop_flags=$(copper_loop_flags "$dir" "$cpid")
  [ -n "$loop_flags" ] || echo "$tag: copper's config.json was not found; the reference uses its preset" >&2
  # shellcheck disable=SC2086  # loop_flags is a list of flags
  $py bench/torch_ref/lm_ref.py --data "$data" --pe "$pe" --seconds "$seconds" --seed "$seed" --threads 1 \
    $loop_flags > "$out/torch-$tag.json.tmp" 2> "$out/torch-$tag.log" ||
    { echo "$tag: the reference FAILED (see $out/torch-$tag.log)" >&2; wait "$cpid" || true; exit 1; }
  mv "$out/torch-$tag.json.tmp" "$out/torch-$tag.json"
  wait "$cpid" || { echo "$tag: copper lm train FAILED (see $dir.train.log)" >&2; exit 1; }
  $copper lm eval --model "$dir" --data "$data" --split test --quiet > "$out/copper-$tag.eval.json" ||
    { echo "$tag: copper lm eval FAILED" >&2; exit 1; }
  # forward parity: copper's final weights evaluated by the reference's model definition
  $py bench/torch_ref/lm_ref.py --data "$data" --eval-run "$dir" --threads 1 > "$out/parity-$tag.json" ||
    echo "$tag: the reference could not evaluate copper's weights (see above)" >&2
done

# The table: test perplexity of each, their ratio, the steps each took in the budget, and
# "ref fwd": copper's weights scored by the reference's forward (equal to copper's ppl when
# the two model definitions agree).
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
print(f"{'pe':<10} {'copper':>9} {'torch':>9} {'ratio':>6} {'copper steps':>13} {'torch steps':>12} {'ref fwd':>9}")
for pe in pes:
    tag = f"{pe}-s{seed}"
    c = read_json(os.path.join(out, f"copper-{tag}.eval.json"))
    t = read_json(os.path.join(out, f"torch-{tag}.json"))
    steps = c.get("steps", read_json(os.path.join(out, f"copper-{tag}", "results.json")).get("steps"))
    cp, tp = c.get("ppl"), t.get("ppl")
    ratio = cp / tp if isinstance(cp, (int, float)) and isinstance(tp, (int, float)) else None
    fwd = read_json(os.path.join(out, f"parity-{tag}.json")).get("ppl")
    print(f"{pe:<10} {num(cp, '9.2f')} {num(tp, '9.2f')} {num(ratio, '6.3f')} {num(steps, '13d')} "
          f"{num(t.get('steps'), '12d')} {num(fwd, '9.2f')}")
EOF
