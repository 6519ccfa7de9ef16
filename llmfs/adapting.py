"""Using adapters: several on one loaded base (switch, mix, compare generations), and merging one into a full model.

Bases our own models read (GPT-2; Llama, SmolLM, Qwen2: `weights.OUR_MODEL_TYPES`) carry our `llmfs.lora` layers;
other architectures carry PEFT's (`PeftModel.load_adapter` / `set_adapter`). Either way the base is loaded once and
adapters are switched by a flag, never by reloading.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import shutil
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn

from .fsutil import make_temp_dir, replace_dir
from .sources import SourceError, resolve_model_dir
from .weights import OUR_MODEL_TYPES

BASE = "(base model)"  # the label of generations without any adapter
GENERATION_CONFIG = "generation_config.json"


@dataclass
class AdaptedModel:
    """A base model with named adapters attached (our GPT or Llama + llmfs.lora, or a transformers model + PEFT)."""

    model: nn.Module          # what generate_text samples from (our GPT or Llama, or hf_causal.CausalLM)
    tokenizer: Any
    adapters: dict[str, str] = field(default_factory=dict)  # name -> folder
    peft: bool = False        # True: a transformers model with PEFT adapters

    def activate(self, adapters: str | Mapping[str, float] | None) -> None:
        """None: the base alone; a name; or {name: weight} for a weighted combination (ours only)."""
        if not self.peft:
            from .lora import set_active
            set_active(self.model, adapters)
            return
        peft_model = self.model.hf
        if adapters is None:
            peft_model.base_model.disable_adapter_layers()
            return
        if isinstance(adapters, Mapping):
            live = [n for n, w in adapters.items() if w]
            if len(live) != 1 or adapters[live[0]] != 1.0:
                raise ValueError("Weighted combinations of adapters are offered on this lab's own models (GPT-2 "
                                 "and the Llama family); for this architecture pick one adapter at a time.")
            adapters = live[0]
        peft_model.base_model.enable_adapter_layers()
        peft_model.set_adapter(adapters)


def base_of(adapter_dir: str | os.PathLike) -> str:
    """The base model an adapter names (`base_model_name_or_path`), or "" when it does not say."""
    from .lora import read_adapter_config
    return str(read_adapter_config(adapter_dir).get("base_model_name_or_path") or "")


def attach(base: str, adapters: Mapping[str, str | os.PathLike], device: str = "cpu") -> AdaptedModel:
    """Load `base` once and attach each adapter under its name (all inactive until `activate`).

    Raises:
        SourceError: the base cannot be loaded, or an adapter does not fit it.
    """
    from .hf_causal import model_type_of
    folder = resolve_model_dir(base)
    if model_type_of(folder) not in OUR_MODEL_TYPES:
        return _attach_peft(folder, adapters, device)
    from .lora import load_adapter_into
    from .weights import load_pretrained
    model, tokenizer = load_pretrained(base)
    model.to(device).eval()
    out = AdaptedModel(model, tokenizer)
    for name, path in adapters.items():
        load_adapter_into(model, path, name=name, activate=False)
        out.adapters[name] = str(path)
    return out


def _attach_peft(folder: Path, adapters: Mapping[str, str | os.PathLike], device: str) -> AdaptedModel:
    from peft import PeftModel

    from .hf_causal import CausalLM, load_causal_lm
    hf, tokenizer = load_causal_lm(folder, device=device)
    peft_model = None
    for name, path in adapters.items():
        try:
            if peft_model is None:
                peft_model = PeftModel.from_pretrained(hf, str(path), adapter_name=name)
            else:
                peft_model.load_adapter(str(path), adapter_name=name)
        except Exception as e:
            raise SourceError(f"The adapter in {path} does not fit {folder}: {type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]}") from e
    model = CausalLM(peft_model if peft_model is not None else hf).eval()
    return AdaptedModel(model, tokenizer, {n: str(p) for n, p in adapters.items()}, peft=peft_model is not None)


def compare_generations(adapted: AdaptedModel, prompt: str, variants: Mapping[str, Any], cfg=None) -> list[dict]:
    """The same prompt and seed through each variant: label -> what `activate` takes (None = the base).

    Returns [{"label", "text"}] in the order given; the base weights are never changed.
    """
    from .generate import SampleConfig, generate_text
    cfg = cfg or SampleConfig()
    out = []
    try:
        for label, active in variants.items():
            adapted.activate(active)
            out.append({"label": label, "text": generate_text(adapted.model, adapted.tokenizer, prompt, cfg)})
    finally:
        adapted.activate(None)
    return out


_WORDS = re.compile(r"\s+|[^\s]+")


def word_diff(base: str, other: str) -> list[tuple[str, bool]]:
    """`other` cut into pieces, each marked True where it differs from `base` (a word-level difflib diff; the
    whitespace between words is kept and never marked). Joining the pieces gives `other` back exactly."""
    a, b = _WORDS.findall(base), _WORDS.findall(other)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    pieces: list[tuple[str, bool]] = []
    for tag, _, _, j1, j2 in matcher.get_opcodes():
        for word in b[j1:j2]:
            pieces.append((word, tag != "equal" and not word.isspace()))
    return pieces


def changed_share(base: str, other: str) -> float:
    """The share of `other`'s words (whitespace aside) that differ from `base`: 0.0 identical, 1.0 all different."""
    words = [changed for piece, changed in word_diff(base, other) if not piece.isspace()]
    return sum(words) / len(words) if words else (0.0 if base == other else 1.0)


def zip_model_folder(folder: str | os.PathLike) -> bytes:
    """A model folder (a merged model: config, weights, tokenizer) as a zip with its files inside one folder of the
    same name, ready for a download button and for `from_pretrained` once unpacked. Weights are stored as they are
    (they do not compress), the rest deflated; only plain files are taken (no links, no sub-folders)."""
    folder = Path(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(folder.iterdir()):
            if f.is_file() and not f.is_symlink() and not f.name.startswith("."):
                stored = f.suffix in (".safetensors", ".bin", ".pt", ".pth")
                zf.write(f, arcname=f"{folder.name}/{f.name}",
                         compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def merge_adapter(adapter_dir: str | os.PathLike, out_dir: str | os.PathLike, base: str | None = None) -> Path:
    """Fold the adapter into its base's full-precision weights and save a Hugging Face model folder (weights,
    config, tokenizer) that every lesson can load, e.g. L14's evaluation. Written to a temp folder, then moved.

    Args:
        base: the base model; default: the adapter's `base_model_name_or_path`.
    Raises:
        SourceError: no base named, or the adapter does not fit it.
    """
    from .hf_causal import model_type_of
    base = base or base_of(adapter_dir)
    if not base:
        raise SourceError(f"The adapter in {adapter_dir} does not name its base model (base_model_name_or_path is "
                          "empty): say which model it was trained on.")
    folder = resolve_model_dir(base)
    out_dir = Path(out_dir).expanduser()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(f".{out_dir.name}.tmp-", out_dir.parent)
    try:
        if model_type_of(folder) not in OUR_MODEL_TYPES:
            from peft import PeftModel

            from .hf_causal import load_causal_lm
            hf, tokenizer = load_causal_lm(folder)
            merged = PeftModel.from_pretrained(hf, str(adapter_dir)).merge_and_unload()
            merged.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        else:
            from .lora import load_adapter_into, merge_and_unload
            from .weights import load_pretrained, save_hf_folder
            model, tokenizer = load_pretrained(base)   # our own copy: merged in place, no second one in memory
            load_adapter_into(model, adapter_dir)
            # a head tied to the embeddings (SmolLM2's) is untied first when the adapter changes it
            save_hf_folder(merge_and_unload(model).eval(), tmp / "model", tokenizer=tokenizer)
            os.replace(tmp / "model", tmp / "merged")
            _flatten(tmp / "merged", tmp)
            # the base's generation defaults (end-of-text id, sampling settings), which our save does not write
            if (folder / GENERATION_CONFIG).is_file():
                shutil.copyfile(folder / GENERATION_CONFIG, tmp / GENERATION_CONFIG)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _flatten(src: Path, dest: Path) -> None:
    """Move src's files up into dest (save_hf_folder writes into a folder of its own)."""
    for f in src.iterdir():
        os.replace(f, dest / f.name)
    src.rmdir()
