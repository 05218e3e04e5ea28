#!/usr/bin/env bash
# One-seed pilot of few-step generation on the cat faces: the recommended recipe trained for
# TEACHER_STEPS (batch 64), Easy Consistency Tuning of it for TUNE_STEPS, then KID/FID of
# 1,000 samples at 1, 2, 4 (and the teacher at 8, 25) network evaluations.
#   bash experiments/few_step/pilot.sh            # from the project root
# Run folders go to $CATDIFF_OUTPUTS (default /work/runs/few_step_pilot); the scores are
# printed as a table at the end (from each eval folder's metrics.json).
set -euo pipefail
PY=${PY:-.venv/bin/python}
TEACHER_STEPS=${TEACHER_STEPS:-1500}
TUNE_STEPS=${TUNE_STEPS:-750}
SEED=${SEED:-0}
export CATDIFF_OUTPUTS=${CATDIFF_OUTPUTS:-/work/runs/few_step_pilot}
export CATDIFF_DATA_ROOT=${CATDIFF_DATA_ROOT:-../shared/data/catfaces64}
EVAL=(n=1000 nll.mode=none)

newest() { ls -td "$CATDIFF_OUTPUTS/$1"/*/ | head -1; }

if [ ! -f "$CATDIFF_OUTPUTS/teacher.done" ]; then
  /usr/bin/time -f "teacher wall %e s" "$PY" -m catdiff.train experiment=recommended name=teacher \
    seed="$SEED" trainer.max_steps="$TEACHER_STEPS" logger=csv callbacks.snapshots.every_n_steps=0
  touch "$CATDIFF_OUTPUTS/teacher.done"
fi
TEACHER=$(newest teacher)
if [ ! -f "$CATDIFF_OUTPUTS/tuned.done" ]; then
  /usr/bin/time -f "tuning wall %e s" "$PY" -m catdiff.train experiment=few_step name=tuned \
    seed="$SEED" teacher="$TEACHER/checkpoints/last.ckpt" trainer.max_steps="$TUNE_STEPS" logger=csv
  touch "$CATDIFF_OUTPUTS/tuned.done"
fi
TUNED=$(newest tuned)
for steps in 1 2 4 8 25; do
  "$PY" -m catdiff.evaluate ckpt="$TEACHER/checkpoints/last.ckpt" sampler=dpm_solver steps=$steps "${EVAL[@]}"
done
for steps in 1 2 4; do
  "$PY" -m catdiff.evaluate ckpt="$TUNED/checkpoints/last.ckpt" sampler=consistency steps=$steps "${EVAL[@]}"
done
"$PY" - "$TEACHER" "$TUNED" <<'PYEOF'
import json, sys
from pathlib import Path
for run in sys.argv[1:]:
    for f in sorted(Path(run, "eval").glob("*/metrics.json")):
        m = json.loads(f.read_text())
        print(Path(run).parent.name, f.parent.name, json.dumps({k: m[k] for k in ("fid", "kid") if k in m}))
PYEOF
