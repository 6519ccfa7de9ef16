"""Issue 18 in a real browser: on L15's "Teach it a task", train an adapter on the built-in chat examples (Python
questions and answers) for llmfs-tiny, see the run finish with what the adapter changed, then in step 3 send a
message and see the base model and the new adapter answer it side by side, differently."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from apphelpers import browser_page, set_number, wait_for  # tests/app is on sys.path

from llmfs.runs import list_runs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MESSAGE = "What does <b>str.split</b> do?"   # markup in it must come back as text, not as bold
# A few steps at a high rate for llmfs-tiny (the form's 0.001 suits longer runs): with LoRA's B starting at zero, a
# handful of small steps can leave the sampled answer unchanged; these move the weights enough that the two
# answers to the same message differ, while the run still takes seconds.
STEPS, BATCH, LR = 10, 4, "0.01"


def test_train_on_chat_examples_then_base_and_adapter_answer_side_by_side(served_app, tmp_path):
    from playwright.sync_api import expect
    url, home = served_app
    shots = Path(os.environ.get("LLMFS_SHOTS", tmp_path))
    with browser_page(home) as page:
        page.goto(url + "/l15_lora")
        page.get_by_role("tab", name="Teach it a task").click()
        expect(page.get_by_text("1 · Pick the examples to learn from")).to_be_visible()
        # step 1: the built-in examples stay picked; the model is llmfs-tiny (built in this home)
        expect(page.get_by_role("radio", name=re.compile("Questions and answers about Python"))).to_be_checked()
        page.get_by_text("llmfs-tiny: a tiny practice model").click()
        expect(page.get_by_role("radio", name=re.compile("llmfs-tiny"))).to_be_checked()
        expect(page.get_by_text(re.compile(r"\d+ examples in chat format")).first).to_be_visible()   # the preview

        # step 2: a short run, then Start
        set_number(page, "Training steps", str(STEPS))
        set_number(page, "Learning rate", LR)
        page.get_by_text("More settings").click()
        set_number(page, "Examples per step", str(BATCH))
        start = page.get_by_role("button", name="Start teaching")
        wait_for(lambda: start.is_enabled(), 60, "the start button")
        start.click()
        expect(page.get_by_text("What the adapter changed")).to_be_visible(timeout=300_000)
        expect(page.get_by_text(f"Trained for {STEPS} steps on").first).to_be_visible()

        # step 3: the base and the adapter just trained, side by side
        expect(page.get_by_text(re.compile(r"^Base model · llmfs-tiny$"))).to_be_visible()
        expect(page.get_by_text(re.compile(r"^Adapter · "))).to_be_visible()
        box = page.get_by_placeholder("Message the models")
        box.fill(MESSAGE)
        box.press("Enter")
        expect(page.get_by_text("Look at one token").first).to_be_visible()   # both answers written
        answers = page.locator(".llmfs-tokens")
        expect(answers).to_have_count(2)
        base, adapted = (answers.nth(i).inner_text().strip() for i in range(2))
        assert base and adapted and base != adapted, (base, adapted)
        expect(page.get_by_text(MESSAGE)).to_have_count(2)   # the message, as text, in each column
        page.get_by_text(MESSAGE).first.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "teach-chat.png"))

    (run,) = list_runs(home / "runs")
    cfg, result = run.config(), run.status()["result"]
    assert run.state == "succeeded" and run.status().get("owner") == "teach"
    assert (cfg["model"], cfg["steps"], cfg["batch_size"], cfg["lr"]) == ("llmfs-tiny", STEPS, BATCH, float(LR))
    assert cfg["data"] == "llmfs-python-qa" and result["steps"] == STEPS
