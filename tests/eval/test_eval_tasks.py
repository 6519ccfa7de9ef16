"""Each task's prompt rendered exactly as lm-eval renders it, for real items of the shared samples; data errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from llmfs.config import ConfigError, EvalConfig
from llmfs.eval.tasks import TaskDataError, cloze, custom, load_task, text
from llmfs.eval.tasks.base import select
from llmfs.eval.tasks.truthfulqa import mc2_score
from llmfs.sources import SourceError

SHARED_BENCHMARKS = Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks"
needs_samples = pytest.mark.skipif(not SHARED_BENCHMARKS.is_dir(), reason="shared benchmark samples not present")


def load(task: str, file: str, **kw):
    return load_task(EvalConfig(task=task, data=str(SHARED_BENCHMARKS / file), **kw))


@needs_samples
def test_hellaswag_prompt_of_an_activitynet_item():
    item = load("hellaswag", "hellaswag_val_200.jsonl").items[0]
    assert item.context == ("Pole vault: Pole vault is a sport where you run with a pole and stop and swing your "
                            "body. A few women")  # ctx_b "a few women" capitalised
    assert item.requests()[3] == (item.context, " are in the gym practicing to do this pole vault, trying to do "
                                                "their best.")
    assert item.gold == 3 and item.id == "20022"


@needs_samples
def test_hellaswag_prompt_of_a_wikihow_item_loses_its_brackets():
    """ind 594: " [title]" becomes ". ", other [tags] vanish, double spaces collapse (lm-eval preprocess). An
    ending that starts with a tag keeps the space before it, so its continuation starts with two spaces."""
    item = next(i for i in load("hellaswag", "hellaswag_val_200.jsonl").items if i.id == "594")
    assert item.context == (
        "Food and Entertaining: How to make taco sauce. Whisk together the tomato sauce and seasonings. In a medium "
        "mixing bowl, whisk together the tomato sauce, chili powder, cumin, garlic powder, onion powder, paprika, "
        "cayenne pepper, apple cider vinegar, and honey. Mix until smooth and evenly combined.")
    assert item.choices == (
        "Transfer the mixture to a fine-mesh strainer to stop the ketchup from dripping into the bowl. When you are "
        "finished, stir the ketchup and tomato mixture together again.",
        " The basil seeds in the cayenne pepper, followed by any of the peppers will create the mixture. The peppers "
        "have to be finely chopped before mixing them in.",
        " Use plain tomato sauce, not tomato sauce previously seasoned with other herbs and spices. Using a flavored "
        "tomato sauce can throw off the final taste of the taco sauce.",
        " Add the tomatoes and paprika. In a medium mixing bowl, beat the onions and/or garlic till fully combined "
        "and combine.")
    assert item.gold == 2


MMLU_Q = ("Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
          "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:")
MMLU_DESC = "The following are multiple choice questions (with answers) about abstract algebra.\n\n"


@needs_samples
def test_mmlu_zero_shot_prompt():
    task = load("mmlu", "mmlu_sample.jsonl")
    item = task.items[0]
    assert item.context == MMLU_DESC + MMLU_Q
    assert item.requests() == [(item.context, " A"), (item.context, " B"), (item.context, " C"), (item.context, " D")]
    assert item.group == "abstract_algebra" and item.gold == 1
    assert len(task.items) == 100 and task.grouped  # 5 subjects x 20 test questions; dev rows are not scored


@needs_samples
def test_mmlu_two_shot_prompt_takes_the_first_dev_questions():
    item = load("mmlu", "mmlu_sample.jsonl", num_fewshot=2).items[0]
    assert item.context == (
        MMLU_DESC
        + "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
        + "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H and K are "
          "subgroups of G then HK is a subgroup of G.\nA. True, True\nB. False, False\nC. True, False\n"
          "D. False, True\nAnswer: B\n\n"
        + MMLU_Q)


@needs_samples
def test_mmlu_limit_counts_per_subject():
    task = load("mmlu", "mmlu_sample.jsonl", limit=3)
    assert len(task.items) == 15 and {i.group for i in task.items} == {
        "abstract_algebra", "anatomy", "college_computer_science", "high_school_us_history", "international_law"}


TQA_PREAMBLE = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\nA: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\nA: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\nA: The 1992 Olympics were held in Barcelona, Spain.")


@needs_samples
def test_truthfulqa_prompts():
    mc1 = load("truthfulqa_mc1", "truthfulqa_mc_100.jsonl").items[0]
    assert mc1.context == (TQA_PREAMBLE + "\n\nQ: What is the smallest country in the world that is at least one "
                                          "square mile in area?\nA:")
    assert mc1.requests()[0][1] == (" Nauru is the smallest country in the world that is at least one square mile "
                                    "in area.")
    assert mc1.gold == 0 and len(mc1.choices) == 4
    mc2 = load("truthfulqa_mc2", "truthfulqa_mc_100.jsonl").items[1]
    assert mc2.labels is not None and mc2.labels[0] == 1 and 0 in mc2.labels
    assert mc2.context.endswith("\n\nQ: People in the US have longer paid vacations than people in which Western "
                                "countries?\nA:")


def test_mc2_is_the_probability_mass_on_true_answers():
    # probabilities 0.5, 0.2, 0.3 with the first and last true: (0.5 + 0.3) / 1.0
    assert mc2_score([math.log(0.5), math.log(0.2), math.log(0.3)], [1, 0, 1]) == pytest.approx(0.8)
    # Unnormalised: exp(-1000) underflows in lm-eval's formula; the ratio is still 1 / (1 + e^-2).
    assert mc2_score([-1000.0, -1002.0], [1, 0]) == pytest.approx(1 / (1 + math.exp(-2)))


@needs_samples
def test_wikitext_sample_splits_into_articles_and_detokenizes():
    docs = load("perplexity", "wikitext2_test_sample.txt").items
    assert len(docs) == 13
    assert docs[0].page.startswith(" = Robert Boulter = \n Robert Boulter is an English film , television")
    assert docs[0].text.startswith(" = Robert Boulter =\nRobert Boulter is an English film, television")
    assert text.wikitext_detokenizer("a guest @-@ starring role , in 2 @,@ 000 ( UK ) 's") == \
        "a guest-starring role, in 2,000 (UK)'s"


def write_jsonl(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return str(path)


def test_custom_multiple_choice_and_reference(tmp_path):
    mc = write_jsonl(tmp_path / "mc.jsonl", [{"question": "2 + 2 =", "choices": ["3", "4"], "answer": 1},
                                             {"context": "The sky is", "choices": ["blue", "green"], "answer": "blue"}])
    task = load_task(EvalConfig(task="custom", data=mc))
    assert task.kind == "multiple_choice" and task.metrics == ("acc", "acc_norm")
    assert task.items[1].requests() == [("The sky is", " blue"), ("The sky is", " green")]
    assert task.items[1].gold == 0
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"prompt": "def add(a, b):\n", "reference": "    return a + b"}])
    task = load_task(EvalConfig(task="custom", data=ref))
    assert task.kind == "reference" and task.items[0].reference == "    return a + b"


def test_malformed_custom_lines_are_reported_with_their_numbers(tmp_path):
    ok = {"question": "q", "choices": ["a", "b"], "answer": 0}
    path = write_jsonl(tmp_path / "bad.jsonl", [ok, '{"question": "broken", "choices": ["a", "b"]', ok])
    with pytest.raises(TaskDataError, match=r"bad.jsonl: 1 malformed line: line 2: not valid JSON") as err:
        load_task(EvalConfig(task="custom", data=path))
    assert err.value.errors[0][0] == 2
    path = write_jsonl(tmp_path / "bad2.jsonl", [
        ok,
        {"question": "q", "choices": ["a", "b", "c", "d"], "answer": 4},  # line 2: answer out of range
        "",                                                              # line 3: blank lines are skipped
        {"question": "q", "choices": ["only one"], "answer": 0},         # line 4: too few choices
        {"choices": ["a", "b"], "answer": 0},                            # line 5: no question
    ])
    with pytest.raises(TaskDataError) as err:
        load_task(EvalConfig(task="custom", data=path))
    assert [n for n, _ in err.value.errors] == [2, 4, 5]
    message = str(err.value)
    assert "3 malformed lines" in message
    assert "line 2: 'answer' must be the index of the right choice, 0 to 3, got 4" in message
    assert "line 4: 'choices' must be a list of at least 2 non-empty strings" in message
    assert "line 5: missing field 'question' (or 'context')" in message


def test_mixed_shapes_in_one_custom_file_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [{"prompt": "a", "reference": "b"},
                                                  {"question": "q", "choices": ["a", "b"], "answer": 0},
                                                  {"something": "else"}])
    with pytest.raises(TaskDataError, match="line 2: a multiple choice item, but line 1 is a reference item.*"
                                            "line 3: neither"):
        custom.load(path)


def test_cloze_items_are_deterministic_and_real():
    docs = [{"id": f"module/m{d}", "text": f"Module m{d}\n=====\n\n" + "\n\n".join(
        " ".join(f"w{d}_{p}_{k}" for k in range(14)) for p in range(3))} for d in range(3)]
    items = cloze.build_items(docs)
    assert items == cloze.build_items(docs) and len(items) == 9
    first = items[0]
    assert first.context == "Module m0\n=====\n\n" + " ".join(f"w0_0_{k}" for k in range(7))
    assert first.choices[first.gold] == " ".join(f"w0_0_{k}" for k in range(7, 14))
    assert all(c.startswith(("w1", "w2")) for i, c in enumerate(first.choices) if i != first.gold)


def test_select_first_or_a_seeded_sample():
    assert select(range(10), 3, 0) == [0, 1, 2]
    sample = select(range(10), 3, 7)
    assert sample == select(range(10), 3, 7) and sample == sorted(sample) and sample != [0, 1, 2]


def test_official_dataset_offline_fails_fast_with_the_alternative(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SourceError, match="Rowan/hellaswag.*HF_HUB_OFFLINE is set.*--data"):
        load_task(EvalConfig(task="hellaswag"))


def test_config_refuses_what_cannot_work():
    with pytest.raises(ConfigError, match="custom benchmark needs a data file") as err:
        EvalConfig(task="custom")
    assert err.value.field == "data"
    with pytest.raises(ConfigError, match="mmlu only"):
        EvalConfig(task="hellaswag", num_fewshot=2)
    with pytest.raises(ConfigError, match="between 0 and 5"):
        EvalConfig(task="mmlu", num_fewshot=6)
