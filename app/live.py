"""What every browser session watching a run would compute alike, computed once per poll and shared by all.

Twenty people watching one run used to read its metrics and rebuild its charts twenty times a second, each into
its own copy: the server's time went to identical work (bench/ui_response.py). Here a run's metrics are read at most
every `FRESH_S` by whichever session asks first (only the lines added since), and each chart is built once per new
batch of records; the other sessions take the same records and figures. Records and figures are shared: callers
read them and never change them.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import plotly.graph_objects as go

from llmfs.runs import MetricsCursor, read_new_metrics

FRESH_S = 0.5   # below the panels' 1 s poll: a session never sees records older than half a poll
MAX_RUNS = 64   # runs kept in memory (least recently watched dropped first)


class _Entry:
    def __init__(self) -> None:
        self.cursor = MetricsCursor()
        self.read_at = float("-inf")
        self.figures: dict[tuple, Any] = {}
        self.lock = threading.Lock()


_ENTRIES: OrderedDict[str, _Entry] = OrderedDict()
_LOCK = threading.Lock()


def _entry(path: Path) -> _Entry:
    key = str(path)
    with _LOCK:
        entry = _ENTRIES.get(key)
        if entry is None:
            entry = _ENTRIES[key] = _Entry()
        _ENTRIES.move_to_end(key)
        while len(_ENTRIES) > MAX_RUNS:
            _ENTRIES.popitem(last=False)
        return entry


def records(metrics_path: str | os.PathLike) -> list[dict]:
    """Every record of a run's metrics.jsonl, as of at most `FRESH_S` ago."""
    path = Path(metrics_path)
    entry = _entry(path)
    with entry.lock:
        now = time.monotonic()
        if now - entry.read_at >= FRESH_S:
            try:
                if path.stat().st_size < entry.cursor.offset:  # replaced by a shorter file: read it afresh
                    entry.cursor, entry.figures = MetricsCursor(), {}
            except FileNotFoundError:
                pass
            entry.cursor = read_new_metrics(path, entry.cursor)
            entry.read_at = now
        return entry.cursor.records


def shared(metrics_path: str | os.PathLike, name: str, build: Callable[..., Any], *args: Any) -> Any:
    """`build(records(metrics_path), *args)` (a chart, the panel's numbers), built once per run, name, records seen
    and arguments; a plotly figure comes back as a `SharedFigure`."""
    path = Path(metrics_path)
    recs = records(path)
    entry = _entry(path)
    key = (name, len(recs), args)
    with entry.lock:
        fig = entry.figures.get(key)
        if fig is None:
            fig = build(recs, *args)
            if isinstance(fig, go.Figure):
                fig = SharedFigure(fig)
            # keep the figures of the latest records only: older ones are never asked for again
            entry.figures = {k: v for k, v in entry.figures.items() if k[1] == len(recs)}
            entry.figures[key] = fig
        return fig


class SharedFigure(go.Figure):
    """A built figure drawn by many sessions. `st.plotly_chart` calls `to_dict()` on every draw, and plotly's deep-
    copies every data array (two thirds of a live panel's server time); here that dict is made once, and readers
    (Streamlit serialises it to JSON) never change it."""

    def __init__(self, figure: go.Figure):
        super().__init__()
        self._shared_dict = figure.to_dict()

    def to_dict(self) -> dict:
        return self._shared_dict


def clear() -> None:
    with _LOCK:
        _ENTRIES.clear()
