"""Experiment tracking (issue 19): TensorBoard event files read back with TensorBoard's own reader, and MLflow runs
read back with MLflow's own client from a local store; neither can fail a run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmfs.config import TrainConfig
from llmfs.jobs import JobManager
from llmfs.recipes import submit_train
from llmfs.runner import default_manager
from llmfs.runs import FAILED, SUCCEEDED
from llmfs.tracking import HTTP_DEFAULTS, TENSORBOARD_DIR, mlflow_experiment, mlflow_uri, scalars, shown_uri


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of a run's event files, as TensorBoard itself reads them: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run_dir / TENSORBOARD_DIR), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture
def mlflow_env(monkeypatch):
    """No tracking URI from the outside, and whatever the export sets in the environment undone afterwards."""
    for name in ("LLMFS_MLFLOW_URI", "MLFLOW_TRACKING_URI", "LLMFS_MLFLOW_EXPERIMENT", "MLFLOW_EXPERIMENT_NAME",
                 "MLFLOW_ALLOW_FILE_STORE", "LLMFS_TENSORBOARD", *HTTP_DEFAULTS):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def jobs(tmp_path, mlflow_env):
    jm = JobManager(tmp_path / "runs", telemetry_interval=0.02)
    yield jm
    jm.shutdown()


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("Lists are mutable sequences. Tuples are immutable sequences. " * 200)
    return path


def _steps_job(ctx, cfg):
    """A stand-in for training: one train record a step (steps first..last), an evaluation at the end."""
    first = cfg.get("resume_from", 1) if ctx.resume else 1
    for step in range(first, cfg["steps"] + 1):
        ctx.emit(step, loss=10.0 * cfg.get("scale", 1.0) / step, lr=0.01, tokens_per_s=100.0 + step)
        time.sleep(cfg.get("sleep", 0.0))
        if not ctx.resume and step == cfg.get("fail_at"):
            raise RuntimeError("the first attempt fails")
    ctx.emit(cfg["steps"], kind="eval", eval_loss=1.5)
    return {"final_loss": 10.0 / cfg["steps"]}


# -- TensorBoard ------------------------------------------------------------------------------------------------------
def test_a_training_run_charts_one_loss_per_step_equal_to_its_metrics(mlflow_env, llmfs_home, tiny_hf_folder,
                                                                    text_file):
    jm = default_manager(telemetry_interval=0.05)
    try:
        cfg = TrainConfig(model=str(tiny_hf_folder), data=str(text_file), steps=6, batch_size=2, seq_len=32,
                          warmup_steps=2, eval_every=3, eval_batches=1, device="cpu", save_model=False)
        rid = submit_train(jm, cfg)
        assert jm.wait(rid, 180) == SUCCEEDED, jm.get(rid).status().get("traceback")
    finally:
        jm.shutdown()
    run = jm.get(rid)
    charts = read_scalars(run.path)
    train, evals = run.read_metrics("train"), run.read_metrics("eval")
    assert [s for s, _ in charts["train/loss"]] == [1, 2, 3, 4, 5, 6]   # exactly one a step
    assert [v for _, v in charts["train/loss"]] == pytest.approx([r["loss"] for r in train], rel=1e-6)
    assert [v for _, v in charts["train/learning_rate"]] == pytest.approx([r["lr"] for r in train], rel=1e-6)
    assert charts["train/learning_rate"][0][1] < charts["train/learning_rate"][1][1]   # the warm-up shows
    assert [s for s, _ in charts["train/tokens_per_s"]] == [1, 2, 3, 4, 5, 6]
    assert charts["eval/loss"] == [(3, pytest.approx(evals[0]["eval_loss"], rel=1e-6)),
                                   (6, pytest.approx(evals[1]["eval_loss"], rel=1e-6))]
    memory = charts["memory/process_rss_MiB"]
    assert memory and all(50 < v < 100_000 for _, v in memory)   # MiB, not bytes
    assert len({s for s, _ in memory}) == len(memory)             # at most one point a step
    assert "MLflow" not in run.log_tail(100)                       # nothing set: nothing sent, nothing said


def test_a_resumed_run_appends_a_file_and_keeps_one_loss_per_step(jobs):
    jobs.register("steps", _steps_job)
    # the first attempt reaches step 5 and fails; the second resumes from its "checkpoint" at step 3
    rid = jobs.submit("steps", {"steps": 8, "fail_at": 5, "resume_from": 4, "sleep": 0.01})
    assert jobs.wait(rid, 30) == FAILED
    jobs.resume(rid)
    assert jobs.wait(rid, 30) == SUCCEEDED
    run = jobs.get(rid)
    assert len(list((run.path / TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 2
    losses = read_scalars(run.path)["train/loss"]
    assert [s for s, _ in losses] == list(range(1, 9))
    assert [v for _, v in losses] == pytest.approx([10.0 / s for s in range(1, 9)])
    assert len(run.read_metrics("train")) == 10  # metrics.jsonl keeps both attempts' steps 4 and 5


def test_evaluations_pipelines_and_memory_chart_their_own_figures(jobs):
    def eval_like(ctx, cfg):
        ctx.emit(4, kind="eval_progress", done=4, total=8, accuracy=0.25, acc_norm=0.5)
        ctx.emit(8, kind="eval_progress", done=8, total=8, accuracy=0.5, acc_norm=0.625)
        return {"task": "demo", "metrics": {"accuracy": 0.5, "accuracy_stderr": 0.18, "acc_norm": 0.625}}

    def pipeline_like(ctx, cfg):
        ctx.emit(100, kind="pipeline", documents_in=100, documents_out=80, bytes_in=10_000, documents_per_s=50.0,
                 bytes_per_s=2 * 1024 * 1024, elapsed_s=2.0, funnel=[], drops={})
        ctx.emit(3, kind="scaler", loss_scale=65536.0, skipped=False, grad_underflow_frac=0.0)
        ctx.emit(3, kind="telemetry", process_rss_bytes=512 * 1024 * 1024, cuda_allocated_bytes=256 * 1024 * 1024,
                 cuda_peak_allocated_bytes=300 * 1024 * 1024, gpus=[{"index": 0}])
        return {}

    jobs.register("eval", eval_like)
    jobs.register("pipeline", pipeline_like)
    ev, pipe = jobs.submit("eval", {}), jobs.submit("pipeline", {})
    assert jobs.wait(ev, 30) == SUCCEEDED and jobs.wait(pipe, 30) == SUCCEEDED
    charts = read_scalars(jobs.get(ev).path)
    assert charts["benchmark/accuracy"] == [(4, 0.25), (8, 0.5)]
    assert charts["benchmark/final/accuracy"] == [(8, 0.5)]
    assert charts["benchmark/final/accuracy_stderr"] == [(8, pytest.approx(0.18))]
    assert "benchmark/done" not in charts and "benchmark/total" not in charts
    charts = read_scalars(jobs.get(pipe).path)
    assert charts["pipeline/documents_in_per_s"] == [(100, 50.0)]
    assert charts["pipeline/documents_out_per_s"] == [(100, 40.0)]   # 80 documents out in 2 s
    assert charts["pipeline/MiB_in_per_s"] == [(100, 2.0)]
    assert charts["train/loss_scale"] == [(3, 65536.0)]
    assert (3, 512.0) in charts["memory/process_rss_MiB"]
    assert charts["memory/cuda_allocated_MiB"] == [(3, 256.0)]
    assert charts["memory/cuda_peak_allocated_MiB"] == [(3, 300.0)]


def waiting_job(ctx, cfg):
    """Three steps, then idle until stopped: its charts must show while it runs (a live `tensorboard`)."""
    for step in range(1, 4):
        ctx.emit(step, loss=1.0 / step)
    while not ctx.should_stop():
        time.sleep(0.05)


def killed_job(ctx, cfg):
    ctx.emit(1, loss=1.0)
    os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's out-of-memory killer does


def test_a_job_in_its_own_process_charts_as_it_goes_and_a_killed_one_still_reaches_mlflow(tmp_path, mlflow_env):
    from mlflow.tracking import MlflowClient

    mlflow_env.setenv("LLMFS_MLFLOW_URI", str(tmp_path / "mlruns"))
    jm = JobManager(tmp_path / "runs", telemetry_interval=0.1, isolation="process")
    jm.register("waiting", waiting_job)
    jm.register("killed", killed_job)
    try:
        rid = jm.submit("waiting", {})
        run, seen, end = jm.get(rid), [], time.monotonic() + 30
        while time.monotonic() < end and len(seen) < 3:   # flushed within seconds, not at the job's end
            time.sleep(0.2)
            if (run.path / TENSORBOARD_DIR).is_dir():
                seen = read_scalars(run.path).get("train/loss", [])
        assert run.state == "running" and [s for s, _ in seen] == [1, 2, 3]
        jm.cancel(rid)
        assert jm.wait(rid, 30) == "cancelled"
        assert jm.get(rid).status()["mlflow"]["run_id"]
        rid = jm.submit("killed", {})
        assert jm.wait(rid, 60) == FAILED
    finally:
        jm.shutdown()
    where = jm.get(rid).status()["mlflow"]   # sent by the server, since the job's process could not
    got = MlflowClient(tracking_uri=where["uri"]).get_run(where["run_id"])
    assert got.info.status == "FAILED" and "killed" in got.data.tags["llmfs.error"]
    assert got.data.metrics["loss"] == 1.0


@pytest.mark.xdist_group("heavy")   # torchrun's processes (see conftest.HEAVY)
def test_a_torchrun_run_is_charted_by_rank_0_alone_and_sent_to_mlflow_once(mlflow_env, llmfs_home, tiny_hf_folder,
                                                                           text_file, tmp_path):
    from mlflow.tracking import MlflowClient

    mlflow_env.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    mlflow_env.setenv("OMP_NUM_THREADS", "1")
    mlflow_env.setenv("LLMFS_MLFLOW_URI", str(tmp_path / "mlruns"))
    jm = default_manager(telemetry_interval=60)
    try:
        cfg = TrainConfig(model=str(tiny_hf_folder), data=str(text_file), steps=4, batch_size=2, seq_len=32,
                          warmup_steps=1, eval_every=2, eval_batches=1, device="cpu", save_model=False, processes=2)
        rid = submit_train(jm, cfg)
        assert jm.wait(rid, 300) == SUCCEEDED, jm.get(rid).status().get("error")
    finally:
        jm.shutdown()
    run = jm.get(rid)
    charts = read_scalars(run.path)
    assert [s for s, _ in charts["train/loss"]] == [1, 2, 3, 4]       # one writer: no step twice
    assert [s for s, _ in charts["eval/loss"]] == [2, 4]
    where = run.status()["mlflow"]
    client = MlflowClient(tracking_uri=where["uri"])
    (only,) = client.search_runs([where["experiment_id"]])
    assert only.info.run_id == where["run_id"] and only.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(only.info.run_id, "loss")) == [1, 2, 3, 4]


def test_tensorboard_can_be_turned_off(jobs, mlflow_env):
    mlflow_env.setenv("LLMFS_TENSORBOARD", "0")
    jobs.register("steps", _steps_job)
    rid = jobs.submit("steps", {"steps": 3})
    assert jobs.wait(rid, 30) == SUCCEEDED
    assert not (jobs.get(rid).path / TENSORBOARD_DIR).exists()


def test_a_failing_tensorboard_writer_does_not_fail_the_run(jobs, tmp_path, monkeypatch):
    jobs.register("steps", _steps_job)
    # a folder that cannot be made: the run's tensorboard/ is a file
    blocked = tmp_path / "runs" / "blocked"
    blocked.mkdir(parents=True)
    (blocked / TENSORBOARD_DIR).write_text("not a folder")
    rid = jobs.submit("steps", {"steps": 4}, run_dir=blocked)
    assert jobs.wait(rid, 30) == SUCCEEDED
    run = jobs.get(rid)
    assert run.log_tail(50).count("TensorBoard: could not write") == 1
    assert len(run.read_metrics("train")) == 4   # the metrics the app reads are all there

    # a writer that breaks half-way (a full disk): one line, the run goes on and succeeds
    from tensorboard.summary.writer import event_file_writer
    real, calls = event_file_writer.EventFileWriter.add_event, []

    def add_event(self, event):
        calls.append(event.step)
        if event.HasField("summary") and event.step >= 2:
            raise OSError(28, "No space left on device")
        return real(self, event)

    monkeypatch.setattr(event_file_writer.EventFileWriter, "add_event", add_event)
    rid = jobs.submit("steps", {"steps": 5})
    assert jobs.wait(rid, 30) == SUCCEEDED
    run = jobs.get(rid)
    log = run.log_tail(50)
    assert log.count("TensorBoard: could not write") == 1 and "No space left on device" in log
    assert len(run.read_metrics("train")) == 5 and max(calls) == 2   # it stopped writing after the failure


def test_the_app_side_never_imports_tensorboard_or_mlflow():
    code = ("import sys, llmfs.jobs, llmfs.runner, llmfs.tracking; "
            "print(sorted(m for m in ('tensorboard', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_records_map_to_scalars():
    assert scalars({"kind": "train", "step": 1, "loss": 2.0, "lr": 0.1, "tokens": 64, "skipped": True}) == [
        ("train/loss", "loss", 2.0), ("train/learning_rate", "lr", 0.1)]
    assert scalars({"kind": "eval", "step": 1, "eval_loss": float("nan")}) == []   # not a number to chart
    assert scalars({"kind": "heldout", "step": 0, "tokens": 100}) == []


# -- MLflow -----------------------------------------------------------------------------------------------------------
def test_where_runs_go(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert mlflow_uri({}) is None
    assert mlflow_uri({"LLMFS_MLFLOW_URI": "mlruns"}) == (tmp_path / "mlruns").resolve().as_uri()
    assert mlflow_uri({"MLFLOW_TRACKING_URI": "file:./here"}) == (tmp_path / "here").resolve().as_uri()
    assert mlflow_uri({"MLFLOW_TRACKING_URI": "file:///data/mlruns"}) == "file:///data/mlruns"
    assert mlflow_uri({"LLMFS_MLFLOW_URI": "http://host:5000", "MLFLOW_TRACKING_URI": "x"}) == "http://host:5000"
    assert mlflow_uri({"MLFLOW_TRACKING_URI": "databricks"}) == "databricks"
    assert mlflow_experiment({}) == "llmfs"
    assert mlflow_experiment({"MLFLOW_EXPERIMENT_NAME": "class"}) == "class"
    assert mlflow_experiment({"LLMFS_MLFLOW_EXPERIMENT": "mine", "MLFLOW_EXPERIMENT_NAME": "class"}) == "mine"
    assert shown_uri("https://ana:secret@mlflow.example.org/x") == "https://mlflow.example.org/x"


def test_a_lora_run_goes_to_a_local_mlflow_store(mlflow_env, llmfs_home, tiny_hf_folder, text_file, tmp_path):
    from mlflow.tracking import MlflowClient

    store = tmp_path / "mlruns"
    mlflow_env.setenv("LLMFS_MLFLOW_URI", str(store))   # a plain folder: a local store
    jm = default_manager(telemetry_interval=0.05)
    try:
        cfg = TrainConfig(model=str(tiny_hf_folder), data=str(text_file), steps=2, batch_size=2, seq_len=32,
                          warmup_steps=1, eval_every=0, eval_batches=1, device="cpu", lora_rank=2,
                          lora_targets="qkv")
        rid = jm.submit("train", cfg, owner="t", user="ana")
        assert jm.wait(rid, 180) == SUCCEEDED, jm.get(rid).status().get("traceback")
    finally:
        jm.shutdown()
    run = jm.get(rid)
    where = run.status()["mlflow"]
    assert where["uri"] == store.resolve().as_uri() and "MLflow: recorded as run" in run.log_tail(20)
    client = MlflowClient(tracking_uri=where["uri"])
    got = client.get_run(where["run_id"])
    assert client.get_experiment(got.info.experiment_id).name == "llmfs"
    assert got.info.run_name == rid and got.info.status == "FINISHED"
    assert got.data.params == {k: str(v) for k, v in run.config().items()}
    assert got.data.tags["llmfs.run_id"] == rid and got.data.tags["llmfs.kind"] == "train"
    assert got.data.tags["llmfs.user"] == "ana" and got.data.tags["llmfs.state"] == SUCCEEDED
    history = sorted(client.get_metric_history(got.info.run_id, "loss"), key=lambda m: m.step)
    train = run.read_metrics("train")
    assert [(m.step, m.value) for m in history] == [(r["step"], pytest.approx(r["loss"])) for r in train]
    assert [m.timestamp for m in history] == [int(r["time"] * 1000) for r in train]
    assert [m.step for m in client.get_metric_history(got.info.run_id, "eval_loss")] == [2]
    assert {"lr", "tokens_per_s", "memory_process_rss_mib"} <= set(got.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(got.info.run_id)}
    assert {"adapter", "config.json", "results.json"} <= artifacts
    adapter = {Path(a.path).name for a in client.list_artifacts(got.info.run_id, "adapter")}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= adapter


def test_a_resumed_run_goes_on_in_the_same_mlflow_run(jobs, tmp_path, mlflow_env):
    from mlflow.tracking import MlflowClient

    mlflow_env.setenv("MLFLOW_TRACKING_URI", (tmp_path / "store").as_uri())   # MLflow's own variable
    mlflow_env.setenv("MLFLOW_EXPERIMENT_NAME", "class of 2025")
    jobs.register("steps", _steps_job)
    rid = jobs.submit("steps", {"steps": 6, "fail_at": 4, "resume_from": 3})
    assert jobs.wait(rid, 30) == FAILED
    first = jobs.get(rid).status()["mlflow"]
    client = MlflowClient(tracking_uri=first["uri"])
    assert client.get_run(first["run_id"]).info.status == "FAILED"
    jobs.resume(rid)
    assert jobs.wait(rid, 30) == SUCCEEDED
    again = jobs.get(rid).status()["mlflow"]
    assert again["run_id"] == first["run_id"]
    got = client.get_run(again["run_id"])
    assert got.info.status == "FINISHED" and got.data.tags["llmfs.state"] == SUCCEEDED
    assert client.get_experiment(got.info.experiment_id).name == "class of 2025"
    history = client.get_metric_history(got.info.run_id, "loss")
    # each attempt's losses, as they happened (steps 3 and 4 trained twice); the run's latest loss is the last step's
    assert sorted(m.step for m in history) == [1, 2, 3, 3, 4, 4, 5, 6]
    assert got.data.metrics["loss"] == pytest.approx(10.0 / 6) and "llmfs.error" not in got.data.tags
    assert len(client.search_runs([got.info.experiment_id])) == 1


def test_an_unreachable_mlflow_server_costs_seconds_and_a_log_line(jobs, mlflow_env):
    with socket.socket() as s:   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow_env.setenv("LLMFS_MLFLOW_URI", f"http://127.0.0.1:{port}")
    jobs.register("steps", _steps_job)
    t0 = time.monotonic()
    rid = jobs.submit("steps", {"steps": 3})
    assert jobs.wait(rid, 60) == SUCCEEDED
    elapsed = time.monotonic() - t0
    run = jobs.get(rid)
    assert run.state == SUCCEEDED and "mlflow" not in run.status()
    lines = [line for line in run.log_tail(50).splitlines() if "MLflow" in line]
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "not affected" in lines[0]
    assert elapsed < 20, elapsed

