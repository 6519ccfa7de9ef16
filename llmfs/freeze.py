"""Freezing strategies: which parameters of a pretrained GPT or Llama train, from which step, at what learning rate.

`plan_freeze` is pure: it reads a model's (or a config's) parameter names and shapes and returns a `FreezePlan`,
one row per tensor, which the UI draws as a layer map before any run (`llmfs.memory.estimate(..., freeze=plan)`
gives its memory). `apply_freeze` carries a plan out on a model the caller owns (it sets `requires_grad`, and
unties the head where a strategy needs it). `param_groups` turns a plan into AdamW groups, and `set_trainable` is
the per-step hook that gradual unfreezing needs.

References:
- Howard & Ruder 2018, "Universal Language Model Fine-tuning for Text Classification" (ULMFiT), sec. 3.2:
  gradual unfreezing from the top layer down, and discriminative (layer-wise) learning rates.
- Clark et al. 2020, "ELECTRA", appendix A: layer-wise learning-rate decay, lr * decay^(depth from the top).
- Ben Zaken et al. 2021, "BitFit: Simple Parameter-efficient Fine-tuning for Transformer-based Masked
  Language-models": train only the bias terms (here also the LayerNorm gains, as in many re-implementations).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from .config import TrainConfig
from .llama import Llama, LlamaConfig, RMSNorm
from .model import GPT, GPTConfig
from .targets import STRATEGIES, UNTIE_HEAD  # noqa: F401 (the lesson's API)


WTE, LM_HEAD = "transformer.wte.weight", "lm_head.weight"
# Both families' tensor names (GPT-2's and Llama's, which are Hugging Face's): blocks, embeddings, final norm.
_BLOCK = re.compile(r"^(?:transformer\.h|model\.layers)\.(\d+)\.")
_EMBEDDINGS = ("transformer.wte.", "transformer.wpe.", "model.embed_tokens.")
_FINAL_NORM = ("transformer.ln_f.", "model.norm.")


@dataclass(frozen=True)
class ParamRow:
    """One tensor of the model and what the plan does with it."""

    name: str
    shape: tuple[int, ...]
    numel: int
    group: str                 # "embeddings", "block 3", "final norm" or "head"
    trainable: bool            # trains at some point of the run
    start_step: int | None     # first step it trains (1 = from the start; later for `gradual`); None = frozen
    lr_scale: float            # multiplies the run's learning rate; 0.0 when frozen
    decay: bool                # AdamW weight decay applies (matrices, not biases or norms)
    tied_to: str | None = None  # the same tensor as this row (a tied head): drawn, not counted twice


@dataclass(frozen=True)
class FreezePlan:
    """What trains, per tensor. Counts take a tied tensor once."""

    strategy: str
    rows: tuple[ParamRow, ...]
    n_layer: int
    untie_head: bool = False   # apply_freeze gives the head its own copy of the word embeddings
    notes: tuple[str, ...] = ()

    @property
    def total_params(self) -> int:
        return sum(r.numel for r in self.rows if r.tied_to is None)

    @property
    def trainable_params(self) -> int:
        """Parameters that train at some point of the run (for `gradual`, once everything is unfrozen)."""
        return sum(r.numel for r in self.rows if r.tied_to is None and r.trainable)

    def trainable_params_at(self, step: int) -> int:
        return sum(r.numel for r in self.rows if r.tied_to is None and _trains_at(r, step))

    @property
    def schedule(self) -> dict[int, tuple[str, ...]]:
        """step -> the tensors that start training at that step, for steps after the first (`gradual` only)."""
        out: dict[int, list[str]] = {}
        for r in self.rows:
            if r.start_step is not None and r.start_step > 1 and r.tied_to is None:
                out.setdefault(r.start_step, []).append(r.name)
        return {step: tuple(names) for step, names in sorted(out.items())}

    def row(self, name: str) -> ParamRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def groups(self) -> list[dict[str, Any]]:
        """The layer map, one entry per group in model order (input to output): what the UI draws.

        Each: group, params / trainable_params (a tied tensor counted in its first group only), status ("trains",
        "partly trains", "frozen"), start_step (earliest), lr_scale (largest), tied.
        """
        out: dict[str, dict[str, Any]] = {}
        for r in self.rows:
            g = out.setdefault(r.group, {"group": r.group, "params": 0, "trainable_params": 0, "tied": False,
                                         "_all": 0, "_trains": 0, "_starts": set(), "_scales": set()})
            g["tied"] |= r.tied_to is not None
            g["_all"] += r.numel
            if r.tied_to is None:
                g["params"] += r.numel
                g["trainable_params"] += r.numel if r.trainable else 0
            if r.trainable:
                g["_trains"] += r.numel
                g["_starts"].add(r.start_step)
                g["_scales"].add(r.lr_scale)
        for g in out.values():
            trains, total = g.pop("_trains"), g.pop("_all")
            g["status"] = "frozen" if trains == 0 else "trains" if trains == total else "partly trains"
            g["start_step"] = min(g.pop("_starts"), default=None)
            g["lr_scale"] = max(g.pop("_scales"), default=0.0)
        return list(out.values())

    def summary(self) -> str:
        """A few lines for the run log: counts, then each group's fate."""
        share = self.trainable_params / self.total_params if self.total_params else 0.0
        lines = [f"Freezing strategy {self.strategy}: {self.trainable_params:,} of {self.total_params:,} parameters "
                 f"train ({share:.1%})."]
        for g in self.groups():
            extra = ""
            if g["status"] != "frozen" and g["start_step"] and g["start_step"] > 1:
                extra = f" from step {g['start_step']}"
            if g["status"] != "frozen" and g["lr_scale"] != 1.0:
                extra += f" at {g['lr_scale']:.3g} x lr"
            if g["tied"]:
                extra += " (tied to the word embeddings)"
            lines.append(f"  {g['group']}: {g['status']}{extra}")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: strategy, counts, rows, schedule (string keys) and notes."""
        return {"strategy": self.strategy, "trainable_params": self.trainable_params,
                "total_params": self.total_params, "untie_head": self.untie_head, "notes": list(self.notes),
                "rows": [dataclasses.asdict(r) for r in self.rows],
                "schedule": {str(k): list(v) for k, v in self.schedule.items()}}


def _trains_at(row: ParamRow, step: int) -> bool:
    return row.start_step is not None and row.start_step <= step


# -- planning (pure) ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Part:
    """What a rule needs to know about one tensor."""

    group: str
    block: int | None
    bias_or_norm: bool


# A rule maps a tensor to (first step it trains or None, lr scale).
Rule = Callable[[_Part], tuple[int | None, float]]


def _rule(strategy: str, n_layer: int, n_layers: int, unfreeze_every: int, lr_decay: float) -> Rule:
    def full(p):
        return 1, 1.0

    def linear_probe(p):
        return (1, 1.0) if p.group == "head" else (None, 0.0)

    def freeze_embeddings(p):
        return (None, 0.0) if p.group == "embeddings" else (1, 1.0)

    def freeze_bottom(p):
        frozen = p.group == "embeddings" or (p.block is not None and p.block < n_layers)
        return (None, 0.0) if frozen else (1, 1.0)

    def train_top(p):
        trains = p.group in ("final norm", "head") or (p.block is not None and p.block >= n_layer - n_layers)
        return (1, 1.0) if trains else (None, 0.0)

    def bitfit(p):
        return (1, 1.0) if p.bias_or_norm else (None, 0.0)

    def gradual(p):
        # ULMFiT sec. 3.2: the top block starts with the head; block i joins after (n_layer - 1 - i) * K steps;
        # the embeddings, the lowest layer, join last.
        if p.group in ("final norm", "head"):
            return 1, 1.0
        depth = n_layer - 1 - p.block if p.block is not None else n_layer  # 0 = top block
        return 1 + depth * unfreeze_every, 1.0

    def llrd(p):
        # ELECTRA appendix A: the layer at depth d from the top learns at lr * decay^d; head and final norm d = 0.
        if p.group in ("final norm", "head"):
            return 1, 1.0
        depth = n_layer - p.block if p.block is not None else n_layer + 1
        return 1, lr_decay**depth

    rules = {"full": full, "linear_probe": linear_probe, "freeze_embeddings": freeze_embeddings,
             "freeze_bottom": freeze_bottom, "train_top": train_top, "bitfit": bitfit, "gradual": gradual,
             "llrd": llrd}
    return rules[strategy]


def _part(name: str, module: nn.Module) -> _Part:
    block = _BLOCK.match(name)
    if block:
        group = f"block {block.group(1)}"
    elif name.startswith(_EMBEDDINGS):
        group = "embeddings"
    elif name.startswith(_FINAL_NORM):
        group = "final norm"
    elif name.startswith("lm_head."):
        group = "head"
    else:
        raise ValueError(f"Cannot place parameter {name!r}: freezing strategies know GPT-2's tensors "
                         "(transformer.wte / wpe / h.N / ln_f, lm_head) and Llama's (model.embed_tokens / "
                         "layers.N / norm, lm_head).")
    return _Part(group, int(block.group(1)) if block else None,
                 name.endswith(".bias") or isinstance(module, (nn.LayerNorm, RMSNorm)))


def _named_tensors(model: nn.Module) -> list[tuple[str, nn.Parameter, nn.Module]]:
    """(name, parameter, owning module) for every parameter name, a tied tensor under each of its names."""
    modules = dict(model.named_modules())
    return [(name, p, modules[name.rpartition(".")[0]]) for name, p in model.named_parameters(remove_duplicate=False)]


def _word_embeddings(model: nn.Module) -> nn.Embedding:
    return model.model.embed_tokens if isinstance(model, Llama) else model.transformer.wte


def _head_is_tied(model: nn.Module) -> bool:
    return model.lm_head.weight is _word_embeddings(model).weight


def plan_freeze(model: nn.Module | GPTConfig | LlamaConfig, strategy: str = "full", *, n_layers: int = 1,
                unfreeze_every: int = 20, lr_decay: float = 0.8) -> FreezePlan:
    """The plan for `strategy` on `model`, without changing the model (safe on a cached, shared one).

    Args:
        model: a `GPT` or `Llama`, or its config (the plan is then built from shapes alone, on the meta device).
        strategy: one of `STRATEGIES`.
        n_layers: N for `freeze_bottom` (blocks frozen from the input) and `train_top` (blocks trained from the top).
        unfreeze_every: K for `gradual`: steps between one block starting to train and the next.
        lr_decay: for `llrd`, the factor between one block's learning rate and the one above it.

    Returns:
        a `FreezePlan`; for strategies in `UNTIE_HEAD` on a tied model it describes the model after untying
        (the head as its own tensor).

    Raises:
        ValueError: unknown strategy, out-of-range settings, or a model that is neither a GPT-2 nor a Llama.
    """
    if isinstance(model, (GPTConfig, LlamaConfig)):
        with torch.device("meta"):
            model = GPT(model) if isinstance(model, GPTConfig) else Llama(model)
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown freezing strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}.")
    n_layer = model.config.n_layer
    _check_settings(strategy, n_layer, n_layers, unfreeze_every, lr_decay)
    rule = _rule(strategy, n_layer, n_layers, unfreeze_every, lr_decay)
    tied = _head_is_tied(model)
    untie = tied and strategy in UNTIE_HEAD
    rows, by_tensor = [], {}
    for name, p, module in _named_tensors(model):
        first = by_tensor.get(id(p))
        if first is not None and not untie:  # a tied head: the same tensor as the word embeddings, same fate
            rows.append(dataclasses.replace(first, name=name, group=_part(name, module).group, tied_to=first.name))
            continue
        part = _part(name, module)
        start, scale = rule(part)
        row = ParamRow(name=name, shape=tuple(p.shape), numel=p.numel(), group=part.group,
                       trainable=start is not None, start_step=start, lr_scale=scale if start is not None else 0.0,
                       decay=p.dim() >= 2)
        by_tensor.setdefault(id(p), row)
        rows.append(row)
    return FreezePlan(strategy, tuple(rows), n_layer, untie_head=untie, notes=_notes(strategy, tied, untie, model))


def _check_settings(strategy: str, n_layer: int, n_layers: int, unfreeze_every: int, lr_decay: float) -> None:
    if strategy in ("freeze_bottom", "train_top") and not 0 <= n_layers <= n_layer:
        raise ValueError(f"n_layers must be between 0 and {n_layer}, the model's number of blocks (got {n_layers}).")
    if strategy == "gradual" and unfreeze_every < 1:
        raise ValueError(f"unfreeze_every must be at least 1 step (got {unfreeze_every}).")
    if strategy == "llrd" and not 0.0 < lr_decay <= 1.0:
        raise ValueError(f"lr_decay must be in (0, 1] (got {lr_decay}).")


def _notes(strategy: str, tied: bool, untie: bool, model: nn.Module) -> tuple[str, ...]:
    if untie:
        extra = model.lm_head.weight.numel()
        return (f"the head shared its weights with the word embeddings; it gets its own copy ({extra:,} more "
                "parameters) so that training it leaves the embeddings unchanged",)
    if tied and strategy in ("freeze_embeddings", "freeze_bottom"):
        return ("the head shares its weights with the word embeddings, so it is frozen with them",)
    if tied and strategy == "llrd":
        return ("the head shares its weights with the word embeddings and learns at their (smallest) rate",)
    return ()


def freeze_options(cfg: TrainConfig) -> dict[str, Any]:
    """`plan_freeze` / `apply_freeze` keyword arguments from a TrainConfig."""
    return {"strategy": cfg.freeze, "n_layers": cfg.freeze_layers, "unfreeze_every": cfg.unfreeze_every,
            "lr_decay": cfg.layer_lr_decay}


# -- applying (mutates the model it is given) ----------------------------------------------------------------------
def apply_freeze(model: GPT | Llama, strategy: str = "full", *, n_layers: int = 1, unfreeze_every: int = 20,
                 lr_decay: float = 0.8) -> FreezePlan:
    """Carry out `plan_freeze(model, ...)` on `model`: untie the head where needed, set `requires_grad` for step 1.

    Changes `model` in place: call it on a model the caller owns (a job's private copy), never a cached one.
    Arguments as in `plan_freeze`.
    """
    plan = plan_freeze(model, strategy, n_layers=n_layers, unfreeze_every=unfreeze_every, lr_decay=lr_decay)
    if plan.untie_head and _head_is_tied(model):
        untie_head(model)
    set_trainable(model, plan, step=1)
    return plan


def untie_head(model: GPT | Llama) -> None:
    """Give the head its own Parameter, a copy of the word embeddings, and record it in the config."""
    wte = _word_embeddings(model).weight
    model.lm_head.weight = nn.Parameter(wte.detach().clone(), requires_grad=wte.requires_grad)
    model.config = dataclasses.replace(model.config, tie_word_embeddings=False)


def set_trainable(model: nn.Module, plan: FreezePlan, step: int) -> int:
    """Set `requires_grad` to what the plan says for `step` (1-based); idempotent, so a resumed run can call it.

    Returns:
        the number of parameters that train at `step`.

    Raises:
        ValueError: the model's tensors are not the plan's (e.g. a plan that unties the head, not yet applied).
    """
    rows = _rows_for(model, plan)
    trainable = 0
    for name, p in model.named_parameters():
        on = _trains_at(rows[name], step)
        p.requires_grad_(on)
        trainable += p.numel() if on else 0
    return trainable


def _rows_for(model: nn.Module, plan: FreezePlan) -> dict[str, ParamRow]:
    """name -> row for each of the model's (deduplicated) parameters; refuses a plan made for other tensors."""
    rows = {r.name: r for r in plan.rows if r.tied_to is None}
    if {name for name, _ in model.named_parameters()} != set(rows):
        raise ValueError("The model's parameters do not match the freeze plan; build the plan from this model and "
                         "use apply_freeze (it unties the head when the strategy needs it).")
    return rows


# -- optimizer --------------------------------------------------------------------------------------------------
def param_groups(model: nn.Module, plan: FreezePlan | None = None, base_lr: float = 1e-3,
                 weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """AdamW parameter groups: one per (lr scale, decay or not); no weight decay on biases and norms.

    With a plan, every tensor that trains at any step is included (for `gradual`, the ones still frozen have
    `requires_grad=False`, get no gradient, and AdamW skips them until `set_trainable` switches them on). Without
    one, the parameters that currently require gradients, all at `base_lr`. Each group carries `lr_scale`, which
    the training loop multiplies into its scheduled learning rate.

    Raises:
        ValueError: nothing would train.
    """
    if plan is None:
        chosen = [(p, 1.0) for p in model.parameters() if p.requires_grad]
    else:
        rows = _rows_for(model, plan)
        chosen = [(p, rows[name].lr_scale) for name, p in model.named_parameters() if rows[name].trainable]
    if not chosen:
        raise ValueError("Nothing to train: every parameter is frozen. Choose a strategy that trains something.")
    groups: dict[tuple[float, bool], dict[str, Any]] = {}
    for p, scale in chosen:
        decay = p.dim() >= 2
        g = groups.setdefault((scale, decay), {"params": [], "lr": base_lr * scale, "lr_scale": scale,
                                               "weight_decay": weight_decay if decay else 0.0})
        g["params"].append(p)
    return list(groups.values())
