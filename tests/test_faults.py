"""Faults a shared server must survive with nothing lost: the server killed mid-run (then restarted and resumed),
out of memory inside a job, a diverging loss, data too small to train on, a full disk (simulated, and a real tmpfs
where this machine allows mounting one). Each ends the job with a clear reason while the runner goes on."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llmfs.config import TrainConfig
from llmfs.recipes import submit_train
from llmfs.runner import default_manager
from llmfs.runs import FAILED, INTERRUPTED, SUCCEEDED, Run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("Lists are mutable sequences. Tuples are immutable sequences. Sets hold unique items. " * 300)
    return path


@pytest.fixture
def jobs(tmp_path):
    jm = default_manager(tmp_path / "runs", telemetry_interval=0.2)
    yield jm
    jm.shutdown()


def _cfg(model, data, **kw) -> TrainConfig:
    base = dict(model=str(model), data=str(data), steps=8, batch_size=2, seq_len=32, eval_every=0, warmup_steps=1,
                checkpoint_every=2, device="cpu")
    return TrainConfig(**{**base, **kw})


def _wait_for(cond, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


SERVER = """
import sys, json
from llmfs.config import TrainConfig
from llmfs.recipes import submit_train
from llmfs.runner import default_manager
jm = default_manager(sys.argv[1], telemetry_interval=0.2, isolation=sys.argv[3])
cfg = TrainConfig(**json.loads(sys.argv[2]))
rid = submit_train(jm, cfg)
print(rid, flush=True)
import time; time.sleep(600)
"""


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_server_killed_mid_run_restarts_interrupted_and_resumes_from_its_checkpoint(tiny_hf_folder, text_file,
                                                                                     tmp_path, isolation):
    import psutil
    root = tmp_path / "runs"
    cfg = dict(model=str(tiny_hf_folder), data=str(text_file), steps=400, batch_size=2, seq_len=32, eval_every=0,
               warmup_steps=1, checkpoint_every=5, device="cpu")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(root), json.dumps(cfg), isolation],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        rid = proc.stdout.readline().strip()
        run = Run(root / rid)
        ckpt_state = run.checkpoint_dir / "last" / "state.json"
        assert _wait_for(lambda: ckpt_state.exists() and len(run.read_metrics("train")) >= 12, 120)
        helpers = psutil.Process(proc.pid).children(recursive=True)  # the job's process (and its fork server)
        assert len(helpers) >= (2 if isolation == "process" else 0)
    finally:
        proc.kill()  # SIGKILL: no clean-up of any kind, as when a server is killed
        proc.wait()
    # a job process outliving its server would go on writing to a run the next server marks interrupted
    assert _wait_for(lambda: not any(_alive(p) for p in helpers), 20)
    seen_before = [m["loss"] for m in run.read_metrics("train")]
    checkpoint = json.loads(ckpt_state.read_text())["step"]
    jm = default_manager(root, telemetry_interval=0.5)
    try:
        assert rid in jm.interrupted_at_start and run.state == INTERRUPTED
        assert len(run.read_metrics("train")) == len(seen_before)  # every metric written before the kill survives
        # resume with fewer steps left to keep the test short: the run's config says 400, so shorten it on disk
        record = json.loads((run.path / "config.json").read_text())
        record["config"]["steps"] = checkpoint + 3
        (run.path / "config.json").write_text(json.dumps(record))
        jm.resume(rid)
        assert jm.wait(rid, 120) == SUCCEEDED, run.status().get("traceback")
        result = run.status()["result"]
        assert result["steps"] == checkpoint + 3
        # the resumed history starts with the checkpointed steps, identical to what was seen before the kill
        assert result["losses"][:checkpoint] == pytest.approx(seen_before[:checkpoint], rel=1e-6)
    finally:
        jm.shutdown()


def test_out_of_memory_fails_plainly_and_the_next_job_runs(jobs, tiny_hf_folder, text_file, monkeypatch):
    from llmfs.model import GPT
    real_forward = GPT.forward
    calls = {"n": 0}

    def forward(self, idx, targets=None):
        calls["n"] += 1
        if targets is not None and idx.shape[0] == 2 and calls["n"] > 3 and os.environ.get("OOM_ON") == "1":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_forward(self, idx, targets)

    monkeypatch.setattr(GPT, "forward", forward)
    monkeypatch.setenv("OOM_ON", "1")
    bad = submit_train(jobs, _cfg(tiny_hf_folder, text_file))
    assert jobs.wait(bad, 120) == FAILED
    status = jobs.get(bad).status()
    assert status["error"].startswith("The job ran out of memory") and "smaller batch size" in status["error"]
    assert "bf16" in status["error"] and "LoRA" in status["error"] and "4-bit" in status["error"]
    assert status["error_kind"] == "out_of_memory" and status["error_type"] == "OutOfMemoryError"
    assert status["peak_memory_bytes"] > 0
    monkeypatch.setenv("OOM_ON", "0")
    good = submit_train(jobs, _cfg(tiny_hf_folder, text_file, batch_size=3))
    assert jobs.wait(good, 120) == SUCCEEDED  # the runner kept going


def test_diverging_loss_stops_with_the_reason_and_keeps_the_checkpoint(jobs, tiny_hf_folder, text_file,
                                                                        monkeypatch):
    from llmfs.model import GPT
    real_forward = GPT.forward
    calls = {"n": 0}

    def forward(self, idx, targets=None):
        logits, loss = real_forward(self, idx, targets)
        if targets is not None and self.training:
            calls["n"] += 1
            if calls["n"] >= 5:
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(GPT, "forward", forward)
    rid = submit_train(jobs, _cfg(tiny_hf_folder, text_file))
    assert jobs.wait(rid, 120) == FAILED
    run = jobs.get(rid)
    status = run.status()
    assert "step 5" in status["error"] and "diverged" in status["error"] and status["error_kind"] == "diverged"
    assert json.loads((run.checkpoint_dir / "last" / "state.json").read_text())["step"] == 4
    assert len(run.read_metrics("train")) == 4


def test_data_too_small_ends_with_a_reason(jobs, tiny_hf_folder, tmp_path):
    from llmfs.config import ConfigError
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("too short")
    with pytest.raises(ConfigError, match="tokens to train on: too little to train with"):  # before queueing
        submit_train(jobs, _cfg(tiny_hf_folder, tiny))
    assert jobs.list_runs() == []
    rid = jobs.submit("train", _cfg(tiny_hf_folder, tiny))   # queued without the check: the run says it too
    assert jobs.wait(rid, 120) == FAILED
    error = jobs.get(rid).status()["error"]
    assert "tokens" in error and ("shorter sequence" in error or "more text" in error), error


def test_disk_full_while_checkpointing_keeps_the_last_checkpoint(jobs, tiny_hf_folder, text_file, monkeypatch):
    import llmfs.train as train_mod
    real = train_mod._write_checkpoint
    calls = {"n": 0}

    def write(tmp, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            (tmp / "model.safetensors").write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tmp, *a, **kw)

    monkeypatch.setattr(train_mod, "_write_checkpoint", write)
    rid = submit_train(jobs, _cfg(tiny_hf_folder, text_file))
    assert jobs.wait(rid, 120) == FAILED
    run = jobs.get(rid)
    status = run.status()
    assert status["error"].startswith("The disk is full") and status["error_kind"] == "disk_full"
    last = run.checkpoint_dir / "last"
    assert json.loads((last / "state.json").read_text())["step"] == 2  # the checkpoint before is whole
    from safetensors.torch import load_file
    assert load_file(str(last / "model.safetensors"))
    assert not [p for p in run.checkpoint_dir.iterdir() if p.name.startswith(".")]  # the partial one is gone
    assert len(run.read_metrics("train")) == 4


@pytest.fixture
def small_tmpfs(tmp_path):
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)], capture_output=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_really_full_disk_ends_the_job_and_writes_stay_whole(small_tmpfs, tiny_hf_folder, text_file):
    runs = small_tmpfs / "runs"
    jm = default_manager(runs, telemetry_interval=0.2)
    try:
        # leave room for the run's small files and a checkpoint or two, not for the whole run
        rid = submit_train(jm, _cfg(tiny_hf_folder, text_file, steps=200, checkpoint_every=1))
        filler = small_tmpfs / "filler"
        with open(filler, "wb") as f:
            free = os.statvfs(small_tmpfs).f_bavail * os.statvfs(small_tmpfs).f_frsize
            f.write(b"\0" * max(0, free - 900_000))
        state = jm.wait(rid, 180)
        run = jm.get(rid)
        status = run.status()
        assert state == FAILED and status["error_kind"] == "disk_full", status
        for name in ("status.json", "config.json"):
            json.loads((run.path / name).read_text())  # whole, readable JSON
        for line in (run.path / "metrics.jsonl").read_text().splitlines()[:-1]:
            json.loads(line)  # every complete line parses (the last may be cut by the full disk)
        last = run.checkpoint_dir / "last"
        if last.exists():
            step = json.loads((last / "state.json").read_text())["step"]
            from safetensors.torch import load_file
            assert step >= 1 and load_file(str(last / "model.safetensors"))
    finally:
        jm.shutdown()


def _alive(process) -> bool:
    """Running and not a zombie; a process that ends between the two questions is not alive (psutil raises)."""
    import psutil
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
