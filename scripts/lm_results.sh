#!/usr/bin/env bash
# lm_results.sh — the language-model tables of docs/RESULTS.md: WikiText-2 (and the code
# corpus) at the cpu-small / code-small presets, every encoding and seed, then test
# perplexity per run and the context-length evaluations.
#
#   scripts/lm_results.sh [SEEDS] [STEPS] [CORPUS]        defaults: 2, the preset's, wikitext
#   PES="abs rel rope cope cope+rel" scripts/lm_results.sh 2 800 wikitext
#   PES="abs rope cope cope+rope"    scripts/lm_results.sh 2 800 code
#
# Runs go to runs/lm-CORPUS/PE-seedS (STEPS, when given, is part of the folder name:
# runs/lm-CORPUS-sSTEPS/...), JOBS (default 2) at a time with 2/JOBS threads each; a killed
# script started again resumes every run from its checkpoint and skips finished ones. Each
# run's results.json holds its valid and test scores at the training context
# (scripts/summarize_lm.py makes the table). On WikiText the same job then evaluates the
# test split at contexts 256, 512 and 1024 with stride 256 (rel both capped, its default, and
# with --rel-reuse-last false), for the encodings in LONG_PES (default "rel cope") and the
# first LONG_SEEDS seeds (default all); LONG_TOKENS=N scores only the first N test targets
# there (default: all); LONG=0 skips them. These are JSON lines in RUN.eval.jsonl, gathered
# into runs/lm-CORPUS*/eval.jsonl at the end. EXTRA="--set KEY=VALUE ..." adds flags to
# every `copper lm train`; COPPER= names another copper binary.
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
long_pes=" ${LONG_PES:-rel cope} "
long_seeds=${LONG_SEEDS:-$seeds}
[ "$corpus" = wikitext ] && [ "${LONG:-1}" = 1 ] || long_pes=" "
long_tokens=${LONG_TOKENS:-}
extra=${EXTRA:-}
export copper data preset root steps long_pes long_seeds long_tokens extra
for s in $(seq 0 $((seeds - 1))); do for pe in $pes; do echo "$pe $s"; done; done |  # seed 0 of every encoding first
  xargs -P "$jobs" -L 1 bash -c '
    set -euo pipefail
    pe=$0 s=$1 dir=$root/$0-seed$1
    # shellcheck disable=SC2086  # $extra is a list of flags
    $copper lm train --data "$data" --pe "$pe" --preset "$preset" --seed "$s" ${steps:+--steps $steps} $extra \
      --out "$dir" --quiet > "$dir.log" 2>&1 || { echo "FAILED: $pe seed $s (see $dir.log)" >&2; exit 255; }
    echo "trained $(date +%H:%M:%S): $pe seed $s"
    case "$long_pes" in *" $pe "*) [ "$s" -lt "$long_seeds" ] || exit 0 ;; *) exit 0 ;; esac
    [ ! -s "$dir.eval.jsonl" ] || exit 0  # evaluated by an earlier call
    : > "$dir.eval.jsonl.tmp"
    for ctx in 256 512 1024; do
      variants=("")
      if [ "$ctx" -gt 256 ]; then  # within the training context the two are the same model
        case "$pe" in rel|*+rel|rel+*) variants+=("--rel-reuse-last false") ;; esac
      fi
      for v in "${variants[@]}"; do
        # shellcheck disable=SC2086  # $v is empty or one flag and its value
        line=$($copper lm eval --model "$dir" --data "$data" --split test --context $ctx --stride 256 $v \
          ${long_tokens:+--tokens $long_tokens} --quiet) ||
          { echo "FAILED: eval of $pe seed $s at $ctx $v" >&2; exit 255; }
        echo "{\"pe\":\"$pe\",\"seed\":$s,\"flags\":\"--context $ctx --stride 256 $v\",\"eval\":$line}" >> "$dir.eval.jsonl.tmp"
      done
    done
    mv "$dir.eval.jsonl.tmp" "$dir.eval.jsonl"
    echo "evaluated $(date +%H:%M:%S): $pe seed $s at 256, 512 and 1024"'
: > "$root/eval.jsonl"
for pe in $pes; do
  for s in $(seq 0 $((seeds - 1))); do
    f=$root/$pe-seed$s.eval.jsonl
    [ -f "$f" ] && cat "$f" >> "$root/eval.jsonl"
  done
done
python3 scripts/summarize_lm.py "$root"
[ -s "$root/eval.jsonl" ] && cat "$root/eval.jsonl"
exit 0
