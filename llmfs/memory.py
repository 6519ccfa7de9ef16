"""The one memory estimate: weights, gradients, optimizer states and activations of a fine-tuning run, per precision
mode (fp32, fp16, bf16, bf16-pure) and method (full fine-tune, a freezing strategy, LoRA, QLoRA), before anything
is loaded.

The model's shapes come from its config alone (`llmfs.architecture`: our `GPTConfig` or `LlamaConfig`, or any
Hugging Face causal-LM config.json, built on the meta device, nothing downloaded), so the same arithmetic covers the
lab's GPT-2, smollm2-135m and "what would a 7B model need?": about 13.5 GB of 16-bit weights for Llama-2-7B, under
4 GB once QLoRA stores them in 4 bits.

Every part is counted the way `llmfs.train` keeps it (bytes; GB = 10^9 bytes, the unit model cards use):
- fp32 and AMP (fp16 / bf16 autocast): fp32 weights, fp32 gradients, fp32 AdamW states (4 + 4 + 8 bytes per
  trained parameter); autocast's 16-bit copies live only during the step and are counted with the activations.
- bf16-pure: the model itself in bf16, so gradients and AdamW states too (2 + 2 + 4 bytes per trained parameter).
- LoRA / QLoRA: the base frozen (no gradients, no states); adapters in the weights' dtype; QLoRA's linear layers
  in 4-bit NF4 with their quantization constants.
- activations: for the models we train ourselves (our GPT: gpt2 configs; our Llama: llama and qwen2 configs, as
  `llmfs.builders` trains them), op by op as autograd saves them (`llmfs.activations`), which also follows what a
  freezing strategy or LoRA leaves without gradient; for other architectures (trained through transformers) the
  published per-layer formula (Korthikanti et al. 2022).
`llmfs.tensor_memory` measures the same four parts on a real run; tests/test_memory_measured.py holds this estimate
to within 10% of them. Not counted: the CUDA context (~0.3-0.5 GB), allocator fragmentation, temporary buffers,
the data batch itself. Real runs therefore need some headroom above `total_bytes`.

References:
- Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models", sec. 3.1
  (Adam's two states per parameter; mixed precision as ZeRO counts it keeps 16-bit weights and an fp32 master
  copy, 16 bytes per parameter, where PyTorch's AMP keeps fp32 weights and casts per step, 16 bytes too).
- Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", sec. 4.1 (r * (in + out) per layer).
- Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs", sec. 2 (NF4, blocksize 64, double
  quantization of the absmax constants).
- Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", sec. 4.1 and table 2.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from . import architecture as _architecture
from .activations import saved_bytes
from .architecture import Architecture
from .config import TrainConfig
from .freeze import FreezePlan, freeze_options, plan_freeze
from .llama import MODEL_TYPES as LLAMA_TYPES
from .llama import LlamaConfig
from .lora import matches, target_modules
from .model import GPTConfig
from .precision import PRECISIONS, plan_precision

METHODS = ("full", "lora", "qlora")
OPTIMIZER_STATES = {"adamw": 2, "adam": 2, "sgd_momentum": 1, "sgd": 0}  # tensors kept per trained weight
NF4_BLOCKSIZE = 64  # weights per quantization block (QLoRA sec. 2)
DQ_BLOCKSIZE = 256  # absmax constants per second-level block under double quantization (QLoRA sec. 2)
# Per 4-bit tensor, bitsandbytes also keeps the NF4 code (16 fp32 values) and, with double quantization, the
# 8-bit code of the absmax constants (256 fp32) and their offset (one fp32).
NF4_TABLE_BYTES = 16 * 4
DQ_TABLE_BYTES = 256 * 4 + 4

PART_LABELS = {"weights_bytes": "Weights", "gradients_bytes": "Gradients", "optimizer_bytes": "Optimizer states",
               "activations_bytes": "Activations"}


# -- results -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """Bytes one fine-tuning run needs on the accelerator, per part; `notes` spells out the assumptions."""

    method: str
    precision: str
    weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    total_bytes: int
    trainable_params: int
    total_params: int
    """Every parameter the training model holds: the base model's, plus the adapters' for LoRA / QLoRA (PEFT's
    `get_nb_trainable_parameters()[1]`)."""
    freeze: str | None = None
    """The freezing strategy of a full fine-tune (None: everything trains)."""
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["notes"] = list(self.notes)
        return d

    def parts(self) -> list[tuple[str, int]]:
        """(label, bytes) for each stacked-bar segment, in the order they stack."""
        return [(label, getattr(self, field)) for field, label in PART_LABELS.items()]


# -- the model's shapes ---------------------------------------------------------------------------------------------
config_of = _architecture.config_of  # our API: what the estimate can read for a model source


def _readable(config: Any) -> Any:
    """What `llmfs.architecture` reads: our Llama's config as its config.json (the same names, shapes and count)."""
    return config.to_hf_dict() if isinstance(config, LlamaConfig) else config


def architecture(config: Any) -> Architecture:
    """`llmfs.architecture.architecture`, also for our `LlamaConfig` (a loaded Llama's `model.config`)."""
    return _architecture.architecture(_readable(config))


def param_count(config: Any) -> int:
    """Parameters of the model `config` describes (a tied embedding / head once); `architecture`'s configs."""
    return architecture(config).total_params


def linear_shapes(config: Any) -> list[tuple[str, int, int]]:
    """(module name, in_features, out_features) of every linear layer, the head included."""
    return list(architecture(config).linears)


def our_config(config: Any, arch: Architecture | None = None) -> GPTConfig | LlamaConfig | None:
    """The config of our own model that trains what `config` describes: our GPT's for gpt2, our Llama's for llama
    and qwen2 (`llmfs.builders` trains those folders on them); None for other architectures, and for a Llama
    variant our Llama does not implement (those train through transformers)."""
    arch = arch or architecture(config)
    if arch.gpt is not None:
        return arch.gpt
    if isinstance(config, LlamaConfig):
        return config
    if arch.model_type not in LLAMA_TYPES:
        return None
    try:
        return LlamaConfig.from_hf(_architecture._load(config))  # the dict architecture() read the shapes from
    except ValueError:
        return None


# -- the arithmetic ------------------------------------------------------------------------------------------------
def quantized_bytes(n_params: int, double_quant: bool = True, layers: int = 0) -> int:
    """Bytes of `n_params` weights in 4-bit NF4 with their quantization constants (Dettmers et al. 2023, sec. 2),
    spread over `layers` tensors.

    Two weights per byte, plus one absmax per block of 64 weights: an fp32 (4/64 byte per weight), or with double
    quantization an 8-bit one plus an fp32 per 256 blocks (1/64 + 4/(64 * 256) byte per weight); plus each
    tensor's code tables (`NF4_TABLE_BYTES`, and `DQ_TABLE_BYTES` with double quantization). bitsandbytes stores
    exactly this for tensors whose size is a multiple of 64 * 256.
    """
    blocks = n_params / NF4_BLOCKSIZE
    constants = blocks * 1 + blocks / DQ_BLOCKSIZE * 4 if double_quant else blocks * 4
    tables = layers * (NF4_TABLE_BYTES + (DQ_TABLE_BYTES if double_quant else 0))
    return round(n_params / 2 + constants) + tables


def lora_params(arch: Architecture, rank: int, suffixes: list[str]) -> int:
    """r * (in + out) for each linear layer a target suffix matches (Hu et al. 2021, sec. 4.1)."""
    return sum(rank * (i + o) for name, i, o in arch.linears if matches(name, suffixes))


def activation_bytes(arch: Architecture, batch_size: int, seq_len: int, value_bytes: int = 2) -> int:
    """Korthikanti et al. 2022's count of what a GPT layer keeps for backward, for architectures other than ours.

    Per layer s*b*h*(34 + 5*a*s/h) bytes with 16-bit values (table 2, no recomputation: attention scores a*s^2 per
    sequence, a 4h MLP, 1-byte dropout masks), scaled by value_bytes / 2; plus the logits: b*s*V fp32 values and
    their gradient. Fused attention (SDPA, FlashAttention) skips the s x s scores, so real use is often lower.
    """
    s, b, h, a, n = seq_len, batch_size, arch.hidden_size, arch.n_head, arch.n_layer
    per_layer = s * b * (34 * h + 5 * a * s)  # s*b*h*(34 + 5as/h), kept in integers
    return n * per_layer * value_bytes // 2 + b * s * arch.vocab_size * 4 * 2


@dataclass(frozen=True)
class _Bytes:
    """Bytes per element in one precision mode, as `llmfs.precision.plan_precision` sets the run up."""

    param: int      # weights, gradients, optimizer states
    compute: int    # what matmuls produce (and what a 4-bit layer dequantizes to)
    autocast: bool


def _bytes_of(precision: str) -> _Bytes:
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    plan = plan_precision(precision, "cpu")
    return _Bytes(plan.param_dtype.itemsize, plan.compute_dtype.itemsize, plan.autocast_dtype is not None)


def _check(method: str, optimizer: str, sizes: dict[str, Any]) -> None:
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if optimizer not in OPTIMIZER_STATES:
        raise ValueError(f"Unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZER_STATES)}.")
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1 (got {value!r}).")


def _freeze_plan(arch: Architecture, ours: GPTConfig | LlamaConfig | None,
                 freeze: FreezePlan | str | None) -> FreezePlan | None:
    if freeze is None or isinstance(freeze, FreezePlan):
        return freeze
    if ours is None:
        raise ValueError(f"Freezing strategies know the layers of our GPT-2 and Llama only; this is a "
                         f"{arch.model_type} model.")
    return plan_freeze(ours, freeze)


def estimate(config: Any, method: str = "full", *, precision: str = "fp32", freeze: FreezePlan | str | None = None,
             rank: int = 8, targets: Any = "qkv", batch_size: int = 1, seq_len: int = 512, optimizer: str = "adamw",
             double_quant: bool = True) -> Estimate:
    """Bytes a fine-tuning run needs, per part, before it starts.

    Rules (p = bytes per weight: 2 under bf16-pure, else 4; c = bytes the matmuls compute in: 2 under fp16, bf16
    and bf16-pure, else 4; AdamW keeps 2 states per trained weight in the weight's dtype):
    - full: every weight at p; gradients and optimizer states for the trained ones (all, or what `freeze` trains;
      for gradual unfreezing, everything it ever trains: the run's peak).
    - lora: the frozen base and the adapters (r*(in + out) per targeted linear layer, Hu et al. 2021) at p;
      gradients and states for the adapters only.
    - qlora: every linear layer but the head in 4-bit NF4 (`quantized_bytes`; Dettmers et al. 2023, sec. 2), their
      biases at c, everything else and the adapters at p; gradients and states for the adapters only. With
      bf16-pure this is a what-if (the training form pairs a 4-bit base with bf16 autocast).
    - activations: `llmfs.activations.saved_bytes` for our GPT and Llama (gpt2, llama and qwen2 configs);
      `activation_bytes` for other architectures.
    total = weights + gradients + optimizer + activations.

    Args:
        config: anything `architecture` accepts (GPTConfig, LlamaConfig, config.json dict / text / path).
        precision: a mode of `llmfs.precision.PRECISIONS`.
        freeze: full fine-tune only: a `llmfs.freeze.FreezePlan` or a strategy name (its default settings).
        targets: the lesson's layer names ("qkv,attn_proj", "all-linear", ...) or module-name suffixes, mapped
            to the model's names by `llmfs.lora.target_modules`; used by lora and qlora.
        batch_size: sequences per micro-batch (what one forward pass holds).
    Raises:
        ValueError: an unreadable config, an unknown method / precision / optimizer, a non-positive size, targets
            that name no linear layer of the model, or a freezing strategy on a model neither our GPT-2 nor
            our Llama trains.
    """
    _check(method, optimizer, {"rank": rank, "batch_size": batch_size, "seq_len": seq_len})
    b = _bytes_of(precision)
    arch = architecture(config)
    ours = our_config(config, arch)
    run = (_full(arch, ours, freeze, b) if method == "full"
           else _adapters(arch, method, rank, targets, double_quant, b))
    acts, note = _activations(arch, ours, run, batch_size, seq_len, b, quantized=method == "qlora")
    notes = [_precision_note(precision, b), *run.notes, note]
    if arch.max_positions is not None and seq_len > arch.max_positions:
        notes.append(f"seq_len {seq_len} is longer than the model's context ({arch.max_positions} positions).")
    notes.append("Not counted: the CUDA context (~0.3-0.5 GB), allocator fragmentation and temporary buffers.")
    grads = run.trainable * b.param
    optim = run.trainable * OPTIMIZER_STATES[optimizer] * b.param
    return Estimate(method=method, precision=precision, weights_bytes=run.weights, gradients_bytes=grads,
                    optimizer_bytes=optim, activations_bytes=acts, total_bytes=run.weights + grads + optim + acts,
                    trainable_params=run.trainable, total_params=run.total,
                    freeze=run.plan.strategy if run.plan else None, notes=tuple(notes))


@dataclass(frozen=True)
class _Trains:
    """What a method keeps and trains: counts, the weights' bytes, and for the activation walk which parameters
    get gradients and which layers carry adapters."""

    trainable: int
    total: int
    weights: int
    trains: Callable[[str], bool]
    lora: dict[str, int]
    plan: FreezePlan | None = None
    notes: tuple[str, ...] = ()


def _full(arch: Architecture, ours: GPTConfig | LlamaConfig | None, freeze: FreezePlan | str | None,
          b: _Bytes) -> _Trains:
    plan = _freeze_plan(arch, ours, freeze)
    if plan is None:
        return _Trains(arch.total_params, arch.total_params, arch.total_params * b.param, lambda name: True, {})
    rows = {r.name: r.trainable for r in plan.rows}
    note = (f"Freezing strategy {plan.strategy}: {plan.trainable_params:,} of {plan.total_params:,} parameters train"
            + (" (at the end of the run, once all are unfrozen)" if plan.schedule else "")
            + "; frozen ones have no gradients or optimizer states.")
    return _Trains(plan.trainable_params, plan.total_params, plan.total_params * b.param,
                   lambda name: rows.get(name, False), {}, plan, (note,))


def _adapters(arch: Architecture, method: str, rank: int, targets: Any, double_quant: bool, b: _Bytes) -> _Trains:
    suffixes = target_modules(targets, arch.model_type)
    trainable = lora_params(arch, rank, suffixes)
    if trainable == 0:
        raise ValueError(f"The targets {', '.join(suffixes)} match no linear layer of this {arch.model_type} "
                         "model; pick other layers (module names are in the model's printout).")
    notes = [f"{trainable:,} adapter parameters (rank {rank} on {', '.join(suffixes)}) train; the base model is "
             "frozen: no gradients or optimizer states for it."]
    total = arch.total_params + trainable
    weights = total * b.param
    if method == "qlora":
        rest = arch.total_params - arch.quantized_params - arch.quantized_bias_params
        weights = (quantized_bytes(arch.quantized_params, double_quant, arch.quantized_layers)
                   + arch.quantized_bias_params * b.compute + (rest + trainable) * b.param)
        notes.insert(0, f"{arch.quantized_layers} linear layers ({arch.quantized_params:,} weights) in 4-bit NF4"
                        f"{' with double quantization' if double_quant else ''}; the other {rest:,} parameters "
                        f"(embeddings, norms, head) {_dtype_words(b.param)}.")
    lora = {name: rank for name, _, _ in arch.linears if matches(name, suffixes)}
    return _Trains(trainable, total, weights, lambda name: False, lora, notes=tuple(notes))  # the base is frozen


def _activations(arch: Architecture, ours: GPTConfig | LlamaConfig | None, run: _Trains, batch_size: int,
                 seq_len: int, b: _Bytes, quantized: bool) -> tuple[int, str]:
    """Bytes the forward pass keeps for backward, and a note saying how they were counted."""
    if ours is None:
        return (activation_bytes(arch, batch_size, seq_len, b.compute),
                "Activations follow Korthikanti et al. 2022 (table 2); fused attention kernels (FlashAttention, SDPA) "
                "skip storing the s x s attention scores, so real use is often lower.")
    acts = saved_bytes(ours, batch_size=batch_size, seq_len=seq_len, param_bytes=b.param, compute_bytes=b.compute,
                       autocast=b.autocast, trains=run.trains, lora=run.lora, quantized=quantized)
    return acts, ("Activations: what each operation of the forward pass keeps for backward (llmfs.activations)"
                  + (", autocast's 16-bit copies of inputs and weights included." if b.autocast else "."))


def _dtype_words(nbytes: int) -> str:
    return "in bf16" if nbytes == 2 else "in fp32"


def _precision_note(precision: str, b: _Bytes) -> str:
    if precision == "bf16-pure":
        return ("bf16-pure: weights, gradients and AdamW states all in bf16 (2 + 2 + 4 bytes per trained "
                "parameter).")
    if b.autocast:
        return (f"{precision} autocast: weights, gradients and AdamW states stay fp32 (4 + 4 + 8 bytes per trained "
                "parameter); the 16-bit copies the matmuls use are activations.")
    return "fp32: 4 bytes per weight and per gradient, 8 for AdamW's two states."


def run_settings(config: Any, cfg: TrainConfig) -> tuple[str, dict[str, Any]]:
    """The method and `estimate` keyword arguments of the run a TrainConfig describes: its method (full with its
    freezing strategy, LoRA or QLoRA), precision, rank, targets, batch, sequence length and double quantization."""
    method = "qlora" if cfg.quantize == "4bit" else "lora" if cfg.lora else "full"
    ours = our_config(config)
    plan = None
    if method == "full" and cfg.freeze != "full" and ours is not None:
        plan = plan_freeze(ours, **freeze_options(cfg))
    return method, dict(precision=cfg.precision, freeze=plan, rank=max(cfg.lora_rank, 1), targets=cfg.lora_targets,
                        batch_size=cfg.batch_size, seq_len=cfg.seq_len, double_quant=cfg.double_quant)


def estimate_run(config: Any, cfg: TrainConfig, *, precision: str | None = None) -> Estimate:
    """`estimate` for the run a TrainConfig describes: its method (full with its freezing strategy, LoRA or QLoRA),
    precision (or `precision`), batch and sequence length. A freezing strategy applies to our GPT and Llama only
    (another architecture's full fine-tune trains everything, as `llmfs.recipes` runs it). The run records this
    estimate and the L15 page shows the same one before it starts (`compare_run`)."""
    method, settings = run_settings(config, cfg)
    return estimate(config, method, **{**settings, "precision": precision or cfg.precision})


def compare_run(config: Any, cfg: TrainConfig) -> dict[str, Estimate]:
    """full, lora and qlora for the settings of `cfg` (its precision, rank, targets, batch, sequence length, double
    quantization); the entry of `cfg`'s own method is exactly `estimate_run(config, cfg)`."""
    method, settings = run_settings(config, cfg)
    out = {}
    for m in METHODS:
        kwargs = settings if m == method else {**settings, "freeze": None}
        out[m] = estimate(config, m, **kwargs)
    return out


def compare(config: Any, *, precision: str = "fp32", rank: int = 8, targets: Any = "qkv", batch_size: int = 1,
            seq_len: int = 512, optimizer: str = "adamw", double_quant: bool = True) -> dict[str, Estimate]:
    """`estimate` for full, lora and qlora with the same settings."""
    common = dict(precision=precision, rank=rank, targets=targets, batch_size=batch_size, seq_len=seq_len,
                  optimizer=optimizer, double_quant=double_quant)
    return {m: estimate(config, m, **common) for m in METHODS}


def fmt_bytes(n: float | None) -> str:
    """Human-readable decimal size: "13.5 GB", "498 MB", "1.5 MB", "12 KB", "512 B"; None -> "-"."""
    if n is None:
        return "-"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:,.1f} {unit}" if abs(value) < 100 else f"{value:,.0f} {unit}"
    return f"{n:,.0f} B"


# -- examples for the page's "try a big model" picker --------------------------------------------------------------
# meta-llama/Llama-2-7b-hf's config.json (Touvron et al. 2023), without its transformers_version stamp.
LLAMA_2_7B: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "hidden_act": "silu",
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-05,
    "initializer_range": 0.02,
    "pretraining_tp": 1,
    "rope_scaling": None,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "use_cache": True,
    "torch_dtype": "float16",
}

EXAMPLE_CONFIGS: dict[str, dict[str, Any]] = {
    "Llama-2-7B": LLAMA_2_7B,
    "GPT-2 small (124M)": GPTConfig.preset("gpt2").to_hf_dict(),
    "GPT-2 XL (1.5B)": GPTConfig.preset("gpt2-xl").to_hf_dict(),
}
