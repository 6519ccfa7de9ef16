"""Jobs in child processes (isolation="process", the web app's runner): the job sees the server's environment and
folder, its outcome is recorded as a thread's would be, Stop and Kill end it, a process killed by the system fails
with the likely reason while the queue goes on, and a server shutdown leaves its run interrupted (resumable)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from llmfs.jobs import JobManager
from llmfs.runs import CANCELLED, FAILED, INTERRUPTED, RUNNING, SUCCEEDED


# Jobs run in another process must be importable by name: module-level functions.
def steady_job(ctx, cfg):
    for step in range(1, cfg["steps"] + 1):
        ctx.check_stop()
        ctx.emit(step, loss=1.0 / step)
        time.sleep(cfg.get("sleep", 0.0))
    return {"pid": os.getpid(), "probe": os.environ.get("LLMFS_PROBE"), "cwd": os.getcwd()}


def scheduling_job(ctx, cfg):
    import torch
    return {"nice": os.nice(0), "threads": torch.get_num_threads()}


def stuck_job(ctx, cfg):
    ctx.emit(1, loss=1.0)
    time.sleep(600)  # never asks whether it should stop


def failing_job(ctx, cfg):
    ctx.emit(1, loss=1.0)
    raise ValueError("The data folder has no .txt files.")


def self_killing_job(ctx, cfg):
    ctx.emit(1, loss=1.0)
    end = time.time() + 20
    while not ctx.run.read_metrics("telemetry") and time.time() < end:  # a memory reading first
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's out-of-memory killer does


@pytest.fixture
def jobs(tmp_path):
    jm = JobManager(tmp_path / "runs", telemetry_interval=0.1, isolation="process")
    for fn in (steady_job, stuck_job, failing_job, self_killing_job, scheduling_job):
        jm.register(fn.__name__, fn)
    yield jm
    jm.shutdown()


def _wait_for(pred, timeout=30.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_job_runs_in_its_own_process_with_the_servers_environment(jobs, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMFS_PROBE", "set after the manager started")
    monkeypatch.chdir(tmp_path)
    rid = jobs.submit("steady_job", {"steps": 5})
    assert jobs.wait(rid, 60) == SUCCEEDED, jobs.get(rid).status().get("traceback")
    status = jobs.get(rid).status()
    result = status["result"]
    assert result["pid"] != os.getpid()
    assert result["probe"] == "set after the manager started" and result["cwd"] == str(tmp_path)
    assert [m["step"] for m in jobs.get(rid).read_metrics("train")] == [1, 2, 3, 4, 5]
    assert status["pid"] == os.getpid()  # the server owns the run: if it dies, a restart marks the run interrupted
    assert "Started steady_job job." in jobs.get(rid).log_tail()


def test_a_job_yields_the_cpu_to_the_pages(jobs, monkeypatch):
    rid = jobs.submit("scheduling_job", {})
    assert jobs.wait(rid, 60) == SUCCEEDED
    result = jobs.get(rid).status()["result"]
    assert result["nice"] == min(19, os.nice(0) + 10)  # a lower priority than the server's
    assert result["threads"] == max(1, (os.cpu_count() or 1) - 1)  # one core left for the pages
    monkeypatch.setenv("LLMFS_JOB_THREADS", "1")
    monkeypatch.setenv("LLMFS_JOB_NICE", "3")
    rid = jobs.submit("scheduling_job", {})
    assert jobs.wait(rid, 60) == SUCCEEDED
    assert jobs.get(rid).status()["result"] == {"nice": min(19, os.nice(0) + 3), "threads": 1}


def test_a_failure_in_the_child_is_recorded_like_a_threads(jobs):
    rid = jobs.submit("failing_job", {})
    assert jobs.wait(rid, 60) == FAILED
    status = jobs.get(rid).status()
    assert status["error"] == "The data folder has no .txt files." and status["error_type"] == "ValueError"
    assert "Traceback" in status["traceback"] and jobs.get(rid).read_metrics("train")


def test_stop_ends_a_job_at_its_next_step_and_kill_ends_one_that_never_looks(jobs):
    rid = jobs.submit("steady_job", {"steps": 100000, "sleep": 0.01})
    assert _wait_for(lambda: len(jobs.get(rid).read_metrics("train")) >= 3)
    assert jobs.cancel(rid) and jobs.wait(rid, 30) == CANCELLED

    stuck = jobs.submit("stuck_job", {})
    assert _wait_for(lambda: jobs.get(stuck).read_metrics("train"))
    jobs.cancel(stuck)
    time.sleep(1.0)
    assert jobs.get(stuck).state == RUNNING  # Stop waits for a step that never comes
    assert jobs.kill(stuck) and jobs.wait(stuck, 30) == CANCELLED
    assert "Stopped at once" in jobs.get(stuck).status()["error"]
    after = jobs.submit("steady_job", {"steps": 2})
    assert jobs.wait(after, 60) == SUCCEEDED  # the slot is free again


def test_a_process_killed_by_the_system_fails_with_the_likely_reason_and_the_queue_goes_on(jobs):
    killed = jobs.submit("self_killing_job", {})
    nxt = jobs.submit("steady_job", {"steps": 2})
    assert jobs.wait(killed, 60) == FAILED
    status = jobs.get(killed).status()
    assert status["exitcode"] == -signal.SIGKILL and status["error_kind"] == "out_of_memory"
    assert "ran out of memory" in status["error"] and "smaller batch size" in status["error"]
    assert status["peak_memory_bytes"] > 0  # from the telemetry the child wrote before it died
    assert jobs.wait(nxt, 60) == SUCCEEDED


def test_shutting_the_server_down_leaves_the_childs_run_interrupted(jobs):
    rid = jobs.submit("steady_job", {"steps": 100000, "sleep": 0.01})
    assert _wait_for(lambda: len(jobs.get(rid).read_metrics("train")) >= 3)
    jobs._stop_for_exit(timeout=30)  # what the server's atexit hook does
    status = jobs.get(rid).status()
    assert status["state"] == INTERRUPTED and "server was stopped" in status["error"]


def test_a_local_function_is_refused_for_a_child_process(jobs):
    def local(ctx, cfg):
        return {}
    with pytest.raises(ValueError, match="module-level function"):
        jobs.register("local", local)
    with pytest.raises(ValueError, match="isolation must be one of"):
        JobManager(jobs.root, isolation="container")
