"""Workshop mode in a real browser (served app, headless Chromium): the participant name is asked once and
remembered by the browser (cookie) across a reload; the instructor unlocks their view with the password, pauses the
queue, sees a participant's queued run and cancels it. Nothing trains (the queue is paused)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from apphelpers import CHROMIUM, CHROMIUM_ARGS, serve, wait_for  # tests/app is on sys.path

from llmfs.runs import list_runs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "browser-test-password"


@pytest.fixture
def served_workshop(llmfs_home, tmp_path):
    """The app served over an LLMFS_HOME with a limits file and an instructor password (workshop mode)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make browser)")
    pytest.importorskip("playwright.sync_api")
    (llmfs_home / "workshop.toml").write_text("max_queued_per_user = 2\nmax_steps = 1000\n")
    with serve(llmfs_home, tmp_path / "streamlit.log", env={"LLMFS_INSTRUCTOR_PASSWORD": PASSWORD}) as url:
        yield url, llmfs_home


def test_name_is_remembered_and_the_instructor_cancels_a_queued_run(served_workshop):
    from playwright.sync_api import expect, sync_playwright
    expect.set_options(timeout=60_000)  # a busy 2-core CI machine renders the first page slowly

    url, home = served_workshop
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        page = context.new_page()
        page.set_default_timeout(30_000)
        try:
            # First visit: asked once; the browser keeps the name in a cookie, so a reload does not ask again.
            page.goto(url)
            dialog = page.get_by_role("dialog")
            expect(dialog.get_by_text("Your name for this workshop")).to_be_visible()
            dialog.get_by_label("Your name").fill("Ada L.")
            dialog.get_by_role("button", name="Continue").click()
            expect(dialog).to_be_hidden()
            sidebar = page.get_by_test_id("stSidebar")
            expect(sidebar.get_by_role("button", name=re.compile("Ada L."))).to_be_visible()
            wait_for(lambda: any(c["name"] == "llmfs_user" for c in context.cookies()), 15, "the name cookie")
            cookie = next(c for c in context.cookies() if c["name"] == "llmfs_user")
            assert cookie["value"] == "Ada%20L." and cookie["sameSite"] == "Strict" and cookie["expires"] > 0
            page.reload()
            expect(sidebar.get_by_role("button", name=re.compile("Ada L."))).to_be_visible()
            expect(page.get_by_role("dialog")).to_have_count(0)

            # The instructor view: locked until the password is given.
            sidebar.get_by_role("link", name="Instructor").click()
            page.get_by_label("Instructor password").fill("not it")
            page.get_by_role("button", name="Unlock").click()
            expect(page.get_by_text("Wrong password.")).to_be_visible()
            page.get_by_label("Instructor password").fill(PASSWORD)
            page.get_by_role("button", name="Unlock").click()
            page.get_by_role("button", name="Pause the queue").click()
            expect(page.get_by_role("button", name="Resume the queue")).to_be_visible()

            # A participant's run (this browser's, from Home) waits in the paused queue ...
            sidebar.get_by_role("link", name="Home").click()
            page.get_by_role("button", name="Start the quick start run").click()
            expect(sidebar.get_by_text(re.compile(r"You are #1"))).to_be_visible()

            # ... the instructor sees it, with its owner's name, and cancels it.
            sidebar.get_by_role("link", name="Instructor").click()
            (run,) = list_runs(home / "runs")
            row = page.get_by_test_id("stHorizontalBlock").filter(has_text=run.run_id)
            expect(row.get_by_text(re.compile(r"Ada L\. · train · #1 waiting"))).to_be_visible()
            row.get_by_role("button", name="Cancel").click()
            expect(page.get_by_text("Nothing is waiting or running.")).to_be_visible()
            assert run.state == "cancelled" and run.status()["user"] == "Ada L."
        except BaseException:
            page.screenshot(path=str(home.parent / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
