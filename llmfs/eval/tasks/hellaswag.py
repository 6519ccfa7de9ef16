"""HellaSwag (Zellers et al. 2019): pick the sensible ending of an everyday scene.

Prompt and choices as lm-eval's ``hellaswag`` task makes them (``lm_eval/tasks/hellaswag/hellaswag.yaml``,
``utils.py``): query ``activity_label + ": " + ctx_a + " " + ctx_b.capitalize()``, endings as choices, both through
``preprocess``; the continuation is ``" " + ending``; metrics acc and acc_norm on the validation split.
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


def doc_to_item(doc: dict, index: int = 0) -> MCItem:
    ctx = require_str(doc, "ctx_a") + " " + require_str(doc, "ctx_b").capitalize()
    endings = require_str_list(doc, "endings", min_len=2)
    gold = int(doc["label"])  # the HF dataset stores it as a string
    if not 0 <= gold < len(endings):
        raise ValueError(f"label {gold} is not an index into {len(endings)} endings")
    return MCItem(id=str(doc.get("ind", index)), context=preprocess(require_str(doc, "activity_label") + ": " + ctx),
                  choices=tuple(preprocess(e) for e in endings), gold=gold)


def load(data: str = "", limit: int = 0, seed: int = 0) -> Task:
    if data:
        items = convert_rows(data, read_jsonl(data), doc_to_item)
    else:
        items = [doc_to_item(d, i) for i, d in enumerate(load_hub_rows(HUB_PATH, None, HUB_SPLIT))]
    return Task("hellaswag", "multiple_choice", select(items, limit, seed), ("acc", "acc_norm"),
                source=data or f"{HUB_PATH} ({HUB_SPLIT})")
