"""The job runner: states, FIFO order on one slot, cancel, failure capture, restart marks interrupted runs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from llmfs.jobs import JobManager, summarize_exception
from llmfs.runs import CANCELLED, FAILED, INTERRUPTED, PENDING, RUNNING, SUCCEEDED, Run, list_runs


def _wait_for(pred, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def jobs(tmp_path):
    jm = JobManager(tmp_path / "runs", telemetry_interval=0.05)
    yield jm
    jm.shutdown()


def _counting_job(ctx, cfg):
    for step in range(1, cfg["steps"] + 1):
        if ctx.should_stop():
            break
        ctx.emit(step, loss=1.0 / step)
        time.sleep(cfg.get("sleep", 0.0))
    return {"steps": step}


def test_status_transitions_and_result(jobs):
    seen = []
    gate = threading.Event()

    def job(ctx, cfg):
        seen.append(ctx.run.state)  # the runner marks it running before calling the job
        gate.wait(5)
        ctx.emit(1, loss=0.5)
        return {"answer": 42}

    jobs.register("demo", job)
    rid = jobs.submit("demo", {"x": 1}, owner="ana")
    assert _wait_for(lambda: seen)
    assert seen == [RUNNING]
    gate.set()
    assert jobs.wait(rid, 10) == SUCCEEDED
    run = jobs.get(rid)
    status = run.status()
    assert status["result"] == {"answer": 42} and status["owner"] == "ana"
    assert status["started"] >= status["created"] and status["finished"] >= status["started"]
    assert json.loads((run.path / "results.json").read_text()) == {"answer": 42}
    assert run.config() == {"x": 1} and run.kind == "demo"
    assert [m["loss"] for m in run.read_metrics("train")] == [0.5]
    assert "Finished." in run.log_tail()


def test_queue_is_fifo_with_one_slot(jobs):
    order, gate = [], threading.Event()

    def job(ctx, cfg):
        if cfg["i"] == 0:
            gate.wait(5)
        order.append(cfg["i"])

    jobs.register("q", job)
    ids = [jobs.submit("q", {"i": i}) for i in range(5)]
    assert _wait_for(lambda: jobs.get(ids[0]).state == RUNNING)
    # The first holds the slot; the others wait in submission order.
    assert [jobs.queue_position(r) for r in ids] == [None, 1, 2, 3, 4]
    assert all(jobs.get(r).state == PENDING for r in ids[1:])
    gate.set()
    for r in ids:
        assert jobs.wait(r, 10) == SUCCEEDED
    assert order == [0, 1, 2, 3, 4]


def test_cancel_running_job_stops_within_a_step(jobs):
    jobs.register("count", _counting_job)
    rid = jobs.submit("count", {"steps": 10_000, "sleep": 0.01})
    run = jobs.get(rid)
    assert _wait_for(lambda: len(run.read_metrics("train")) >= 3)
    assert jobs.cancel(rid)
    assert jobs.wait(rid, 5) == CANCELLED
    n = len(run.read_metrics("train"))
    time.sleep(0.1)
    assert len(run.read_metrics("train")) == n < 10_000  # nothing after the stop
    assert not jobs.cancel(rid)  # already over


def test_cancel_pending_job_never_runs(jobs):
    ran, gate = [], threading.Event()
    jobs.register("slow", lambda ctx, cfg: gate.wait(5))
    jobs.register("mark", lambda ctx, cfg: ran.append(cfg))
    first = jobs.submit("slow", {})
    second = jobs.submit("mark", {"n": 2})
    third = jobs.submit("mark", {"n": 3})
    assert jobs.cancel(second)
    assert jobs.get(second).state == CANCELLED
    assert jobs.queue_position(third) == 1
    gate.set()
    assert jobs.wait(third, 10) == SUCCEEDED and jobs.wait(first, 10) == SUCCEEDED
    assert ran == [{"n": 3}]


def test_failure_captured_and_worker_survives(jobs):
    def bad(ctx, cfg):
        ctx.emit(1, loss=2.0)
        raise ValueError("batch_size must be between 1 and 4096 (got 0).")

    jobs.register("bad", bad)
    jobs.register("count", _counting_job)
    rid = jobs.submit("bad", {})
    assert jobs.wait(rid, 10) == FAILED
    status = jobs.get(rid).status()
    assert status["error"] == "batch_size must be between 1 and 4096 (got 0)."
    assert "Traceback" in status["traceback"] and "ValueError" in status["traceback"]
    assert jobs.get(rid).read_metrics("train")[0]["loss"] == 2.0  # metrics kept
    assert "Failed:" in jobs.get(rid).log_tail()
    ok = jobs.submit("count", {"steps": 2})
    assert jobs.wait(ok, 10) == SUCCEEDED  # the next job still runs


def test_telemetry_sampled_while_running(jobs):
    jobs.register("count", _counting_job)
    rid = jobs.submit("count", {"steps": 30, "sleep": 0.02})
    assert jobs.wait(rid, 10) == SUCCEEDED
    tele = jobs.get(rid).read_metrics("telemetry")
    assert len(tele) >= 2
    assert all(t["process_rss_bytes"] > 0 for t in tele)


def test_unknown_kind_refused(jobs):
    with pytest.raises(ValueError, match="Unknown job kind"):
        jobs.submit("nope", {})


def test_plain_language_summaries():
    assert "ran out of memory" in summarize_exception(MemoryError())
    assert "ran out of memory" in summarize_exception(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert summarize_exception(OSError(28, "No space left on device")).startswith("The disk is full")
    assert summarize_exception(RuntimeError("boom")) == "RuntimeError: boom"


RUNNER = """
import sys, time
from llmfs.jobs import JobManager
jm = JobManager(sys.argv[1], telemetry_interval=0.05)
def job(ctx, cfg):
    for step in range(1, 100000):
        ctx.emit(step, loss=1.0)
        time.sleep(0.01)
jm.register("forever", job)
rid = jm.submit("forever", {})
jm.submit("forever", {})  # a second one waiting in the queue
print(rid, flush=True)
time.sleep(60)
"""


def test_restart_marks_interrupted_runs_with_metrics(tmp_path):
    root = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        rid = proc.stdout.readline().strip()
        run = Run(root / rid)
        assert _wait_for(lambda: len(run.read_metrics("train")) >= 5, 30)
        # While the owner lives, another manager on the same folder (the CLI, a second server) leaves it alone.
        other = JobManager(root)
        assert other.interrupted_at_start == [] and run.state == RUNNING
        other.shutdown()
    finally:
        proc.kill()
        proc.wait()
    restarted = JobManager(root)
    try:
        assert sorted(restarted.interrupted_at_start) == sorted(r.run_id for r in list_runs(root))
        status = run.status()
        assert status["state"] == INTERRUPTED and "server stopped" in status["error"]
        assert len(run.read_metrics("train")) >= 5  # metrics survive
        states = {r.status()["state"] for r in list_runs(root)}
        assert states == {INTERRUPTED}
    finally:
        restarted.shutdown()


def test_resume_requeues_in_the_same_folder(jobs, tmp_path):
    attempts = []

    def job(ctx, cfg):
        attempts.append(ctx.resume)
        if not ctx.resume:
            raise RuntimeError("first attempt fails")
        return {"ok": True}

    jobs.register("flaky", job)
    rid = jobs.submit("flaky", {})
    assert jobs.wait(rid, 10) == FAILED
    jobs.resume(rid)
    assert jobs.wait(rid, 10) == SUCCEEDED
    assert attempts == [False, True]
    assert jobs.get(rid).status()["error"] is None


EXITING = """
import sys, time
from llmfs.jobs import JobManager
jm = JobManager(sys.argv[1], telemetry_interval=0.05)
def job(ctx, cfg):
    step = 0
    while not ctx.should_stop():
        step += 1
        ctx.emit(step, loss=1.0)
        time.sleep(0.01)
jm.register("forever", job)
rid = jm.submit("forever", {})
while jm.get(rid).state != "running":
    time.sleep(0.01)
print(rid, flush=True)
time.sleep(0.2)
sys.exit(0)  # the interpreter exits with a job still running
"""


def test_interpreter_exit_stops_jobs_cleanly_as_interrupted(tmp_path):
    root = tmp_path / "runs"
    p = subprocess.run([sys.executable, "-c", EXITING, str(root)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr  # no abort from a worker thread caught in interpreter teardown
    run = Run(root / p.stdout.strip())
    assert run.state == INTERRUPTED and "server was stopped" in run.status()["error"]
    assert run.read_metrics("train")
