"""Pre-flight memory estimate for fine-tuning: full fine-tune vs LoRA vs QLoRA, before anything is loaded.

The model is built on PyTorch's meta device (shapes only, no memory, nothing downloaded) from our `GPTConfig` or
any Hugging Face causal-LM config.json, so the same arithmetic covers the lab's GPT-2 and "what would a 7B model
need?": about 13.5 GB of 16-bit weights for Llama-2-7B, under 4 GB once QLoRA stores them in 4 bits.

What is counted (bytes; GB = 10^9 bytes, the unit model cards use):
- weights, gradients and optimizer states, per parameter, as `estimate` documents;
- activations kept for the backward pass (Korthikanti et al. 2022) and the logits.
What is not: the CUDA context (~0.3-0.5 GB), allocator fragmentation, temporary workspaces, the data batch itself.
Real runs therefore need some headroom above `total_bytes`.

References:
- Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models", sec. 3.1
  (mixed-precision Adam: 2 + 2 + 12 bytes per parameter).
- Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", sec. 4.1 (r * (in + out) per layer).
- Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs", sec. 2 (NF4, blocksize 64, double
  quantization of the absmax constants).
- Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", sec. 4.1 and table 2.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .freeze import OPTIMIZER_STATES
from .lora import QUANT_SKIP, matches, target_modules
from .model import GPT, GPTConfig

METHODS = ("full", "lora", "qlora")
WEIGHT_DTYPES = {"fp32": 4, "bf16": 2, "fp16": 2}  # bytes per value
ADAPTER_BYTES = 4  # LoRA's A and B stay in fp32 whatever the base's dtype (PEFT's and QLoRA's rule)
MASTER_COPY_BYTES = 4  # mixed-precision training keeps an fp32 copy of 16-bit trainable weights (ZeRO sec. 3.1)
QLORA_REST_BYTES = 2  # QLoRA keeps everything it does not quantize (and computes) in bf16
NF4_BLOCKSIZE = 64  # weights per quantization block (QLoRA sec. 2)
DQ_BLOCKSIZE = 256  # absmax constants per second-level block under double quantization (QLoRA sec. 2)
MAX_LAYERS = 1000  # a typo guard: the largest released models have ~130 layers, and each layer is built (on meta)

PART_LABELS = {"weights_bytes": "Weights", "gradients_bytes": "Gradients", "optimizer_bytes": "Optimizer states",
               "activations_bytes": "Activations"}


# -- results -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """Bytes one fine-tuning method needs on the accelerator; `notes` spells out the assumptions behind them."""

    method: str
    weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    total_bytes: int
    trainable_params: int
    total_params: int
    """Every parameter the training model holds: the base model's, plus the adapters' for LoRA / QLoRA (PEFT's
    `get_nb_trainable_parameters()[1]`)."""
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["notes"] = list(self.notes)
        return d

    def parts(self) -> list[tuple[str, int]]:
        """(label, bytes) for each stacked-bar segment, in the order they stack."""
        return [(label, getattr(self, field)) for field, label in PART_LABELS.items()]


@dataclass(frozen=True)
class Architecture:
    """What the estimate needs from a model: its sizes and its linear layers (read off a meta-device build)."""

    model_type: str
    n_layer: int
    hidden_size: int
    n_head: int
    vocab_size: int
    max_positions: int | None
    total_params: int
    """Parameters, a tied embedding / head matrix once."""
    linears: tuple[tuple[str, int, int], ...]
    """(module name, in_features, out_features) of every linear layer, the head included, in model order."""
    quantized_params: int
    """Weights of the linear layers 4-bit quantization replaces (all but the head, `llmfs.lora.QUANT_SKIP`)."""
    quantized_layers: int


# -- reading a config ----------------------------------------------------------------------------------------------
def _load(config: Any) -> GPTConfig | dict[str, Any]:
    """A GPTConfig as it is; a dict, a JSON string or a path (folder or config.json) -> the config dict.

    Raises:
        ValueError: not JSON, JSON that is not an object, a path with no config.json, no model_type.
    """
    if isinstance(config, GPTConfig):
        return config
    if isinstance(config, os.PathLike) or (isinstance(config, str) and not config.lstrip().startswith("{")):
        path = Path(config).expanduser()
        try:
            if path.is_dir():
                path = path / "config.json"
            found = path.is_file()
        except OSError:  # e.g. a name too long to be a path: text that was meant as JSON
            found = False
        if not found:
            raise ValueError(f"{str(config)[:200]!r} is neither a JSON object (it would start with '{{') nor a "
                             "folder or config.json file that exists: paste the model's config.json contents, or "
                             "give the folder that holds it.")
        config = path.read_text(encoding="utf-8")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as e:
            raise ValueError(f"The config is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}): paste "
                             "config.json exactly as it is, with double quotes and no trailing commas.") from None
    if not isinstance(config, Mapping):
        raise ValueError(f"A model config is a JSON object ({{...}}), not a {type(config).__name__}: paste the "
                         "whole config.json.")
    config = dict(config)
    if not isinstance(config.get("model_type"), str):
        raise ValueError('The config has no "model_type"; every Hugging Face config.json names one (e.g. "llama", '
                         '"gpt2", "qwen2"): add it.')
    return config


@functools.lru_cache(maxsize=16)
def _architecture_cached(key: str) -> Architecture:
    # Keyed on canonical JSON: the page calls estimate three times per config, and a 7B build takes ~2 s.
    kind, payload = json.loads(key)
    if kind == "llmfs":
        return _from_model(_gpt_on_meta(GPTConfig(**payload)), GPTConfig(**payload))
    return _from_hf_dict(payload)


def architecture(config: Any) -> Architecture:
    """Sizes and linear layers of the model `config` describes, built on the meta device (no memory, no download).

    Args:
        config: a `GPTConfig`; a config.json dict; its JSON text; or a path to a model folder or its config.json.
            model_type "gpt2" builds our GPT (its module names are HF GPT-2's), any other model_type the
            transformers class `AutoModelForCausalLM` picks for it (trust_remote_code off: code is never fetched).
    Raises:
        ValueError: unreadable config, unknown model_type, or sizes transformers cannot build a model from.
    """
    loaded = _load(config)
    if isinstance(loaded, GPTConfig):
        key = ["llmfs", dataclasses.asdict(loaded)]
    else:
        key = ["hf", loaded]
    try:
        text = json.dumps(key, sort_keys=True)
    except (TypeError, ValueError) as e:  # a dict holding objects JSON cannot represent
        raise ValueError(f"The config holds values that are not JSON ({e}); pass config.json's contents.") from None
    return _architecture_cached(text)


def config_of(source: str | None) -> GPTConfig | str | None:
    """What `architecture` can read for a model source without loading weights or downloading: a GPTConfig
    (llmfs-tiny, even before it is built, and GPT-2 folders), the path of a folder's or the local Hugging Face
    cache's config.json (other architectures, hub ids already downloaded), or None."""
    from .sources import looks_like_path, peek_model_config
    if not source:
        return None
    config = peek_model_config(source)
    if config is not None:
        return config
    path = Path(source).expanduser()
    if (path / "config.json").is_file():
        return str(path)
    if looks_like_path(source):
        return None
    try:  # a hub id already in the local Hugging Face cache; never a download
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(source, "config.json")
    except Exception:  # noqa: BLE001 - a malformed id or an unreadable cache: no estimate, no error
        return None
    return cached if isinstance(cached, str) else None


def linear_shapes(config: Any) -> list[tuple[str, int, int]]:
    """(module name, in_features, out_features) for every linear layer of the model, head included.

    Arguments and errors as in `architecture`.
    """
    return list(architecture(config).linears)


def param_count(config: Any) -> int:
    """Number of parameters of the model `config` describes; tied embeddings / head counted once."""
    return architecture(config).total_params


def _gpt_on_meta(config: GPTConfig) -> GPT:
    """Our GPT with meta tensors: shapes and names, no storage."""
    with torch.device("meta"):
        return GPT(config)


def _from_hf_dict(d: dict[str, Any]) -> Architecture:
    model_type = d["model_type"]
    if model_type == "gpt2":
        try:
            cfg = GPTConfig.from_hf(d)
        except ValueError:
            cfg = None  # a GPT-2 variant our GPT does not implement: transformers' own GPT-2 below counts it
        if cfg is not None:
            return _from_model(_gpt_on_meta(cfg), cfg)
    from transformers import AutoConfig, AutoModelForCausalLM

    # Loading settings, not shapes: a pre-quantized model's quantization_config would make transformers try to
    # quantize the meta model; the estimate quantizes (or not) by its own rules.
    kwargs = {k: v for k, v in d.items() if k not in ("model_type", "quantization_config", "auto_map")}
    try:
        hf_config = AutoConfig.for_model(model_type, **kwargs)
    except ValueError as e:
        if "Unrecognized model identifier" in str(e):
            import transformers

            raise ValueError(f"model_type {model_type!r} is not known to transformers {transformers.__version__}: "
                             'check the spelling of config.json\'s "model_type" (e.g. "llama", "mistral", "qwen2", '
                             '"gpt2"), or upgrade transformers if the architecture is newer.') from None
        raise ValueError(f"transformers could not read this {model_type} config: {e}") from None
    except Exception as e:  # noqa: BLE001 - typed-in values fail in many ways (e.g. hub's strict-dataclass errors)
        raise ValueError(f"transformers could not read this {model_type} config ({type(e).__name__}: "
                         f"{_brief(e)}); check the field values.") from None
    n_layer = _first_attr(hf_config, "num_hidden_layers", "n_layer", "num_layers", "n_layers")
    if isinstance(n_layer, int) and n_layer > MAX_LAYERS:
        raise ValueError(f"{n_layer} layers is far beyond any released model (the largest have ~130); check "
                         "num_hidden_layers.")
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(hf_config, trust_remote_code=False)
    except ValueError as e:
        if "Unrecognized configuration class" in str(e):
            raise ValueError(f"model_type {model_type!r} has no causal language model in transformers (it is e.g. "
                             "an encoder or encoder-decoder); this estimate covers decoder-only causal LMs such as "
                             "llama, mistral, qwen2, gpt2.") from None
        raise ValueError(f"transformers could not build a {model_type} model from this config: {e}") from None
    except Exception as e:  # noqa: BLE001 - inconsistent sizes fail deep inside the model's constructor
        raise ValueError(f"transformers could not build a {model_type} model from this config "
                         f"({type(e).__name__}: {_brief(e)}); check its sizes.") from None
    return _from_model(model, hf_config)


def _from_model(model: nn.Module, config: Any) -> Architecture:
    """Read an Architecture off a built (meta) model and its config (GPTConfig or a transformers config)."""
    linears = tuple((name, *_linear_features(m)) for name, m in model.named_modules() if _linear_features(m))
    quantized = {name for name, m in model.named_modules() if _quantizes(name, m)}
    # named_parameters() drops duplicates, so a tied head is counted (and placed) once, under the embedding's name.
    params = dict(model.named_parameters())
    quantized_params = sum(p.numel() for n, p in params.items() if n.rpartition(".")[0] in quantized
                           and n.endswith(".weight"))
    dims = {
        "n_layer": _first_attr(config, "n_layer", "num_hidden_layers", "num_layers", "n_layers"),
        "hidden_size": _first_attr(config, "n_embd", "hidden_size", "d_model", "dim"),
        "n_head": _first_attr(config, "n_head", "num_attention_heads", "n_heads", "num_heads"),
        "vocab_size": _first_attr(config, "vocab_rows", "vocab_size"),
    }
    missing = [k for k, v in dims.items() if not isinstance(v, int)]
    if missing:
        raise ValueError(f"Cannot read {', '.join(missing)} from this config (looked for the GPT-2 and Llama field "
                         "names, e.g. n_layer / num_hidden_layers); the activation estimate needs them.")
    return Architecture(
        model_type=getattr(config, "model_type", None) or "gpt2",
        max_positions=_first_attr(config, "n_positions", "max_position_embeddings"),
        total_params=sum(p.numel() for p in params.values()),
        linears=linears, quantized_params=quantized_params, quantized_layers=len(quantized), **dims)


def _brief(e: Exception) -> str:
    """An exception's message on one line, cut to a readable length (some span a screen)."""
    text = " ".join(str(e).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _first_attr(obj: Any, *names: str) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _linear_features(module: nn.Module) -> tuple[int, int] | None:
    """(in, out) of an nn.Linear or transformers' Conv1D (GPT-2's, weight stored (in, out)); None otherwise."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return module.weight.shape[0], module.nf
    return None


def _quantizes(name: str, module: nn.Module) -> bool:
    """`llmfs.lora.quantize_4bit`'s rule: every linear layer except the output head."""
    return _linear_features(module) is not None and name.split(".")[-1] not in QUANT_SKIP


# -- the arithmetic ------------------------------------------------------------------------------------------------
def quantized_bytes(n_params: int, double_quant: bool = True) -> int:
    """Bytes of `n_params` weights in 4-bit NF4 with their quantization constants (Dettmers et al. 2023, sec. 2).

    Two weights per byte, plus one absmax per block of 64 weights: an fp32 (4/64 byte per weight), or with double
    quantization an 8-bit one plus an fp32 per 256 blocks (1/64 + 4/(64 * 256) byte per weight). bitsandbytes
    stores exactly this for tensors whose size is a multiple of 64 * 256, plus a few fixed bytes per tensor.
    """
    blocks = n_params / NF4_BLOCKSIZE
    constants = blocks * 1 + blocks / DQ_BLOCKSIZE * 4 if double_quant else blocks * 4
    return round(n_params / 2 + constants)


def lora_params(arch: Architecture, rank: int, suffixes: list[str]) -> int:
    """r * (in + out) for each linear layer a target suffix matches (Hu et al. 2021, sec. 4.1)."""
    return sum(rank * (i + o) for name, i, o in arch.linears if matches(name, suffixes))


def activation_bytes(arch: Architecture, batch_size: int, seq_len: int, value_bytes: int = 2,
                     checkpointing: bool = False) -> int:
    """Bytes the forward pass keeps for the backward pass.

    Per layer s*b*h*(34 + 5*a*s/h) bytes with 16-bit values (Korthikanti et al. 2022, table 2, no recomputation;
    it counts a GPT layer: attention scores a*s^2 per sequence, a 4h MLP, 1-byte dropout masks), scaled by
    value_bytes / 2. With checkpointing only each layer's input (2*s*b*h bytes at 16-bit) is kept, plus one layer's
    full activations while that layer is recomputed. The logits add b*s*V fp32 values and their gradient.
    """
    s, b, h, a, n = seq_len, batch_size, arch.hidden_size, arch.n_head, arch.n_layer
    per_layer = s * b * (34 * h + 5 * a * s)  # s*b*h*(34 + 5as/h), kept in integers
    layers = n * 2 * s * b * h + per_layer if checkpointing else n * per_layer
    logits = b * s * arch.vocab_size * 4 * 2
    return layers * value_bytes // 2 + logits


def estimate(config: Any, method: str = "full", *, rank: int = 8, targets: Any = "qkv", batch_size: int = 1,
             seq_len: int = 512, weight_dtype: str = "fp32", optimizer: str = "adamw", double_quant: bool = True,
             activation_checkpointing: bool = False, qlora_compute_dtype: str = "bf16") -> Estimate:
    """Bytes a fine-tuning run needs, before it starts.

    Rules (P = all parameters, d = bytes per value of `weight_dtype`: 4 for fp32, 2 for bf16 / fp16):
    - full: weights P*d, gradients P*d, optimizer `freeze.OPTIMIZER_STATES[optimizer]` fp32 tensors per parameter
      (AdamW: 2, i.e. 8 bytes); with 16-bit weights also an fp32 master copy (4 bytes per parameter), which
      mixed-precision training updates and rounds back (ZeRO, Rajbhandari et al. 2020, sec. 3.1: 16 bytes / param).
    - lora: the frozen base P*d with no gradients or states; adapters of r*(in + out) parameters per targeted
      linear layer (Hu et al. 2021), in fp32: 4 bytes weight, 4 gradient, 4 per optimizer state.
    - qlora: every linear layer but the head in 4-bit NF4 (`quantized_bytes`: 0.5 byte per weight plus the
      blocksize-64 absmax constants, double-quantized or not; Dettmers et al. 2023, sec. 2); everything else
      (embeddings, norms, biases, head) in bf16 at 2 bytes, and 16-bit compute, whatever `weight_dtype` says;
      adapters as for lora.
    - activations: `activation_bytes` (Korthikanti et al. 2022), with 4-byte values for fp32 weights and 2 for 16-bit
      ones (QLoRA: 2). total = weights + gradients + optimizer + activations.

    Args:
        config: anything `architecture` accepts (GPTConfig, config.json dict / text / path).
        qlora_compute_dtype: the dtype of QLoRA's non-quantized parts and compute: bf16 as in the paper; a CPU run
            of this lab computes in fp32 (pass "fp32" to estimate that run).
        targets: the lesson's layer names ("qkv,attn_proj", "all-linear", ...) or module-name suffixes, mapped
            to the model's names by `llmfs.lora.target_modules`; used by lora and qlora.
    Raises:
        ValueError: an unreadable config, an unknown method / dtype / optimizer, a non-positive size, or targets
            that name no linear layer of the model.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if weight_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"Unknown weight dtype {weight_dtype!r}; choose one of {', '.join(WEIGHT_DTYPES)}.")
    if optimizer not in OPTIMIZER_STATES:
        raise ValueError(f"Unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZER_STATES)}.")
    for name, value in (("rank", rank), ("batch_size", batch_size), ("seq_len", seq_len)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1 (got {value!r}).")
    arch = architecture(config)
    states = OPTIMIZER_STATES[optimizer]
    notes: list[str] = []
    if method == "full":
        d = WEIGHT_DTYPES[weight_dtype]
        trainable = total = arch.total_params
        weights = grads = total * d
        optim = total * states * 4
        if d < 4:
            optim += total * MASTER_COPY_BYTES
            notes.append(f"{weight_dtype} weights: mixed-precision training also keeps an fp32 master copy of every "
                         "weight (4 bytes / parameter), counted with the optimizer states.")
        act_value_bytes = d
    else:
        suffixes = target_modules(targets, arch.model_type)
        trainable = lora_params(arch, rank, suffixes)
        if trainable == 0:
            raise ValueError(f"The targets {', '.join(suffixes)} match no linear layer of this {arch.model_type} "
                             "model; pick other layers (module names are in the model's printout).")
        total = arch.total_params + trainable
        adapters = trainable * ADAPTER_BYTES
        if method == "lora":
            d = WEIGHT_DTYPES[weight_dtype]
            weights = arch.total_params * d + adapters
            act_value_bytes = d
        else:
            rest = arch.total_params - arch.quantized_params
            if qlora_compute_dtype not in WEIGHT_DTYPES:
                raise ValueError(f"Unknown QLoRA compute dtype {qlora_compute_dtype!r}; choose one of "
                                 f"{', '.join(WEIGHT_DTYPES)}.")
            rest_bytes = WEIGHT_DTYPES[qlora_compute_dtype]
            weights = quantized_bytes(arch.quantized_params, double_quant) + rest * rest_bytes + adapters
            act_value_bytes = rest_bytes
            notes.append(f"{arch.quantized_layers} linear layers ({arch.quantized_params:,} weights) in 4-bit NF4"
                         f"{' with double quantization' if double_quant else ''}; the other {rest:,} parameters "
                         f"(embeddings, norms, biases, head) in {qlora_compute_dtype}.")
            if weight_dtype == "fp32" and rest_bytes < 4:
                notes.append("QLoRA keeps its non-quantized parts and its compute in bf16; weight_dtype=fp32 "
                             "applies to full fine-tuning and LoRA only.")
        grads = adapters
        optim = trainable * states * 4
        notes.append(f"{trainable:,} adapter parameters (rank {rank} on {', '.join(suffixes)}) train in fp32; the "
                     "base model is frozen: no gradients or optimizer states for it.")
    acts = activation_bytes(arch, batch_size, seq_len, act_value_bytes, activation_checkpointing)
    notes.append("Activations follow Korthikanti et al. 2022 (table 2)"
                 + (" with activation checkpointing (each layer's input kept, one layer recomputed at a time)"
                    if activation_checkpointing else "")
                 + "; fused attention kernels (FlashAttention, SDPA) skip storing the s x s attention scores, so "
                 "real use is often lower.")
    if arch.max_positions is not None and seq_len > arch.max_positions:
        notes.append(f"seq_len {seq_len} is longer than the model's context ({arch.max_positions} positions).")
    notes.append("Not counted: the CUDA context (~0.3-0.5 GB), allocator fragmentation and temporary buffers.")
    return Estimate(method=method, weights_bytes=weights, gradients_bytes=grads, optimizer_bytes=optim,
                    activations_bytes=acts, total_bytes=weights + grads + optim + acts, trainable_params=trainable,
                    total_params=total, notes=tuple(notes))


def compare(config: Any, *, rank: int = 8, targets: Any = "qkv", batch_size: int = 1, seq_len: int = 512,
            weight_dtype: str = "fp32", optimizer: str = "adamw", double_quant: bool = True,
            activation_checkpointing: bool = False) -> dict[str, Estimate]:
    """`estimate` for full, lora and qlora with the same settings (qlora's non-quantized parts always 16-bit)."""
    common = dict(rank=rank, targets=targets, batch_size=batch_size, seq_len=seq_len, optimizer=optimizer,
                  double_quant=double_quant, activation_checkpointing=activation_checkpointing)
    return {m: estimate(config, m, weight_dtype="bf16" if m == "qlora" else weight_dtype, **common)
            for m in METHODS}


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
