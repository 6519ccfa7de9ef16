"""How long a training run will take, said before it starts.

A step's cost is counted in floating-point operations from the model's shapes (`llmfs.architecture`, no weights
loaded): every linear layer does 2 * in * out FLOPs per token forward, attention 2 * 2 * T * width per token per
layer (scores and weighted sum, half of it masked). The backward pass costs about twice the forward when every
weight trains, and about once when only adapters train (the frozen weights still pass gradients down, but need no
weight gradient of their own). Kaplan et al. 2020, sec. 2.1, and the PaLM paper's appendix B count the same way.

Dividing by the speed this machine reaches on one matrix multiplication (measured once, a fraction of a second)
and by an efficiency measured on real runs (`bench/smollm2_cpu.py`, BENCHMARKS.md) gives the estimate. It is a
guess: the UI rounds it ("about 4 min") and says it is an estimate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch

from .architecture import architecture

# FLOP-count time / measured run time on an idle 2-core machine (bench/smollm2_cpu.py, BENCHMARKS.md): llmfs-tiny
# 0.42 (full) / 0.38 (LoRA), smollm2-135m 0.41 / 0.66 / 0.49 (QLoRA). The training loop does more than matmuls
# (softmax, norms, the optimizer, data); QLoRA also unpacks every 4-bit weight at every use. A busy machine is slower
# than this guess: once this machine has run the same model the same way, that run's own speed replaces it.
EFFICIENCY = {"full": 0.4, "lora": 0.5, "qlora": 0.45}
# A run also writes sample texts before and after training (llmfs.recipes: 2 prompts x 48 new tokens, twice), one
# token at a time, which reads every weight per token: smollm2-135m makes about 12 tokens/s on an idle 2-core
# machine, a small share of the matmul speed.
SAMPLE_TOKENS = 2 * 2 * 48
GENERATION_EFFICIENCY = 0.035


# Settings that finish in a few minutes on a laptop CPU, per built-in model (the pages offer them in one click):
# LoRA on the attention projections, short sequences, few steps. llmfs-tiny needs none: its defaults take seconds.
QUICK_CPU: dict[str, dict[str, Any]] = {
    "smollm2-135m": {"steps": 40, "batch_size": 4, "seq_len": 128, "eval_every": 20, "eval_batches": 2,
                     "warmup_steps": 4, "lr": 2e-4, "lora_rank": 8},
}


# Seconds per million parameters for the lessons' one-off actions on the 2-core CPU this lab is sized for, from
# smollm2-135m (134.5M parameters) on a shared machine, rounded up (BENCHMARKS.md: 12-13.5 generated tokens/s on a
# quiet one): a model below BIG parameters does each of them in a second or two.
BIG = 20_000_000
ACTION_SECONDS_PER_M = {"load": 0.04, "parity": 0.1, "token": 0.0008, "random": 0.04, "swap": 0.06}


def action_seconds(what: str, params: int, count: int = 1) -> float:
    """Rough wall seconds for `what` ("load", "parity", "token" per generated token, "random" weights drawn,
    "swap" of a tokenizer) on a model of `params` parameters, `count` times."""
    return ACTION_SECONDS_PER_M[what] * params / 1e6 * count


@dataclass(frozen=True)
class TimeEstimate:
    seconds: float
    seconds_per_step: float
    steps: int
    flops_per_step: float
    device: str
    basis: str          # one plain sentence: what the estimate rests on


_RATES: dict[str, tuple[float, float]] = {}   # device -> (measured at, FLOP/s)
RATE_TTL_S = 300.0


def matmul_rate(device: str = "cpu") -> float:
    """FLOP/s this machine reaches now on a training-sized fp32 matrix multiplication, measured in 0.15 s and
    kept for five minutes: a server busy with other runs is slower for the next run too, and faster once idle."""
    now = time.monotonic()
    if device in _RATES and now - _RATES[device][0] < RATE_TTL_S:
        return _RATES[device][1]
    rate = _measure(device)
    _RATES[device] = (now, rate)
    return rate


def _measure(device: str) -> float:
    dev = torch.device(device)
    a = torch.randn(512, 576, device=dev)
    b = torch.randn(576, 1536, device=dev)
    flops = 2 * a.shape[0] * a.shape[1] * b.shape[1]
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.05:  # warm up: the thread pool and the clock speed come up first
        a @ b
    best = 0.0
    for _ in range(3):   # the best of three short windows: one slice of a busy second says little
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 0.05:
            a @ b
            done += 1
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, done * flops / (time.perf_counter() - t0))
    return best


def forward_flops_per_token(config: Any, seq_len: int) -> float:
    """Forward FLOPs per token: every linear layer (the head included) plus causal attention at `seq_len`."""
    arch = architecture(config)
    linear = sum(2 * i * o for _, i, o in arch.linears)
    width = _attention_width(arch)
    return linear + 2 * arch.n_layer * seq_len * width  # QK^T and AV, 2 FLOPs each per pair, half masked


def _attention_width(arch: Any) -> int:
    q = [o for name, _, o in arch.linears if name.endswith(("q_proj", "c_attn", "query_key_value"))]
    if not q or not arch.n_layer:
        return 0
    first = q[0]
    # GPT-2's c_attn outputs q, k and v together: the query part is a third.
    return first // 3 if any(name.endswith(("c_attn", "query_key_value")) for name, _, _ in arch.linears) else first


def mode_of(cfg: Any) -> str:
    if getattr(cfg, "lora_rank", 0):
        return "qlora" if getattr(cfg, "quantize", "none") == "4bit" else "lora"
    return "full"


def estimate_train(cfg: Any, config: Any, device: str = "cpu", rate: float | None = None,
                   observed_tokens_per_s: float | None = None) -> TimeEstimate:
    """The expected wall time of training run `cfg` on a model of shape `config` (a GPTConfig, a config.json dict
    or a model folder), on `device`: the steps, plus the held-out evaluations along the way. With
    `observed_tokens_per_s` (an earlier run of the same model, the same way, on this machine: `observed_speed`),
    the steps take that run's speed instead of the FLOP-count guess.

    Raises:
        ValueError: a config `llmfs.architecture` cannot read.
    """
    mode = mode_of(cfg)
    tokens = cfg.batch_size * cfg.seq_len * max(1, cfg.grad_accum)
    forward = forward_flops_per_token(config, cfg.seq_len) * tokens
    per_step = forward * (3.0 if mode == "full" else 2.0)
    steps = int(cfg.steps)
    evals = (steps // cfg.eval_every if cfg.eval_every else 0) + 1
    eval_flops = evals * cfg.eval_batches * cfg.batch_size * cfg.seq_len * forward_flops_per_token(config, cfg.seq_len)
    rate = rate or matmul_rate(device)
    seconds_per_step = per_step / (rate * EFFICIENCY[mode])
    eval_seconds = eval_flops / (rate * EFFICIENCY[mode])
    label = mode.replace("qlora", "QLoRA").replace("lora", "LoRA")
    basis = (f"{per_step / 1e9:,.1f} GFLOP per step ({label}) on a {device.upper()} that multiplies matrices at "
             f"{rate / 1e9:,.0f} GFLOP/s now, at the efficiency measured on earlier runs")
    if observed_tokens_per_s:
        seconds_per_step = tokens / observed_tokens_per_s
        eval_seconds /= 3.0  # a forward pass: about a third of a training step's work
        basis = f"the speed of your last {label} run of this model here ({observed_tokens_per_s:,.0f} tokens/s)"
    samples = SAMPLE_TOKENS * forward_flops_per_token(config, 64) / (rate * GENERATION_EFFICIENCY)
    return TimeEstimate(steps * seconds_per_step + eval_seconds + samples, seconds_per_step, steps, per_step,
                        device, basis)


def observed_speed(runs: Any, cfg: Any, device: str) -> float | None:
    """Training tokens/s of the newest finished run (of `runs`, newest first) that trained the same model the same
    way (full / LoRA / QLoRA, one process) on the same kind of device; None when there is none."""
    for run in runs:
        try:
            if run.kind != "train":
                continue
            status, config = run.status(), run.config()
        except (OSError, ValueError):
            continue
        result = status.get("result") or {}
        speed = result.get("tokens_per_s")
        if (status.get("state") == "succeeded" and speed and config.get("model") == cfg.model
                and mode_of(SimpleNamespace(**config)) == mode_of(cfg) and int(config.get("processes") or 1) <= 1
                and config.get("device", "auto") in ("auto", device)):
            return float(speed)
    return None
