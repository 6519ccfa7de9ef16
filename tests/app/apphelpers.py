"""Helpers the app tests share: opening a page through the router with AppTest, reading texts, and serving the
app for real-browser tests (tests/app is on sys.path, so `from apphelpers import ...`)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def open_page(page: str | None = None, timeout: float = 60) -> AppTest:
    """The app through its router, then `page` (a path like pages/l15_lora.py), with no exception raised."""
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=timeout)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


_MD_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")


def unescaped(text: str) -> str:
    """Markdown source as a reader sees it: the backslash escapes that keep data from being read as Markdown
    (app.text.md_escape) removed, hard breaks back to line breaks."""
    return _MD_ESCAPED.sub(r"\1", text).replace("  \n", "\n")


def html_texts(at: AppTest) -> str:
    """The visible text of the page's st.html blocks (tags dropped, entities decoded)."""
    import html
    return "\n".join(html.unescape(re.sub(r"<[^>]+>", "", e.proto.body)) for e in at.get("html")
                      if "<style" not in e.proto.body)


def need_browser() -> None:
    """Skip a real-browser test where Debian's chromium or playwright is missing (`make browser` installs it)."""
    import pytest
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make browser)")
    pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, every: float = 0.25):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def report_failure(page, home: Path, full_page: bool = False) -> None:
    """After a failed browser test: a screenshot beside LLMFS_HOME and what each run says of itself (status, log)."""
    from llmfs.runs import list_runs
    page.screenshot(path=str(home.parent / "failure.png"), full_page=full_page)
    for run in list_runs(home / "runs"):
        print(run.run_id, run.status(), run.log_tail(30), sep="\n")


@contextlib.contextmanager
def browser_page(home: Path, timeout_ms: int = 120_000, width: int = 1400, height: int = 2000):
    """A page in headless Chromium (Debian's), every wait and `expect` bounded by `timeout_ms` (a busy 2-core CI
    machine renders and loads slowly); after a failure, a full-page screenshot and each run's status and log
    (`report_failure`); the browser closed in the end."""
    from playwright.sync_api import expect, sync_playwright
    expect.set_options(timeout=timeout_ms)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(timeout_ms)
        try:
            yield page
        except BaseException:
            report_failure(page, home, full_page=True)
            raise
        finally:
            browser.close()


def set_number(page, label: str, value: str) -> None:
    """Type `value` into the number box `label` and wait for the rerun that takes it; typed again if a rerun still
    running from the previous change redraws the box with its old value (seen once in five runs)."""
    from playwright.sync_api import expect
    box = page.get_by_role("spinbutton", name=label)
    for _ in range(3):
        box.fill(value)
        box.press("Enter")
        try:
            expect(box).to_have_value(value, timeout=15_000)
            break
        except AssertionError:
            continue
    expect(box).to_have_value(value, timeout=1_000)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)  # that rerun is done


def start_training(page, steps: int) -> None:
    """In a real browser: type a step count into the page's "Training steps" box and press "Start training" once it
    is enabled (a rerun turns it on after the value is taken)."""
    set_number(page, "Training steps", str(steps))
    start = page.get_by_role("button", name="Start training")
    wait_for(lambda: start.is_enabled(), 30, "the start button")
    start.click()


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not become healthy in {timeout} s")


@contextlib.contextmanager
def serve(home: Path, log_path: Path, env: dict | None = None) -> Iterator[str]:
    """`streamlit run streamlit_app.py` on a free loopback port over LLMFS_HOME=`home`; yields its URL and stops
    the server (its whole process group) afterwards."""
    port = free_port()
    full_env = {**os.environ, "LLMFS_HOME": str(home), "HF_HUB_OFFLINE": "1",
                "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", **(env or {})}
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port",
                                   str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                                  cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, server)
            yield url
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                try:
                    server.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait(5)
