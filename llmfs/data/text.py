"""Training text for the training loop: read a source's documents and turn them into token tensors.

Every source `llmfs.data.readers` reads works here (the bundled corpus, files, folders, WebDataset shards written by
an L13 pipeline, hub datasets). This is the small, eager path: texts are tokenized into one tensor in memory,
which suits the lessons' small data; L13's `PackedDataset` streams instead.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import DEFAULT_DATA
from .readers import HF_PREFIX, DataError  # noqa: F401  (re-exported: callers import them from here)

MAX_DOCS = 200_000       # the eager path holds every text in memory; L13's streaming pipeline has no such cap
MIN_VAL_FRACTION = 0.05
CORPUS_HELDOUT = "llmfs-corpus's held-out documents, as on Home"


@dataclass
class TextSplit:
    """A source's training and held-out texts, and which text the held-out figures are measured on."""
    train: list[str]
    heldout: list[str]
    documents: int = 0       # documents with text (train and held-out)
    heldout_on: str = ""     # in words: "llmfs-corpus's held-out documents ...", "the last 5% of the text of x.txt"
    characters: int = 0      # in those documents


def read_texts(source: str, part: tuple[int, int] | None = None) -> tuple[list[str], list[str]]:
    """(train documents, held-out documents) of `source`: `read_split(source, part)` without its counts."""
    split = read_split(source, part)
    return split.train, split.heldout


def read_split(source: str, part: tuple[int, int] | None = None) -> TextSplit:
    """The training and held-out documents of any source `llmfs.data.readers` understands: llmfs-corpus (with its
    own held-out split), a .txt / .jsonl / .parquet file, a folder, WebDataset shards (an L13 pipeline's output), or
    hf:NAME. Sources without a split hold out their last documents (or the tail of a single one).

    part: (rank, processes): only this rank's share of the documents (`llmfs.data.sharding`: whole shards per rank
        when there are enough, else every n-th document), for a run on several processes.
    Raises:
        DataError: an unreadable record, named by file and line (training on silently skipped data would mislead;
            an upload offers to leave its unreadable lines out before it is saved, `llmfs.uploads`).
    """
    from .readers import read_documents
    from .sharding import ShardedDocuments

    def docs(spec: str):
        if part is None:
            return (d.text for d in read_documents(spec, errors="raise"))
        return (item["text"] for item in ShardedDocuments(spec, part[0], part[1], errors="raise"))

    if source.strip() == DEFAULT_DATA:
        train = list(docs(DEFAULT_DATA))
        heldout = [d.text for d in read_documents(DEFAULT_DATA + "@heldout", errors="raise")]
        return TextSplit(train, heldout, len(train) + len(heldout), CORPUS_HELDOUT,
                         sum(map(len, train)) + sum(map(len, heldout)))
    texts = []
    for text in docs(source):
        if text.strip():
            texts.append(text)
        if len(texts) >= MAX_DOCS:
            break
    train, heldout, on = _split_tail(texts, source)
    return TextSplit(train, heldout, len(texts), on, sum(map(len, texts)))


def _split_tail(texts: list[str], source: str) -> tuple[list[str], list[str], str]:
    if not texts:
        raise DataError(f"{source} contains no text.")
    name = _short(source)
    if len(texts) >= 20:
        n_val = max(1, int(len(texts) * MIN_VAL_FRACTION))
        return texts[:-n_val], texts[-n_val:], f"the last {n_val:,} of the {len(texts):,} documents of {name}"
    joined = "\n\n".join(texts)
    cut = int(len(joined) * (1 - MIN_VAL_FRACTION))
    return [joined[:cut]], [joined[cut:]], f"the last {MIN_VAL_FRACTION:.0%} of the text of {name}"


def _short(source: str) -> str:
    """A source as a held-out label names it: a file or folder by its name, anything else as written."""
    source = source.strip()
    if source.startswith(HF_PREFIX) or "://" in source:
        return source
    return Path(source).name or source


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


@dataclass
class TokenData:
    """A source's tokens as a run trains and evaluates on them, and what reading it found (`TextSplit`)."""
    train: torch.Tensor
    heldout: torch.Tensor
    split: TextSplit


_CACHE: dict[tuple, TokenData] = {}
_CACHE_LOCK = threading.Lock()


def load_token_data(source: str, tokenizer, part: tuple[int, int] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(train tokens, held-out tokens) for `source`: `load_tokens` without the counts."""
    data = load_tokens(source, tokenizer, part)
    return data.train, data.heldout


def load_tokens(source: str, tokenizer, part: tuple[int, int] | None = None) -> TokenData:
    """Train and held-out tokens of `source` (`part`: one rank's share, see `read_split`), cached per process by
    source, its mtime and the tokenizer, so a workshop's tenth run on the bundled corpus does not tokenize it a
    tenth time."""
    key = (source, _mtime(source), tokenizer.name_or_path, len(tokenizer), part)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    split = read_split(source, part)
    out = TokenData(tokenize(split.train, tokenizer), tokenize(split.heldout, tokenizer), split)
    with _CACHE_LOCK:
        _CACHE[key] = out
    return out


# -- what a source holds, before a run ----------------------------------------------------------------------------
SUMMARY_MAX_BYTES = 20_000_000   # bigger data is not read before a run (it holds far more than a sequence anyway)


@dataclass
class DataSummary:
    """What a training source holds, counted the way a run will read it (`summarize`)."""
    documents: int
    characters: int
    train_tokens: int | None       # None: no tokenizer of the model on this machine yet
    heldout_tokens: int | None
    heldout_on: str
    tokenizer: str | None          # whose tokenizer counted the tokens


def summarize(source: str, model: str | None = None) -> DataSummary | None:
    """Documents, characters and (with `model`'s tokenizer, when it is on this machine) training and held-out
    tokens of a local file or folder, counted as `load_tokens` reads it; None for the built-in corpus, hub
    datasets, remote addresses and local data over SUMMARY_MAX_BYTES (not read before a run).

    Raises:
        DataError: no such data, or nothing readable in it.
    """
    source = source.strip()
    if not _summarizable(source):
        return None
    stamp = _mtime(source)
    key = (source, stamp, model)
    with _CACHE_LOCK:
        if key in _SUMMARIES:
            return _SUMMARIES[key]
    split = read_split(source)
    tokenizer = tokenizer_for(model) if model else None
    train = heldout = None
    if tokenizer is not None:
        train, heldout = len(tokenize(split.train, tokenizer)), len(tokenize(split.heldout, tokenizer))
    out = DataSummary(split.documents, split.characters, train, heldout, split.heldout_on,
                      model if tokenizer is not None else None)
    with _CACHE_LOCK:
        _SUMMARIES[key] = out
    return out


_SUMMARIES: dict[tuple, DataSummary] = {}


def _summarizable(source: str) -> bool:
    from .readers import resolve_inputs, scheme_of
    if not source or source == DEFAULT_DATA or source.startswith(HF_PREFIX) or scheme_of(source) is not None:
        return False
    total = 0
    for inp in resolve_inputs(source):  # no such data: DataError
        try:
            total += os.path.getsize(inp.location)
        except OSError:
            return False
        if total > SUMMARY_MAX_BYTES:
            return False
    return True


def tokenizer_for(model: str):
    """The tokenizer of `model` (llmfs-tiny, a model folder, or a hub id already downloaded), loaded once per
    process; None when it is not on this machine (llmfs-tiny not built yet, a hub id never downloaded)."""
    from ..defaults import default_assets
    from ..sources import builtin_folder, is_builtin, is_default
    model = model.strip()
    if is_default(model):
        assets = default_assets()
        folder = assets.tokenizer_dir if assets.ready() else None
    elif is_builtin(model):
        folder = builtin_folder(model)   # smollm2-135m once unpacked
    elif (Path(model).expanduser() / "config.json").is_file():
        folder = Path(model).expanduser()
    else:
        folder = _cached_hub_folder(model)
    return None if folder is None else _load_tokenizer(str(folder))


def _cached_hub_folder(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        from ..sources import HUB_FILES, HUB_ID
        if not HUB_ID.match(repo_id):
            return None
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES, local_files_only=True))
    except Exception:  # not downloaded, an invalid id, no cache: nothing to count with
        return None


@functools.lru_cache(maxsize=8)
def _load_tokenizer(folder: str):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError):
        return None


def _mtime(source: str) -> float:
    try:
        return os.path.getmtime(Path(source).expanduser())
    except OSError:
        return 0.0
