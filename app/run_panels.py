"""Which panel shows a run, by its kind: a registry the Runs page (and anything showing runs of every kind) reads.
A new kind of job adds its panel here; the panels themselves never need to know about each other."""

from __future__ import annotations

from typing import Callable

import streamlit as st

from llmfs.runs import NAME_MAX, describe_runs

from . import eval_view, panels, pipeline_view, reproduce_view, state

# kind (config.json's "kind") -> the function drawing that run's live panel
PANELS: dict[str, Callable[..., None]] = {
    "train": panels.train_panel,
    "pipeline": pipeline_view.pipeline_panel,   # documents, not steps
    "eval": eval_view.eval_panel,               # questions and scores
}


def run_panel(run_id: str, *, poll_s: float = panels.POLL_S) -> None:
    """The live panel of any run, chosen by its kind (a kind without a panel of its own gets the training one), and
    under it how to repeat the run (its command, a Python snippet, its settings as a file)."""
    try:
        run = state.jobs().get(run_id)
    except KeyError:
        st.warning(f"Run {run_id} no longer exists (it was deleted).")
        return
    PANELS.get(run.kind, panels.train_panel)(run_id, poll_s=poll_s)
    reproduce_view.reproduce_section(run)


# -- names people give runs ---------------------------------------------------------------------------------------
NAME_HELP = ("A name of your own for this run, shown instead of its settings on the Runs page and in chart legends "
             "(for example *notes, 3 epochs*). Optional: leave it empty and the run is named by what sets it apart "
             "from the runs it is compared with. You can rename it later on the Runs page.")


def run_name_input(key: str, label: str = "Run name (optional)") -> str:
    """The optional name box of a page's start form; its text (trimmed, on one line). Emptied once the runs it
    named are queued (`name_runs(..., key=key)`), so the next run does not take the same name by mistake."""
    if st.session_state.pop(f"{key}.run_name.used", False):
        st.session_state[f"{key}.run_name"] = ""
    text = st.text_input(label, key=f"{key}.run_name", max_chars=NAME_MAX, placeholder="e.g. my notes, 3 epochs",
                         help=NAME_HELP, persist_state="session")
    return " ".join((text or "").split())


def named(run_id: str, name: str, key: str | None = None) -> str:
    """`run_id`, after giving it the name typed before Start (for `forms.submit_job`'s submit function)."""
    name_runs([run_id], name, key)
    return run_id


def name_runs(run_ids: list[str], name: str, key: str | None = None) -> None:
    """Give just-queued runs the name typed before Start; several runs queued together (a comparison) each get it
    with what sets them apart (`my test · random weights`). `key`: the page's `run_name_input`, emptied next."""
    if not name or not run_ids:
        return
    if key is not None:
        st.session_state[f"{key}.run_name.used"] = True
    jobs = state.jobs()
    runs = [jobs.get(r) for r in run_ids]
    phrases = describe_runs({r.run_id: r.config() for r in runs}, {r.run_id: r.kind for r in runs})
    for run in runs:
        parts = [name, *phrases[run.run_id]] if len(runs) > 1 else [name]
        run.rename(" · ".join(parts)[:NAME_MAX])
