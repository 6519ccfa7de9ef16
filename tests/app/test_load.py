"""Load: a workshop's worth of participants on one server.

- 20 AppTest sessions of the L12 page, each a named participant (workshop mode), queue a small training run while
  the queue is paused, then poll the page while the 20 jobs train one after another. AppTest sessions in one
  process share `st.cache_resource`, hence the one JobManager, exactly as browser tabs on one server do.
- 20 threads hammer a real `streamlit run` server on loopback (`/_stcore/health` and `/`) while a run trains in it.

Jobs run in a worker thread of the server process (llmfs.jobs), so training competes with the UI for the CPU and
for the GIL: these tests bound how long the UI then takes to answer.
"""

from __future__ import annotations

import concurrent.futures as cf
import re
import statistics
import time
import urllib.request
from pathlib import Path

import pytest
from apphelpers import CHROMIUM, CHROMIUM_ARGS, REPO, serve  # tests/app is on sys.path
from streamlit.testing.v1 import AppTest

from app import identity, state
from llmfs.runs import FINAL_STATES, Run

N_SESSIONS = 20
PAGE, KEY = "pages/l12_pretrained.py", "l12"
SMALL_RUN = {"steps": 2, "batch_size": 2, "seq_len": 32, "eval_batches": 1}
# p95 of one AppTest rerun of the L12 page while the queue's jobs train (see the test's docstring for the numbers).
RERUN_P95_BOUND_S = 1.5
RUNS_KEY = f"runs:{KEY}"   # where app.state.remember() keeps the runs this session started from the page


pytestmark = pytest.mark.usefixtures("router_on_every_run")  # see tests/app/conftest.py


@pytest.fixture
def workshop_home(home_with_default):
    """Workshop mode (a limits file): every session needs a name, and each run is recorded under it."""
    (home_with_default / "workshop.toml").write_text("max_queued_per_user = 2\nmax_steps = 500\n")
    return home_with_default


def open_session(name: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
    at.session_state[identity.NAME_KEY] = name
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_text(at: AppTest) -> str:
    parts = [at.markdown, at.caption, at.info, at.warning, at.error, at.success]
    return "\n".join(str(e.value) for elements in parts for e in elements)


def remembered(at: AppTest) -> list[str]:
    return list(at.session_state[RUNS_KEY]) if RUNS_KEY in at.session_state else []


def press_start(at: AppTest) -> str | None:
    """Fill the form with a small run and press Start; the run id the session then remembers (None: not started)."""
    for field, value in SMALL_RUN.items():
        at.number_input(key=f"{KEY}.{field}").set_value(value)
    at.checkbox(key=f"{KEY}.save_model").uncheck()
    at.run()
    start = at.button(key=f"{KEY}.start")
    if start.disabled:
        return None
    start.click().run()
    assert not at.exception, [e.value for e in at.exception]
    ids = remembered(at)
    return ids[-1] if ids else None


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


@pytest.mark.slow
def test_twenty_sessions_queue_train_and_poll(workshop_home):
    """Twenty participants on the L12 page: every job runs exactly once, in queue order, each session sees only
    its own run, and the page answers within a bounded time while the jobs train.

    Each session fills the form and presses Start while the queue is paused, so all 20 runs wait at once.

    UI bound: measured on the 2-core, no-GPU machine this was written on (2026-11), one AppTest rerun of the L12
    page through the router (sidebar queue, the run panel live, model tab idle) took a median of 0.04 s, a p95 of
    0.10-0.11 s and at worst 1.1 s over 2,400-3,200 reruns (two runs) while the 20 jobs trained one after another
    in the same process (the job thread competes for both cores and the GIL; the 20 jobs took 120-160 s; the whole
    test 2.5-3.5 minutes). RERUN_P95_BOUND_S = 1.5 s leaves
    over 10x margin for a slower or busier CI machine while still catching a page that waits on a running job
    (that would cost seconds per rerun).
    """
    names = [f"participant-{i:02d}" for i in range(N_SESSIONS)]
    sessions = [open_session(name) for name in names]
    manager = state.manager()   # the process-wide one every session above uses (st.cache_resource)
    manager.pause()
    run_ids: list[str] = []
    try:
        for i, at in enumerate(sessions):
            run_id = press_start(at)
            assert run_id is not None, f"session {i} could not start its run"
            run_ids.append(run_id)
        assert len(set(run_ids)) == N_SESSIONS
        # Queue positions 1..20, in submission order; each run recorded under its participant.
        assert [manager.queue_position(r) for r in run_ids] == list(range(1, N_SESSIONS + 1))
        assert [Run(workshop_home / "runs" / r).status().get("user") for r in run_ids] == names
        for i, at in enumerate(sessions):
            at.run()
            assert not at.exception, [e.value for e in at.exception]
            assert remembered(at) == [run_ids[i]]            # its own run only, in its own session state
            text = page_text(at)
            assert f"Run `{run_ids[i]}`" in text and f"You are #{i + 1}" in text, (i, text)
            others = [r for r in run_ids if r != run_ids[i]]
            assert not [r for r in others if r in text], f"session {i} sees another session's run"
    finally:
        manager.unpause()

    runs = [Run(workshop_home / "runs" / r) for r in run_ids]
    rerun_s: list[float] = []
    deadline = time.time() + 900
    while not all(r.state in FINAL_STATES for r in runs) and time.time() < deadline:
        for at in sessions:   # every session polls: a full rerun, as its live fragments would
            t0 = time.perf_counter()
            at.run()
            rerun_s.append(time.perf_counter() - t0)
            assert not at.exception, [e.value for e in at.exception]
    assert all(r.state in FINAL_STATES for r in runs), [r.state for r in runs]

    # Every job ran exactly once, successfully, one after another in queue order.
    for run in runs:
        assert run.state == "succeeded", (run.run_id, run.status().get("error"))
        assert len(re.findall(r"Started train job", run.log_tail(10_000))) == 1, run.log_tail(10_000)
    started = [r.status()["started"] for r in runs]
    finished = [r.status()["finished"] for r in runs]
    assert started == sorted(started)
    assert all(f <= s for f, s in zip(finished, started[1:])), "two jobs ran at once on the one slot"
    for i, at in enumerate(sessions):   # each page now shows its own finished run
        at.run()
        text = page_text(at)
        assert f"Run `{run_ids[i]}`" in text and "Finished" in text

    assert len(rerun_s) >= N_SESSIONS
    print(f"\n{len(rerun_s)} reruns while {N_SESSIONS} jobs trained: median {statistics.median(rerun_s):.3f} s, "
          f"p95 {p95(rerun_s):.3f} s, max {max(rerun_s):.3f} s; jobs took {finished[-1] - started[0]:.0f} s")
    assert p95(rerun_s) < RERUN_P95_BOUND_S


def test_every_participant_can_start_their_own_run_on_the_same_page(workshop_home):
    """Two participants on L12: after Ann presses Start, Bob (and Cem, who arrives later) see none of Ann's run
    and can start their own (app.state.latest() falls back only to the participant's own runs)."""
    ann, bob = open_session("ann"), open_session("bob")
    manager = state.manager()
    manager.pause()   # nothing trains: this is about who sees what
    try:
        ann_run = press_start(ann)
        assert ann_run is not None
        cem = open_session("cem")
        for at in (bob, cem):
            at.run()
            assert ann_run not in page_text(at), "another participant's run is shown"
        bob_run = press_start(bob)
        assert bob_run is not None and bob_run != ann_run
        assert remembered(ann) == [ann_run] and remembered(bob) == [bob_run] and remembered(cem) == []
    finally:
        for run_id in manager.pending():
            manager.cancel(run_id)
        manager.unpause()


# -- a real server --------------------------------------------------------------------------------------------------
N_CLIENTS, GETS_EACH = 20, 10
# p95 of one GET while a run trains in the server: measured median 33 ms, p95 160 ms, max 190 ms on the 2-core
# machine (Tornado's event loop answers these without running a script); 2 s, over 10x that, is still well below
# what a participant would notice as a hang.
HTTP_P95_BOUND_S = 2.0


@pytest.fixture
def served(home_with_default, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make browser)")
    pytest.importorskip("playwright.sync_api")
    with serve(home_with_default, tmp_path / "streamlit.log") as url:
        yield url, home_with_default


def timed_get(url: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        r.read()
        return r.status, time.perf_counter() - t0


@pytest.mark.slow
@pytest.mark.browser
def test_twenty_http_clients_while_a_run_trains(served):
    """A run is started from the L12 page (headless Chromium) and trains inside the server; meanwhile 20 threads
    each GET /_stcore/health and / alternately, 10 times: all 200 answer, and the p95 latency stays under
    HTTP_P95_BOUND_S."""
    from playwright.sync_api import expect, sync_playwright
    expect.set_options(timeout=60_000)  # a busy 2-core CI machine renders the first page slowly

    url, home = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.set_default_timeout(60_000)
            page.goto(url + "/l12_pretrained")
            page.get_by_role("tab", name="4 · Fine-tune").click()
            steps = page.get_by_role("spinbutton", name="Training steps")
            steps.fill("5000")   # far more than it gets to do: the server is stopped at the end
            steps.press("Enter")
            expect(steps).to_have_value("5000")
            page.get_by_role("button", name="Start training").click()
            expect(page.get_by_text(re.compile(r"Running$")).first).to_be_visible(timeout=120_000)
            (run_dir,) = [d for d in (home / "runs").iterdir() if d.is_dir()]
            run = Run(run_dir)
            deadline = time.time() + 120
            while not run.read_metrics("train") and time.time() < deadline:
                time.sleep(0.5)   # past loading: the training loop itself is running

            targets = [url + ("/_stcore/health" if i % 2 == 0 else "/") for i in range(GETS_EACH)]
            with cf.ThreadPoolExecutor(N_CLIENTS) as pool:
                results = list(pool.map(timed_get, [t for _ in range(N_CLIENTS) for t in targets]))
            assert run.state == "running", "the run must still be training while the clients ask"
        finally:
            browser.close()
    statuses = [s for s, _ in results]
    latencies = [t for _, t in results]
    assert len(results) == N_CLIENTS * GETS_EACH and statuses == [200] * len(results)
    print(f"\n{len(results)} GETs while training: median {statistics.median(latencies) * 1000:.0f} ms, "
          f"p95 {p95(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    assert p95(latencies) < HTTP_P95_BOUND_S
