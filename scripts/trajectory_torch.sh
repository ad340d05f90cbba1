#!/usr/bin/env bash
# trajectory_torch.sh — copper and the PyTorch reference trained from the same initial
# weights on the same batches (bench/torch_ref/trajectory.py), side by side, one thread each.
#
#   [INIT=copper] scripts/trajectory_torch.sh [TASK] [PE] [STEPS] [SEED]   (default selective-copy rope 1500 0)
#
# Prints both loss curves (means over 25 steps) and both held-out errors. Where parity_torch.sh
# shows that one step agrees, this shows whether whole runs do, and how far rounding alone
# moves the result. Outputs under runs/trajectory (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
task=${1:-selective-copy} pe=${2:-rope} steps=${3:-1500} seed=${4:-0}
out=runs/trajectory/$task-$pe-s$seed-${INIT:-torch}init
mkdir -p "$out"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
py=/usr/bin/python3
build/bin/copper task data --task "$task" --n $((steps * 32)) --seed $((500 + seed)) --out "$out/train.data" 2> /dev/null
# The common start: the reference's seeded initialisation, or with INIT=copper copper's.
init_from=()
if [ "${INIT:-torch}" = copper ]; then
  build/bin/copper task train --task "$task" --pe "$pe" --preset cpu-small --seed "$seed" --steps 0 \
    --out "$out/copper-init" --fresh --quiet > /dev/null
  init_from=(--init "$out/copper-init/model.safetensors")
fi
$py bench/torch_ref/trajectory.py --task "$task" --pe "$pe" --data "$out/train.data" --steps 0 --seed "$seed" \
  "${init_from[@]}" --save-init "$out/init.safetensors" --log /dev/null
( build/bin/copper task train --task "$task" --pe "$pe" --preset cpu-small --seed "$seed" --steps "$steps" \
    --init "$out/init.safetensors" --train-data "$out/train.data" --out "$out/copper" --fresh --quiet \
    > "$out/copper.out" 2>&1 ) &
cpid=$!
$py bench/torch_ref/trajectory.py --task "$task" --pe "$pe" --data "$out/train.data" --steps "$steps" --seed "$seed" \
  "${init_from[@]}" --save-init "$out/init.safetensors" --log "$out/torch.log.jsonl" > "$out/torch.json"
wait $cpid
$py - "$out" <<'PY'
import json, sys
out = sys.argv[1]
c = {r["step"]: r["loss"] for r in map(json.loads, open(out + "/copper/log.jsonl"))}
t = [json.loads(l)["loss"] for l in open(out + "/torch.log.jsonl")]
print("step   copper loss   torch loss   (means over the 25 steps before)")
for s in sorted(c):
    if s % 25 == 0 and (s <= 200 or s % 250 == 0):
        tm = sum(t[s - 25:s]) / 25
        print(f"{s:5d}   {c[s]:.6f}      {tm:.6f}")
res = json.load(open(out + "/copper/results.json"))
print("held-out error % copper:", {k: round(100 * v, 2) for k, v in res["error"].items()})
print("held-out error % torch: ", json.load(open(out + "/torch.json")))
PY
