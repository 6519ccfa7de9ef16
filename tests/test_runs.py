"""The run directory: creation, metrics appends and incremental reads, atomic status, listing, deletion."""

from __future__ import annotations

import json

import pytest

from llmfs.runs import FAILED, PENDING, RUNNING, MetricsCursor, Run, delete_run, list_runs, new_run_id, read_new_metrics


def test_create_layout(tmp_path):
    run = Run.create(tmp_path / "r1", "train", {"lr": 0.1}, owner="bo")
    assert sorted(p.name for p in run.path.iterdir()) == ["config.json", "log.txt", "metrics.jsonl", "status.json"]
    assert run.state == PENDING and run.kind == "train" and run.config() == {"lr": 0.1}
    with pytest.raises(FileExistsError, match="already exists"):
        Run.create(tmp_path / "r1", "train", {})


def test_incremental_metrics_skip_torn_last_line(tmp_path):
    run = Run.create(tmp_path / "r", "train", {})
    run.append_metrics(1, loss=2.0)
    cur = read_new_metrics(run.path / "metrics.jsonl", MetricsCursor())
    assert [r["loss"] for r in cur.records] == [2.0]
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "kind": "train", "lo')  # a writer mid-line
    cur2 = read_new_metrics(run.path / "metrics.jsonl", cur)
    assert cur2.offset == cur.offset and len(cur2.records) == 1
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('ss": 1.5}\n')
    cur3 = read_new_metrics(run.path / "metrics.jsonl", cur2)
    assert [r["loss"] for r in cur3.records] == [2.0, 1.5]


def test_status_updates_merge_and_stay_valid_json(tmp_path):
    run = Run.create(tmp_path / "r", "train", {})
    run.mark_running()
    run.update_status(progress={"done": 3, "total": 10})
    run.mark_finished(FAILED, error="boom")
    status = json.loads((run.path / "status.json").read_text())
    assert status["state"] == FAILED and status["progress"]["done"] == 3 and status["error"] == "boom"
    assert not list(run.path.glob(".*.tmp"))  # no temp files left behind


def test_list_newest_first_and_delete(tmp_path):
    a = Run.create(tmp_path / new_run_id("train"), "train", {})
    b = Run.create(tmp_path / new_run_id("eval"), "eval", {})
    a.update_status(created=1.0, state=FAILED)
    assert [r.run_id for r in list_runs(tmp_path)] == [b.run_id, a.run_id]
    b.update_status(state=RUNNING)
    with pytest.raises(RuntimeError, match="stop it before deleting"):
        delete_run(b)
    delete_run(a)
    assert [r.run_id for r in list_runs(tmp_path)] == [b.run_id]


def test_log_tail(tmp_path):
    run = Run.create(tmp_path / "r", "train", {})
    for i in range(50):
        run.log(f"line {i}")
    tail = run.log_tail(3).splitlines()
    assert len(tail) == 3 and tail[-1].endswith("line 49")
