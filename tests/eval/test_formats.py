"""The benchmark formats L14 shows, its example files, and HellaSwag rows in the format its help describes."""

from __future__ import annotations

import json

import pytest

from llmfs import uploads
from llmfs.config import EvalConfig
from llmfs.eval.tasks import FORMATS, TASK_INFO, example_files, load_task
from llmfs.eval.tasks.hellaswag import doc_to_item

ENDINGS = ["scrubs the plates.", "drives the sink away.", "paints the soap.", "sings to a sponge."]
OFFICIAL = {"ind": 7, "activity_label": "Washing dishes", "ctx_a": "A woman fills a sink with hot water.",
            "ctx_b": "she", "ctx": "A woman fills a sink with hot water. she", "endings": ENDINGS, "label": "0"}


def test_a_hellaswag_row_with_ctx_alone_is_read_as_the_format_says():
    """{"activity_label", "ctx", "endings", "label"}, what the page describes, is a question like an official one."""
    mine = doc_to_item({"activity_label": "Washing dishes", "ctx": "A woman fills a sink with hot water. She",
                        "endings": ENDINGS, "label": 0})
    official = doc_to_item(OFFICIAL)
    assert mine.context == "Washing dishes: A woman fills a sink with hot water. She"
    assert (mine.context, mine.choices, mine.gold) == (official.context, official.choices, official.gold)


def test_official_hellaswag_rows_keep_lm_evals_context():
    """A hub row has ctx too (ctx_b not capitalised): ctx_a + " " + ctx_b.capitalize() is what is scored."""
    assert doc_to_item(OFFICIAL).context == "Washing dishes: A woman fills a sink with hot water. She"
    assert doc_to_item({**OFFICIAL, "ctx": "something else"}).context.endswith("hot water. She")


@pytest.mark.parametrize("row, message", [
    ({"activity_label": "x", "endings": ENDINGS, "label": 0}, "missing field 'ctx'"),
    ({"activity_label": "x", "ctx": "y", "endings": ENDINGS, "label": 4}, "'label' must be the index of the right "
                                                                           "ending, 0 to 3, got 4"),
    ({"activity_label": "x", "ctx": "y", "endings": ENDINGS, "label": "two"}, "0 to 3, got 'two'"),
])
def test_hellaswag_rows_that_cannot_be_scored_say_why(row, message):
    with pytest.raises(ValueError, match=message):
        doc_to_item(row)


def test_every_benchmark_with_a_file_has_a_format_and_example_files():
    assert set(FORMATS) == set(TASK_INFO) - {"llmfs-cloze"} == set(uploads.BENCHMARK_TASKS)
    for task in FORMATS:
        assert FORMATS[task] and all(fields for _, fields in FORMATS[task])
        assert example_files(task), task
    assert [name for _, name, _ in example_files("custom")] == ["custom_multiple_choice.jsonl",
                                                                 "custom_prompt_reference.jsonl"]
    fields = {name for _, shape in FORMATS["hellaswag"] for name, _ in shape}
    assert fields == {"activity_label", "ctx", "endings", "label"}   # what the page shows is what a file needs


@pytest.mark.parametrize("task", sorted(FORMATS))
def test_example_files_pass_the_upload_check_and_load(llmfs_home, task):
    for _, name, data in example_files(task):
        path = uploads.save_upload(name, data, kind="benchmark", task=task)
        loaded = load_task(EvalConfig(task=task, data=str(path), num_fewshot=1 if task == "mmlu" else 0))
        assert len(loaded.items) >= 2 if task != "perplexity" else len(loaded.items) == 1


def test_the_hellaswag_example_holds_a_line_with_ctx_alone():
    rows = [json.loads(line) for line in example_files("hellaswag")[0][2].decode().splitlines()]
    assert any("ctx" in r and "ctx_a" not in r for r in rows) and any("ctx_a" in r for r in rows)


def test_a_refused_benchmark_upload_quotes_its_format(llmfs_home):
    data = json.dumps({"activity_label": "x", "context": "y", "endings": ENDINGS, "label": 0}).encode() + b"\n"
    with pytest.raises(uploads.UploadError) as e:
        uploads.save_upload("mine.jsonl", data, kind="benchmark", task="hellaswag")
    message = str(e.value)
    assert "line 1: missing field 'ctx'" in message
    assert "see the format above" not in message
    first_example = example_files("hellaswag")[0][2].decode().splitlines()[0]
    assert f"in the hellaswag format, for example:\n{first_example}" in message
    assert not (llmfs_home / "uploads" / "mine.jsonl").exists()
