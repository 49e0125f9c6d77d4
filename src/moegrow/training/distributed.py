"""Data-parallel training with PyTorch FSDP2 under ``torchrun``; no-ops in a single process.

Every decoder layer is sharded with ``fully_shard``, then the root module (the pattern of
torchtitan and of transformers' own FSDP2 support). Full (unsharded) model and optimizer state
dicts are gathered onto rank 0 on CPU for checkpoints, so a checkpoint written by N processes is
an ordinary HF folder that 1 or M processes can resume.
"""

from __future__ import annotations

import gc
import os

import torch
import torch.distributed as dist

#: Set to 1 to shard with FSDP2 even in a world of one process (``torchrun --nproc_per_node 1``):
#: the sharded code path on one GPU, for checks and profiles.
FORCE_ENV = "MOEGROW_FSDP"


def forced() -> bool:
    return os.environ.get(FORCE_ENV) == "1"


def world() -> tuple[int, int]:
    """(rank, world size) of this process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group torchrun describes in the environment; returns this rank's
    device (CUDA ranks use their LOCAL_RANK GPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if dist.is_initialized() or world_size < 1 or (world_size == 1 and not forced()):
        return device
    if world_size == 1 and "MASTER_ADDR" not in os.environ:  # forced, but not under torchrun
        return device
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    return device


def sharded() -> bool:
    """Whether :func:`shard` shards (more than one process, or :data:`FORCE_ENV` under
    torchrun)."""
    return dist.is_available() and dist.is_initialized()


def shard(model) -> None:
    """FSDP2: shard each decoder layer, then the root."""
    if not sharded():
        return
    from torch.distributed.fsdp import fully_shard

    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)


def _state_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=world()[1] > 1)


def full_state(model, optimizer) -> tuple[dict, dict]:
    """Unsharded model and optimizer state dicts, keyed by parameter name (not position) so
    that a checkpoint resumes under any number of processes; on CPU, complete on rank 0."""
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = _state_options()
    model_state = get_model_state_dict(model, options=options)
    return model_state, get_optimizer_state_dict(model, optimizer, options=options)


def load_optimizer(model, optimizer, state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=_state_options())


def all_sum(values: list[float]) -> list[float]:
    """Sum floats over processes."""
    if world()[1] == 1:
        return values
    # NCCL reduces only tensors on the rank's GPU; gloo those on the CPU.
    on_gpu = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else None
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool) -> bool:
    return all_sum([1.0 if flag else 0.0])[0] > 0


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def shutdown(*, failed: bool = False) -> None:
    """Leave the process group once every process is done with it (at once when this one
    ``failed``: the others may never reach a barrier, and torchrun stops them).

    The barrier keeps a process from tearing its connections down while another still
    communicates; the collection frees the sharded model's cycles (and the tensors its pending
    work holds) while the group and the interpreter are still alive, since tensors released by
    a communication thread during interpreter shutdown abort the process."""
    if dist.is_available() and dist.is_initialized():
        if not failed:
            barrier()
        gc.collect()
        dist.destroy_process_group()
