"""Mixing: seeded weighted interleaving converges to the weights; temperature weights follow n^(1/T)."""

from __future__ import annotations

import itertools

import pytest

from llmfs.data.documents import Document
from llmfs.data.mixing import MixStats, mix, temperature_weights


def _source(name: str, n: int | None = None):
    counter = itertools.count() if n is None else range(n)
    return (Document(f"{name} {i}", f"{name}-{i}", name) for i in counter)


def test_realised_proportions_converge_to_the_weights():
    weights = {"web": 0.5, "code": 0.3, "books": 0.2}
    stream = mix({name: _source(name) for name in weights}, weights, seed=0)
    docs = list(itertools.islice(stream, 10_000))
    shares = stream.stats.proportions()
    assert stream.stats.total == 10_000 == len(docs)
    assert all(abs(shares[name] - w) < 0.02 for name, w in weights.items()), shares  # binomial sd <= 0.005
    assert stream.stats.max_deviation() < 0.02
    # each source's documents come through in their own order
    web = [d.id for d in docs if d.source == "web"]
    assert web == [f"web-{i}" for i in range(len(web))]


def test_same_seed_same_order_other_seed_other_order():
    def ids(seed):
        stream = mix({"a": _source("a"), "b": _source("b")}, {"a": 1, "b": 1}, seed=seed)
        return [d.id for d in itertools.islice(stream, 200)]

    assert ids(3) == ids(3)
    assert ids(3) != ids(4)


def test_stats_update_as_documents_flow():
    stream = mix({"a": _source("a"), "b": _source("b")}, {"a": 3, "b": 1}, seed=1)
    assert stream.stats.total == 0 and stream.stats.proportions() == {"a": 0.0, "b": 0.0}
    assert stream.stats.weights == {"a": 0.75, "b": 0.25}
    for k in range(1, 6):
        doc = next(stream)
        assert stream.stats.total == k and stream.stats.counts[doc.source] >= 1
    record = stream.stats.to_dict()
    assert record["total"] == 5 and record["target_a"] == 0.75 and record["count_a"] + record["count_b"] == 5


def test_first_exhausted_stops_at_the_first_empty_draw():
    stream = mix({"small": _source("small", 5), "big": _source("big")}, {"small": 0.5, "big": 0.5}, seed=0)
    docs = list(stream)
    assert sum(d.source == "small" for d in docs) == 5
    assert stream.stats.exhausted == ["small"]
    assert 5 < len(docs) < 40  # the mix ended soon after, not when "big" (endless) did


def test_all_exhausted_yields_every_document_once():
    sizes = {"a": 7, "b": 30, "c": 1}
    stream = mix({n: _source(n, k) for n, k in sizes.items()}, {"a": 0.2, "b": 0.2, "c": 0.6}, seed=5,
                 stopping="all_exhausted")
    ids = [d.id for d in stream]
    assert sorted(ids) == sorted(f"{n}-{i}" for n, k in sizes.items() for i in range(k))
    assert sorted(stream.stats.exhausted) == ["a", "b", "c"]
    assert stream.stats.counts == sizes


def test_zero_weight_source_is_never_read():
    def exploding():
        raise AssertionError("read")
        yield

    stream = mix({"a": _source("a", 3), "off": exploding()}, {"a": 1.0, "off": 0.0}, seed=0)
    assert [d.id for d in stream] == ["a-0", "a-1", "a-2"]


@pytest.mark.parametrize("weights, match", [
    ({"a": 1.0}, "exactly the sources"), ({"a": 1, "b": -1}, "non-negative"), ({"a": 0, "b": 0}, "positive"),
    ({"a": 1, "b": float("nan")}, "finite"),
])
def test_bad_weights(weights, match):
    with pytest.raises(ValueError, match=match):
        mix({"a": _source("a"), "b": _source("b")}, weights, seed=0)
    with pytest.raises(ValueError, match="stopping"):
        mix({"a": _source("a")}, {"a": 1}, stopping="never")


def test_temperature_weights_formula():
    sizes = {"en": 100.0, "sw": 1.0}
    assert temperature_weights(sizes, 1.0) == pytest.approx({"en": 100 / 101, "sw": 1 / 101})
    # T = 2 is XLM's alpha = 0.5: sqrt(100) = 10 against sqrt(1) = 1
    assert temperature_weights(sizes, 2.0) == pytest.approx({"en": 10 / 11, "sw": 1 / 11})
    # mT5's alpha = 0.3, T = 1 / 0.3: 100^0.3 = 3.981
    assert temperature_weights(sizes, 1 / 0.3)["sw"] == pytest.approx(1 / (1 + 100 ** 0.3))
    assert temperature_weights(sizes, 1e9) == pytest.approx({"en": 0.5, "sw": 0.5})  # T -> inf: uniform
    # small T sharpens towards the largest without overflowing (1e6^100 would be inf)
    assert temperature_weights({"a": 1e6, "b": 5e5, "c": 0}, 0.01) == pytest.approx({"a": 1.0, "b": 0.0, "c": 0.0})
    for bad_t in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            temperature_weights(sizes, bad_t)
    with pytest.raises(ValueError, match="positive size"):
        temperature_weights({"a": 0}, 1.0)


def test_mix_by_temperature_upsamples_the_small_source():
    sizes = {"big": 900, "small": 100}
    weights = temperature_weights(sizes, 3.0)  # 900^(1/3) = 9.65, 100^(1/3) = 4.64: small gets 32.5%, not 10%
    assert weights["small"] == pytest.approx(100 ** (1 / 3) / (900 ** (1 / 3) + 100 ** (1 / 3)))
    stream = mix({n: _source(n) for n in sizes}, weights, seed=2)
    list(itertools.islice(stream, 10_000))
    assert abs(stream.stats.proportions()["small"] - weights["small"]) < 0.02
    assert isinstance(stream.stats, MixStats)
