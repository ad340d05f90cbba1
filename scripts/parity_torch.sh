#!/usr/bin/env bash
# parity_torch.sh — copper's loss and gradients against the PyTorch reference, for each task
# and encoding the reference has (bench/torch_ref/grad_parity.py says how they are compared).
#
#   scripts/parity_torch.sh [STEPS]     (default 30: the model is trained that far first)
#
# Each model is trained STEPS steps by copper (so no parameter sits at its initial value,
# CoPE's zero table included), then both frameworks take the loss of the same 8 held-out
# examples and its gradient. Outputs under runs/parity (git-ignored). Exits 1 on a mismatch.
# PARITY_LINES=. prints every parameter's line.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-30}
out=runs/parity
mkdir -p "$out"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
py=/usr/bin/python3
pairs=${PAIRS:-"flipflop:abs flipflop:rope flipflop:cope flipflop:none selective-copy:abs selective-copy:rope selective-copy:cope counting:abs counting:rel counting:cope"}
status=0
for pair in $pairs; do
  task=${pair%%:*} pe=${pair#*:}
  extra=()
  [ "$task" = counting ] && extra=(--vars 3)
  tag="$task-$pe"
  build/bin/copper task train --task "$task" "${extra[@]}" --pe "$pe" --preset cpu-small --seed 0 --steps "$steps" \
    --out "$out/$tag" --fresh --quiet > /dev/null
  [ -f "$out/$task.data" ] || build/bin/copper task data --task "$task" "${extra[@]}" --n 8 --seed 99 \
    --out "$out/$task.data" 2> /dev/null
  build/bin/copper task grads --model "$out/$tag" --data "$out/$task.data" --n 8 --out "$out/$tag.grads.safetensors" \
    > /dev/null
  echo "== $tag"
  if ! $py bench/torch_ref/grad_parity.py --model "$out/$tag" --data "$out/$task.data" --n 8 \
      --grads "$out/$tag.grads.safetensors" | grep -E "${PARITY_LINES:-^loss|differs|^PASS|^FAIL}"; then
    status=1
  fi
done
exit $status
