"""Your own benchmark, from a JSONL file (one item a line), in one of two shapes:

- multiple choice: ``{"question": "...", "choices": ["...", "..."], "answer": 1}`` (``"context"`` instead of
  ``"question"`` works too; ``answer`` is the index of the right choice, or its text). Scored like lm-eval's
  multiple-choice tasks: continuation ``" " + choice``; acc and acc_norm.
- prompt and reference: ``{"prompt": "...", "reference": "..."}``. Scored by the reference's log-likelihood after
  the prompt (and its per-token perplexity), and exact match: whether greedy decoding after the prompt produces the
  reference token for token (lm-eval's ``is_greedy``: every reference token is the model's top choice).

Every malformed line is reported with its line number.
"""

from __future__ import annotations

from .base import MCItem, ReferenceItem, Task, TaskDataError, convert_rows, read_jsonl, require_str, select

MC_METRICS = ("acc", "acc_norm")
REFERENCE_METRICS = ("loglik", "perplexity", "exact_match")


def shape_of(row: dict) -> str | None:
    if "choices" in row:
        return "multiple_choice"
    if "prompt" in row or "reference" in row:
        return "reference"
    return None


def row_to_mc(row: dict, index: int) -> MCItem:
    if "question" not in row and "context" not in row:
        raise ValueError("missing field 'question' (or 'context')")
    question = require_str(row, "question" if "question" in row else "context")
    choices = row["choices"]
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise ValueError("'choices' must be a list of at least 2 non-empty strings")
    answer = row["answer"]
    if isinstance(answer, str):
        if answer not in choices:
            raise ValueError(f"'answer' {answer!r} is not one of the choices")
        answer = choices.index(answer)
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
        raise ValueError(f"'answer' must be the index of the right choice, 0 to {len(choices) - 1}, "
                         f"got {row['answer']!r}")
    return MCItem(id=str(row.get("id", index)), context=question, choices=tuple(choices), gold=answer)


def row_to_reference(row: dict, index: int) -> ReferenceItem:
    reference = require_str(row, "reference")
    if not reference:
        raise ValueError("'reference' is empty: there is nothing to score")
    return ReferenceItem(id=str(row.get("id", index)), prompt=require_str(row, "prompt"), reference=reference)


def load(data: str, limit: int = 0, seed: int = 0) -> Task:
    rows = read_jsonl(data)
    shapes = [(n, shape_of(r)) for n, r in rows]
    unknown = [(n, "neither a question with 'choices' nor a 'prompt' with a 'reference'") for n, s in shapes
               if s is None]
    first_line, shape = next(((n, s) for n, s in shapes if s), (0, None))
    mixed = [(n, f"a {s.replace('_', ' ')} item, but line {first_line} is a {shape.replace('_', ' ')} item; "
                 "use one shape per file") for n, s in shapes if s and s != shape]
    if unknown or mixed:
        raise TaskDataError(data, sorted(unknown + mixed))
    if shape == "multiple_choice":
        items = convert_rows(data, rows, row_to_mc)
        return Task("custom", "multiple_choice", select(items, limit, seed), MC_METRICS, source=data)
    items = convert_rows(data, rows, row_to_reference)
    return Task("custom", "reference", select(items, limit, seed), REFERENCE_METRICS, source=data)
