"""Uploaded files: checked, then saved under `$LLMFS_HOME/uploads/`.

An upload is refused, with a message for the participant and nothing written, when

- its name is a path (folders, `..`, NUL) or of a type the lesson cannot read (by suffix);
- it is bigger than the workshop's `max_upload_mb` (`llmfs.workshop.load_limits`);
- its content does not match its suffix: a .txt must be UTF-8 text (the first invalid byte is reported with its
  line), a .jsonl one JSON object a line (training text: with a string "text" field; a benchmark: records its
  task's loader accepts, `llmfs.eval.tasks`), a .parquet readable with a string "text" column; a file of examples
  (.jsonl / .json / .csv: chat, prompt / response or Alpaca) must read whole with `llmfs.data.examples`, whose
  message names the line and the fix. Up to `MAX_REPORTED` problems are listed, each with its line (or row) number.

An accepted file is written to a temp file in the uploads folder and renamed over the target (`os.replace`), so a
job reading an older upload of the same name keeps reading a whole file. Streamlit never imports here.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import uuid
from pathlib import Path
from types import SimpleNamespace

from .config import ConfigError
from .data.examples import SUFFIXES as EXAMPLE_FILES
from .errors import UploadError
from .paths import person_folder, uploads_dir  # noqa: F401 (part of this module's API)
from .sources import SourceError
from .workshop import load_limits

KINDS = ("text", "benchmark", "examples", "training")   # training: text or examples, whichever the file holds
TEXT_SUFFIXES = (".txt", ".jsonl", ".parquet")
EXAMPLE_SUFFIXES = EXAMPLE_FILES                          # .jsonl, .json, .csv: questions and answers
TRAINING_SUFFIXES = (".txt", ".jsonl", ".json", ".csv", ".parquet")
BENCHMARK_TASKS = ("custom", "hellaswag", "mmlu", "truthfulqa_mc1", "truthfulqa_mc2", "perplexity")
MAX_REPORTED = 5
MAX_NAME_CHARS = 120          # a saved name is shortened (keeping its suffix) to stay far below NAME_MAX (255)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_CHUNK = 1 << 20


# -- names --------------------------------------------------------------------------------------------------------
def suffixes_for(kind: str = "text", task: str = "custom") -> tuple[str, ...]:
    """The file types an upload of `kind` may have (a benchmark: those its task reads)."""
    if kind == "text":
        return TEXT_SUFFIXES
    if kind == "examples":
        return EXAMPLE_SUFFIXES
    if kind == "training":
        return TRAINING_SUFFIXES
    if kind == "benchmark":
        _check_task(task)
        return (".txt", ".jsonl") if task == "perplexity" else (".jsonl",)
    raise ValueError(f"unknown upload kind {kind!r}; use one of {', '.join(KINDS)}")


def safe_name(name: str, suffixes: tuple[str, ...] = TEXT_SUFFIXES) -> str:
    """The file name an upload is saved under: letters, digits, `.`, `_` and `-` only (spaces become `_`, other
    characters are dropped), no leading dots, at most MAX_NAME_CHARS characters (the stem is shortened). Refuses
    a name with a folder or a NUL in it (a browser sends only the file name, so a path is a mistake or an attack)
    and a file whose suffix is not one of `suffixes` (compared case-insensitively).

    Raises:
        UploadError: with a message for the user.
    """
    if not isinstance(name, str) or any(c in name for c in "/\\\0") or name.strip() in ("", ".", ".."):
        raise UploadError(f"{show_name(name)} is not a plain file name: upload the file itself, not a path.")
    safe = _UNSAFE.sub("", re.sub(r"\s+", "_", name.strip())).lstrip(".")
    low = safe.lower()
    suffix = next((s for s in suffixes if low.endswith(s)), None)
    if suffix is None or low == suffix:
        kinds = f"{', '.join(suffixes[:-1])} or {suffixes[-1]}" if len(suffixes) > 1 else suffixes[0]
        raise UploadError(f"{show_name(name)}: upload a {kinds} file.")
    if len(safe) > MAX_NAME_CHARS:
        stem = safe[:len(safe) - len(suffix)]
        safe = stem[:MAX_NAME_CHARS - len(suffix)].rstrip(".") + safe[len(safe) - len(suffix):]
    return safe


# -- size ---------------------------------------------------------------------------------------------------------
def upload_limit_bytes() -> int:
    """The size limit of one upload: the workshop's `max_upload_mb` (200 MB without a limits file).

    Raises:
        UploadError: the workshop's limits file is broken (uploads stay closed until it is fixed).
    """
    try:
        return load_limits().max_upload_bytes
    except (ConfigError, ValueError, TypeError) as e:  # a value of the wrong type is a plain ValueError
        raise UploadError(f"Uploads are closed: the workshop's limits file is broken ({e}). Ask the instructor "
                          "to fix it.") from e


def check_size(name: str, size: int, max_bytes: int | None = None) -> None:
    """Raises UploadError when `size` bytes is over `max_bytes` (default `upload_limit_bytes()`)."""
    limit = upload_limit_bytes() if max_bytes is None else max_bytes
    if size > limit:
        shown, most = size_text(size), size_text(limit)
        if shown == most:  # just over: the rounded sizes would read the same
            shown, most = f"{size:,} bytes", f"{limit:,} bytes"
        raise UploadError(f"{show_name(name, quote=False)} is {shown}: the limit for one upload is {most}. "
                          "Upload a smaller sample, or put bigger data in a folder on this machine and give its "
                          "path instead (\"Files on this machine\").")


# -- saving -------------------------------------------------------------------------------------------------------
class BadLinesError(UploadError):
    """A JSON Lines file of training text with some unreadable lines and some readable records: refused as it is,
    and saved without the bad lines when the person agrees (`save_upload(..., skip_bad_lines=True)`).
    `.bad_lines`: the line numbers of all the bad lines; `.readable`: how many records can be read."""

    def __init__(self, message: str, problems, bad_lines: list[int], readable: int):
        super().__init__(message, problems)
        self.bad_lines, self.readable = bad_lines, readable


def save_upload(name: str, data: bytes | bytearray | memoryview, kind: str = "text", max_bytes: int | None = None,
                *, task: str = "custom", person: str | None = None, skip_bad_lines: bool = False) -> Path:
    """Check an upload and save it as `$LLMFS_HOME/uploads/[<person's folder>/]<safe_name(name)>`; returns that path.

    Args:
        kind: "text" (training text: .txt, .jsonl with a "text" field, .parquet with a "text" column),
            "examples" (questions and answers to learn from: .jsonl / .json / .csv in chat, prompt / response or
            Alpaca format, read whole as a run reads them), "training" (whichever of the two the file holds,
            `training_kind`) or "benchmark" (questions for L14: `task`'s records; .jsonl, or .txt too for
            perplexity).
        max_bytes: the size limit (default: the workshop's, `upload_limit_bytes()`).
        task: a benchmark's task (`BENCHMARK_TASKS`); its own loader checks the records.
        person: who uploads it (a workshop participant's name): saved in their own folder (`person_folder`).
        skip_bad_lines: training text in JSON Lines: save the readable lines only (the lines a `BadLinesError`
            named), as long as one is readable.
    Raises:
        BadLinesError: training text in JSON Lines with unreadable lines beside readable ones (nothing is written).
        UploadError: a refused name, type, size or content (nothing is written), or the file could not be saved.
    """
    suffixes = suffixes_for(kind, task)
    safe = safe_name(name, suffixes)
    data = data if isinstance(data, bytes) else bytes(data)
    check_size(name, len(data), max_bytes)
    if kind == "training":
        kind = training_kind(safe, data)
    suffix = next(s for s in suffixes if safe.lower().endswith(s))
    shown = show_name(name, quote=False)
    problems, total, fix = _check_content(data, suffix, kind, task)
    if problems and kind == "text" and suffix == ".jsonl":
        kept, bad_lines, readable = readable_lines(data)
        if readable and skip_bad_lines:
            data, problems = kept, []
        elif readable:
            refusal = _refusal(shown, problems, total, fix)
            raise BadLinesError(str(refusal), refusal.problems, bad_lines, readable)
    if problems:
        raise _refusal(shown, problems, total, fix, "row" if suffix == ".parquet" else "line")
    try:
        folder = uploads_dir(person)
        folder.mkdir(parents=True, exist_ok=True)
        root = folder.resolve()
        target = root / safe
        if target.parent != root or target.name != safe:  # belt and braces: safe_name cannot leave the folder
            raise UploadError(f"{shown!r} is not a plain file name.")
        tmp = root / f".{uuid.uuid4().hex[:12]}.{safe}"  # same suffix: the task loaders go by it
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if kind == "benchmark":
                problems, total, fix = _check_benchmark(tmp, task)
                if problems:
                    raise _refusal(shown, problems, total, fix)
            if kind == "examples":
                _check_examples(tmp, shown)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
    except OSError as e:
        raise UploadError(f"Could not save {shown}: {e.strerror or e}. Try again; if it keeps failing, tell the "
                          "instructor (the server's disk may be full).") from e
    return target


# -- content checks -----------------------------------------------------------------------------------------------
Problems = list[tuple[int, str]]

TEXT_JSONL_FIX = 'Each line must be one JSON object with a "text" string, e.g. {"text": "Once upon a time"}.'
UTF8_FIX = ("Save the file as UTF-8 (most editors: Save as / Encoding: UTF-8; or iconv -f latin1 -t utf-8 "
            "in.txt > out.txt).")


def benchmark_fix(task: str) -> str:
    """What each line of `task`'s benchmark file must be, with a line of its example file (`llmfs.eval.tasks`)."""
    if task == "perplexity":
        return TEXT_JSONL_FIX
    from .eval.tasks import example_line
    return f"Each line must be one JSON object in the {task} format, for example:\n{example_line(task)}"


def training_kind(name: str, data: bytes) -> str:
    """"examples" or "text": what an upload of training data holds. A .json or .csv file is examples; a .jsonl file
    is examples when its first record is one (chat, prompt / response or Alpaca: `llmfs.data.examples`), else text
    (`{"text": ...}` records); .txt and .parquet are text."""
    suffix = Path(name).suffix.lower()
    if suffix in (".json", ".csv"):
        return "examples"
    if suffix != ".jsonl":
        return "text"
    from .data.examples import record_format
    for _, start, raw in _jsonl_lines(data):
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return "text"   # the text check names the line
        return "examples" if record_format(record) is not None else "text"
    return "text"


def _check_examples(path: Path, shown: str) -> None:
    """A file of examples read whole, as a run reads it (`llmfs.data.examples.read_examples`): UploadError with its
    message (the line or item and the fix), the temp file's name replaced by the upload's."""
    from .data.examples import ExampleError, read_examples
    try:
        read_examples(str(path))
    except ExampleError as e:
        if e.line is None:   # the file as a whole (no examples at all)
            detail, problem = str(e).replace(path.name, shown), (0, str(e).replace(path.name, shown))
        else:
            detail, problem = f"{e.where[0].upper()}{e.where[1:]}: {e.detail}", (e.line, e.detail)
        raise UploadError(f"{shown} was refused (nothing was saved).\n\n{detail}", [problem]) from e


def _check_content(data: bytes, suffix: str, kind: str, task: str) -> tuple[Problems, int, str]:
    """(problems, how many in all, the fix) for what can be checked in memory; no problems: accepted so far."""
    if kind == "examples":
        return _check_txt(data)   # UTF-8 first (its line and column); then read whole once saved (`_check_examples`)
    if suffix == ".txt":
        return _check_txt(data)
    if suffix == ".jsonl":
        problems, total = _check_jsonl(data, require_text=kind == "text")
        return problems, total, TEXT_JSONL_FIX if kind == "text" else benchmark_fix(task)
    if suffix == ".parquet":
        return _check_parquet(data)
    raise AssertionError(suffix)  # suffixes_for names no other


def _check_txt(data: bytes) -> tuple[Problems, int, str]:
    decoder = codecs.getincrementaldecoder("utf-8")()
    for start in range(0, len(data), _CHUNK):
        chunk = data[start:start + _CHUNK]
        try:
            decoder.decode(chunk, final=start + _CHUNK >= len(data))
        except UnicodeDecodeError as e:
            # e.object is the bytes held back from the last chunk (an unfinished character) followed by this one
            where = start + len(chunk) - len(e.object) + e.start
            line_start = data.rfind(b"\n", 0, where) + 1
            line = data.count(b"\n", 0, where) + 1
            return [(line, f"invalid UTF-8 at byte {where} (column {where - line_start + 1}): "
                           f"{data[where:where + 4].hex(' ')}")], 1, UTF8_FIX
    if not re.search(rb"\S", data):
        return [(0, "the file is empty")], 1, "Upload a file with some text in it."
    return [], 0, ""


def _jsonl_lines(data: bytes):
    """(line number, byte offset, raw line) for every non-blank line, split at \\n as `llmfs.data.readers` splits."""
    pos = line = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end + 1
        raw, start, pos = data[pos:end], pos, end
        line += 1
        if raw.strip():
            yield line, start, raw


def _check_jsonl(data: bytes, require_text: bool) -> tuple[Problems, int]:
    """Every line the way `llmfs.data.readers` reads it (split at \\n, blank lines skipped); the first
    MAX_REPORTED problems and the count of all of them."""
    problems: Problems = []
    total = records = 0
    for line, start, raw in _jsonl_lines(data):
        problem = _jsonl_problem(raw, start, require_text)
        if problem is None:
            records += 1
        else:
            total += 1
            if len(problems) < MAX_REPORTED:
                problems.append((line, problem))
    if not total and not records:
        return [(0, "the file holds no records (one JSON object a line)")], 1
    return problems, total


def readable_lines(data: bytes) -> tuple[bytes, list[int], int]:
    """A JSON Lines file of training text split as `_check_jsonl` judges it: (the readable lines, the numbers of the
    unreadable ones, how many records are readable). Blank lines are neither."""
    kept: list[bytes] = []
    bad: list[int] = []
    for line, start, raw in _jsonl_lines(data):
        if _jsonl_problem(raw, start, require_text=True) is None:
            kept.append(raw if raw.endswith(b"\n") else raw + b"\n")
        else:
            bad.append(line)
    return b"".join(kept), bad, len(kept)


def _jsonl_problem(raw: bytes, start: int, require_text: bool) -> str | None:
    try:
        text = raw.rstrip(b"\r\n").decode("utf-8")
    except UnicodeDecodeError as e:
        return f"invalid UTF-8 at byte {start + e.start} (column {e.start + 1})"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return f"not valid JSON ({e.msg}, column {e.colno})"
    except RecursionError:
        return "not valid JSON (nested too deeply)"
    if not isinstance(obj, dict):
        return f"expected a JSON object {{...}}, got {_json_type(obj)}"
    if require_text:
        if "text" not in obj:
            return f'no "text" field (fields: {_clip(", ".join(obj) or "none")})'
        if not isinstance(obj["text"], str):
            return f'"text" must be a string, got {_json_type(obj["text"])}'
    return None


def _check_parquet(data: bytes) -> tuple[Problems, int, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fix = 'Write it with a string column named "text", e.g. pandas: df[["text"]].to_parquet("data.parquet").'
    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
        schema = pf.schema_arrow
        names = list(schema.names)  # a damaged footer can hold column names that are not UTF-8: raises here
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError) as e:
        return [(0, f"not a readable Parquet file ({_clip(str(e))})")], 1, fix
    if names.count("text") != 1:
        found = "two columns" if names.count("text") else "no column"
        return [(0, f'{found} named "text" (columns: {_clip(", ".join(names) or "none")})')], 1, fix
    column = schema.field("text")
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            or getattr(pa.types, "is_string_view", lambda t: False)(column.type)):
        return [(0, f'the "text" column holds {column.type}, not strings')], 1, fix
    index = names.index("text")
    problems: Problems = []
    total = rows = 0
    try:
        for batch in pf.iter_batches(batch_size=4096):
            col = batch.column(index)
            col.validate(full=True)  # damaged string data (not UTF-8) is refused here, not later by a reader
            if col.null_count:
                for i, null in enumerate(col.is_null().to_pylist()):
                    if null:
                        total += 1
                        if len(problems) < MAX_REPORTED:
                            problems.append((rows + i + 1, '"text" is missing (null)'))
            rows += batch.num_rows
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError) as e:
        return [(rows + 1, f"corrupt Parquet data ({_clip(str(e))})")], 1, fix
    if not rows:
        return [(0, "the file has no rows")], 1, fix
    return problems, total, fix


def _check_benchmark(path: Path, task: str) -> tuple[Problems, int, str]:
    """The task's own loader (what the evaluation will run) on the saved temp file."""
    from .eval.tasks import TaskDataError, load_task

    cfg = SimpleNamespace(task=task, data=str(path), limit=0, seed=0, num_fewshot=0)
    try:
        load_task(cfg)
    except TaskDataError as e:
        shown = [(n, _clip(msg, 300)) for n, msg in e.errors[:MAX_REPORTED]]
        return shown, len(e.errors), benchmark_fix(task)
    except (SourceError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        message = str(e).replace(str(path), "the file")
        return [(0, _clip(message, 300) or type(e).__name__)], 1, benchmark_fix(task)
    return [], 0, ""


# -- messages -----------------------------------------------------------------------------------------------------
def _refusal(shown: str, problems: Problems, total: int, fix: str, unit: str = "line") -> UploadError:
    total = max(total, len(problems))
    what = "problem" if total == 1 else "problems"
    lines = [f"- {unit} {n}: {msg}" if n else f"- {msg}" for n, msg in problems[:MAX_REPORTED]]
    if total > MAX_REPORTED:
        lines.append(f"- ... and {total - MAX_REPORTED} more")
    return UploadError(f"{shown} was refused ({total} {what}; nothing was saved):\n" + "\n".join(lines)
                       + (f"\n\n{fix}" if fix else ""), problems)


def _check_task(task: str) -> None:
    if task not in BENCHMARK_TASKS:
        raise ValueError(f"no uploads for the task {task!r}; use one of {', '.join(BENCHMARK_TASKS)}")


def _json_type(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "true/false", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _clip(text: str, n: int = 200) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= n else text[:n - 3] + "..."


def show_name(name, quote: bool = True) -> str:
    """A name as shown in a message: control characters escaped, at most 80 characters."""
    text = repr(name) if quote or not isinstance(name, str) else name
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= 80 else text[:77] + "..."


def size_text(n: int) -> str:
    if n < 1000:
        return f"{n} bytes"
    if n < 1_000_000:
        return f"{n / 1000:.4g} kB"
    return f"{n / 1_000_000:.4g} MB"
