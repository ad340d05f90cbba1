#!/usr/bin/env bash
# gpu_check.sh — the one prepared script for a short session on a GPU machine. It shows the GPU,
# runs every GPU test (tests/test_cuda.cpp, tests/test_cuda_model.cpp and the one-rank NCCL test
# of tests/test_dist.cpp), each in its own process so that one kernel's fault cannot hide the
# others' results, reruns the failures under compute-sanitizer, trains a task on cuda and on
# cpu, times `copper bench train` against PyTorch on the gpt2-small model and prints a short
# table last. Meant to end within 8 minutes on a 16-core machine with one H200.
#
#   bench/gpu_check.sh                  on the GPU machine, from the repository root
#   bench/gpu_check.sh --bundle DIR     here: build copper and the GPU tests and pack them, with
#                                       the shared libraries they need (not glibc's, not the CUDA
#                                       driver's or NCCL's), into DIR/bundle.tar.xz
#
# On the GPU machine it runs the carried bundle when there is one (BUNDLE, default
# build-gpu-bundle/: carry that folder with the working tree); otherwise it builds (BUILD,
# default build-gpu, ARCH default 90) when CMake finds every dependency — a bare CUDA image lacks
# OpenBLAS, fmt, GoogleTest and the rest. Everything it prints and every test's log end up in
# $OUT/gpu_check.tgz (or /tmp). DEADLINE (seconds, default 480) cuts the later sections short.
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build-gpu}
BUNDLE=${BUNDLE:-build-gpu-bundle}
ARCH=${ARCH:-90}
JOBS=${JOBS:-$(nproc)}
OUTDIR=${OUT:-/tmp}
DEADLINE=${DEADLINE:-480}
PARALLEL=${PARALLEL:-12}      # test processes at a time on the one GPU, 2 CPU threads each
TEST_LIMIT_S=${TEST_LIMIT_S:-60}     # one test
TESTS_LIMIT_S=${TESTS_LIMIT_S:-150}  # all of them
SANITIZE_MAX=${SANITIZE_MAX:-8}  # failed tests rerun under compute-sanitizer
RUN_TORCH=${RUN_TORCH:-1}        # 0: leave PyTorch's side out (its numbers do not change with copper's)
VARIANTS=${VARIANTS:-composed fused}  # copper's attention in the benchmark: composed ops, fused kernels
start=$SECONDS
say() { printf '[gpu_check %3ds] %s\n' $((SECONDS - start)) "$*"; }
left() { echo $((DEADLINE - (SECONDS - start))); }

# ---- here: make the bundle ----
if [[ ${1:-} == --bundle ]]; then
  dir=${2:?usage: bench/gpu_check.sh --bundle DIR}
  here_build=${HERE_BUILD:-build-cuda}
  bins="copper test_cuda test_cuda_model test_dist"
  cmake -S . -B "$here_build" -DCMAKE_BUILD_TYPE=Release -DCOPPER_CUDA=ON >/dev/null || exit 1
  # shellcheck disable=SC2086
  nice -n 10 cmake --build "$here_build" -j"${HERE_JOBS:-2}" --target $bins || exit 1
  stage=$(mktemp -d)
  mkdir -p "$stage/lib"
  for b in $bins; do cp "$here_build/bin/$b" "$stage/" && strip "$stage/$b"; done
  # every resolved library except glibc's own, the driver's and NCCL's (the GPU machine has its own)
  for b in $bins; do ldd "$here_build/bin/$b"; done | awk '/=> \// {print $3}' | sort -u |
    grep -vE '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*)\.so|/libcuda\.|/libnccl' |
    while read -r lib; do cp -L "$lib" "$stage/lib/"; done
  mkdir -p "$dir" && tar -C "$stage" -cJf "$dir/bundle.tar.xz" . && rm -rf "$stage"
  ls -l "$dir/bundle.tar.xz"
  echo "bundle in $dir: carry it to the GPU machine (device run: carry [\"$dir\"]) and run bench/gpu_check.sh there"
  exit 0
fi

# ---- on the GPU machine ----
LOGS=$(mktemp -d /tmp/gpu_check.XXXX)
exec > >(tee "$LOGS/gpu_check.log") 2>&1
finish() { tar -C "$LOGS" -czf "$OUTDIR/gpu_check.tgz" . 2>/dev/null; }
trap finish EXIT

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null |
  sed 's/^/gpu: /' || say "nvidia-smi not found"
export PATH=/usr/local/cuda/bin:$PATH
# cuBLAS (opened at the first product), cudart and NCCL: the toolkit's, then PyTorch's pip packages'
cuda_lib=$(dirname "$(readlink -f "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")")/../lib64
for pkg in cublas cuda_runtime nccl; do
  d=$(python3 -c "import nvidia.$pkg as m, os; print(os.path.join(list(m.__path__)[0], 'lib'))" 2>/dev/null) &&
    cuda_lib="$cuda_lib:$d"
done
export LD_LIBRARY_PATH="$cuda_lib:${LD_LIBRARY_PATH:-}"

BIN=""
if [[ -f $BUNDLE/bundle.tar.xz ]]; then
  mkdir -p /tmp/copper-bundle && tar -C /tmp/copper-bundle -xJf "$BUNDLE/bundle.tar.xz"
  BIN=/tmp/copper-bundle
  export LD_LIBRARY_PATH="$BIN/lib:$LD_LIBRARY_PATH"
  say "running the carried bundle ($BUNDLE/bundle.tar.xz)"
elif cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCOPPER_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
       >"$LOGS/configure.log" 2>&1; then
  say "building copper and the GPU tests in $BUILD with -j$JOBS"
  if timeout 330 cmake --build "$BUILD" -j"$JOBS" --target copper test_cuda test_cuda_model test_dist \
       >"$LOGS/build.log" 2>&1; then
    BIN=$BUILD/bin
  else
    say "the build failed or ran out of time; the end of build.log:"
    tail -20 "$LOGS/build.log"
  fi
else
  say "CMake could not configure here (a dependency is missing; see configure.log)"
fi
if [[ -z $BIN ]]; then
  say "nothing to run: no build and no bundle. HINT: make one here with bench/gpu_check.sh --bundle build-gpu-bundle and carry it"
  exit 1
fi
missing=$(ldd "$BIN/copper" | grep 'not found')
[[ -n $missing ]] && say "libraries not found: $missing"
"$BIN/copper" info 2>&1 | head -40

# ---- the GPU tests, one process each ----
say "the GPU tests, $PARALLEL processes at a time"
mkdir -p "$LOGS/tests"
{
  "$BIN/test_cuda" --gtest_list_tests | awk -v b=test_cuda '/^[^ ]/ {s=$1} /^  / {print b, s $1}'
  "$BIN/test_cuda_model" --gtest_list_tests | awk -v b=test_cuda_model '/^[^ ]/ {s=$1} /^  / {print b, s $1}'
  "$BIN/test_dist" --gtest_list_tests --gtest_filter='DistGpu.*' | awk -v b=test_dist '/^[^ ]/ {s=$1} /^  / {print b, s $1}'
} >"$LOGS/tests.txt"
export BIN LOGS TEST_LIMIT_S
run_one() {  # binary test: the log in tests/<test>.log, the exit status in its .rc
  local f="$LOGS/tests/${2//\//_}"
  OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 timeout "$TEST_LIMIT_S" "$BIN/$1" --gtest_color=no --gtest_filter="$2" >"$f.log" 2>&1
  echo $? >"$f.rc"
}
export -f run_one
timeout "$TESTS_LIMIT_S" xargs -P "$PARALLEL" -L 1 bash -c 'run_one "$0" "$1"' <"$LOGS/tests.txt"
failed=()
while read -r bin name; do
  f="$LOGS/tests/${name//\//_}"
  rc=$(cat "$f.rc" 2>/dev/null || echo missing)
  ms=$(sed -nE 's/^\[ *(OK|FAILED|SKIPPED) *\] .* \(([0-9]+) ms\)$/\2/p' "$f.log" | tail -1)
  if grep -q '^\[  SKIPPED' "$f.log"; then result=skipped
  elif [[ $rc == 0 ]]; then result=ok
  elif [[ $rc == 124 ]]; then result=TIMEOUT; failed+=("$bin $name")
  elif grep -q '^\[  FAILED' "$f.log"; then result=FAILED; failed+=("$bin $name")
  else result="CRASH($rc)"; failed+=("$bin $name")
  fi
  printf '%-70s %-10s %s\n' "$name" "$result" "${ms:-}" >>"$LOGS/table.txt"
done <"$LOGS/tests.txt"
say "${#failed[@]} of $(wc -l <"$LOGS/tests.txt") tests failed; their first failure lines:"
for t in "${failed[@]}"; do
  name=${t#* }
  echo "--- $name"
  grep -m 6 -E 'Failure|error|Error|what\(\)|Expected|Which is|actual|differ|rel|terminate' \
    "$LOGS/tests/${name//\//_}.log" | cut -c1-300
done

# ---- the failures again, under compute-sanitizer (memcheck) ----
if ((${#failed[@]} > 0)) && command -v compute-sanitizer >/dev/null && (($(left) > 200)); then
  say "compute-sanitizer on up to $SANITIZE_MAX failed tests"
  mkdir -p "$LOGS/sanitizer"
  printf '%s\n' "${failed[@]}" | head -n "$SANITIZE_MAX" |
    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 xargs -P "$PARALLEL" -L 1 bash -c 'timeout 80 compute-sanitizer --tool memcheck --print-limit 5 \
      "$BIN/$0" --gtest_color=no --gtest_filter="$1" >"$LOGS/sanitizer/${1//\//_}.log" 2>&1'
  for f in "$LOGS"/sanitizer/*.log; do
    [[ -f $f ]] || continue
    echo "--- $(basename "$f" .log)"
    grep -m 8 -E '^========= (Invalid|Program hit|Error|  at|    at|ERROR SUMMARY)|Address' "$f" | cut -c1-240
  done
fi

# ---- the fused attention kernels: on by COPPER_CUDA_FUSED_ATTENTION=1 once their test passes ----
fused=0
if grep -qE '^Cuda.FusedAttentionIsTheCpusKernel +ok' "$LOGS/table.txt"; then
  fused=1
  say "the fused attention passed its kernel test: whole-model parity with COPPER_CUDA_FUSED_ATTENTION=1"
  COPPER_CUDA_FUSED_ATTENTION=1 OMP_NUM_THREADS=4 timeout 90 "$BIN/test_cuda_model" --gtest_color=no \
    >"$LOGS/fused_model.log" 2>&1
  echo "rc $? $(grep -cE '^\[       OK' "$LOGS/fused_model.log") ok, $(grep -cE '^\[  FAILED  \] [A-Z].*\(' "$LOGS/fused_model.log") failed"
  grep -m 8 -A2 'Failure' "$LOGS/fused_model.log" | cut -c1-200
fi

# ---- training on cuda against cpu ----
if (($(left) > 200)); then
  say "copper task train on cuda and on cpu, 30 steps each (the losses should agree to about 4 digits), then cuda bf16"
  for dev in cuda cpu; do
    timeout 60 "$BIN/copper" task train --task flipflop --pe cope --steps 30 --device $dev --fresh --quiet \
      --out "$LOGS/task_$dev" 2>&1 | tail -2 | cut -c1-300
  done
  timeout 60 "$BIN/copper" task train --task flipflop --pe cope --steps 30 --device cuda --dtype bf16 --fresh --quiet \
    --out "$LOGS/task_bf16" 2>&1 | tail -2 | cut -c1-300
fi

# ---- copper against PyTorch on gpt2-small (../shared/bench/gpt2-small.json), bf16 ----
echo '{"vocab":50304,"d":768,"h":12,"layers":12,"ctx":1024,"batch":8,"npos":64}' >"$LOGS/gpt2-small.json"
keys='"framework": *"[^"]*"|"pe": *"[^"]*"|"tokens_per_s": *[0-9.]+|"step_ms": *[0-9.]+|"mfu": *[0-9.]+|"sgemm_gflops": *[0-9.]+|"device_peak_mb": *[0-9.]+|"loss": *[0-9.]+'
brief() { grep -oE "$keys" | paste -sd' ' | sed 's/"//g'; }
for variant in $VARIANTS; do
  [[ $variant == fused && $fused == 0 ]] && continue
  for pe in abs rope cope; do
    (($(left) > 60)) || break
    say "copper bench train gpt2-small bf16 --pe $pe ($variant attention)"
    COPPER_CUDA_FUSED_ATTENTION=$([[ $variant == fused ]] && echo 1 || echo 0) timeout 100 "$BIN/copper" bench train \
      --config "$LOGS/gpt2-small.json" --pe $pe --steps 10 --device cuda --dtype bf16 \
      >"$LOGS/copper_${pe}_$variant.json" 2>"$LOGS/copper_${pe}_$variant.err"
    echo "rc $? $(grep '^{' "$LOGS/copper_${pe}_$variant.json" | brief)"
    tail -3 "$LOGS/copper_${pe}_$variant.err" | cut -c1-300
  done
done
if ((RUN_TORCH)) && (($(left) > 60)); then
  say "PyTorch eager, gpt2-small bf16"
  timeout 120 python3 bench/torch_ref/bench_train.py --config "$LOGS/gpt2-small.json" --pe abs,rope,cope --steps 10 \
    --device cuda --dtype bf16 >"$LOGS/torch.json" 2>"$LOGS/torch.err"
  echo "rc $?"; grep '^{' "$LOGS/torch.json" | while read -r l; do echo "$l" | brief; done
  tail -3 "$LOGS/torch.err" | cut -c1-300
fi
for pe in abs rope cope; do
  (($(left) > 45)) || break
  say "copper bench train --profile, gpt2-small bf16 $pe, composed attention (the whole table is in profile_$pe.err)"
  COPPER_CUDA_FUSED_ATTENTION=0 timeout 60 "$BIN/copper" bench train --config "$LOGS/gpt2-small.json" --pe $pe \
    --steps 5 --device cuda --dtype bf16 --profile >"$LOGS/profile_$pe.json" 2>"$LOGS/profile_$pe.err"
  for phase in forward backward optimizer; do grep -E "^$phase " "$LOGS/profile_$pe.err" | head -6; done | cut -c1-120
  grep -E 'per step|not in any row' "$LOGS/profile_$pe.err" | cut -c1-160
done
if ((RUN_TORCH)) && (($(left) > 90)); then
  say "PyTorch torch.compile, gpt2-small bf16"
  timeout $(($(left) - 10)) python3 bench/torch_ref/bench_train.py --config "$LOGS/gpt2-small.json" --pe abs,rope,cope \
    --steps 10 --device cuda --dtype bf16 --compile >"$LOGS/torch_compile.json" 2>"$LOGS/torch_compile.err"
  echo "rc $?"; grep '^{' "$LOGS/torch_compile.json" | while read -r l; do echo "$l" | brief; done
fi

# ---- the table ----
echo
cat "$LOGS/table.txt"
passed=$(grep -c ' ok ' "$LOGS/table.txt")
echo "tests: passed $passed, failed ${#failed[@]}, of $(wc -l <"$LOGS/tests.txt"); ${SECONDS}s in all"
((${#failed[@]} == 0))
