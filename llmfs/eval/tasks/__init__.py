"""Benchmarks for L14: each turns its data into items the shared scorer can score.

``load_task(cfg)`` reads the items an ``EvalConfig`` names: from a local file (``cfg.data``) in the official
Hugging Face schema, from the hub when it is reachable, or, for ``llmfs-cloze`` and ``perplexity``, from the
embedded default's held-out text.
"""

from __future__ import annotations

from ...config import EvalConfig
from . import cloze, custom, hellaswag, mmlu, text, truthfulqa
from .base import MCItem, ReferenceItem, Task, TaskDataError, TextDoc
from .examples import FORMATS, example_files, example_line

TASK_INFO: dict[str, str] = {
    "llmfs-cloze": "Which eight words really come next in this paragraph of Python's documentation? Built from "
                   "held-out documents the model never trained on; works offline. Chance: 25%.",
    "perplexity": "How surprised the model is by text it has not seen, per word, byte and token (lower is better).",
    "hellaswag": "Pick the sensible ending of an everyday scene (4 endings; chance 25%). acc_norm divides by "
                 "length so long endings are not penalised.",
    "mmlu": "Exam questions in 57 subjects, A/B/C/D (chance 25%); per-subject scores and the overall, weighted "
            "by questions.",
    "truthfulqa_mc1": "One true answer among false ones that repeat common misconceptions (chance varies).",
    "truthfulqa_mc2": "Share of the probability the model puts on the true answers (several true, several false).",
    "custom": "Your own questions: multiple choice, or prompts with a reference answer.",
}


def load_task(cfg: EvalConfig) -> Task:
    """The items of ``cfg.task`` from ``cfg.data`` (or the default source), limited to ``cfg.limit``.

    Raises:
        llmfs.sources.SourceError: the data cannot be found or downloaded (the message says what to do).
        TaskDataError: malformed lines in a data file, with their line numbers.
    """
    data, limit, seed = cfg.data.strip(), cfg.limit, cfg.seed
    if cfg.task == "hellaswag":
        return hellaswag.load(data, limit, seed)
    if cfg.task == "mmlu":
        return mmlu.load(data, cfg.num_fewshot, limit, seed)
    if cfg.task in ("truthfulqa_mc1", "truthfulqa_mc2"):
        return truthfulqa.load(cfg.task.rsplit("_", 1)[1], data, limit, seed)
    if cfg.task == "custom":
        return custom.load(data, limit, seed)
    if cfg.task == "llmfs-cloze":
        return cloze.load(data, limit, seed)
    if cfg.task == "perplexity":
        return text.load(data, limit, seed)
    raise ValueError(f"unknown task {cfg.task!r}; choose one of {', '.join(TASK_INFO)}")


__all__ = ["FORMATS", "MCItem", "ReferenceItem", "TASK_INFO", "Task", "TaskDataError", "TextDoc", "example_files",
           "example_line", "load_task"]
