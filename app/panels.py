"""The live run panel every page uses, and the side-by-side comparison of runs.

A panel reads only the run directory (status.json, the new lines of metrics.jsonl, log.txt), so it shows the same
thing after a refresh, in a second tab, or for a run the CLI started. While the run waits or runs, the panel is an
`st.fragment` that re-runs about every second; when the run ends it asks for one full rerun, which draws it again
as a still fragment (run_every=None), so finished runs cost nothing.
"""

from __future__ import annotations

import statistics
import threading
import time

import streamlit as st

from llmfs.bundles import is_imported
from llmfs.oom import out_of_memory, retry_options  # noqa: F401 (retry_options: the panel's API)
from llmfs.runs import (
    CANCELLED,
    FAILED,
    FINAL_STATES,
    INTERRUPTED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    Run,
)

from . import charts, forms, identity, live, reproduce_view, state, tables
from .text import md_escape, rough_duration

POLL_S = 1.0
PLOT_CONFIG = {"displaylogo": False}
BADGES = {PENDING: ("Waiting", "gray", ":material/hourglass_empty:"),
          RUNNING: ("Running", "blue", ":material/autorenew:"),
          SUCCEEDED: ("Finished", "green", ":material/check_circle:"),
          FAILED: ("Failed", "red", ":material/error:"),
          CANCELLED: ("Cancelled", "orange", ":material/stop_circle:"),
          INTERRUPTED: ("Interrupted", "violet", ":material/pause_circle:")}
HELP = {"loss": "How surprised the model is by the next token (cross-entropy). Lower is better.",
        "eval": "The same loss on held-out text the model never trains on: the honest measure. If it rises while "
                "the training loss falls, the model is memorising.",
        "tps": "Training tokens processed per second (median of the last 20 steps)."}


def train_panel(run_id: str, *, poll_s: float = POLL_S) -> None:
    """Status, progress with ETA, live loss / memory / throughput charts, logs and a Stop button for one training
    run. (Pipelines and evaluations have panels of their own; `app.run_panels` picks one by the run's kind.)"""
    live_fragment(run_id, _panel_body, poll_s=poll_s)


def live_fragment(run_id: str, body, *, poll_s: float = POLL_S) -> None:
    """Draw `body(run, was_live)` in a fragment that re-runs every `poll_s` seconds while the run waits or runs,
    and only once when it has ended (every panel kind: training, pipeline, evaluation)."""
    try:
        live = state.jobs().get(run_id).state not in FINAL_STATES
    except KeyError:
        st.warning(f"Run {run_id} no longer exists (it was deleted).")
        return
    st.fragment(run_every=poll_s if live else None)(_guarded)(run_id, live, body)


def _guarded(run_id: str, was_live: bool, body) -> None:
    """Each poll reads the run afresh: it may have been deleted (Runs page, another tab) since the last one."""
    try:
        run = state.jobs().get(run_id)
    except KeyError:
        st.warning(f"Run {run_id} no longer exists (it was deleted).")
        return
    body(run, was_live)


def latest_run_panel(key: str, start: str = "Start training") -> None:
    """The panel of the training run page `key` started last, or a word on what will appear here (`start` names
    the page's start button)."""
    run_id = state.latest(key)
    if run_id is None:
        st.info(f"No run yet. Press **{start}**: the loss, memory and speed charts appear here, live, from the "
                "first step.", icon=":material/monitoring:")
        return
    train_panel(run_id)
    reproduce_view.reproduce_section(state.jobs().get(run_id))


def stage(title: str, why: str):
    """A lesson step: why it matters on the left; the step's controls go in the column returned (`with stage(...)`)."""
    st.subheader(title)
    left, right = st.columns([2, 3], gap="large")
    left.markdown(why)
    return right


def default_notice() -> None:
    """Say, before anyone waits for it, that the first run also builds the built-in model."""
    if not state.default_ready():
        st.info("llmfs-tiny is not built on this machine yet: the first run builds it (corpus, tokenizer and a "
                "short pretraining), which takes **about 5 minutes extra**, once.", icon=":material/construction:")


def records_of(run_id: str) -> list[dict]:
    """All metrics records of a run, read once per poll for every session watching it (`app.live`); read-only."""
    return live.records(_metrics_path(run_id))


def _metrics_path(run_id: str):
    return state.jobs().root / run_id / "metrics.jsonl"


def _chart(run_id: str, name: str, build, *args):
    """A chart (or other read-only value) of one run's records, built once per poll for every session watching it."""
    return live.shared(_metrics_path(run_id), name, build, *args)


def _panel_body(run, was_live: bool) -> None:
    run_id = run.run_id
    status = run.status()
    run_state = status.get("state", INTERRUPTED)
    if was_live and run_state in FINAL_STATES:
        st.rerun(scope="app")  # redraw once as a still panel: polling stops
    train = _chart(run_id, "train", _train_records)  # live.shared reads the new lines first
    _header(run, status, run_state, train)
    _progress(run_state, status, train, run.config())
    _processes(_chart(run_id, "processes", _processes_of))
    if not train:  # nothing to chart yet (or ever, for a run that failed while loading)
        if run_state in (PENDING, RUNNING):
            st.caption("The charts appear here as soon as the first training step is done.")
        _log(run)
        return
    _numbers(_chart(run_id, "numbers", _figures_of), train, run_state, status.get("result") or {})
    with st.container(border=True):
        st.plotly_chart(_chart(run_id, "loss", charts.loss_figure, _total(train, run.config())),
                        key=f"loss:{run_id}", config={"displaylogo": False})
    left, right = st.columns(2)
    with left, st.container(border=True):
        st.plotly_chart(_chart(run_id, "memory", charts.memory_figure), key=f"memory:{run_id}",
                        config={"displaylogo": False})
    with right, st.container(border=True):
        st.plotly_chart(_chart(run_id, "tps", charts.throughput_figure), key=f"tps:{run_id}",
                        config={"displaylogo": False})
    _log(run)


def _log(run) -> None:
    """The log's tail, for those who may read the run's texts (a log quotes data and paths); else one line saying
    whose it is (in a workshop, the panel of someone else's run)."""
    if not identity.may_see_texts(run.status().get("user")):
        withheld()
        return
    with st.expander("Log (last 30 lines)"):
        st.code(identity.shown(run.log_tail(30)) or "(empty)", language=None)


def withheld(text: str = identity.WITHHELD) -> None:
    """Where someone else's texts would be: say, in one plain line, who may read them."""
    st.caption(f":material/lock: {text}")


def _header(run, status: dict, run_state: str, train: list[dict]) -> None:
    jobs = state.jobs()
    label, color, icon = BADGES.get(run_state, (run_state, "gray", None))
    if run_state == PENDING:
        pos = jobs.queue_position(run.run_id)
        ahead = (pos - 1 if pos else 0) + len(jobs.active())
        label += f" · {ahead} run{'s' if ahead > 1 else ''} ahead" if ahead else \
            " · queue paused" if jobs.paused else " · starting"
    elif run_state == RUNNING and not train:
        label = "Preparing: loading the model and data"
    row = st.container(horizontal=True, vertical_alignment="center")
    with row:
        st.badge(label, color=color, icon=icon)
        if not _may_control(status):
            if run_state in (PENDING, RUNNING):
                st.caption("Only the person who started it (or the instructor) can stop it.")
        elif run_state in (PENDING, RUNNING):
            stopping = st.session_state.get(f"stopping:{run.run_id}")
            if st.button("Stopping…" if stopping else "Stop", key=f"stop:{run.run_id}", icon=":material/stop:",
                         disabled=bool(stopping), help="Stops after the current step; the last checkpoint is kept "
                                                       "so the run can resume later."):
                if jobs.cancel(run.run_id):
                    st.session_state[f"stopping:{run.run_id}"] = True
                    st.rerun(scope="fragment")
                else:
                    st.warning("This run is not managed by this app (the command line started it?): stop it there.")
        elif is_imported(status) and run_state != SUCCEEDED:
            # its checkpoints stayed on the machine it ran on: resuming here would silently start over
            st.caption("Imported from a bundle without its checkpoints: to run it again here, use *Repeat this run* "
                       "below.")
        elif run_state in (CANCELLED, INTERRUPTED) or (run_state == FAILED and train):
            step = _checkpoint_step(run)
            if st.button("Resume", key=f"resume:{run.run_id}", icon=":material/play_arrow:",
                         help=f"Queue it again: it continues from its checkpoint at step {step}, adding to the same "
                              "charts." if step else "Queue it again: no checkpoint was saved, so it starts over "
                                                     "from step 1 in the same folder."):
                try:
                    jobs.resume(run.run_id)
                except ValueError as e:
                    st.error(md_escape(e), icon=":material/error:")
                else:
                    st.session_state.pop(f"stopping:{run.run_id}", None)
                    st.rerun(scope="app")
        user = status.get("user")
        by = f" by **{md_escape(user)}**" if user and not identity.is_mine(user) else ""
        name = f"**{md_escape(run.name)}** · " if run.name else ""
        st.caption(f"{name}Run `{run.run_id}` · started from {md_escape(state.owner_label(status.get('owner')))}{by}"
                   + imported_words(status))
    if run_state == FAILED:
        st.error(md_escape(identity.shown(status.get("error") or "The run failed.")), icon=":material/error:")
        if run.kind == "train" and out_of_memory(status):
            oom_retry(run, status)
        if status.get("traceback") and identity.shows_paths():  # in a workshop, for the instructor only
            with st.expander("Technical details (traceback)"):
                st.code(status["traceback"], language=None)
    elif run_state == INTERRUPTED and status.get("error"):
        st.warning(md_escape(identity.shown(status["error"])), icon=":material/pause_circle:")
    elif run_state == PENDING:
        st.caption("Runs take turns on this machine's one training slot (two at once would only slow both "
                   "down); this one starts when the runs ahead of it finish."
                   + (" **The instructor has paused the queue**: it starts after they resume it."
                      if jobs.paused else ""))
    elif run_state == RUNNING and not train and not state.default_ready():
        st.info("The first run on this machine builds llmfs-tiny and its corpus first: about 5 minutes more.",
                icon=":material/construction:")


def imported_words(status: dict) -> str:
    """` · imported on 4 Dec from host (run X there)` for a run imported from a bundle, else ""."""
    if not is_imported(status):
        return ""
    imported = status["imported"]
    when = time.strftime("%d %b %H:%M", time.localtime(imported.get("imported") or 0))
    host = f" from {md_escape(imported['from_host'])}" if imported.get("from_host") else ""
    return f" · **imported** {when}{host}"


def _may_control(status: dict) -> bool:
    """Stop and Resume: anyone in a single user's lab; in a workshop, only on your own runs (the instructor view
    can cancel any)."""
    return identity.is_mine(status.get("user")) or not status.get("user") or not identity.workshop_mode()


def _progress(run_state: str, status: dict, train: list[dict], config: dict) -> None:
    if not train:
        if run_state in (PENDING, RUNNING):
            st.progress(0, text="Waiting for the first step…")
        return
    last = train[-1]
    total, step = _total(train, config), last["step"]
    text = f"Step {step:,} of {total:,}"
    if run_state == RUNNING and step:
        # the median recent step time, not elapsed / steps: the first steps are slow (warm-up, lazy init)
        recent = [r["step_time_s"] for r in train[-20:] if r.get("step_time_s")]
        per_step = statistics.median(recent) if recent else last.get("elapsed_s", 0) / step
        text += f" · about {fmt_duration(per_step * (total - step))} left"
    elif run_state in FINAL_STATES:
        took = (status.get("finished") or 0) - (status.get("started") or 0)
        text += f" · took {fmt_duration(took)}" if took > 0 else ""
    st.progress(min(1.0, step / total) if total else 0.0, text=text)


def _processes_of(records: list[dict]) -> dict | None:
    """How a run on several processes (torchrun) split its work, from its "ranks" and "data_parts" records."""
    ranks = charts.of_kind(records, "ranks")
    if not ranks:
        return None
    parts = charts.of_kind(records, "data_parts")
    return {"n": ranks[-1]["world_size"], "strategy": str(ranks[-1].get("strategy", "ddp")).upper(),
            "tokens": parts[-1]["train_tokens"] if parts else None}


def _processes(info: dict | None) -> None:
    if info is None:
        return
    how = ("each reading its own part of the data (" + ", ".join(f"{n:,}" for n in info["tokens"]) + " tokens)"
           if info["tokens"] else "each training on its own rows of every batch")
    st.caption(f":material/hub: {info['n']} training processes ({info['strategy']}), {how}; the figures are the "
               "whole run's (loss averaged over the processes, tokens/s summed).",
               help="Started through torchrun. DDP: a whole copy of the model in each process, gradients averaged "
                    "after every step. FSDP: the weights, gradients and optimizer states split across them.")


def _train_records(records: list[dict]) -> list[dict]:
    return charts.by_step(charts.of_kind(records, "train"))


def _figures_of(records: list[dict]) -> dict:
    """The panel's headline numbers from a run's records (computed once per poll for all viewers)."""
    evals = charts.of_kind(records, "eval")
    series = charts.memory_series(records)
    used = series["used"]
    tensors = charts.tensor_peak(records)
    heldout = charts.of_kind(records, "heldout")  # which text the held-out loss is on (`llmfs.recipes.train_job`)
    return {"eval_loss": evals[-1]["eval_loss"] if evals else None, "tps": charts.recent_tokens_per_s(records),
            "heldout_on": heldout[-1].get("on") if heldout else None,
            "heldout_note": heldout[-1].get("note") if heldout else None,
            "mem": used[-1] if used else None, "mem_peak": max(used) if used else None,
            "gpu": series["allocated"] is not None or series["label"].startswith("GPU"),
            "tensor_peak": sum(tensors.values()) if tensors else None}


def memory_metric(figures: dict, run_state: str, result: dict) -> dict:
    """The panel's memory figure: one number, labelled with what it counts (the run's process, or the GPU, under
    the number: labels are cut short in a narrow column). While the run goes: the memory in use now, its highest
    reading so far beside it; once it has ended, only the peak (a process that has ended uses nothing now): the
    highest reading of the chart, or the training loop's own reading where that was higher (on a CPU both read the
    process's resident memory). The run's own tensors, which the training loop counts, are named in the help."""
    gpu = figures.get("gpu")
    whose = "the GPU (all processes)" if gpu else "the run's process"
    counts = ("all processes on the GPU, as the driver (NVML) reports it" if gpu else
              "the resident memory (RSS) of the process the run trains in, Python and PyTorch's libraries included")
    tensors = (f" Of this, the run's own tensors (weights, gradients, optimizer states, activations) held at most "
               f"{charts.fmt_bytes(figures['tensor_peak'])}, as the training loop counts them."
               if figures.get("tensor_peak") else "")
    if run_state in FINAL_STATES:
        peaks = [figures.get("mem_peak")] + ([] if gpu else [result.get("peak_memory_bytes")])
        peak = max((p for p in peaks if p), default=None)
        return {"label": "Peak memory", "value": charts.fmt_bytes(peak) if peak else "-", "delta": whose,
                "help": f"The most memory the run used: {counts}.{tensors}"}
    now, peak = figures.get("mem"), figures.get("mem_peak")
    return {"label": "Memory now", "value": charts.fmt_bytes(now) if now is not None else "-",
            "delta": f"{'GPU' if gpu else 'process'} · peak so far {charts.fmt_bytes(peak)}"
            if peak is not None else whose,
            "help": f"The latest reading (about once a second) of {counts}; under it, the highest reading so far."
                    + tensors}


def _numbers(figures: dict, train: list[dict], run_state: str = RUNNING, result: dict | None = None) -> None:
    cols = st.columns(4)
    cols[0].metric("Training loss", f"{train[-1]['loss']:.3f}" if train else "-", help=HELP["loss"],
                   delta=f"{train[-1]['loss'] - train[0]['loss']:+.3f} since step 1" if len(train) > 1 else None,
                   delta_color="inverse")
    eval_loss, tps = figures["eval_loss"], figures["tps"]
    on, note = figures.get("heldout_on"), figures.get("heldout_note")
    cols[1].metric("Held-out loss", f"{eval_loss:.3f}" if eval_loss is not None else "-",
                   help=HELP["eval"] + (f"\n\nMeasured on {on}." if on else "") + (f" {note}" if note else ""))
    cols[2].metric("Tokens / second", f"{tps:,.0f}" if tps else "-", help=HELP["tps"])
    mem = memory_metric(figures, run_state, result or {})
    cols[3].metric(mem["label"], mem["value"], help=mem["help"], delta=mem["delta"], delta_color="off",
                   delta_arrow="off")
    if on:  # a caption, not the metric's chip: a file's name does not fit a quarter of the row
        st.caption(md_escape(f"Held-out loss measured on {on}."))


def compare_runs(run_ids: list[str], *, poll_s: float = POLL_S) -> None:
    """Overlaid loss, memory and throughput of several runs, live while any of them is going."""
    jobs = state.jobs()
    existing = [r for r in run_ids if (jobs.root / r / "status.json").exists()]
    live = any(jobs.get(r).state not in FINAL_STATES for r in existing)
    st.fragment(run_every=poll_s if live else None)(_compare_body)(existing, live)


def _compare_body(run_ids: list[str], was_live: bool) -> None:
    jobs = state.jobs()
    if was_live and all(jobs.get(r).state in FINAL_STATES for r in run_ids):
        st.rerun(scope="app")
    shown = [jobs.get(r) for r in run_ids]
    labels = {rid: charts.legend_text(label) for rid, label in tables.run_labels(shown).items()}
    runs = {labels[r]: records_of(r) for r in run_ids}
    colors = {labels[r]: c for r, c in tables.run_colors(shown).items()}
    dashes = {labels[r]: d for r, d in tables.run_dashes(shown).items()}
    st.caption("Lines: training loss (and tokens per second), smoothed over neighbouring steps; diamonds: held-out "
               "loss, in the run's colour.")
    with st.container(border=True):
        st.plotly_chart(charts.loss_overlay(runs, colors, dashes), key="compare:loss", config=PLOT_CONFIG)
    left, right = st.columns(2)
    with left, st.container(border=True):
        st.plotly_chart(charts.memory_overlay(runs, colors, dashes), key="compare:memory", config=PLOT_CONFIG)
    with right, st.container(border=True):
        st.plotly_chart(charts.throughput_overlay(runs, colors, dashes), key="compare:tps", config=PLOT_CONFIG)
    if any(charts.tensor_peak(records) for records in runs.values()):  # runs from before the counting have none
        with st.container(border=True):
            st.plotly_chart(charts.tensor_memory_bars(runs), key="compare:tensors", config={"displaylogo": False})


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _total(train: list[dict], config: dict) -> int:
    return int((train[-1].get("total_steps") if train else None) or config.get("steps") or 1)


def _checkpoint_step(run) -> int | None:
    from llmfs.train import checkpoint_step
    return checkpoint_step(run.checkpoint_dir)


# -- out of memory: what it used, and one-click retries that need less ---------------------------------------------
OPENED = "runs.open"  # a run id the Runs page should open next (a retry just queued it)


def oom_retry(run, status: dict) -> None:
    """The memory the run reached before it failed, and buttons that queue the same run again with one change
    that needs less (through the same submission path: the session's name, the workshop's limits)."""
    from llmfs.config import ConfigError, TrainConfig, from_dict
    from llmfs.recipes import submit_train

    mem = charts.memory_series(records_of(run.run_id))
    own = status.get("peak_memory_bytes") or (status.get("result") or {}).get("peak_memory_bytes")
    if mem["used"]:
        total = f" of {charts.fmt_bytes(mem['total'])}" if mem.get("total") else ""
        text = f"**Peak memory before it failed:** {charts.fmt_bytes(max(mem['used']))}{total} ({mem['label'].lower()})"
        if own and mem["allocated"] is not None:  # on a GPU: what this job's tensors took, of what all used
            text += f"; this run's own tensors peaked at {charts.fmt_bytes(own)}"
    elif own:
        text = f"**Peak memory before it failed:** {charts.fmt_bytes(own)}"
    else:
        text = "No memory reading was recorded before it failed"
    st.markdown(text + ". Try again with one change that needs less:")
    cfg = run.config()
    options = retry_options(cfg, bool(state.machine().get("cuda_available")))
    pressed = None
    with st.container(horizontal=True):
        for name, o in options.items():
            if st.button(o["label"], key=f"retry:{name}:{run.run_id}", icon=o["icon"], disabled=bool(o["off"]),
                         help=o["off"] or o["help"]):
                pressed = name
    if pressed is None:
        return
    owner = status.get("owner")
    try:
        new_cfg = from_dict(TrainConfig, cfg).replace(**options[pressed]["changes"])
    except ConfigError as e:
        forms.show_config_error(e, forms.field_info_any(e.field))
        return
    new_id = forms.try_submit(owner or "runs", lambda: submit_train(state.jobs(), new_cfg, owner=owner))
    if new_id is not None:
        st.session_state[OPENED] = new_id
        st.rerun(scope="app")


# -- the shared queue, in every page's sidebar --------------------------------------------------------------------
QUEUE_POLL_S = 2.0
QUEUE_LINES = 6  # waiting jobs listed by name; the rest are counted (the participant's own are always listed)


def workshop_sidebar() -> None:
    """Every page's sidebar, under the navigation: who you are, and the shared queue."""
    with st.sidebar:
        identity.name_control()
        st.fragment(run_every=QUEUE_POLL_S)(_queue_body)()


_SNAPSHOTS: dict[str, tuple[float, tuple, list[dict]]] = {}
_SNAPSHOTS_LOCK = threading.Lock()


def queue_rows() -> list[dict]:
    """`queue_snapshot()`, shared by every session for about one poll (it reads each queued run's folder); taken
    afresh at once when a job joins, starts or leaves the queue."""
    jobs = state.jobs()
    key = (tuple(jobs.active()), tuple(jobs.pending()))
    now = time.monotonic()
    with _SNAPSHOTS_LOCK:
        hit = _SNAPSHOTS.get(str(jobs.root))
        if hit and hit[1] == key and now - hit[0] < QUEUE_POLL_S:
            return hit[2]
    rows = [{**r, "name": Run(jobs.root / r["run_id"]).name} for r in jobs.queue_snapshot()]
    with _SNAPSHOTS_LOCK:
        _SNAPSHOTS[str(jobs.root)] = (now, key, rows)
    return rows


def _queue_body() -> None:
    jobs = state.jobs()
    rows = queue_rows()
    me = identity.current_user()
    running = [r for r in rows if r["position"] is None]
    waiting = [r for r in rows if r["position"] is not None]
    with st.container(border=True, gap="small"):
        st.markdown("**:material/queue: Queue**", help="One training slot, shared by everyone on this server: runs "
                    "take turns in the order they were started. Estimates come from the pace of recent runs.")
        for r in [r for r in rows if identity.is_mine(r["user"], me)]:
            if r["position"] is None:
                what = f"run “{md_escape(r['name'])}”" if r.get("name") else f"{r['kind']} run"
                text = f"Your {what} is running · {rough_duration(r['remaining_s'])} left"
            elif jobs.paused:
                text = f"You are #{r['position']}"
            else:
                text = f"You are #{r['position']} · {rough_duration(r['wait_s'])}" if r["wait_s"] else \
                    f"You are #{r['position']} · starting"
            st.markdown(f":blue-background[**{text}**]")
        if jobs.paused:
            st.caption(":material/pause_circle: **Paused by the instructor**: running jobs go on, none starts.")
        if not rows:
            st.caption("Empty: the slot is free, a new run starts at once.")
            return
        lines = [f":material/play_arrow: {_who(r, me)} · {r['kind']} · {rough_duration(r['remaining_s'])} "
                 "left" for r in running]
        shown = [r for i, r in enumerate(waiting) if i < QUEUE_LINES or identity.is_mine(r["user"], me)]
        lines += [f"#{r['position']} {_who(r, me)} · {r['kind']}" for r in shown]
        if len(waiting) > len(shown):
            lines.append(f"… and {len(waiting) - len(shown)} more waiting")
        st.caption("  \n".join(lines))


def _who(row: dict, me: str | None) -> str:
    if identity.is_mine(row["user"], me):
        return "**you**"
    return f"**{md_escape(row['user'])}**" if row["user"] else "**-**"


def runs_overview(runs: list) -> None:
    """The table of all runs; it refreshes every couple of seconds while any of them is waiting or running."""
    live = any(r.state not in FINAL_STATES for r in runs)
    st.fragment(run_every=2 * POLL_S if live else None)(_overview_body)([r.run_id for r in runs], live)


def _overview_body(run_ids: list[str], was_live: bool) -> None:
    jobs = state.jobs()
    runs = [jobs.get(r) for r in run_ids if (jobs.root / r / "status.json").exists()]
    if was_live and all(r.state in FINAL_STATES for r in runs):
        st.rerun(scope="app")  # redraw once with polling off
    table = tables.runs_table(runs)
    me = identity.current_user()
    statuses = [r.status() for r in runs]
    users = [s.get("user") for s in statuses]
    # a run from a bundle (.zip) made elsewhere says so where it says where it started
    table["started from"] = [f"imported · {where}" if is_imported(s) else where
                             for s, where in zip(statuses, table["started from"])]
    # and beside its status, the column read first (the original and its imported copy share a name)
    table["status"] = [f"{st_} · imported" if is_imported(s) else st_ for s, st_ in zip(statuses, table["status"])]
    if not all(identity.is_mine(u, me) for u in users):  # someone else's runs are here: say whose each is
        table.insert(1, "user", [f"{u} (you)" if u and identity.is_mine(u, me) else u for u in users])
    st.dataframe(table, hide_index=True, placeholder="–", column_config={
        "run": st.column_config.TextColumn("Run", help="The run's folder name under $LLMFS_HOME/runs", width=210),
        "name": st.column_config.TextColumn("Name", width=160, help="The name given to the run (when it was "
                                                                    "started, or with Rename below)"),
        "user": st.column_config.TextColumn("User", help="Who started it (the name they gave this workshop)"),
        "status": st.column_config.TextColumn("Status"),
        "kind": st.column_config.TextColumn("Kind"),
        "started from": st.column_config.TextColumn("Started from", help="The page (or the command line) it was "
                                                    "started from; imported: from a run's .zip, made here or on "
                                                    "another machine"),
        "model": st.column_config.TextColumn("Model"),
        "data": st.column_config.TextColumn("Data", help="The text it trained on (its file's name)"),
        "init": st.column_config.TextColumn("Weights", help="Training from the model's pretrained weights, or from "
                                                            "random ones (L12's comparison)"),
        "precision": st.column_config.TextColumn("Precision", help="The number format it trained in (L16)"),
        "LoRA": st.column_config.TextColumn("LoRA", help="The LoRA adapters it trained (L15): their rank, the "
                                                         "layers they sit on, and whether the base was in 4 bits "
                                                         "(QLoRA); none: the model's own weights trained"),
        "progress": st.column_config.TextColumn("Progress", help="Training: steps done / planned; evaluation: "
                                                                 "questions scored / asked; data pipeline: "
                                                                 "documents read"),
        "created": st.column_config.DatetimeColumn("Created", format="D MMM, HH:mm:ss"),
        "final loss": st.column_config.NumberColumn("Final loss", format="%.3f",
                                                    help="Training loss at the last step done"),
        "held-out loss": st.column_config.NumberColumn("Held-out loss", format="%.3f",
                                                       help="Loss on text the model never trained on, at the "
                                                            "last evaluation. On llmfs-corpus: its held-out "
                                                            "documents, the same windows as Home's figure for "
                                                            "llmfs-tiny; on other data: its last 5% (or its last "
                                                            "documents). Compare runs on the same data."),
    })
