"""Training text for the training loop: read a source's documents and turn them into token tensors.

Every source `llmfs.data.readers` reads works here (the bundled corpus, files, folders, WebDataset shards written by
an L13 pipeline, hub datasets). This is the small, eager path: texts are tokenized into one tensor in memory,
which suits the lessons' small data; L13's `PackedDataset` streams instead.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import torch

from ..config import DEFAULT_DATA
from .readers import HF_PREFIX, DataError  # noqa: F401  (re-exported: callers import them from here)

MAX_DOCS = 200_000       # the eager path holds every text in memory; L13's streaming pipeline has no such cap
MIN_VAL_FRACTION = 0.05


def read_texts(source: str, part: tuple[int, int] | None = None) -> tuple[list[str], list[str]]:
    """(train documents, held-out documents) of any source `llmfs.data.readers` understands: llmfs-corpus (with
    its own held-out split), a .txt / .jsonl / .parquet file, a folder, WebDataset shards (an L13 pipeline's
    output), or hf:NAME. Sources without a split hold out their last documents (or the tail of a single one).

    part: (rank, processes): only this rank's share of the documents (`llmfs.data.sharding`: whole shards per rank
        when there are enough, else every n-th document), for a run on several processes.
    Raises:
        DataError: an unreadable record, named by file and line (training on silently skipped data would mislead).
    """
    from .readers import read_documents
    from .sharding import ShardedDocuments

    def docs(spec: str):
        if part is None:
            return (d.text for d in read_documents(spec, errors="raise"))
        return (item["text"] for item in ShardedDocuments(spec, part[0], part[1], errors="raise"))

    if source.strip() == DEFAULT_DATA:
        return list(docs(DEFAULT_DATA)), [d.text for d in read_documents(DEFAULT_DATA + "@heldout", errors="raise")]
    texts = []
    for text in docs(source):
        if text.strip():
            texts.append(text)
        if len(texts) >= MAX_DOCS:
            break
    return _split_tail(texts, source)


def _split_tail(texts: list[str], source: str) -> tuple[list[str], list[str]]:
    if not texts:
        raise DataError(f"{source} contains no text.")
    if len(texts) >= 20:
        n_val = max(1, int(len(texts) * MIN_VAL_FRACTION))
        return texts[:-n_val], texts[-n_val:]
    joined = "\n\n".join(texts)
    cut = int(len(joined) * (1 - MIN_VAL_FRACTION))
    return [joined[:cut]], [joined[cut:]]


def tokenize(texts: list[str], tokenizer) -> torch.Tensor:
    """One long 1-D tensor of token ids, documents separated by the tokenizer's end-of-text token."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    batch = 256
    for i in range(0, len(texts), batch):
        for row in tokenizer(texts[i: i + batch], add_special_tokens=False)["input_ids"]:
            ids.extend(row)
            if eos is not None:
                ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
_CACHE_LOCK = threading.Lock()


def load_token_data(source: str, tokenizer, part: tuple[int, int] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(train tokens, held-out tokens) for `source` (`part`: one rank's share, see `read_texts`), cached per
    process by source, its mtime and the tokenizer, so a workshop's tenth run on the bundled corpus does not
    tokenize it a tenth time."""
    key = (source, _mtime(source), tokenizer.name_or_path, len(tokenizer), part)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    train_texts, val_texts = read_texts(source, part)
    out = (tokenize(train_texts, tokenizer), tokenize(val_texts, tokenizer))
    with _CACHE_LOCK:
        _CACHE[key] = out
    return out


def _mtime(source: str) -> float:
    try:
        return os.path.getmtime(Path(source).expanduser())
    except OSError:
        return 0.0
