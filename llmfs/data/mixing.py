"""Mixing sources: weighted, seeded interleaving of document streams, and temperature sampling by source size.

`mix` draws the source of each next document at random with the given weights (as `datasets.interleave_datasets`
does with `probabilities=`), so the realised proportions converge to the weights; `MixStats` counts what was drawn
as documents flow. `temperature_weights` turns source sizes into such weights: p_i ∝ n_i^(1/T), the multilingual
sampling of XLM (Conneau & Lample 2019, §3.1, alpha = 1/T = 0.5) and mT5 (Xue et al. 2021, alpha = 0.3):
T = 1 samples in proportion to size, larger T flattens towards uniform, upsampling the small sources.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Iterator, Literal, Mapping

from .documents import Document

Stopping = Literal["first_exhausted", "all_exhausted"]


@dataclass
class MixStats:
    """What a mix has drawn so far; updated as each document is yielded."""
    weights: dict[str, float]                         # target proportions, normalised to sum to 1
    counts: dict[str, int] = field(default_factory=dict)
    exhausted: list[str] = field(default_factory=list)  # sources that ran out, in order

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def proportions(self) -> dict[str, float]:
        """Realised share of each source (0 for all before the first document)."""
        total = self.total
        return {name: (n / total if total else 0.0) for name, n in self.counts.items()}

    def max_deviation(self) -> float:
        """Largest |realised - target| share over the sources."""
        realised = self.proportions()
        return max(abs(realised[name] - w) for name, w in self.weights.items())

    def to_dict(self) -> dict:
        """Flat values for a metrics record: total, count_<name>, share_<name>, target_<name>."""
        out: dict = {"total": self.total, "exhausted": list(self.exhausted)}
        for name, share in self.proportions().items():
            out.update({f"count_{name}": self.counts[name], f"share_{name}": share,
                        f"target_{name}": self.weights[name]})
        return out


class Mix:
    """Iterator over documents interleaved from several sources (see `mix`); `.stats` is its `MixStats`."""

    def __init__(self, sources: Mapping[str, Iterator[Document]], weights: Mapping[str, float], seed: int,
                 stopping: Stopping = "first_exhausted"):
        if stopping not in ("first_exhausted", "all_exhausted"):
            raise ValueError(f'stopping must be "first_exhausted" or "all_exhausted", got {stopping!r}')
        self.stats = MixStats(_normalise(sources, weights), counts={name: 0 for name in sources})
        # A source with weight 0 is never drawn, so never read, and never ends the mix.
        self._iters = {name: iter(src) for name, src in sources.items() if self.stats.weights[name] > 0}
        self._rng = random.Random(seed)
        self._stopping = stopping
        self._rebuild()

    def _rebuild(self) -> None:
        self._names = list(self._iters)
        self._cumulative = list(itertools.accumulate(self.stats.weights[n] for n in self._names))

    def __iter__(self) -> Mix:
        return self

    def __next__(self) -> Document:
        while self._names:
            # One uniform draw per document, whatever the documents hold: the same seed gives the same order.
            r = self._rng.random() * self._cumulative[-1]
            name = self._names[min(bisect.bisect_right(self._cumulative, r), len(self._names) - 1)]
            try:
                doc = next(self._iters[name])
            except StopIteration:
                self.stats.exhausted.append(name)
                if self._stopping == "first_exhausted":
                    self._names = []
                    break
                # Iterators cannot be restarted, so unlike `interleave_datasets`' all_exhausted (which oversamples
                # the finished sources again) the remaining ones are renormalised and the mix runs until all end.
                del self._iters[name]
                self._rebuild()
                continue
            self.stats.counts[name] += 1
            return doc
        raise StopIteration


def mix(sources: Mapping[str, Iterator[Document]], weights: Mapping[str, float], seed: int = 0,
        stopping: Stopping = "first_exhausted") -> Mix:
    """Interleave `sources`, drawing each next document's source with probability weight / sum(weights).

    Args:
        sources: name -> document iterator (read lazily, one document at a time).
        weights: name -> non-negative weight, one per source (normalised here); see `temperature_weights`.
        seed: the draws come from `random.Random(seed)`.
        stopping: "first_exhausted" ends when a drawn source has run out (the shares stay true to the weights);
            "all_exhausted" drops a finished source, renormalises the others and goes on until all have ended.
    Returns:
        A `Mix`: iterate it for the documents; `.stats` (MixStats) holds the counts so far.
    Raises:
        ValueError: weights that do not match the sources, negative, not finite, or all zero.
    """
    return Mix(sources, weights, seed, stopping)


def temperature_weights(sizes: Mapping[str, float], temperature: float) -> dict[str, float]:
    """Sampling weights p_i = n_i^(1/T) / sum_j n_j^(1/T) from source sizes n_i (documents, tokens or bytes).

    Raises:
        ValueError: T <= 0, a negative or non-finite size, or all sizes zero.
    """
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    if any(not math.isfinite(n) or n < 0 for n in sizes.values()):
        raise ValueError(f"sizes must be finite and non-negative, got {dict(sizes)}")
    largest = max(sizes.values(), default=0)
    if largest <= 0:
        raise ValueError("at least one source must have a positive size")
    # Dividing by the largest first keeps n^(1/T) from overflowing for small T (n^100 does for n > 1e3).
    scaled = {name: (n / largest) ** (1.0 / temperature) for name, n in sizes.items()}
    total = sum(scaled.values())
    return {name: s / total for name, s in scaled.items()}


def _normalise(sources: Mapping, weights: Mapping[str, float]) -> dict[str, float]:
    if set(sources) != set(weights):
        raise ValueError(f"weights must name exactly the sources: sources {sorted(sources)}, weights {sorted(weights)}")
    if any(not math.isfinite(w) or w < 0 for w in weights.values()):
        raise ValueError(f"weights must be finite and non-negative, got {dict(weights)}")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("at least one weight must be positive")
    return {name: weights[name] / total for name in sources}
