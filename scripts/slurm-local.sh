#!/usr/bin/env bash
# A throwaway single-node Slurm cluster on this machine, for tests and for trying slurm/*.sh:
#   scripts/slurm-local.sh start DIR   # munged + slurmctld + slurmd on localhost, state and logs in DIR
#   export SLURM_CONF=DIR/slurm.conf   # then sbatch, srun, squeue, sinfo talk to it
#   scripts/slurm-local.sh stop DIR    # cancel its jobs and stop the three daemons
# Needs root and Debian's slurmctld, slurmd, slurm-client and munge (see scripts/test-deps.sh). It uses
# its own munge key and socket and its own ports, so it leaves any system Slurm or munge alone.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action="$1"
mkdir -p "$2"
dir="$(cd "$2" && pwd)"
export SLURM_CONF="$dir/slurm.conf"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'; }

stop_pid() {  # stop_pid PIDFILE: TERM the daemon named in PIDFILE and wait up to 10 s for it to go
  local pid
  [ -f "$1" ] || return 0
  pid="$(cat "$1")"
  rm -f "$1"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
}

start() {
  [ "$(id -u)" = 0 ] || { echo "error: $0 must run as root (slurmd starts jobs as their user)" >&2; exit 1; }
  local cmd
  for cmd in munged slurmctld slurmd sbatch sinfo; do
    command -v "$cmd" >/dev/null || { echo "error: $cmd not found; run scripts/test-deps.sh" >&2; exit 1; }
  done
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
  chmod 700 "$dir/munge"
  [ -f "$dir/munge/munge.key" ] || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 600 "$dir/munge/munge.key"
  # --force: the key may live under /tmp, which munged otherwise refuses as world-writable.
  munged --force --socket="$dir/munge/socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed"

  local node hw
  node="$(hostname -s)"
  # slurmd -C reports this machine's real CPU layout and memory, so the node is never drained as
  # "low CPUs/memory"; only its name is replaced, and it is reached on the loopback address.
  hw="$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]*//')"
  cat > "$SLURM_CONF" <<EOF
ClusterName=megacpt-local
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also delays the restart of a requeued job (default 120 s).
AuthInfo=socket=$dir/munge/socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
# No cgroups (containers rarely have them writable): plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/builtin
# Try pending jobs every 2 s (default 60), so a requeued job restarts as soon as cred_expire allows.
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobRequeue=1
ReturnToService=2
MinJobAge=600
KillWait=10
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=local Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  slurmctld -c -f "$SLURM_CONF"   # -c: start with no jobs from an earlier run of this DIR
  slurmd -f "$SLURM_CONF" -N "$node"
  local state=""
  for _ in $(seq 60); do
    state="$(sinfo -h -n "$node" -o %t 2>/dev/null || true)"
    [ "$state" = idle ] && { echo "slurm-local: node $node idle; export SLURM_CONF=$SLURM_CONF"; return 0; }
    sleep 0.5
  done
  echo "error: node $node did not become idle (state '${state:-none}'); logs in $dir/log" >&2
  tail -n 20 "$dir/log/"*.log >&2 || true
  exit 1
}

stop() {
  if [ -f "$dir/slurmctld.pid" ]; then
    local jobs
    jobs="$(squeue -h -o %i 2>/dev/null || true)"
    if [ -n "$jobs" ]; then
      # shellcheck disable=SC2086  # one job id per word
      scancel $jobs 2>/dev/null || true
      for _ in $(seq 60); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5; done
    fi
  fi
  stop_pid "$dir/slurmd.pid"
  stop_pid "$dir/slurmctld.pid"
  stop_pid "$dir/munge/munged.pid"
}

case "$action" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
