"""Encoded examples (`llmfs.data.examples`) as the training loop's batches: (inputs, targets) with -100 wherever the
model is not trained (the question, the template's headers, padding), which the models' cross-entropy ignores.

One example per row, padded on the right to the batch's longest (no packing across conversations: a conversation
never sees another's tokens); or, when asked, examples packed end to end into windows of the sequence length
(fewer wasted pad tokens, at the price of attending across examples).
"""

from __future__ import annotations

import math

import torch

from .examples import Encoded

IGNORE = -100


def pair(e: Encoded) -> tuple[list[int], list[int]]:
    """(inputs, targets) of one example: inputs are its tokens but the last; the target at each position is the next
    token where that token is trained, else IGNORE."""
    ids = list(e.ids)
    targets = [t if trained else IGNORE for t, trained in zip(ids[1:], e.trained[1:])]
    return ids[:-1], targets


def collate(examples: list[Encoded], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, T) inputs and targets, T the longest example's inputs; padding is never trained on."""
    pairs = [pair(e) for e in examples]
    width = max(len(x) for x, _ in pairs)
    xs = [x + [pad_id] * (width - len(x)) for x, _ in pairs]
    ys = [y + [IGNORE] * (width - len(y)) for _, y in pairs]
    return torch.tensor(xs, dtype=torch.long), torch.tensor(ys, dtype=torch.long)


class ExampleBatches:
    """Training batches of whole examples: each step's batch is drawn from a seeded shuffle of the examples, epoch
    after epoch (every example once per epoch; deterministic per step, so a resumed run reads what an uninterrupted
    one would)."""

    def __init__(self, examples: list[Encoded], batch_size: int, pad_id: int, seed: int = 0, grad_accum: int = 1):
        if not examples:
            raise ValueError("No examples to train on.")
        self.examples, self.batch_size, self.pad_id, self.seed = examples, batch_size, pad_id, seed
        self.grad_accum = grad_accum
        self._orders: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._orders = {epoch: torch.randperm(len(self.examples), generator=g).tolist()}  # keep one epoch's
        return self._orders[epoch]

    def batch(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        # this micro-batch's rows: the next batch_size positions in an endless run of epochs, one shuffle per epoch
        start = (max(step - 1, 0) * self.grad_accum + micro) * self.batch_size
        n = len(self.examples)
        rows = []
        for k in range(start, start + self.batch_size):
            epoch, i = divmod(k, n)
            rows.append(self.examples[self._order(epoch)[i]])
        return collate(rows, self.pad_id)

    def __len__(self) -> int:
        return sum(len(e.ids) for e in self.examples)


class HeldOutExamples:
    """Every held-out example, in order, `batch_size` at a time: an evaluation reads them all (the same ones at every
    evaluation, so they compare). Quacks like `llmfs.train.HeldOutWindows` (usable, note, batches, tokens_read)."""

    def __init__(self, examples: list[Encoded], batch_size: int, pad_id: int, note: str | None = None):
        self.examples, self.batch_size, self.pad_id, self.note = examples, batch_size, pad_id, note
        self.usable = bool(examples)
        self.batches = self.final_batches = max(1, math.ceil(len(examples) / batch_size))

    def batch(self, step: int = 0, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        i = micro % self.batches
        return collate(self.examples[i * self.batch_size: (i + 1) * self.batch_size], self.pad_id)

    @property
    def tokens_read(self) -> int:
        return sum(len(e.ids) - 1 for e in self.examples)


class PackedExamples:
    """Examples packed end to end into one stream, read as random windows of `seq_len` + 1 tokens (nanoGPT's way,
    as plain text is read), keeping each token's trained flag."""

    def __init__(self, examples: list[Encoded], batch_size: int, seq_len: int, seed: int = 0):
        ids = [i for e in examples for i in e.ids]
        trained = [t for e in examples for t in e.trained]
        if len(ids) < seq_len + 2:
            seq_len = max(2, len(ids) - 2)
        self.ids = torch.tensor(ids, dtype=torch.long)
        self.targets = torch.where(torch.tensor(trained), self.ids, torch.full_like(self.ids, IGNORE))
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed

    def batch(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 1009 + micro)
        starts = torch.randint(len(self.ids) - self.seq_len - 1, (self.batch_size,), generator=g).tolist()
        x = torch.stack([self.ids[s: s + self.seq_len] for s in starts])
        y = torch.stack([self.targets[s + 1: s + self.seq_len + 1] for s in starts])
        return x, y

    def __len__(self) -> int:
        return len(self.ids)
