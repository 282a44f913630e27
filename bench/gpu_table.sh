#!/usr/bin/env bash
# The paper design of a preset, on a lent GPU machine (RESULTS.md names each run), over as
# many device calls as it takes: each call continues the study where the last one stopped.
#
# That machine has torch but not optuna or ray, and no package index; at most 64 MiB travels
# per call, and each call removes the carried folders it does not name. Ignored folders
# carried beforehand bring the rest; what must last is kept in /tmp (or runs/, which the
# machine keeps) while it stays warm:
#   .gpu/whl            wheels from ../shared/gpu/bundle.sh (one call)
#   .gpd1 .gpd2 .gpd3   cifar10.npz cut with `split -n 3 -d`, one folder per call
#   .gps                an earlier call's state.tgz.* parts, only where the machine went cold
#                       since (a warm one still has the study in runs/)
# Usage there: bash bench/gpu_table.sh PRESET STUDY EPOCHS SECONDS_FOR_THE_STUDY [PARALLEL]
# PRESET may be a space file of the working tree; DESIGN (default paper), SEEDS (default 3)
# and FUSE (default auto: fused groups of the trials that share a network) choose the
# ablation, e.g. DESIGN=loo SEEDS=5 for docs/cifar-past/candidate.yaml (RESULTS.md).
# The study stops after SECONDS with SIGTERM, which records its running trials as
# interrupted (their per-epoch checkpoints stay in runs/); the next call resumes them.
# Writes to $OUT: log.txt, report.tgz (`search report --test` of the study so far) and
# state.tgz.* (the study's database, weights and checkpoints, for a cold machine's next
# call or `search remeasure` on a quiet CPU: `cat state.tgz.* | tar xzf -`).
set -uo pipefail
preset="$1" study="$2" epochs="$3" seconds="$4" parallel="${5:-11}"
design="${DESIGN:-paper}" seeds="${SEEDS:-3}" fuse="${FUSE:-auto}"
export PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled
site=/tmp/site
[ -d "$site/ray" ] || python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target "$site" .gpu/whl/*.whl || exit 1
export PYTHONPATH="$site:$PWD"
data=/tmp/data
mkdir -p "$data" /tmp/parts
for part in .gpd1 .gpd2 .gpd3; do [ -d "$part" ] && cp "$part"/* /tmp/parts/; done
if [ ! -f "$data/cifar10.npz" ] && [ "$(ls /tmp/parts | wc -l)" = 3 ]; then
    cat /tmp/parts/* >"$data/cifar10.npz"
fi
db=runs/gpu-studies.db
if [ ! -f "$db" ] && [ -d .gps ]; then
    cat .gps/state.tgz.* | tar xzf - || exit 1
fi
log="$OUT/log.txt"
{
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
    python3 -c "import torch, optuna, ray; print(torch.__version__, optuna.__version__, ray.__version__)"
    sha256sum "$data"/cifar10.npz 2>/dev/null
    python3 -c "from search import provenance; print('code', provenance.code_fingerprint())"
    echo "cwd $PWD; study database: $(ls -la $db 2>&1)"
} >"$log" 2>&1
mkdir -p runs
storage="sqlite:///$PWD/$db"
gpus=$(python3 -c "print(int(100 / $parallel) / 100)")
# --foreground: signal the driver alone; timeout's default, its whole process group, would
# stop Ray's workers under the driver as it records its running trials as interrupted.
timeout --foreground -k 60 "$seconds" python3 -m search.cli ablate "$preset" --design "$design" \
    --seeds "$seeds" --fuse "$fuse" --epochs "$epochs" --parallel "$parallel" \
    --gpus-per-trial "$gpus" --study "$study" \
    --data-dir "$data" --storage "$storage" 2>&1 | tee -a "$log"
python3 -m search.cli status "$study" --storage "$storage" >>"$log" 2>&1
rm -rf /tmp/report
python3 -m search.cli report "$study" --storage "$storage" --test --data-dir "$data" \
    -o /tmp/report >>"$log" 2>&1
tar czf "$OUT/report.tgz" -C /tmp report
tar czf - "$db" "runs/weights/$study" | split -b 15M - "$OUT/state.tgz."
ls -la "$OUT" >>"$log"
