#!/usr/bin/env bash
# GPU benchmark in one command, for a session lent a device (results: $OUT or
# benchmarks/results/gpu): ResNet-18 time to accuracy and selection overhead (CUDA events,
# sync-debug "error" around the selection path), then one selection run each through the
# DALI adapter (GPU "mixed" decoding) and the FFCV adapter (ToDevice). Needs the staged data:
#     python benchmarks/gpu/bench.py --stage --data path/to/cifar-10     (on the CPU side)
# and carries benchmarks/gpu/data with the run.
#     bash benchmarks/gpu/run.sh            # on the GPU machine, about 5 minutes
#     bash benchmarks/gpu/run.sh --smoke    # on a CPU: tiny sizes, the same code paths
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
$PY -c "import torch, smartloader" 2>/dev/null || {
    echo "run.sh: $PY cannot import torch and smartloader; install them (pip install -e .)" \
         "or set PYTHON to an interpreter that has them"; exit 1; }
if [ "${1:-}" = "--smoke" ]; then
    $PY benchmarks/gpu/bench.py --smoke --out "$OUT"
    DEVICE=cpu
else
    timeout 330 $PY benchmarks/gpu/bench.py --out "$OUT"
    DEVICE=cuda
fi
# the adapters, each where its package is installed (a missing one is said, not hidden)
for adapter in dali ffcv; do
    mod=$([ $adapter = dali ] && echo nvidia.dali || echo ffcv)
    if $PY -c "import $mod" 2>/dev/null; then
        tmp=$(mktemp -d)
        timeout 120 $PY adapters/${adapter}_train.py --quick --device $DEVICE --out "$tmp" \
            > "$OUT/${adapter}.log" 2>&1 || { echo "run.sh: $adapter failed:"; tail -20 "$OUT/${adapter}.log"; exit 1; }
        cp "$tmp/result.json" "$OUT/${adapter}_result.json"
        tail -1 "$OUT/${adapter}.log"
        rm -rf "$tmp"
    else
        echo "run.sh: $mod is not installed; the $adapter run is skipped" | tee "$OUT/${adapter}.log"
    fi
done
echo "run.sh: results in $OUT"
