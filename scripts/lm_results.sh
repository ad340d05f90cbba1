#!/usr/bin/env bash
# lm_results.sh — the language-model tables of docs/RESULTS.md: WikiText-2 (and the code
# corpus) at the cpu-small / code-small presets, every encoding and seed, then test
# perplexity per run and the context-length evaluations.
#
#   scripts/lm_results.sh [SEEDS] [STEPS] [CORPUS]        defaults: 2, the preset's, wikitext
#   PES="abs rel rope cope cope+rel" scripts/lm_results.sh 2 1600 wikitext
#   PES="abs rope cope cope+rope"    scripts/lm_results.sh 2 1600 code
#
# Runs go to runs/lm-CORPUS/PE-seedS (STEPS, when given, is part of the folder name:
# runs/lm-CORPUS-sSTEPS/...), JOBS (default 2) at a time with 2/JOBS threads each; a killed
# script started again resumes every run from its checkpoint and skips finished ones. Then,
# for each run: `copper lm eval --split test` at the training context and, for WikiText, at
# 512 and 1024 with stride 256 (rel both as trained, capped, and with --rel-reuse-last false).
# Everything is printed as JSON lines and collected in runs/lm-CORPUS*/eval.jsonl. LONG=0 skips
# the longer-context evaluations; COPPER= names another copper binary.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-2}
steps=${2:-}
corpus=${3:-wikitext}
jobs=${JOBS:-2}
threads=$((2 / jobs > 0 ? 2 / jobs : 1))
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
data_root=${DATA_ROOT:-../shared/data}
copper=${COPPER:-build/bin/copper}
case "$corpus" in
  wikitext) src=$data_root/wikitext-2; preset=cpu-small; pes=${PES:-abs rel rope cope cope+rel} ;;
  code)     src=$data_root/code;       preset=code-small; pes=${PES:-abs rope cope cope+rope} ;;
  *) echo "lm_results: corpus is wikitext or code, not '$corpus'" >&2; exit 2 ;;
esac
data=data/$corpus-bpe8192
if [ ! -f "$data/manifest.json" ]; then
  $copper lm prepare --train "$src/train.txt.xz" --valid "$src/valid.txt.xz" --test "$src/test.txt.xz" \
    --tokenizer bpe --vocab 8192 --out "$data"
fi
root=runs/lm-$corpus${steps:+-s$steps}
mkdir -p "$root"
for pe in $pes; do for s in $(seq 0 $((seeds - 1))); do echo "$pe $s"; done; done |
  xargs -P "$jobs" -L 1 sh -c '
    pe=$0 s=$1 dir='"$root"'/$0-seed$1
    '"$copper"' lm train --data '"$data"' --pe "$pe" --preset '"$preset"' --seed "$s" '"${steps:+--steps $steps}"' \
      --out "$dir" --quiet > "$dir.log" 2>&1 || { echo "FAILED: $pe seed $s (see $dir.log)" >&2; exit 255; }
    echo "trained $(date +%H:%M:%S): $pe seed $s"'
: > "$root/eval.jsonl"
for pe in $pes; do
  for s in $(seq 0 $((seeds - 1))); do
    dir=$root/$pe-seed$s
    evals=("")
    if [ "$corpus" = wikitext ] && [ "$pe" != abs ] && [ "${LONG:-1}" = 1 ]; then
      evals+=("--context 512 --stride 256" "--context 1024 --stride 256")
    fi
    for e in "${evals[@]}"; do
      variants=("")
      case "$pe" in rel|*+rel|rel+*) [ -n "$e" ] && variants+=("--rel-reuse-last false") ;; esac
      for v in "${variants[@]}"; do
        # shellcheck disable=SC2086
        line=$($copper lm eval --model "$dir" --data "$data" --split test $e $v --quiet)
        echo "{\"pe\":\"$pe\",\"seed\":$s,\"flags\":\"$e $v\",\"eval\":$line}" | tee -a "$root/eval.jsonl"
      done
    done
  done
done
