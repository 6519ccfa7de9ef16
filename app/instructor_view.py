"""The instructor's page: behind the instructor password, the whole server at a glance and the few levers a workshop
needs: cancel anyone's run, pause and resume the queue, the class as a whole (leaderboard, everyone's curves, class
presets: app/class_view.py), see (and reload) the limits in force, free the memory that models cached for display
hold.

Unlocking lasts for this browser session only (a refresh asks again) and ends when the password changes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import importlib
import time

import pandas as pd
import streamlit as st

from llmfs import telemetry, workshop
from llmfs.config import ConfigError, field_info
from llmfs.runs import PENDING, RUNNING

from . import charts, class_view, identity, state, tables
from .text import md_escape

UNLOCKED = identity.UNLOCKED
FREED = "instructor.freed"
POLL_S = 3.0
WRONG_PASSWORD_DELAY_S = 1.0  # slows down guessing; only the guesser's own session waits
# The process-wide caches that hold models (st.cache_resource functions, "module:function"). Never the job
# manager's (app.state._manager): clearing it would orphan the queue.
MODEL_CACHES = ("app.l12_view:loaded", "app.adapter_view:loaded")

HOW_TO_SET = """No instructor password is set on this server, so this view stays locked. Set one, then restart the app:

- an environment variable: `LLMFS_INSTRUCTOR_PASSWORD=... streamlit run streamlit_app.py`, or
- in `.streamlit/secrets.toml` next to `streamlit_app.py`: `instructor_password = "..."`

Participants never need it: it only opens this page."""


# -- the gate -----------------------------------------------------------------------------------------------------
def gate() -> bool:
    """True when this session has unlocked the view; else draws why not (no password set) or the password form."""
    expected = workshop.instructor_password(identity._secrets())
    if expected is None:
        st.info(HOW_TO_SET, icon=":material/lock:")
        return False
    token = identity.instructor_token(expected)
    if st.session_state.get(UNLOCKED) == token:
        return True
    with st.form("instructor.login", clear_on_submit=True):
        given = st.text_input("Instructor password", type="password", key="instructor.password",
                              persist_state="session")
        if st.form_submit_button("Unlock", type="primary", icon=":material/lock_open:"):
            if workshop.password_ok(given, expected):
                st.session_state[UNLOCKED] = token
                st.rerun()
            time.sleep(WRONG_PASSWORD_DELAY_S)
            st.error("Wrong password.", icon=":material/error:")
    st.caption("Unlocks this view for this browser session only.")
    return False


def lock() -> None:
    st.session_state.pop(UNLOCKED, None)


# -- the view -----------------------------------------------------------------------------------------------------
def dashboard() -> None:
    st.button("Lock this view", icon=":material/lock:", on_click=lock)
    st.fragment(run_every=POLL_S)(_live)()
    class_view.class_section()
    limits_section()
    memory_section()


def _live() -> None:
    """The queue controls, what is waiting or running (with Cancel), and every run: refreshed every few seconds."""
    mgr = state.manager()
    st.subheader(":material/queue: Queue")
    paused = mgr.paused
    row = st.container(horizontal=True, vertical_alignment="center")
    with row:
        # Callbacks: they act before the view is drawn, so it shows the new state (a click reruns the fragment).
        if paused:
            st.badge("Paused: no new job starts", color="orange", icon=":material/pause_circle:")
            st.button("Resume the queue", type="primary", icon=":material/play_arrow:", key="instructor.resume",
                      on_click=mgr.unpause)
        else:
            st.badge("Running: jobs start in turn", color="green", icon=":material/play_circle:")
            st.button("Pause the queue", icon=":material/pause:", key="instructor.pause", on_click=mgr.pause,
                      help="Running jobs go on; waiting ones keep their place and new ones still queue, but none "
                           "starts until you resume (before a demo that needs the GPU, or to talk).")
    runs = mgr.list_runs()
    active = [r for r in runs if r.state in (PENDING, RUNNING)]
    if not active:
        st.caption("Nothing is waiting or running.")
    position = {rid: i for i, rid in enumerate(mgr.pending(), start=1)}
    for run in sorted(active, key=lambda r: position.get(r.run_id, 0)):
        _active_row(mgr, run, position.get(run.run_id))
    st.subheader(":material/history: All runs")
    if runs:
        st.dataframe(runs_table(runs), hide_index=True, placeholder="–", column_config={
            "started": st.column_config.DatetimeColumn("Started", format="D MMM, HH:mm:ss"),
            "created": st.column_config.DatetimeColumn("Queued", format="D MMM, HH:mm:ss")})
    else:
        st.caption("No runs on this server yet.")


def _active_row(mgr, run, position: int | None) -> None:
    status = run.status()
    rid = run.run_id
    with st.container(border=True, horizontal=True, vertical_alignment="center"):
        where = "running" if status.get("state") == RUNNING else f"#{position} waiting" if position else "waiting"
        name = f" · {md_escape(run.name)}" if run.name else ""
        st.markdown(f"**{md_escape(status.get('user') or '–')}**{name} · {run.kind} · {where} · "
                    f"{progress_text(run, status)} · "
                    f"from {state.owner_label(status.get('owner'))} · `{rid}`")
        cancelling = st.session_state.get(f"instructor.cancelled:{rid}")
        st.button("Cancelling…" if cancelling else "Cancel", key=f"instructor.cancel:{rid}",
                  icon=":material/cancel:", disabled=cancelling is True, on_click=_cancel, args=(mgr, rid),
                  help="A waiting run leaves the queue at once; a running one stops after its current step.")
        if cancelling is True and status.get("state") == RUNNING and getattr(mgr, "isolation", "") == "process":
            st.button("End now", key=f"instructor.kill:{rid}", icon=":material/dangerous:", on_click=mgr.kill,
                      args=(rid,), help="For a run that does not stop by itself (a step that never ends): ends its "
                                        "process at once. Its log, metrics and last checkpoint are kept.")
    if cancelling == "unmanaged":
        st.warning(f"{rid} is not managed by this server (the command line started it?): stop it there.",
                   icon=":material/warning:")


def _cancel(mgr, run_id: str) -> None:
    st.session_state[f"instructor.cancelled:{run_id}"] = True if mgr.cancel(run_id) else "unmanaged"


def progress_text(run, status: dict) -> str:
    return tables.progress_text(run, status)


def runs_table(runs) -> pd.DataFrame:
    rows = []
    for run in runs:
        status = run.status()
        rows.append({"user": status.get("user"), "kind": run.kind,
                     "state": status.get("state"), "progress": progress_text(run, status),
                     "started from": state.owner_label(status.get("owner")),
                     "created": _when(status.get("created")), "started": _when(status.get("started")),
                     "run": run.run_id, "name": run.name or None, "error": status.get("error")})
    return pd.DataFrame(rows, columns=["user", "kind", "state", "progress", "started from", "created", "started",
                                       "run", "name", "error"])


def _when(t: float | None):
    return dt.datetime.fromtimestamp(t) if t else None


# -- limits -------------------------------------------------------------------------------------------------------
def limits_section() -> None:
    st.subheader(":material/rule: Limits")
    path = workshop.limits_path()
    try:
        limits = workshop.load_limits()
    except ConfigError as e:
        st.error(f"The limits file is refused, so **no limits apply** until it is fixed: {md_escape(e)}",
                 icon=":material/error:")
        limits = None
    if limits is not None:
        info = field_info(workshop.WorkshopLimits)
        rows = [{"setting": f.name, "value": limit_text(getattr(limits, f.name)), "what it limits":
                 info[f.name].get("help")} for f in dataclasses.fields(limits)]
        st.dataframe(pd.DataFrame(rows), hide_index=True)
        in_force = getattr(state.manager(), "workshop_limits", None)
        if in_force is not None and in_force != limits:
            st.warning("The file differs from the settings **in force** (changed since the app started?): apply "
                       "it below.", icon=":material/warning:")
    where = f"`{path}`" + ("" if path.is_file() else " (it does not exist yet: no limits apply)")
    st.markdown(f"**To change them**, edit {where} (TOML; `$LLMFS_WORKSHOP_CONFIG` names another file), then "
                "apply it here: no restart needed. Example:")
    st.code("max_queued_per_user = 2      # jobs (waiting + running) one participant may have at once\n"
            "max_steps = 500              # training steps per run\n"
            "max_params = 200_000_000     # model size a participant may train or evaluate\n"
            "max_tokens_per_step = 16384  # batch size x sequence length x accumulation\n"
            "max_upload_mb = 50           # size of one uploaded file\n"
            "max_processes = 1            # training processes (GPUs) one run may use\n"
            "allow_hub = true             # hub models and datasets (needs a network)\n"
            "allow_urls = false           # http(s) / s3 / gs data addresses (never this server's network)\n"
            'shared_paths = ["/data/class"]  # folders every participant may read\n'
            'share_runs = "figures"       # others\' runs: "figures" (curves, scores) or "all" (also texts, '
            "downloads)", language="toml")
    if st.button("Apply the limits file now", icon=":material/refresh:", key="instructor.reload_limits"):
        try:
            applied = workshop.install(state.manager(), shared=True)  # this view exists only in a workshop
        except ConfigError as e:
            st.error(f"Not applied: {md_escape(e)}", icon=":material/error:")
        else:
            st.success("Applied: new submissions are checked against these limits." if applied.active else
                       "Applied: the file sets no limits, so none apply.", icon=":material/check_circle:")


def limit_text(value) -> str:
    """A setting's value in the limits table: numbers with thousands separators, true / false and lists as the
    file writes them."""
    if value is None:
        return "no limit"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"{value:,}"
    if isinstance(value, (tuple, list)):
        return ", ".join(value) or "none"
    return str(value)


# -- memory -------------------------------------------------------------------------------------------------------
def free_memory() -> list[str]:
    """Drop the models the app caches for display (every session reloads one when it next needs it), collect
    garbage and give CUDA's cached blocks back. Returns the caches cleared. A running job's memory is its own."""
    cleared = []
    for spec in MODEL_CACHES:
        module, name = spec.split(":")
        try:
            getattr(importlib.import_module(module), name).clear()
            cleared.append(spec)
        except Exception:  # a lesson module that failed to import holds nothing
            continue
    gc.collect()
    try:
        import torch
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception:
        pass
    return cleared


def memory_section() -> None:
    st.subheader(":material/memory: Memory")
    gpu = bool(state.machine().get("gpus") or state.machine().get("cuda_available"))
    label = "Free GPU memory" if gpu else "Free memory"
    st.markdown("The lesson pages keep the models they show (L12's pretrained model, L15's base with adapters) "
                f"loaded, shared by everyone. **{label}** drops them: the next page that needs one loads it "
                "again. A running job's memory belongs to its own process: cancel the job (or end it) and all of it "
                "goes back when that process ends.")
    if st.button(label, icon=":material/memory:", key="instructor.free"):
        before = telemetry.snapshot()
        cleared = free_memory()
        after = telemetry.snapshot()
        st.session_state[FREED] = {"before": before, "after": after, "cleared": cleared}
    freed = st.session_state.get(FREED)
    if not freed:
        return
    before, after = freed["before"], freed["after"]
    gpu = before.get("gpu_memory_used_bytes") is not None and after.get("gpu_memory_used_bytes") is not None
    key, label = ("gpu_memory_used_bytes", "GPU memory used (NVML, all processes)") if gpu else \
        ("process_rss_bytes", "App process memory (RSS)")
    if not gpu:
        st.info("This machine has no GPU (or its driver cannot be read): showing the app process's memory instead.",
                icon=":material/info:")
    a, b = st.columns(2)
    a.metric(f"Before · {label}", charts.fmt_bytes(before.get(key)))
    delta = (after.get(key) or 0) - (before.get(key) or 0)
    b.metric(f"After · {label}", charts.fmt_bytes(after.get(key)),
             delta=f"{'-' if delta < 0 else '+'}{charts.fmt_bytes(abs(delta))}", delta_color="inverse")
    st.caption(f"Cleared {len(freed['cleared'])} model cache(s). Freed memory is not always given back to the "
               "system at once (allocators keep some for reuse).")
