"""The Playground page on the built llmfs-tiny (AppTest): chat and continue-text answers with the token view, the
base and an adapter side by side on one seed, answers equal to `llmfs.generate.reply`'s (text and probabilities),
seeded repeats, refusals in place (an unreachable hub id, too many new tokens), a stopped answer kept, and in a
workshop only the participant's own adapters."""

from __future__ import annotations

import html
import json
import re

import apphelpers  # tests/app is on sys.path
import pytest
from apphelpers import texts
from streamlit.testing.v1 import AppTest
from test_l15 import make_adapter
from test_workshop_ui import open_as, workshop_limits

from app import token_view
from llmfs import adapters as ad
from llmfs.generate import SampleConfig

pytestmark = pytest.mark.usefixtures("router_on_every_run")  # see tests/app/conftest.py

PAGE = "pages/playground.py"
PROMPT = "To open a file in Python,"


def open_page() -> AppTest:
    return apphelpers.open_page(PAGE, timeout=120)


def answers(at: AppTest) -> list[str]:
    """Each column's newest answer as a reader sees it (the greyed prompt of a continuation left out)."""
    bodies = [h.proto.body for h in at.get("html") if 'class="llmfs-tokens' in h.proto.body]
    return [html.unescape(re.sub(r"<[^>]+>", "", re.sub(r'<span class="prompt">.*?</span>', "", b, flags=re.S)))
            for b in bodies]


def titles(at: AppTest) -> list[list[str]]:
    """The hover text of every token, per answer."""
    return [[html.unescape(t) for t in re.findall(r'title="([^"]*)"', h.proto.body)]
            for h in at.get("html") if 'class="llmfs-tokens' in h.proto.body]


def continue_text(at: AppTest, prompt: str = PROMPT, tokens: int = 16, seed: int = 3) -> AppTest:
    at.radio(key="play.mode").set_value("Continue text").run()
    at.text_area(key="play.prompt").input(prompt)
    at.number_input(key="play.sample.max_new_tokens").set_value(tokens)
    at.number_input(key="play.sample.seed").set_value(seed).run()
    at.button(key="play.go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def reference(prompt: str, cfg: SampleConfig, adapter=None) -> dict:
    """What `llmfs.generate.reply` gives for the prompt on a fresh copy of llmfs-tiny (with the adapter on)."""
    from llmfs.generate import reply
    from llmfs.lora import load_adapter_into
    from llmfs.weights import load_pretrained
    model, tokenizer = load_pretrained("llmfs-tiny")
    if adapter is not None:
        load_adapter_into(model, adapter.path)
    return reply(model.eval(), tokenizer, prompt=prompt, cfg=cfg, top_n=5)


def test_a_new_user_sees_the_model_the_chat_box_and_no_error(home_with_default):
    at = open_page()
    assert at.title[0].value == "Playground"
    assert at.selectbox(key="play.model.kind").value == "llmfs-tiny"
    assert at.radio(key="play.mode").value == "Chat"
    assert not at.chat_input(key="play.input").disabled
    assert not at.error and not at.warning
    assert "No adapter fits llmfs-tiny yet" in texts(at.caption)
    assert "plain User: / Assistant: template" in apphelpers.unescaped(texts(at.caption))
    assert "Its answers appear here." in texts(at.caption)
    assert at.button(key="play.clear").disabled   # nothing to clear yet
    assert not at.get("plotly_chart")


def test_chat_answer_streams_into_the_token_view(home_with_default):
    at = open_page()
    at.chat_input(key="play.input").set_value("What does <b>str.split</b> do?").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "What does \\<b\\>str.split\\</b\\> do?" in texts(at.markdown)   # the message shown as text
    (answer,), (hovers,) = answers(at), titles(at)
    assert answer and hovers and hovers[0].startswith("#1: ")
    assert "The model's top choices here:" in hovers[0]
    assert re.search(r"\d+ tokens", texts(at.caption))
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert chart["layout"]["xaxis"]["title"]["text"] == "probability"
    assert not at.button(key="play.clear").disabled
    # a second message: the conversation goes on (the first answer stays above it)
    at.chat_input(key="play.input").set_value("And str.join?").run()
    assert len(answers(at)) == 2 and answers(at)[0] == answer
    at.button(key="play.clear").click().run()
    assert answers(at) == [] and "Its answers appear here." in texts(at.caption)


def test_shown_text_and_probabilities_are_the_replys(home_with_default):
    """The continuation shown, each token's hover and the chart of the token looked at are exactly what
    llmfs.generate.reply gives for the same prompt and settings."""
    at = continue_text(open_page(), tokens=16, seed=3)
    ref = reference(PROMPT, SampleConfig(max_new_tokens=16, seed=3))
    assert answers(at) == [ref["text"]]
    (hovers,) = titles(at)
    assert len(hovers) == len(ref["tokens"])
    for n, (hover, token) in enumerate(zip(hovers, ref["tokens"]), 1):
        assert hover == token_view.hover_text(n, token)
    # the token view starts at the least likely token; its bars are the model's probabilities there
    n = min(range(len(ref["tokens"])), key=lambda i: ref["tokens"][i]["prob"]) + 1
    slider = at.select_slider[0]
    assert slider.value == n
    bars = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert sorted(bars["x"], reverse=True) == [r["prob"] for r in token_view.alternatives(ref["tokens"][n - 1])]
    slider.set_value(1).run()
    bars = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert sorted(bars["x"], reverse=True) == [r["prob"] for r in token_view.alternatives(ref["tokens"][0])]
    assert f"the model gave it **{token_view.percent(ref['tokens'][0]['prob'])}**" in texts(at.markdown)


def test_a_seed_repeats_its_answer_and_another_seed_changes_it(home_with_default):
    at = continue_text(open_page(), tokens=24, seed=7)
    first = answers(at)
    at.button(key="play.go").click().run()
    assert answers(at) == first
    at.number_input(key="play.sample.seed").set_value(8).run()
    at.button(key="play.go").click().run()
    assert answers(at) != first


def test_greedy_hides_the_sampling_fields_and_takes_the_likeliest_tokens(home_with_default):
    at = open_page()
    at.toggle(key="play.greedy").set_value(True).run()
    assert not [n for n in at.number_input if n.key in ("play.sample.temperature", "play.sample.seed")]
    at.radio(key="play.mode").set_value("Continue text").run()
    at.number_input(key="play.sample.max_new_tokens").set_value(12).run()
    at.button(key="play.go").click().run()
    ref = reference(PROMPT, SampleConfig(max_new_tokens=12, temperature=0.0))
    assert answers(at) == [ref["text"]]
    assert all(t["prob"] == max(a["prob"] for a in t["top"]) for t in ref["tokens"])   # greedy: each the top one
    assert "Sampling: greedy, up to 12 new tokens" in texts(at.caption)


def test_a_busy_server_says_it_waits_for_a_free_slot(home_with_default):
    """Every generation slot taken (by other people): the answer waits, then comes, and the page says it waited."""
    import threading

    from app import served_models
    at = open_page()
    slots = served_models.slots()
    for _ in range(served_models.SLOTS):
        assert slots.acquire(timeout=5)

    def others_finish():
        for _ in range(served_models.SLOTS):
            slots.release()
    threading.Timer(2.0, others_finish).start()
    at.chat_input(key="play.input").set_value("Hello").run()
    assert not at.exception and len(answers(at)) == 1
    assert re.search(r"Waited [0-9]+ s for a free slot\.", texts(at.caption))


def test_base_and_adapter_side_by_side_on_one_seed(home_with_default):
    info = make_adapter(home_with_default)
    at = open_page()
    assert at.multiselect(key="play.adapters").options == ["my-adapter"]
    at.multiselect(key="play.adapters").set_value([info.id]).run()
    at = continue_text(at, tokens=12, seed=5)
    heads = [m.value for m in at.markdown if m.value.startswith("**Base model") or m.value.startswith("**Adapter")]
    assert heads == ["**Base model · llmfs-tiny**", "**Adapter · my-adapter**"]
    cfg = SampleConfig(max_new_tokens=12, seed=5)
    base, adapted = answers(at)
    assert base == reference(PROMPT, cfg)["text"]
    assert adapted == reference(PROMPT, cfg, adapter=info)["text"]
    assert base != adapted   # the adapter's random B changes what is written
    # the token view asks whose answer to look at
    assert at.selectbox(key="play.look.variant").options == ["Base model · llmfs-tiny", "Adapter · my-adapter"]


def test_a_stopped_answer_stays_with_its_tokens(home_with_default):
    """A rerun during an answer (Stop, or any click) leaves it "running" in session_state: the next run keeps
    what was written and says it stopped."""
    at = continue_text(open_page(), tokens=10)
    written = answers(at)
    convo = at.session_state["play.convo.Continue text"]
    convo["status"], convo["stop_asked"] = "running", True
    convo["turns"][-1]["replies"]["base"]["finish"] = None
    at.session_state["play.convo.Continue text"] = convo
    at.run()
    assert answers(at) == written
    assert "Stopped: what was written so far stays above." in texts(at.caption)
    assert "10 tokens · stopped" in texts(at.caption)


def test_unreachable_hub_id_and_too_many_tokens_are_refused_in_place(home_with_default):
    at = open_page()
    at.number_input(key="play.sample.max_new_tokens").set_value(300).run()
    assert "at most 256 here" in texts(at.error) and at.chat_input(key="play.input").disabled
    at.selectbox(key="play.model.kind").set_value("hub").run()
    at.text_input(key="play.model.hub").input("someone/not-here").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Could not load" in texts(at.error) and "not-here" in apphelpers.unescaped(texts(at.error))
    assert [b.label for b in at.button if b.key == "play.retry"] == ["Try again"]
    assert not at.get("chat_input")   # nothing to chat with yet
    at.button(key="play.retry").click().run()   # asked again, refused again: one message, one button
    assert not at.exception and len(at.error) == 1 and "Could not load" in texts(at.error)
    assert [b.label for b in at.button if b.key == "play.retry"] == ["Try again"]


def test_workshop_lists_only_the_participants_adapters(home_with_default):
    workshop_limits(home_with_default)
    made = make_adapter(home_with_default, "made-here")   # nobody's: a participant does not get it
    anas = ad.import_folder(made.path, name="anas-adapter", user="ana")
    ad.import_folder(made.path, name="bens-adapter", user="ben")
    at = open_as("ana", PAGE)
    assert at.multiselect(key="play.adapters").options == ["anas-adapter"]
    at.multiselect(key="play.adapters").set_value([anas.id]).run()
    at.chat_input(key="play.input").set_value("Hello").run()
    assert not at.exception and len(answers(at)) == 2


def test_a_runs_saved_model_answers(home_with_default, seed):
    """A finished run's model/ folder is offered under "A model you trained or saved" and answers like any other."""
    import shutil

    from llmfs.bootstrap import DefaultAssets
    run_id = seed(owner="l15")
    model = home_with_default / "runs" / run_id / "model"
    shutil.copytree(DefaultAssets(home_with_default / "default").model_dir, model)
    at = open_page()
    at.selectbox(key="play.model.kind").set_value("mine").run()
    mine = at.selectbox(key="play.model.mine")
    assert mine.value == str(model)
    assert mine.options == [f"fine-tuned {run_id.rsplit('-', 1)[-1]} (from llmfs-tiny, L15 LoRA & QLoRA)"]
    at.chat_input(key="play.input").set_value("Hello").run()
    assert not at.exception and not at.error and len(answers(at)) == 1
    assert f"**Base model · fine-tuned {run_id.rsplit('-', 1)[-1]}**" in [m.value for m in at.markdown]
