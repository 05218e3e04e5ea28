#!/usr/bin/env bash
# Which of experiment=recommended's levers matter: each arm changes one thing, trains 750 steps
# (48k images, the first point of the report's curves; each arm's own warm-up + cosine over
# those 750 steps), seed 0, one thread, then 1,000 DPM-Solver++ 20-step samples (log-SNR spacing) scored on the
# catdiff extractor. Writes experiments/vs_diffusers/ablation/REPORT.md (catdiff.report).
#   bash experiments/vs_diffusers/ablation.sh [RUNS_DIR]     (~1 h on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
RUNS=${1:-${CATDIFF_OUTPUTS:-outputs}/ablation}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=PASSIVE
COMMON=(experiment=recommended trainer.max_steps=750 trainer.val_check_interval=750
        callbacks.sample_grid.every_n_steps=0 callbacks.snapshots.every_n_steps=0 logger=csv)
declare -A ARMS=(
  [recommended]=""
  [min_snr]="diffusion.loss_weight=min_snr"
  [eps]="diffusion.objective=eps"
  [linear]="diffusion.schedule=linear"
  [lr5e-4]="module.optimizer.lr=5e-4"
  [unet_1.6M]="model=unet"
)
ORDER=(recommended min_snr eps linear lr5e-4 unet_1.6M)  # the first is the control arm
for arm in "${ORDER[@]}"; do
  dir=$RUNS/$arm
  if [ ! -f "$dir/checkpoints/last.ckpt" ]; then
    # shellcheck disable=SC2086
    $PY -m catdiff.train "${COMMON[@]}" ${ARMS[$arm]} "hydra.run.dir=$dir" name=ablation
  fi
  if [ ! -f "$dir/eval/dpm_solver20-logsnr_n1000/metrics.json" ]; then
    $PY -m catdiff.evaluate "ckpt=$dir/checkpoints/last.ckpt" n=1000 sampler=dpm_solver steps=20 nll.mode=none
  fi
done
$PY -m catdiff.report "${ORDER[@]/#/$RUNS/}" name=vs_diffusers_ablation out=experiments/vs_diffusers/ablation eval=dpm_solver20-logsnr_n1000
