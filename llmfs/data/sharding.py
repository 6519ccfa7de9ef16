"""Each training process and each of its DataLoader workers reads its own part of a dataset, resumable mid-epoch.

A spec's inputs (`readers.resolve_inputs`: shards, files, local or `https://` / `s3://` / `gs://`) are split among
the readers, numbered rank-major: reader = rank x workers + worker, of world_size x workers. With at least as many
inputs as readers, each reader takes every n-th input (webdataset's split_by_node + split_by_worker, datatrove's
rank slicing): nobody opens a shard it does not use. With fewer, every reader streams all inputs and keeps every
n-th document, so small datasets still split evenly. Either way each document is read by exactly one reader.

Each item carries its reader and the position after it (`part`, `state`); `Progress` keeps the latest position per
reader from the items consumed, and `ShardedDocuments(..., start=progress.state_dict())` continues from there, in the
middle of a shard (text and JSON Lines seek to a byte offset; a tar shard is re-streamed past the samples read).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from .readers import DocumentReader, ErrorMode, ReaderState


@dataclass(frozen=True)
class Part:
    index: int   # this reader, 0 .. count - 1
    count: int   # readers in all: processes x DataLoader workers

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"reader {self.index} is not among {self.count} readers")


def part_for(rank: int, world_size: int, worker: int | None = None, workers: int | None = None) -> Part:
    """This reader's part: in a DataLoader worker, torch's worker info gives the worker and the worker count."""
    if worker is None or workers is None:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return Part(rank * workers + worker, world_size * workers)


class ShardedDocuments(torch.utils.data.IterableDataset):
    """Documents of `spec` for one rank (and, inside a DataLoader, one worker) as dicts: id, text, source, part,
    state. `rank` / `world_size` default to the process group's (`llmfs.distributed.current()`)."""

    def __init__(self, spec: str | os.PathLike, rank: int | None = None, world_size: int | None = None, *,
                 start: dict | None = None, errors: ErrorMode = "skip", **options: Any):
        super().__init__()
        if rank is None or world_size is None:
            from ..distributed import current
            env = current()
            rank, world_size = env.rank, env.world_size
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not among {world_size} processes")
        self.spec, self.rank, self.world_size = os.fspath(spec), rank, world_size
        self.start = {int(k): v for k, v in (start or {}).items()}
        self.errors, self.options = errors, options

    def __iter__(self) -> Iterator[dict]:
        part = part_for(self.rank, self.world_size)
        reader = DocumentReader(self.spec, errors=self.errors, **self.options)
        begin = self.start.get(part.index)
        if begin is not None and begin.get("count") != part.count:
            raise ValueError(f"This reading position was saved for {begin.get('count')} readers (processes x "
                             f"workers), and {part.count} read now: resume with the same numbers, or start over.")
        if len(reader.inputs) >= part.count:  # whole inputs per reader
            reader.inputs = reader.inputs[part.index::part.count]
            if begin is not None:
                reader.state = ReaderState.from_dict(begin["reader"])
            for doc in reader:
                yield _item(doc, part, {"count": part.count, "reader": reader.state.to_dict()})
        else:  # every reader streams everything and keeps every count-th document
            skip = begin["next"] if begin is not None else 0
            for i, doc in enumerate(reader):
                if i >= skip and i % part.count == part.index:
                    yield _item(doc, part, {"count": part.count, "next": i + 1})


def _item(doc, part: Part, state: dict) -> dict:
    return {"id": doc.id, "text": doc.text, "source": doc.source, "part": part.index, "state": state}


class Progress:
    """The latest position of every reader, from the items a consumer has taken (what to save in a checkpoint)."""

    def __init__(self, state: dict | None = None):
        self._state = {int(k): v for k, v in (state or {}).items()}

    def update(self, item: dict) -> None:
        self._state[int(item["part"])] = item["state"]

    def state_dict(self) -> dict:
        return {str(k): v for k, v in sorted(self._state.items())}
