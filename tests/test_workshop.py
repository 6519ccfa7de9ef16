"""Workshop mode in the job runner: users, per-user limits, a paused queue, queue positions with wait estimates,
and many participants submitting at once: every job runs exactly once, in queue order."""

from __future__ import annotations

import threading
import time

import pytest

from llmfs.config import ConfigError
from llmfs.jobs import JobManager, LimitError
from llmfs.workshop import WorkshopLimits, check_submission, install, load_limits, password_ok


@pytest.fixture
def jobs(tmp_path):
    jm = JobManager(tmp_path / "runs", telemetry_interval=60)
    started: list[str] = []
    gate = threading.Event()

    def sleepy(ctx, cfg):
        started.append(ctx.run.run_id)
        for i in range(cfg.get("ticks", 1)):
            if ctx.should_stop():
                break
            ctx.progress(i + 1, cfg.get("ticks", 1))
            if cfg.get("wait"):
                gate.wait(10)
            time.sleep(cfg.get("tick_s", 0.0))
        return {"ok": True}

    jm.register("train", sleepy)
    jm.started, jm.gate = started, gate
    yield jm
    gate.set()
    jm.shutdown()


def test_paused_queue_starts_nothing_until_unpaused(jobs):
    jobs.pause()
    a = jobs.submit("train", {"steps": 1}, user="ada")
    b = jobs.submit("train", {"steps": 1}, user="bob")
    time.sleep(0.8)
    assert jobs.paused and jobs.started == [] and jobs.queue_position(a) == 1 and jobs.queue_position(b) == 2
    jobs.unpause()
    assert jobs.wait(a, 10) == "succeeded" and jobs.wait(b, 10) == "succeeded"
    assert jobs.started == [a, b]


def test_a_job_running_when_paused_finishes(jobs):
    a = jobs.submit("train", {"wait": True}, user="ada")
    b = jobs.submit("train", {"steps": 1}, user="bob")
    for _ in range(100):
        if jobs.started:
            break
        time.sleep(0.05)
    jobs.pause()
    jobs.gate.set()
    assert jobs.wait(a, 10) == "succeeded"
    time.sleep(0.8)
    assert jobs.get(b).state == "pending"
    jobs.unpause()
    assert jobs.wait(b, 10) == "succeeded"


def test_per_user_limit_refuses_with_a_reason_and_lets_others_in(jobs):
    install(jobs, WorkshopLimits(max_queued_per_user=1))
    jobs.pause()
    jobs.submit("train", {"steps": 1}, user="ada")
    with pytest.raises(LimitError, match="already have 1 job.*most this workshop allows per person \\(1\\)"):
        jobs.submit("train", {"steps": 1}, user="ada")
    jobs.submit("train", {"steps": 1}, user="bob")
    assert [r["user"] for r in jobs.queue_snapshot()] == ["ada", "bob"]
    jobs.unpause()


def test_size_limits(jobs):
    limits = WorkshopLimits(max_steps=100, max_tokens_per_step=1024, max_params=1_000_000)
    with pytest.raises(LimitError, match="500 training steps.*\\(100\\)"):
        check_submission(limits, jobs, "train", {"steps": 500}, "ada")
    with pytest.raises(LimitError, match="2,048 tokens.*batch size"):
        check_submission(limits, jobs, "train", {"steps": 10, "batch_size": 16, "seq_len": 128}, "ada")
    with pytest.raises(LimitError, match="1,350,400 parameters.*llmfs-tiny"):
        check_submission(limits, jobs, "train", {"steps": 10, "model": "llmfs-tiny"}, "ada")
    check_submission(WorkshopLimits(max_params=2_000_000), jobs, "train", {"model": "llmfs-tiny"}, "ada")


def test_the_packaged_models_size_is_limited_before_it_is_unpacked(jobs, llmfs_home):
    from llmfs.packaged import SMOLLM2, folder_of
    assert not folder_of(SMOLLM2).exists()
    with pytest.raises(LimitError, match="smollm2-135m has 134,515,008 parameters.*\\(100,000,000\\)"):
        check_submission(WorkshopLimits(max_params=100_000_000), jobs, "eval", {"model": "smollm2-135m"}, "ada")
    check_submission(WorkshopLimits(max_params=200_000_000), jobs, "train", {"model": "smollm2-135m"}, "ada")


def test_queue_snapshot_estimates_the_wait(jobs):
    jobs.pause()
    ids = [jobs.submit("train", {"steps": 10}, user=f"u{i}") for i in range(3)]
    rows = jobs.queue_snapshot()
    assert [r["position"] for r in rows] == [1, 2, 3] and [r["run_id"] for r in rows] == ids
    waits = [r["wait_s"] for r in rows]
    assert waits[0] == 0 and waits[0] < waits[1] < waits[2]
    jobs.unpause()


def test_many_participants_at_once_each_job_runs_once_in_queue_order(jobs):
    """30 participants submit from their own threads at once, then poll their runs: every job runs exactly once,
    in the order the queue accepted them, and each participant sees only their own runs in `user_jobs`."""
    install(jobs, WorkshopLimits(max_queued_per_user=2))
    jobs.pause()
    accepted: list[tuple[int, str, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(30)

    def participant(i: int) -> None:
        barrier.wait()
        for _ in range(2):
            rid = jobs.submit("train", {"steps": 1, "tick_s": 0.005}, user=f"user{i:02d}")
            with lock:
                accepted.append((jobs.get(rid).status()["created"], rid, f"user{i:02d}"))
        mine = jobs.user_jobs(f"user{i:02d}")
        assert len(mine) == 2 and all(jobs.get(r).status()["user"] == f"user{i:02d}" for r in mine)
        with pytest.raises(LimitError):
            jobs.submit("train", {"steps": 1}, user=f"user{i:02d}")

    threads = [threading.Thread(target=participant, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    queued = [r["run_id"] for r in jobs.queue_snapshot()]
    assert len(queued) == 60 == len(set(queued))
    jobs.unpause()
    for rid in queued:
        assert jobs.wait(rid, 30) == "succeeded"
    assert jobs.started == queued  # exactly once each, in queue order


def test_limits_file(tmp_path, monkeypatch):
    path = tmp_path / "workshop.toml"
    monkeypatch.setenv("LLMFS_WORKSHOP_CONFIG", str(path))
    assert not load_limits().active  # no file: no limits
    path.write_text("max_queued_per_user = 2\nmax_steps = 300\n")
    limits = load_limits()
    assert limits.max_queued_per_user == 2 and limits.max_steps == 300 and limits.active
    path.write_text("max_stepz = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'max_stepz'"):
        load_limits()
    path.write_text("max_steps = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_limits()
    path.write_text("max_steps = 0\n")
    with pytest.raises(ConfigError, match="max_steps must be between 1"):
        load_limits()
    path.write_text("max_upload_mb = 'lots'\n")
    with pytest.raises(ConfigError, match="max_upload_mb must be a number"):
        load_limits()


def test_password():
    assert password_ok("s3cret", "s3cret")
    assert not password_ok("s3cret!", "s3cret") and not password_ok("", None) and not password_ok("x", "")


def test_a_batch_is_queued_whole_or_not_at_all(jobs):
    install(jobs, WorkshopLimits(max_queued_per_user=3))
    jobs.pause()
    jobs.submit("train", {"steps": 1}, user="ada")
    with pytest.raises(LimitError, match="asks for 3 jobs at once and you have 1"):
        jobs.submit_batch([("train", {"steps": 1})] * 3, user="ada")
    assert len(jobs.user_jobs("ada")) == 1  # nothing of the refused batch was queued
    ids = jobs.submit_batch([("train", {"steps": 1})] * 2, user="ada")
    assert [r["run_id"] for r in jobs.queue_snapshot()][1:] == ids
    jobs.unpause()


def test_running_training_reports_progress_for_the_wait_estimate(tmp_path):
    from llmfs.jobs import JobContext
    from llmfs.runs import Run
    run = Run.create(tmp_path / "r", "train", {"steps": 10})
    ctx = JobContext(run, threading.Event())
    ctx.emit(3, kind="train", loss=1.0, total_steps=10)
    assert run.status()["progress"] == {"done": 3, "total": 10, "unit": "steps"}
    ctx.emit(4, kind="train", loss=1.0, total_steps=10)  # within 2 s: not written again
    assert run.status()["progress"]["done"] == 3
