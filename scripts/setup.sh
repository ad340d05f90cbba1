#!/usr/bin/env bash
# setup.sh — install the Debian packages copper builds with, if any are missing.
# ccache is optional for the build (CMake uses it when present); it is installed to make rebuilds fast.
# Open MPI (libopenmpi-dev, openmpi-bin) is optional too (CMake's COPPER_MPI=AUTO builds data-parallel
# training when it is present); it is installed so that `make test` runs the MPI tests.
# Run as root on Debian 12 (make demo / make test call it). Installs nothing when all are present.
set -euo pipefail
packages=(cmake make ninja-build g++ pkg-config libopenblas-dev libfmt-dev libgtest-dev nlohmann-json3-dev libcli11-dev xz-utils
          liblzma-dev libsentencepiece-dev libcairo2-dev libplplot-dev plplot-driver-cairo fonts-dejavu-core ccache
          libopenmpi-dev openmpi-bin)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages and not root. HINT: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
