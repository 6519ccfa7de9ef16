"""Instruction and chat examples: the data that teaches a model a task (questions and the answers it should give).

Three formats people already have, one per file, detected from the records (errors name the file and line):
- chat:    {"messages": [{"role": "system" | "user" | "assistant", "content": ...}, ...]}
- prompt:  {"prompt": ..., "response": ...} or {"prompt": ..., "completion": ...}
- alpaca:  {"instruction": ..., "input": ..., "output": ...} ("input" may be empty or absent)
in JSON Lines, a JSON list of records, or a CSV file with a header row (prompt,response / instruction,input,output /
question,answer) or two unnamed columns (prompt, then response). Every example becomes a conversation (a list of
messages), so one path renders all of them through the model's chat template (`llmfs.templates`).

Encoding marks which tokens the model learns from: by default only the assistant's (its answers and the end-of-turn
token after each), so the model learns to answer, not to write questions. `llmfs.data.example_batches` turns encoded
examples into training batches.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import PYTHON_QA
from ..errors import DataError
from ..templates import TemplateError, assistant_spans, check_messages, render
from .readers import HF_PREFIX

FORMATS = ("chat", "prompt", "alpaca")
FormatName = Literal["auto", "text", "chat", "prompt", "alpaca"]
FORMAT_WORDS = {
    "chat": 'chat ({"messages": [{"role": ..., "content": ...}, ...]})',
    "prompt": "prompt / response",
    "alpaca": "Alpaca (instruction / input / output)",
    "text": "plain text",
}
SUFFIXES = (".jsonl", ".json", ".csv")
MAX_EXAMPLES = 100_000
FIX = ('Use one format per file: chat {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", '
       '"content": "..."}]}, prompt / response {"prompt": "...", "response": "..."}, or Alpaca {"instruction": "...", '
       '"input": "...", "output": "..."}.')

# CSV header names, lower-cased, and the field each stands for
_CSV_COLUMNS = {"prompt": "prompt", "question": "prompt", "instruction": "instruction", "input": "input",
                "response": "response", "completion": "response", "answer": "response", "output": "output"}


class ExampleError(DataError):
    """Examples that cannot be read; the message names the file, the line and the fix. `where` ("line 3", "item 2",
    "row 5"), `line` and `detail` (the message after them) are set when the problem is at one place in the file."""

    def __init__(self, message: str, where: str | None = None, line: int | None = None, detail: str | None = None):
        super().__init__(message)
        self.where, self.line, self.detail = where, line, detail


def _at(path: Path, line: int, detail: str, where: str | None = None) -> ExampleError:
    """An ExampleError at one line (item, row) of `path`."""
    where = where or _where(path, line)
    return ExampleError(f"{path.name} {where}: {detail}", where, line, detail)


@dataclass(frozen=True)
class ExampleSet:
    """A file's examples as conversations, where each came from, and the format they were read in."""
    conversations: list[list[dict[str, str]]]
    format: str                       # one of FORMATS
    source: str
    lines: list[int] = field(default_factory=list)   # the line (JSONL, CSV) or item number (JSON) of each

    def __len__(self) -> int:
        return len(self.conversations)


# -- formats ------------------------------------------------------------------------------------------------------
def record_format(record: Any) -> str | None:
    """Which of FORMATS a record is in, or None (not an instruction record: plain text, or something else)."""
    if not isinstance(record, dict):
        return None
    if "messages" in record:
        return "chat"
    if "instruction" in record and "output" in record:
        return "alpaca"
    if "prompt" in record and ("response" in record or "completion" in record):
        return "prompt"
    return None


def to_messages(record: dict, fmt: str) -> list[dict[str, str]]:
    """A record of format `fmt` as a conversation.

    Raises:
        ValueError: a field missing or not text (the caller adds the file and line).
    """
    if fmt == "chat":
        messages = check_messages(record.get("messages"))
        if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
            raise ValueError("the conversation has no assistant message with text: nothing to learn from")
        return messages
    if fmt == "prompt":
        # a dataset library fills a column a row lacks with None: take the answer from whichever holds text
        response = record.get("response")
        answer_key = "response" if isinstance(response, str) or "completion" not in record else "completion"
        prompt, answer = _text(record, "prompt"), _text(record, answer_key)
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    if fmt == "alpaca":
        instruction, output = _text(record, "instruction"), _text(record, "output")
        extra = record.get("input") or ""
        if not isinstance(extra, str):
            raise ValueError('"input" must be text (or empty)')
        user = instruction + (f"\n\n{extra}" if extra.strip() else "")
        return [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def _text(record: dict, key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'"{key}" must be non-empty text')
    return value


# -- reading ------------------------------------------------------------------------------------------------------
def is_example_file(source: str) -> bool:
    return Path(source.strip()).suffix.lower() in SUFFIXES


def detect(source: str) -> str:
    """"text" or one of FORMATS for a training source: the built-in question set is chat; a local .jsonl / .json /
    .csv file is whatever its first record is (a JSON Lines file of {"text": ...} is text); anything else is text.

    Raises:
        ExampleError: a .json / .csv file that holds neither text records nor examples.
    """
    source = str(source).strip()
    if source == PYTHON_QA:
        return "chat"
    if source.startswith(HF_PREFIX):
        return _detect_hf(source)
    path = Path(source).expanduser()
    if not (path.is_file() and is_example_file(source)):
        return "text"
    first = next(iter(_records(path, limit=1)), None)
    if first is None:
        raise ExampleError(f"{path.name} holds no records. {FIX}")
    line, record = first
    fmt = record_format(record)
    if fmt is None and path.suffix.lower() == ".jsonl" and isinstance(record, dict) and "text" in record:
        return "text"
    if fmt is None:
        found = (f"the keys {', '.join(map(str, record))}" if isinstance(record, dict) and record else
                 f"{_json_kind(record)} instead of a record")
        raise _at(path, line, f"not an example (found {found}). {FIX}")
    return fmt


def read_examples(source: str, fmt: FormatName = "auto", limit: int = MAX_EXAMPLES) -> ExampleSet:
    """The examples of `source` (a .jsonl / .json / .csv file, or the built-in llmfs-python-qa) as conversations.

    fmt: "auto" detects the format from the first record; a named format is required of every record.
    Raises:
        ExampleError: no such file, a record that does not parse, is in another format than the file's, or misses
            a field, named with its line and the fix; or no examples at all.
    """
    source = str(source).strip()
    if source == PYTHON_QA:
        conversations = python_qa()
        return ExampleSet(conversations, "chat", source, list(range(1, len(conversations) + 1)))
    if source.startswith(HF_PREFIX):
        path, records = Path(source), _hf_records(source, min(limit, MAX_HF_EXAMPLES))
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ExampleError(f"No file at {source}: give a .jsonl, .json or .csv file of examples.")
        if not is_example_file(source):
            raise ExampleError(f"{path.name}: examples are read from .jsonl, .json or .csv files. {FIX}")
        records = _records(path)
    want = None if fmt in ("auto", "text") else fmt
    conversations, lines = [], []
    for line, record in records:
        got = record_format(record)
        if got is None:
            found = (f"the keys {', '.join(map(str, record))}" if isinstance(record, dict) and record else
                     f"{_json_kind(record)} instead of a record")
            raise _at(path, line, f"not an example (found {found}). {FIX}")
        if want is None:
            want = got
        elif got != want:
            raise _at(path, line, f"this record is in the {FORMAT_WORDS[got]} format but the file's first record "
                                  f"is {FORMAT_WORDS[want]}. {FIX}")
        try:
            conversations.append(to_messages(record, got))
        except (ValueError, TemplateError) as e:
            raise _at(path, line, f"{e}. {FIX}") from e
        lines.append(line)
        if len(conversations) >= limit:
            break
    if not conversations:
        raise ExampleError(f"{path.name} holds no examples. {FIX}")
    return ExampleSet(conversations, want, source, lines)


def _json_kind(value: Any) -> str:
    """A JSON value's kind in words ("a number", "a list", ...)."""
    kinds = ((bool, "true / false"), (int, "a number"), (float, "a number"), (str, "text"), (list, "a list"),
             (dict, "an empty record"), (type(None), "null"))
    return next((words for t, words in kinds if isinstance(value, t)), "something else")


def _where(path: Path, line: int) -> str:
    if str(path).startswith(HF_PREFIX):
        return f"row {line}"
    return f"item {line}" if path.suffix.lower() == ".json" else f"line {line}"


MAX_HF_EXAMPLES = 20_000   # a hub dataset is read up to this many rows (the lessons' runs are short)


def _hf_records(spec: str, limit: int):
    """(row number, record) of a Hugging Face dataset, streamed (`hf:NAME[:CONFIG][@SPLIT]`; hf:json:FILES reads
    local files through `datasets`). DataError when it cannot be opened (no network: said within seconds)."""
    from .readers import _open_hf
    for i, record in enumerate(_open_hf(spec), 1):
        yield i, record
        if i >= limit:
            return


def _detect_hf(spec: str) -> str:
    """A hub dataset's format from its first row; "text" when it has a "text" column, or cannot be opened (the text
    path then says why)."""
    try:
        first = next(iter(_hf_records(spec, 1)), None)
    except DataError:
        return "text"
    return (record_format(first[1]) if first is not None else None) or "text"


def _records(path: Path, limit: int | None = None):
    """(line or item number, record) of a .jsonl, .json or .csv file; ExampleError on what does not parse."""
    suffix = path.suffix.lower()
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ExampleError(f"Cannot read {path.name}: {e.strerror or e}.") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ExampleError(f"{path.name} is not UTF-8 text (byte {e.start}): save it as UTF-8.") from e
    if suffix == ".csv":
        yield from _csv_records(path, text, limit)
        return
    stripped = text.lstrip()
    if suffix == ".json" and stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise _at(path, e.lineno, f"not valid JSON ({e.msg}). A .json file holds one list of records, "
                      "[{...}, {...}], or one record per line.", f"line {e.lineno}") from e
        for i, item in enumerate(items[:limit] if limit else items, 1):
            yield i, item
        return
    n = 0
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield i, json.loads(line)
        except json.JSONDecodeError as e:
            raise _at(path, i, f"not valid JSON ({e.msg}). Each line must be one JSON object.", f"line {i}") from e
        n += 1
        if limit and n >= limit:
            return


def _csv_records(path: Path, text: str, limit: int | None):
    rows = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    n = 0
    for row in rows:
        line = rows.line_num
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            names = [cell.strip().lower() for cell in row]
            if all(name in _CSV_COLUMNS for name in names) and len(set(names)) == len(names):
                header = [_CSV_COLUMNS[name] for name in names]
                continue
            header = ["prompt", "response"]   # no header: two columns, the prompt then the response
        if len(row) != len(header):
            raise _at(path, line, f"{len(row)} columns, the file has {len(header)} ({', '.join(header)}). Quote "
                                  "cells that hold commas.")
        yield line, dict(zip(header, row))
        n += 1
        if limit and n >= limit:
            return


def question_and_answer(conversation: Sequence[dict]) -> tuple[list[dict], str]:
    """The conversation up to the question its last answer replies to (what a model is asked, to answer itself),
    and that answer: the last assistant message and the last user message before it. Every example read has one
    (`to_messages` refuses a conversation without an answer)."""
    last = max(i for i, m in enumerate(conversation) if m["role"] == "assistant")
    asked = max((i for i in range(last) if conversation[i]["role"] == "user"), default=last - 1)
    return list(conversation[: asked + 1]), conversation[last]["content"]


# -- encoding -----------------------------------------------------------------------------------------------------
TrainOn = Literal["assistant", "all"]


@dataclass(frozen=True)
class Encoded:
    """One example as token ids, with which tokens the model learns to predict (`trained`), cut to a length."""
    ids: tuple[int, ...]
    trained: tuple[bool, ...]      # per token: the model is trained to predict it (the first token never is)
    truncated: bool                # tokens were cut from its end
    full_length: int               # its tokens before any cut

    @property
    def trained_tokens(self) -> int:
        return sum(self.trained[1:])

    def pieces(self, tokenizer) -> list[tuple[str, bool]]:
        """(text, trained) per token, for a preview coloured by what is learnt."""
        return [(tokenizer.decode([i]), t) for i, t in zip(self.ids, self.trained)]


def encode(tokenizer, messages: Sequence[dict], max_tokens: int | None = None,
           train_on: TrainOn = "assistant") -> Encoded:
    """`messages` through the model's chat template into token ids, marking the tokens inside the assistant's turns
    (a token is trained when its characters overlap an assistant span), then cut to `max_tokens` tokens.

    Raises:
        TemplateError: the template refuses the conversation.
    """
    if train_on == "all":
        text, spans = render(tokenizer, messages), None
    else:
        text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    if spans is None:
        trained = [True] * len(ids)
    else:
        trained = [any(s < b and e > a for a, b in spans) for s, e in enc["offset_mapping"]]
    trained[:1] = [False] * min(1, len(trained))  # nothing predicts the first token
    full = len(ids)
    if max_tokens is not None and full > max_tokens:
        ids, trained = ids[:max_tokens], trained[:max_tokens]
    return Encoded(tuple(ids), tuple(trained), full > len(ids), full)


@dataclass
class EncodedSet:
    """Examples encoded for training and held-out measurement, and what encoding them found."""
    train: list[Encoded]
    heldout: list[Encoded]
    seq_len: int                    # tokens per example after cutting (the model reads seq_len - 1 inputs)
    heldout_note: str | None        # how the held-out loss is measured, when it is not on held-out examples
    heldout_on: str
    dropped: int = 0                # examples whose assistant tokens were all cut off: nothing to learn from
    format: str = "chat"
    template: str = ""
    heldout_index: list[int] = field(default_factory=list)  # the held-out examples' places in the ExampleSet

    @property
    def examples(self) -> int:
        return len(self.train)

    @property
    def truncated(self) -> int:
        return sum(e.truncated for e in self.train)

    @property
    def tokens(self) -> int:
        return sum(len(e.ids) for e in self.train)

    @property
    def trained_tokens(self) -> int:
        return sum(e.trained_tokens for e in self.train)

    def report(self) -> dict:
        """The counts a run's result and the CLI's JSON give."""
        return {"format": self.format, "examples": self.examples, "heldout_examples": len(self.heldout),
                "tokens": self.tokens, "trained_tokens": self.trained_tokens, "truncated": self.truncated,
                "dropped": self.dropped, "seq_len": self.seq_len, "template": self.template}


AUTO_MAX_SEQ_LEN = 512     # a sequence length chosen from the data goes no further (CPU time and memory grow with it)
MIN_HELDOUT_EXAMPLES = 5   # fewer examples than this: all train, and the held-out loss is read on them (with a note)
HELDOUT_EVERY = 10         # else every 10th example is held out


def split_heldout(n: int) -> tuple[list[int], list[int], str | None]:
    """(train indices, held-out indices, note) for n examples: every HELDOUT_EVERY-th example held out (at least
    one); under MIN_HELDOUT_EXAMPLES examples every one trains and the held-out loss is measured on them too."""
    if n < MIN_HELDOUT_EXAMPLES:
        note = (f"Only {n} example{'s' if n != 1 else ''}: too few to hold any out, so the held-out loss is measured "
                "on the training examples themselves. It shows how well they are learnt, not how well the model "
                "answers new questions.")
        return list(range(n)), list(range(n)), note
    every = min(HELDOUT_EVERY, n // 2 + 1) if n < 2 * HELDOUT_EVERY else HELDOUT_EVERY
    held = [i for i in range(n) if i % every == every - 1] or [n - 1]
    held_set = set(held)
    return [i for i in range(n) if i not in held_set], held, None


def prepare(examples: ExampleSet, tokenizer, seq_len: int | None, train_on: TrainOn = "assistant",
            context: int | None = None) -> EncodedSet:
    """Encode `examples` for a run: held-out examples split off (`split_heldout`), each cut to `seq_len` + 1 tokens
    (inputs and the next tokens they predict; `seq_len` None: the longest example's length, up to
    AUTO_MAX_SEQ_LEN and the model's `context`), examples left with nothing to learn from dropped and counted.

    Raises:
        ExampleError: the template refuses an example (named by line), or every example was cut to nothing.
    """
    encoded = []
    for conversation, line in zip(examples.conversations, examples.lines or range(1, len(examples) + 1)):
        try:
            encoded.append(encode(tokenizer, conversation, None, train_on))
        except TemplateError as e:
            raise _at(Path(examples.source), line, f"{e}.") from e
    limit = context or AUTO_MAX_SEQ_LEN
    if seq_len is None:
        longest = max(len(e.ids) for e in encoded)
        seq_len = max(8, min(longest - 1, AUTO_MAX_SEQ_LEN, limit))
    seq_len = min(seq_len, limit) if context else seq_len
    cut = [_cut(e, seq_len + 1) for e in encoded]
    places = [i for i, e in enumerate(cut) if e.trained_tokens > 0]
    kept = [cut[i] for i in places]
    if not kept:
        raise ExampleError(f"Every example's answer lies beyond the first {seq_len + 1:,} tokens, so nothing is left "
                           "to learn from: use a longer sequence length.")
    train_idx, held_idx, note = split_heldout(len(kept))
    on = (f"{len(held_idx)} held-out example{'s' if len(held_idx) != 1 else ''} of {len(kept)}" if note is None
          else f"the {len(kept)} training examples (too few to hold any out)")
    from ..templates import template_name
    return EncodedSet([kept[i] for i in train_idx], [kept[i] for i in held_idx], seq_len, note, on,
                      dropped=len(cut) - len(kept), format=examples.format, template=template_name(tokenizer),
                      heldout_index=[places[i] for i in held_idx])


def _cut(e: Encoded, n: int) -> Encoded:
    if len(e.ids) <= n:
        return e
    return Encoded(e.ids[:n], e.trained[:n], True, e.full_length)


# -- a preview, before training -----------------------------------------------------------------------------------
@dataclass
class Preview:
    """What a run on `source` will train on, shown before it starts (`preview`)."""
    format: str
    template: str                       # in words: the model's own chat template, or the plain one
    examples: int                       # all of them (training and held-out)
    seq_len: int                        # the length each example is cut to (+1: the next token of the last input)
    seq_len_chosen: bool                # False: it follows the examples (the person did not set one)
    lengths: list[int]                  # tokens per example, before any cut (for a histogram)
    truncated: int                      # examples longer than seq_len + 1 tokens, cut at the end
    dropped: int                        # of those, examples whose answer is cut off entirely (left out)
    tokens: int                         # after cutting
    trained_tokens: int                 # of those, the ones the model learns to predict
    shown: list[dict]                   # the first examples: {"line", "pieces": [(text, trained)], "tokens",
                                        #  "trained", "truncated", "cut_tokens"}
    heldout: str                        # how the held-out loss will be measured

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def preview(source: str, tokenizer, seq_len: int | None = None, train_on: TrainOn = "assistant",
            fmt: FormatName = "auto", context: int | None = None, show: int = 3) -> Preview:
    """The examples of `source` as a run with these settings will see them: the first `show` token by token with
    what is trained on, every example's length, and what would be cut or left out (`prepare`, the run's own path).

    Raises:
        ExampleError: as `read_examples` and `prepare`.
    """
    examples = read_examples(source, fmt)
    prepared = prepare(examples, tokenizer, seq_len, train_on, context)
    full = [encode(tokenizer, c, None, train_on) for c in examples.conversations]
    lengths = [len(e.ids) for e in full]
    shown = []
    for line, e in zip(examples.lines[:show], full[:show]):
        kept = _cut(e, prepared.seq_len + 1)
        shown.append({"line": line, "pieces": kept.pieces(tokenizer), "tokens": len(kept.ids),
                      "trained": kept.trained_tokens, "truncated": kept.truncated,
                      "cut_tokens": e.full_length - len(kept.ids)})
    cut_all = [_cut(e, prepared.seq_len + 1) for e in full]
    return Preview(examples.format, prepared.template, len(examples), prepared.seq_len, seq_len is not None, lengths,
                   sum(e.truncated for e in cut_all), prepared.dropped, sum(len(e.ids) for e in cut_all),
                   sum(e.trained_tokens for e in cut_all), shown,
                   prepared.heldout_note or f"on {prepared.heldout_on}")


# -- the built-in question set ------------------------------------------------------------------------------------
_QA_TYPES = (str, list, dict, set, tuple, bytes, int, float)
_QA_FUNCTIONS = ("abs", "all", "any", "bin", "callable", "chr", "divmod", "enumerate", "filter", "format", "getattr",
                 "hasattr", "hash", "hex", "id", "input", "isinstance", "issubclass", "iter", "len", "map", "max",
                 "min", "next", "oct", "open", "ord", "pow", "print", "range", "repr", "reversed", "round", "setattr",
                 "sorted", "sum", "zip")


def python_qa() -> list[list[dict[str, str]]]:
    """llmfs-python-qa: questions about Python's built-in functions and the methods of its built-in types, answered
    with the first sentence of their documentation as this Python ships it ("What does `str.split` do?" -> "Return a
    list of the substrings in the string, using sep as the separator string."). Written by the project from the
    docstrings, so the flow works offline; the same Python gives the same set."""
    out = []
    for name in _QA_FUNCTIONS:
        answer = first_sentence(_builtin_doc(name))
        if answer:
            out.append(_qa(f"What does the built-in function `{name}()` do?", answer))
    for cls in _QA_TYPES:
        for attr in sorted(vars(cls)):
            if attr.startswith("_"):
                continue
            answer = first_sentence(getattr(getattr(cls, attr), "__doc__", None))
            if answer:
                out.append(_qa(f"What does `{cls.__name__}.{attr}` do?", answer))
    return out


def _builtin_doc(name: str) -> str | None:
    import builtins
    return getattr(getattr(builtins, name, None), "__doc__", None)


def _qa(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def first_sentence(doc: str | None) -> str | None:
    """The first sentence of a docstring's first prose paragraph (signature lines such as "S.count(sub) -> int"
    skipped), or None when it has none."""
    if not doc:
        return None
    for paragraph in doc.strip().split("\n\n"):
        lines = [ln.strip() for ln in paragraph.strip().splitlines()]
        lines = [ln for ln in lines if ln and "->" not in ln and not ln.endswith(")") and ln != "--"]
        text = " ".join(lines)
        if not text or not text[0].isupper():
            continue
        end = text.find(". ")
        sentence = text if end < 0 else text[: end + 1]
        if not sentence.endswith("."):
            sentence += "."
        return sentence
    return None


def write_examples(path: str | os.PathLike, conversations: Sequence[Sequence[dict]]) -> Path:
    """Save conversations as a chat-format JSON Lines file (one {"messages": [...]} a line)."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as f:
        for c in conversations:
            f.write(json.dumps({"messages": list(c)}, ensure_ascii=False) + "\n")
    return path
