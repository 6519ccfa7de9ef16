"""The class as a whole, for the instructor: a leaderboard per benchmark, everyone's curves for one lesson, and the
class presets (a form's settings every participant's page starts from).

Everything is read from run folders (`llmfs.runs`) and `$LLMFS_HOME/workshop/presets/`, so the app, the command line
and a restarted server agree. Who ran what is the run's `user` (status.json); a run without one (the command line's,
or one from before names existed) counts as one entry, `NO_NAME`: nobody can take that name, since participant names
never hold brackets (`app.identity.sanitize`).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .eval.metrics import lower_is_better, main_metric
from .fsutil import atomic_write_json, read_json
from .paths import llmfs_home
from .runs import SUCCEEDED, Run, short_source

NO_NAME = "(no name: command line)"


# -- the leaderboard ----------------------------------------------------------------------------------------------
def _as_runs(runs: Iterable[Run | str | os.PathLike]) -> list[Run]:
    return [r if isinstance(r, Run) else Run(r) for r in runs]


def _user(status: dict) -> str:
    return str(status.get("user") or "") or NO_NAME


def _evaluations(runs: Iterable[Run | str | os.PathLike]) -> list[tuple[Run, dict, dict, dict]]:
    """(run, status, config, result) of every succeeded evaluation with scores."""
    out = []
    for run in _as_runs(runs):
        record = run.config_record()
        if record.get("kind") != "eval":
            continue
        status = run.status()
        result = status.get("result") or {}
        if status.get("state") == SUCCEEDED and isinstance(result, dict) and result.get("metrics"):
            out.append((run, status, record.get("config") or {}, result))
    return out


def _task_of(config: dict, result: dict) -> str:
    return str(result.get("task") or config.get("task") or "?")


def tasks_with_results(runs: Iterable[Run | str | os.PathLike]) -> list[str]:
    """The benchmarks some succeeded evaluation has scores on, most evaluated first (then by name)."""
    counts: dict[str, int] = {}
    for _, _, config, result in _evaluations(runs):
        task = _task_of(config, result)
        counts[task] = counts.get(task, 0) + 1
    return sorted(counts, key=lambda t: (-counts[t], t))


def metrics_of(runs: Iterable[Run | str | os.PathLike], task: str) -> list[str]:
    """The measures the results on `task` carry (stderr columns left out), the main one first."""
    names: dict[str, None] = {}
    for _, _, config, result in _evaluations(runs):
        if _task_of(config, result) == task:
            names.update({k: None for k, v in result["metrics"].items() if not k.endswith("_stderr") and v is not None})
    main = main_metric(names)
    return sorted(names, key=lambda m: (m != main, m))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def leaderboard(runs: Iterable[Run | str | os.PathLike], task: str, metric: str | None = None) -> list[dict]:
    """Every participant's best succeeded evaluation on `task`, best first.

    A participant's best is their best score on `metric` (default: the task's main measure, `main_metric`; lower is
    better for the perplexities and bits per byte); between equal scores of theirs, the one on more questions
    (the surer one), then the earlier (who got there first). Participants with equal scores share a rank (1, 1, 3)
    and are listed by questions, then name.

    Returns:
        [{"rank", "user", "score", "stderr" (None where the result has none), "metric", "lower_is_better",
        "run_id", "run_name", "model", "adapter", "n_items", "num_fewshot", "data", "when" (epoch seconds the run
        finished), "runs" (how many of this participant's evaluations were compared)}]. Whether the rows were
        measured alike (questions, few-shot, data): `caveats(rows)`.
    """
    evals = [e for e in _evaluations(runs) if _task_of(e[2], e[3]) == task]
    if metric is None:
        metric = main_metric(k for e in evals for k, v in e[3]["metrics"].items() if v is not None)
        if metric is None:
            return []
    lower = lower_is_better(metric)
    sign = 1.0 if lower else -1.0       # sort keys ascending: the best first either way
    best: dict[str, dict] = {}
    tried: dict[str, int] = {}
    for run, status, config, result in evals:
        score = result["metrics"].get(metric)
        if not _finite(score):
            continue
        user = _user(status)
        tried[user] = tried.get(user, 0) + 1
        stderr = result["metrics"].get(f"{metric}_stderr")
        adapter = str(config.get("adapter") or "").strip()
        row = {"user": user, "score": float(score), "stderr": float(stderr) if _finite(stderr) else None,
               "metric": metric, "lower_is_better": lower, "run_id": run.run_id, "run_name": run.name,
               "model": short_source(config.get("model") or "?"),
               "adapter": (result.get("adapter_name") or short_source(adapter)) if adapter else "",
               "n_items": int(result.get("n_items") or 0), "num_fewshot": int(config.get("num_fewshot") or 0),
               "data": short_source(str(config.get("data") or "").strip()) or "",
               "when": status.get("finished") or status.get("created") or 0.0}
        if user not in best or _mine_key(row, sign) < _mine_key(best[user], sign):
            best[user] = row
    rows = sorted(best.values(), key=lambda r: (sign * r["score"], -r["n_items"], r["user"].casefold()))
    for i, row in enumerate(rows):
        tied = i and rows[i - 1]["score"] == row["score"]
        row["rank"] = rows[i - 1]["rank"] if tied else i + 1
        row["runs"] = tried[row["user"]]
    return [{"rank": r.pop("rank"), **r} for r in rows]


def _mine_key(row: dict, sign: float) -> tuple:
    return sign * row["score"], -row["n_items"], row["when"]


def caveats(rows: list[dict]) -> list[str]:
    """What the leaderboard's rows were not measured alike on, in plain words ([] when they all were): different
    numbers of questions (scores on few questions are noisier, and a sample is not the whole benchmark), few-shot
    examples or data files make scores not directly comparable."""
    out = []
    counts = sorted({r["n_items"] for r in rows})
    if len(counts) > 1:
        out.append("numbers of questions (" + ", ".join(f"{n:,}" for n in counts) + ")")
    shots = sorted({r["num_fewshot"] for r in rows})
    if len(shots) > 1:
        out.append("few-shot examples (" + ", ".join(str(n) for n in shots) + ")")
    data = sorted({r["data"] or "the benchmark's own" for r in rows})
    if len(data) > 1:
        out.append("data (" + ", ".join(data) + ")")
    return out


def mixed_question_counts(rows: list[dict]) -> bool:
    """Do the rows compare scores over different numbers of questions?"""
    return len({r["n_items"] for r in rows}) > 1


# -- everyone's curves --------------------------------------------------------------------------------------------
# A curve's measure -> the kind of metrics.jsonl record it is in (`llmfs.train`: "train" every step, "eval" at each
# held-out evaluation). Any other measure is looked for in the "train" records (lr, tokens_per_s, ...).
CURVE_METRICS = {"loss": "train", "eval_loss": "eval"}


def lessons_with_runs(runs: Iterable[Run | str | os.PathLike]) -> list[str]:
    """The pages (`owner`s) that training runs were started from, the one with most participants first."""
    people: dict[str, set] = {}
    for run in _as_runs(runs):
        record = run.config_record()
        if record.get("kind") != "train":
            continue
        status = run.status()
        owner = status.get("owner") or record.get("owner")
        if owner:
            people.setdefault(owner, set()).add(_user(status))
    return sorted(people, key=lambda o: (-len(people[o]), o))


def curves(runs: Iterable[Run | str | os.PathLike], lesson: str, metric: str = "loss",
           every_run: bool = False) -> list[dict]:
    """One series per participant for the training runs started from page `lesson` (a run's `owner`: l12, l15,
    teach, l16, home, ...): their newest run of that lesson that has a point of `metric` yet (a run still queued
    has none, so the one before it shows); with `every_run`, one series per run.

    `metric`: "loss" (training loss, every step) or "eval_loss" (held-out loss, at each evaluation), or another
    value of the training records. A step written twice (a resumed run) counts once, the last written.

    Returns:
        [{"user", "run_id", "run_name", "state", "created", "steps", "values"}], by participant name, then newest
        run first.
    """
    kind = CURVE_METRICS.get(metric, "train")
    candidates = []
    for run in _as_runs(runs):
        record = run.config_record()
        if record.get("kind") != "train":
            continue
        status = run.status()
        if (status.get("owner") or record.get("owner")) == lesson:
            candidates.append((run, status))
    candidates.sort(key=lambda c: (_user(c[1]).casefold(), _user(c[1]), -(c[1].get("created") or 0.0),
                                   c[0].run_id))
    out, done = [], set()
    for run, status in candidates:
        user = _user(status)
        if user in done:
            continue  # their newest run with points is in: older ones' metrics are never read
        points: dict[int, float] = {}
        for r in run.read_metrics(kind):
            if _finite(r.get(metric)):   # a diverged step (nan) is a gap in the line
                points[int(r.get("step", 0))] = r[metric]
        if not points:
            continue
        steps = sorted(points)
        out.append({"user": user, "run_id": run.run_id, "run_name": run.name, "state": status.get("state"),
                    "created": status.get("created") or 0.0, "steps": steps, "values": [points[s] for s in steps]})
        if not every_run:
            done.add(user)
    return out


# -- class presets ------------------------------------------------------------------------------------------------
# A form's key (`app.forms.config_form`: "l12", "l15", "l12.freeze", ...) is the preset's file name.
_PAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")


def presets_dir() -> Path:
    """`<home>/workshop/presets`."""
    return llmfs_home() / "workshop" / "presets"


def _preset_path(page: str) -> Path:
    if not isinstance(page, str) or not _PAGE.fullmatch(page) or ".." in page:
        raise ValueError(f"{page!r} is not a page name a preset can be saved under: use letters, digits, '.', '-' "
                         "and '_' (a form's key, such as l12 or l15).")
    return presets_dir() / f"{page}.json"


def save_preset(page: str, cls_name: str, values: dict, by: str = "instructor") -> None:
    """Make `values` (a form's settings: field name -> value, of the config class `cls_name`) the class preset of
    form `page`; replaces the one before.

    Raises:
        ValueError: a page name that is not a safe file name, or values that are not a JSON object of JSON values.
    """
    path = _preset_path(page)
    if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
        raise ValueError("A preset's settings must be a mapping of setting names to values.")
    try:
        values = json.loads(json.dumps(values, allow_nan=False))  # tuples become lists: as they are read back
    except (TypeError, ValueError) as e:
        raise ValueError(f"A preset's settings must be plain values (numbers, text, true / false, lists): {e}") from e
    atomic_write_json(path, {"cls": str(cls_name), "values": values, "saved": time.time(), "by": str(by)})


def load_preset(page: str) -> dict | None:
    """{"cls", "values", "saved" (epoch seconds), "by"} of form `page`'s class preset; None when it has none (or
    its file is unreadable)."""
    return _read_preset(_preset_path(page))


def _read_preset(path: Path) -> dict | None:
    preset = read_json(path)
    if not isinstance(preset, dict) or not isinstance(preset.get("values"), dict):
        return None
    return preset


def delete_preset(page: str) -> bool:
    """Take form `page`'s class preset away; False when there was none."""
    path = _preset_path(page)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def list_presets() -> dict[str, dict]:
    """page -> its preset (as `load_preset` gives it), by page name."""
    folder = presets_dir()
    if not folder.is_dir():
        return {}
    out = {}
    for path in sorted(folder.glob("*.json")):
        page = path.stem
        if _PAGE.fullmatch(page) and ".." not in page:
            preset = _read_preset(path)
            if preset is not None:
                out[page] = preset
    return out
