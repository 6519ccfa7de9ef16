"""Bytes the tensors of a training run really hold, per part: weights, gradients, optimizer states, and the
activations autograd saves for the backward pass.

What a process's memory (RSS on a CPU, NVML on a GPU) cannot show: the Python interpreter, PyTorch's libraries and
the allocator's cache dwarf a small model, so an fp32 and a bf16 run of it look alike. Counting the tensors shows
what the precision mode and the fine-tuning method change, on any device, and is what `llmfs.memory.estimate`
is held against (tests/test_memory_measured.py, bench/memory_estimate.py). `llmfs.train` counts a step with
`SavedForBackward` around its forward pass and `state_bytes` after its optimizer step.

How it counts: each part is the sum of its tensors' *storages*, each storage once (a tied embedding / head is one
tensor; a view shares its base's bytes). Activations are collected with `torch.autograd.graph.saved_tensors_hooks`
while one forward pass runs: every tensor an operation saves for backward goes through the pack hook, and a storage
that is not a weight's (a parameter, a buffer, a 4-bit layer's quantization constants) is an activation. So the
16-bit copies of the weights autocast makes for its matmuls count as activations, which is when they are held.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch
import torch.nn as nn

PARTS = ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes")


def _key(t: torch.Tensor) -> tuple | None:
    """One storage, however many tensors view it; None for one that holds no memory of its own to count (an FSDP
    parameter whose gathered storage was freed after use). A DTensor (FSDP) counts its local shard."""
    local = t.to_local() if hasattr(t, "to_local") else t
    try:
        s = local.untyped_storage()
        return (local.device.type, local.device.index, s.data_ptr(), s.nbytes())
    except (RuntimeError, NotImplementedError):
        return None


def storage_bytes(tensors: Iterable[torch.Tensor], exclude: set | None = None) -> int:
    """Bytes of the distinct storages behind `tensors` (skipping the keys in `exclude`)."""
    seen = set(exclude or ())
    total = 0
    for t in tensors:
        if t is None or not isinstance(t, torch.Tensor) or t.device.type == "meta":
            continue
        key = _key(t)
        if key is not None and key not in seen:
            seen.add(key)
            total += key[3]
    return total


def weight_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Parameters, buffers, and a 4-bit layer's quantization state (absmax, nested absmax, code), which
    bitsandbytes keeps beside its packed uint8 weight rather than as parameters."""
    out = [*model.parameters(), *model.buffers()]
    for p in model.parameters():
        out.extend(_quant_state_tensors(getattr(p, "quant_state", None)))
    return out


def _quant_state_tensors(state) -> list[torch.Tensor]:
    if state is None:
        return []
    found = [getattr(state, name, None) for name in ("absmax", "code", "offset")]
    return [t for t in found if isinstance(t, torch.Tensor)] + _quant_state_tensors(getattr(state, "state2", None))


def optimizer_tensors(optimizer: torch.optim.Optimizer | None) -> list[torch.Tensor]:
    """AdamW's exp_avg and exp_avg_sq (and its per-tensor step counters) for every parameter that has stepped."""
    if optimizer is None:
        return []
    return [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, int]:
    """Bytes of weights, gradients (those that exist now) and optimizer states: what a run holds between steps."""
    return {"weights_bytes": storage_bytes(weight_tensors(model)),
            "gradients_bytes": storage_bytes(p.grad for p in model.parameters()),
            "optimizer_bytes": storage_bytes(optimizer_tensors(optimizer))}


class SavedForBackward:
    """Counts the distinct storages autograd saves for backward inside `with counter.watch():`, leaving out the
    model's own weights (`exclude`), which are already counted as weights."""

    def __init__(self, exclude: Iterable[torch.Tensor] = ()):
        self._exclude = {_key(t) for t in exclude if isinstance(t, torch.Tensor) and t.device.type != "meta"} - {None}
        self._seen: set = set()
        self.bytes = 0

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta":
            key = _key(t)
            if key is not None and key not in self._exclude and key not in self._seen:
                self._seen.add(key)
                self.bytes += key[3]
        return t  # kept as it is: counting changes nothing about the run

    @contextlib.contextmanager
    def watch(self) -> Iterator["SavedForBackward"]:
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
            yield self
