"""Frozen config dataclasses: one source of truth for the UI form, the CLI flags and the job payload.

Each field carries its plain-language help and allowed range in `metadata`, so `app.forms` can draw a widget with
help text and the CLI can print the same help. Validation happens in `__post_init__` and names the field, the
allowed range and the value that was given.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_type_hints

from .errors import ConfigError  # noqa: F401 (importers take it from here too)
from .targets import STRATEGIES, parse_targets

DEFAULT_MODEL = "llmfs-tiny"
DEFAULT_DATA = "llmfs-corpus"
PYTHON_QA = "llmfs-python-qa"   # the built-in question / answer set (`llmfs.data.examples.python_qa`)

# Which parameters train; `llmfs.freeze` implements each, `llmfs.targets.STRATEGIES` describes them.
FreezeStrategy = Literal["full", "linear_probe", "freeze_embeddings", "freeze_bottom", "train_top", "bitfit",
                         "gradual", "llrd"]
# Fields of TrainConfig that belong to a lesson's own controls (L12's freezing, L15's LoRA).
FREEZE_FIELDS = ("freeze", "freeze_layers", "unfreeze_every", "layer_lr_decay")
DIST_FIELDS = ("processes", "strategy")
LORA_FIELDS = ("lora_rank", "lora_alpha", "lora_targets", "lora_dropout", "lora_rslora", "quantize", "double_quant")
assert tuple(STRATEGIES) == get_args(FreezeStrategy), "targets.STRATEGIES and FreezeStrategy must list the same names"
# Strategies that read `freeze_layers`.
FREEZE_USES_LAYERS = ("freeze_bottom", "train_top")


def option(default: Any, help: str, *, min: float | None = None, max: float | None = None,
           label: str | None = None, advanced: bool = False, step: float | None = None) -> Any:
    """A dataclass field with the metadata the UI and CLI read: help text, range, label, whether it is advanced."""
    meta = {"help": help, "min": min, "max": max, "label": label, "advanced": advanced, "step": step}
    return field(default=default, metadata={k: v for k, v in meta.items() if v is not None})


def field_info(cls_or_obj: Any) -> dict[str, dict]:
    """name -> {type, default, help, min, max, choices, ...} for every field of a config dataclass."""
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    hints = get_type_hints(cls)
    info = {}
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        choices = get_args(t) if getattr(t, "__origin__", None) is Literal else None
        info[f.name] = {"type": t, "default": f.default, "choices": choices, **f.metadata}
    return info


def check_fields(obj: Any) -> None:
    """Check every field of `obj` against its type, Literal choices and min / max metadata."""
    for name, meta in field_info(obj).items():
        value = getattr(obj, name)
        label = meta.get("label") or name  # the words the form shows beside the field (the CLI adds its flag)
        if meta.get("choices") is not None:
            if value not in meta["choices"]:
                raise ConfigError(name, f"{label} must be one of {', '.join(map(str, meta['choices']))} "
                                        f"(got {value!r}).")
            continue
        if value is None:
            continue
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(name, f"{label} must be a finite number (got {value!r}).")
            lo, hi = meta.get("min"), meta.get("max")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ConfigError(name, f"{label} must be between {_fmt(lo)} and {_fmt(hi)} (got {_fmt(value)}).")


def _fmt(x: Any) -> str:
    if x is None:
        return "any"
    if isinstance(x, float) and (abs(x) < 1e-3 or abs(x) >= 1e6) and x != 0:
        return f"{x:.0e}"
    return f"{x:g}" if isinstance(x, float) else str(x)


@dataclass(frozen=True)
class TrainConfig:
    """A training run: which model, which text, how long and how fast to learn."""

    model: str = option(DEFAULT_MODEL, "The model to start from: `llmfs-tiny` or `smollm2-135m` (built in, work "
                                       "offline), a folder holding a Hugging Face GPT-2 or Llama-family model, or a "
                                       "hub id such as `gpt2`.", label="Model")
    init: Literal["pretrained", "random"] = option(
        "pretrained", "Start from the model's trained weights, or from random weights of the same shape "
                      "(to see what pretraining is worth).", label="Initial weights")
    data: str = option(DEFAULT_DATA, "What to train on: `llmfs-corpus` (Python's own documentation, built in), "
                                     "`llmfs-python-qa` (questions and answers about Python, built in), a .txt / "
                                     ".jsonl file or a folder of them, or a file of examples (.jsonl / .json / .csv "
                                     "in chat, prompt / response or Alpaca format).", label="Training data")
    data_format: Literal["auto", "text", "chat", "prompt", "alpaca"] = option(
        "auto", "How to read the data. `auto`: examples when the file holds them (chat {\"messages\": [...]}, "
                "{\"prompt\", \"response\"} or Alpaca {\"instruction\", \"input\", \"output\"}), else plain text. "
                "`text`: plain text, read as one long stream. `chat` / `prompt` / `alpaca`: require that format.",
        advanced=True, label="Data format")
    train_on: Literal["assistant", "all"] = option(
        "assistant", "For examples: `assistant` trains only on the answers (the model learns to answer, not to write "
                     "questions); `all` trains on every token of each conversation, template included.",
        advanced=True, label="Learn from")
    pack: bool = option(False, "For examples: pack several examples into each sequence (less padding, but an "
                               "example then attends to the one before it). Off: one example per row.",
                        advanced=True, label="Pack examples together")
    steps: int = option(100, "How many optimizer updates to make. More steps = longer training.",
                        min=1, max=1_000_000, label="Training steps")
    epochs: float | None = option(None, "Instead of a step count: how many passes over the training data. "
                                        "Leave empty to use the step count.", min=0.01, max=1000, advanced=True,
                                  label="Epochs")
    batch_size: int = option(8, "Sequences per update. Larger batches use more memory but give steadier updates.",
                             min=1, max=4096, label="Batch size")
    seq_len: int = option(128, "Tokens per sequence (at most the model's context length). Memory grows with it.",
                          min=2, max=131072, label="Sequence length")
    grad_accum: int = option(1, "Add up gradients over this many batches before each update: a larger effective "
                                "batch without more memory.", min=1, max=1024, advanced=True,
                             label="Gradient accumulation")
    lr: float = option(1e-3, "Learning rate: how big each update is. Too high diverges, too low learns slowly.",
                       min=1e-8, max=1.0, label="Learning rate", step=1e-4)
    min_lr_ratio: float = option(0.1, "The learning rate decays (cosine) to this fraction of its peak.",
                                 min=0.0, max=1.0, advanced=True, label="Final learning rate (fraction of peak)")
    warmup_steps: int = option(10, "Steps over which the learning rate ramps up from zero (avoids early "
                                   "instability).", min=0, max=1_000_000, advanced=True, label="Warm-up steps")
    weight_decay: float = option(0.1, "AdamW weight decay (applied to matrices, not to biases or LayerNorms).",
                                 min=0.0, max=1.0, advanced=True, label="Weight decay")
    beta1: float = option(0.9, "AdamW beta1 (momentum).", min=0.0, max=0.9999, advanced=True, label="Adam beta1")
    beta2: float = option(0.95, "AdamW beta2 (second-moment averaging).", min=0.0, max=0.9999, advanced=True,
                          label="Adam beta2")
    grad_clip: float = option(1.0, "Clip the gradient norm to this value; 0 turns clipping off.",
                              min=0.0, max=1000.0, advanced=True, label="Gradient clipping")
    eval_every: int = option(25, "Measure the loss on held-out text every N steps (0 = only at the end).",
                             min=0, max=1_000_000, label="Evaluate every N steps")
    eval_batches: int = option(4, "Batches of held-out text per evaluation. On llmfs-corpus they are batches of "
                                  "the held-out windows Home's figure for llmfs-tiny is measured on, and the last "
                                  "evaluation reads all of those, so its figure and Home's compare.", min=1,
                               max=10_000, advanced=True, label="Held-out batches per evaluation")
    checkpoint_every: int = option(50, "Save a checkpoint every N steps so the run can resume (0 = only at the "
                                       "end).", min=0, max=1_000_000, advanced=True, label="Checkpoint every N steps")
    seed: int = option(1337, "Random seed: the same seed gives the same run.", min=0, max=2**31 - 1, advanced=True,
                       label="Random seed")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "Where to train: `auto` picks the GPU when there is "
                                                            "one.", advanced=True, label="Device")
    save_model: bool = option(True, "Save the trained model as a Hugging Face folder in the run directory.",
                              advanced=True, label="Save the trained model")
    freeze: FreezeStrategy = option(
        "full", "Which parts of the model learn; the rest keep their pretrained values. "
                "`full`: everything. "
                "`linear_probe`: only the output layer (the head); a head that shares its weights with the word "
                "embeddings gets its own copy first, so the embeddings stay as they were. "
                "`freeze_embeddings`: everything except the word and position embeddings (a head that shares the "
                "word embeddings' weights stays frozen with them). "
                "`freeze_bottom`: like freeze_embeddings, and also the lowest blocks (how many: Blocks). "
                "`train_top`: only the top blocks (how many: Blocks), the final norm and the head. "
                "`bitfit`: only the biases and normalisation weights, a tiny fraction of the model. "
                "`gradual`: start with the head and the top block, and unfreeze one more block every few steps. "
                "`llrd`: everything, but lower layers learn more slowly.",
        label="Which layers train")
    freeze_layers: int = option(1, "How many blocks `freeze_bottom` freezes (counted from the input) or `train_top` "
                                   "trains (counted from the output). Other strategies ignore it.",
                                min=0, max=1000, advanced=True, label="Blocks (freeze_bottom / train_top)")
    unfreeze_every: int = option(20, "For `gradual`: how many steps pass before the next lower block starts to "
                                     "learn.", min=1, max=1_000_000, advanced=True, label="Unfreeze a block every")
    layer_lr_decay: float = option(0.8, "For `llrd`: each block down from the top learns at this fraction of the "
                                        "speed of the block above it (1 = all the same).",
                                   min=0.1, max=1.0, advanced=True, label="Layer learning-rate decay", step=0.05)
    lora_rank: int = option(0, "LoRA: leave the model's weights frozen and train small low-rank adapters beside "
                               "them. The rank r is the adapters' width: 0 turns LoRA off (the freezing strategy "
                               "decides what trains); 4 to 16 is typical.", min=0, max=4096,
                            label="LoRA rank (0 = off)")
    lora_alpha: float = option(16.0, "LoRA alpha: the adapters' update is scaled by alpha / rank, so doubling alpha "
                                     "acts like doubling the adapters' learning rate. A common choice is 2 x rank.",
                               min=0.01, max=100_000.0, label="LoRA alpha", step=1.0)
    lora_targets: str = option("qkv", "Which layers get adapters, comma-separated: `qkv` (attention's query / key / "
                                      "value), `attn_proj` (attention's output), `mlp_in`, `mlp_out`, `lm_head` (the "
                                      "output head), or `all-linear` (every layer in the blocks). For Llama-style "
                                      "models the same names work; module names such as q_proj,v_proj too.",
                               label="LoRA target layers")
    lora_dropout: float = option(0.0, "Dropout on the adapters' input while training; 0.05 to 0.1 can help on small "
                                      "datasets.", min=0.0, max=0.9, advanced=True, label="LoRA dropout", step=0.05)
    lora_rslora: bool = option(False, "rsLoRA: scale by alpha / sqrt(rank) instead of alpha / rank, so adapters of "
                                      "high rank still learn (Kalajdzievski 2023).", advanced=True,
                               label="rsLoRA scaling")
    quantize: Literal["none", "4bit"] = option(
        "none", "QLoRA: keep the frozen base weights in 4-bit NF4 (bitsandbytes), about a quarter of their 16-bit "
                "memory, while the adapters train in full precision. Needs LoRA (rank above 0).",
        label="Base weights in 4-bit")
    double_quant: bool = option(True, "QLoRA's double quantization: also compress the 4-bit weights' scale factors "
                                      "(about 0.4 bit per weight less).", advanced=True, label="Double quantization")
    precision: Literal["fp32", "fp16", "bf16", "bf16-pure"] = option(
        "fp32", "Number format for training. `fp32`: 32-bit everywhere (the reference). `fp16`: matmuls in 16-bit "
                "with loss scaling (fast on GPUs; emulated, so slow, on most CPUs). `bf16`: matmuls in bfloat16, "
                "fp32's range with fewer digits, no scaling needed (GPUs from compute capability 8.0). `bf16-pure`: "
                "the weights and optimizer themselves in bf16, half the memory of everything, less accurate "
                "updates.", label="Precision")
    tf32: bool = option(False, "On GPUs from compute capability 8.0: run fp32 matmuls on tensor cores in TF32 "
                               "(10-bit mantissa), much faster, usually with no visible effect on training.",
                        advanced=True, label="TF32 matmuls")
    grad_scaling: bool = option(True, "fp16 only: scale the loss so small gradients survive fp16's range (and skip "
                                      "steps whose gradients overflow). Turn off only to see why it exists.",
                                advanced=True, label="Loss scaling (fp16)")
    processes: int = option(0, "Training processes, started through torchrun (one per GPU): 0 = one per GPU when "
                               "this machine has several, else 1. Above 1 without GPUs: CPU processes (gloo), to try "
                               "distributed training out. The batch size is per process.",
                            min=0, max=1024, advanced=True, label="Processes")
    strategy: Literal["ddp", "fsdp"] = option(
        "ddp", "With several processes: `ddp` keeps a whole copy of the model in each and averages the gradients "
               "(simplest and fastest when the model fits one GPU); `fsdp` splits weights, gradients and optimizer "
               "states across them, for models that do not fit one.", advanced=True, label="Distributed strategy")

    def __post_init__(self) -> None:
        check_fields(self)
        if not str(self.model).strip():
            raise ConfigError("model", "model is empty: use llmfs-tiny, a model folder, or a hub id like gpt2.")
        if not str(self.data).strip():
            raise ConfigError("data", "data is empty: use llmfs-corpus or the path of a .txt / .jsonl file.")
        if self.quantize != "none" and not self.lora_rank:
            raise ConfigError("quantize", "4-bit base weights (QLoRA) train adapters only: set a LoRA rank above 0, "
                                          "or turn 4-bit off.")
        if self.lora_rank and self.freeze != "full":
            raise ConfigError("freeze", f"With LoRA the model's own weights stay frozen and only the adapters train, "
                                        f"so the freezing strategy must stay `full` (got {self.freeze}). Set the "
                                        "LoRA rank to 0 to use a freezing strategy instead.")
        if self.quantize == "4bit" and self.precision == "bf16-pure":
            raise ConfigError("precision", "A 4-bit base keeps its own storage format: pick bf16 (autocast) for "
                                           "QLoRA, not bf16-pure.")
        if self.lora_rank and self.init != "pretrained":
            raise ConfigError("init", "LoRA adapts a pretrained model: start from its pretrained weights, or set the "
                                      "LoRA rank to 0 to train from random weights.")
        if self.strategy == "fsdp" and self.quantize != "none":
            raise ConfigError("strategy", "FSDP cannot shard 4-bit (bitsandbytes) weights: use ddp for QLoRA.")
        if self.strategy == "fsdp" and self.precision == "fp16":
            raise ConfigError("precision", "fp16's loss scaler needs every rank to agree on skipped steps, which "
                                           "sharded gradients do not give: use bf16 with FSDP.")
        if self.lora_rank:
            try:
                parse_targets(self.lora_targets)
            except ValueError as e:
                raise ConfigError("lora_targets", str(e)) from e

    @property
    def lora(self) -> bool:
        """True when this run trains LoRA adapters instead of the model's weights."""
        return self.lora_rank > 0

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len * self.grad_accum

    def check_context(self, n_positions: int) -> None:
        """Refuse a sequence longer than the model can attend over, before any job starts."""
        if self.seq_len > n_positions:
            raise ConfigError("seq_len", f"Sequence length must be between 2 and {n_positions}, the model's "
                                         f"context length (got {self.seq_len}).")

    def check_layers(self, n_layer: int) -> None:
        """Refuse a block count the model does not have, when the freezing strategy uses it."""
        if self.freeze in FREEZE_USES_LAYERS and self.freeze_layers > n_layer:
            label = field_info(self)["freeze_layers"].get("label") or "freeze_layers"
            raise ConfigError("freeze_layers", f"{label} must be between 0 and {n_layer}, the model's number "
                                               f"of blocks (got {self.freeze_layers}).")

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def from_dict(cls: type, data: dict) -> Any:
    """Build a config from a JSON dict, ignoring keys it does not know (older / newer run folders)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


# What `llmfs.eval` can measure; `llmfs.eval.tasks` implements each (its TASK_INFO describes them).
EvalTask = Literal["llmfs-cloze", "perplexity", "hellaswag", "mmlu", "truthfulqa_mc1", "truthfulqa_mc2", "custom"]
MMLU_MAX_FEWSHOT = 5  # MMLU's dev split holds 5 questions per subject


@dataclass(frozen=True)
class EvalConfig:
    """An evaluation: which model, which benchmark, how many questions."""

    model: str = option(DEFAULT_MODEL, "The model to test: `llmfs-tiny` or `smollm2-135m` (built in, work offline), a "
                                       "folder holding a Hugging Face causal LM (a training run's model/ folder "
                                       "works), or a hub id such as `gpt2`.", label="Model")
    adapter: str = option("", "A LoRA adapter folder to put on top of the model before testing (from the LoRA "
                              "lesson). Leave empty to test the model as it is.", advanced=True, label="Adapter")
    task: EvalTask = option(
        "llmfs-cloze", "What to measure. "
                       "`llmfs-cloze`: pick the words that really come next in Python's documentation, among four "
                       "(built in, offline). "
                       "`perplexity`: how surprised the model is by held-out text (lower is better). "
                       "`hellaswag`: pick the sensible ending of an everyday scene. "
                       "`mmlu`: school and university exam questions, A/B/C/D. "
                       "`truthfulqa_mc1` / `truthfulqa_mc2`: prefer true answers over common misconceptions. "
                       "`custom`: your own questions from a JSONL file.", label="Benchmark")
    data: str = option("", "Where the questions come from. Empty: the official dataset from the Hugging Face hub "
                           "(needs a network), or the built-in text for llmfs-cloze and perplexity. Or the path of a "
                           "local file in the same format (.jsonl; .txt for perplexity), or `wikitext` for "
                           "WikiText-2 from the hub (perplexity). Required for `custom`.", label="Data file")
    limit: int = option(0, "Test only this many questions, to get a quick answer (0 = all). For MMLU it counts per "
                           "subject, as lm-evaluation-harness does.", min=0, max=10_000_000,
                        label="Questions (0 = all)")
    seed: int = option(0, "Which questions when a limit is set: 0 takes the first ones (as lm-evaluation-harness "
                          "does); any other number draws a random sample, the same one every time.",
                       min=0, max=2**31 - 1, advanced=True, label="Sample seed")
    num_fewshot: int = option(0, "Solved examples shown before each question (MMLU only, 0 to 5, taken from its "
                                 "practice split). More examples usually help a model follow the format.",
                              min=0, max=MMLU_MAX_FEWSHOT, label="Worked examples (few-shot)")
    batch_size: int = option(16, "Sequences the model reads at once. Larger is faster until memory runs out; "
                                 "the scores do not change.", min=1, max=4096, advanced=True, label="Batch size")
    max_length: int = option(0, "Longest text, in tokens, the model reads at once (0 = the model's context length). "
                                "Longer prompts lose their beginning.", min=0, max=131072, advanced=True,
                             label="Window (tokens)")
    stride: int = option(0, "Perplexity only: how far the reading window moves each time (0 = a whole window, as "
                            "lm-evaluation-harness does). Smaller strides give each word more context: slower, "
                            "usually lower perplexity.", min=0, max=131072, advanced=True, label="Stride (tokens)")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "Where to run: `auto` picks the GPU when there is one.",
                                                    advanced=True)

    def __post_init__(self) -> None:
        check_fields(self)
        if not str(self.model).strip():
            raise ConfigError("model", "model is empty: use llmfs-tiny, a model folder, or a hub id like gpt2.")
        if self.task == "custom" and not str(self.data).strip():
            raise ConfigError("data", "The custom benchmark needs a data file: a .jsonl with one question per line, "
                                      'e.g. {"question": "2+2=", "choices": ["3", "4"], "answer": 1}.')
        if self.num_fewshot and self.task != "mmlu":
            raise ConfigError("num_fewshot", f"Worked examples (few-shot) are available for mmlu only; {self.task} "
                                             "is scored zero-shot (truthfulqa has its own fixed six-question "
                                             "preamble). Set it to 0.")
        if self.stride and self.max_length and self.stride > self.max_length:
            raise ConfigError("stride", f"stride must be at most the window ({self.max_length} tokens), "
                                        f"got {self.stride}; 0 means a whole window.")

    def replace(self, **changes: Any) -> "EvalConfig":
        return dataclasses.replace(self, **changes)
