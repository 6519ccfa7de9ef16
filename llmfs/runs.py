"""The run directory: everything a run is, on disk.

    <root>/<run_id>/
        config.json     kind + the config dataclass as JSON (+ owner, created)
        status.json     state, times, progress, error summary and traceback, result
        name.json       the name a person gave the run (optional; only `Run.rename` writes it)
        metrics.jsonl   one JSON object a line: step, time, kind (train / eval / telemetry / ...), values
        log.txt         human-readable log lines
        checkpoints/    written by the training loop
        model/, ...     what the run produces

Everything a UI panel shows is read from here, so a page refresh, a second browser tab, the CLI and a restarted
server all see the same run. All writes are atomic except the two append-only files.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from .config import LORA_FIELDS, EvalConfig, TrainConfig, field_info
from .fsutil import atomic_write_json, read_json

PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED = (
    "pending", "running", "succeeded", "failed", "cancelled", "interrupted")
STATES = (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)
FINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED, INTERRUPTED})

# One lock for every run's read-modify-write of status.json and the appends: writes are tiny, and several
# Run objects (worker thread, telemetry sampler, UI) may point at the same folder.
_LOCK = threading.RLock()


def new_run_id(kind: str) -> str:
    """Sortable by creation time, readable, and unique across processes."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(3)}"


@dataclass
class MetricsCursor:
    """Where an incremental reader of metrics.jsonl got to (a byte offset), so a live panel reads only new lines."""
    offset: int = 0
    records: list[dict] = field(default_factory=list)


class Run:
    """One run directory. Cheap to construct; every accessor reads the disk (the truth), nothing is cached."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -- identity ---------------------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def exists(self) -> bool:
        return (self.path / "status.json").exists()

    # -- creation ---------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, kind: str, config: dict, owner: str | None = None,
               user: str | None = None) -> "Run":
        path = Path(path)
        if (path / "status.json").exists():
            raise FileExistsError(f"A run already exists at {path}; choose another output folder or delete it.")
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        now = time.time()
        atomic_write_json(path / "config.json", {"kind": kind, "config": config, "owner": owner, "user": user,
                                                 "created": now})
        atomic_write_json(path / "status.json", {"state": PENDING, "created": now, "kind": kind, "owner": owner,
                                                 "user": user, **_owner_fields()})
        (path / "metrics.jsonl").touch()
        (path / "log.txt").touch()
        return run

    # -- config and status ------------------------------------------------------------------------------------
    def config_record(self) -> dict:
        return read_json(self.path / "config.json", default={}) or {}

    @property
    def kind(self) -> str:
        return self.config_record().get("kind", "?")

    def config(self) -> dict:
        return self.config_record().get("config", {})

    def status(self) -> dict:
        return read_json(self.path / "status.json", default={"state": INTERRUPTED}) or {"state": INTERRUPTED}

    @property
    def state(self) -> str:
        return self.status().get("state", INTERRUPTED)

    def update_status(self, **fields: Any) -> dict:
        """Merge `fields` into status.json (read-modify-write, atomically replaced)."""
        with _LOCK:
            status = self.status()
            status.update(fields)
            atomic_write_json(self.path / "status.json", status)
            return status

    def mark_running(self) -> None:
        self.update_status(state=RUNNING, started=time.time(), **_owner_fields())

    def mark_finished(self, state: str, **fields: Any) -> None:
        assert state in FINAL_STATES, state
        self.update_status(state=state, finished=time.time(), **fields)

    # -- metrics and logs -------------------------------------------------------------------------------------
    def append_metrics(self, step: int, kind: str = "train", **values: Any) -> dict:
        record = {"step": int(step), "time": time.time(), "kind": kind, **values}
        line = json.dumps(record, default=_json_default) + "\n"
        with _LOCK, open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
        return record

    def read_metrics(self, kind: str | None = None) -> list[dict]:
        records = read_new_metrics(self.path / "metrics.jsonl", MetricsCursor()).records
        return [r for r in records if kind is None or r.get("kind") == kind]

    def log(self, message: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with _LOCK, open(self.path / "log.txt", "a", encoding="utf-8") as f:
            for line in str(message).splitlines() or [""]:
                f.write(f"[{stamp}] {line}\n")

    def log_tail(self, lines: int = 20) -> str:
        return "".join(_tail_lines(self.path / "log.txt", lines))

    # -- the name a person gave it ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The run's name ("" when it has none). A file of its own: the job writing status.json never races it."""
        record = read_json(self.path / "name.json", default={}) or {}
        return str(record.get("name") or "") if isinstance(record, dict) else ""

    def rename(self, name: str) -> str:
        """Give the run a name (checked by `check_run_name`; "" takes the name away); returns the name stored."""
        name = check_run_name(name)
        with _LOCK:
            if name:
                atomic_write_json(self.path / "name.json", {"name": name})
            else:
                (self.path / "name.json").unlink(missing_ok=True)
        return name


NAME_MAX = 60


def check_run_name(name: str) -> str:
    """A run name as it is stored: on one line, spaces trimmed, at most NAME_MAX characters ("" = no name)."""
    text = " ".join(str(name or "").split())
    if len(text) > NAME_MAX:
        raise ValueError(f"A run name can be at most {NAME_MAX} characters long (this one has {len(text)}): "
                         "shorten it.")
    return text


def read_new_metrics(path: Path, cursor: MetricsCursor) -> MetricsCursor:
    """Read complete lines past `cursor.offset`; a half-written last line is left for the next call."""
    try:
        with open(path, "rb") as f:
            f.seek(cursor.offset)
            chunk = f.read()
    except FileNotFoundError:
        return cursor
    end = chunk.rfind(b"\n") + 1
    records = list(cursor.records)
    for raw in chunk[:end].splitlines():
        try:
            records.append(json.loads(raw))
        except json.JSONDecodeError:
            continue  # a line torn by a crash; the rest of the file is still good
    return MetricsCursor(offset=cursor.offset + end, records=records)


def list_runs(root: str | os.PathLike) -> list[Run]:
    """All runs under `root`, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [Run(p) for p in root.iterdir() if p.is_dir() and (p / "status.json").exists()]
    return sorted(runs, key=lambda r: r.status().get("created", 0), reverse=True)


def iter_orphaned(root: str | os.PathLike) -> Iterator[Run]:
    """Runs recorded as pending or running whose owning process is gone (the server died or was restarted)."""
    for run in list_runs(root):
        status = run.status()
        if status.get("state") in (PENDING, RUNNING) and not _owner_alive(status):
            yield run


def mark_interrupted(root: str | os.PathLike) -> list[str]:
    """At start-up: every run whose process died mid-run becomes `interrupted`, its metrics kept."""
    ids = []
    for run in iter_orphaned(root):
        was = run.state
        run.mark_finished(INTERRUPTED, error=(
            "The server stopped while this run was " + ("running" if was == RUNNING else "waiting in the queue")
            + ". Its metrics and last checkpoint are kept; resume it to continue from there."))
        run.log(f"Marked interrupted at start-up (was {was}).")
        ids.append(run.run_id)
    return ids


def delete_run(run: Run) -> None:
    if run.state in (PENDING, RUNNING):
        raise RuntimeError(f"Run {run.run_id} is {run.state}; stop it before deleting it.")
    shutil.rmtree(run.path)


# -- runs named by what differs -----------------------------------------------------------------------------------
# The settings that tell runs apart most often come first; a label names at most MAX_PHRASES of them.
PRIORITY = ("kind", "task", "init", "precision", "lora", "freeze", "data", "model", "adapter")
MAX_PHRASES = 3
KIND_WORDS = {"train": "training", "eval": "evaluation", "pipeline": "data pipeline"}
_GROUPS = {**{f: "lora" for f in LORA_FIELDS}, "freeze_layers": "freeze", "unfreeze_every": "freeze",
           "layer_lr_decay": "freeze"}
_IGNORED = {"out_dir", "output_dir"}  # where a run writes is no difference in what it does


def with_defaults(kind: str, config: Mapping) -> dict:
    """A run's settings with the defaults filled in for what its folder predates (the behaviour it had)."""
    cls = {"train": TrainConfig, "eval": EvalConfig}.get(kind)
    if cls is None:
        return dict(config)
    return {**{name: meta["default"] for name, meta in field_info(cls).items()}, **config}


def differences(configs: Mapping[str, Mapping], kinds: Mapping[str, str] | None = None) -> list[str]:
    """The settings (or groups of settings: `lora`, `freeze`; `kind` when the runs are of several kinds) in which
    the runs differ, most telling first."""
    kinds = dict(kinds or {})
    found = (["kind"] if len({kinds.get(r, "train") for r in configs}) > 1 else []) + \
        list(dict.fromkeys(_GROUPS.get(k, k) for k in _differing(configs, kinds)))
    return sorted(found, key=lambda k: PRIORITY.index(k) if k in PRIORITY else len(PRIORITY))


def _differing(configs: Mapping[str, Mapping], kinds: Mapping[str, str]) -> list[str]:
    full = [with_defaults(kinds.get(rid, "train"), c) for rid, c in configs.items()]
    keys = sorted({k for c in full for k in c} - _IGNORED)
    return [k for k in keys if len({repr(c.get(k)) for c in full}) > 1]


def describe_runs(configs: Mapping[str, Mapping], kinds: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """run id -> what sets that run apart from the others shown with it, in plain words (`random weights`,
    `bf16`, `LoRA rank 8 on qkv`, `data: notes.txt`), at most MAX_PHRASES of them; [] where they all agree
    (or for a run shown alone). Runs of several kinds are told apart by their kind first, then within it."""
    kinds = {rid: (kinds or {}).get(rid, "train") for rid in configs}
    if len(set(kinds.values())) > 1:
        out = {}
        for kind in dict.fromkeys(kinds.values()):
            group = {rid: c for rid, c in configs.items() if kinds[rid] == kind}
            for rid, phrases in describe_runs(group, {rid: kind for rid in group}).items():
                task = [str(group[rid]["task"])] if kind == "eval" and group[rid].get("task") else []
                out[rid] = list(dict.fromkeys([KIND_WORDS.get(kind, kind), *task, *phrases]))[:MAX_PHRASES]
        return {rid: out[rid] for rid in configs}
    keys, raw = differences(configs, kinds), set(_differing(configs, kinds))
    out = {}
    for rid, config in configs.items():
        full = with_defaults(kinds[rid], config)
        out[rid] = [p for p in (_phrase(k, full, kinds[rid], raw) for k in keys) if p][:MAX_PHRASES]
    return out


def _phrase(key: str, c: Mapping, kind: str, raw: set[str]) -> str:
    if key == "kind":
        return KIND_WORDS.get(kind, kind)
    if key == "init":
        return f"{c['init']} weights" if c.get("init") else ""
    if key == "precision":
        return str(c.get("precision") or "")
    if key == "lora":
        if not c.get("lora_rank"):
            return "no LoRA" if kind == "train" else ""
        extras = [f"alpha {c.get('lora_alpha'):g}" if "lora_alpha" in raw else "",
                  f"dropout {c.get('lora_dropout'):g}" if "lora_dropout" in raw else "",
                  "4-bit base" if c.get("quantize") == "4bit" else "", "rsLoRA" if c.get("lora_rslora") else ""]
        extras = [e for e in extras if e]
        return f"LoRA rank {c['lora_rank']} on {c.get('lora_targets')}" + (f" ({', '.join(extras)})" if extras else "")
    if key == "freeze":
        strategy = c.get("freeze") or "full"
        if strategy in ("freeze_bottom", "train_top"):
            return f"trains: {strategy} ({c.get('freeze_layers')} blocks)"
        return "trains: everything" if strategy == "full" else f"trains: {strategy}"
    if key in ("data", "model", "adapter"):
        value = c.get(key)
        if value:
            return f"{key}: {short_source(value)}"
        return "the benchmark's own questions" if key == "data" and kind == "eval" else f"no {key}"
    if key == "task":
        return str(c.get("task") or "")
    value = c.get(key)
    if isinstance(value, bool):
        return f"{_label(key)} {'on' if value else 'off'}"
    return f"{_label(key)} {'-' if value is None else f'{value:g}' if isinstance(value, float) else value}"


def _label(key: str) -> str:
    """A setting's label as the forms show it, in lower case inside a phrase (`learning rate`, but `TF32 matmuls`)."""
    for cls in (TrainConfig, EvalConfig):
        label = field_info(cls).get(key, {}).get("label")
        if label:
            return label if label[:2].isupper() else label[0].lower() + label[1:]
    return key.replace("_", " ")


def short_source(value: Any) -> str:
    """A model's, data's or adapter's source by its last part (`notes.txt`, not its folder on the server); a
    run's output (`.../<run>/shards`) by its run and part."""
    text = str(value).rstrip("/")
    if "/" not in text or text.startswith("hf:") or ":" in text.split("/", 1)[0]:
        return text
    path = Path(text)
    if path.name in ("shards", "model", "adapter", "merged") and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name


def _owner_alive(status: dict) -> bool:
    """Is the process that owns this run still alive? Compared by pid *and* start time, since pids get reused.

    A run owned by another host (a shared disk) is assumed alive: we cannot see its processes.
    """
    pid = status.get("pid")
    if not pid:
        return False
    if status.get("host") not in (None, socket.gethostname()):
        return True
    started = _process_start_time(pid)
    return started is not None and abs(started - status.get("pid_started", started)) < 1.0


def _owner_fields() -> dict:
    pid = os.getpid()
    return {"pid": pid, "pid_started": _process_start_time(pid), "host": socket.gethostname()}


def _process_start_time(pid: int) -> float | None:
    try:
        import psutil
        return psutil.Process(pid).create_time()
    except Exception:
        return None


def _tail_lines(path: Path, n: int, block: int = 8192) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            data = b""
            while size > 0 and data.count(b"\n") <= n:
                step = min(block, size)
                size -= step
                f.seek(size)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    return [line + "\n" for line in data.decode("utf-8", "replace").splitlines()[-n:]]


def _json_default(obj: Any) -> Any:
    try:
        return float(obj)  # numpy / torch scalars
    except (TypeError, ValueError):
        return str(obj)
