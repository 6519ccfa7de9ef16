"""Tables about runs for the Runs page: functions from `Run` objects to pandas DataFrames. A setting's value can be
a server path (a model folder, an upload): a workshop participant sees it as a name (`identity.shown`)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from llmfs.access import hide_paths
from llmfs.config import EvalConfig, TrainConfig, field_info
from llmfs.runs import SUCCEEDED, Run, describe_runs, differences, short_source, with_defaults

from . import charts, identity, state


def run_label(run: Run) -> str:
    """A run's name where it is shown alone: the name a person gave it, else when and from where it started
    (`14:03:12 L12 Pretrained weights`)."""
    return run.name or _when_where(run.status())


def _when_where(status: dict) -> str:
    created = dt.datetime.fromtimestamp(status.get("created") or 0).strftime("%H:%M:%S")
    return f"{created} {state.owner_label(status.get('owner'))}"


def run_labels(runs: Iterable[Run]) -> dict[str, str]:
    """run id -> its name among the runs shown together (legends, columns): the name a person gave it, else what
    sets it apart from the others (`random weights`, `bf16`, `LoRA rank 8 on qkv`, `data: notes.txt`); when and
    from where it started where nothing does. Every label is unique (the start time, then the id, added to
    labels that would be the same)."""
    runs = list(runs)
    phrases = describe_runs({r.run_id: r.config() for r in runs}, {r.run_id: r.kind for r in runs})
    show = _shown()
    labels = {r.run_id: r.name or show(" · ".join(phrases[r.run_id])) or _when_where(r.status()) for r in runs}
    for extra in (lambda r: _when_where(r.status()).split(" ", 1)[0], lambda r: r.run_id.rsplit("-", 1)[-1]):
        seen = list(labels.values())
        labels = {r.run_id: labels[r.run_id] + (f" · {extra(r)}" if seen.count(labels[r.run_id]) > 1
                                                and extra(r) not in labels[r.run_id] else "") for r in runs}
    return labels


def run_colors(runs: Iterable[Run]) -> dict[str, str]:
    """run id -> its colour on charts comparing these runs: the same thing in the same colour on every page
    (`charts.run_colors`)."""
    return charts.run_colors(*_configs_and_differences(runs))


def run_dashes(runs: Iterable[Run]) -> dict[str, str]:
    """run id -> its line's dash pattern on charts comparing these runs (runs in several precisions; else {})."""
    return charts.run_dashes(*_configs_and_differences(runs))


def _configs_and_differences(runs: Iterable[Run]) -> tuple[dict, list[str]]:
    runs = list(runs)
    kinds = {r.run_id: r.kind for r in runs}
    configs = {r.run_id: with_defaults(r.kind, r.config()) for r in runs}
    return configs, differences(configs, kinds)


KINDS = {"train": "training", "eval": "evaluation", "pipeline": "data pipeline"}
# What a person scans for first (which run, how far, how well), then what tells runs apart, then where it came from.
COLUMNS = ["run", "name", "status", "kind", "progress", "final loss", "held-out loss", "precision", "LoRA", "init",
           "data", "model", "started from", "created"]


def run_row(run: Run, show=str) -> dict:
    """One line of the runs table: what a user scans for (its name, state, where it came from, what it trained
    from and how, how far it got, its loss). `show`: how a setting's text is shown (`llmfs.access.hide_paths` for a
    workshop participant)."""
    status, cfg, kind = run.status(), run.config(), run.kind
    result = status.get("result") or {}
    created = status.get("created")
    train = kind == "train"
    last = last_records(run.path / "metrics.jsonl", ("train", "eval")) if train and "steps" not in result else {}
    trained, evals = last.get("train") or {}, last.get("eval") or {}
    return {
        "run": run.run_id,
        "name": run.name or None,
        "status": status.get("state", "?"),
        "kind": KINDS.get(status.get("kind") or kind, status.get("kind") or kind),
        "started from": state.owner_label(status.get("owner")),
        "created": dt.datetime.fromtimestamp(created) if created else None,
        "model": show(short_source(cfg["model"])) if cfg.get("model") else None,
        "data": show(short_source(cfg["data"])) if cfg.get("data") else None,
        "init": f"{cfg.get('init', 'pretrained')} weights" if train else None,
        "precision": cfg.get("precision", "fp32") if train else None,
        "LoRA": lora_words(cfg) if train else None,
        "progress": progress_text(run, status, trained),
        "final loss": result.get("final_loss", trained.get("loss")) if train else None,
        "held-out loss": result.get("eval_loss", evals.get("eval_loss")) if train else None,
    }


def lora_words(cfg: dict) -> str:
    """A training run's LoRA settings in plain words: `rank 8 on qkv, 4-bit base`, or `none (full model)`."""
    rank = cfg.get("lora_rank") or 0
    if not rank:
        return "none (full model)"
    return f"rank {rank} on {cfg.get('lora_targets', 'qkv')}" + (", 4-bit base" if cfg.get("quantize") == "4bit"
                                                                   else "")


def progress_text(run: Run, status: dict | None = None, last_train: dict | None = None) -> str:
    """How far a run got, in its own units: `30 / 100 steps`, `100 / 100 questions`, `1,234 documents read`;
    "–" where nothing is known yet (never a made-up `0 / ?`)."""
    status = run.status() if status is None else status
    result = status.get("result") or {}
    progress = status.get("progress") or {}
    kind = run.kind
    if kind == "pipeline":
        read = result.get("documents_in")
        if read is None:
            read = (last_records(run.path / "metrics.jsonl", ("pipeline",)).get("pipeline") or {}).get("documents_in")
        if read is None:
            return "finished" if status.get("state") == SUCCEEDED else "–"
        return f"{read:,} document{'s' if read != 1 else ''} read"
    if kind == "eval":
        done, total = result.get("n_items", progress.get("done")), progress.get("total") or result.get("n_items")
        unit = "documents" if run.config().get("task") == "perplexity" else "questions"  # as eval jobs count
        return "–" if done is None or not total else f"{done:,} / {total:,} {unit}"
    if last_train is None and kind == "train" and "steps" not in result:
        last_train = last_records(run.path / "metrics.jsonl", ("train",)).get("train")
    last_train = last_train or {}
    done = result.get("steps", last_train.get("step", progress.get("done")))
    total = result.get("total_steps") or last_train.get("total_steps") or progress.get("total") \
        or run.config().get("steps")
    if done is None:
        return f"not started · {total:,} steps planned" if total else "–"
    return f"{done:,} / {total:,} steps" if total else f"{done:,} steps"


def runs_table(runs: Iterable[Run]) -> pd.DataFrame:
    show = _shown()
    return pd.DataFrame([run_row(r, show) for r in runs], columns=COLUMNS)


def config_diff(runs: Iterable[Run], only_different: bool = True) -> pd.DataFrame:
    """Settings side by side, one column per run, one row per setting (by its label); by default only the
    settings where the runs differ. A training run's folder that predates a setting gets that setting's default
    (the behaviour it had), so new settings do not show up as differences."""
    runs = list(runs)
    configs = {r.run_id: _with_defaults(r.kind, r.config()) for r in runs}
    keys = sorted({k for c in configs.values() for k in c})
    labels = _labels(eval_first=all(r.kind == "eval" for r in runs))
    names = run_labels(runs)
    table = pd.DataFrame({names[rid]: [_cell(c.get(k)) for k in keys] for rid, c in configs.items()},
                         index=[labels.get(k) or k.replace("_", " ").capitalize() for k in keys])
    table.index.name = "setting"
    if only_different and len(configs) > 1:
        table = table[table.nunique(axis=1, dropna=False) > 1]
    show = _shown()  # after comparing: two folders of the same name differ, though a participant sees one name
    return table if show is str else table.map(show)


def _with_defaults(kind: str, config: dict) -> dict:
    return with_defaults(kind, config)


def _labels(eval_first: bool = False) -> dict[str, str]:
    """A setting's name -> its label as the forms show it (never the field's name in code); for evaluations only,
    the evaluation form's labels where both forms have the setting (`data`: "Data file", not "Training data")."""
    order = (TrainConfig, EvalConfig) if eval_first else (EvalConfig, TrainConfig)
    return {name: meta.get("label") or name.replace("_", " ").capitalize()
            for cls in order for name, meta in field_info(cls).items()}


def last_records(path: Path, kinds: tuple[str, ...], tail_bytes: int = 65536) -> dict[str, dict]:
    """kind -> the last record of that kind in a metrics.jsonl, reading only the file's tail (the table lists
    every run, and a long run's file is megabytes). A kind missing from the tail is missing from the answer."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - tail_bytes))
            lines = f.read().splitlines()
    except OSError:
        return {}
    found: dict[str, dict] = {}
    for raw in reversed(lines):
        try:
            record = json.loads(raw)
        except ValueError:
            continue  # the tail's first line is usually cut, and the last may be half-written
        if isinstance(record, dict) and record.get("kind") in kinds and record["kind"] not in found:
            found[record["kind"]] = record
            if len(found) == len(kinds):
                break
    return found


def _cell(value, show=str) -> str:
    return "-" if value is None else show(str(value))


def _shown():
    """How this session sees settings' texts, decided once per table (not once per cell)."""
    return str if identity.shows_paths() else hide_paths
