"""Packing: tokenize a document stream into fixed-length training rows, split across workers and ranks.

Documents are tokenized, each followed by the end-of-text token, and the token stream is cut into rows of
`seq_len + 1` tokens (inputs are row[:-1], targets row[1:]). Tokens left over at the end of a document carry into
the next row, so nothing is lost or padded (GPT-2 / nanoGPT style packing); only the final partial row of each
consumer is dropped (or yielded short with `drop_last=False`).

Each consumer (DataLoader worker x distributed rank) reads a disjoint part of the data. With at least as many shard
files as consumers, consumer c reads files c, c + n, c + 2n, ... (each file read once in all). Otherwise every
consumer reads the whole stream and keeps documents i with i % n == c, which costs n reads but loses nothing (as
`datasets.distributed.split_dataset_by_node` does for a stream with too few shards).
"""

from __future__ import annotations

import itertools
import os
import random
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .documents import Document

DocumentSource = Callable[[], Iterable[Document]] | Sequence[str | os.PathLike] | str | os.PathLike


class PackedDataset(IterableDataset):
    """Rows of `seq_len + 1` token ids (1-D `torch.long` tensors) packed from documents.

    Args:
        documents: a function returning a fresh document iterable (called once per consumer per epoch; under the
            `spawn` start method DataLoader workers need it picklable: a module-level function or a partial), or a
            list of shard / file paths, each read with `read_documents(path, errors=errors)`, or one spec for
            `read_documents` (`llmfs-corpus`, a folder, a shard pattern), split into its files.
        tokenizer: a Hugging Face tokenizer (called as `tokenizer(texts, add_special_tokens=False)`).
        seq_len: tokens per training sequence; rows hold one more for the shifted targets.
        eos_id: the separator after each document; default `tokenizer.eos_token_id`.
        rank, world_size: this process's place among distributed ranks; default from `torch.distributed` when it is
            initialised, else 0 and 1.
        seed: with shard paths, shuffle the shard order with `random.Random(seed, epoch)` before splitting; None
            keeps the given order. Everything else is deterministic already.
        drop_last: drop each consumer's final partial row (True), or yield it short.
    Raises:
        ValueError: seq_len < 1, no eos id, or a rank outside the world.
    """

    def __init__(self, documents: DocumentSource, tokenizer, seq_len: int, *, eos_id: int | None = None,
                 rank: int | None = None, world_size: int | None = None, seed: int | None = None,
                 drop_last: bool = True, errors: str = "skip", tokenize_batch: int = 64):
        super().__init__()
        if seq_len < 1:
            raise ValueError(f"seq_len must be at least 1, got {seq_len}")
        self.eos_id = tokenizer.eos_token_id if eos_id is None else eos_id
        if self.eos_id is None:
            raise ValueError("The tokenizer has no eos_token_id: pass eos_id= (the token placed between documents).")
        if callable(documents):
            self.factory, self.paths = documents, None
        elif isinstance(documents, (str, os.PathLike)):
            from .readers import resolve_inputs

            self.factory, self.paths = None, [inp.location for inp in resolve_inputs(documents)]
        else:
            self.factory, self.paths = None, [os.fspath(p) for p in documents]
        self.tokenizer, self.seq_len, self.seed, self.drop_last = tokenizer, seq_len, seed, drop_last
        self.rank, self.world_size = _distributed(rank, world_size)
        self.errors, self.tokenize_batch, self.epoch = errors, tokenize_batch, 0

    def set_epoch(self, epoch: int) -> None:
        """Change the shard shuffle for the next iteration (call before creating the DataLoader iterator)."""
        self.epoch = epoch

    def consumer(self) -> tuple[int, int]:
        """(this consumer's index, number of consumers) = (rank * workers + worker id, world size * workers)."""
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return self.rank * workers + worker, self.world_size * workers

    def documents(self) -> Iterator[Document]:
        """This consumer's documents, in order."""
        index, count = self.consumer()
        if self.paths is not None:
            from .readers import read_documents

            paths = list(self.paths)
            if self.seed is not None:
                random.Random(f"{self.seed}:{self.epoch}").shuffle(paths)
            if len(paths) >= count:
                return itertools.chain.from_iterable(read_documents(p, errors=self.errors) for p in paths[index::count])
            stream = itertools.chain.from_iterable(read_documents(p, errors=self.errors) for p in paths)
        else:
            stream = iter(self.factory())
        return (doc for i, doc in enumerate(stream) if i % count == index)

    def __iter__(self) -> Iterator[torch.Tensor]:
        row = self.seq_len + 1
        buffer: list[int] = []
        for ids in self._token_ids(self.documents()):
            buffer.extend(ids)
            buffer.append(self.eos_id)
            if len(buffer) >= row:
                full = len(buffer) // row * row
                # A tensor of its own per row: a view would carry the whole block's storage to the DataLoader's
                # main process with every row.
                for start in range(0, full, row):
                    yield torch.tensor(buffer[start:start + row], dtype=torch.long)
                del buffer[:full]  # the leftover (< one row) carries into the next document's rows
        if buffer and not self.drop_last:
            yield torch.tensor(buffer, dtype=torch.long)

    def _token_ids(self, docs: Iterator[Document]) -> Iterator[list[int]]:
        """Token ids per document, tokenized a batch of documents at a time (a fast tokenizer's batch call is
        several times quicker than one call per document)."""
        while batch := list(itertools.islice(docs, self.tokenize_batch)):
            yield from self.tokenizer([d.text for d in batch], add_special_tokens=False)["input_ids"]


def _distributed(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None or world_size is None:
        initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
        rank = rank if rank is not None else (torch.distributed.get_rank() if initialised else 0)
        world_size = world_size if world_size is not None else (
            torch.distributed.get_world_size() if initialised else 1)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
    return rank, world_size


class PackedBatches:
    """The `llmfs.train.BatchSource` protocol over a `PackedDataset`: `batch(step, micro) -> (x, y)`, each (B, T).

    Batch number k = (step - 1) * grad_accum + micro (step 0, as `evaluate` asks, gives k = micro) is the k-th run
    of `batch_size` consecutive rows of the stream, so every consumer of the same dataset sees the same batches.
    A stream is not random-access: asking for a later batch reads forward, an earlier one restarts the stream and
    skips the batches before it. A resumed run (`train(..., resume=True)` starting at step s + 1) therefore re-reads
    and re-tokenizes the data of its first s steps, without training on them: correct, at the cost of that reading.
    With `cycle=True` the stream starts over (next epoch, `set_epoch`) when it ends, so a run may outlast the data.

    Args:
        num_workers: tokenize in that many DataLoader worker processes (rows arrive in a fixed round-robin order).
    Raises (from `batch`):
        ValueError: the data holds no full row, or ran out with `cycle=False`.
    """

    def __init__(self, dataset: PackedDataset, batch_size: int, *, grad_accum: int = 1, num_workers: int = 0,
                 cycle: bool = True):
        if batch_size < 1 or grad_accum < 1:
            raise ValueError(f"batch_size and grad_accum must be positive, got {batch_size} and {grad_accum}")
        self.dataset, self.batch_size, self.grad_accum = dataset, batch_size, grad_accum
        self.num_workers, self.cycle = num_workers, cycle
        self._rows: Iterator[torch.Tensor] | None = None
        self._next = 0                                    # the batch number the stream would give next
        self._last: tuple[int, tuple[torch.Tensor, torch.Tensor]] | None = None

    def batch(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        index = max(step - 1, 0) * self.grad_accum + micro
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        if self._rows is None or index < self._next:
            self._rows, self._next = self._row_stream(), 0
        while self._next <= index:
            rows = [next(self._rows) for _ in range(self.batch_size)]
            self._next += 1
        block = torch.stack(rows)                         # (B, T + 1)
        self._last = (index, (block[:, :-1], block[:, 1:]))
        return self._last[1]

    def _row_stream(self) -> Iterator[torch.Tensor]:
        row = self.dataset.seq_len + 1
        for epoch in itertools.count():
            self.dataset.set_epoch(epoch)
            source = self.dataset if self.num_workers == 0 else torch.utils.data.DataLoader(
                self.dataset, batch_size=None, num_workers=self.num_workers)
            rows = 0
            for tensor in source:
                if len(tensor) == row:                    # a short last row (drop_last=False) cannot be batched
                    rows += 1
                    yield tensor
            if rows == 0:
                raise ValueError(f"The data holds no full sequence of {row} tokens: use more text or a shorter "
                                 "sequence length.")
            if not self.cycle:
                raise ValueError(f"The data ran out after {rows} sequences (epoch {epoch}); pass cycle=True to "
                                 "start over, or train for fewer steps.")
