#!/usr/bin/env bash
# compare_torch.sh — copper vs the plain PyTorch reference (bench/torch_ref/tasks_ref.py)
# at the same wall-clock budget on this machine, one thread each, run side by side.
#
#   scripts/compare_torch.sh [BUDGET_SECONDS] [SEED]     (default 240 s, seed 0)
#   PAIRS="flipflop:cope counting:rel" scripts/compare_torch.sh 180 1   (a subset)
#   OUT=runs/torch_compare_450 PAIRS="counting:abs" scripts/compare_torch.sh 450 0  (another folder)
#
# For each task and encoding both trainers run at once, each on one core, each with the same
# time budget (copper: --time-budget); the learning rate follows the fraction of the budget
# spent (5 % warmup, cosine to 10 % at its end) in both. Results go to
# runs/torch_compare/<task>-<pe>-s<seed>.{copper,torch}.json; a summary line per pair is printed.
#
# MATCHED=1 (Flip-Flop and selective copy): both start from the same initial weights (the
# reference's for SEED) and train on the same batches (a copper data file read in order),
# so that they differ only in speed and rounding (bench/torch_ref/trajectory.py; copper's
# --init and --train-data). Results go to runs/torch_compare_matched.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-240}
seed=${2:-0}
matched=${MATCHED:-0}
out=runs/torch_compare
[ "$matched" = 1 ] && out=runs/torch_compare_matched
out=${OUT:-$out}
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
  if [ "$matched" = 1 ]; then
    [ "$task" = counting ] && { echo "MATCHED=1 covers flipflop and selective-copy" >&2; exit 2; }
    data="$out/$task-train-s$seed.data"  # more examples than a run takes at 1 thread
    [ -f "$data" ] || build/bin/copper task data --task "$task" --n 96000 --seed $((3000 + seed)) --out "$data" 2> /dev/null
    $py bench/torch_ref/trajectory.py --task "$task" --pe "$pe" --data "$data" --steps 0 --seed "$seed" \
      --save-init "$out/$tag.init.safetensors" --log /dev/null
    extra+=(--init "$out/$tag.init.safetensors" --train-data "$data")
  fi
  ( build/bin/copper task train --task "$task" "${extra[@]}" --pe "$pe" --preset cpu-small --seed "$seed" \
      --time-budget "$budget" --out "$out/$tag.copper" --fresh --quiet > "$out/$tag.copper.log" 2>&1 ) &
  cpid=$!
  if [ "$matched" = 1 ]; then
    $py bench/torch_ref/trajectory.py --task "$task" --pe "$pe" --data "$data" --seconds "$budget" --seed "$seed" \
      --save-init /dev/null --log "$out/$tag.torch.log.jsonl" > "$out/$tag.torch.json"
  else
    $py bench/torch_ref/tasks_ref.py --task "$task" --pe "$pe" --seconds "$budget" --seed "$seed" --threads 1 \
      "${extra[@]}" "${torch_extra[@]}" > "$out/$tag.torch.json"
  fi
  wait $cpid
  cp "$out/$tag.copper/results.json" "$out/$tag.copper.json"
  echo "$tag copper: $(tr -d '\n ' < "$out/$tag.copper.json" | head -c 400)"
  echo "$tag torch:  $(cat "$out/$tag.torch.json")"
done
