"""The adapter library in a real browser: a rename reaches every picker the browser shows (the browser keeps the
text of the option it shows, so a stale name is a browser-side bug AppTest cannot see), and swap-and-compare shows
the prompt once and the outputs readable, with the words that differ from the base marked."""

from __future__ import annotations

import os
from pathlib import Path

import apphelpers  # tests/app is on sys.path
import pytest
from apphelpers import CHROMIUM, CHROMIUM_ARGS, serve
from test_l15 import make_adapter

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def served_app(home_with_default, tmp_path):
    apphelpers.need_browser()
    make_adapter(home_with_default, name="first-name")
    with serve(home_with_default, tmp_path / "streamlit.log") as url:
        yield url, home_with_default


def picker_text(page, label: str) -> str:
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    box.scroll_into_view_if_needed()
    print(box.inner_html())
    return box.inner_text() + " " + " ".join(i.input_value() for i in box.locator("input").all())


def test_rename_reaches_the_pickers_and_compare_marks_differences(served_app, tmp_path):
    from playwright.sync_api import expect, sync_playwright
    expect.set_options(timeout=60_000)
    url, home = served_app
    shots = Path(os.environ.get("LLMFS_SHOTS", tmp_path))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.set_default_timeout(60_000)
            page.goto(url + "/l15_lora")
            expect(page.get_by_text("Adapter library").first).to_be_visible()
            assert "first-name" in picker_text(page, "Adapter A")

            name = page.get_by_role("textbox", name="Name", exact=True)
            name.fill("second *name*")
            name.press("Enter")
            page.get_by_role("button", name="Rename").click()
            expect(page.get_by_text("Renamed to").first).to_be_visible()
            for label in ("Adapter A", "Adapter to merge"):
                text = picker_text(page, label)
                assert "second *name*" in text and "first-name" not in text, (label, text)
            text = picker_text(page, "Adapter\n")  # the library's own picker: its label is "Adapter"
            assert "second *name*" in text, text

            prompt = page.get_by_role("textbox", name="Prompt")
            prompt.fill("===== <b>not bold</b>\n")
            page.get_by_role("spinbutton", name="New tokens").fill("12") if page.get_by_role(
                "spinbutton", name="New tokens").count() else None
            page.get_by_role("button", name="Generate").click()
            output = page.locator(".llmfs-output")
            expect(output.first).to_be_visible(timeout=120_000)
            assert output.count() == 2
            assert page.locator(".llmfs-output mark").count() > 0   # the adapter's words that differ are marked
            expect(page.get_by_text("A · second *name*")).to_be_visible()
            page.get_by_text("A · second *name*").scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "l15-compare.png"), full_page=True)
        except BaseException:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
