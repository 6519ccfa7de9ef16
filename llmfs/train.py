"""The one training loop every lesson uses.

`train(model, batches, cfg, ...)` runs AdamW with warm-up + cosine decay, gradient accumulation and clipping,
evaluates on held-out batches every `eval_every` steps, reports every step through an injected sink
(`sink.emit(step, **metrics)`), honours a stop flag between steps, checkpoints atomically, resumes from its last
checkpoint, and returns its history, so tests check it without threads and jobs stream it to the run directory.
Freezing (`llmfs.freeze`) enters in two places: the optimizer's parameter groups (per-group learning-rate scale)
and, for gradual unfreezing, a hook before each step that switches on the blocks whose turn has come.
Under torchrun the same loop runs on every rank (`llmfs.distributed`: DDP or FSDP, rank 0 alone reports and writes).
On the first step and every `TENSOR_MEMORY_EVERY` steps it also counts the bytes its tensors hold, per part
(`llmfs.tensor_memory`: weights, gradients, optimizer states, activations saved for backward) and reports them as a
`kind="tensor_memory"` record: what a process's memory hides on a CPU, and what `llmfs.memory.estimate` predicts.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.nn as nn
from safetensors.torch import load_file, load_model, save_file, save_model

from . import distributed
from .config import TrainConfig
from .freeze import FreezePlan, apply_freeze, freeze_options, param_groups, set_trainable
from .fsutil import atomic_write_json, read_json, replace_dir
from .precision import PrecisionPlan, autocast, make_scaler, matmul_precision, plan_precision, underflow_fraction
from .tensor_memory import SavedForBackward, state_bytes, weight_tensors

TENSOR_MEMORY_EVERY = 10  # steps between two counts of the run's tensor bytes (the first and the last step too)


class Sink(Protocol):
    def emit(self, step: int, kind: str = "train", **metrics) -> None: ...


class BatchSource(Protocol):
    """Gives the (inputs, targets) micro-batch for a given step: deterministic, so a resumed run sees the same
    data as an uninterrupted one."""

    def batch(self, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]: ...


class RandomWindows:
    """Random windows of `seq_len + 1` tokens from one long token tensor (nanoGPT's get_batch), seeded per step."""

    def __init__(self, tokens: torch.Tensor, batch_size: int, seq_len: int, seed: int = 0):
        if tokens.dim() != 1:
            raise ValueError("tokens must be a 1-D tensor of token ids.")
        if len(tokens) < seq_len + 2:
            raise ValueError(f"Only {len(tokens)} tokens of data, fewer than one sequence of {seq_len} tokens (the "
                             "sequence length) plus 2: use more text or a shorter sequence length.")
        self.tokens, self.batch_size, self.seq_len, self.seed = tokens, batch_size, seq_len, seed

    def batch(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 1009 + micro)
        starts = torch.randint(len(self.tokens) - self.seq_len - 1, (self.batch_size,), generator=g)
        rows = torch.stack([self.tokens[s: s + self.seq_len + 1] for s in starts.tolist()])  # (B, T+1)
        return rows[:, :-1], rows[:, 1:]

    def __len__(self) -> int:
        return len(self.tokens)


MIN_SEQ_LEN = 8  # the shortest sequence a run on short text falls back to


def fitted_seq_len(tokens: int, seq_len: int) -> int | None:
    """The sequence length `tokens` training tokens support: `seq_len` when a window of it fits (seq_len + 2
    tokens: the inputs, the next tokens they predict, and a second place to start), else the longest power of two
    that fits, down to MIN_SEQ_LEN; None when not even that fits."""
    if tokens >= seq_len + 2:
        return seq_len
    fit = 1 << max(0, (tokens - 2).bit_length() - 1) if tokens > 2 else 0
    return fit if fit >= MIN_SEQ_LEN else None


class HeldOutWindows:
    """The held-out text an evaluation reads: `batches` batches of `batch_size` windows of `seq_len` tokens, drawn
    once (the same at every evaluation, so they compare). Held-out text shorter than that is read as it is: shorter
    windows, or one window over all of it, with `note` saying so; under 4 tokens there is nothing to measure on
    (`usable` is False). `final_batches`: more batches for the last evaluation (the figure a run reports)."""

    def __init__(self, tokens: torch.Tensor, batch_size: int, seq_len: int, batches: int, seed: int = 0,
                 final_batches: int | None = None):
        self.tokens, self.note = tokens, None
        n = len(tokens)
        self.usable = n >= 4
        self.seq_len = min(seq_len, n - 2) if self.usable else 0
        self.batch_size, self.batches, self.final_batches = batch_size, batches, final_batches or batches
        if self.usable and self.seq_len < seq_len:
            # a short held-out text: its windows overlap almost entirely, so one batch of one says as much
            self.batch_size, self.batches, self.final_batches = 1, 1, 1
            self.note = (f"The held-out text is only {n:,} tokens, so it is measured as one window of "
                         f"{self.seq_len:,} tokens (training reads {seq_len:,} at a time): a rough figure.")
        elif not self.usable:
            self.note = (f"The held-out text is only {n:,} tokens, too little to measure a held-out loss on: this "
                         "run reports none. Use more text to get one.")
        self._windows = RandomWindows(tokens, self.batch_size, self.seq_len, seed) if self.usable else None

    def batch(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        if self._windows is None:
            raise ValueError(self.note)
        return self._windows.batch(step, micro)

    @property
    def tokens_read(self) -> int:
        """Tokens the final evaluation reads."""
        return self.final_batches * self.batch_size * self.seq_len


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)   # one record per optimizer step
    evals: list[dict] = field(default_factory=list)     # one record per evaluation
    trainable_params: int = 0
    total_params: int = 0
    peak_memory_bytes: int = 0
    stopped: bool = False
    elapsed_s: float = 0.0
    tokens_seen: int = 0
    precision: str = "fp32"
    loss_scales: list[float] = field(default_factory=list)  # fp16: the gradient scaler's scale at each step
    skipped_steps: int = 0                                  # fp16: steps the scaler skipped (inf / NaN gradients)
    tensor_memory: dict = field(default_factory=dict)       # the largest count of tensor bytes, per part

    @property
    def losses(self) -> list[float]:
        return [h["loss"] for h in self.history]

    @property
    def final_loss(self) -> float | None:
        return self.history[-1]["loss"] if self.history else None

    @property
    def steps_done(self) -> int:
        return self.history[-1]["step"] if self.history else 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_seen / self.elapsed_s if self.elapsed_s > 0 else 0.0


def lr_at(step: int, total_steps: int, peak_lr: float, warmup_steps: int, min_lr_ratio: float) -> float:
    """Linear warm-up to `peak_lr`, then cosine decay to `peak_lr * min_lr_ratio` at `total_steps` (step is 1-based).

    A warm-up longer than the run is cut to the run's length (a 5-step demo with the default 10-step warm-up).
    """
    warmup_steps = min(warmup_steps, total_steps)
    if warmup_steps > 0 and step <= warmup_steps:
        return peak_lr * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return peak_lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def total_steps_for(cfg: TrainConfig, train_tokens: int) -> int:
    if cfg.epochs is None:
        return cfg.steps
    return max(1, math.ceil(cfg.epochs * train_tokens / cfg.tokens_per_step))


def to_param_dtype(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast the weights (and saved buffers) to `dtype`, keeping the floating buffers a model recomputes rather than
    stores (non-persistent: our Llama's rotary frequencies) in their own dtype. Rounded to bf16, smollm2-135m's
    frequencies are off by up to 0.3%: 2.8 radians of rotation at position 2,048, positions scrambled."""
    kept = {name: buf for name, buf in model.named_buffers()
            if buf.is_floating_point() and name.rpartition(".")[2] in _non_persistent(model, name)}
    model.to(dtype)
    for name, buf in kept.items():
        owner, _, attr = name.rpartition(".")
        setattr(model.get_submodule(owner), attr, buf)


def _non_persistent(model: nn.Module, buffer_name: str) -> set[str]:
    return model.get_submodule(buffer_name.rpartition(".")[0])._non_persistent_buffers_set


def make_optimizer(model: nn.Module, cfg: TrainConfig, plan: FreezePlan | None = None) -> torch.optim.AdamW:
    """AdamW over trainable parameters; no weight decay on biases and norm weights (LayerNorm, RMSNorm: every
    tensor of fewer than 2 dimensions), as GPT-2 / nanoGPT and Llama's recipes do.

    Without a plan: the parameters that require gradients now, one learning rate. With one: every tensor the plan
    ever trains, grouped by learning-rate scale (see `llmfs.freeze.param_groups`).
    """
    groups = param_groups(model, plan, base_lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total), counting a tied tensor once and a 4-bit tensor by the weights it holds (bitsandbytes
    packs two per byte, so its `numel()` is half the count)."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        quant_state = getattr(p, "quant_state", None)
        n = int(quant_state.shape.numel()) if quant_state is not None else p.numel()
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total


@torch.no_grad()
def evaluate(model: nn.Module, batches: BatchSource, n_batches: int, device: torch.device,
             plan: PrecisionPlan | None = None) -> float:
    """Mean loss over the same `n_batches` held-out batches each time (in the run's precision), so evaluations
    are comparable."""
    was_training = model.training
    model.eval()
    losses = []
    for i in range(n_batches):
        x, y = batches.batch(step=0, micro=i)
        with autocast(plan) if plan is not None else contextlib.nullcontext():
            _, loss = model(x.to(device), y.to(device))
        losses.append(loss.item())
    model.train(was_training)
    return sum(losses) / len(losses)


@dataclass
class TrainState:
    """Everything one training loop works with, built once by `train` and handed to each step (as torchtune's
    recipes keep their state in one object, not in a dozen parameters)."""
    model: nn.Module                 # the module itself (its state dict is what checkpoints hold)
    net: nn.Module                   # what the step calls: the model, or its DDP / FSDP wrapper
    optimizer: torch.optim.Optimizer
    scaler: Any                      # fp16's gradient scaler, else None
    plan: PrecisionPlan
    cfg: TrainConfig
    batches: BatchSource
    val_batches: BatchSource | None
    result: TrainResult              # the history, filled as the loop goes
    total_steps: int
    device: torch.device
    env: Any                         # this process's place in a distributed run (`llmfs.distributed.current`)
    freeze_plan: FreezePlan | None
    should_stop: Callable[[], bool]
    emit: Callable[..., None]        # the sink's emit on the reporting process, else a no-op
    ckpt: Path | None                # where `last/` is checkpointed


def train(model: nn.Module, batches: BatchSource, cfg: TrainConfig, *, val_batches: BatchSource | None = None,
          sink: Sink | None = None, should_stop: Callable[[], bool] | None = None,
          checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
          total_steps: int | None = None, device: str | torch.device | None = None,
          freeze_plan: FreezePlan | None = None) -> TrainResult:
    """Train `model` in place and return its history.

    Args:
        batches: training micro-batches (see `BatchSource`); val_batches: held-out ones for evaluation.
        sink: receives `emit(step, kind="train", loss=..., lr=..., tokens_per_s=..., ...)` every step and
            `emit(step, kind="eval", eval_loss=...)` at each evaluation.
        should_stop: polled between steps; when it returns True the loop checkpoints and returns (`stopped`).
        checkpoint_dir: where `last/` is written every `checkpoint_every` steps and at the end.
        resume: continue from `checkpoint_dir/last` if it exists (history continues, not restarts).
        freeze_plan: what trains, from `llmfs.freeze.apply_freeze` (already applied to `model`). Without one,
            `cfg.freeze` is applied here, except `full`, which leaves `requires_grad` as the caller set it.
    Raises:
        FloatingPointError: the loss became NaN or infinite (the last good checkpoint is kept).
    """
    env = distributed.current()
    device = torch.device(distributed.device_for(env, str(device or resolve_device(cfg.device))))
    plan = plan_precision(cfg.precision, device, tf32=cfg.tf32, grad_scaling=cfg.grad_scaling)
    model.to(device).train()
    if plan.param_dtype != torch.float32:
        to_param_dtype(model, plan.param_dtype)  # bf16-pure: weights (so gradients and optimizer states) in bf16
    total_steps = total_steps or cfg.steps
    if freeze_plan is None and cfg.freeze != "full":
        freeze_plan = apply_freeze(model, **freeze_options(cfg))
    if env.active and freeze_plan is not None and freeze_plan.schedule:
        raise ValueError("Gradual unfreezing changes which weights train during the run, and DDP / FSDP fix that "
                         "set when they start: train it on one process, or pick another freezing strategy.")
    net = distributed.wrap(model, cfg.strategy, env)  # before the optimizer: FSDP replaces the parameters
    optimizer = make_optimizer(model, cfg, freeze_plan)
    scaler = make_scaler(plan)
    result = TrainResult(precision=plan.mode)
    result.trainable_params, result.total_params = count_params(model)
    if freeze_plan is not None:  # for gradual unfreezing: all that will train, not only the first step's
        result.trainable_params, result.total_params = freeze_plan.trainable_params, freeze_plan.total_params
    if env.active and isinstance(val_batches, HeldOutWindows) and distributed.any_rank(not val_batches.usable, env):
        val_batches = None  # a process whose held-out share is too short: none evaluates (they evaluate together)
    ckpt = Path(checkpoint_dir) / "last" if checkpoint_dir else None
    if resume and ckpt is not None and (ckpt / "state.json").exists():
        _load_checkpoint(ckpt, model, optimizer, result, scaler)
    asked = should_stop or (lambda: False)
    should_stop = (lambda: distributed.any_rank(asked(), env)) if env.active else asked
    emit = sink.emit if sink is not None and env.is_main else (lambda *a, **k: None)
    _reset_peak_memory(device)
    state = TrainState(model, net, optimizer, scaler, plan, cfg, batches, val_batches, result, total_steps, device,
                       env, freeze_plan, should_stop, emit, ckpt)
    with matmul_precision(plan):
        _loop(state)
    if ckpt is not None and result.history:
        save_checkpoint(ckpt, model, optimizer, result, scaler)
    return result


def _loop(s: TrainState) -> None:
    """Steps until `s.total_steps` (or a stop): each step trains, reports, evaluates and checkpoints as `s.cfg` says."""
    step = first = s.result.steps_done
    while step < s.total_steps:
        if s.should_stop():
            s.result.stopped = True
            break
        step += 1
        if s.env.active and step == first + 1:  # once: which rows each process trains on
            fingerprint = distributed.fingerprint(s.batches.batch(step, 0)[0])
            s.emit(step, kind="ranks", world_size=s.env.world_size, strategy=s.cfg.strategy,
                   data_fingerprints=distributed.gather(fingerprint, s.env))
        trainable_now = _unfreeze_on_schedule(s.model, s.freeze_plan, step)
        count_tensors = step == first + 1 or step % TENSOR_MEMORY_EVERY == 0 or step == s.total_steps
        record = _train_step(s, step, count_tensors)
        parts = record.pop("tensor_memory", None)
        if parts is not None:
            s.emit(step, kind="tensor_memory", **parts)
            if sum(parts.values()) >= sum(s.result.tensor_memory.values()):
                s.result.tensor_memory = parts
        if s.scaler is not None:
            s.result.loss_scales.append(record["loss_scale"])
            s.result.skipped_steps += int(record["skipped"])
            s.emit(step, kind="scaler", loss_scale=record["loss_scale"], skipped=record["skipped"],
                   grad_underflow_frac=record["grad_underflow_frac"])
        if trainable_now is not None:
            record["trainable_params"] = trainable_now
        s.result.elapsed_s += record["step_time_s"]
        s.result.tokens_seen += record["tokens"]
        s.result.peak_memory_bytes = max(s.result.peak_memory_bytes, peak_memory_bytes(s.device))
        record.update(total_steps=s.total_steps, elapsed_s=round(s.result.elapsed_s, 4),
                      tokens_seen=s.result.tokens_seen)
        s.result.history.append({"step": step, **record})
        s.emit(step, kind="train", **record)
        if s.val_batches is not None and getattr(s.val_batches, "usable", True) and (
                (s.cfg.eval_every and step % s.cfg.eval_every == 0) or step == s.total_steps):
            # several processes reading their own parts hold out different text: the mean over all of them
            loss = evaluate(s.model, s.val_batches, _eval_batches(s, step), s.device, s.plan)
            ev = {"step": step, "eval_loss": distributed.mean(loss, s.env)}
            s.result.evals.append(ev)
            s.emit(step, kind="eval", eval_loss=ev["eval_loss"])
        if s.ckpt is not None and s.cfg.checkpoint_every and step % s.cfg.checkpoint_every == 0:
            save_checkpoint(s.ckpt, s.model, s.optimizer, s.result, s.scaler)


def _eval_batches(s: TrainState, step: int) -> int:
    """How many held-out batches this evaluation reads: the run's setting, or what `HeldOutWindows` decided (more
    for the last evaluation, the figure the run reports)."""
    if not hasattr(s.val_batches, "final_batches"):  # HeldOutWindows, or a run's held-out examples
        return s.cfg.eval_batches
    return s.val_batches.final_batches if step == s.total_steps else s.val_batches.batches


def _unfreeze_on_schedule(model: nn.Module, plan: FreezePlan | None, step: int) -> int | None:
    """Gradual unfreezing: before `step`, switch on what the plan trains by then (every step, so a resumed run
    starts from the right set). Frozen tensors get no gradient and AdamW leaves them alone, weight decay included.
    Returns the trainable count for a scheduled plan, else None."""
    if plan is None or not plan.schedule:
        return None
    return set_trainable(model, plan, step)


def _train_step(s: TrainState, step: int, count_tensors: bool = False) -> dict:
    """One optimizer step over `cfg.grad_accum` micro-batches. With `count_tensors`, the record also holds the step's
    tensor bytes (`tensor_memory`): what the first micro-batch's forward saved for backward, and the weights,
    gradients and optimizer states after the update (before the gradients are cleared)."""
    t0 = time.perf_counter()
    saved = SavedForBackward(weight_tensors(s.net)) if count_tensors else None
    lr = lr_at(step, s.total_steps, s.cfg.lr, s.cfg.warmup_steps, s.cfg.min_lr_ratio)
    for group in s.optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)  # layer-wise decay (llrd) scales each group's rate
    loss_sum, tokens = 0.0, 0
    for micro in range(s.cfg.grad_accum):
        x, y = s.batches.batch(step, micro)
        x, y = x.to(s.device, non_blocking=True), y.to(s.device, non_blocking=True)
        # several processes: gradients are averaged across them once, on the last micro-batch's backward
        with distributed.gradient_sync(s.net, micro == s.cfg.grad_accum - 1):
            watching = saved.watch() if saved is not None and micro == 0 else contextlib.nullcontext()
            with autocast(s.plan), watching:
                _, loss = s.net(x, y)
            part = loss.float() / s.cfg.grad_accum  # average over micro-s.batches, as one big batch would
            (s.scaler.scale(part) if s.scaler is not None else part).backward()
        loss_sum += loss.item()
        tokens += x.numel()
    loss_total, tokens = distributed.sums([loss_sum / s.cfg.grad_accum, tokens], s.env)
    loss, tokens = loss_total / s.env.world_size, int(tokens)  # the global batch's loss and tokens
    if not math.isfinite(loss):
        s.optimizer.zero_grad(set_to_none=True)
        raise FloatingPointError(_diverged(f"The loss became {loss} at step {step}", s.plan))
    params = [p for g in s.optimizer.param_groups for p in g["params"]]
    record: dict = {}
    if s.scaler is not None:
        s.scaler.unscale_(s.optimizer)  # true gradients, for clipping and for the underflow statistic
        record["grad_underflow_frac"] = underflow_fraction(params)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, s.cfg.grad_clip if s.cfg.grad_clip > 0 else float("inf"))
    grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)  # FSDP: a DTensor
    if s.scaler is not None:
        # An inf / NaN gradient: the s.scaler skips this update and halves its scale (Micikevicius et al. 2018).
        scale = s.scaler.get_scale()
        s.scaler.step(s.optimizer)
        s.scaler.update()
        record.update(loss_scale=scale, skipped=s.scaler.get_scale() < scale)
    else:
        if not math.isfinite(grad_norm):
            s.optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(_diverged(f"The gradients became {grad_norm} at step {step}", s.plan))
        s.optimizer.step()
    if saved is not None:
        record["tensor_memory"] = {**state_bytes(s.net, s.optimizer), "activations_bytes": saved.bytes}
    s.optimizer.zero_grad(set_to_none=True)
    if s.device.type == "cuda":
        torch.cuda.synchronize(s.device)  # honest step times
    dt = time.perf_counter() - t0
    return {"loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens": tokens,
            "step_time_s": round(dt, 5), "tokens_per_s": tokens / dt if dt > 0 else 0.0, **record}


def _diverged(what: str, plan: PrecisionPlan) -> str:
    advice = ("fp16 cannot hold values above 65,504: use bf16, which has fp32's range, or a lower learning rate"
              if plan.mode == "fp16" else "lower the learning rate" +
              (", or use bf16 autocast instead of pure bf16" if plan.mode == "bf16-pure" else ""))
    return f"{what}: training diverged and was stopped instead of training on garbage. To fix: {advice}. " \
           "The last good checkpoint is kept."


# -- checkpoints ----------------------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer,
                    result: TrainResult, scaler: torch.amp.GradScaler | None = None) -> None:
    """Write model (safetensors), optimizer state and history into a temp folder, then swap it into place.

    Several processes: every rank calls this (an FSDP model's shards are gathered first); rank 0 alone writes, in
    the single-process format, and the others wait for it.
    """
    env = distributed.current()
    whole = distributed.full_state(model, optimizer) if env.active and distributed.is_fsdp(model) else None
    if env.is_main:
        _save_checkpoint(Path(path), model, optimizer, result, scaler, whole)
    distributed.barrier(env)


def _save_checkpoint(path: Path, model, optimizer, result: TrainResult, scaler, whole) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        _write_checkpoint(tmp, model, optimizer, result, scaler, whole)
    except BaseException as e:
        # A full disk (or any failure) leaves the last complete checkpoint in place and frees what was written.
        full = _disk_full(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if full and not (isinstance(e, OSError) and e.errno == errno.ENOSPC):
            # torch.save reports a full disk as a RuntimeError from its zip writer ("unexpected pos ..."): say what
            # it is, so the run ends with the disk-full explanation
            raise OSError(errno.ENOSPC, f"No space left on device while writing the checkpoint ({e})") from e
        raise
    replace_dir(tmp, path)


def _disk_full(path: Path, margin: int = 1 << 20) -> bool:
    try:
        return shutil.disk_usage(path).free < margin
    except OSError:
        return False


def _write_checkpoint(tmp: Path, model, optimizer, result: TrainResult, scaler, whole=None) -> None:
    if whole is not None:  # an FSDP model's gathered tensors; the optimizer state keyed by parameter name
        model_sd, optim_sd = whole
        trainable = _trainable_names(model)
        if trainable is not None:
            model_sd = {k: v for k, v in model_sd.items() if k in trainable}
        aliases = _alias_names(model)
        model_sd = {k: v for k, v in model_sd.items() if k not in aliases}
        save_file({k: v.contiguous() for k, v in _untied(model_sd).items()}, str(tmp / "model.safetensors"))
        torch.save(optim_sd, tmp / "optimizer.pt")
    else:
        partial = _partial_state(model)
        if partial is None:
            save_model(model, str(tmp / "model.safetensors"))
        else:
            save_file(partial, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    atomic_write_json(tmp / "state.json", {
        "optimizer_keys": "names" if whole is not None else "indices",
        "step": result.steps_done, "history": result.history, "evals": result.evals,
        "elapsed_s": result.elapsed_s, "tokens_seen": result.tokens_seen,
        "peak_memory_bytes": result.peak_memory_bytes, "loss_scales": result.loss_scales,
        "skipped_steps": result.skipped_steps,
        "scaler": scaler.state_dict() if scaler is not None else None})


def _load_checkpoint(path: Path, model, optimizer, result: TrainResult, scaler=None) -> None:
    state = read_json(path / "state.json")
    if state is None:
        raise ValueError(f"Checkpoint {path} has no readable state.json; delete it to start over.")
    # weights_only=True: an optimizer state is tensors and numbers; never unpickle arbitrary objects.
    optim_sd = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    by_name = state.get("optimizer_keys") == "names"  # written by an FSDP run
    if distributed.is_fsdp(model):
        saved = load_file(str(path / "model.safetensors"), device="cpu")
        _check_holds(path, model, saved)
        distributed.load_full_state(model, optimizer, saved,
                                    optim_sd if by_name else _optimizer_state_by_name(model, optimizer, optim_sd))
    else:
        device = str(next(model.parameters()).device)
        if _partial_state(model) is None and not by_name:
            load_model(model, str(path / "model.safetensors"), device=device)
        else:
            saved = load_file(str(path / "model.safetensors"), device=device)
            _check_holds(path, model, saved)
            model.load_state_dict(saved, strict=False)
        if by_name:
            distributed.load_full_state(model, optimizer, None, optim_sd)
        else:
            optimizer.load_state_dict(optim_sd)
    result.history = state["history"]
    result.evals = state.get("evals", [])
    result.elapsed_s = state.get("elapsed_s", 0.0)
    result.tokens_seen = state.get("tokens_seen", 0)
    result.peak_memory_bytes = state.get("peak_memory_bytes", 0)
    result.loss_scales = state.get("loss_scales", [])
    result.skipped_steps = state.get("skipped_steps", 0)
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])


def _check_holds(path: Path, model: nn.Module, saved: dict) -> None:
    """A checkpoint must hold every tensor this run trains (a LoRA run's adapters, or the whole model)."""
    wanted = _trainable_names(model)
    aliases: dict[int, list[str]] = {}  # a tied tensor (GPT-2's embedding and head) is saved under one of its names
    for name, p in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(p), []).append(name)
    for names in aliases.values():
        if (wanted is None or any(n in wanted for n in names)) and not any(n in saved for n in names):
            raise ValueError(f"Checkpoint {path} does not hold {names[0]}: it was written by another kind of run. "
                             "Delete the checkpoint to start over.")


def _trainable_names(model: nn.Module) -> set[str] | None:
    """The names a partial (adapter) checkpoint holds; None when the whole model is checkpointed."""
    from .lora import has_lora
    if not (getattr(model, "partial_checkpoint", False) or has_lora(model)):
        return None
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _alias_names(model: nn.Module) -> set[str]:
    """Second names of a tied tensor (a tied head's `lm_head.weight`): FSDP gathers a copy under each name, which
    would store the tensor twice; a single-process checkpoint keeps the first name only, and so does this."""
    first = {name for name, _ in model.named_parameters()}
    return {name for name, _ in model.named_parameters(remove_duplicate=False)} - first


def _untied(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses two names for one storage (GPT-2's tied embedding and head): keep the first name."""
    seen: dict[int, str] = {}
    out = {}
    for name, t in state.items():
        ptr = t.untyped_storage().data_ptr() if t.numel() else id(t)
        if ptr in seen:
            continue
        seen[ptr] = name
        out[name] = t
    return out


def _optimizer_state_by_name(model: nn.Module, optimizer: torch.optim.Optimizer, optim_sd: dict) -> dict:
    """A plain optimizer state (parameters numbered in the optimizer's order) keyed by parameter name instead, as
    FSDP's loader takes it: a single-process checkpoint resumed on several processes."""
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    return {"state": {order[int(i)]: s for i, s in optim_sd["state"].items()},
            "param_groups": [{**g, "params": [order[int(i)] for i in g["params"]]} for g in optim_sd["param_groups"]]}


def _partial_state(model: nn.Module) -> dict[str, torch.Tensor] | None:
    """For adapter training (LoRA on our GPT, or a transformers model through PEFT): the trainable tensors only,
    since the frozen base reloads from its source on resume (and a 4-bit base cannot round-trip through
    safetensors' save_model). None: checkpoint the whole model."""
    from .lora import has_lora
    if not (getattr(model, "partial_checkpoint", False) or has_lora(model)):
        return None
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def checkpoint_step(checkpoint_dir: str | os.PathLike) -> int | None:
    state = read_json(Path(checkpoint_dir) / "last" / "state.json")
    return None if state is None else state.get("step")


# -- devices and memory ---------------------------------------------------------------------------------------
def resolve_device(name: str = "auto") -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device is 'cuda' but this machine has no CUDA GPU; choose 'auto' or 'cpu'.")
    return name


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak CUDA allocation on a GPU; on the CPU the process's resident memory (the best cheap proxy)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        import psutil
        return int(psutil.Process().memory_info().rss)
    except Exception:
        return 0

