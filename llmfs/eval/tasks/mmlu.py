"""MMLU (Hendrycks et al. 2021): exam questions in 57 subjects, A/B/C/D.

As lm-eval's ``mmlu`` default variant (``lm_eval/tasks/mmlu/default/_default_template_yaml`` and the per-subject
yamls; few-shot assembly in ``lm_eval/api/task.py`` ``ConfigurableTask.fewshot_context``):

    description  "The following are multiple choice questions (with answers) about {subject with spaces}.\\n\\n"
    each shot    "{question.strip()}\\nA. {A}\\nB. {B}\\nC. {C}\\nD. {D}\\nAnswer:" + " " + letter + "\\n\\n"
    the question the same block without the answer; choices " A" .. " D"

Shots are the first k questions of the subject's dev split (``fewshot_config: sampler: first_n``). Scores: acc per
subject, and overall acc weighted by the number of questions (``aggregate_metric_list: weight_by_size: True``).
"""

from __future__ import annotations

from collections import defaultdict

from .base import MCItem, Task, convert_rows, load_hub_rows, read_jsonl, require_str, require_str_list, select

HUB_PATH, HUB_NAME = "cais/mmlu", "all"
LETTERS = ("A", "B", "C", "D")


def description(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"


def doc_to_text(doc: dict) -> str:
    q, c = doc["question"].strip(), doc["choices"]
    return f"{q}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\nAnswer:"


def render_prompt(doc: dict, shots: list[dict]) -> str:
    examples = "".join(doc_to_text(s) + " " + LETTERS[s["answer"]] + "\n\n" for s in shots)
    return description(doc["subject"]) + examples + doc_to_text(doc)


def normalize(row: dict, index: int = 0) -> dict:
    """A row in cais/mmlu's schema (plus an optional ``split``), checked; ``answer`` may be an index or a letter."""
    choices = require_str_list(row, "choices")
    if len(choices) != 4:
        raise ValueError(f"MMLU questions have 4 choices, this one has {len(choices)}")
    answer = row["answer"]
    if isinstance(answer, str) and answer.strip().upper() in LETTERS:
        answer = LETTERS.index(answer.strip().upper())
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < 4:
        raise ValueError(f"'answer' must be 0-3 or A-D, got {row['answer']!r}")
    split = row.get("split", "test")
    if split not in ("test", "dev", "validation"):
        raise ValueError(f"'split' must be test, dev or validation, got {split!r}")
    return {"question": require_str(row, "question"), "subject": require_str(row, "subject"), "choices": choices,
            "answer": answer, "split": split}


def build_items(rows: list[dict], num_fewshot: int = 0, limit: int = 0, seed: int = 0) -> list[MCItem]:
    """Test questions of every subject (in file order, ``limit`` per subject), each with its subject's shots."""
    tests, devs = defaultdict(list), defaultdict(list)
    for r in rows:  # the validation split is neither scored nor used for shots (lm-eval: test, fewshot from dev)
        if r["split"] in ("test", "dev"):
            (tests if r["split"] == "test" else devs)[r["subject"]].append(r)
    items = []
    for subject in sorted(tests):
        shots = devs[subject][:num_fewshot]
        if len(shots) < num_fewshot:
            raise ValueError(f"{num_fewshot}-shot MMLU needs {num_fewshot} dev questions for {subject}; the data has "
                             f"{len(shots)}. Use fewer shots, or data with a dev split.")
        for i, doc in enumerate(select(tests[subject], limit, seed)):
            items.append(MCItem(id=f"{subject}/{i}", context=render_prompt(doc, shots), choices=LETTERS,
                                gold=doc["answer"], group=subject))
    return items


def load(data: str = "", num_fewshot: int = 0, limit: int = 0, seed: int = 0) -> Task:
    if data:
        rows = convert_rows(data, read_jsonl(data), normalize)
    else:
        rows = [normalize({**r, "split": split}) for split in ("test", "dev")
                for r in load_hub_rows(HUB_PATH, HUB_NAME, split)]
    items = build_items(rows, num_fewshot, limit, seed)
    if not items:
        raise ValueError(f"{data or HUB_PATH} has no test questions (rows with split 'test', or no split field).")
    return Task("mmlu", "multiple_choice", items, ("acc",), source=data or f"{HUB_PATH} (test; dev for shots)",
                grouped=True)
