#!/bin/bash
# Continual pretraining of Llama-3-8B on Korean (examples/llama3_8b_ko.yaml: TP2, data parallel
# over the rest) on 2 nodes x 8 H100; more nodes only raise the data-parallel size. Submit from the
# repository root:
#   sbatch slurm/pretrain_8b.sh [section.key=value ...]
#   sbatch --nodes=8 slurm/pretrain_8b.sh training.train_steps=20000
# Command-line sbatch options override the #SBATCH lines below; slurm/common.sh lists the
# environment settings. The job requeues itself when preempted or near its time limit.
#SBATCH --job-name=megacpt-8b
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --exclusive
#SBATCH --mem=0
#SBATCH --time=12:00:00
#SBATCH --signal=USR1@600
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
# --signal: SIGUSR1 10 minutes before the time limit, time for a step and a checkpoint save.
# A --time shorter than that lead time sends it at once, before the trainer can catch it.
CONFIG="${CONFIG:-examples/llama3_8b_ko.yaml}"
MEGACPT_ROOT="${MEGACPT_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}"
[ -f "$MEGACPT_ROOT/slurm/common.sh" ] || {
  echo "error: $MEGACPT_ROOT/slurm/common.sh not found: run sbatch from the repository root or set MEGACPT_ROOT" >&2
  exit 2
}
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$MEGACPT_ROOT/slurm/common.sh"
