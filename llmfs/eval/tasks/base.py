"""What a benchmark is made of: items, their source, and the loaders every task shares."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ...errors import SourceError, TaskDataError
from ...hub import hub_unreachable_reason

TaskKind = Literal["multiple_choice", "reference", "perplexity"]


@dataclass(frozen=True)
class MCItem:
    """A multiple-choice question: the prompt, the choices (scored as ``delimiter + choice``), the right one."""

    id: str
    context: str
    choices: tuple[str, ...]
    gold: int
    delimiter: str = " "
    group: str | None = None  # MMLU's subject
    labels: tuple[int, ...] | None = None  # TruthfulQA MC2: 1 for each true answer

    def requests(self) -> list[tuple[str, str]]:
        return [(self.context, self.delimiter + c) for c in self.choices]


@dataclass(frozen=True)
class ReferenceItem:
    """A prompt and the reference answer the model should produce after it."""

    id: str
    prompt: str
    reference: str


@dataclass(frozen=True)
class TextDoc:
    """A document for perplexity: ``text`` is scored, ``page`` (the original) counts the words and bytes."""

    id: str
    text: str
    page: str


@dataclass(frozen=True)
class Task:
    name: str
    kind: TaskKind
    items: list = field(repr=False)
    metrics: tuple[str, ...]
    source: str  # where the items came from, for the results page
    grouped: bool = False  # report per-group scores and a size-weighted overall (MMLU)


# -- reading ------------------------------------------------------------------------------------------------------
def read_jsonl(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """``(line number, object)`` for each non-empty line.

    Raises:
        SourceError: no such file.
        TaskDataError: lines that are not JSON objects, each named with its line number.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise SourceError(f"No data file at {path}: give the path of a .jsonl file (one JSON object a line).")
    rows, errors = [], []
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append((n, f"not valid JSON ({e.msg} at column {e.colno})"))
                continue
            if not isinstance(obj, dict):
                errors.append((n, f"expected a JSON object {{...}}, got {type(obj).__name__}"))
                continue
            rows.append((n, obj))
    if errors:
        raise TaskDataError(path, errors)
    if not rows:
        raise TaskDataError(path, [(0, "the file has no items")])
    return rows


def convert_rows(path: str | os.PathLike, rows: Iterable[tuple[int, dict]],
                 convert: Callable[[dict, int], Any]) -> list:
    """``convert(row, index)`` for each row; every row that raises ``ValueError``/``KeyError`` is reported with its
    line number, all at once."""
    items, errors = [], []
    for n, row in rows:
        try:
            items.append(convert(row, len(items)))
        except KeyError as e:
            errors.append((n, f"missing field {e.args[0]!r}"))
        except (ValueError, TypeError, IndexError) as e:
            errors.append((n, str(e)))
    if errors:
        raise TaskDataError(path, errors)
    return items


def load_hub_rows(path: str, name: str | None, split: str) -> Iterator[dict]:
    """Rows of a Hugging Face dataset split; fails within seconds, with the alternative, when the hub is out of
    reach."""
    reason = hub_unreachable_reason()
    if reason:
        raise SourceError(f"Cannot download the dataset {path} from the Hugging Face hub: {reason}. Give a local "
                          "copy in the same format as the data file (--data PATH), or run on a machine with a "
                          "network.")
    import datasets
    try:
        return iter(datasets.load_dataset(path, name, split=split))
    except Exception as e:  # DatasetNotFoundError, connection errors ...
        raise SourceError(f"Could not load {path} ({name or 'default'}, {split}) from the hub: {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]}") from e


def select(items: Sequence, limit: int, seed: int) -> list:
    """All items, the first ``limit`` (seed 0: lm-eval's ``--limit``), or a seeded random sample kept in order."""
    items = list(items)
    if not limit or limit >= len(items):
        return items
    if not seed:
        return items[:limit]
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def require_str(row: dict, key: str) -> str:
    value = row[key]
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string, got {type(value).__name__}")
    return value


def require_str_list(row: dict, key: str, min_len: int = 1) -> list[str]:
    value = row[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key!r} must be a list of strings")
    if len(value) < min_len:
        raise ValueError(f"{key!r} needs at least {min_len} entries, got {len(value)}")
    return value
