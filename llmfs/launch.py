"""Runs on several processes: the job runner's torchrun launcher, and what each rank does.

Two ways in, one loop (`llmfs.train` with `llmfs.distributed`):

- **You run torchrun** (a machine with several GPUs, a Slurm cluster): `torchrun --nproc_per_node=N -m llmfs train
  ...`. Each rank runs `rank_main`; rank 0 creates the run directory, records the status, metrics and log, and prints
  the CLI's summary; the others train silently.
- **The job runner does** (the app, or `python -m llmfs train --processes N`): the job `launch_job` starts
  `torchrun --standalone --nproc_per_node=N -m llmfs train --attach RUN_DIR` as a subprocess and waits for it. The
  ranks write into the run directory the runner already made (so the live panel shows them like any run), the
  launcher owns the run's status: Stop writes a STOP file every rank sees at its next step (then, after a grace
  period, ends the process group), and a rank that fails or is killed fails the run with the reason.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from . import distributed
from .config import TrainConfig, from_dict
from .distributed import processes_for  # noqa: F401 (the launcher's API)
from .fsutil import atomic_write_json, read_json
from .jobs import STOP_FILE, JobContext, RankContext, StopFile  # noqa: F401 (STOP_FILE: the launcher's API)
from .paths import runs_dir
from .runs import Run, new_run_id

RANK0_RESULT = "rank0-result.json"   # what rank 0's job returned (attach mode), for the launcher to record
RANK0_ERROR = "rank0-error.json"     # how rank 0's job failed (attach mode)
STOP_GRACE_S = 60.0                  # after Stop: how long the ranks get to reach their next step and checkpoint


class RankStopped(Exception):
    """Raised in a rank that torchrun stops (SIGTERM), which it does when another rank failed or was killed."""
    plain_message = True
    error_kind = "rank_failed"


# -- the launcher (inside the job runner) -----------------------------------------------------------------------------
def torchrun_command(n: int, run_dir: str | os.PathLike, resume: bool = False) -> list[str]:
    """torchrun on this machine: a rendezvous on a free local port (--standalone), n ranks of the CLI."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "llmfs", "train", "--attach", str(run_dir)]
    return cmd + (["--resume"] if resume else [])


def launch_job(ctx, cfg: TrainConfig, n: int) -> dict:
    """The job that runs `cfg` on `n` processes through torchrun and waits for it (see the module's docstring)."""
    stop = StopFile(ctx.run_dir)
    stop.clear()
    for name in (RANK0_RESULT, RANK0_ERROR):
        (ctx.run_dir / name).unlink(missing_ok=True)
    ctx.stop_telemetry()  # rank 0 samples its own process (and the GPUs); this launcher's memory says nothing
    cmd = torchrun_command(n, ctx.run_dir, resume=ctx.resume)
    ctx.log(f"Starting {n} training processes ({cfg.strategy.upper()}) through torchrun: {' '.join(cmd[1:])}")
    package_parent = str(Path(__file__).resolve().parents[1])  # `-m llmfs` from wherever the server was started
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONPATH": os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True,  # its own process group: Stop can end every rank at once
                            preexec_fn=_end_with_parent)
    reader = threading.Thread(target=_copy_output, args=(proc, ctx), daemon=True)
    reader.start()
    stop_asked_at = None
    try:
        while proc.poll() is None:
            if ctx.should_stop() and stop_asked_at is None:
                stop.set()
                stop_asked_at = time.monotonic()
                ctx.log("Stop asked: every process stops at its next step.")
            if stop_asked_at is not None and time.monotonic() - stop_asked_at > STOP_GRACE_S:
                ctx.log(f"The processes did not stop within {STOP_GRACE_S:.0f} s: ending them.")
                _end_group(proc)
            time.sleep(0.2)
    except BaseException:
        _end_group(proc)  # the launcher is going away (server shutdown): never leave ranks behind
        raise
    finally:
        reader.join(timeout=5)
    result = read_json(ctx.run_dir / RANK0_RESULT)
    if proc.returncode == 0 and result is not None:
        return result
    failure = read_json(ctx.run_dir / RANK0_ERROR)
    if stop_asked_at is not None and failure is None:
        return result or {}
    raise RankFailure(_failure_message(proc.returncode, failure), failure)


class RankFailure(RuntimeError):
    """A distributed run that ended badly; the message says why (as rank 0 recorded it, or torchrun's exit)."""
    plain_message = True

    def __init__(self, message: str, failure: dict | None = None):
        super().__init__(message)
        self.error_kind = (failure or {}).get("error_kind") or "rank_failed"


def _failure_message(returncode: int | None, failure: dict | None) -> str:
    if failure and failure.get("error"):
        return failure["error"]
    return (f"A training process failed or was killed (torchrun exited with code {returncode}), so every process "
            "of this run was stopped. The log above holds each process's output; the last checkpoint is kept.")


def _copy_output(proc: subprocess.Popen, ctx) -> None:
    """torchrun's and the ranks' output into the run's log, so a failed run keeps what they said."""
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line and "OMP_NUM_THREADS" not in line and not set(line) <= {"*"}:
            ctx.log(line)


def _end_with_parent() -> None:
    """In torchrun's process, before it starts: SIGTERM when the launcher dies (a killed server), which torchrun
    passes on to every rank, so no rank trains on for a run the next server marks interrupted. Linux only."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _end_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    except PermissionError:
        proc.kill()


# -- a rank ---------------------------------------------------------------------------------------------------------
def rank_main(cfg: TrainConfig | None, run_dir: str | None, attach: bool, resume: bool, owner: str = "cli", *,
              recipe: Callable[[JobContext, dict], dict], preflight: Callable[[TrainConfig], None]
              ) -> tuple[Run, dict | None]:
    """One rank of a torchrun run of `llmfs train`. Returns (the run, rank 0's status or None on other ranks).

    recipe: what each rank runs (`llmfs.recipes.train_job`); preflight: the checks before a new run is created.
    The launcher is handed both, so it never depends on the recipes it launches.

    attach: the run directory exists (the job runner made it and owns its status); cfg is read from it.
    resume: continue the run in `run_dir` from its last checkpoint, with its own config, on this run's number of
        processes (whatever it was before).
    """
    from .jobs import execute_job

    if attach or resume:  # an existing run: its own config (a resumed run continues as it was set up)
        if not run_dir or not Run(run_dir).exists():
            raise ValueError(f"No run at {run_dir}: --resume continues an existing run, named with --out.")
        cfg = from_dict(TrainConfig, Run(run_dir).config())
    assert cfg is not None
    env = distributed.setup(cfg.device)
    _stop_on_sigterm()
    try:
        path = None
        if env.is_main:
            if attach or resume:
                path = str(Path(run_dir).resolve())
            else:
                preflight(cfg)
                target = Path(run_dir) if run_dir else runs_dir() / new_run_id("train")
                path = str(Run.create(target, "train", dataclasses.asdict(cfg), owner=owner).path)
        path = distributed.broadcast(path, env)
        run, stop = Run(path), StopFile(path)
        payload = dataclasses.asdict(cfg)
        job = functools.partial(rank_train_job, recipe=recipe)
        if not env.is_main:
            job(RankContext(run, stop, resume), payload)
            return run, None
        if attach:
            return run, _attached_rank0(run, stop, payload, resume, job)
        execute_job(job, run, payload, resume, stop, lambda: False, 1.0)
        return run, run.status()
    finally:
        distributed.teardown()


def _attached_rank0(run: Run, stop: StopFile, payload: dict, resume: bool, job: Callable) -> dict:
    """Rank 0 under the job runner: train and report, leave the status to the launcher (result or failure file)."""
    from . import telemetry
    from .jobs import error_kind, summarize_exception

    ctx = JobContext(run, stop, resume=resume)

    def sample(snap: dict) -> None:
        ctx.emit(ctx.last_step, kind="telemetry", **snap)
    sampler = telemetry.Sampler(sample, 1.0).start()
    try:
        result = job(ctx, payload) or {}
    except BaseException as e:
        atomic_write_json(run.path / RANK0_ERROR, {"error": summarize_exception(e), "error_kind": error_kind(e),
                                                   "error_type": type(e).__name__,
                                                   "traceback": traceback.format_exc()})
        raise
    finally:
        sampler.stop()
        ctx.close_tracking()  # rank 0 charts the run (TensorBoard); the launcher sends it to MLflow once it ends
    atomic_write_json(run.path / RANK0_RESULT, json.loads(json.dumps(result, default=str)))
    return result


def rank_train_job(ctx, payload: dict, recipe: Callable[[JobContext, dict], dict]) -> dict:
    """The training recipe on one rank, a lost peer said plainly: when another rank dies, this one's next collective
    fails with the backend's own words (gloo: "Connection closed by peer", NCCL: a timeout)."""
    try:
        return recipe(ctx, payload)
    except RuntimeError as e:
        import torch.distributed as dist
        if isinstance(e, getattr(dist, "DistNetworkError", ())) or any(s in str(e) for s in _PEER_LOST):
            raise RankStopped(RANK_STOPPED) from e
        raise


# what gloo / NCCL say when a peer is gone: a connection ended or a collective timed out (not any backend error,
# which would hide a real bug behind "another process failed")
_PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Timed out", "timed out",
              "communicator was aborted")
RANK_STOPPED = ("Another process of this distributed run failed or was killed, so this run was stopped. The log holds "
                "each process's output; the last checkpoint is kept, and the run can resume from it (on any number "
                "of processes).")


def _stop_on_sigterm() -> None:
    """torchrun ends the other ranks with SIGTERM when one fails: turn it into an exception, so rank 0 records why
    (the default action would end it silently, leaving the run "running")."""
    raised = []

    def handler(signum, frame):
        # Once only, and not while a failure is being recorded (a lost peer's error usually comes first): raising
        # then would cut the recording short and leave the run "running".
        if not raised and sys.exc_info()[1] is None:
            raised.append(signum)
            raise RankStopped(RANK_STOPPED)
    signal.signal(signal.SIGTERM, handler)
