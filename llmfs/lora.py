"""LoRA and QLoRA (L15): low-rank adapters on our GPT and our Llama, saved and loaded in PEFT's format.

A LoRA adapter leaves a pretrained weight W frozen and learns a low-rank update: y = W x + (alpha / r) B A x, with
A (r, in) and B (out, r), B starting at zero so the adapted model starts equal to the base (Hu et al. 2021,
"LoRA: Low-Rank Adaptation of Large Language Models", sec. 4.1). rsLoRA scales by alpha / sqrt(r) instead, which
keeps the update's size steady as the rank grows (Kalajdzievski 2023). QLoRA keeps W in 4-bit NF4 through
bitsandbytes, the adapters in full precision (Dettmers et al. 2023).

`LoRALinear` wraps one linear layer and holds any number of named adapters, like PEFT's `LoraLayer`: its state-dict
names (`<module>.base_layer.weight`, `<module>.lora_A.<adapter>.weight`) are PEFT's, and our models' module names are
Hugging Face's (our GPT's are GPT2LMHeadModel's, our Llama's LlamaForCausalLM's), so an adapter file is PEFT's
`adapter_model.safetensors` with the adapter name dropped and `base_model.model.` in front: PEFT loads ours on
transformers' model and we load PEFT's (tests/test_lora_layers.py, tests/test_lora_llama.py). Several adapters sit
on one base: `set_active` switches between them (or mixes them with weights) without touching the base weights.

The lesson's target names (qkv, attn_proj, mlp_in, mlp_out, lm_head) map to each family's module names in
`target_modules` (on a Llama: q_proj + k_proj + v_proj, o_proj, gate_proj + up_proj, down_proj, lm_head).
Architectures neither of our models implements (Mistral, Gemma, ...) train through PEFT itself (`llmfs.hf_causal`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .errors import SourceError
from .fsutil import make_temp_dir, replace_dir

# the lesson's layer names and their help, re-exported: the pages and older code read them from here
from .targets import (  # noqa: F401
    ALL_LINEAR,
    FAMILIES,
    LESSON_TARGETS,
    QUANT_SKIP,
    TARGET_HELP,
    matches,
    parse_targets,
    target_modules,
)


def scaling(rank: int, alpha: float, rslora: bool = False) -> float:
    """alpha / r (LoRA), or alpha / sqrt(r) (rsLoRA)."""
    return alpha / math.sqrt(rank) if rslora else alpha / rank


# -- the layer ------------------------------------------------------------------------------------------------------
class LoRALinear(nn.Module):
    """A linear layer (`nn.Linear` or bitsandbytes' `Linear4bit`) plus named low-rank adapters.

    `active` maps adapter name -> weight; the output is base(x) + sum_i weight_i * scaling_i * B_i A_i dropout(x).
    `merged` records adapters folded into the base weight (their delta is then not added again).
    """

    def __init__(self, base_layer: nn.Linear):
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.lora_dropout = nn.ModuleDict()
        self.scaling: dict[str, float] = {}
        self.active: dict[str, float] = {}
        self.merged: dict[str, float] = {}

    @property
    def weight(self) -> torch.Tensor:
        """The base weight, so code that reads `layer.weight` (tied heads, summaries) keeps working."""
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    @property
    def quantized(self) -> bool:
        return type(self.base_layer) is not nn.Linear

    def add(self, name: str, rank: int, alpha: float, dropout: float = 0.0, rslora: bool = False) -> None:
        """A new adapter `name`: A drawn as PEFT draws it (Kaiming-uniform, a = sqrt(5)), B zero, so the layer's
        output does not change until B learns. Adapters stay in fp32 whatever the base's dtype (QLoRA's rule)."""
        if name in self.lora_A:
            raise ValueError(f"This layer already has an adapter called {name!r}.")
        device = _device_of(self.base_layer)
        a = nn.Linear(self.in_features, rank, bias=False, device=device, dtype=torch.float32)
        b = nn.Linear(rank, self.out_features, bias=False, device=device, dtype=torch.float32)
        nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
        nn.init.zeros_(b.weight)
        self.lora_A[name], self.lora_B[name] = a, b
        self.lora_dropout[name] = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling[name] = scaling(rank, alpha, rslora)

    def remove(self, name: str) -> None:
        if name in self.merged:
            raise ValueError(f"Adapter {name!r} is merged into the base weights; unmerge it before removing it.")
        for d in (self.lora_A, self.lora_B, self.lora_dropout):
            del d[name]
        self.scaling.pop(name)
        self.active.pop(name, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        for name, w in self.active.items():
            if name in self.merged or w == 0.0:
                continue
            a = self.lora_A[name]
            h = self.lora_dropout[name](x).to(a.weight.dtype)
            y = y + (self.lora_B[name](a(h)) * (w * self.scaling[name])).to(y.dtype)
        return y

    def delta_weight(self, name: str) -> torch.Tensor:
        """scaling * B A, shaped like the base weight (out, in)."""
        return (self.lora_B[name].weight @ self.lora_A[name].weight) * self.scaling[name]

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the active adapters (times their weights) into the base weight: the same outputs, no extra
        matmuls at inference. Not for a 4-bit base (it would be re-quantized, losing precision)."""
        if self.quantized:
            raise ValueError("Cannot merge into 4-bit weights without losing precision: merge the adapter into the "
                             "full-precision base instead (merge_into_base / `llmfs adapters merge`).")
        for name, w in self.active.items():
            if name not in self.merged and w != 0.0:
                weight = self.base_layer.weight
                weight.add_((w * self.delta_weight(name)).to(weight.dtype))
                self.merged[name] = w

    @torch.no_grad()
    def unmerge(self) -> None:
        for name, w in list(self.merged.items()):
            weight = self.base_layer.weight
            weight.sub_((w * self.delta_weight(name)).to(weight.dtype))
            del self.merged[name]

    def extra_repr(self) -> str:
        ranks = {n: a.out_features for n, a in self.lora_A.items()}
        return f"adapters={ranks}, active={self.active}, merged={list(self.merged)}"


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


# -- adapters on a model ------------------------------------------------------------------------------------------
def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """module name -> LoRALinear, in model order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoRALinear) for m in model.modules())


def adapter_names(model: nn.Module) -> list[str]:
    names: list[str] = []
    for layer in lora_layers(model).values():
        names.extend(n for n in layer.lora_A if n not in names)
    return names


def add_adapter(model: nn.Module, name: str = "default", *, rank: int = 8, alpha: float = 16.0,
                dropout: float = 0.0, rslora: bool = False, targets: str | Sequence[str] = ("qkv",),
                model_type: str = "gpt2", seed: int | None = None, activate: bool = True) -> list[str]:
    """Put a new adapter on every linear layer that `targets` names (wrapping it in `LoRALinear` the first time).

    Changes `model` in place (use a model the caller owns). Returns the names of the adapted modules.
    Raises:
        ValueError: bad rank / alpha, an existing adapter name, or targets that match no linear layer.
    """
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"LoRA rank must be a whole number of at least 1 (got {rank!r}).")
    if not alpha > 0:
        raise ValueError(f"LoRA alpha must be positive (got {alpha!r}).")
    if name in adapter_names(model):
        raise ValueError(f"The model already has an adapter called {name!r}; pick another name.")
    suffixes = target_modules(targets, model_type)
    chosen = [(n, m) for n, m in model.named_modules() if matches(n, suffixes)
              and isinstance(m, (nn.Linear, LoRALinear))]
    if not chosen:
        raise ValueError(f"No linear layer matches the targets {', '.join(suffixes)} in this model.")
    too_big = [n for n, m in chosen if rank > min(m.in_features, m.out_features)]
    if too_big:
        raise ValueError(f"LoRA rank {rank} is larger than the layer it adapts ({too_big[0]}); a rank above "
                         "min(in, out) adds parameters without adding expressiveness. Choose a smaller rank.")
    if seed is not None:
        torch.manual_seed(seed)
    for module_name, module in chosen:
        layer = module if isinstance(module, LoRALinear) else _wrap(model, module_name, module)
        layer.add(name, rank, alpha, dropout, rslora)
    if activate:
        set_active(model, name)
    return [n for n, _ in chosen]


def _wrap(model: nn.Module, module_name: str, module: nn.Linear) -> LoRALinear:
    parent_name, _, child = module_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    layer = LoRALinear(module)
    setattr(parent, child, layer)
    return layer


def set_active(model: nn.Module, adapters: str | Mapping[str, float] | Sequence[str] | None) -> None:
    """Which adapters act, and how strongly: a name, several names (weight 1 each), {name: weight} for a weighted
    combination, or None for the bare base model. Only a flag per layer changes: switching costs nothing.

    Raises:
        ValueError: an adapter the model does not have, or adapters merged into the weights (unmerge first).
    """
    if adapters is None:
        wanted: dict[str, float] = {}
    elif isinstance(adapters, str):
        wanted = {adapters: 1.0}
    elif isinstance(adapters, Mapping):
        wanted = {str(k): float(v) for k, v in adapters.items()}
    else:
        wanted = {str(k): 1.0 for k in adapters}
    unknown = [n for n in wanted if n not in adapter_names(model)]
    if unknown:
        raise ValueError(f"No adapter called {unknown[0]!r} on this model; it has: "
                         f"{', '.join(adapter_names(model)) or 'none'}.")
    for layer in lora_layers(model).values():
        if layer.merged:
            raise ValueError("Adapters are merged into the base weights; call unmerge(model) before switching.")
        layer.active = {n: w for n, w in wanted.items() if n in layer.lora_A}


def active_adapters(model: nn.Module) -> dict[str, float]:
    out: dict[str, float] = {}
    for layer in lora_layers(model).values():
        out.update(layer.active)
    return out


def mark_trainable(model: nn.Module, name: str = "default") -> int:
    """Freeze everything except adapter `name`'s A and B matrices; returns the trainable parameter count."""
    for p in model.parameters():
        p.requires_grad_(False)
    count = 0
    for layer in lora_layers(model).values():
        if name in layer.lora_A:
            for p in (layer.lora_A[name].weight, layer.lora_B[name].weight):
                p.requires_grad_(True)
                count += p.numel()
    if count == 0:
        raise ValueError(f"No adapter called {name!r} on this model.")
    return count


def lora_param_count(shapes: Sequence[tuple[int, int]], rank: int) -> int:
    """The formula: r * (in + out) per adapted (in, out) layer."""
    return sum(rank * (i + o) for i, o in shapes)


def merge(model: nn.Module) -> None:
    """Fold the active adapters into the base weights (see `LoRALinear.merge`); `unmerge` takes them out again."""
    for module_name, layer in lora_layers(model).items():
        _untie_before_merge(model, module_name, layer)
        layer.merge()


def _untie_before_merge(model: nn.Module, module_name: str, layer: LoRALinear) -> None:
    """A head that shares its weight with the word embeddings gets its own copy before an adapter is merged into
    it: merging into the shared tensor would change the embeddings too (every input token), not just the head."""
    if not any(w != 0.0 for n, w in layer.active.items() if n not in layer.merged):
        return
    weight = layer.base_layer.weight
    shared = any(p is weight for n, p in model.named_parameters(remove_duplicate=False)
                 if not n.startswith(module_name + "."))
    if shared:
        layer.base_layer.weight = nn.Parameter(weight.detach().clone(), requires_grad=weight.requires_grad)
        config = getattr(model, "config", None)
        if dataclasses.is_dataclass(config) and getattr(config, "tie_word_embeddings", False):
            model.config = dataclasses.replace(config, tie_word_embeddings=False)


def unmerge(model: nn.Module) -> None:
    for layer in lora_layers(model).values():
        layer.unmerge()


def remove_adapter(model: nn.Module, name: str) -> None:
    """Drop adapter `name` from every layer (layers left without adapters go back to plain linears)."""
    if name not in adapter_names(model):
        raise ValueError(f"No adapter called {name!r} on this model.")
    for module_name, layer in lora_layers(model).items():
        if name in layer.lora_A:
            layer.remove(name)
        if not layer.lora_A:
            _unwrap(model, module_name, layer.base_layer)


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Fold the active adapters into the base weights and put plain linear layers back: a normal model again,
    as fast as the base. Changes `model` in place and returns it."""
    for module_name, layer in lora_layers(model).items():
        _untie_before_merge(model, module_name, layer)
        layer.merge()
        _unwrap(model, module_name, layer.base_layer)
    return model


def _unwrap(model: nn.Module, module_name: str, base: nn.Module) -> None:
    parent_name, _, child = module_name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, base)


# -- PEFT's file format ---------------------------------------------------------------------------------------------
CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."


def adapter_state_dict(model: nn.Module, name: str = "default") -> dict[str, torch.Tensor]:
    """Adapter `name`'s tensors under PEFT's file names (`base_model.model.<module>.lora_A.weight`).

    A padded head (more rows than the vocabulary) is cut back to the vocabulary, as the saved base model is.
    """
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    out = {}
    for module_name, layer in lora_layers(model).items():
        if name not in layer.lora_A:
            continue
        a, b = layer.lora_A[name].weight, layer.lora_B[name].weight
        if module_name == "lm_head" and vocab is not None and b.shape[0] > vocab:
            b = b[:vocab]
        out[f"{PEFT_PREFIX}{module_name}.lora_A.weight"] = a.detach().cpu().contiguous()
        out[f"{PEFT_PREFIX}{module_name}.lora_B.weight"] = b.detach().cpu().contiguous()
    if not out:
        raise ValueError(f"No adapter called {name!r} on this model.")
    return out


def adapter_settings(model: nn.Module, name: str = "default") -> dict[str, Any]:
    """rank, alpha, dropout, rslora and the adapted module names of adapter `name`, read off the layers."""
    layers = {n: layer for n, layer in lora_layers(model).items() if name in layer.lora_A}
    if not layers:
        raise ValueError(f"No adapter called {name!r} on this model.")
    first = next(iter(layers.values()))
    rank = first.lora_A[name].out_features
    drop = first.lora_dropout[name]
    return {"rank": rank, "scaling": first.scaling[name], "dropout": drop.p if isinstance(drop, nn.Dropout) else 0.0,
            "modules": list(layers)}


def save_adapter(model: nn.Module, path: str | os.PathLike, name: str = "default", *, alpha: float,
                 rslora: bool = False, base_model: str = "", targets: Sequence[str] | None = None) -> Path:
    """Write adapter `name` as PEFT writes it: `adapter_config.json` (through `peft.LoraConfig`, so the fields are
    PEFT's own) + `adapter_model.safetensors`. The folder appears complete or not at all.

    Args:
        alpha: the adapter's lora_alpha (scaling = alpha / r, or alpha / sqrt(r) with rslora).
        base_model: `base_model_name_or_path`: the base's Hugging Face folder or hub id, so
            `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model), path)` works.
        targets: `target_modules` for the config; default: the adapted module names' shared suffixes.
    """
    from peft import LoraConfig
    from safetensors.torch import save_file

    settings = adapter_settings(model, name)
    tensors = adapter_state_dict(model, name)
    if targets is None:
        targets = sorted({".".join(m.split(".")[-2:]) if "." in m else m for m in settings["modules"]})
    config = LoraConfig(r=settings["rank"], lora_alpha=alpha, lora_dropout=settings["dropout"],
                        target_modules=list(targets), use_rslora=rslora, bias="none", task_type="CAUSAL_LM",
                        base_model_name_or_path=str(base_model) or None,
                        # HF's GPT-2 stores these projections as Conv1D (weight (in, out)); PEFT needs to know.
                        fan_in_fan_out=_is_gpt2(model), inference_mode=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(f".{path.name}.tmp-", path.parent)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config.save_pretrained(str(tmp))
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        replace_dir(tmp, path)
    except BaseException:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _is_gpt2(model: nn.Module) -> bool:
    from .model import GPT
    return isinstance(model, GPT)


def read_adapter_config(path: str | os.PathLike) -> dict[str, Any]:
    """The adapter folder's `adapter_config.json`, checked for what this loader supports.

    Raises:
        SourceError: not an adapter folder, not a LoRA adapter, or a LoRA variant not supported here.
    """
    folder = Path(path).expanduser()
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise SourceError(f"{folder} is not an adapter folder: it needs {CONFIG_FILE} and {WEIGHTS_FILE} "
                          "(what PEFT's save_pretrained writes).")
    try:
        cfg = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SourceError(f"{folder / CONFIG_FILE} is not valid JSON ({e}).") from e
    if cfg.get("peft_type", "LORA") != "LORA":
        raise SourceError(f"{folder} holds a {cfg.get('peft_type')} adapter; this lab loads LoRA adapters only.")
    unsupported = [k for k in ("use_dora", "modules_to_save", "rank_pattern", "alpha_pattern", "layers_to_transform")
                   if cfg.get(k)]
    if cfg.get("bias", "none") != "none":
        unsupported.append(f"bias={cfg['bias']}")
    if unsupported:
        raise SourceError(f"The adapter in {folder} uses {', '.join(unsupported)}, which this lab's LoRA does not "
                          "implement; load it with PEFT directly, or train a plain LoRA adapter.")
    if not isinstance(cfg.get("r"), int) or cfg["r"] < 1:
        raise SourceError(f"{folder / CONFIG_FILE} has no valid rank r (got {cfg.get('r')!r}).")
    return cfg


def load_adapter_into(model: nn.Module, path: str | os.PathLike, name: str = "default",
                      activate: bool = True) -> str:
    """Attach the PEFT-format adapter at `path` to `model` as adapter `name` (unmerged, switchable).

    Works for adapters we saved and for adapters trained with PEFT on Hugging Face's GPT-2 or Llama (the module
    names and the A / B shapes are the same; GPT-2's Conv1D transposition does not reach the adapter matrices).
    A copy of the head or embeddings PEFT saves beside an adapter on them is checked against the base and skipped.
    Raises:
        SourceError: not an adapter folder, or one that does not fit this model (names, shapes).
    """
    from safetensors.torch import load_file

    cfg = read_adapter_config(path)
    tensors = load_file(str(Path(path).expanduser() / WEIGHTS_FILE), device="cpu")
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    modules = dict(model.named_modules())
    for key, t in tensors.items():
        module_name, kind = _split_key(key)
        if kind is None:
            _check_base_copy(modules, key, t, path)
            continue
        pairs.setdefault(module_name, {})[kind] = t
    bad = [m for m in pairs if m not in modules or not isinstance(modules[m], (nn.Linear, LoRALinear))]
    if bad:
        raise SourceError(f"The adapter in {path} does not fit this model: it adapts {bad[0]!r}, which this model "
                          "does not have. Was it trained on another base model?")
    rank, alpha, rslora = cfg["r"], float(cfg.get("lora_alpha", cfg["r"])), bool(cfg.get("use_rslora", False))
    dropout = float(cfg.get("lora_dropout") or 0.0)
    # Check every shape before changing anything, so a misfit leaves the model as it was.
    for module_name, pair in pairs.items():
        m = modules[module_name]
        if set(pair) != {"A", "B"}:
            raise SourceError(f"The adapter in {path} has only {''.join(pair)} for {module_name}.")
        a, b = pair["A"], pair["B"]
        out_rows = b.shape[0]
        if (tuple(a.shape) != (rank, m.in_features) or b.shape[1] != rank
                or not (out_rows == m.out_features or (module_name == "lm_head" and out_rows < m.out_features))):
            raise SourceError(f"The adapter in {path} does not fit this model: {module_name} is "
                              f"{m.in_features}->{m.out_features} here but the adapter's matrices are "
                              f"{tuple(a.shape)} and {tuple(b.shape)}. It was trained on a base of another size.")
    if name in adapter_names(model):
        raise SourceError(f"The model already has an adapter called {name!r}; pick another name.")
    for module_name, pair in pairs.items():
        m = modules[module_name]
        layer = m if isinstance(m, LoRALinear) else _wrap(model, module_name, m)
        layer.add(name, rank, alpha, dropout, rslora)
        b = pair["B"]
        if b.shape[0] < layer.out_features:  # a padded head: the padding rows get no update
            b = torch.cat([b, b.new_zeros(layer.out_features - b.shape[0], b.shape[1])])
        with torch.no_grad():
            layer.lora_A[name].weight.copy_(pair["A"])
            layer.lora_B[name].weight.copy_(b)
    if activate:
        set_active(model, name)
    return name


def _check_base_copy(modules: Mapping[str, nn.Module], key: str, tensor: torch.Tensor, path) -> None:
    """A tensor beside the A / B matrices: PEFT saves a full copy of the head or the embeddings with an adapter that
    targets them (`save_embedding_layers`, e.g. `lm_head.base_layer.weight`) or after resizing them. A copy equal to
    this model's own weight adds nothing and is skipped. Any other (a resized vocabulary, retrained embeddings) would
    replace the base's weights for every adapter on it, which switching adapters cannot undo: refused.

    Raises:
        SourceError: a tensor that is not a copy of this model's weight.
    """
    k = key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key
    module = modules.get(k.removesuffix(".weight").removesuffix(".base_layer")) if k.endswith(".weight") else None
    weight = getattr(module, "weight", None)
    rows = tensor.shape[0] if tensor.dim() else 0
    fits = (isinstance(weight, torch.Tensor) and tensor.dim() == weight.dim() and rows <= weight.shape[0]
            and tensor.shape[1:] == weight.shape[1:] and type(weight) in (nn.Parameter, torch.Tensor))
    # a padded vocabulary has more rows than the saved one; the real ones must match
    if fits and torch.allclose(tensor.to(weight.dtype).float(), weight[:rows].detach().float().cpu(),
                               rtol=1e-3, atol=1e-6):
        return
    raise SourceError(f"The adapter in {path} holds {key!r}, which is not a LoRA A or B matrix "
                      + ("but its own copy of this model's weight, with other values (a resized vocabulary or "
                         "retrained embeddings?)" if fits else "nor a copy of one of this model's weights")
                      + "; only plain LoRA adapters on linear layers load here. Load it with PEFT directly.")


def _split_key(key: str) -> tuple[str, str | None]:
    """`base_model.model.<module>.lora_A[.<adapter>].weight` -> (module, "A" / "B"); kind None for other tensors."""
    k = key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key
    for kind in ("A", "B"):
        marker = f".lora_{kind}."
        if marker in k:
            return k.split(marker)[0], kind
    return k, None


def load_adapter(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """A copy of `model` with the LoRA adapter at `path` merged into its weights (for evaluation); `model` itself
    is not changed. tests/test_lora.py holds the result against PEFT's own merge.
    Raises:
        SourceError: not an adapter folder, or one that does not fit the model.
    """
    out = copy.deepcopy(model)
    load_adapter_into(out, path, name="default")
    return merge_and_unload(out).eval()


# -- QLoRA: 4-bit base weights ------------------------------------------------------------------------------------


def quantize_4bit(model: nn.Module, *, double_quant: bool = True, compute_dtype: torch.dtype = torch.float32,
                  device: str | torch.device = "cpu", skip: Sequence[str] = QUANT_SKIP) -> int:
    """Replace every plain `nn.Linear` (except the head) with a bitsandbytes NF4 `Linear4bit`, quantized on
    `device`. Changes `model` in place; returns the number of layers quantized.

    Args:
        double_quant: also quantize the per-block scales (QLoRA's "double quantization", ~0.4 bit / weight less).
        compute_dtype: the dtype the 4-bit weights are dequantized to for each matmul.
    Raises:
        SourceError: bitsandbytes is not installed or cannot run here.
    """
    try:
        import bitsandbytes as bnb
    except Exception as e:  # ImportError, or a broken native library
        raise SourceError(f"4-bit weights need bitsandbytes, which could not be loaded ({type(e).__name__}: {e}). "
                          "Install it (pip install bitsandbytes) or train without 4-bit.") from e
    device = torch.device(device)
    count = 0
    for name, module in list(model.named_modules()):
        if type(module) is not nn.Linear or name.split(".")[-1] in skip:
            continue
        q = bnb.nn.Linear4bit(module.in_features, module.out_features, bias=module.bias is not None,
                              compute_dtype=compute_dtype, compress_statistics=double_quant, quant_type="nf4",
                              device="meta")
        q.weight = bnb.nn.Params4bit(module.weight.data.detach().to("cpu", torch.float32), requires_grad=False,
                                     compress_statistics=double_quant, quant_type="nf4")
        if module.bias is not None:
            q.bias = nn.Parameter(module.bias.data.detach().to("cpu", compute_dtype), requires_grad=False)
        q = q.to(device)  # Params4bit quantizes when it moves to its device
        if device.type == "cpu":
            # bitsandbytes repacks CPU weights for AVX512-BF16 on an eval-mode forward, after which backward fails;
            # the plain CPU kernel is correct either way.
            q.support_avx512bf16_for_cpu = False
        _unwrap(model, name, q)
        count += 1
    return count


def is_quantized(model: nn.Module) -> bool:
    return any(type(m).__name__ == "Linear4bit" for m in model.modules())
