"""Training text for the training loop: read a source's documents and turn them into token tensors.

Sources: `llmfs-corpus` (the embedded default's shards, with its own held-out split), a .txt / .md / .jsonl file,
or a folder of them. The lesson on data pipelines (L13) builds the streaming, filtering and packing readers; this
module is the small, eager path the first lessons train on.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Iterator

import torch

from ..config import DEFAULT_DATA

TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text")
JSONL_SUFFIXES = (".jsonl", ".json")
MIN_VAL_FRACTION = 0.05


class DataError(ValueError):
    """A data source that cannot be read; the message names the file (and line) and the fix."""


def iter_file_texts(path: Path) -> Iterator[str]:
    """Documents in one file: a text file is one document; JSONL gives each line's `text` field."""
    if path.suffix.lower() in JSONL_SUFFIXES:
        with open(path, encoding="utf-8", errors="strict") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path.name}, line {lineno}: not valid JSON ({e.msg}). Each line must be one "
                                    'JSON object such as {"text": "..."}.') from e
                if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                    raise DataError(f'{path.name}, line {lineno}: no "text" field. Each line must be one JSON '
                                    'object such as {"text": "..."}.')
                yield obj["text"]
    else:
        try:
            yield path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path.name} is not UTF-8 text (byte {e.start}). Save it as UTF-8 and try again.") from e


def data_files(source: str) -> list[Path]:
    path = Path(source).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES + JSONL_SUFFIXES)
        if not files:
            raise DataError(f"The folder {source} holds no .txt, .md or .jsonl files.")
        return files
    raise DataError(f"No data at {source}: give llmfs-corpus, or the path of a .txt / .jsonl file or a folder.")


HF_PREFIX = "hf:"
HF_MAX_DOCS = 20_000


def read_hub_texts(spec: str, max_docs: int = HF_MAX_DOCS) -> list[str]:
    """Documents of a Hugging Face dataset named `hf:NAME[:CONFIG][@SPLIT]` (e.g. `hf:wikitext:wikitext-2-raw-v1`),
    streamed so only the first `max_docs` non-empty texts are fetched. Fails within seconds offline."""
    from ..sources import hub_unreachable_reason

    body = spec[len(HF_PREFIX):]
    body, _, split = body.partition("@")
    name, _, config = body.partition(":")
    if not name:
        raise DataError(f"{spec!r}: give a dataset name after hf:, e.g. hf:wikitext:wikitext-2-raw-v1")
    reason = hub_unreachable_reason()
    if reason:
        raise DataError(f"Cannot stream the dataset {name!r} from the Hugging Face hub: {reason}. Use llmfs-corpus or "
                        "upload a .txt / .jsonl file instead.")
    import datasets
    try:
        stream = datasets.load_dataset(name, config or None, split=split or "train", streaming=True)
    except Exception as e:
        first_line = str(e).splitlines()[0][:200] if str(e) else ""
        raise DataError(f"Could not open the dataset {name!r}: {type(e).__name__}: {first_line}") from e
    texts = []
    for row in stream:
        text = row.get("text") if isinstance(row, dict) else None
        if text is None:
            raise DataError(f"The dataset {name!r} has no 'text' column (columns: {', '.join(row)}).")
        if text.strip():
            texts.append(text)
        if len(texts) >= max_docs:
            break
    return texts


def read_texts(source: str) -> tuple[list[str], list[str]]:
    """(train documents, held-out documents). Files have no split of their own, so the last documents (or the
    tail of a single document) are held out."""
    if source.startswith(HF_PREFIX):
        return _split_tail(read_hub_texts(source), source)
    if source.strip() == DEFAULT_DATA:
        from ..bootstrap import ensure_default
        from ..corpus import iter_shard_texts
        assets = ensure_default()
        train = [d["text"] for d in iter_shard_texts(assets.corpus_train)]
        val = [d["text"] for d in iter_shard_texts(assets.corpus_heldout)]
        return train, val
    return _split_tail([t for f in data_files(source) for t in iter_file_texts(f) if t.strip()], source)


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


def load_token_data(source: str, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """(train tokens, held-out tokens) for `source`, cached per process by source, its mtime and the tokenizer,
    so a workshop's tenth run on the bundled corpus does not tokenize it a tenth time."""
    key = (source, _mtime(source), tokenizer.name_or_path, len(tokenizer))
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    train_texts, val_texts = read_texts(source)
    out = (tokenize(train_texts, tokenizer), tokenize(val_texts, tokenizer))
    with _CACHE_LOCK:
        _CACHE[key] = out
    return out


def _mtime(source: str) -> float:
    try:
        return os.path.getmtime(Path(source).expanduser())
    except OSError:
        return 0.0
