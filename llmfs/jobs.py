"""The one background job runner.

A `JobManager` owns a FIFO queue and `slots` worker threads (one by default: the accelerator slot, so two users
never train on one GPU at once). A job is a plain function `fn(ctx, config) -> result dict` registered under a kind
("train", "eval", ...). It reports through its `JobContext` (`emit`, `log`, `should_stop`) and never touches a UI:
everything it says lands in its run directory (see `llmfs.runs`), which is what every UI and the CLI read.

Where a job runs is the manager's `isolation`:
- "thread": in the worker thread itself (the CLI, scripts and tests that patch a job's code in-process);
- "process": in a child process per job (the web app). A server's Python (every browser session's reruns) then never
  competes with the training loop for one GIL, a job that crashes the interpreter or is killed by the kernel cannot
  take the server with it, and all of a job's memory, GPU memory included, goes back when it ends. Children come from
  a fork server that has already imported torch, so a job starts in well under a second; the worker thread waits for
  its child and records what the child could not (a child killed by a signal fails with the reason).

States: pending -> running -> succeeded | failed | cancelled; a run whose process died is marked interrupted
the next time a manager starts on the same folder.
"""

from __future__ import annotations

import atexit
import dataclasses
import errno
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import telemetry, tracking
from .errors import LimitError  # noqa: F401 (importers take it from here too)
from .fsutil import atomic_write_json
from .runs import (
    CANCELLED,
    FAILED,
    FINAL_STATES,
    INTERRUPTED,
    PENDING,
    SUCCEEDED,
    Run,
    delete_run,
    list_runs,
    mark_interrupted,
    new_run_id,
)


class JobCancelled(Exception):
    """Raised inside a job (by `ctx.check_stop()`) to end it as cancelled."""


class JobContext:
    """What a running job may do: report metrics and logs, and ask whether it should stop."""

    def __init__(self, run: Run, stop_event, resume: bool = False):
        self.run = run
        self.resume = resume
        self._stop = stop_event
        self.last_step = 0
        self.peak_memory_bytes = 0  # the largest reading the telemetry sampler saw (CUDA peak, else process RSS)
        self._progress_at = 0.0
        self.sampler = None
        self.tensorboard = tracking.TensorBoardWriter(run, resume=resume)  # opened at the first scalar

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def checkpoint_dir(self) -> Path:
        return self.run.checkpoint_dir

    def emit(self, step: int, kind: str = "train", **metrics: Any) -> None:
        self.last_step = max(self.last_step, int(step))
        self.tensorboard.write(self.run.append_metrics(step, kind=kind, **metrics))
        if kind == "train" and metrics.get("total_steps") and time.monotonic() - self._progress_at > 2.0:
            # the queue's wait estimates read progress from status.json: keep it current, at most every 2 s
            self.progress(step, int(metrics["total_steps"]))

    def log(self, message: str) -> None:
        self.run.log(message)

    def progress(self, done: int, total: int, unit: str = "steps") -> None:
        """Coarse progress for the queue view and ETA (the live panel reads finer progress from metrics)."""
        self._progress_at = time.monotonic()
        self.run.update_status(progress={"done": int(done), "total": int(total), "unit": unit})

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def check_stop(self) -> None:
        if self._stop.is_set():
            raise JobCancelled()

    def stop_telemetry(self) -> None:
        """Stop sampling this process's memory (a job whose work runs in other processes samples them itself, and
        charts them: this process writes no more TensorBoard scalars)."""
        if self.sampler is not None:
            self.sampler.stop()
        self.tensorboard.close()

    def close_tracking(self) -> None:
        """Flush and close the run's TensorBoard event file (at the job's end)."""
        self.tensorboard.close()


JobFn = Callable[[JobContext, dict], "dict | None"]


@dataclass
class _Job:
    run: Run
    fn: JobFn
    config: dict
    resume: bool
    stop: threading.Event
    done: threading.Event


class JobManager:
    """Queue, workers and the registry of runs under `root` (usually `$LLMFS_HOME/runs`)."""

    def __init__(self, root: str | Path, slots: int = 1, telemetry_interval: float = 1.0,
                 isolation: str = "thread"):
        if slots < 1:
            raise ValueError(f"slots must be at least 1 (got {slots}).")
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {', '.join(ISOLATIONS)} (got {isolation!r}).")
        self.isolation = isolation
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.telemetry_interval = telemetry_interval
        self._kinds: dict[str, JobFn] = {}
        self._jobs: dict[str, _Job] = {}
        self._order: list[str] = []          # pending run ids in FIFO order, for queue positions
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.RLock()
        self._submit_lock = threading.Lock()
        self._unrecorded: dict[str, str] = {}  # run id -> failure the disk could not take (full disk)
        self._children: dict[str, Any] = {}     # run id -> its process (isolation="process")
        self._exiting = False
        # set before a shutdown cancels anything, so a child ends its run as interrupted (resumable), not cancelled
        self._exit_event = _process_context().Event() if isolation == "process" else None
        self._running = threading.Event()   # cleared: the queue is paused (running jobs go on, none starts)
        self._running.set()
        # policy(manager, kind, config, user, n_before): raise LimitError to refuse; n_before counts the jobs of
        # the same batch already accepted ahead of this one
        self.policy: Callable[["JobManager", str, dict, str | None, int], None] | None = None
        # added to the environment of each job's process (a workshop: http(s) reads to public addresses only)
        self.job_env: dict[str, str] = {}
        self.workshop_limits: Any = None   # the workshop's settings in force (`llmfs.workshop.install`)
        self.interrupted_at_start = mark_interrupted(self.root)
        self._workers = [threading.Thread(target=self._work, name=f"llmfs-worker-{i}", daemon=True)
                         for i in range(slots)]
        for w in self._workers:
            w.start()
        # On interpreter exit (server stopped, test session over) stop running jobs cleanly at their next step:
        # a worker thread still inside torch when Python tears down aborts the process.
        ref = weakref.ref(self)
        atexit.register(lambda: ref() is not None and ref()._stop_for_exit())

    # -- registration and submission --------------------------------------------------------------------------
    def register(self, kind: str, fn: JobFn) -> None:
        if self.isolation == "process" and "<locals>" in getattr(fn, "__qualname__", "<locals>"):
            raise ValueError(f"A job run in a child process must be a module-level function (got {fn!r} for "
                             f"{kind!r}); use isolation='thread' for local functions.")
        self._kinds[kind] = fn

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    def submit(self, kind: str, config: Any, owner: str | None = None, run_dir: str | Path | None = None,
               user: str | None = None) -> str:
        """Create the run directory (status pending) and queue the job. Returns the run id.

        `config` is a dataclass (validated when it was built) or a plain dict. `user` names who asked (workshops:
        each browser session's name); the `policy`, when set, may refuse the submission (raising `LimitError`).
        """
        return self._submit([(kind, config)], owner, user, run_dir)[0]

    def admit(self, kind: str, config: Any, user: str | None = None) -> None:
        """Raise what the `policy` would refuse in `submit` (a workshop's limits, a source this user may not read),
        queueing nothing. Call it before checks that open a job's sources, so a refused path is never opened."""
        if self.policy is not None:
            cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
            self.policy(self, kind, cfg, user, 0)

    def submit_batch(self, items: list[tuple[str, Any]], owner: str | None = None, user: str | None = None
                     ) -> list[str]:
        """Queue several jobs (kind, config) back to back, all or none: the policy sees the whole batch before any
        is queued (a comparison of three precisions is refused whole, not queued in part)."""
        return self._submit(items, owner, user, None)

    def _submit(self, items, owner, user, run_dir) -> list[str]:
        prepared = []
        for kind, config in items:
            if kind not in self._kinds:
                raise ValueError(f"Unknown job kind {kind!r}; known kinds: "
                                 f"{', '.join(sorted(self._kinds)) or 'none'}.")
            prepared.append((kind, dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)))
        ids = []
        with self._submit_lock:  # the policy's count of a user's queued jobs and the enqueue are one step
            if self.policy is not None:
                for i, (kind, cfg) in enumerate(prepared):
                    self.policy(self, kind, cfg, user, i)
            for kind, cfg in prepared:
                path = Path(run_dir) if run_dir else self.root / new_run_id(kind)
                run = Run.create(path, kind, cfg, owner=owner, user=user)
                run.log(f"Queued {kind} job" + (f" for {user}." if user else "."))
                self._enqueue(run, cfg, resume=False)
                ids.append(run.run_id)
        return ids

    def resume(self, run_id: str) -> str:
        """Queue an interrupted, failed or cancelled run again in its own folder; the job continues from its last
        checkpoint and appends to the same metrics."""
        run = self.get(run_id)
        if run.state not in FINAL_STATES or run.state == SUCCEEDED:
            raise ValueError(f"Run {run_id} is {run.state}; only interrupted, failed or cancelled runs can resume.")
        if run.kind not in self._kinds:
            raise ValueError(f"Run {run_id} is a {run.kind!r} job, which this server cannot run.")
        run.update_status(state=PENDING, finished=None, error=None, traceback=None, resumed=True)
        run.log("Queued again to resume from its last checkpoint.")
        self._enqueue(run, run.config(), resume=True)
        return run_id

    def _enqueue(self, run: Run, cfg: dict, resume: bool) -> None:
        stop = _process_context().Event() if self.isolation == "process" else threading.Event()
        job = _Job(run, self._kinds[run.kind], cfg, resume, stop, threading.Event())
        with self._lock:
            self._jobs[run.run_id] = job
            self._order.append(run.run_id)
        self._queue.put(run.run_id)

    # -- control ----------------------------------------------------------------------------------------------
    def cancel(self, run_id: str) -> bool:
        """Pending: removed from the queue at once. Running: stops at the job's next step. False if not active."""
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None or job.done.is_set():
                return False
            job.stop.set()
            if run_id in self._order:  # not started yet
                self._order.remove(run_id)
                job.run.mark_finished(CANCELLED, error="Cancelled before it started.")
                job.run.log("Cancelled while waiting in the queue.")
                job.done.set()
        return True

    def wait(self, run_id: str, timeout: float | None = None) -> str:
        job = self._jobs.get(run_id)
        if job is not None:
            job.done.wait(timeout)
        if run_id in self._unrecorded:
            return FAILED
        return self.get(run_id).state

    # -- the queue, for workshops ------------------------------------------------------------------------------
    def pause(self) -> None:
        """Start no new job until `unpause` (the running ones go on; submissions still queue)."""
        self._running.clear()

    def unpause(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def user_jobs(self, user: str | None) -> list[str]:
        """Run ids of `user`'s jobs that are pending or running in this manager."""
        with self._lock:
            return [rid for rid, j in self._jobs.items()
                    if not j.done.is_set() and j.run.status().get("user") == user]

    def queue_snapshot(self) -> list[dict]:
        """The running jobs, then the waiting ones in order: run_id, kind, user, owner, state, position (None for
        running), and `wait_s`, the estimated seconds before it starts (0 when running)."""
        with self._lock:
            running = [rid for rid in self.active()]
            waiting = list(self._order)
        rows, ahead = [], 0.0
        for rid in running:
            run = self.get(rid)
            status = run.status()
            remaining = estimate_remaining_s(run, status)
            ahead += remaining
            rows.append({"run_id": rid, "kind": run.kind, "user": status.get("user"), "owner": status.get("owner"),
                         "state": status.get("state"), "position": None, "wait_s": 0.0, "remaining_s": remaining})
        for pos, rid in enumerate(waiting, start=1):
            run = self.get(rid)
            status = run.status()
            rows.append({"run_id": rid, "kind": run.kind, "user": status.get("user"), "owner": status.get("owner"),
                         "state": status.get("state"), "position": pos, "wait_s": ahead,
                         "remaining_s": estimate_remaining_s(run, status)})
            ahead += rows[-1]["remaining_s"]
        return rows

    def queue_position(self, run_id: str) -> int | None:
        """1 = next to start; None when the run is not waiting."""
        with self._lock:
            return self._order.index(run_id) + 1 if run_id in self._order else None

    def pending(self) -> list[str]:
        with self._lock:
            return list(self._order)

    def active(self) -> list[str]:
        """Runs this manager is running right now."""
        with self._lock:
            return [rid for rid, j in self._jobs.items()
                    if rid not in self._order and not j.done.is_set()]

    # -- registry ---------------------------------------------------------------------------------------------
    def get(self, run_id: str) -> Run:
        job = self._jobs.get(run_id)
        run = job.run if job else Run(self.root / run_id)
        if not run.exists():
            raise KeyError(f"No run {run_id!r} under {self.root}.")
        return run

    def list_runs(self) -> list[Run]:
        return list_runs(self.root)

    def delete(self, run_id: str) -> None:
        delete_run(self.get(run_id))
        with self._lock:
            self._jobs.pop(run_id, None)

    def shutdown(self, cancel_running: bool = True, timeout: float = 30.0) -> None:
        """Cancel what is queued, stop what runs (at its next step), end the workers."""
        for rid in self.pending():
            self.cancel(rid)
        if cancel_running:
            for rid in self.active():
                self.cancel(rid)
        for _ in self._workers:
            self._queue.put(None)
        for w in self._workers:
            w.join(timeout)

    def _stop_for_exit(self, timeout: float = 20.0) -> None:
        self._exiting = True
        if self._exit_event is not None:
            self._exit_event.set()
        self.shutdown(cancel_running=True, timeout=timeout)

    # -- the worker -------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            run_id = self._queue.get()
            if run_id is None:
                return
            while not self._running.wait(0.5):  # paused: hold the next job (its place is kept) until unpaused
                if self._exiting:
                    break
            with self._lock:
                if run_id not in self._order:
                    continue  # cancelled while pending
                self._order.remove(run_id)
                job = self._jobs[run_id]
            self._execute(job)

    def _execute(self, job: _Job) -> None:
        try:
            if self.isolation == "process":
                unrecorded = self._execute_in_child(job)
            else:
                unrecorded = execute_job(job.fn, job.run, job.config, job.resume, job.stop, lambda: self._exiting,
                                         self.telemetry_interval)
            if unrecorded:
                self._unrecorded[job.run.run_id] = unrecorded
        finally:
            job.done.set()

    def _execute_in_child(self, job: _Job) -> str | None:
        """Run the job in a child process and wait for it; what the child could not record, record here."""
        run = job.run
        mp = _process_context()
        receive, send = mp.Pipe(duplex=False)
        # the server's pid owns the run (status.json): a server killed mid-run leaves it orphaned, so the next
        # start marks it interrupted; the child watches that pid and ends itself when the server is gone
        run.mark_running()
        env = {**os.environ, **self.job_env}
        child = mp.Process(target=_child_main, name=f"llmfs-job-{run.run_id}", daemon=True,
                           args=(job.fn, str(run.path), job.config, job.resume, job.stop, self._exit_event,
                                 self.telemetry_interval, os.getpid(), env, os.getcwd(), send))
        try:
            child.start()
        except Exception as e:  # noqa: BLE001 - e.g. no memory to fork: the job fails, the server goes on
            send.close()
            _record_failure(run, e, traceback.format_exc(), 0)
            return None
        send.close()
        with self._lock:
            self._children[run.run_id] = child
        try:
            child.join()
        finally:
            with self._lock:
                self._children.pop(run.run_id, None)
        outcome = {}
        try:
            if receive.poll(0):
                outcome = receive.recv()
        except (EOFError, OSError):
            pass
        receive.close()
        if run.state not in FINAL_STATES:  # the child died before it could say how the job ended
            _record_child_death(run, child.exitcode, job.stop.is_set(), self._exiting)
            tracking.export_to_mlflow(run)  # what the child could not send (a no-op unless MLflow is configured)
        return outcome.get("unrecorded")

    def kill(self, run_id: str) -> bool:
        """End a running job's process at once (SIGKILL), for a job that does not reach its next step (stuck in a
        long forward, a hung data source). Only for isolation="process"; the run ends cancelled ("stopped at once"),
        its files kept. False when `run_id` has no process here."""
        with self._lock:
            child = self._children.get(run_id)
            job = self._jobs.get(run_id)
        if child is None or job is None:
            return False
        job.stop.set()
        child.kill()
        return True


ISOLATIONS = ("thread", "process")
STOP_FILE = "STOP"   # a file in the run directory: every process of a run stops at its next step when it appears


class StopFile:
    """A stop flag every rank can see: a file in the run directory (the launcher or a user creates it)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / STOP_FILE

    def is_set(self) -> bool:
        return self.path.exists()

    def set(self) -> None:
        self.path.touch()

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class RankContext(JobContext):
    """A JobContext for ranks other than 0: they train, and report nothing (rank 0 speaks for the run)."""

    def emit(self, step, kind="train", **metrics):
        self.last_step = max(self.last_step, int(step))

    def log(self, message):
        pass

    def progress(self, done, total, unit="steps"):
        pass


def execute_job(fn: JobFn, run: Run, config: dict, resume: bool, stop, exiting: Callable[[], bool],
                telemetry_interval: float, mark_running: bool = True) -> str | None:
    """Run one job to its end in the calling thread and record how it ended in its run directory.

    Returns the failure summary the disk refused to record (a full disk), else None.
    """
    ctx = JobContext(run, stop, resume=resume)
    if mark_running:
        run.mark_running()
    run.log(f"Started {run.kind} job" + (" (resuming)." if resume else "."))

    def sample(snap: dict) -> None:
        reading = snap.get("cuda_peak_allocated_bytes") or snap.get("process_rss_bytes") or 0
        ctx.peak_memory_bytes = max(ctx.peak_memory_bytes, int(reading))
        ctx.emit(ctx.last_step, kind="telemetry", **snap)

    sampler = ctx.sampler = telemetry.Sampler(sample, telemetry_interval).start()
    try:
        result = fn(ctx, config) or {}
        sampler.stop()
        state = CANCELLED if stop.is_set() else SUCCEEDED
        if result:
            atomic_write_json(run.path / "results.json", result)
            ctx.tensorboard.write_result(result, ctx.last_step)  # an evaluation's final scores
        if state == CANCELLED:
            _finish_stopped(run, exiting(), result=result)
        else:
            run.mark_finished(state, result=result)
            run.log("Finished.")
    except JobCancelled:
        sampler.stop()
        _finish_stopped(run, exiting())
    except BaseException as e:  # noqa: BLE001 - a job's failure must never take the worker (or server) down
        sampler.stop()
        tb = traceback.format_exc()
        _release_accelerator_memory()  # first: an out-of-memory job's tensors go before anything else runs
        return _record_failure(run, e, tb, ctx.peak_memory_bytes)
    finally:
        ctx.close_tracking()
        _release_accelerator_memory()
        tracking.export_to_mlflow(run)  # once its status is written, whatever its state (a no-op unless configured)
    return None


def _record_failure(run: Run, e: BaseException, tb: str, peak_memory_bytes: int) -> str | None:
    summary = summarize_exception(e)
    try:
        run.log(f"Failed: {summary}")
        run.log(tb)
    except OSError:
        pass  # a full disk: the status below is small and may still fit; the traceback is in it
    try:
        run.mark_finished(FAILED, error=summary, traceback=tb, error_type=type(e).__name__,
                          error_kind=error_kind(e), peak_memory_bytes=peak_memory_bytes or None)
    except OSError:
        return summary  # the disk refused even that; the manager says so while it lives
    return None


def _finish_stopped(run: Run, exiting: bool, **fields) -> None:
    """A stopped job: cancelled by a user, or interrupted (resumable) because the server is shutting down."""
    if exiting:
        run.mark_finished(INTERRUPTED, error="The server was stopped while this run was going. Its metrics and "
                                             "last checkpoint are kept; resume it to continue.", **fields)
        run.log("Stopped because the server is shutting down.")
    else:
        run.mark_finished(CANCELLED, **fields)
        run.log("Stopped at the user's request.")


def _record_child_death(run: Run, exitcode: int | None, stopped: bool, exiting: bool) -> None:
    """The job's process ended without recording an outcome: killed by a signal (the kernel's out-of-memory killer
    sends SIGKILL), or the interpreter crashed."""
    peak = max((int(r.get("cuda_peak_allocated_bytes") or r.get("process_rss_bytes") or 0)
                for r in _safe_read(run, "telemetry")), default=0)
    if stopped and exiting:
        _finish_stopped(run, True)
        return
    if stopped:
        run.mark_finished(CANCELLED, error="Stopped at once (its process was ended).")
        run.log("Its process was ended at the user's request.")
        return
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        if -exitcode == signal.SIGKILL:
            error = (f"The job's process was killed ({name}), most often by the system when the machine ran out of "
                     "memory. Try a smaller batch size or sequence length, bf16 precision, LoRA instead of full "
                     "fine-tuning, or 4-bit base weights.")
            kind = "out_of_memory"
        else:
            error = f"The job's process ended abruptly ({name}); its log and metrics up to then are kept."
            kind = None
    else:
        error = (f"The job's process exited (code {exitcode}) without saying how the job ended; its log and "
                 "metrics up to then are kept.")
        kind = None
    run.log(f"Failed: {error}")
    run.mark_finished(FAILED, error=error, error_type="ProcessDied", error_kind=kind, exitcode=exitcode,
                      peak_memory_bytes=peak or None)


def _safe_read(run: Run, kind: str) -> list[dict]:
    try:
        return run.read_metrics(kind)
    except OSError:
        return []


def _child_main(fn: JobFn, run_path: str, config: dict, resume: bool, stop, exiting, telemetry_interval: float,
                server_pid: int, env: dict, cwd: str, send) -> None:
    """A job's process: the server's environment and folder, a watch on the server, then the job itself."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    _yield_to_the_pages()
    threading.Thread(target=_watch_server, args=(server_pid,), name="llmfs-server-watch", daemon=True).start()
    unrecorded = execute_job(fn, Run(run_path), config, resume, stop, exiting.is_set, telemetry_interval,
                             mark_running=False)
    try:
        send.send({"unrecorded": unrecorded})
    finally:
        send.close()


def _yield_to_the_pages() -> None:
    """On a shared server the pages come first: a job runs at a lower CPU priority (nice `LLMFS_JOB_NICE`, 10 by
    default) and leaves one core to the server (`LLMFS_JOB_THREADS`, default cores - 1). Two threads on two busy cores
    made every step wait at OpenMP's barriers for a descheduled thread: 20x slower than one (bench/ui_response.py)."""
    try:
        os.nice(int(os.environ.get("LLMFS_JOB_NICE", "10")))
    except (OSError, ValueError):
        pass
    cores = os.cpu_count() or 1
    threads = os.environ.get("LLMFS_JOB_THREADS")
    try:
        import torch
        torch.set_num_threads(int(threads) if threads else max(1, cores - 1))
    except (ImportError, ValueError, RuntimeError):
        pass


def _watch_server(server_pid: int, every_s: float = 0.5) -> None:
    """End this job's process when the server that started it is gone (killed): an orphan must not go on writing
    to a run the next server marks interrupted."""
    while True:
        time.sleep(every_s)
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            os._exit(70)
        except PermissionError:
            pass  # alive, owned by someone else (cannot happen for our parent; harmless)


_MP_CONTEXT = None
_MP_LOCK = threading.Lock()


def _process_context():
    """The multiprocessing context job processes come from: a fork server that preloads torch and our recipes
    (forking a server full of threads is unsafe; spawning re-imports torch for every job, seconds each)."""
    global _MP_CONTEXT
    with _MP_LOCK:
        if _MP_CONTEXT is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["llmfs.runner"])
            _MP_CONTEXT = ctx
        return _MP_CONTEXT


SECONDS_PER_JOB_GUESS = 60.0  # a job kind never run here before


def estimate_remaining_s(run: Run, status: dict | None = None) -> float:
    """Seconds `run` still needs: from its own pace while it runs (elapsed / done x left), else from the pace of
    recent finished runs of its kind (seconds per step x its steps), else a flat guess."""
    status = status or run.status()
    progress = status.get("progress") or {}
    done, total = progress.get("done") or 0, progress.get("total") or 0
    if status.get("state") == "running" and status.get("started") and done and total:
        elapsed = time.time() - status["started"]
        return max(0.0, elapsed / done * (total - done))
    steps = (run.config() or {}).get("steps")
    per_step = _recent_seconds_per_step(run.path.parent, run.kind)
    if per_step is not None and steps:
        return per_step * steps
    return SECONDS_PER_JOB_GUESS


_PACE_CACHE: dict[tuple[str, str], tuple[float, float | None]] = {}
_PACE_TTL_S = 15.0  # every browser polls the queue each second; the run folders are read at most this often


def _recent_seconds_per_step(root: Path, kind: str, n: int = 5) -> float | None:
    """Median wall seconds per step (set-up included) of the last `n` succeeded runs of `kind` under `root`."""
    key = (str(root), kind)
    cached = _PACE_CACHE.get(key)
    if cached is not None and time.monotonic() - cached[0] < _PACE_TTL_S:
        return cached[1]
    paces = []
    for run in list_runs(root):
        status = run.status()
        progress = status.get("progress") or {}
        if (run.kind == kind and status.get("state") == SUCCEEDED and status.get("started")
                and status.get("finished") and progress.get("done")):
            paces.append((status["finished"] - status["started"]) / progress["done"])
            if len(paces) >= n:
                break
    pace = sorted(paces)[len(paces) // 2] if paces else None
    _PACE_CACHE[key] = (time.monotonic(), pace)
    return pace


def error_kind(e: BaseException) -> str | None:
    """A machine-readable class of failure the UI offers remedies for: out_of_memory, disk_full, diverged."""
    if getattr(e, "error_kind", None):  # a failure that already knows its class (a distributed run's rank 0)
        return e.error_kind
    if isinstance(e, MemoryError) or "outofmemory" in type(e).__name__.lower() or "out of memory" in str(e).lower():
        return "out_of_memory"
    if (isinstance(e, OSError) and getattr(e, "errno", None) == errno.ENOSPC) or "no space left" in str(e).lower():
        return "disk_full"
    if isinstance(e, FloatingPointError):
        return "diverged"
    return None


def summarize_exception(e: BaseException) -> str:
    """One or two plain sentences a workshop participant can act on."""
    text = str(e).strip() or type(e).__name__
    if getattr(e, "plain_message", False):  # already written for the participant
        return text
    lowered = text.lower()
    if isinstance(e, MemoryError) or "out of memory" in lowered or "outofmemory" in type(e).__name__.lower():
        return ("The job ran out of memory. Try a smaller batch size or sequence length, bf16 precision, "
                "LoRA instead of full fine-tuning, or 4-bit base weights. (" + text.splitlines()[0][:200] + ")")
    if isinstance(e, OSError) and getattr(e, "errno", None) == errno.ENOSPC:
        return "The disk is full: free some space (delete old runs on the Runs page) and try again."
    if isinstance(e, KeyError):
        return f"Missing key: {text}"
    if isinstance(e, (ValueError, OSError)):
        return text.splitlines()[0]
    return f"{type(e).__name__}: {text.splitlines()[0][:300]}"


def _release_accelerator_memory() -> None:
    """Give cached CUDA blocks back so the next job (or another process) sees the memory as free."""
    try:
        import gc

        import torch
        gc.collect()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception:
        pass
