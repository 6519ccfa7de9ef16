"""The run directory: everything a run is, on disk.

    <root>/<run_id>/
        config.json     kind + the config dataclass as JSON (+ owner, created)
        status.json     state, times, progress, error summary and traceback, result
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
from typing import Any, Iterator

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
