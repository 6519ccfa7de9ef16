"""The run directory: creation, metrics appends and incremental reads, atomic status, listing, deletion."""

from __future__ import annotations

import dataclasses
import json

import pytest

from llmfs.config import TrainConfig
from llmfs.runs import (
    FAILED,
    NAME_MAX,
    PENDING,
    RUNNING,
    MetricsCursor,
    Run,
    delete_run,
    describe_runs,
    list_runs,
    new_run_id,
    read_new_metrics,
)


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


def test_a_run_keeps_the_name_given_to_it_apart_from_its_status(tmp_path):
    run = Run.create(tmp_path / "r", "train", {})
    assert run.name == ""
    assert run.rename("  my   notes,\n3 epochs ") == "my notes, 3 epochs"  # one line, spaces trimmed
    run.update_status(state=RUNNING)  # the job writing its status never touches the name
    assert run.name == "my notes, 3 epochs" and "name" not in run.status()
    with pytest.raises(ValueError, match=f"at most {NAME_MAX} characters"):
        run.rename("x" * (NAME_MAX + 1))
    assert run.name == "my notes, 3 epochs"
    run.rename("")
    assert run.name == "" and not (run.path / "name.json").exists()


def _train(**changes) -> dict:
    return dataclasses.asdict(TrainConfig(**changes))


def test_runs_are_described_by_what_sets_them_apart():
    assert describe_runs({"a": _train(), "b": _train(init="random")}) == \
        {"a": ["pretrained weights"], "b": ["random weights"]}
    assert describe_runs({"a": _train(), "b": _train(precision="bf16"), "c": _train(precision="fp16")}) == \
        {"a": ["fp32"], "b": ["bf16"], "c": ["fp16"]}
    lora = describe_runs({"a": _train(lora_rank=8), "b": _train(lora_rank=16, lora_targets="qkv,mlp_in",
                                                                  quantize="4bit", precision="bf16")})
    assert lora == {"a": ["fp32", "LoRA rank 8 on qkv"], "b": ["bf16", "LoRA rank 16 on qkv,mlp_in (4-bit base)"]}
    data = describe_runs({"a": _train(data="/srv/llmfs/uploads/bo/notes.txt", lr=3e-4), "b": _train()})
    assert data == {"a": ["data: notes.txt", "learning rate 0.0003"],
                    "b": ["data: llmfs-corpus", "learning rate 0.001"]}
    assert describe_runs({"a": _train(), "b": _train()}) == {"a": [], "b": []}  # nothing tells them apart
    assert describe_runs({"a": _train()}) == {"a": []}


def test_a_folder_from_before_a_setting_does_not_differ_by_it():
    old = {k: v for k, v in _train().items() if k != "precision"}  # written before precision existed
    assert describe_runs({"old": old, "new": _train(init="random")}) == \
        {"old": ["pretrained weights"], "new": ["random weights"]}


def test_runs_of_several_kinds_are_told_apart_by_kind_first():
    described = describe_runs({"t": _train(), "e": {"task": "mmlu", "model": "llmfs-tiny"}, "p": {"inputs": ["x"]}},
                              {"t": "train", "e": "eval", "p": "pipeline"})
    assert described == {"t": ["training"], "e": ["evaluation", "mmlu"], "p": ["data pipeline"]}


def test_evaluations_are_described_by_benchmark_first():
    described = describe_runs({"a": {"task": "mmlu", "data": "/x/uploads/bo/my.jsonl"}, "b": {"task": "hellaswag"}},
                              {"a": "eval", "b": "eval"})
    assert described == {"a": ["mmlu", "data: my.jsonl"], "b": ["hellaswag", "the benchmark's own questions"]}
