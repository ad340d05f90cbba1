#!/usr/bin/env bash
# compare_full.sh — the full-length cpu-small tables of docs/RESULTS.md: every encoding and
# seed of `copper task compare` for one or more tasks, run JOBS at a time with 2/JOBS threads
# each, then one table per task.
#
#   scripts/compare_full.sh [SEEDS] [JOBS] [TASKS...]
#   scripts/compare_full.sh 3 2 counting selective-copy flipflop     (the default)
#
# Encodings: abs, rope, cope (counting: abs, rel, cope, as in the paper's table), or the
# comma-separated list in PES (PES=abs,rope,cope,none adds a NoPE row: the finished runs are
# only evaluated again, the new ones trained); counting uses 3 variables. Each run is `copper task train --preset cpu-small --seed S` into
# runs/full-TASK/PE-seedS, the folder layout of `copper task compare`. On 2 cores two
# one-thread runs side by side finish the set sooner than one two-thread run after another
# (at this model size the workers of a 2-thread step spend much of it waiting on each other),
# so JOBS=2 is the default; each run's train_seconds is then its own wall time beside a
# neighbour, not the preset's time alone on 2 cores. The queue starts with CoPE, the slowest,
# so that the two lanes end close together. Afterwards `copper task compare` over each folder
# resumes every finished run (nothing left to train), evaluates it again on the same held-out
# data and prints the table (also saved as runs/full-TASK/table.txt).
# A killed script can simply be started again: each run resumes from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-3}
jobs=${2:-2}
shift $(($# < 2 ? $# : 2))
tasks=${*:-counting selective-copy flipflop}
threads=$((2 / jobs > 0 ? 2 / jobs : 1))
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
pes_of() {
  if [ -n "${PES:-}" ]; then echo "${PES//,/ }"; elif [ "$1" = counting ]; then echo "abs rel cope"; else echo "abs rope cope"; fi
}
for pe in cope rel rope abs none $(for t in $tasks; do pes_of "$t"; done | tr ' ' '\n' | sort -u); do
  case " ${queued:-} " in *" $pe "*) continue ;; esac
  queued="${queued:-} $pe"
  for task in $tasks; do
    case " $(pes_of "$task") " in *" $pe "*) ;; *) continue ;; esac
    mkdir -p "runs/full-$task"
    for s in $(seq 0 $((seeds - 1))); do echo "$task $pe $s"; done
  done
done | xargs -P "$jobs" -L 1 sh -c '
  task=$0 pe=$1 s=$2 dir=runs/full-$0/$1-seed$2
  vars=""; [ "$task" = counting ] && vars="--vars 3"
  build/bin/copper task train --task "$task" $vars --pe "$pe" --preset cpu-small --seed "$s" --out "$dir" \
    --quiet > "$dir.log" 2>&1 || { echo "FAILED: $task $pe seed $s (see $dir.log)" >&2; exit 255; }
  echo "done $(date +%H:%M:%S): $task $pe seed $s"'
for task in $tasks; do
  vars=(); [ "$task" = counting ] && vars=(--vars 3)
  pes=$(pes_of "$task" | tr ' ' ,)
  build/bin/copper task compare --task "$task" "${vars[@]}" --pe "$pes" --seeds "$seeds" --out "runs/full-$task" \
    --quiet | tee "runs/full-$task/table.txt"
done
