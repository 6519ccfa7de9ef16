"""Model builders: a training run's model made ready from its config, one builder per model family, chosen from a
registry by the folder's `model_type` (litgpt maps configs to blocks the same way). Our own models, GPT-2 and the
Llama family (full fine-tuning with a freezing strategy, LoRA, or LoRA on a 4-bit base), and any other Hugging Face
causal LM (through PEFT) are built here; a new family plugs in with one entry in `BUILDERS`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import distributed, lora
from .config import TrainConfig
from .freeze import FreezePlan, apply_freeze, freeze_options
from .hf_causal import CausalLM, add_peft_lora, load_causal_lm, model_type_of
from .precision import plan_precision
from .sources import is_builtin, resolve_model_dir
from .train import count_params, resolve_device
from .weights import load_model


@dataclass
class BuiltModel:
    """What a training run trains: the model, its tokenizer, the freezing plan (full fine-tunes of our GPT; None
    for LoRA and other families) and the name an adapter records as its base."""
    model: Any
    tokenizer: Any
    plan: FreezePlan | None
    base_name: str


# builder(ctx, cfg, folder, base_name, device) -> BuiltModel; ctx logs and emits (a JobContext)
Builder = Callable[[Any, TrainConfig, Path, str, str], BuiltModel]


def build_model(ctx, cfg: TrainConfig) -> BuiltModel:
    """The model `cfg` names, ready to train, by the builder registered for its family."""
    device = distributed.device_for(distributed.current(), resolve_device(cfg.device))  # a rank's own GPU
    folder = resolve_model_dir(cfg.model)
    # What an adapter names as its base: a hub id as given; for the built-in models and folders the Hugging Face
    # folder's absolute path, so PeftModel.from_pretrained finds the base from anywhere.
    local = is_builtin(cfg.model) or Path(cfg.model).expanduser().exists()
    base_name = str(folder.resolve()) if local else cfg.model
    return builder_for(model_type_of(folder))(ctx, cfg, folder, base_name, device)


def builder_for(model_type: str | None) -> Builder:
    """The registered builder of a family; any other causal LM goes through transformers + PEFT."""
    return BUILDERS.get(model_type, build_hf_causal)


# -- our own models: GPT-2 and the Llama family -----------------------------------------------------------------
def build_ours(ctx, cfg: TrainConfig, folder: Path, base_name: str, device: str) -> BuiltModel:
    """Our GPT-2 or Llama: every weight (under a freezing strategy), or our LoRA adapters (in PEFT's format), on
    a 4-bit base for QLoRA."""
    model, tokenizer = load_model(cfg.model, init=cfg.init, seed=cfg.seed)  # a private copy: this job's own
    cfg.check_context(model.config.n_positions)
    cfg.check_layers(model.config.n_layer)
    if not cfg.lora:
        return BuiltModel(model, tokenizer, _frozen(ctx, cfg, model), base_name)
    if cfg.quantize == "4bit":
        _quantize_base(ctx, cfg, model, device)
    layers = lora.add_adapter(model, "default", rank=cfg.lora_rank, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                              rslora=cfg.lora_rslora, targets=cfg.lora_targets,
                              model_type=getattr(model.config, "model_type", "gpt2"), seed=cfg.seed)
    lora.mark_trainable(model, "default")
    log_lora(ctx, cfg, *count_params(model), len(layers))
    return BuiltModel(model, tokenizer, None, base_name)


def _frozen(ctx, cfg: TrainConfig, model) -> FreezePlan:
    plan = apply_freeze(model, **freeze_options(cfg))
    ctx.log(plan.summary())
    ctx.emit(0, kind="freeze", strategy=plan.strategy, trainable_params=plan.trainable_params,
             total_params=plan.total_params)
    return plan


def _quantize_base(ctx, cfg: TrainConfig, model, device: str) -> None:
    n = lora.quantize_4bit(model, double_quant=cfg.double_quant, device=device,
                           compute_dtype=plan_precision(cfg.precision, device).compute_dtype)
    ctx.log(f"Base weights of {n} linear layers quantized to 4-bit NF4"
            f"{' with double quantization' if cfg.double_quant else ''} (bitsandbytes).")


# -- any other causal LM ------------------------------------------------------------------------------------------
def build_hf_causal(ctx, cfg: TrainConfig, folder: Path, base_name: str, device: str) -> BuiltModel:
    """A transformers causal LM (Llama, Qwen, ...): LoRA through PEFT (on a 4-bit base for QLoRA), or every weight
    trains."""
    hf, tokenizer = load_causal_lm(folder, quantize=cfg.quantize, double_quant=cfg.double_quant, device=device,
                                   compute_dtype=plan_precision(cfg.precision, device).compute_dtype)
    if cfg.lora:
        hf = add_peft_lora(hf, rank=cfg.lora_rank, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                           targets=cfg.lora_targets, rslora=cfg.lora_rslora, base_model=base_name)
    model = CausalLM(hf)
    cfg.check_context(model.config.n_positions)
    trainable, total = count_params(model)
    if cfg.lora:
        log_lora(ctx, cfg, trainable, total, None, via="PEFT")
    else:
        ctx.log(f"Full fine-tune of a {model.config.model_type} model: all {total:,} parameters train.")
    return BuiltModel(model, tokenizer, None, base_name)


def log_lora(ctx, cfg: TrainConfig, trainable: int, total: int, n_layers: int | None,
             via: str = "llmfs.lora") -> None:
    where = f" on {n_layers} layers" if n_layers is not None else ""
    ctx.log(f"LoRA rank {cfg.lora_rank}, alpha {cfg.lora_alpha:g} ({cfg.lora_targets}){where} via {via}: "
            f"{trainable:,} of {total:,} parameters train ({trainable / max(total, 1):.2%}).")
    ctx.emit(0, kind="freeze", strategy=f"lora r={cfg.lora_rank}", trainable_params=trainable, total_params=total)


build_gpt = build_ours  # the name earlier code and tests use

# model_type (config.json) -> builder. None: a folder without model_type (written by an older llmfs): our GPT.
BUILDERS: dict[str | None, Builder] = {"gpt2": build_ours, None: build_ours, "llama": build_ours,
                                       "qwen2": build_ours}
