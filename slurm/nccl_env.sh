# NCCL, PyTorch and CUDA settings for Megatron-core training on H100 nodes with InfiniBand.
# Sourced by slurm/common.sh before srun. Every value is a default: anything already set in the
# environment (by the site, a module file or the user) wins. Variable names checked against the
# NCCL user guide (env.html) and PyTorch's ProcessGroupNCCL environment-variable reference.
# shellcheck shell=bash

# --- Network: which interfaces NCCL uses --------------------------------------------------------
# Left to the site on purpose: NCCL picks IB HCAs and a bootstrap interface itself, and the right
# names differ per cluster. Typical settings, if auto-detection picks the wrong ones:
#   export NCCL_SOCKET_IFNAME==bond0          # bootstrap/TCP interface (front-end network)
#   export NCCL_IB_HCA==mlx5_0,mlx5_3,...     # the compute-fabric HCAs, one per GPU on H100 nodes
#   export NCCL_IB_GID_INDEX=3                # RoCE only: the RoCEv2 GID
# Retransmission timeout of an IB queue pair is 4.096 us * 2^N; 22 (~17 s) rides out short link
# flaps that the default (20, ~4 s) turns into a dead communicator and a crashed 256-GPU job.
export NCCL_IB_TIMEOUT="${NCCL_IB_TIMEOUT:-22}"
# Errors and warnings only; set NCCL_DEBUG=INFO (and NCCL_DEBUG_SUBSYS=INIT,NET) to see topology.
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"

# --- PyTorch ProcessGroupNCCL: fail fast instead of hanging -------------------------------------
# 1: on a collective timeout or NCCL error, abort the communicator and tear the process down, so
# srun sees the failure and the job ends, instead of 256 GPUs idling in a dead collective.
export TORCH_NCCL_ASYNC_ERROR_HANDLING="${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}"
# A monitor thread kills the process when the NCCL watchdog itself stops making progress (a hung
# CUDA/NCCL call), after TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC.
export TORCH_NCCL_ENABLE_MONITORING="${TORCH_NCCL_ENABLE_MONITORING:-1}"
export TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC="${TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC:-600}"
# Keep the last 20,000 collectives in the flight recorder and dump them on a timeout: which rank
# stopped first, and in which collective, is the question every hang post-mortem starts with.
# (TORCH_FR_BUFFER_SIZE is torch 2.9+'s name for TORCH_NCCL_TRACE_BUFFER_SIZE.)
export TORCH_FR_BUFFER_SIZE="${TORCH_FR_BUFFER_SIZE:-20000}"
export TORCH_NCCL_DUMP_ON_TIMEOUT="${TORCH_NCCL_DUMP_ON_TIMEOUT:-1}"
# Free communication buffers on stream sync rather than through recordStream, which holds on to
# memory longer; Megatron-LM sets this too.
export TORCH_NCCL_AVOID_RECORD_STREAMS="${TORCH_NCCL_AVOID_RECORD_STREAMS:-1}"

# --- CUDA / Transformer Engine ------------------------------------------------------------------
# One hardware work queue per device, so kernels start in the order they are issued: Megatron-core's
# tensor/sequence-parallel and gradient-reduce overlap rely on the communication kernel being
# scheduled before the GEMM it overlaps with.
export CUDA_DEVICE_MAX_CONNECTIONS="${CUDA_DEVICE_MAX_CONNECTIONS:-1}"
# Grow the caching allocator's segments instead of fragmenting into fixed blocks: fewer OOMs at the
# edge of an 80 GB H100 with variable-size activations. (PYTORCH_ALLOC_CONF is torch 2.9+'s name.)
export PYTORCH_ALLOC_CONF="${PYTORCH_ALLOC_CONF:-expandable_segments:True}"
# Transformer Engine needs no setting: it picks its attention backend itself (NVTE_FLASH_ATTN=0 or
# NVTE_FUSED_ATTN=0 rules one out when chasing a numerics difference between two runs).

# --- CPU threads --------------------------------------------------------------------------------
# One OpenMP team per task, sized to the CPUs Slurm gave it, so eight ranks on a node do not each
# start a thread per core and oversubscribe the host.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"
