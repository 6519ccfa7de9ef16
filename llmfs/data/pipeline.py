"""The L13 pipeline: read -> mix -> filter -> deduplicate -> write WebDataset shards, with live statistics.

Each step is `Iterator[Document] -> Iterator[Document]` (datatrove's shape), so the whole pipeline is one lazy chain
and memory stays bounded by a batch of documents plus the deduplicator's signatures, whatever the input size.
Every step's counts (forwarded / dropped / dropped_<reason>) map straight onto the funnel chart.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from ..config import ConfigError, check_fields, from_dict, option
from .documents import Document, ReadError

Emit = Callable[..., None]
SAMPLE_CHARS = 1200         # enough of a dropped document to see why it was dropped


@dataclass(frozen=True)
class PipelineConfig:
    """What to read, how to mix it, which filters and deduplication to run, and how to write the result."""

    inputs: tuple[str, ...] = option(("llmfs-corpus",), "Where the documents come from: llmfs-corpus (built in), "
                                     "files or folders (.txt, .jsonl, .parquet, .tar shards), shard patterns like "
                                     "shards/shard-{000..009}.tar, or hf:NAME for a Hugging Face dataset.",
                                     label="Sources")
    weights: tuple[float, ...] | None = option(None, "Mixing weights, one per source (e.g. 0.7, 0.3): the share "
                                               "of documents drawn from each. Empty = equal shares.",
                                               label="Mixing weights")
    mix_until: Literal["all_exhausted", "first_exhausted"] = option(
        "all_exhausted", "With several sources: `all_exhausted` reads every document of every source (the weights "
                         "set the shares until a source runs out); `first_exhausted` stops when any source runs out, "
                         "so the shares match the weights exactly.", advanced=True, label="Mix until")
    filters: tuple[str, ...] = option((), "Quality filters to run, in order (gopher_quality, gopher_repetition, "
                                          "c4, length, language, regex, range). None = keep every document.",
                                      label="Filters")
    thresholds: dict | None = option(None, "Threshold overrides per filter, e.g. {\"length\": {\"min_words\": 20}}.",
                              advanced=True)
    dedup: Literal["none", "exact", "minhash"] = option(
        "none", "Remove duplicates: `exact` drops identical texts (after normalising case and spaces); `minhash` "
                "also drops near-duplicates (MinHash + LSH, FineWeb's settings).", label="Deduplication")
    shingle_size: int = option(5, "MinHash: words per shingle (FineWeb: 5).", min=1, max=64, advanced=True)
    bands: int = option(14, "MinHash LSH bands (FineWeb: 14).", min=1, max=1024, advanced=True)
    rows: int = option(8, "MinHash rows per band (FineWeb: 8).", min=1, max=64, advanced=True)
    limit: int | None = option(None, "Stop after reading this many documents (empty = read everything).",
                               min=1, max=10**10, label="Document limit")
    shard_max_docs: int = option(10_000, "Documents per output shard.", min=1, max=10**7, advanced=True)
    shard_max_bytes: int = option(100_000_000, "Bytes per output shard.", min=1_000, max=10**11, advanced=True)
    errors: Literal["skip", "raise"] = option("skip", "On an unreadable record: `skip` counts it and goes on, "
                                                      "`raise` stops the run.", advanced=True)
    seed: int = option(0, "Seed for mixing (the same seed gives the same order).", min=0, max=2**31 - 1,
                       advanced=True)
    samples_per_reason: int = option(5, "Dropped documents kept as examples per drop reason.", min=0, max=100,
                                     advanced=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "filters", tuple(self.filters))
        if self.weights is not None:
            object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        check_fields(self)
        if not self.inputs:
            raise ConfigError("inputs", "inputs is empty: give at least one source, e.g. llmfs-corpus.")
        if self.weights is not None:
            if len(self.weights) != len(self.inputs):
                raise ConfigError("weights", f"weights has {len(self.weights)} values for {len(self.inputs)} "
                                             "sources: give one weight per source.")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ConfigError("weights", "weights must be non-negative and add up to more than 0.")
        from .filters import FILTERS
        unknown = [f for f in self.filters if f not in FILTERS]
        if unknown:
            raise ConfigError("filters", f"Unknown filter(s) {', '.join(unknown)}; known: {', '.join(FILTERS)}.")


@dataclass
class PipelineStats:
    """Everything the live view shows, updated as documents flow."""
    documents_in: int = 0
    bytes_in: int = 0
    documents_out: int = 0
    bytes_out: int = 0
    read_errors: list[dict] = field(default_factory=list)
    read_error_count: int = 0
    samples: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    started: float = field(default_factory=time.time)

    def on_read_error(self, err: ReadError) -> None:
        self.read_error_count += 1
        if len(self.read_errors) < 100:
            self.read_errors.append({"source": err.source, "location": err.location, "reason": err.reason})


def run_pipeline(cfg: PipelineConfig, out_dir: str | os.PathLike | None, *, emit: Emit | None = None,
                 should_stop: Callable[[], bool] | None = None, log: Callable[[str], None] | None = None,
                 emit_every_s: float = 0.5, resume: bool = False) -> dict:
    """Run the pipeline; write kept documents as WebDataset shards under `out_dir` (None: count only).

    `emit(step, kind="pipeline", **counts)` is called about every `emit_every_s` seconds and at the end.
    `resume`: continue a stopped run in the same `out_dir`. Its finished shards are kept; the inputs are read again
    in the same (seeded) order, documents already written are skipped before any step, and the deduplicator first
    learns every written document, so nothing is lost, written twice, or let through as a duplicate of what is
    already there. (Re-reading costs input I/O; it is what keeps the filters and dedup exact across a restart.)
    Returns the final statistics (see `_summary`).
    """
    from .readers import read_documents
    from .shards import ShardWriter

    stats = PipelineStats()
    should_stop = should_stop or (lambda: False)
    reader_stream, mixer = _read_and_mix(cfg, stats)
    steps, dedup = _build_steps(cfg, stats)
    written: set[str] = set()
    start_index = 0
    if resume and out_dir is not None and Path(out_dir).is_dir() and any(Path(out_dir).glob("shard-*.tar")):
        start_index = len(list(Path(out_dir).glob("shard-*.tar")))
        for doc in read_documents(out_dir):
            written.add(doc.id)
            if dedup is not None:
                dedup.add(doc)  # learn it without counting it: it was counted by the run that wrote it
        if log:
            log(f"Resuming: {len(written):,} documents already in {start_index} shard(s) are kept and skipped.")
    stream: Iterator[Document] = _count_in((d for d in reader_stream if d.id not in written), stats, cfg.limit)
    for step in steps:
        stream = step(stream)
    writer = ShardWriter(out_dir, prefix="shard", max_docs=cfg.shard_max_docs, max_bytes=cfg.shard_max_bytes,
                         start_index=start_index, overwrite=True) if out_dir is not None else None
    last_emit, stopped = 0.0, False
    try:
        for doc in stream:
            if writer is not None:
                writer.write(doc)
            stats.documents_out += 1
            stats.bytes_out += len(doc.text.encode("utf-8"))
            if time.time() - last_emit >= emit_every_s:
                last_emit = time.time()
                _emit(emit, stats, steps, mixer)
            if should_stop():
                stopped = True
                if log:
                    log("Stopped at the user's request; the shards written so far are kept.")
                break
    finally:
        shards = writer.close() if writer is not None else []
    summary = _summary(cfg, stats, steps, dedup, mixer, shards, stopped)
    summary["resumed_documents"] = len(written)
    if start_index:  # the shards of the earlier attempt are part of the result too
        summary["shards"] = [str(p) for p in sorted(Path(out_dir).glob("shard-*.tar"))]
        summary["shards_written"] = len(summary["shards"])
    _emit(emit, stats, steps, mixer)
    return summary


def _read_and_mix(cfg: PipelineConfig, stats: PipelineStats):
    from .mixing import mix
    from .readers import read_documents

    readers = {spec: read_documents(spec, errors=cfg.errors, on_error=stats.on_read_error) for spec in cfg.inputs}
    if len(readers) == 1:
        return next(iter(readers.values())), None
    weights = dict(zip(cfg.inputs, cfg.weights or [1.0] * len(cfg.inputs)))
    mixer = mix(readers, weights, seed=cfg.seed, stopping=cfg.mix_until)
    return mixer, mixer


def _build_steps(cfg: PipelineConfig, stats: PipelineStats) -> tuple[list, Any]:
    from .dedup import ExactDeduper, MinHashConfig, MinHashDeduper
    from .filters import FilterStep, build_filters

    def keep_sample(doc: Document, reason: str) -> None:
        bucket = stats.samples[reason]
        if len(bucket) < cfg.samples_per_reason:
            bucket.append({"id": doc.id, "source": doc.source, "text": doc.text[:SAMPLE_CHARS],
                           "duplicate_of": doc.metadata.get("duplicate_of"),
                           "jaccard_estimate": doc.metadata.get("jaccard_estimate")})

    steps: list = [FilterStep(f, on_drop=keep_sample) for f in build_filters(cfg.filters, cfg.thresholds or None)]
    dedup = None
    if cfg.dedup == "exact":
        dedup = ExactDeduper()
    elif cfg.dedup == "minhash":
        dedup = MinHashDeduper(MinHashConfig(n_gram=cfg.shingle_size, bands=cfg.bands, rows=cfg.rows))
    if dedup is not None:
        dedup.on_drop = keep_sample
        steps.append(dedup)
    return steps, dedup


def _count_in(docs: Iterator[Document], stats: PipelineStats, limit: int | None) -> Iterator[Document]:
    for doc in docs:
        if limit is not None and stats.documents_in >= limit:
            return
        stats.documents_in += 1
        stats.bytes_in += len(doc.text.encode("utf-8"))
        yield doc


def funnel(stats: PipelineStats, steps: list) -> list[dict]:
    """Documents entering and leaving each step, in order: the funnel chart's bars."""
    rows = [{"step": "read", "documents": stats.documents_in, "dropped": 0}]
    for step in steps:
        rows.append({"step": getattr(step, "name", type(step).__name__), "documents": step.stats["forwarded"],
                     "dropped": step.stats["dropped"]})
    return rows


def drop_reasons(steps: list) -> dict[str, int]:
    reasons: Counter = Counter()
    for step in steps:
        for key, n in step.stats.items():
            if key.startswith("dropped_"):
                reasons[key.removeprefix("dropped_")] += n
    return dict(reasons.most_common())


def _emit(emit: Emit | None, stats: PipelineStats, steps: list, mixer) -> None:
    if emit is None:
        return
    elapsed = max(time.time() - stats.started, 1e-9)
    emit(stats.documents_in, kind="pipeline", documents_in=stats.documents_in, documents_out=stats.documents_out,
         bytes_in=stats.bytes_in, documents_per_s=stats.documents_in / elapsed, bytes_per_s=stats.bytes_in / elapsed,
         funnel=funnel(stats, steps), drops=drop_reasons(steps), read_errors=stats.read_error_count,
         mix=mixer.stats.to_dict() if mixer is not None else None, elapsed_s=elapsed)


def _summary(cfg, stats: PipelineStats, steps, dedup, mixer, shards, stopped: bool) -> dict:
    elapsed = max(time.time() - stats.started, 1e-9)
    clusters = []
    if dedup is not None and hasattr(dedup, "clusters"):
        clusters = [{"kept": c.kept_id, "duplicates": [{"id": i, "jaccard": j} for i, j in c.duplicates]}
                    for c in dedup.clusters()[:50]]
    elif dedup is not None:
        clusters = [{"kept": first, "duplicates": [{"id": dup, "jaccard": 1.0}]}
                    for dup, first in dedup.duplicates[:50]]
    return {
        "documents_in": stats.documents_in, "documents_out": stats.documents_out,
        "bytes_in": stats.bytes_in, "bytes_out": stats.bytes_out,
        "drops": drop_reasons(steps), "funnel": funnel(stats, steps),
        "duplicates": dedup.stats["dropped"] if dedup is not None else 0, "clusters": clusters,
        "shards": [str(s.path) for s in shards], "shards_written": len(shards),
        "documents_per_s": stats.documents_in / elapsed, "elapsed_s": elapsed,
        "mix": mixer.stats.to_dict() if mixer is not None else None,
        "read_errors": stats.read_errors, "read_error_count": stats.read_error_count,
        "samples": {k: v for k, v in stats.samples.items()}, "stopped": stopped,
    }


def pipeline_job(ctx, payload: dict) -> dict:
    """The job-runner recipe: shards go to `<run dir>/shards/`, where the training pages can pick them up."""
    cfg = from_dict(PipelineConfig, payload)
    out = Path(payload.get("out_dir") or ctx.run_dir / "shards")
    ctx.log(f"Pipeline over {', '.join(cfg.inputs)}; filters: {', '.join(cfg.filters) or 'none'}; "
            f"dedup: {cfg.dedup}; writing shards to {out}.")
    result = run_pipeline(cfg, out, emit=ctx.emit, should_stop=ctx.should_stop, log=ctx.log, resume=ctx.resume)
    ctx.log(f"{result['documents_in']:,} documents in, {result['documents_out']:,} out, "
            f"{result['shards_written']} shard(s), {result['documents_per_s']:,.0f} documents/s.")
    if result["read_error_count"]:
        ctx.log(f"{result['read_error_count']} unreadable record(s) skipped; first: {result['read_errors'][0]}")
    return result
