# What every sbatch template in slurm/ does; sourced by them after they set CONFIG's default.
# One srun task per GPU runs `python -m megacpt.train` (no torchrun in between: Slurm's warning signal
# must reach the trainer, and torchrun's agent dies of SIGUSR1). The trainer maps SLURM_PROCID,
# SLURM_NTASKS and SLURM_LOCALID to its rank; this file exports the rendezvous address.
#
# Settings, all from the environment (sbatch passes it on) or the script's arguments:
#   CONFIG      the YAML config (default: set by the template)
#   RUN_DIR     logs, metrics and checkpoints; default runs/slurm/<job name>-<job id>, which stays
#               the same when the job is requeued. Set it to continue a run in a new job.
#   PYTHON      the interpreter (default: .venv/bin/python of the repository, else python3)
#   OVERRIDES   dotted overrides, space-separated; the template's arguments are appended after them
#   MEGACPT_ROOT  the repository (default: the directory sbatch was run from)
# Preemption: on SIGUSR1 (#SBATCH --signal) or SIGTERM the trainer saves a checkpoint and every task
# exits with status 75; this script then requeues the job, which resumes from that checkpoint.
# shellcheck shell=bash
set -euo pipefail

PREEMPTED_EXIT_CODE=75  # megacpt.training.preemption.PREEMPTED_EXIT_CODE

fail() { echo "error: $*" >&2; exit 2; }

[ -n "${SLURM_JOB_ID:-}" ] || fail "submit this script with sbatch (no SLURM_JOB_ID)"
cd "$MEGACPT_ROOT"
[ -f "$CONFIG" ] || fail "config '$CONFIG' not found (relative paths start at $MEGACPT_ROOT; set CONFIG=...)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
RUN_DIR="$(realpath -m "${RUN_DIR:-runs/slurm/${SLURM_JOB_NAME}-${SLURM_JOB_ID}}")"
mkdir -p "$RUN_DIR/logs"
log="$RUN_DIR/logs/slurm-${SLURM_JOB_ID}.log"
say() { echo "[slurm] $*" | tee -a "$log"; }

# Rendezvous for torch.distributed: the first node of the allocation, at the address Slurm itself
# reaches it by (NodeAddr; a node name need not resolve), and a port from the job id (the same after
# a requeue, different for two jobs sharing a node).
if [ -z "${MASTER_ADDR:-}" ]; then
  first_node="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
  MASTER_ADDR="$(scontrol show node -o "$first_node" 2>/dev/null | sed -n 's/.* NodeAddr=\([^ ]*\).*/\1/p' || true)"
  MASTER_ADDR="${MASTER_ADDR:-$first_node}"
fi
MASTER_PORT="${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}"
export MASTER_ADDR MASTER_PORT
# shellcheck source-path=SCRIPTDIR source=nccl_env.sh
. slurm/nccl_env.sh

# A warning signal sent to the batch shell too (scancel --full, --signal=B:...) must not kill it:
# the tasks receive their own copy from Slurm, save, and exit with status 75.
trap 'say "batch shell got SIGUSR1; waiting for the tasks to save"' USR1

read -r -a extra <<< "${OVERRIDES:-}"
say "job $SLURM_JOB_ID restart ${SLURM_RESTART_COUNT:-0}: $SLURM_NTASKS tasks on $SLURM_JOB_NUM_NODES node(s)," \
  "rendezvous $MASTER_ADDR:$MASTER_PORT"
say "config $CONFIG, run dir $RUN_DIR"
# Validate the config for this job's world size in one process first: a bad key or layout is one
# error line here, not the same traceback from every rank after they all start.
"$PYTHON" -m megacpt.train "$CONFIG" --dry-run --world-size "$SLURM_NTASKS" \
  "logging.run_dir=$RUN_DIR" "checkpoint.save_dir=$RUN_DIR/checkpoints" "${extra[@]}" "$@" \
  > "$RUN_DIR/logs/config-${SLURM_JOB_ID}.yaml" 2> >(tee -a "$log" >&2) \
  || { say "the config is not valid for $SLURM_NTASKS tasks; nothing was started"; exit 2; }

# --wait: once a task has ended, give the others 120 s (a crashed rank leaves them blocked in a
# collective) before ending them. Not --kill-on-bad-exit, which would kill the ranks still
# leaving with status 75 after a preemption save and hide that status from this script.
set +e
srun --wait=120 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" \
  "$PYTHON" -m megacpt.train "$CONFIG" \
  "logging.run_dir=$RUN_DIR" "checkpoint.save_dir=$RUN_DIR/checkpoints" "${extra[@]}" "$@" \
  2>&1 | tee -a "$log"
status="${PIPESTATUS[0]}"
set -e

if [ "$status" = "$PREEMPTED_EXIT_CODE" ]; then
  say "training saved a checkpoint and stopped for preemption; requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID"  # ends this run of the script; the job restarts pending
  exit "$status"  # only reached when the requeue was refused
fi
say "training exited with status $status"
exit "$status"
