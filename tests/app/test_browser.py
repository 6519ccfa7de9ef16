"""One real-browser test: serve the app, start a training run from a lesson page in headless Chromium, watch the
loss chart gain points, press Stop, and see the run end as cancelled (on screen and on disk)."""

from __future__ import annotations

import re

import pytest
from apphelpers import CHROMIUM, CHROMIUM_ARGS, report_failure, start_training, wait_for  # tests/app is on sys.path

from llmfs.runs import list_runs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# In the page: how many points the first trace of the loss chart (the panel's first plotly chart) holds now.
LOSS_POINTS_JS = """() => {
    const gd = document.querySelector('.js-plotly-plot');
    return gd && gd.data && gd.data.length ? gd.data[0].x.length : 0;
}"""


def test_train_watch_and_stop_in_a_real_browser(served_app):
    from playwright.sync_api import expect, sync_playwright
    expect.set_options(timeout=60_000)  # a busy 2-core CI machine renders the first page slowly

    url, home = served_app
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.set_default_timeout(60_000)
            # Straight to a lesson's URL on a fresh server: the router, not the bare page script, must serve it.
            page.goto(url + "/l12_pretrained")
            expect(page.get_by_text("Lessons", exact=True)).to_be_visible()
            page.get_by_role("tab", name="4 · Fine-tune").click()
            start_training(page, 20000)  # far more than it will get to do: it is stopped below

            # The badge's text ends with its label (a Material icon's name may come first).
            expect(page.get_by_text(re.compile(r"Running$")).first).to_be_visible(timeout=120_000)
            seen = [wait_for(lambda: page.evaluate(LOSS_POINTS_JS) >= 1, 120, "the first loss point")]
            for _ in range(2):  # the chart updates twice more while the run goes on
                seen.append(wait_for(lambda: (n := page.evaluate(LOSS_POINTS_JS)) > seen[-1] and n, 60,
                                     "more loss points"))
            assert seen[0] < seen[1] < seen[2]

            page.get_by_role("button", name="Stop").click()
            expect(page.get_by_text(re.compile(r"Cancelled$")).first).to_be_visible(timeout=60_000)
            expect(page.get_by_role("button", name="Resume")).to_be_visible()
        except BaseException:
            report_failure(page, home)
            raise
        finally:
            browser.close()

    (run,) = list_runs(home / "runs")
    assert run.state == "cancelled" and run.status().get("owner") == "l12"
    train = run.read_metrics("train")
    assert seen[2] <= len(train) < 20000
