"""llmfs-cloze: a small benchmark made from the embedded default's held-out documentation, so L14 works offline.

Each item shows a module's title and the first half of a paragraph from a held-out document, e.g.
``Module functools\n================\n\nfunctools.wraps(wrapped, assigned=WRAPPER_ASSIGNMENTS, ...)\nDecorator``,
and asks which of four spans of eight words really comes next. The three distractors are spans from paragraphs of
other held-out documents; which ones, and the order of the choices, are fixed by a seed, so every run sees the
same benchmark. llmfs-tiny never trained on these documents (``llmfs.corpus.split_held_out``), so the score
measures what it learned, not what it memorised. Chance is 25%; the spans differ in length, so acc_norm (per
character) is the fairer score. Measured on the default llmfs-tiny: acc_norm 0.36, the same model with random
weights 0.25.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from ...defaults import require_default
from ...errors import SourceError
from .base import MCItem, Task, select

BUILD_SEED = 1234  # the benchmark itself; the run's seed only picks a sample when a limit is set
N_CHOICES = 4
SPAN_WORDS = 8
MIN_WORDS = 12  # paragraphs shorter than this give too little context or too short an answer


def entries_of(doc_id: str, text: str) -> list[tuple[str, str, str]]:
    """(doc id, context, true continuation) for each paragraph of at least MIN_WORDS words after the title.

    Words are split on single spaces, so joining them back gives the text exactly (newlines stay inside words).
    """
    paras = text.split("\n\n")
    title = "\n".join(paras[0].split("\n")[:2]) + "\n\n"
    out = []
    for p in paras[1:]:
        words = p.split(" ")
        if len(words) >= MIN_WORDS:
            half = len(words) // 2
            out.append((doc_id, title + " ".join(words[:half]), " ".join(words[half: half + SPAN_WORDS])))
    return out


def build_items(docs: Iterable[dict], seed: int = BUILD_SEED) -> list[MCItem]:
    """Cloze items from documents ``{"id", "text"}``; items need distractors from at least one other document."""
    entries = [e for d in sorted(docs, key=lambda d: d["id"]) for e in entries_of(d["id"], d["text"])]
    rng = random.Random(seed)
    items = []
    for k, (doc_id, context, answer) in enumerate(entries):
        pool = sorted({e[2] for e in entries if e[0] != doc_id and e[2] != answer})
        if len(pool) < N_CHOICES - 1:
            continue
        choices = rng.sample(pool, N_CHOICES - 1) + [answer]
        rng.shuffle(choices)
        items.append(MCItem(id=f"{doc_id}#{k}", context=context, choices=tuple(choices),
                            gold=choices.index(answer)))  # scored as " " + choice, like lm-eval's tasks
    return items


def heldout_docs(data: str = "") -> list[dict]:
    """Documents of a WebDataset shard folder: ``data``, or the embedded default's held-out split."""
    from ...corpus import iter_shard_texts

    source = data or str(require_default().corpus_heldout)
    try:
        return list(iter_shard_texts(source))
    except (FileNotFoundError, OSError, ValueError) as e:
        raise SourceError(f"Cannot read documentation shards at {source}: {e}") from e


def load(data: str = "", limit: int = 0, seed: int = 0) -> Task:
    items = build_items(heldout_docs(data))
    if not items:
        raise ValueError("No cloze items could be made: the documents have no multi-line paragraphs.")
    return Task("llmfs-cloze", "multiple_choice", select(items, limit, seed), ("acc", "acc_norm"),
                source=data or "llmfs corpus (held-out documents)")
