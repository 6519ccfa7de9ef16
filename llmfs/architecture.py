"""A model's sizes and linear layers, read from its config alone: our `GPTConfig` or any Hugging Face causal-LM
config.json, built on PyTorch's meta device (shapes only, no memory, nothing downloaded). What `llmfs.memory`
counts bytes from, and what the workshop's limits count parameters with (`param_count`).
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

from .llama import LlamaConfig
from .model import GPT, GPTConfig
from .sources import looks_like_path
from .targets import QUANT_SKIP

MAX_LAYERS = 1000  # a typo guard: the largest released models have ~130 layers, and each layer is built (on meta)


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
    quantized_bias_params: int = 0
    """Biases of those layers: bitsandbytes keeps them in the compute dtype."""
    gpt: GPTConfig | None = None
    """Our GPT's config when the model is ours (activations are then counted op by op)."""


# -- reading a config ----------------------------------------------------------------------------------------------
def _load(config: Any) -> GPTConfig | dict[str, Any]:
    """A GPTConfig as it is; a LlamaConfig, a dict, a JSON string or a path (folder or config.json) -> the config
    dict.

    Raises:
        ValueError: not JSON, JSON that is not an object, a path with no config.json, no model_type.
    """
    if isinstance(config, GPTConfig):
        return config
    if isinstance(config, LlamaConfig):   # our Llama's config: its config.json, which transformers builds the same
        return config.to_hf_dict()
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
        cfg = GPTConfig(**payload)
        return dataclasses.replace(_from_model(_gpt_on_meta(cfg), cfg), gpt=cfg)
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
    from .sources import builtin_folder
    from .weights import peek_model_config
    if not source:
        return None
    config = peek_model_config(source)
    if isinstance(config, GPTConfig):
        return config
    path = builtin_folder(source) or Path(source).expanduser()
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
            return dataclasses.replace(_from_model(_gpt_on_meta(cfg), cfg), gpt=cfg)
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
    quantized_biases = sum(p.numel() for n, p in params.items() if n.rpartition(".")[0] in quantized
                           and n.endswith(".bias"))
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
        linears=linears, quantized_params=quantized_params, quantized_layers=len(quantized),
        quantized_bias_params=quantized_biases, **dims)


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
