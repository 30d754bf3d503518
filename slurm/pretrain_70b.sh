#!/bin/bash
# Swallow-style continual pretraining of Llama-2-70B (examples/llama2_70b_swallow_ja.yaml: TP8 PP8
# DP4) on 32 nodes x 8 H100. Submit from the repository root:
#   sbatch slurm/pretrain_70b.sh [section.key=value ...]
#   CONFIG=other.yaml RUN_DIR=/lustre/runs/ja70b sbatch --nodes=16 slurm/pretrain_70b.sh ...
# Command-line sbatch options override the #SBATCH lines below; slurm/common.sh lists the
# environment settings. The job requeues itself when preempted or near its time limit.
#SBATCH --job-name=megacpt-70b
#SBATCH --nodes=32
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --exclusive
#SBATCH --mem=0
#SBATCH --time=24:00:00
#SBATCH --signal=USR1@900
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
# --signal: SIGUSR1 15 minutes before the time limit, time for a step and a 70B checkpoint save.
# A --time shorter than that lead time sends it at once, before the trainer can catch it.
# --cpus-per-task: 64 of a DGX H100's 112 cores; lower it on nodes with fewer than 64.
CONFIG="${CONFIG:-examples/llama2_70b_swallow_ja.yaml}"
MEGACPT_ROOT="${MEGACPT_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}"
[ -f "$MEGACPT_ROOT/slurm/common.sh" ] || {
  echo "error: $MEGACPT_ROOT/slurm/common.sh not found: run sbatch from the repository root or set MEGACPT_ROOT" >&2
  exit 2
}
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$MEGACPT_ROOT/slurm/common.sh"
