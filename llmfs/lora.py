"""LoRA adapters (L15). For now: loading an adapter saved in PEFT's format onto our GPT, for evaluation.

The lesson's own LoRA modules, training, QLoRA and adapter swapping arrive with L15; the loading path already goes
through PEFT itself, so an adapter trained anywhere with PEFT on a GPT-2 base gives the same logits here.
"""

from __future__ import annotations

import os
from pathlib import Path

from .model import GPT
from .sources import SourceError
from .weights import hf_to_ours, ours_to_hf


def load_adapter(model: GPT, path: str | os.PathLike) -> GPT:
    """A copy of `model` with the LoRA adapter at `path` (adapter_config.json + adapter_model.safetensors, as
    `peft.PeftModel.save_pretrained` writes it) merged into its weights. `model` itself is not changed.

    The adapter is applied by PEFT on the equivalent transformers GPT2LMHeadModel (same weights, converted), then
    merged (W + B A * alpha / r) and converted back: PEFT stays the reference for what an adapter means.
    Raises:
        SourceError: not an adapter folder, or an adapter for another architecture.
    """
    from peft import PeftModel
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = Path(path).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise SourceError(f"{folder} is not an adapter folder: it needs adapter_config.json and "
                          "adapter_model.safetensors (what PEFT's save_pretrained writes).")
    hf = GPT2LMHeadModel(GPT2Config(**model.config.to_hf_dict()))
    missing, unexpected = hf.load_state_dict(ours_to_hf(model.state_dict()), strict=False)
    if unexpected or [k for k in missing if not k.endswith(("attn.bias", "attn.masked_bias"))]:
        raise SourceError(f"Could not rebuild the base model for the adapter (missing {missing[:3]}).")
    try:
        merged = PeftModel.from_pretrained(hf, str(folder)).merge_and_unload()
    except Exception as e:  # wrong target module names, shapes from another base model, ...
        raise SourceError(f"The adapter in {folder} does not fit this model: {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]}") from e
    out = GPT(model.config)
    out.load_state_dict(hf_to_ours(merged.state_dict()))
    if model.config.tie_word_embeddings:
        out.tie_weights()
    return out.to(next(model.parameters()).device).eval()

