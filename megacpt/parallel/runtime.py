"""Start and stop the parallel runtime: torch.distributed, Megatron's parallel state, the RNGs.

NCCL on a GPU, gloo on CPU (with ``cpu_compat`` applied). Works under ``torchrun``/``srun``
(``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` from the environment) and as a plain single process,
where it sets up a world of one on a free loopback port (leaving the environment alone, so that
processes it starts do not inherit a rank).
"""

from __future__ import annotations

import datetime
import os
import random
import socket
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from megatron.core.process_groups_config import ProcessGroupCollection

from megacpt.compat import cpu as cpu_compat
from megacpt.compat import dcp as dcp_compat
from megacpt.compat import optimizer as optimizer_compat
from megacpt.config.loader import to_dict
from megacpt.config.schema import Config
from megacpt.config.validate import data_parallel_size, data_sources, validate_layout
from megacpt.errors import UserError
from megacpt.fingerprint import code_version, describe_files, disagreement, flatten, host
from megacpt.processes import children_die_with_parent


@dataclass(frozen=True)
class Runtime:
    """Where this process stands in the job, and its process groups (Megatron-core's
    ``ProcessGroupCollection``: ``tp``, ``pp``, ``cp``, ``dp``), which the trainer uses instead of
    ``parallel_state``'s globals."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    data_parallel_size: int
    groups: ProcessGroupCollection

    @property
    def data_parallel_rank(self) -> int:
        return self.groups.dp.rank()

    @property
    def is_last_pipeline_stage(self) -> bool:
        return self.groups.pp.rank() == self.groups.pp.size() - 1

    @property
    def last_pipeline_rank(self) -> int:
        """The global rank of this pipeline's last stage."""
        return dist.get_global_rank(self.groups.pp, self.groups.pp.size() - 1)


def _slurm_env_to_torch() -> None:
    """Under ``srun`` without torchrun, take the rank and world size from Slurm's variables."""
    if "RANK" in os.environ or "SLURM_PROCID" not in os.environ:
        return
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    os.environ["WORLD_SIZE"] = os.environ.get("SLURM_NTASKS", "1")
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")


def init_world_of_one(backend: str = "gloo", timeout: datetime.timedelta | None = None) -> None:
    """A process group of this process alone, on a free loopback port (the environment untouched, so
    that processes it starts do not inherit a rank)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1, timeout=timeout
    )


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and Megatron's model-parallel RNG tracker.

    Pipeline stages get different default seeds (as in Megatron-LM); tensor-parallel ranks get
    different tracker seeds for dropout inside TP regions.
    """
    from megatron.core import parallel_state, tensor_parallel

    stage_seed = seed + 100 * parallel_state.get_pipeline_model_parallel_rank()
    random.seed(stage_seed)
    np.random.seed(stage_seed)
    torch.manual_seed(stage_seed)
    tensor_parallel.model_parallel_cuda_manual_seed(stage_seed)


def init_runtime(config: Config) -> Runtime:
    """Initialise torch.distributed and Megatron's parallel state for ``config``; seed the RNGs."""
    from megatron.core import parallel_state

    on_gpu = torch.cuda.is_available()
    if not on_gpu:
        cpu_compat.apply()
    optimizer_compat.apply()
    dcp_compat.checkpoint_writer_without_manager()
    children_die_with_parent()  # the checkpoint writers it forks do not outlive a killed run
    _slurm_env_to_torch()
    launched = "RANK" in os.environ  # by torchrun or srun; else a world of one, without touching the env
    world_size = int(os.environ["WORLD_SIZE"]) if launched else 1
    validate_layout(config, world_size)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if on_gpu:
        torch.cuda.set_device(local_rank)
    p = config.parallel
    timeout = datetime.timedelta(minutes=p.distributed_timeout_minutes)
    if not dist.is_initialized():
        backend = "nccl" if on_gpu else "gloo"
        if launched:
            dist.init_process_group(backend, timeout=timeout)
        else:
            init_world_of_one(backend, timeout)
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=p.tensor_model_parallel_size,
        pipeline_model_parallel_size=p.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=p.virtual_pipeline_model_parallel_size,
        context_parallel_size=p.context_parallel_size,
        distributed_timeout_minutes=p.distributed_timeout_minutes,
    )
    seed_everything(config.training.seed)
    return Runtime(
        rank=dist.get_rank(),
        world_size=world_size,
        local_rank=local_rank,
        device=torch.device("cuda", local_rank) if on_gpu else torch.device("cpu"),
        data_parallel_size=data_parallel_size(config, world_size),
        groups=ProcessGroupCollection.use_mpu_process_groups(required_pgs=["tp", "pp", "cp", "dp"]),
    )


def job_description(config: Config) -> dict[str, str]:
    """What this rank will run: megacpt's code and its libraries' versions, every config value, and
    the files of every dataset and mixture file it reads (each file by size and edges)."""
    mixture_files, named = data_sources(config)
    files = [file for _, file in mixture_files]
    files += [prefix + suffix for prefix in dict.fromkeys(p for _, p in named) for suffix in (".bin", ".idx")]
    description = {f"code: {k}": v for k, v in code_version().items()}
    description |= {f"config: {k}": v for k, v in flatten(to_dict(config)).items()}
    description |= {f"file {k}": v for k, v in describe_files(files).items()}
    return description


def agree_on_job(config: Config, resumes_from: str | os.PathLike | None) -> None:
    """Raise the same ``UserError`` on every rank when any rank's ``job_description`` (or the
    checkpoint it resumes from) differs from rank 0's: a node with other code, config or data files.
    A collective of the whole world; a world of one describes nothing."""
    if dist.get_world_size() == 1:
        return
    description = job_description(config) | {"resumes from": str(resumes_from)}
    described: list[tuple[str, dict[str, str]] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(described, (host(), description))
    problem = disagreement([d for d in described if d is not None])
    if problem:
        raise UserError(f"the job's ranks must run the same code, config and data: {problem}")


def shutdown(wait_for_others: bool = True) -> None:
    """Tear down Megatron's parallel state and the process group; safe to call twice.

    ``wait_for_others=False`` (after an error) skips the final barrier, which other ranks stuck in
    a collective would never reach.
    """
    from megatron.core import parallel_state

    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if dist.is_initialized():
        if wait_for_others:
            dist.barrier()
        dist.destroy_process_group()


# What a collective raises on a rank whose peer vanished (its process killed, its node dead): gloo's
# TCP pairs, NCCL's watchdog and communicator, the c10d store.
_PEER_LOST = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Broken pipe",
    "remote process exited",
    "NCCL communicator was aborted",
    "failed to recv, got 0 bytes",
)


def lost_peer(error: BaseException) -> str | None:
    """The first line of ``error`` when it says another rank vanished mid-collective, else None."""
    text = str(error)
    if not any(marker in text for marker in _PEER_LOST):
        return None
    return next((line.strip() for line in text.splitlines() if line.strip()), text)
