#!/usr/bin/env bash
# The budget=faces reruns of baseline and edge_trial (edges=none is the baseline's runs; the
# report pools the folders), 3 seeds, one run after another (the default basic launcher), each
# run then evaluated with catdiff.evaluate's defaults. Seed by seed (all three arms at seed 0,
# then 1, then 2), so that an interruption leaves every arm with the same seeds. Run from the
# repository root:
#   CATDIFF_DATA_ROOT=../shared/data/catfaces64 CATDIFF_OUTPUTS=/work/runs bash experiments/faces/run.sh [SEEDS...]
# One torch thread, OpenMP threads that sleep (below): on this 2-core machine shared with other
# sessions' test runs, two threads fell to 17-75 img/s whenever another process held a core (each
# parallel region waits for the thread that cannot run). Unset both on an idle machine (faster).
set -u
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=${PY:-.venv/bin/python}
OUT=${CATDIFF_OUTPUTS:-outputs}
SEEDS=${*:-0 1 2}

train_and_eval() {  # $1: experiment name; rest: overrides
    local name=$1; shift
    local before after run
    before=$(ls -d "$OUT/$name"/multirun_* 2>/dev/null | sort | tail -1)
    echo "== $(date -u +%FT%TZ) train $name $*"
    "$PY" -m catdiff.train "experiment=$name" budget=faces logger=csv "$@"
    echo "== $(date -u +%FT%TZ) train rc=$?"
    after=$(ls -d "$OUT/$name"/multirun_* 2>/dev/null | sort | tail -1)
    [ "$after" != "$before" ] || { echo "no new sweep folder for $name"; return 1; }
    echo "== sweep $after"
    for run in "$after"/*/; do
        [ -f "$run/metrics.json" ] || continue
        echo "== $(date -u +%FT%TZ) evaluate $run"
        "$PY" -m catdiff.evaluate "ckpt=${run}checkpoints/last.ckpt"
        echo "== $(date -u +%FT%TZ) evaluate rc=$?"
    done
}

for seed in $SEEDS; do
    train_and_eval baseline "seed=$seed"
    train_and_eval edge_trial "data.edges=sobel,sobel+gray" "seed=$seed"
done
echo "== $(date -u +%FT%TZ) all done"
