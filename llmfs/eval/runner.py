"""Run an evaluation: a config in, scores with standard errors and per-item records out (L14).

``evaluate`` is the library call (model and tokenizer already loaded); ``eval_job`` is the same work as a job for
``llmfs.jobs.JobManager``: it loads the model, reports ``kind="eval_progress"`` records with the running scores,
and leaves ``results.json`` and ``items.jsonl`` in the run directory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..adapters import read_adapter
from ..config import ConfigError, EvalConfig, from_dict
from ..errors import SourceError
from ..fsutil import atomic_write_json
from .perplexity import document_loglikelihoods, text_metrics, text_metrics_stderr, word_count
from .scorer import choose, context_length, encode_requests, mean_with_stderr, pooled_stderr, score_requests
from .tasks import Task, load_task
from .tasks.truthfulqa import mc2_score

Progress = Callable[[int, int, dict], None]  # (items done, items in total, running scores)
CHUNK_ITEMS = 32  # items scored between two progress reports (and stop checks)
PERPLEXITY_CHUNK_DOCS = 4


def evaluate(model: Any, tokenizer: Any, cfg: EvalConfig, progress: Progress | None = None,
             should_stop: Callable[[], bool] | None = None, task: Task | None = None,
             share_context: bool = True) -> dict:
    """Score ``model`` on the benchmark ``cfg`` names.

    Args:
        model: our ``GPT`` or ``Llama`` (or any callable mapping token ids to logits, with a ``config``), on its
            device.
        task: items already loaded (default: ``load_task(cfg)``).
        share_context: run a context shared by several choices once (see ``score_requests``); off only to
            measure what sharing saves.
        progress: called every few items with ``(done, total, running scores)``.
        should_stop: checked between chunks; a stopped evaluation returns the items scored so far.

    Returns:
        ``{"task", "source", "n_items", "metrics": {name: value, name + "_stderr": value}, "groups" (MMLU: per
        subject), "items": [per-item records], "stopped", "seconds", "items_per_s", "max_length", "config"}``.

    Raises:
        ConfigError: ``max_length`` beyond the model's context.
        llmfs.sources.SourceError, TaskDataError: the data cannot be read (see ``load_task``).
    """
    task = task or load_task(cfg)
    max_length = window_of(model, cfg)
    t0 = time.time()
    run = {"multiple_choice": _run_multiple_choice, "reference": _run_reference, "perplexity": _run_perplexity}
    opts = _Options(cfg.batch_size, max_length, share_context, progress, should_stop)
    records, stopped = run[task.kind](model, tokenizer, task, cfg.stride, opts)
    seconds = time.time() - t0
    metrics, groups = summarize(task, records)
    return {"task": task.name, "kind": task.kind, "source": task.source, "n_items": len(records),
            "n_total": len(task.items), "metrics": metrics, "groups": groups, "items": records, "stopped": stopped,
            "seconds": round(seconds, 3), "items_per_s": round(len(records) / seconds, 2) if seconds else None,
            "max_length": max_length, "config": dataclasses.asdict(cfg)}


def window_of(model: Any, cfg: EvalConfig) -> int:
    n_positions = context_length(model)
    if cfg.max_length > n_positions:
        raise ConfigError("max_length", f"max_length must be between 1 and {n_positions}, the model's context "
                                        f"length (got {cfg.max_length}); 0 uses the whole context.")
    return cfg.max_length or n_positions


# -- the three kinds of task --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Options:
    batch_size: int
    max_length: int
    share_context: bool
    progress: Progress | None
    should_stop: Callable[[], bool] | None

    def stop(self) -> bool:
        return bool(self.should_stop and self.should_stop())

    def score(self, model, encoded):
        return score_requests(model, encoded, max_length=self.max_length, batch_size=self.batch_size,
                              share_context=self.share_context)


def _run_multiple_choice(model, tokenizer, task, stride, opts: _Options):
    records: list[dict] = []
    for start in range(0, len(task.items), CHUNK_ITEMS):
        if opts.stop():
            return records, True
        chunk = task.items[start: start + CHUNK_ITEMS]
        requests = [req for item in chunk for req in item.requests()]
        scores = iter(opts.score(model, encode_requests(tokenizer, requests)))
        for k, item in enumerate(chunk, start=start):
            results = [next(scores) for _ in item.choices]
            records.append(mc_record(task, item, k, [ll for ll, _ in results], [g for _, g in results]))
        _report(opts.progress, task, records)
    return records, False


def mc_record(task: Task, item, index: int, logliks: list[float], greedy: list[bool]) -> dict:
    """One question's drill-down: prompt, choices, log-likelihoods, prediction, gold, and its metric values."""
    pred, pred_norm = choose(logliks, item.choices)
    rec = {"index": index, "id": item.id, "group": item.group, "prompt": item.context, "choices": list(item.choices),
           "delimiter": item.delimiter, "logliks": logliks, "is_greedy": greedy, "predicted": pred,
           "predicted_norm": pred_norm, "gold": item.gold, "correct": pred == item.gold}
    if item.labels is not None and task.name == "truthfulqa_mc2":
        rec["labels"] = list(item.labels)
        rec["correct"] = item.labels[pred] == 1
        rec["values"] = {"acc": mc2_score(logliks, item.labels)}  # lm-eval names the MC2 score "acc"
    else:
        rec["values"] = {"acc": float(pred == item.gold), "acc_norm": float(pred_norm == item.gold)}
        rec["values"] = {m: v for m, v in rec["values"].items() if m in task.metrics}
    return rec


def _run_reference(model, tokenizer, task, stride, opts: _Options):
    records: list[dict] = []
    for start in range(0, len(task.items), CHUNK_ITEMS):
        if opts.stop():
            return records, True
        chunk = task.items[start: start + CHUNK_ITEMS]
        encoded = encode_requests(tokenizer, [(it.prompt, it.reference) for it in chunk])
        scores = opts.score(model, encoded)
        for k, (item, enc, (ll, greedy)) in enumerate(zip(chunk, encoded, scores), start=start):
            records.append({"index": k, "id": item.id, "prompt": item.prompt, "reference": item.reference,
                            "loglik": ll, "tokens": len(enc.continuation), "exact_match": greedy,
                            "values": {"loglik": ll, "exact_match": float(greedy)}})
        _report(opts.progress, task, records)
    return records, False


def _run_perplexity(model, tokenizer, task, stride, opts: _Options):
    records: list[dict] = []
    for start in range(0, len(task.items), PERPLEXITY_CHUNK_DOCS):
        if opts.stop():
            return records, True
        chunk = task.items[start: start + PERPLEXITY_CHUNK_DOCS]
        scored = document_loglikelihoods(model, tokenizer, [d.text for d in chunk], max_length=opts.max_length,
                                         stride=stride, batch_size=opts.batch_size)
        for k, (doc, (ll, n_tokens)) in enumerate(zip(chunk, scored), start=start):
            records.append({"index": k, "id": doc.id, "preview": doc.text[:300], "loglik": ll, "tokens": n_tokens,
                            "words": word_count(doc.page), "bytes": len(doc.page.encode("utf-8"))})
        _report(opts.progress, task, records)
    return records, False


# -- scores -------------------------------------------------------------------------------------------------------
def summarize(task: Task, records: list[dict]) -> tuple[dict, dict]:
    """Task-level metrics (each with ``_stderr`` where lm-eval has one) and, for MMLU, per-subject scores."""
    if task.kind == "perplexity":
        columns = [[r[k] for r in records] for k in ("loglik", "tokens", "words", "bytes")]
        return {**text_metrics(*columns), **text_metrics_stderr(*columns)}, {}
    metrics: dict[str, float | None] = {}
    names = task.metrics if task.kind == "multiple_choice" else ("loglik", "exact_match")
    for name in names:
        metrics[name], metrics[f"{name}_stderr"] = mean_with_stderr([r["values"][name] for r in records])
    if task.kind == "reference":
        tokens = sum(r["tokens"] for r in records)
        ll = sum(r["loglik"] for r in records)
        metrics["perplexity"] = math.exp(min(-ll / tokens, 700)) if tokens else None
        lls, toks = [r["loglik"] for r in records], [r["tokens"] for r in records]
        metrics["perplexity_stderr"] = text_metrics_stderr(lls, toks, toks, toks)["token_perplexity_stderr"]
    groups: dict[str, dict] = {}
    if task.grouped:
        by_group: dict[str, list[dict]] = defaultdict(list)
        for r in records:
            by_group[r["group"]].append(r)
        for g, recs in sorted(by_group.items()):
            groups[g] = {"n": len(recs)}
            for name in task.metrics:
                groups[g][name], groups[g][f"{name}_stderr"] = mean_with_stderr([r["values"][name] for r in recs])
        for name in task.metrics:  # lm-eval's group stderr: pooled over subjects (weight_by_size)
            metrics[f"{name}_stderr"] = pooled_stderr([groups[g][f"{name}_stderr"] for g in groups],
                                                      [groups[g]["n"] for g in groups])
    return metrics, groups


def _report(progress: Progress | None, task: Task, records: list[dict]) -> None:
    if progress is not None:
        metrics, _ = summarize(task, records)
        running = {k: v for k, v in metrics.items() if not k.endswith("_stderr") and v is not None}
        progress(len(records), len(task.items), running)


# -- the job ------------------------------------------------------------------------------------------------------
def eval_job(ctx, payload: dict) -> dict:
    """Job-runner entry point (wrapped by ``llmfs.recipes.eval_job``, which ``llmfs.runner`` registers)."""
    from ..train import resolve_device
    from ..weights import load_model

    cfg = from_dict(EvalConfig, payload)
    ctx.log(f"Loading model {cfg.model} ...")
    model, tokenizer = load_model(cfg.model)
    adapter = cfg.adapter.strip()
    if adapter:
        ctx.log(f"Adding the adapter {adapter_name(adapter)} ...")
        model = apply_adapter(model, adapter)
    model.to(resolve_device(cfg.device)).eval()
    ctx.log(f"Reading the {cfg.task} items ...")
    task = load_task(cfg)
    unit = progress_unit(task)
    ctx.log(f"{len(task.items)} {unit} from {task.source}.")
    ctx.progress(0, len(task.items), unit=unit)

    def report(done: int, total: int, running: dict) -> None:
        ctx.emit(done, kind="eval_progress", done=done, total=total, **running)
        ctx.progress(done, total, unit=unit)

    results = evaluate(model, tokenizer, cfg, progress=report, should_stop=ctx.should_stop, task=task)
    if adapter:
        results["adapter_name"] = adapter_name(adapter)  # what it was called then, should it be deleted later
    return write_results(ctx.run_dir, results)


def progress_unit(task: Task) -> str:
    """What an evaluation counts, as its progress says it: "questions", or "documents" for perplexity."""
    return "documents" if task.kind == "perplexity" else "questions"


def adapter_name(path: str) -> str:
    """An adapter's name in the adapter library (its current one, after a rename), else its folder's name."""
    try:
        return read_adapter(path).name
    except (ValueError, OSError, KeyError, TypeError):  # AdapterError is a ValueError
        return Path(path).name


def write_results(run_dir: str | Path, results: dict) -> dict:
    """``items.jsonl`` (one record a line) and ``results.json`` (everything but the items); returns the latter."""
    run_dir = Path(run_dir)
    with open(run_dir / "items.jsonl", "w", encoding="utf-8") as f:
        for rec in results["items"]:
            f.write(json.dumps(rec) + "\n")
    summary = {k: v for k, v in results.items() if k != "items"}
    atomic_write_json(run_dir / "results.json", summary)
    return summary


def apply_adapter(model: Any, path: str) -> Any:
    """Put a LoRA adapter folder on ``model`` through ``llmfs.lora`` (the LoRA lesson's module)."""
    try:
        from .. import lora  # type: ignore[attr-defined]
    except ImportError:
        lora = None
    loader = getattr(lora, "load_adapter", None)
    if loader is None:
        raise SourceError("Evaluating with an adapter needs llmfs.lora (the LoRA lesson), which this installation "
                          "does not have yet; leave the adapter empty to test the model itself.")
    return loader(model, path)


def preflight_eval(cfg: EvalConfig) -> None:
    """Refuse what is knowable before queueing: a window beyond the context, a missing data file or adapter."""
    from ..train import resolve_device
    from ..weights import peek_model_config

    model_config = peek_model_config(cfg.model)
    if model_config is not None and cfg.max_length > model_config.n_positions:
        raise ConfigError("max_length", f"max_length must be between 1 and {model_config.n_positions}, the model's "
                                        f"context length (got {cfg.max_length}); 0 uses the whole context.")
    resolve_device(cfg.device)
    data = cfg.data.strip()
    if data and data != "wikitext" and not Path(data).expanduser().exists():
        raise SourceError(f"No data file at {data}: give the path of a local file in the benchmark's format.")
    if cfg.adapter.strip() and not Path(cfg.adapter.strip()).expanduser().is_dir():
        raise SourceError(f"No adapter folder at {cfg.adapter}.")


def submit_eval(jobs, cfg: EvalConfig, owner: str | None = None, run_dir: str | Path | None = None) -> str:
    jobs.admit("eval", cfg)  # a workshop's rules first: a source the person may not read is never opened
    preflight_eval(cfg)
    return jobs.submit("eval", cfg, owner=owner, run_dir=run_dir)
