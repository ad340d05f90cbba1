#!/usr/bin/env bash
# setup_torch.sh — a Python virtual environment with PyTorch 2.x (CPU wheels) for
# bench/torch_ref/bench_train.py and scripts/bench_vs_torch.sh.
#
#   scripts/setup_torch.sh            creates build-torch/venv once (later runs only check it)
#   TORCH_VENV=/path scripts/setup_torch.sh   another place
#
# Order of attempts:
#  1. pip install torch from PyTorch's CPU wheel index (no CUDA libraries: ~200 MB, not ~3 GB);
#  2. pip install torch from PyPI (whatever index pip is configured with);
#  3. Debian's python3-torch (apt-get install python3-torch, PyTorch 1.13: no torch.compile),
#     seen by the venv through --system-site-packages.
# The last line printed is the python to use; bench_vs_torch.sh reads it from
# build-torch/python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${TORCH_VENV:-build-torch/venv}
marker=build-torch/python
mkdir -p build-torch
sys_py=/usr/bin/python3   # Debian's python: the one whose site-packages hold python3-torch

have_torch() { "$1" -c 'import torch, sys; sys.exit(0 if torch.__version__ else 1)' 2> /dev/null; }

if [ -x "$venv/bin/python" ] && have_torch "$venv/bin/python"; then
  echo "setup_torch: $venv already has torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')" >&2
  echo "$venv/bin/python" > "$marker"
  echo "$venv/bin/python"
  exit 0
fi

# --system-site-packages lets the fallback (Debian's python3-torch) be seen by the venv;
# a torch pip installs into the venv comes first on sys.path and wins.
[ -x "$venv/bin/python" ] || "$sys_py" -m venv --system-site-packages "$venv"
pip=("$venv/bin/python" -m pip install --no-input --progress-bar off)
if "${pip[@]}" --index-url https://download.pytorch.org/whl/cpu 'torch>=2.1' numpy >&2 \
  && have_torch "$venv/bin/python"; then
  echo "setup_torch: installed $("$venv/bin/python" -c 'import torch; print(torch.__version__)') from the PyTorch CPU index" >&2
elif "${pip[@]}" 'torch>=2.1' numpy >&2 && have_torch "$venv/bin/python"; then
  echo "setup_torch: installed $("$venv/bin/python" -c 'import torch; print(torch.__version__)') from PyPI" >&2
else
  echo "setup_torch: pip could not install torch; falling back to Debian's python3-torch" >&2
  if ! have_torch "$sys_py"; then
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch >&2
  fi
  have_torch "$venv/bin/python" || { echo "[setup_torch] no torch after all attempts. HINT: check network access to pypi.org or install python3-torch by hand" >&2; exit 4; }
  echo "setup_torch: using Debian's torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)') (no torch.compile before 2.0)" >&2
fi
echo "$venv/bin/python" > "$marker"
echo "$venv/bin/python"
