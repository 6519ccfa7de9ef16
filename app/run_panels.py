"""Which panel shows a run, by its kind: a registry the Runs page (and anything showing runs of every kind) reads.
A new kind of job adds its panel here; the panels themselves never need to know about each other."""

from __future__ import annotations

from typing import Callable

import streamlit as st

from . import eval_view, panels, pipeline_view, state

# kind (config.json's "kind") -> the function drawing that run's live panel
PANELS: dict[str, Callable[..., None]] = {
    "train": panels.train_panel,
    "pipeline": pipeline_view.pipeline_panel,   # documents, not steps
    "eval": eval_view.eval_panel,               # questions and scores
}


def run_panel(run_id: str, *, poll_s: float = panels.POLL_S) -> None:
    """The live panel of any run, chosen by its kind (a kind without a panel of its own gets the training one)."""
    try:
        run = state.jobs().get(run_id)
    except KeyError:
        st.warning(f"Run {run_id} no longer exists (it was deleted).")
        return
    PANELS.get(run.kind, panels.train_panel)(run_id, poll_s=poll_s)
