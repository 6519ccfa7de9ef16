"""A real-browser walk through the non-coder's first task (issue 16): on L15, upload a few paragraphs of one's own
text, see what they hold (documents, tokens, the shorter sequence short text gets), train a few steps, and see the
run finish with its results (a held-out loss that names the text it is on)."""

from __future__ import annotations

import re

import pytest
from apphelpers import CHROMIUM, CHROMIUM_ARGS, report_failure, start_training  # tests/app is on sys.path

from llmfs.runs import list_runs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PARAGRAPHS = "\n\n".join([
    "My grandmother kept bees behind the old barn. Every summer she lifted the frames out one by one and held them "
    "up to the light, counting the capped cells.",
    "The honey was dark in the years when the heather flowered late, and pale when the clover came first.",
    "When the hives swarmed she walked out with a cardboard box and a soft brush, talking to the bees.",
    "In winter the hives were wrapped in sacking and the notebook went back on the kitchen shelf.",
    "I still have the notebook. The last entry says only: good year, gentle bees, forty jars.",
])


def test_own_text_uploads_trains_and_finishes_in_a_real_browser(served_app, tmp_path):
    from playwright.sync_api import expect, sync_playwright
    expect.set_options(timeout=60_000)  # a busy 2-core CI machine renders the first page slowly

    url, home = served_app
    text = tmp_path / "bees.txt"
    text.write_text(PARAGRAPHS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        page.set_default_timeout(60_000)
        try:
            page.goto(url + "/l15_lora")
            expect(page.get_by_text("Lessons", exact=True)).to_be_visible()
            page.get_by_role("combobox", name=re.compile("Training data")).click()
            page.get_by_role("option", name=re.compile("Upload a .txt")).click()
            expect(page.get_by_text(re.compile("Choose a file to train on"))).to_be_visible()
            expect(page.locator("[data-testid='stAlertContentError']")).to_have_count(0)  # nothing done wrong yet

            page.locator("input[type='file']").first.set_input_files(str(text))
            expect(page.get_by_text(re.compile(r"1 document, [\d,]+ characters: [\d,]+ tokens to train on"))
                   ).to_be_visible()
            expect(page.locator("[data-testid='stAlertContentError']")).to_have_count(0)

            start_training(page, 3)

            expect(page.get_by_text(re.compile(r"Finished$")).first).to_be_visible(timeout=240_000)
            expect(page.get_by_text(re.compile(r"on the last 5% of the text of bees\.txt")).first).to_be_visible()
        except BaseException:
            report_failure(page, home, full_page=True)
            raise
        finally:
            browser.close()

    (run,) = list_runs(home / "runs")
    result = run.status()["result"]
    assert run.state == "succeeded" and run.status().get("owner") == "l15"
    assert result["steps"] == 3 and result["eval_loss"] is not None
    assert result["heldout_on"] == "the last 5% of the text of bees.txt" and result["heldout_note"]
    assert (home / "uploads" / "bees.txt").read_text() == PARAGRAPHS
