#!/usr/bin/env bash
# System packages the test suite needs on a fresh Debian machine (run as root; idempotent).
set -euo pipefail
apt_updated=0
need() {  # need COMMAND PACKAGE...: install PACKAGE(s) unless COMMAND already exists
  local cmd="$1"; shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}
need mpirun openmpi-bin        # tests/data/test_preprocess_mpi.py (mpirun -n 2)
need g++ g++                   # tests/data/test_indexed_builder.py (AddressSanitizer driver)
# tests/slurm: a single-node Slurm cluster started by scripts/slurm-local.sh; shellcheck for slurm/*.sh
need slurmctld slurmctld
need slurmd slurmd
need sbatch slurm-client
need munged munge
need shellcheck shellcheck
for cmd in slurmctld slurmd sbatch srun scontrol munged; do
  command -v "$cmd" >/dev/null || { echo "error: $cmd missing after installing Slurm" >&2; exit 1; }
done
