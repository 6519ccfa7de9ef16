"""Training on several processes through PyTorch's own engine: torchrun, DistributedDataParallel and FSDP.

`torchrun --nproc_per_node=N [--nnodes=M ...] -m llmfs train ...` starts N copies of the CLI with RANK, WORLD_SIZE
and LOCAL_RANK set; `setup()` joins them into one process group (NCCL on GPUs, gloo on CPUs) and the shared loop
(`llmfs.train`) does the rest:

- every rank builds the same model from the same seed; `wrap()` puts it under DDP (a replica per rank, gradients
  averaged after each backward) or FSDP (`fully_shard` per transformer block, then the root: weights, gradients and
  optimizer states split across ranks, gathered a block at a time). The blocks are our GPT's `transformer.h`, our
  Llama's `model.layers` or a transformers model's decoder layers; the root holds the rest (embeddings, final
  norm, head: a tied head is the embedding's one tensor, sharded once);
- the data: each step's *global* batch is drawn as one single-process run would draw it, and rank r takes its rows
  (`RankSlice`), so N processes x batch b train on exactly the batches one process x batch N*b would: the same
  loss history, within float tolerance, and no two ranks see the same rows;
- rank 0 alone writes: metrics, logs, checkpoints and the run directory. Checkpoints hold full (unsharded) tensors in
  the single-process format, so a run resumes on any number of processes and an FSDP run's model loads anywhere;
- a stop asked of rank 0 (the job runner's Stop, a STOP file) reaches every rank at the next step (`any_rank`).

Nothing here is used by a single-process run: `current()` then says world size 1 and every helper is a no-op.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from .config import TrainConfig

STRATEGIES = ("ddp", "fsdp")
TIMEOUT_S = float(os.environ.get("LLMFS_DIST_TIMEOUT_S", "300"))  # a rank that stops answering fails the run


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """Was this process started by torchrun (or another launcher setting WORLD_SIZE) as one of several?"""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str = "auto") -> DistEnv:
    """Join the process group torchrun describes in the environment (once); pins this rank's GPU."""
    if not launched():
        return DistEnv()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=dt.timedelta(seconds=TIMEOUT_S))
    return current()


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def current() -> DistEnv:
    if not (dist.is_available() and dist.is_initialized()):
        return DistEnv()
    return DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def device_for(env: DistEnv, device: str) -> str:
    """This rank's device: its own GPU (LOCAL_RANK) when training on CUDA."""
    if env.active and device.startswith("cuda"):
        return f"cuda:{env.local_rank}"
    return device


# -- data ---------------------------------------------------------------------------------------------------------
class RankSlice:
    """Rank `rank`'s rows of each global batch of `source` (whose batch size is world x the per-rank batch)."""

    def __init__(self, source, env: DistEnv):
        self.source, self.env = source, env

    def batch(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.source.batch(step, micro)
        if x.shape[0] % self.env.world_size:
            raise ValueError(f"A global batch of {x.shape[0]} rows does not split over {self.env.world_size} ranks.")
        per = x.shape[0] // self.env.world_size
        rows = slice(self.env.rank * per, (self.env.rank + 1) * per)
        return x[rows], y[rows]

    def __len__(self) -> int:
        return len(self.source)


# -- the model ----------------------------------------------------------------------------------------------------
def wrap(model: nn.Module, strategy: str, env: DistEnv) -> nn.Module:
    """The module to call for forward / backward: DDP's wrapper, or the model itself sharded in place by FSDP.

    `model` stays the plain module for everything else (names, checkpoints, adapters). Optimizers must be built
    after this (FSDP replaces the parameters with sharded ones).
    """
    if not env.active:
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP
        device = next(model.parameters()).device
        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard
        for p in model.parameters():  # weights converted from Conv1D are transposed views: FSDP wants them whole
            if not p.is_contiguous():
                p.data = p.data.contiguous()
        for block in _blocks(model):
            fully_shard(block)
        fully_shard(model)
        return model
    raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)} (got {strategy!r}).")


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks, FSDP's units: our GPT's and our Llama's blocks by their class, a transformers
    model's decoder layers by their class name."""
    from .llama import Block as LlamaBlock
    from .model import Block as GPTBlock
    ours = [m for m in model.modules() if isinstance(m, (GPTBlock, LlamaBlock))]
    if ours:
        return ours
    hf = getattr(model, "hf", model)
    layers = [m for m in hf.modules() if isinstance(m, nn.ModuleList) and len(m) and
              type(m[0]).__name__.endswith(("Block", "DecoderLayer", "Layer"))]
    return list(layers[0]) if layers else []


def is_fsdp(model: nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return False
    return isinstance(model, FSDPModule)


def gradient_sync(net: nn.Module, sync: bool):
    """A context in which backward does (sync=True) or does not (an accumulation micro-step) average gradients."""
    import contextlib
    if not sync and hasattr(net, "no_sync"):  # DDP
        return net.no_sync()
    if is_fsdp(net):
        net.set_requires_gradient_sync(sync)
    return contextlib.nullcontext()


# -- collectives --------------------------------------------------------------------------------------------------
def sums(values: list[float], env: DistEnv) -> list[float]:
    """Each number summed over all ranks, in one collective (a step's loss and token count together)."""
    if not env.active:
        return list(values)
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return t.tolist()


def mean(value: float, env: DistEnv) -> float:
    """The mean of a number over all ranks (the held-out loss from each rank's share)."""
    return sums([value], env)[0] / env.world_size


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True on every rank when it is true on one (a stop asked of rank 0 ends them all at the same step)."""
    if not env.active:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast(obj, env: DistEnv):
    """Rank 0's `obj` on every rank (a run directory's path, a checkpoint's state)."""
    if not env.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj, env: DistEnv) -> list:
    """Every rank's `obj`, in rank order, on every rank."""
    if not env.active:
        return [obj]
    out = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def fingerprint(t: torch.Tensor) -> str:
    """A short digest of a tensor's values (which rows a rank trains on, for the log and the tests)."""
    import hashlib
    return hashlib.sha1(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:12]


def barrier(env: DistEnv) -> None:
    if env.active:
        dist.barrier()


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# -- checkpoints --------------------------------------------------------------------------------------------------
def full_state(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> tuple[dict | None, dict | None]:
    """(model state, optimizer state) as whole tensors on rank 0's CPU (None on other ranks), from a sharded model.
    Every rank must call it (the shards are gathered). The optimizer state is keyed by parameter name."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd = get_model_state_dict(model, options=options)
    optim_sd = get_optimizer_state_dict(model, optimizer, options=options) if optimizer is not None else None
    if current().is_main:
        return model_sd, optim_sd
    return None, None


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer | None, model_sd: dict | None,
                    optim_sd: dict | None) -> None:
    """Load whole tensors (as `full_state` returns them) into a model that may be sharded; every rank calls it
    with the state read from the checkpoint."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )
    options = StateDictOptions(full_state_dict=True, strict=False)
    if model_sd is not None:
        set_model_state_dict(model, model_sd, options=options)
    if optimizer is not None and optim_sd is not None:
        set_optimizer_state_dict(model, optimizer, optim_sd, options=options)


def processes_for(cfg: TrainConfig) -> int:
    """The processes a run asks for: `processes`, or for 0 (auto) one per GPU when there are several, else 1."""
    if cfg.processes:
        return cfg.processes
    if cfg.device == "cpu":
        return 1
    import torch
    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1
