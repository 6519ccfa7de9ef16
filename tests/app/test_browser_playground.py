"""The Playground in a real browser on llmfs-tiny with an adapter: a chat message answered by the base and the
adapter side by side, every token a span whose hover text lists the alternatives, the token chart, then a continued
text. (Stop needs an answer slower than llmfs-tiny writes one: AppTest covers what a stopped answer keeps.)"""

from __future__ import annotations

import os
from pathlib import Path

import apphelpers  # tests/app is on sys.path
import pytest
from apphelpers import browser_page, serve
from test_l15 import make_adapter

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def served_app(home_with_default, tmp_path):
    apphelpers.need_browser()
    make_adapter(home_with_default, name="my-adapter")
    with serve(home_with_default, tmp_path / "streamlit.log") as url:
        yield url, home_with_default


def test_base_and_adapter_answer_side_by_side_with_the_token_view(served_app, tmp_path):
    from playwright.sync_api import expect
    url, home = served_app
    shots = Path(os.environ.get("LLMFS_SHOTS", tmp_path))
    with browser_page(home) as page:
        page.goto(url + "/playground")
        expect(page.get_by_text("Your messages reach the model").first).to_be_visible()
        page.locator('[data-testid="stMultiSelect"]').filter(has_text="Adapters to compare").click()
        page.get_by_role("option", name="my-adapter").click()
        page.keyboard.press("Escape")
        expect(page.get_by_text("Adapter · my-adapter")).to_be_visible()

        box = page.get_by_placeholder("Message the models")
        box.fill("What does <b>str.split</b> do?")
        box.press("Enter")
        expect(page.get_by_text("Look at one token").first).to_be_visible()
        answers = page.locator(".llmfs-tokens")
        expect(answers).to_have_count(2)
        base, adapted = (answers.nth(i).inner_text() for i in range(2))
        assert base and adapted and base != adapted   # the adapter's random B changes the answer
        expect(page.get_by_text("What does <b>str.split</b> do?").first).to_be_visible()  # shown as text
        first = answers.nth(0).locator(".tok").first
        assert first.get_attribute("title").startswith("#1: ")
        assert "The model's top choices here:" in first.get_attribute("title")
        expect(page.locator(".js-plotly-plot").first).to_be_visible()   # the chart of one token
        page.screenshot(path=str(shots / "playground-chat.png"))

        page.get_by_test_id("stRadioGroup").get_by_text("Continue text").click()
        page.get_by_role("button", name="Generate").click()
        expect(page.locator(".llmfs-tokens .prompt")).to_have_count(2)
        expect(page.get_by_role("button", name="Stop")).to_have_count(0)   # both continuations written
        expect(page.locator(".llmfs-tokens .cursor")).to_have_count(0)
        page.screenshot(path=str(shots / "playground-continue.png"))
