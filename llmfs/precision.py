"""Mixed precision (L16): which number format each part of training uses, what the hardware allows, the gradient
scaler's bookkeeping, and a small explorer of fp32 / fp16 / bf16. Memory per mode is `llmfs.memory.estimate`'s
(`precision=`), which reads the dtypes from `plan_precision`.

Modes (Micikevicius et al. 2018, "Mixed Precision Training"; PyTorch's AMP):
- `fp32`: everything in 32-bit floats.
- `fp16`: fp32 weights, optimizer and gradients; matmuls and most activations in fp16 under `torch.autocast`;
  the loss multiplied by a large scale before backward so small gradients do not underflow to zero in fp16, the
  gradients divided back before the update, and steps with inf / NaN gradients skipped (`torch.amp.GradScaler`).
- `bf16`: as fp16 but bfloat16, whose exponent range is fp32's: no scaler needed, fewer mantissa bits.
- `bf16-pure`: weights, gradients and optimizer states themselves in bf16: half the memory of everything, but
  updates smaller than a weight's rounding step are lost (why AMP keeps fp32 master weights).
- `tf32` (a switch, CUDA compute capability >= 8.0): fp32 matmuls on tensor cores with a 10-bit mantissa.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterator, Literal

import torch

from .errors import PrecisionError

Precision = Literal["fp32", "fp16", "bf16", "bf16-pure"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "bf16-pure")
MODE_HELP = {
    "fp32": "32-bit floats everywhere: the reference, the most memory, the slowest on GPUs.",
    "fp16": "Matmuls in 16-bit (fp16) under autocast, weights and optimizer in fp32, the loss scaled so that small "
            "gradients survive fp16's narrow range.",
    "bf16": "Matmuls in bfloat16 under autocast: fp32's range with fewer digits, so no loss scaling is needed.",
    "bf16-pure": "Weights, gradients and optimizer states themselves in bfloat16: half the memory of everything, "
                 "at the cost of updates too small to change a 16-bit weight being lost.",
}
BF16_MIN_CAPABILITY = (8, 0)  # Ampere (A100, RTX 30xx) and newer have bf16 tensor cores
TF32_MIN_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class PrecisionPlan:
    """How a run computes, resolved for one device."""

    mode: str
    device_type: str                    # "cpu" or "cuda"
    autocast_dtype: torch.dtype | None  # None: no autocast
    param_dtype: torch.dtype            # the weights' (and gradients', optimizer states') dtype
    use_scaler: bool                    # fp16: torch.amp.GradScaler
    tf32: bool
    warnings: tuple[str, ...] = ()

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype matmuls run in (what a 4-bit base dequantizes to)."""
        return self.autocast_dtype or self.param_dtype


def device_capability(device_type: str) -> tuple[int, int] | None:
    if device_type != "cuda" or not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability())  # type: ignore[return-value]


def plan_precision(mode: str, device: str | torch.device = "cpu", *, tf32: bool = False,
                   capability: tuple[int, int] | None = None, grad_scaling: bool = True) -> PrecisionPlan:
    """Resolve `mode` for `device`, refusing what the hardware cannot do and warning where it is slow.

    Args:
        capability: the GPU's compute capability (default: asked from CUDA); pass one to check another GPU.
        grad_scaling: fp16 only; False turns the loss scaler off (for the demonstration of why it exists).
    Raises:
        PrecisionError: bf16 (or tf32) on a GPU older than compute capability 8.0; an unknown mode.
    """
    if mode not in PRECISIONS:
        raise PrecisionError(f"Unknown precision {mode!r}; choose one of {', '.join(PRECISIONS)}.")
    device_type = torch.device(device).type
    notes: list[str] = []
    if device_type == "cuda":
        capability = capability or device_capability("cuda")
        if mode.startswith("bf16") and capability is not None and tuple(capability) < BF16_MIN_CAPABILITY:
            raise PrecisionError(
                f"This GPU (compute capability {capability[0]}.{capability[1]}) has no bfloat16 tensor cores: bf16 "
                "needs compute capability 8.0 or newer (A100, RTX 30xx, H100 ...). Use fp16 with loss scaling "
                "instead, which this GPU runs fast.")
        if tf32 and capability is not None and tuple(capability) < TF32_MIN_CAPABILITY:
            raise PrecisionError(f"TF32 needs compute capability 8.0 or newer; this GPU is {capability[0]}."
                                 f"{capability[1]}. Turn TF32 off (fp16 autocast is the fast path here).")
    else:
        if mode == "fp16":
            notes.append("fp16 on a CPU is emulated by most processors, so it is usually slower than fp32 here: "
                         "the loss scaler and the memory figures still show what happens on a GPU.")
        if tf32:
            notes.append("TF32 is a GPU tensor-core format; on the CPU it has no effect.")
            tf32 = False
    if mode == "fp16" and not grad_scaling:
        notes.append("Loss scaling is off: gradients smaller than about 6e-8 become zero in fp16 and are lost.")
    autocast = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mode)
    param = torch.bfloat16 if mode == "bf16-pure" else torch.float32
    return PrecisionPlan(mode=mode, device_type=device_type, autocast_dtype=autocast, param_dtype=param,
                         use_scaler=mode == "fp16" and grad_scaling, tf32=tf32, warnings=tuple(notes))


@contextlib.contextmanager
def autocast(plan: PrecisionPlan) -> Iterator[None]:
    """torch.autocast for fp16 / bf16 modes; nothing for fp32 and bf16-pure (the weights are already bf16)."""
    if plan.autocast_dtype is None:
        yield
        return
    with torch.autocast(device_type=plan.device_type, dtype=plan.autocast_dtype):
        yield


@contextlib.contextmanager
def matmul_precision(plan: PrecisionPlan) -> Iterator[None]:
    """TF32 for the duration of a run, then back to what it was (it is process-wide state)."""
    if not plan.tf32:
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def make_scaler(plan: PrecisionPlan, init_scale: float = 2.0**16) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 (PyTorch's defaults: start at 2^16, halve on inf / NaN, double after 2000 good steps)."""
    if not plan.use_scaler:
        return None
    return torch.amp.GradScaler(plan.device_type, init_scale=init_scale)


FP16_SMALLEST = 2.0**-24  # fp16's smallest subnormal: a smaller magnitude rounds to zero


@torch.no_grad()
def underflow_fraction(params) -> float:
    """Share of (nonzero) gradient entries whose true magnitude is below fp16's smallest subnormal: the ones an
    unscaled fp16 backward would turn into zeros. Read on the unscaled fp32 gradients."""
    small = total = 0
    for p in params:
        if p.grad is None:
            continue
        g = p.grad.detach().abs()
        nonzero = g > 0
        small += int((nonzero & (g < FP16_SMALLEST)).sum())
        total += int(nonzero.sum())
    return small / total if total else 0.0


# -- the number-format explorer ----------------------------------------------------------------------------------
FORMATS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_BITS = {"fp32": (1, 8, 23), "fp16": (1, 5, 10), "bf16": (1, 8, 7)}


def format_table() -> list[dict]:
    """Per format: sign / exponent / mantissa bits, largest value, smallest normal and subnormal, machine epsilon
    (the gap after 1.0), and decimal digits of precision, from torch.finfo."""
    rows = []
    for name, dtype in FORMATS.items():
        fi = torch.finfo(dtype)
        sign, exp, mant = _BITS[name]
        rows.append({"format": name, "bits": fi.bits, "sign_bits": sign, "exponent_bits": exp, "mantissa_bits": mant,
                     "max": float(fi.max), "smallest_normal": float(fi.smallest_normal),
                     "smallest_subnormal": float(2.0 ** (math.log2(fi.smallest_normal) - mant)),
                     "epsilon": float(fi.eps), "decimal_digits": round(math.log10(2 ** (mant + 1)), 1)})
    return rows


def represent(values: list[float]) -> list[dict]:
    """How each value survives a round trip through fp32, fp16 and bf16: the stored value, the relative error,
    and what happened ("exact", "rounded", "subnormal" (reduced precision), "underflow to 0", "overflow to inf")."""
    rows = []
    for v in values:
        row: dict[str, Any] = {"value": v}
        for name, dtype in FORMATS.items():
            stored = float(torch.tensor(v, dtype=torch.float64).to(dtype).to(torch.float64))
            fi = torch.finfo(dtype)
            if math.isinf(stored) and not math.isinf(v):
                status = "overflow to inf"
            elif stored == 0.0 and v != 0.0:
                status = "underflow to 0"
            elif stored == v:
                status = "exact"
            elif 0 < abs(stored) < fi.smallest_normal:
                status = "subnormal"
            else:
                status = "rounded"
            rel = abs(stored - v) / abs(v) if v not in (0.0,) and math.isfinite(stored) else (0.0 if v == 0 else None)
            row[name] = stored
            row[f"{name}_status"] = status
            row[f"{name}_rel_error"] = rel
        rows.append(row)
    return rows


# -- the scaler demonstration -------------------------------------------------------------------------------------
def underflow_demo(model: torch.nn.Module, ids: torch.Tensor, *, loss_factor: float = 2.0**-14,
                   scale: float = 2.0**16) -> list[dict]:
    """Why fp16 needs loss scaling, measured: gradients of one batch computed in fp32, then with fp16 autocast
    without and with a loss scale, compared entry by entry.

    `loss_factor` shrinks the loss (and so every gradient) the way a small learning signal late in training does;
    small gradients are the ones fp16 loses. Runs on a copy of `model` on the CPU. Returns one row per variant:
    variant, zero_fraction (entries that are zero although the fp32 gradient is not), rel_error (of the gradient
    vector against fp32), grad_norm.
    """
    import copy
    work = copy.deepcopy(model).float().train()
    params = [p for p in work.parameters() if p.requires_grad]

    def grads(dtype: torch.dtype | None, loss_scale: float) -> torch.Tensor:
        work.zero_grad(set_to_none=True)
        ctx = torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with ctx:
            _, loss = work(ids[:, :-1], ids[:, 1:])
            loss = loss * loss_factor
            if dtype is torch.float16:
                # the backward pass of an fp16 model carries fp16 values: round the seed gradient the same way
                loss = loss.half().float()
        (loss * loss_scale).backward()
        return torch.cat([(p.grad.detach().float() / loss_scale).flatten() for p in params if p.grad is not None])

    def scaled() -> tuple[torch.Tensor, float]:
        # what GradScaler does over steps, in one go: start high, halve while the scaled gradients overflow
        s = scale
        while s >= 1.0:
            g = grads(torch.float16, s)
            if torch.isfinite(g).all():
                return g, s
            s /= 2
        return grads(torch.float16, 1.0), 1.0

    ref = grads(None, 1.0)
    rows = []
    for variant in ("fp32", "fp16, no loss scaling", "fp16 with loss scaling"):
        used = 1.0
        if variant == "fp32":
            g = ref
        elif variant == "fp16, no loss scaling":
            g = grads(torch.float16, 1.0)
        else:
            g, used = scaled()
        lost = ((g == 0) & (ref != 0)).sum().item() / max(int((ref != 0).sum()), 1)
        rel = float((g - ref).norm() / ref.norm()) if ref.norm() > 0 else 0.0
        rows.append({"variant": variant, "loss_scale": used, "zero_fraction": lost, "rel_error": rel,
                     "grad_norm": float(g.norm())})
    return rows


# -- comparing modes ---------------------------------------------------------------------------------------------
def peak_nvml_bytes(telemetry: list[dict]) -> int | None:
    """The largest GPU memory NVML reported while a run trained (what nvidia-smi shows: allocator cache and CUDA
    context included); None without a GPU."""
    values = [t["gpu_memory_used_bytes"] for t in telemetry if t.get("gpu_memory_used_bytes")]
    return max(values) if values else None


def summarize(runs: list[dict]) -> list[dict]:
    """The comparison table: one row per run, with speed-up, memory ratio and tensor-memory ratio against the fp32
    run (if any) and the final-loss difference from it.

    Args:
        runs: dicts with `precision`, `tokens_per_s`, `peak_memory_bytes`, `final_loss`, and optionally
            `skipped_steps`, `peak_nvml_bytes`, `tensor_bytes` (the most the run's tensors held, as
            `llmfs.train` counts them), `run_id`, `state`.
    """
    ref = next((r for r in runs if r.get("precision") == "fp32" and r.get("tokens_per_s")), None)
    rows = []
    for r in runs:
        row = {k: r.get(k) for k in ("run_id", "state", "precision", "tokens_per_s", "peak_memory_bytes",
                                     "peak_nvml_bytes", "tensor_bytes", "final_loss", "skipped_steps")}
        if ref is not None and r.get("tokens_per_s"):
            row["speedup"] = r["tokens_per_s"] / ref["tokens_per_s"]
            for field, ratio in (("peak_memory_bytes", "memory_ratio"), ("tensor_bytes", "tensor_ratio")):
                if r.get(field) and ref.get(field):
                    row[ratio] = r[field] / ref[field]
            if r.get("final_loss") is not None and ref.get("final_loss") is not None:
                row["loss_diff"] = r["final_loss"] - ref["final_loss"]
        rows.append(row)
    return rows
