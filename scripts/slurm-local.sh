#!/usr/bin/env bash
# A throwaway Slurm cluster on this machine, for tests and for trying slurm/*.sh:
#   scripts/slurm-local.sh start DIR     # munged + slurmctld + slurmd on localhost, state and logs in DIR
#   scripts/slurm-local.sh start DIR 2   # two nodes: each slurmd in its own network namespace
#   export SLURM_CONF=DIR/slurm.conf     # then sbatch, srun, squeue, sinfo talk to it
#   scripts/slurm-local.sh stop DIR      # cancel its jobs, stop the daemons, remove the namespaces
# Two nodes: namespaces <id>-n1 and <id>-n2 (listed in DIR/nodes), each with one interface named
# mcpt0 at 10.X.Y.11 / .12 on a bridge whose root-namespace end, 10.X.Y.1, is slurmctld's address;
# a job's tasks on the two nodes reach each other only over that bridge (set GLOO_SOCKET_IFNAME=mcpt0
# for gloo). Nothing leaves the machine. Needs root and Debian's slurmctld, slurmd, slurm-client and
# munge (see scripts/test-deps.sh), and iproute2 for two nodes. It uses its own munge key and socket
# and its own ports, so it leaves any system Slurm or munge alone.
set -euo pipefail

usage() { echo "usage: $0 start DIR [NODES: 1 or 2] | stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || { [ $# -eq 3 ] && [ "$1" = start ]; } || usage
action="$1"
nodes="${3:-1}"
[ "$nodes" = 1 ] || [ "$nodes" = 2 ] || usage
mkdir -p "$2"
dir="$(cd "$2" && pwd)"
export SLURM_CONF="$dir/slurm.conf"
# Names and a /24 derived from DIR, so that clusters of different DIRs never collide.
id="mc$(printf %s "$dir" | md5sum | cut -c1-6)"
subnet="10.$((200 + 0x${id:2:2} % 50)).$((0x${id:4:2}))"

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

  local node hw ctld_addr node_lines names i
  node="$(hostname -s)"
  # slurmd -C reports this machine's real CPU layout and memory, so the node is never drained as
  # "low CPUs/memory"; only its name is replaced, and it is reached on the loopback address (one
  # node) or on its namespace's address (two nodes).
  hw="$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]*//')"
  if [ "$nodes" = 1 ]; then
    ctld_addr=127.0.0.1
    node_lines="NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN"
    names="$node"
  else
    make_namespaces
    ctld_addr="$subnet.1"
    # Both nodes share this machine's cores; each offers 8 CPUs (SlurmdParameters=config_overrides
    # below), so that a job of 4 tasks per node, or 8 on one, fits as it would on real nodes.
    hw="CPUs=8 RealMemory=$(slurmd -C | head -n 1 | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
    node_lines="SlurmdParameters=config_overrides"$'\n' names=""
    for i in 1 2; do
      node_lines+="NodeName=$node-$i NodeAddr=$subnet.1$i $hw State=UNKNOWN"$'\n'
      names+="${names:+,}$node-$i"
    done
  fi
  cat > "$SLURM_CONF" <<EOF
ClusterName=megacpt-local
SlurmctldHost=$node($ctld_addr)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also delays the restart of a requeued job (default 120 s).
AuthInfo=socket=$dir/munge/socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
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
# A node whose slurmd stops answering is marked down after 10 s (default 300), ending its jobs.
SlurmdTimeout=10
$node_lines
PartitionName=local Nodes=$names Default=YES MaxTime=INFINITE State=UP
EOF
  slurmctld -c -f "$SLURM_CONF"   # -c: start with no jobs from an earlier run of this DIR
  if [ "$nodes" = 1 ]; then
    mkdir -p "$dir/spool/$node"
    slurmd -f "$SLURM_CONF" -N "$node"
  else
    for i in 1 2; do
      mkdir -p "$dir/spool/$node-$i"
      # nsenter joins the namespace's network only: `ip netns exec` would also remount /sys,
      # without the cgroup file system slurmd needs.
      nsenter --net="/run/netns/$id-n$i" slurmd -f "$SLURM_CONF" -N "$node-$i"
    done
  fi
  local state=""
  for _ in $(seq 60); do
    state="$(sinfo -h -n "$names" -o %t 2>/dev/null | sort -u | tr '\n' ' ' || true)"
    if [ "$state" = "idle " ]; then
      echo "slurm-local: $nodes node(s) idle ($names); export SLURM_CONF=$SLURM_CONF"
      return 0
    fi
    sleep 0.5
  done
  echo "error: nodes $names did not become idle (state '${state:-none}'); logs in $dir/log" >&2
  tail -n 20 "$dir/log/"*.log >&2 || true
  exit 1
}

make_namespaces() {  # the bridge, and per node a namespace with its veth end on the bridge
  command -v ip >/dev/null || { echo "error: ip (iproute2) not found; two nodes need it" >&2; exit 1; }
  remove_namespaces
  ip link add "$id-br" type bridge
  ip addr add "$subnet.1/24" dev "$id-br"
  ip link set "$id-br" up
  local i
  for i in 1 2; do
    ip netns add "$id-n$i"
    echo "$id-n$i" >> "$dir/nodes"
    ip link add "$id-v$i" type veth peer name mcpt0 netns "$id-n$i"
    ip link set "$id-v$i" master "$id-br" up
    ip -n "$id-n$i" addr add "$subnet.1$i/24" dev mcpt0
    ip -n "$id-n$i" link set mcpt0 up
    ip -n "$id-n$i" link set lo up
  done
}

remove_namespaces() {  # with whatever still runs in them (a job's tasks)
  local ns
  if [ -f "$dir/nodes" ]; then
    while read -r ns; do
      ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
      ip netns del "$ns" 2>/dev/null || true
    done < "$dir/nodes"
    rm -f "$dir/nodes"
  fi
  ip link del "$id-br" 2>/dev/null || true
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
  local pidfile
  for pidfile in "$dir"/slurmd-*.pid; do stop_pid "$pidfile"; done
  stop_pid "$dir/slurmctld.pid"
  stop_pid "$dir/munge/munged.pid"
  remove_namespaces
}

case "$action" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
