#!/usr/bin/env bash
# The paper design of a preset, on a lent GPU machine (RESULTS.md names each run).
#
# That machine has torch but not optuna or ray, and no package index; at most 64 MiB travels
# per call. Ignored folders carried beforehand bring the rest and stay in /tmp while the machine is warm:
#   .gpu/whl       wheels from ../shared/gpu/bundle.sh (one call)
#   .gpd1 .gpd2 .gpd3   cifar10.npz cut with `split -n 3 -d`, one folder per call (each
#                       call removes the carried folders it does not name: parts go to /tmp)
# Usage there: bash bench/gpu_table.sh PRESET STUDY EPOCHS SECONDS_FOR_THE_STUDY [PARALLEL]
# Writes to $OUT: studies.db (the study), log.txt, report.tgz (`search report --test`) and
# weights.tar.* (the trials' weights, for `search remeasure` on a quiet CPU).
set -uo pipefail
preset="$1" study="$2" epochs="$3" seconds="$4" parallel="${5:-11}"
export PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled
site=/tmp/site
[ -d "$site/ray" ] || python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target "$site" .gpu/whl/*.whl || exit 1
export PYTHONPATH="$site:$PWD"
data=/tmp/data
mkdir -p "$data"
mkdir -p /tmp/parts  # a carried folder is gone at the next call; /tmp stays while warm
for part in .gpd1 .gpd2 .gpd3; do [ -d "$part" ] && cp "$part"/* /tmp/parts/; done
if [ ! -f "$data/cifar10.npz" ] && [ "$(ls /tmp/parts | wc -l)" = 3 ]; then
    cat /tmp/parts/* >"$data/cifar10.npz"
fi
log="$OUT/log.txt"
{
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
    python3 -c "import torch, optuna, ray; print(torch.__version__, optuna.__version__, ray.__version__)"
    sha256sum "$data"/cifar10.npz 2>/dev/null
    echo "cwd $PWD; git $(git rev-parse --short HEAD 2>/dev/null)"
} >"$log" 2>&1
storage="sqlite:///$OUT/studies.db"
gpus=$(python3 -c "print(int(100 / $parallel) / 100)")
timeout "$seconds" python3 -m search.cli ablate "$preset" --design paper --seeds 3 \
    --epochs "$epochs" --parallel "$parallel" --gpus-per-trial "$gpus" --study "$study" \
    --data-dir "$data" --storage "$storage" 2>&1 | tee -a "$log"
python3 -m search.cli report "$study" --storage "$storage" --test --data-dir "$data" \
    -o /tmp/report >>"$log" 2>&1
tar czf "$OUT/report.tgz" -C /tmp report
tar cf - runs/weights | split -b 15M - "$OUT/weights.tar."
ls -la "$OUT" >>"$log"
