#!/usr/bin/env bash
# The budget=faces reruns of baseline and edge_trial (edges=none is the baseline's runs; the
# report pools the folders), 3 seeds per arm, each run evaluated with catdiff.evaluate's defaults
# as soon as it has trained. Jobs in order of seed (all three arms at seed 0, then 1, then 2), so
# that an interruption leaves the arms with equal seeds; each job is a one-member sweep. Run from
# the repository root:
#   CATDIFF_DATA_ROOT=../shared/data/catfaces64 CATDIFF_OUTPUTS=/work/runs bash experiments/faces/run.sh
# Start it twice to have two workers take jobs from the same list (a job is claimed by an atomic
# mkdir under $CATDIFF_OUTPUTS/faces-claims; a claimed job is never taken again, so remove the
# claim of a job that was interrupted).
# One torch thread and OpenMP threads that sleep (below): on this 2-core machine shared with other
# sessions' test runs, one run with two threads fell to 17-75 img/s whenever another process held
# a core (each parallel region waits for the thread that cannot run).
set -u
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=${PY:-.venv/bin/python}
OUT=${CATDIFF_OUTPUTS:-outputs}
CLAIMS=$OUT/faces-claims
mkdir -p "$CLAIMS"

evaluate_sweep() {  # $1: sweep folder
    local run
    for run in "$1"/*/; do
        [ -f "$run/metrics.json" ] || continue
        echo "== $(date -u +%FT%TZ) evaluate $run"
        "$PY" -m catdiff.evaluate "ckpt=${run}checkpoints/last.ckpt"
        echo "== $(date -u +%FT%TZ) evaluate rc=$?"
    done
}

job() {  # $1: job id; $2: experiment name; rest: overrides
    local id=$1 name=$2; shift 2
    mkdir "$CLAIMS/$id" 2>/dev/null || return 0
    echo "== $(date -u +%FT%TZ) train $id: $name $*"
    local sweep
    sweep=$OUT/$name/multirun_$(date +%Y-%m-%d_%H-%M-%S)-$id
    echo "$sweep" > "$CLAIMS/$id/sweep"
    "$PY" -m catdiff.train "experiment=$name" budget=faces logger=csv "$@" "hydra.sweep.dir=$sweep" \
        > "$CLAIMS/$id/train.log" 2>&1
    echo "== $(date -u +%FT%TZ) train $id rc=$?"
    evaluate_sweep "$sweep"
}

for seed in 0 1 2; do
    job "none-$seed" baseline "seed=$seed"
    job "sobel-$seed" edge_trial data.edges=sobel "seed=$seed"
    job "sobel+gray-$seed" edge_trial data.edges=sobel+gray "seed=$seed"
done
echo "== $(date -u +%FT%TZ) no jobs left"
