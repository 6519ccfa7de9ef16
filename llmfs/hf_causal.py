"""Causal LMs other than GPT-2 (Llama, Qwen, Mistral, ...) on the same training loop, through transformers + PEFT.

Our from-scratch GPT covers the GPT-2 family; for other architectures the lab does not re-write the model: it loads
it with `AutoModelForCausalLM` (local files only, `trust_remote_code` off), puts PEFT's LoRA on it, and wraps it in
`CausalLM`, which speaks our GPT's interface (`model(idx, targets) -> (logits, loss)`, `generate`,
`config.n_positions`), so `llmfs.train.train`, the job runner and the sampling helpers work on it unchanged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

from .sources import SourceError


@dataclass(frozen=True)
class CausalConfig:
    """What the training loop and the samplers read from a model's config."""

    n_positions: int
    vocab_size: int
    model_type: str


def model_type_of(folder: str | os.PathLike) -> str | None:
    """config.json's model_type, or None when there is no readable config."""
    try:
        return json.loads((Path(folder) / "config.json").read_text()).get("model_type")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def context_length(hf_config: Any) -> int:
    for name in ("max_position_embeddings", "n_positions", "seq_length", "max_sequence_length"):
        value = getattr(hf_config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


class CausalLM(nn.Module):
    """A transformers causal LM (bare or PEFT-wrapped) behind our GPT's interface.

    Its checkpoints hold the trainable tensors only (`partial_checkpoint`): the frozen base comes back from its
    folder when a run resumes, so a 7B base is not copied into every checkpoint.
    """

    partial_checkpoint = True

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model
        cfg = getattr(hf_model, "config")
        self.config = CausalConfig(n_positions=context_length(cfg), vocab_size=int(cfg.vocab_size),
                                   model_type=str(getattr(cfg, "model_type", "unknown")))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.hf(input_ids=idx, use_cache=False).logits  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, **kwargs) -> torch.Tensor:
        """The same sampler as our GPT's (temperature, top-k, top-p, eos, generator), so texts compare fairly."""
        from .model import GPT
        return GPT.generate(self, idx, max_new_tokens, **kwargs)


def load_causal_lm(folder: str | os.PathLike, *, quantize: str = "none", double_quant: bool = True,
                   device: str | torch.device = "cpu", compute_dtype: torch.dtype = torch.float32):
    """(transformers model, tokenizer) from a local Hugging Face folder; 4-bit base layers when `quantize="4bit"`.

    Raises:
        SourceError: no usable model or tokenizer in the folder, or an architecture transformers does not know.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, trust_remote_code=False)
    except Exception as e:  # unknown model_type, missing weights, remote code required, ...
        raise SourceError(f"transformers could not load the model in {folder}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]}. The lab loads causal LMs that transformers supports "
                          "without remote code, from safetensors or PyTorch weights.") from e
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as e:
        raise SourceError(f"The model folder {folder} has no usable tokenizer files ({type(e).__name__}); save the "
                          "tokenizer with the model (tokenizer.save_pretrained).") from e
    if quantize == "4bit":
        from .lora import quantize_4bit
        quantize_4bit(model, double_quant=double_quant, device=device, compute_dtype=compute_dtype)
    return model.to(device), tokenizer


def add_peft_lora(hf_model: nn.Module, *, rank: int, alpha: float, dropout: float, targets: str,
                  rslora: bool, base_model: str) -> nn.Module:
    """PEFT's LoRA on `hf_model` (targets in the lesson's names or module names); only the adapters train."""
    from peft import LoraConfig, get_peft_model

    from .lora import target_modules
    model_type = getattr(hf_model.config, "model_type", "unknown")
    try:
        modules = target_modules(targets, model_type)
    except ValueError as e:
        raise SourceError(str(e)) from e
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=modules, use_rslora=rslora,
                        bias="none", task_type="CAUSAL_LM", base_model_name_or_path=base_model)
    try:
        return get_peft_model(hf_model, config)
    except ValueError as e:  # "Target modules ... not found in the base model"
        raise SourceError(f"LoRA targets {', '.join(modules)} do not match this {model_type} model's layers: "
                          f"{str(e).splitlines()[0][:200]}") from e
