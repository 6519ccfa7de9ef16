"""WebDataset shard writer: documents -> `<prefix>-000000.tar`, `<prefix>-000001.tar`, ... with size / count limits.

Each document becomes two members with a shared key: `<key>.txt`, its text as UTF-8 bytes, unchanged, and
`<key>.json`, `{"id", "source", "metadata"}`. That is the embedded corpus's layout (`llmfs.corpus`, which writes
`{"id", "source"}`), so `read_documents(out_dir)`, `llmfs.corpus.iter_shard_texts` and `wds.WebDataset` all read
these shards back. A shard is written under a temporary name and renamed when it is closed: a reader listing the
folder (or a crash) never meets half a shard.

Unlike `llmfs.corpus.write_shards`, which holds the whole (small) corpus and swaps the set in at the end, this
writer streams: memory holds one document, and shards appear one by one as they fill.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..corpus import shard_key
from .documents import Document

MAX_KEY = 80  # ustar names hold 100 characters: the key plus ".json" must fit without a pax header


@dataclass(frozen=True)
class ShardInfo:
    path: Path
    documents: int
    bytes: int              # payload (text + json bytes); tar headers add about 1.5 KiB per document
    last_id: str            # resume point: read_documents(..., start_after=last_id) continues after this shard


class ShardWriter:
    """Write documents into WebDataset shards, closing a shard before a document that would pass a limit.

    Usage:
        with ShardWriter(out_dir, max_docs=10_000, max_bytes=100_000_000) as writer:
            for doc in docs:
                writer.write(doc)
        writer.shards  # [ShardInfo(path, documents, bytes, last_id), ...]

    Args:
        max_docs: documents per shard. max_bytes: payload bytes per shard (webdataset's `ShardWriter(maxsize=)`
            counts the same way); a single larger document gets a shard of its own.
        start_index: number of the first shard (a resumed pipeline continues the numbering).
        overwrite: delete existing `<prefix>-*.tar` numbered from `start_index` on; without it they are an error.
        on_shard: called with each ShardInfo once its file is in place (to checkpoint a pipeline).
    On an exception inside the `with` block the unfinished shard is deleted; finished shards stay.
    Raises:
        ValueError: non-positive limits. FileExistsError: shards already there and not `overwrite`.
    """

    def __init__(self, out_dir: str | os.PathLike, prefix: str = "shard", max_docs: int = 10_000,
                 max_bytes: int = 100_000_000, *, start_index: int = 0, overwrite: bool = False,
                 on_shard: Callable[[ShardInfo], None] | None = None):
        if max_docs < 1 or max_bytes < 1:
            raise ValueError(f"max_docs and max_bytes must be positive, got {max_docs} and {max_bytes}")
        self.out_dir, self.prefix, self.max_docs, self.max_bytes = Path(out_dir), prefix, max_docs, max_bytes
        self.on_shard = on_shard
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._clear_existing(start_index, overwrite)
        self.shards: list[ShardInfo] = []
        self._index = start_index
        self._stream = self._tar = self._tmp = None
        self._docs = self._bytes = 0
        self._keys: set[str] = set()  # per shard (bounded by max_docs): WebDataset groups members by key
        self._last_id = ""

    def _clear_existing(self, start_index: int, overwrite: bool) -> None:
        pattern = re.compile(rf"{re.escape(self.prefix)}-(\d+)\.tar")
        existing = [p for p in self.out_dir.iterdir() if (m := pattern.fullmatch(p.name)) and int(m[1]) >= start_index]
        if existing and not overwrite:
            raise FileExistsError(f"{self.out_dir} already holds {len(existing)} shard(s) named {self.prefix}-*.tar "
                                  f"(e.g. {existing[0].name}): pass overwrite=True, another prefix or another folder.")
        for path in existing:
            path.unlink()

    def write(self, doc: Document) -> None:
        """Add one document. Raises ValueError if its text cannot be written as UTF-8 (lone surrogates)."""
        try:
            txt = doc.text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"document {doc.id!r}: the text is not valid Unicode at character {e.start}") from e
        # Values JSON cannot hold (numpy scalars, ...) are written as their str().
        meta = json.dumps({"id": doc.id, "source": doc.source, "metadata": doc.metadata}, ensure_ascii=False,
                          sort_keys=True, default=str).encode("utf-8")
        size = len(txt) + len(meta)
        if self._tar is not None and (self._docs >= self.max_docs or self._bytes + size > self.max_bytes):
            self._finish_shard()
        if self._tar is None:
            self._open_shard()
        self._tar.write({"__key__": self._key(doc.id), "txt": txt, "json": meta})
        self._docs, self._bytes, self._last_id = self._docs + 1, self._bytes + size, doc.id

    def close(self) -> list[ShardInfo]:
        """Finish the open shard; returns all shards written."""
        if self._tar is not None:
            self._finish_shard()
        return self.shards

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._discard_shard()

    # -- shards ------------------------------------------------------------------------------------------------
    def _path(self) -> Path:
        return self.out_dir / f"{self.prefix}-{self._index:06d}.tar"

    def _open_shard(self) -> None:
        import webdataset as wds

        self._tmp = self.out_dir / f".{self._path().name}.tmp-{uuid.uuid4().hex[:8]}"
        self._stream = open(self._tmp, "wb")
        # encoder=False: the bytes go in as given; mtime=0: equal documents give byte-identical shards.
        self._tar = wds.TarWriter(self._stream, encoder=False, mtime=0)
        self._docs = self._bytes = 0
        self._keys.clear()

    def _finish_shard(self) -> None:
        self._tar.close()
        self._stream.flush()
        os.fsync(self._stream.fileno())
        self._stream.close()
        path = self._path()
        os.replace(self._tmp, path)  # atomic: the shard appears whole
        info = ShardInfo(path, self._docs, self._bytes, self._last_id)
        self.shards.append(info)
        self._index += 1
        self._tar = self._stream = self._tmp = None
        if self.on_shard is not None:
            self.on_shard(info)

    def _discard_shard(self) -> None:
        if self._stream is not None:
            try:
                self._tar.close()  # else the tarfile's finaliser writes its end blocks to a closed file later
            finally:
                self._stream.close()
                self._tmp.unlink(missing_ok=True)
        self._tar = self._stream = self._tmp = None

    def _key(self, doc_id: str) -> str:
        # The id itself lives in the .json member; the key only has to be unique within the shard and dot-free.
        key = shard_key(doc_id)[:MAX_KEY] or f"doc{self._docs:06d}"
        base, n = key[:MAX_KEY - 8], 1
        while key in self._keys:  # ids that sanitize alike ("a.b", "a_b"): a counter tells them apart
            key, n = f"{base}-{n}", n + 1
        self._keys.add(key)
        return key


def write_documents(docs: Iterable[Document], out_dir: str | os.PathLike, **options) -> list[ShardInfo]:
    """Write all `docs` with a `ShardWriter(out_dir, **options)`; returns the shards written."""
    with ShardWriter(out_dir, **options) as writer:
        for doc in docs:
            writer.write(doc)
    return writer.shards
