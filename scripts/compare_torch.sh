#!/usr/bin/env bash
# compare_torch.sh — copper vs the plain PyTorch reference (bench/torch_ref/tasks_ref.py)
# at the same wall-clock budget on this machine, one thread each, run side by side.
#
#   scripts/compare_torch.sh [BUDGET_SECONDS] [SEED]     (default 240 s, seed 0)
#   PAIRS="flipflop:cope counting:rel" scripts/compare_torch.sh 180 1   (a subset)
#
# For each task and encoding both trainers run at once, each on one core, each with the same
# time budget: after 10 steps each sets its step count to what fills the budget and
# stretches its warmup + cosine schedule to it (copper: --time-budget). Results go to
# runs/torch_compare/<task>-<pe>-s<seed>.{copper,torch}.json; a summary line per pair is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-240}
seed=${2:-0}
out=runs/torch_compare
mkdir -p "$out"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
py=/usr/bin/python3
pairs=${PAIRS:-"flipflop:abs flipflop:rope flipflop:cope selective-copy:abs selective-copy:rope selective-copy:cope counting:abs counting:rel counting:cope"}
case " $pairs " in
  *" counting:"*)
    # The reference trains and evaluates on files copper writes, so both see one distribution:
    # 10k training programs (as the preset) and 1000 held-out ones; written once per seed.
    build/bin/copper task data --task counting --vars 3 --n 10000 --seed $((1000 + seed)) --out "$out/counting-train-s$seed.jsonl" 2> /dev/null
    build/bin/copper task data --task counting --vars 3 --n 1000 --seed $((2000 + seed)) --out "$out/counting-eval-s$seed.jsonl" 2> /dev/null ;;
esac
for pair in $pairs; do
  task=${pair%%:*} pe=${pair#*:}
  extra=() torch_extra=()
  if [ "$task" = counting ]; then
    extra=(--vars 3)
    torch_extra=(--train-file "$out/counting-train-s$seed.jsonl" --eval-file "$out/counting-eval-s$seed.jsonl")
  fi
  tag="$task-$pe-s$seed"
  rm -rf "$out/$tag.copper"
  ( build/bin/copper task train --task "$task" "${extra[@]}" --pe "$pe" --preset cpu-small --seed "$seed" \
      --time-budget "$budget" --out "$out/$tag.copper" --fresh --quiet > "$out/$tag.copper.log" 2>&1 ) &
  cpid=$!
  $py bench/torch_ref/tasks_ref.py --task "$task" --pe "$pe" --seconds "$budget" --seed "$seed" --threads 1 \
    "${extra[@]}" "${torch_extra[@]}" > "$out/$tag.torch.json"
  wait $cpid
  cp "$out/$tag.copper/results.json" "$out/$tag.copper.json"
  echo "$tag copper: $(tr -d '\n ' < "$out/$tag.copper.json" | head -c 400)"
  echo "$tag torch:  $(cat "$out/$tag.torch.json")"
done
