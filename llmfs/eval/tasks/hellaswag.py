"""HellaSwag (Zellers et al. 2019): pick the sensible ending of an everyday scene.

Prompt and choices as lm-eval's ``hellaswag`` task makes them (``lm_eval/tasks/hellaswag/hellaswag.yaml``,
``utils.py``): query ``activity_label + ": " + ctx_a + " " + ctx_b.capitalize()``, endings as choices, both through
``preprocess``; the continuation is ``" " + ending``; metrics acc and acc_norm on the validation split.

A row needs ``activity_label``, ``endings`` and ``label`` and the scene so far: ``ctx_a`` and ``ctx_b`` (the hub's
rows have them, and they are used whenever present, so official data scores as lm-eval scores it), or ``ctx`` alone
(one's own scenes; the hub's ``ctx`` is ``ctx_a + " " + ctx_b`` without the capital, so it is used as written).
"""

from __future__ import annotations

import re

from .base import MCItem, Task, convert_rows, load_hub_rows, read_jsonl, require_str, require_str_list, select

HUB_PATH, HUB_SPLIT = "Rowan/hellaswag", "validation"


def preprocess(text: str) -> str:
    """lm-eval ``hellaswag/utils.py`` ``preprocess``: WikiHow's bracketed artefacts out, double spaces collapsed."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def context_of(doc: dict) -> str:
    """The scene so far: lm-eval's ``ctx_a + " " + ctx_b.capitalize()`` when the row has both, else ``ctx``."""
    if "ctx_a" in doc and "ctx_b" in doc:
        return require_str(doc, "ctx_a") + " " + require_str(doc, "ctx_b").capitalize()
    if "ctx" in doc:
        return require_str(doc, "ctx")
    raise ValueError("missing field 'ctx' (the scene so far; or 'ctx_a' and 'ctx_b', as in the hub's rows)")


def gold_of(doc: dict, n_endings: int) -> int:
    """``label``, the index of the right ending: a number, or a string of one (the hub stores it as a string)."""
    label = doc["label"]
    if isinstance(label, str) and label.strip().isdigit():
        label = int(label)
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < n_endings:
        raise ValueError(f"'label' must be the index of the right ending, 0 to {n_endings - 1}, got {label!r}")
    return label


def doc_to_item(doc: dict, index: int = 0) -> MCItem:
    ctx = context_of(doc)
    endings = require_str_list(doc, "endings", min_len=2)
    gold = gold_of(doc, len(endings))
    return MCItem(id=str(doc.get("ind", index)), context=preprocess(require_str(doc, "activity_label") + ": " + ctx),
                  choices=tuple(preprocess(e) for e in endings), gold=gold)


def load(data: str = "", limit: int = 0, seed: int = 0) -> Task:
    if data:
        items = convert_rows(data, read_jsonl(data), doc_to_item)
    else:
        items = [doc_to_item(d, i) for i, d in enumerate(load_hub_rows(HUB_PATH, None, HUB_SPLIT))]
    return Task("hellaswag", "multiple_choice", select(items, limit, seed), ("acc", "acc_norm"),
                source=data or f"{HUB_PATH} ({HUB_SPLIT})")
