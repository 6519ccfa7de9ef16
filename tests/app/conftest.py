"""Fixtures for the app tests: run folders seeded without training (LLMFS_HOME and the quickly built embedded
default come from tests/conftest.py)."""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import pytest

from llmfs.config import TrainConfig
from llmfs.runs import FINAL_STATES, Run, new_run_id


def seed_run(home: Path, *, state: str = "succeeded", steps: int = 20, done: int | None = None, owner: str = "l12",
             seed_loss: float = 6.0, **cfg_changes) -> str:
    """A run folder as a finished (or running) training job leaves it, without training: config, status, metrics
    with train / eval / telemetry records, a log. Returns the run id."""
    cfg = TrainConfig(steps=steps, eval_every=10, warmup_steps=min(10, steps), **cfg_changes)
    run = Run.create(home / "runs" / new_run_id("train"), "train", dataclasses.asdict(cfg), owner=owner)
    run.log("Started train job.")
    t0 = time.time()
    done = steps if done is None else done
    for step in range(1, done + 1):
        run.append_metrics(step, kind="telemetry", process_rss_bytes=400e6 + step * 1e6,
                           system_used_bytes=2e9, system_total_bytes=16e9)
        loss = seed_loss - 1.5 * step / steps
        run.append_metrics(step, kind="train", loss=loss, lr=1e-3, grad_norm=1.0, tokens=1024, step_time_s=0.1,
                           tokens_per_s=10240.0 + step, total_steps=steps, elapsed_s=0.1 * step,
                           tokens_seen=1024 * step)
        if step % 10 == 0:
            run.append_metrics(step, kind="eval", eval_loss=loss + 0.3)
    if state == "running":
        run.mark_running()
    elif state in FINAL_STATES:
        result = {"final_loss": seed_loss - 1.5 * done / steps, "steps": done, "total_steps": steps,
                  "eval_loss": seed_loss - 1.5 * done / steps + 0.3} if state == "succeeded" else {}
        fields = {"error": "The loss became nan at step 7: training diverged.",
                  "traceback": "Traceback (most recent call last):\n  ...\nFloatingPointError: nan"} \
            if state == "failed" else {}
        run.update_status(started=t0)
        run.mark_finished(state, result=result, **fields)
        run.log("Finished.")
    return run.run_id


@pytest.fixture
def seed(llmfs_home):
    """seed(**kw) -> run id: a seeded run folder in this test's LLMFS_HOME (see seed_run)."""
    return functools.partial(seed_run, llmfs_home)


@pytest.fixture
def router_on_every_run(monkeypatch):
    """Every AppTest run goes through streamlit_app.py, as in a browser. AppTest (Streamlit 1.67) resets
    `PagesManager.uses_pages_directory` before each run, and with a pages/ folder beside the entry point it then runs
    the page's own script in the old pages-folder mode on every run after the first: no router, so no name prompt
    and no sidebar. A served app sets the flag once, through st.navigation, and keeps it."""
    from streamlit.runtime import pages_manager
    init = pages_manager.PagesManager.__init__

    def v2_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        pages_manager.PagesManager.uses_pages_directory = False

    monkeypatch.setattr(pages_manager.PagesManager, "__init__", v2_init)


@pytest.fixture
def served_app(home_with_default, tmp_path):
    """`streamlit run streamlit_app.py` on a free port over an LLMFS_HOME holding the (quickly built) default:
    (its URL, the LLMFS_HOME). Skips where there is no browser to drive it."""
    import apphelpers
    apphelpers.need_browser()
    with apphelpers.serve(home_with_default, tmp_path / "streamlit.log") as url:
        yield url, home_with_default
