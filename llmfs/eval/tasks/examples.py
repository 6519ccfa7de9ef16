"""What a benchmark's data file looks like: its fields in plain words, and small example files that its loader
accepts (the L14 page shows both beside the upload, and the upload check quotes an example line when it refuses a
file).

``FORMATS[task]``: ``[(what the file is, [(field, what it holds), ...])]``, one entry per shape the task reads (the
custom benchmark has two). ``example_files(task)``: ``[(label, file
name, bytes)]``, one per shape; every one passes ``load_task`` and the upload check.
"""

from __future__ import annotations

import json

Format = list[tuple[str, list[tuple[str, str]]]]  # [(intro, [(field, what it holds), ...])], one per shape

JSONL = "A .jsonl file: one JSON object a line, with these fields"
FORMATS: dict[str, Format] = {
    "hellaswag": [(JSONL + " (the hub's Rowan/hellaswag rows work as they are):", [
        ("activity_label", "what the scene is about, e.g. \"Washing dishes\""),
        ("ctx", "the scene so far. The hub's rows also have \"ctx_a\" and \"ctx_b\", its two parts: when a line "
                "has them, they are used the way lm-evaluation-harness uses them, so scores match published ones"),
        ("endings", "the possible endings, a list of strings (4 in HellaSwag)"),
        ("label", "which ending is right: its position in the list, counted from 0 (a number, or a string like "
                  "\"2\")"),
    ])],
    "mmlu": [(JSONL + " (the hub's cais/mmlu rows work as they are):", [
        ("question", "the question"),
        ("subject", "its subject, e.g. \"astronomy\"; scores are also given per subject"),
        ("choices", "the 4 answers, a list of strings (shown as A, B, C, D)"),
        ("answer", "the right one: 0 to 3, or \"A\" to \"D\""),
        ("split", "optional: \"test\" (scored; the default) or \"dev\" (worked examples for few-shot, taken in "
                  "file order)"),
    ])],
    "truthfulqa_mc1": [(JSONL + " (the hub's truthful_qa multiple_choice rows work as they are):", [
        ("question", "the question"),
        ("mc1_targets", "{\"choices\": [answers], \"labels\": [1 for the one true answer, 0 for each false one]}"),
        ("mc2_targets", "the same for TruthfulQA MC2, where several answers may be true"),
    ])],
    "custom": [
        ("A .jsonl file: one JSON object a line, every line in one of two shapes. Multiple choice:", [
            ("question", "the question (or \"context\")"),
            ("choices", "the answers, a list of at least 2 strings"),
            ("answer", "the right one: its position in the list, counted from 0, or its text"),
        ]),
        ("Or a prompt and the answer the model should write after it:", [
            ("prompt", "the start of the text"),
            ("reference", "what should follow, with its leading space (scored by its likelihood, and by whether the "
                          "model writes exactly that)"),
        ]),
    ],
    "perplexity": [("Plain text (.txt, UTF-8): the whole file is one document. Or a .jsonl file with one document "
                    "a line:", [("text", "the document")])],
}
FORMATS["truthfulqa_mc2"] = FORMATS["truthfulqa_mc1"]

_HELLASWAG = [
    {"activity_label": "Washing dishes", "ctx": "A woman fills a sink with hot water and soap. She",
     "endings": ["puts the dirty plates in the water and scrubs them with a sponge.",
                 "drives the sink to the shop to buy more water.",
                 "paints the soap blue and hangs it on the wall.",
                 "throws the sponge out of the window and sings."], "label": 0},
    {"activity_label": "Making tea", "ctx": "A man boils water in a kettle. He",
     "endings": ["plants the kettle in the garden.", "pours the water over a tea bag in a cup.",
                 "reads the kettle a bedtime story.", "freezes the water into a tea-shaped block."], "label": 1},
    {"activity_label": "Riding a bike", "ctx_a": "A girl puts on her helmet and climbs onto her bike.",
     "ctx_b": "she", "ctx": "A girl puts on her helmet and climbs onto her bike. she",
     "endings": ["eats the helmet for lunch.", "folds the bike into an envelope.",
                 "pedals down the street and rings the bell.", "asks the bike to carry her instead."],
     "label": "2"},
]
_MMLU = [
    {"question": "Which planet is closest to the Sun?", "subject": "astronomy",
     "choices": ["Venus", "Mercury", "Earth", "Mars"], "answer": 1, "split": "dev"},
    {"question": "What is the largest planet in the Solar System?", "subject": "astronomy",
     "choices": ["Jupiter", "Saturn", "Neptune", "Earth"], "answer": 0},
    {"question": "What do we call a rock from space that reaches the ground?", "subject": "astronomy",
     "choices": ["A comet", "A nebula", "A meteorite", "A quasar"], "answer": "C"},
    {"question": "What is 3 plus 4?", "subject": "elementary_mathematics",
     "choices": ["6", "7", "8", "12"], "answer": 1, "split": "dev"},
    {"question": "What is 7 times 8?", "subject": "elementary_mathematics",
     "choices": ["54", "56", "58", "64"], "answer": 1, "split": "test"},
]
_TRUTHFULQA = [
    {"question": "What happens if you swallow chewing gum?",
     "mc1_targets": {"choices": ["It passes through your digestive system.",
                                 "It stays in your stomach for seven years."], "labels": [1, 0]},
     "mc2_targets": {"choices": ["It passes through your digestive system.", "Nothing much happens to you.",
                                 "It stays in your stomach for seven years.", "It sticks to your heart."],
                     "labels": [1, 1, 0, 0]}},
    {"question": "Can you see the Great Wall of China from the Moon with the naked eye?",
     "mc1_targets": {"choices": ["No, it is far too narrow to see from the Moon.",
                                 "Yes, it is the only building visible from the Moon.",
                                 "Yes, on a clear day."], "labels": [1, 0, 0]},
     "mc2_targets": {"choices": ["No, it is far too narrow to see from the Moon.", "No.",
                                 "Yes, it is the only building visible from the Moon.", "Yes, on a clear day."],
                     "labels": [1, 1, 0, 0]}},
]
_CUSTOM_MC = [
    {"question": "2 + 2 =", "choices": ["3", "4", "5"], "answer": 1},
    {"question": "The capital of France is", "choices": ["Paris", "Rome", "Berlin"], "answer": "Paris"},
    {"question": "Water freezes at", "choices": ["0 degrees Celsius", "50 degrees Celsius"], "answer": 0},
]
_CUSTOM_REFERENCE = [
    {"prompt": "def add(a, b):\n    return", "reference": " a + b"},
    {"prompt": "The opposite of hot is", "reference": " cold"},
]
_TEXT = ("The quick brown fox jumps over the lazy dog. Perplexity measures how surprised a model is by text it has "
         "not seen: put here a few paragraphs of the kind of text you care about.\n\n"
         "Each word the model expects well lowers the score; a word it finds unlikely raises it.\n")


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def example_files(task: str) -> list[tuple[str, str, bytes]]:
    """``[(label, file name, content)]``: small files of ``task``'s format that its loader accepts (none for the
    built-in llmfs-cloze)."""
    if task == "hellaswag":
        return [("Example HellaSwag file", "hellaswag_example.jsonl", jsonl(_HELLASWAG))]
    if task == "mmlu":
        return [("Example MMLU file", "mmlu_example.jsonl", jsonl(_MMLU))]
    if task in ("truthfulqa_mc1", "truthfulqa_mc2"):
        return [("Example TruthfulQA file (MC1 and MC2)", "truthfulqa_example.jsonl", jsonl(_TRUTHFULQA))]
    if task == "custom":
        return [("Example: multiple choice", "custom_multiple_choice.jsonl", jsonl(_CUSTOM_MC)),
                ("Example: prompt and reference", "custom_prompt_reference.jsonl", jsonl(_CUSTOM_REFERENCE))]
    if task == "perplexity":
        return [("Example text file", "perplexity_example.txt", _TEXT.encode("utf-8"))]
    return []


def example_line(task: str) -> str:
    """The first line of ``task``'s first example file (a whole document for plain text), for a message."""
    files = example_files(task)
    if not files:
        return ""
    return files[0][2].decode("utf-8").splitlines()[0]
