"""app.live: one reading of a run's metrics and one build of each chart per poll, shared by every session; a shared
figure serialises exactly like the figure it was made from."""

from __future__ import annotations

import json

import plotly.io as pio

from app import charts, live
from llmfs.runs import Run, new_run_id


def _run(tmp_path, steps: int) -> Run:
    run = Run.create(tmp_path / new_run_id("train"), "train", {})
    for s in range(1, steps + 1):
        run.append_metrics(s, loss=5.0 - s / 100, tokens_per_s=1000.0 + s, total_steps=500, step_time_s=0.1)
    return run


def test_records_are_read_once_per_poll_and_built_once_per_new_batch(tmp_path, monkeypatch):
    live.clear()
    run = _run(tmp_path, 10)
    path = run.path / "metrics.jsonl"
    clock = {"t": 100.0}
    monkeypatch.setattr(live.time, "monotonic", lambda: clock["t"])
    builds = []

    def build(records, total):
        builds.append(len(records))
        return charts.loss_figure(records, total)

    first = live.shared(path, "loss", build, 500)
    assert live.shared(path, "loss", build, 500) is first and builds == [10]  # a second viewer: no new build
    run.append_metrics(11, loss=4.0, tokens_per_s=1000.0, total_steps=500, step_time_s=0.1)
    assert len(live.records(path)) == 10  # within FRESH_S: the same reading for everyone
    clock["t"] += live.FRESH_S
    assert len(live.records(path)) == 11
    assert live.shared(path, "loss", build, 500) is not first and builds == [10, 11]
    assert live.shared(path, "loss", build, 400) is not None and builds == [10, 11, 11]  # other arguments


def test_a_shared_figure_serialises_like_its_original(tmp_path):
    live.clear()
    run = _run(tmp_path, 300)
    records = live.records(run.path / "metrics.jsonl")
    original = charts.loss_figure(records, 500)
    shared = live.shared(run.path / "metrics.jsonl", "loss", charts.loss_figure, 500)
    assert isinstance(shared, live.SharedFigure) and shared.to_dict() is shared.to_dict()
    assert json.loads(pio.to_json(shared.to_dict(), validate=False)) == json.loads(pio.to_json(original))
