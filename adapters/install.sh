#!/usr/bin/env bash
# Install the optional FFCV and DALI adapter dependencies on a fresh Debian 12 (x86_64) machine.
#
# Idempotent: apt packages already present are skipped, pip skips satisfied pins.
# Usage:   PYTHON=/path/to/venv/bin/python bash adapters/install.sh
# Needs:   root or sudo for apt-get; PyPI access; torch already installed (see below).
#
# Measured on a 2-core Debian 12 box (warm PyPI, see docs/adapters-ffcv.md "Installing"):
#   apt packages (212 new, +689 MB)   ~80 s
#   ffcv 1.0.2 sdist build + deps     ~45 s
#   pillow                            ~10 s
#   nvidia-dali-cuda120 2.4.0 (425 MB wheel, ~1 GB installed)  ~50 s
set -euo pipefail

PY="${PYTHON:-python3}"
SECONDS=0

# Tested pins. numba caps numpy (numba 0.68.1: numpy<2.6), so pin them together.
FFCV_PIN="ffcv==1.0.2"
NUMBA_PIN="numba==0.68.1"
DALI_PIN="nvidia-dali-cuda120==2.4.0"

# ffcv's own dependency pytorch_pfn_extras requires an *unpinned* torch; if torch is missing,
# pip would pull the multi-GB CUDA build. Refuse instead of surprising CI.
if ! TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)"; then
    echo "adapters/install.sh: install torch first (a CPU build, e.g. torch==2.13.0)" >&2
    exit 1
fi

# --- Debian packages needed to build ffcv's C extension from its sdist -----------------
# libffcv.cpp includes <opencv2/opencv.hpp> (all opencv module headers, found through
# pkg-config "opencv4", shipped only by libopencv-dev) and <turbojpeg.h> (libturbojpeg0-dev).
# build-essential: a C++ compiler; python3-dev only when the interpreter has no Python.h.
PKGS=(build-essential pkg-config libopencv-dev libturbojpeg0-dev)
if [ ! -f "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]; then
    PKGS+=(python3-dev)
fi
MISSING=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || MISSING+=("$p")
done
if [ "${#MISSING[@]}" -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${MISSING[@]}"
fi
echo "adapters/install.sh: apt done after ${SECONDS}s"

# --- pip -------------------------------------------------------------------------------
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
printf 'torch==%s\nnumpy<2.6\n' "$TORCH_VERSION" > "$CONSTRAINTS"

# ffcv 1.0.2 imports PIL at import time but does not declare pillow.
"$PY" -m pip install -q -c "$CONSTRAINTS" "$FFCV_PIN" "$NUMBA_PIN" pillow
echo "adapters/install.sh: ffcv done after ${SECONDS}s"
"$PY" -m pip install -q -c "$CONSTRAINTS" "$DALI_PIN"
echo "adapters/install.sh: dali done after ${SECONDS}s"

"$PY" - <<'PY'
import ffcv, numba, numpy, torch
import nvidia.dali as dali
print(f"adapters/install.sh: ok: torch {torch.__version__}, numpy {numpy.__version__}, "
      f"numba {numba.__version__}, ffcv (reports {ffcv.__version__}), dali {dali.__version__}")
PY
