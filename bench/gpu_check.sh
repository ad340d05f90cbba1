#!/usr/bin/env bash
# gpu_check.sh — the one prepared script for a short session on a GPU machine: builds (or takes
# a carried build), shows the GPUs, runs the CUDA parity tests (tests/test_cuda.cpp; with a full
# build also tests/test_cuda_model.cpp, the one-rank NCCL test of tests/test_dist.cpp, a short
# `task train --device cuda` in f32 and bf16 and `bench train --device cuda`) and prints a short
# table last. Meant to end within 8 minutes on a
# 16-core machine with one H200.
#
#   bench/gpu_check.sh                  on the GPU machine, from the repository root
#   bench/gpu_check.sh --bundle DIR     here: build test_cuda_standalone and copy it, with the shared
#                                       libraries it needs (not glibc, not CUDA's), into DIR
#
# On the GPU machine it builds copper and test_cuda itself when CMake finds every dependency
# (BUILD, default build-gpu, with -j$(nproc)); when it cannot (a bare CUDA image lacks OpenBLAS,
# fmt, GoogleTest, ...) it runs the bundle in BUNDLE (default gpu-bundle/, carried there with the
# working tree). ARCH (default 90: an H100/H200 only, which halves nvcc's work) sets
# CMAKE_CUDA_ARCHITECTURES for the build there. The full test log is written to $OUT (or /tmp).
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build-gpu}
BUNDLE=${BUNDLE:-gpu-bundle}
ARCH=${ARCH:-90}
JOBS=${JOBS:-$(nproc)}
LOGDIR=${OUT:-/tmp}
BUILD_LIMIT_S=330   # configure + build
TEST_LIMIT_S=120    # the parity tests
start=$SECONDS
say() { printf '[gpu_check %3ds] %s\n' $((SECONDS - start)) "$*"; }

# ---- here: make the bundle ----
if [[ ${1:-} == --bundle ]]; then
  dir=${2:?usage: bench/gpu_check.sh --bundle DIR}
  here_build=${HERE_BUILD:-build-cuda}
  cmake -S . -B "$here_build" -DCMAKE_BUILD_TYPE=Release -DCOPPER_CUDA=ON >/dev/null || exit 1
  nice -n 10 cmake --build "$here_build" -j"${HERE_JOBS:-1}" --target test_cuda_standalone || exit 1
  rm -rf "$dir" && mkdir -p "$dir/lib"
  cp "$here_build/bin/test_cuda_standalone" "$dir/" && strip "$dir/test_cuda_standalone"
  # every resolved library except glibc's own and CUDA's (the GPU machine has its toolkit's)
  ldd "$dir/test_cuda_standalone" | awk '/=> \// {print $3}' |
    grep -vE '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*)\.so|/libcuda|/libcudart|/libcublas' |
    while read -r lib; do cp -L "$lib" "$dir/lib/"; done
  du -sh "$dir"
  echo "bundle in $dir: carry it to the GPU machine (device run: carry [\"$dir\"]) and run bench/gpu_check.sh there"
  exit 0
fi

# ---- on the GPU machine ----
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /' ||
  say "nvidia-smi not found"
export PATH=/usr/local/cuda/bin:$PATH
# cudart and cuBLAS for the bundle: the toolkit's, else the ones PyTorch's pip packages bring
cuda_lib=$(dirname "$(readlink -f "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")")/../lib64
for pkg in cublas cuda_runtime; do
  d=$(python3 -c "import nvidia.$pkg as m, os; print(os.path.join(list(m.__path__)[0], 'lib'))" 2>/dev/null) &&
    cuda_lib="$cuda_lib:$d"
done

runner=""
model_runner=""
dist_runner=""
info=""
if timeout "$BUILD_LIMIT_S" cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCOPPER_CUDA=ON \
     -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >"$LOGDIR/gpu_check_configure.log" 2>&1; then
  say "configured $BUILD; building copper and test_cuda with -j$JOBS"
  left=$((BUILD_LIMIT_S - (SECONDS - start)))
  if timeout "$left" cmake --build "$BUILD" -j"$JOBS" --target copper test_cuda test_cuda_model test_dist >"$LOGDIR/gpu_check_build.log" 2>&1; then
    runner="$BUILD/bin/test_cuda"
    model_runner="$BUILD/bin/test_cuda_model"
    dist_runner="$BUILD/bin/test_dist"
    info="$BUILD/bin/copper info"
  else
    say "build failed or ran out of time; the end of $LOGDIR/gpu_check_build.log:"
    tail -20 "$LOGDIR/gpu_check_build.log"
  fi
else
  say "CMake could not configure here (a dependency is missing; see $LOGDIR/gpu_check_configure.log)"
fi
if [[ -z $runner && -x $BUNDLE/test_cuda_standalone ]]; then
  say "running the carried bundle $BUNDLE/"
  export LD_LIBRARY_PATH="$BUNDLE/lib:$cuda_lib:${LD_LIBRARY_PATH:-}"
  runner="$BUNDLE/test_cuda_standalone"
fi
if [[ -z $runner ]]; then
  say "nothing to run: no build and no bundle. HINT: make one here with bench/gpu_check.sh --bundle gpu-bundle and carry it"
  exit 1
fi

if [[ -n $info ]]; then
  say "copper info"
  $info
fi

say "parity tests: $runner"
log="$LOGDIR/gpu_check_tests.log"
timeout "$TEST_LIMIT_S" "$runner" --gtest_color=no 2>&1 | tee "$log" | grep -E '^(cuda|no CUDA|\[  FAILED|.*Failure)'
status=${PIPESTATUS[0]}
if [[ -n $model_runner ]]; then  # whole models (needs the full build, not the bundle)
  say "whole-model parity: $model_runner"
  timeout "$TEST_LIMIT_S" "$model_runner" --gtest_color=no 2>&1 | tee -a "$log" | grep -E '^(no CUDA|\[  FAILED|.*Failure)'
  [[ ${PIPESTATUS[0]} == 0 ]] || status=1
  say "NCCL over one rank: $dist_runner"
  timeout "$TEST_LIMIT_S" "$dist_runner" --gtest_color=no --gtest_filter='DistGpu.*' 2>&1 | tee -a "$log" |
    grep -E '^(no CUDA|\[  FAILED|.*Failure|\[  SKIPPED)'
  [[ ${PIPESTATUS[0]} == 0 ]] || status=1
  say "copper task train on cuda and on cpu, 30 steps each (the losses should agree to about 4 digits)"
  for dev in cuda cpu; do
    "$BUILD/bin/copper" task train --task flipflop --pe cope --steps 30 --device $dev --fresh --quiet \
      --out "$LOGDIR/gpu_check_task_$dev" 2>&1 | tail -1
  done
  say "the same on cuda in mixed precision (--dtype bf16): errors near the two above"
  "$BUILD/bin/copper" task train --task flipflop --pe cope --steps 30 --device cuda --dtype bf16 --fresh --quiet \
    --out "$LOGDIR/gpu_check_task_bf16" 2>&1 | tail -1
  say "bench train on cuda, f32 then bf16 (the lm-small model of ../shared/bench/README.md)"
  echo '{"vocab": 8192, "d": 256, "h": 4, "layers": 4, "ctx": 256, "batch": 16, "npos": 64}' >"$LOGDIR/lm-small.json"
  for dt in f32 bf16; do
    timeout 90 "$BUILD/bin/copper" bench train --config "$LOGDIR/lm-small.json" --pe abs,rope,cope --steps 12 \
      --device cuda --dtype $dt 2>&1 | cut -c1-220
  done
fi

# ---- the table ----
echo
printf '%-40s %-8s %s\n' "test" "result" "ms"
sed -nE 's/^\[ *(OK|FAILED|SKIPPED) *\] ((Cuda|Encodings\/ModelParity|DistGpu)\.[A-Za-z0-9_/]+) \(([0-9]+) ms\).*/\2 \1 \4/p' "$log" |
  awk '{ printf "%-40s %-8s %s\n", $1, ($2 == "OK" ? "ok" : $2), $3 }'
passed=$(grep -cE '^\[ +OK +\] (Cuda|Encodings/ModelParity|DistGpu)\.' "$log")
failed=$(grep -cE '^\[ +FAILED +\] (Cuda|Encodings/ModelParity|DistGpu)\..*\(' "$log")
skipped=$(grep -cE '^\[ +SKIPPED +\] (Cuda|Encodings/ModelParity|DistGpu)\.' "$log")
echo "passed $passed, failed $failed, skipped $skipped; exit $status; ${SECONDS}s in all (log: $log)"
exit "$status"
