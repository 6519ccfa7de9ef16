"""Hugging Face checkpoints <-> our from-scratch models: GPT-2 folders <-> ``llmfs.model.GPT``, Llama-family folders
(Llama, SmolLM, Qwen2) <-> ``llmfs.llama.Llama`` (whose parameter names are Hugging Face's, so that direction is a
plain load; see ``llmfs.llama.load_llama``).

The key conversion is pure (``hf_to_ours`` / ``ours_to_hf``); disk access sits in ``load_hf_folder`` and
``save_hf_folder``. Only safetensors files are read, plus ``pytorch_model.bin`` through
``torch.load(weights_only=True)``, which refuses arbitrary pickled objects. Remote code is never run.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .errors import SourceError
from .fsutil import make_temp_dir, replace_dir
from .llama import MODEL_TYPES as LLAMA_TYPES
from .llama import Llama, LlamaConfig, load_llama, save_llama
from .model import GPT, TINY_CONFIG, GPTConfig
from .sources import builtin_folder, is_default, resolve_model_dir

OurModel = GPT | Llama
# config.json model_types our own models read (None: a folder an older llmfs wrote without one, a GPT-2).
OUR_MODEL_TYPES = (None, "gpt2", *LLAMA_TYPES)

# HF's GPT-2 uses Conv1D, whose weight is (in, out); nn.Linear's is (out, in).
CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Causal-mask buffers that older transformers versions saved with the weights; we use is_causal instead.
BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")
WTE, LM_HEAD = "transformer.wte.weight", "lm_head.weight"

StateDict = dict[str, torch.Tensor]


def hf_to_ours(state_dict: StateDict) -> StateDict:
    """Convert a ``GPT2LMHeadModel`` or ``GPT2Model`` state dict to ``GPT``'s.

    Drops mask buffers, adds the ``transformer.`` prefix that hub checkpoints such as ``gpt2`` omit, transposes
    the four Conv1D weights and, when the checkpoint has no ``lm_head.weight`` (its head is tied), uses the
    token embedding as the head.
    """
    out: StateDict = {}
    for key, tensor in state_dict.items():
        if key.endswith(BUFFER_SUFFIXES):
            continue
        if not key.startswith(("transformer.", "lm_head.")):
            key = "transformer." + key
        out[key] = tensor.t() if key.endswith(CONV1D_SUFFIXES) else tensor
    if LM_HEAD not in out and WTE in out:
        out[LM_HEAD] = out[WTE]
    return out


def ours_to_hf(state_dict: StateDict) -> StateDict:
    """Convert ``GPT``'s state dict to the ``GPT2LMHeadModel`` layout (the inverse of ``hf_to_ours``).

    ``lm_head.weight`` is kept; drop it before saving a tied model to safetensors, which refuses shared tensors.
    """
    return {k: (v.t() if k.endswith(CONV1D_SUFFIXES) else v) for k, v in state_dict.items()}


def read_hf_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read ``config.json`` from a checkpoint folder and check it describes a GPT-2.

    Raises:
        FileNotFoundError: no config.json.
        ValueError: another architecture (e.g. model_type 'llama').
    """
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found; expected a Hugging Face model folder with a config.json")
    config = json.loads(config_file.read_text())
    model_type = config.get("model_type")
    if model_type != "gpt2":
        raise ValueError(
            f"only GPT-2-architecture checkpoints are supported (model_type 'gpt2'); "
            f"{config_file} has model_type {model_type!r}"
        )
    return config


def read_hf_state_dict(path: str | os.PathLike) -> StateDict:
    """Read the weights of a checkpoint folder: ``model.safetensors``, sharded safetensors or ``pytorch_model.bin``.

    Raises:
        FileNotFoundError: none of those files is there.
    """
    folder = Path(path)
    if (folder / "model.safetensors").is_file():
        return load_file(folder / "model.safetensors", device="cpu")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state_dict: StateDict = {}
        for shard in shards:
            state_dict.update(load_file(folder / shard, device="cpu"))
        return state_dict
    if (folder / "pytorch_model.bin").is_file():
        # weights_only=True: only tensors and plain containers are unpickled, never arbitrary objects.
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(
        f"no weights in {folder}: expected model.safetensors, model.safetensors.index.json or pytorch_model.bin"
    )


def load_hf_folder(
    path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> GPT:
    """Load a local Hugging Face GPT-2 folder (``save_pretrained`` output or a hub snapshot) as a ``GPT``.

    Args:
        path: folder with config.json and weights.
        device: where the returned model lives.
        dtype: parameter dtype; fp16/bf16 checkpoints are upcast to fp32 by default.

    Returns:
        the model in eval mode.

    Raises:
        ValueError: not GPT-2, an unsupported GPT-2 variant, or weights that do not match the config.
        FileNotFoundError: config.json or the weights are missing.
    """
    config = GPTConfig.from_hf(read_hf_config(path))
    state_dict = {k: v.to(dtype) for k, v in hf_to_ours(read_hf_state_dict(path)).items()}
    if config.tie_word_embeddings and WTE in state_dict:
        # Like transformers: a tied model's head is its embedding, whatever lm_head.weight the file holds.
        if not torch.equal(state_dict[LM_HEAD], state_dict[WTE]):
            warnings.warn(
                f"{path}: config ties the head to the embedding; ignoring the file's different lm_head.weight",
                stacklevel=2,
            )
        state_dict[LM_HEAD] = state_dict[WTE]
    with torch.device("meta"):  # no memory, no random init: every tensor comes from the file
        model = GPT(config)
    _check_keys(model, state_dict, path)
    model.load_state_dict(state_dict, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()  # assign=True gave the head its own Parameter object
    return model.to(device).eval()


def _check_keys(model: GPT, state_dict: StateDict, path: str | os.PathLike) -> None:
    expected, found = set(model.state_dict()), set(state_dict)
    if expected != found:
        missing, unexpected = sorted(expected - found), sorted(found - expected)
        raise ValueError(
            f"weights in {path} do not match its config.json: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


def save_hf_folder(model: OurModel, path: str | os.PathLike, tokenizer: Any = None) -> Path:
    """Write ``model`` as a Hugging Face GPT-2 (or Llama) folder that ``AutoModelForCausalLM.from_pretrained`` loads.

    Writes config.json, model.safetensors and, if given, the tokenizer (``tokenizer.save_pretrained``). The
    folder is built next to ``path`` and moved into place, so a crash never leaves a half-written checkpoint;
    an existing folder at ``path`` is replaced. A model whose vocabulary was padded for speed is saved without
    the padding rows (transformers' config has no notion of them; the logits of real tokens are the same).

    Returns:
        the folder path.
    """
    if isinstance(model, GPT) and model.config.padded_vocab_size is not None:
        from .vocab import unpad_vocab
        model = unpad_vocab(model)
    target = Path(path).resolve()
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(f".{target.name}.tmp-", target.parent)
    try:
        if isinstance(model, Llama):
            save_llama(model, tmp, tokenizer)
        else:
            _write_hf_files(model, tmp, tokenizer)
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _write_hf_files(model: GPT, folder: Path, tokenizer: Any) -> None:
    config = {**model.config.to_hf_dict(), "dtype": str(model.transformer.wte.weight.dtype).removeprefix("torch.")}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    state_dict = ours_to_hf(model.state_dict())
    if model.config.tie_word_embeddings:
        del state_dict[LM_HEAD]  # same storage as wte: safetensors refuses it, transformers re-ties on load
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})  # transformers checks "format"
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)



# -- sources, parity, summaries ---------------------------------------------------------------------------------
def load_pretrained(source: str) -> tuple[OurModel, Any]:
    """(model, tokenizer) from a built-in name, a local Hugging Face folder, or a hub id (fails fast offline): our
    GPT for GPT-2 checkpoints, our Llama for Llama-family ones (Llama, SmolLM, Qwen2).

    Raises:
        llmfs.sources.SourceError: the source cannot be found or fetched, has no tokenizer, or is another
            architecture (the message says what is supported).
    """
    from transformers import AutoTokenizer

    folder = resolve_model_dir(source)
    model = load_folder(folder, source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)  # trust_remote_code stays off (the default)
    except Exception as e:
        raise SourceError(f"The model folder {folder} has no usable tokenizer files ({type(e).__name__}); save the "
                          "tokenizer with the model (tokenizer.save_pretrained).") from e
    return model, tokenizer


def load_folder(folder: str | os.PathLike, source: str | None = None) -> OurModel:
    """Our model for a local Hugging Face folder, by its config.json's model_type.

    Raises:
        llmfs.sources.SourceError: an architecture neither of our models implements, or an unsupported variant.
    """
    name = source or str(folder)
    try:
        model_type = json.loads((Path(folder) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as e:
        raise SourceError(f"{name}: cannot read its config.json ({e}).") from e
    try:
        if model_type == "gpt2":
            return load_hf_folder(folder)
        if model_type in LLAMA_TYPES:
            return load_llama(folder)
    except ValueError as e:
        raise SourceError(f"{name}: {e}") from e
    raise SourceError(f"{name} is a {model_type!r} model. This lab's own models are GPT-2 (model_type gpt2: gpt2, "
                      "distilgpt2, llmfs-tiny) and Llama-family (llama, qwen2: smollm2-135m, SmolLM, Llama, Qwen2); "
                      "other causal LMs train with LoRA through PEFT on L15.")


PARITY_TOLERANCE = 1e-4
PARITY_TEXT = "The quick brown fox jumps over the lazy dog. def add(a, b): return a + b"


def parity_check(folder: str | os.PathLike, text: str = PARITY_TEXT, tokenizer: Any = None,
                 model: OurModel | None = None) -> dict:
    """Run `text` through our model (GPT or Llama) and through transformers' model loaded from the same folder, in fp32.

    Returns a dict: max_abs_delta, mean_abs_delta, tolerance, ok, n_tokens, reference (the transformers class),
    and the top-5 next tokens of each model for the last position, so a user sees the two agree.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(folder)
    ours = (model or load_folder(folder)).float().eval()
    reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
    ids = tokenizer(text, return_tensors="pt")["input_ids"][:, : ours.config.n_positions]
    with torch.no_grad():
        ours_logits = ours(ids.to(next(ours.parameters()).device))[0].float().cpu()
        ref_logits = reference(ids).logits.float()
    delta = (ours_logits - ref_logits).abs()
    top = lambda logits: [tokenizer.decode([int(i)]) for i in logits[0, -1].topk(5).indices]  # noqa: E731
    return {"max_abs_delta": delta.max().item(), "mean_abs_delta": delta.mean().item(),
            "tolerance": PARITY_TOLERANCE, "ok": delta.max().item() <= PARITY_TOLERANCE, "n_tokens": ids.shape[1],
            "reference": type(reference).__name__, "ours_top5": top(ours_logits), "reference_top5": top(ref_logits)}


def model_summary(model: OurModel) -> dict:
    """Architecture and a parameter table grouped the way the lesson talks about them."""
    cfg = model.config
    llama = isinstance(model, Llama)
    shape = {"family": "llama" if llama else "gpt2", "model_type": getattr(cfg, "model_type", "gpt2"),
             "n_layer": cfg.n_layer, "n_head": cfg.num_attention_heads if llama else cfg.n_head,
             "n_kv_head": cfg.num_key_value_heads if llama else cfg.n_head,
             "n_embd": cfg.hidden_size if llama else cfg.n_embd, "n_positions": cfg.n_positions,
             "vocab_size": cfg.vocab_size, "tie_word_embeddings": cfg.tie_word_embeddings}
    if llama:
        shape.update(intermediate_size=cfg.intermediate_size, rope_theta=cfg.rope_theta)
    groups: dict[str, int] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        groups[_param_group(name)] = groups.get(_param_group(name), 0) + p.numel()
    total = sum(groups.values())
    return {**shape, "total_params": total,
            "groups": [{"group": g, "params": n, "share": n / total} for g, n in groups.items()]}


def _param_group(name: str) -> str:
    if name.startswith("model.embed_tokens"):
        return "token embeddings (embed_tokens)"
    if name.startswith("model.layers."):
        part = "attention" if ".self_attn." in name else "MLP" if ".mlp." in name else "RMSNorms"
        return f"blocks: {part}"
    if name.startswith("model.norm"):
        return "final RMSNorm"
    if name.startswith("transformer.wte"):
        return "token embeddings (wte)"
    if name.startswith("transformer.wpe"):
        return "position embeddings (wpe)"
    if name.startswith("transformer.h."):
        part = "attention" if ".attn." in name else "MLP" if ".mlp." in name else "LayerNorms"
        return f"blocks: {part}"
    if name.startswith("transformer.ln_f"):
        return "final LayerNorm"
    return "LM head (untied)"


def peek_model_config(source: str) -> GPTConfig | LlamaConfig | None:
    """`source`'s config (GPTConfig or LlamaConfig) from its config.json alone, without loading weights or building
    anything; None when that cannot be known cheaply (a hub id not downloaded yet, a built-in not unpacked yet,
    another architecture)."""
    if is_default(source):
        return TINY_CONFIG
    path = builtin_folder(source) or Path(source).expanduser()
    try:
        config = json.loads((path / "config.json").read_text())
        if config.get("model_type") in LLAMA_TYPES:
            return LlamaConfig.from_hf(config)
        return GPTConfig.from_hf(read_hf_config(path))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def model_limits(source: str) -> dict[str, int]:
    """The largest values `source` allows for the training fields it bounds, from its config.json alone:
    `seq_len` (its context length) and `freeze_layers` (its number of blocks). Empty when that cannot be known
    cheaply (a hub id not downloaded yet, an unreadable folder): the run's preflight checks again."""
    gpt = peek_model_config(source)
    if gpt is not None:
        return {"seq_len": gpt.n_positions, "freeze_layers": gpt.n_layer}
    config_file = (builtin_folder(source) or Path(source).expanduser()) / "config.json"
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return {}
    limits = {"seq_len": config.get("max_position_embeddings") or config.get("n_positions"),
              "freeze_layers": config.get("num_hidden_layers") or config.get("n_layer")}
    return {k: v for k, v in limits.items() if isinstance(v, int) and not isinstance(v, bool) and v > 0}


def load_model(source: str, init: str = "pretrained", seed: int = 0) -> tuple[OurModel, Any]:
    """(model, tokenizer) for `source`; `init="random"` keeps the architecture and tokenizer, re-draws the weights."""
    model, tokenizer = load_pretrained(source)
    if init == "random":
        torch.manual_seed(seed)
        model = type(model)(model.config)
    return model, tokenizer
