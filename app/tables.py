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
from llmfs.config import TrainConfig, field_info
from llmfs.runs import Run

from . import identity, state


def run_label(run: Run) -> str:
    """A short name for charts and columns: when and from where it started, and the id's unique tail
    (`14:03:12 L12 Pretrained weights · a1b2c3`)."""
    status = run.status()
    created = dt.datetime.fromtimestamp(status.get("created") or 0).strftime("%H:%M:%S")
    return f"{created} {state.owner_label(status.get('owner'))} · {run.run_id.rsplit('-', 1)[-1]}"


def run_row(run: Run, show=str) -> dict:
    """One line of the runs table: what a user scans for (state, where it came from, how far it got, its loss).
    `show`: how a setting's text is shown (`llmfs.access.hide_paths` for a workshop participant)."""
    status, cfg = run.status(), run.config()
    result = status.get("result") or {}
    created = status.get("created")
    last = {} if "steps" in result else last_records(run.path / "metrics.jsonl", ("train", "eval"))
    train, evals = last.get("train") or {}, last.get("eval") or {}
    total = result.get("total_steps") or train.get("total_steps") or (status.get("progress") or {}).get("total") \
        or cfg.get("steps") or "?"
    return {
        "run": run.run_id,
        "status": status.get("state", "?"),
        "kind": status.get("kind") or run.kind,
        "started from": state.owner_label(status.get("owner")),
        "created": dt.datetime.fromtimestamp(created) if created else None,
        "model": show(cfg["model"]) if cfg.get("model") else None,
        "steps": f"{result.get('steps', train.get('step', 0))} / {total}",
        "final loss": result.get("final_loss", train.get("loss")),
        "held-out loss": result.get("eval_loss", evals.get("eval_loss")),
    }


def runs_table(runs: Iterable[Run]) -> pd.DataFrame:
    show = _shown()
    return pd.DataFrame([run_row(r, show) for r in runs],
                        columns=["run", "status", "kind", "started from", "created", "model", "steps", "final loss",
                                 "held-out loss"])


def config_diff(runs: Iterable[Run], only_different: bool = True) -> pd.DataFrame:
    """Settings side by side, one column per run, one row per setting (by its label); by default only the
    settings where the runs differ. A training run's folder that predates a setting gets that setting's default
    (the behaviour it had), so new settings do not show up as differences."""
    runs = list(runs)
    configs = {r.run_id: _with_defaults(r.kind, r.config()) for r in runs}
    keys = sorted({k for c in configs.values() for k in c})
    labels = _labels()
    names = {r.run_id: run_label(r) for r in runs}
    table = pd.DataFrame({names[rid]: [_cell(c.get(k)) for k in keys] for rid, c in configs.items()},
                         index=[labels.get(k, k) for k in keys])
    table.index.name = "setting"
    if only_different and len(configs) > 1:
        table = table[table.nunique(axis=1, dropna=False) > 1]
    show = _shown()  # after comparing: two folders of the same name differ, though a participant sees one name
    return table if show is str else table.map(show)


def _with_defaults(kind: str, config: dict) -> dict:
    if kind != "train":
        return dict(config)
    return {**{name: meta["default"] for name, meta in field_info(TrainConfig).items()}, **config}


def _labels() -> dict[str, str]:
    return {name: f"{meta.get('label') or name} ({name})" if meta.get("label") else name
            for name, meta in field_info(TrainConfig).items()}


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
