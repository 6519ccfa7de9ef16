"""The embedded default corpus and tokenizer, built offline from the documentation that ships with Python.

Documents are plain dicts `{"id", "source", "text"}`:
  - `module/<dotted.name>`, source `docstrings`: a module's docstring, then the docstrings of the public classes,
    methods and functions it defines, each under a heading such as `json.dumps(obj, *, skipkeys=False, ...)`;
  - `source/<dotted.name>`, source `stdlib_source` (only with `include_source=True`): the module's Python source;
  - `topic/<name>`, source `pydoc_topics`: the language reference topics behind `help("if")` (`pydoc_data.topics`).
The text depends on the interpreter version, so the corpus is deterministic per Python version (not per process:
signature defaults are shown as written in the source, never as reprs of live objects).

On-disk layout written by `build_corpus_and_tokenizer(out_dir)`:
  out_dir/corpus/corpus-000000.tar ...           training split, WebDataset shards
  out_dir/corpus/heldout/heldout-000000.tar ...  held-out split (never seen by the tokenizer or by training)
  out_dir/corpus/stats.json                      the stats `build_corpus_and_tokenizer` returns
  out_dir/tokenizer/                             tokenizer.json, vocab.json, merges.txt, tokenizer_config.json, ...
Each of `corpus/` and `tokenizer/` appears by renaming a finished staging directory, so a reader never sees half
of one. A shard holds, per document, `<key>.txt` (the text, utf-8) and `<key>.json` (`{"id", "source"}`); the key is
the id with every character outside `[A-Za-z0-9_-]` replaced by `_` (WebDataset splits member names at the first dot).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import glob
import hashlib
import importlib
import importlib.util
import inspect
import io
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import tokenize
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .fsutil import replace_dir

Progress = Callable[[str, int, int], None]

EOS_TOKEN = "<|endoftext|>"
SHARD_PREFIX = "corpus"
HELDOUT_PREFIX = "heldout"

# Never imported: side effects on import (antigravity opens a browser, this prints, readline/rlcompleter take over
# the terminal, lib2to3 may write grammar pickles), GUI toolkits, IDLE, and pydoc_data (read directly as topics).
DENY_MODULES = frozenset({
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "readline", "rlcompleter", "lib2to3",
    "pydoc_data", "msilib", "winreg", "winsound", "msvcrt", "nt",
})
# Submodule names that are tests or scripts (`__main__` runs code when imported).
DENY_PARTS = frozenset({"test", "tests", "idle_test", "__main__"})
# ~100 one-line codec modules (cp1252, mac_roman, ...): near-identical text, not documentation.
DENY_PREFIXES = ("encodings.",)

_IMPORT_ROOT = Path(__file__).resolve().parents[1]  # the directory holding the llmfs package
_STDLIB_NAMES = frozenset(sys.stdlib_module_names)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


# ---------------------------------------------------------------------------------------------------------- documents

def iter_python_docs(progress: Progress | None = None, include_source: bool = False) -> Iterator[dict]:
    """Yield the documents of the Python documentation corpus, deterministically (sorted by id).

    The documents are extracted in a fresh interpreter (`python -I`): importing ~360 modules stays out of this
    process, and its state cannot leak in (pytest, for one, replaces `pdb.set_trace` and `sys.unraisablehook`).
    A module that fails to import is skipped. A document whose text equals an earlier one is dropped, and so is an
    empty one.

    Args:
        progress: optional `progress(stage, done, total)`, called with stage `"docs"` after each candidate document.
        include_source: also yield `source/<module>` documents (source `stdlib_source`): the module's Python source
            file, for a larger corpus (~4x the text, mostly code).
    Raises:
        RuntimeError: if the extracting interpreter fails, with the end of its stderr.
    """
    code = f"import sys; sys.path.insert(0, {str(_IMPORT_ROOT)!r}); from llmfs import corpus; "
    code += f"corpus._serve_docs({include_source})"
    with tempfile.TemporaryFile() as stderr:
        command = [sys.executable, "-I", "-c", code]
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
        try:
            for line in proc.stdout:
                kind, *payload = json.loads(line)
                if kind == "doc":
                    yield payload[0]
                elif progress is not None:
                    progress(*payload)
            if proc.wait() != 0:
                stderr.seek(0)
                tail = stderr.read().decode("utf-8", "replace")[-2000:]
                raise RuntimeError(f"extracting the Python docs failed (exit {proc.returncode}):\n{tail}")
        finally:
            if proc.poll() is None:  # the caller stopped early
                proc.kill()
            proc.wait()
            proc.stdout.close()


def _serve_docs(include_source: bool) -> None:
    """The child side of `iter_python_docs`: one JSON array a line on the real stdout, `["doc", {...}]` or
    `["progress", stage, done, total]`. File descriptor 1 is pointed at /dev/null first, so whatever an imported
    module writes, even from C, cannot corrupt the stream."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)  # line-buffered: progress arrives as it happens
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)

    def send(message: list) -> None:
        out.write(json.dumps(message, ensure_ascii=False) + "\n")

    for doc in _extract_docs(lambda *args: send(["progress", *args]), include_source):
        send(["doc", doc])
    out.flush()


def _extract_docs(progress: Progress | None, include_source: bool) -> Iterator[dict]:
    """`iter_python_docs`, in this process."""
    from pydoc_data.topics import topics

    modules = stdlib_modules()
    seen_objects: set[int] = set()  # a class re-exported by several modules is documented once
    candidates = [(f"module/{m}", "docstrings", lambda m=m: _module_text(m, seen_objects)) for m in modules]
    if include_source:
        candidates += [(f"source/{m}", "stdlib_source", lambda m=m: _source_text(m)) for m in modules]
    candidates += [(f"topic/{t}", "pydoc_topics", lambda t=t: topics[t].strip()) for t in sorted(topics)]
    seen_texts: set[bytes] = set()
    for done, (doc_id, source, make_text) in enumerate(candidates, 1):
        text = make_text()
        if progress is not None:
            progress("docs", done, len(candidates))
        digest = hashlib.sha1(text.encode("utf-8")).digest()
        if text and digest not in seen_texts:
            seen_texts.add(digest)
            yield {"id": doc_id, "source": source, "text": text}


def stdlib_modules() -> list[str]:
    """Sorted dotted names of the standard-library modules and submodules to document (public, not denied)."""
    names: list[str] = []
    stack = sorted((n for n in sys.stdlib_module_names if _wanted(n)), reverse=True)
    while stack:
        name = stack.pop()
        spec = _find_stdlib_spec(name)
        if spec is None:
            continue
        names.append(name)
        children = [f"{name}.{m.name}" for m in pkgutil.iter_modules(spec.submodule_search_locations or [])]
        stack.extend(sorted((c for c in children if _wanted(c)), reverse=True))
    return sorted(names)


def _wanted(name: str) -> bool:
    parts = name.split(".")
    return not (
        parts[0] in DENY_MODULES
        or name.startswith(DENY_PREFIXES)
        or any(p.startswith("_") or p in DENY_PARTS or p.startswith("test_") for p in parts)
    )


def _find_stdlib_spec(name: str):
    """The module spec if `name` resolves inside the standard library (not a site-packages shim such as
    setuptools' `distutils`); None otherwise. Finding a submodule imports its parent package."""
    try:
        with _quiet():
            spec = importlib.util.find_spec(name)
    except (Exception, SystemExit):
        return None
    if spec is None:
        return None
    if spec.origin in ("built-in", "frozen"):
        return spec
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    locations = [spec.origin] if spec.origin else list(spec.submodule_search_locations or [])
    for location in locations:
        path = Path(location).resolve()
        if not path.is_relative_to(stdlib) or {"site-packages", "dist-packages"} & set(path.parts):
            return None
    return spec if locations else None


@contextlib.contextmanager
def _quiet():
    # What a module prints at import time goes nowhere; warnings (DeprecationWarning for cgi, ...) are not shown.
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        yield


def _module_text(name: str, seen_objects: set[int]) -> str:
    """Module docstring, then each public class (with its methods) and function defined there; '' if none."""
    try:
        with _quiet():
            module = importlib.import_module(name)
    except (Exception, SystemExit):
        return ""
    sections = []
    if doc := _own_doc(module):
        sections.append(doc)
    for attr, obj in _public_members(module):
        if id(obj) in seen_objects or not _defined_in(obj, name):
            continue
        seen_objects.add(id(obj))
        if inspect.isclass(obj):
            sections.extend(_class_sections(f"{name}.{attr}", obj))
        elif inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.ismethod(obj):
            if doc := _own_doc(obj):
                sections.append(f"{name}.{attr}{_signature(obj)}\n{doc}")
    if not sections:
        return ""
    title = f"Module {name}"
    return "\n\n".join([f"{title}\n{'=' * len(title)}", *sections])


def _source_text(name: str) -> str:
    """The module's Python source ('' for a C module), after `_module_text` imported it."""
    filename = getattr(sys.modules.get(name), "__file__", None)
    if not filename or not filename.endswith(".py"):
        return ""
    with tokenize.open(filename) as f:  # honours a coding cookie
        return f.read().strip()


def _public_members(module) -> list[tuple[str, Any]]:
    """(name, object) in definition order, restricted to `__all__` when the module declares one."""
    members = vars(module)
    exported = getattr(module, "__all__", None)
    if isinstance(exported, (list, tuple)) and all(isinstance(n, str) for n in exported):
        return [(n, members[n]) for n in exported if n in members]
    return [(n, obj) for n, obj in members.items() if not n.startswith("_")]


def _defined_in(obj: Any, module_name: str) -> bool:
    # C accelerators report their private module (`heapq.heappush.__module__ == "_heapq"`), and a package re-exports
    # from its submodules (`json.JSONDecoder` lives in `json.decoder`): both count, so an object is documented under
    # the first (shortest) public name that exports it.
    owner = getattr(obj, "__module__", None)
    return isinstance(owner, str) and (
        owner == module_name
        or owner.startswith(module_name + ".")
        or (owner.startswith("_") and owner.split(".")[0] in _STDLIB_NAMES)
    )


def _class_sections(qualname: str, cls: type) -> list[str]:
    sections = []
    if doc := _own_doc(cls):
        sections.append(f"class {qualname}{_signature(cls)}\n{doc}")
    for attr, member in vars(cls).items():
        if attr.startswith("_"):
            continue
        if isinstance(member, classmethod):
            member = member.__get__(None, cls)  # bound, so the signature drops `cls`
        elif isinstance(member, staticmethod):
            member = member.__func__
        if isinstance(member, property):
            heading = f"{qualname}.{attr} (property)"
        elif inspect.isroutine(member):
            heading = f"{qualname}.{attr}{_signature(member)}"
        else:
            continue
        if doc := _own_doc(member):
            sections.append(f"{heading}\n{doc}")
    return sections


def _own_doc(obj: Any) -> str:
    """The object's own docstring, cleaned; '' when it has none. (`inspect.getdoc` alone would fall back to the
    parent's, repeating e.g. `Exception`'s docstring for every exception class.)"""
    try:
        own = obj.__doc__
    except Exception:
        return ""
    return (inspect.getdoc(obj) or "").strip() if isinstance(own, str) else ""


def _signature(obj: Any) -> str:
    """The call signature with each default as written in the source, else as a plain literal, else `...`.

    Never the repr of an evaluated default: `cgi.parse(environ=os.environ)` would otherwise copy this process's
    environment variables (secrets included) into the corpus, and object reprs carry memory addresses.
    """
    try:
        sig = inspect.signature(obj)
    except Exception:  # builtins without __text_signature__, odd callables
        return "(...)"
    written = _source_defaults(obj)
    params = [
        p.replace(default=_Verbatim(written.get(p.name) or _literal(p.default))) if p.default is not p.empty else p
        for p in sig.parameters.values()
    ]
    return _ADDRESS.sub("", str(sig.replace(parameters=params)))


class _Verbatim:
    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _literal(value: Any) -> str:
    if value is None or isinstance(value, (bool, int, float, complex)):
        return repr(value)
    if isinstance(value, (str, bytes)) and len(value) <= 40:
        return repr(value)
    return "..."


def _source_defaults(obj: Any) -> dict[str, str]:
    """{parameter: default as source text} for a Python function (a class: its __init__); {} when unknown."""
    if inspect.isclass(obj):
        obj = next((vars(c)["__init__"] for c in obj.__mro__ if "__init__" in vars(c)), None)
    func = inspect.unwrap(getattr(obj, "__func__", obj)) if obj is not None else None
    code = getattr(func, "__code__", None)
    module = sys.modules.get(getattr(func, "__module__", None) or "")
    filename = getattr(module, "__file__", None)
    if code is None or not filename:
        return {}
    return _defaults_by_line(filename).get(code.co_firstlineno, {})


@functools.lru_cache(maxsize=None)
def _defaults_by_line(filename: str) -> dict[int, dict[str, str]]:
    """Every def in a source file -> its defaults as text, keyed by the lines `co_firstlineno` can point at (the
    `def`, or the first decorator)."""
    try:
        with tokenize.open(filename) as f:  # honours a coding cookie
            source = f.read()
        tree = ast.parse(source)
    except (OSError, SyntaxError, ValueError):
        return {}
    lines = source.encode("utf-8").splitlines(keepends=True)  # ast column offsets count utf-8 bytes
    table = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            positional = a.posonlyargs + a.args
            pairs = list(zip(positional[len(positional) - len(a.defaults):], a.defaults))
            pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
            defaults = {arg.arg: " ".join(_segment(lines, d).split()) for arg, d in pairs}
            for line in [node.lineno] + [d.lineno for d in node.decorator_list[:1]]:
                table[line] = defaults
    return table


def _segment(lines: list[bytes], node: ast.AST) -> str:
    """The source text of a node, as written (`ast.unparse` would turn `0o777` into `511`). Like
    `ast.get_source_segment`, which re-splits the whole file on every call."""
    first, last = node.lineno - 1, node.end_lineno - 1
    if first == last:
        return lines[first][node.col_offset:node.end_col_offset].decode("utf-8")
    chunks = [lines[first][node.col_offset:], *lines[first + 1:last], lines[last][:node.end_col_offset]]
    return b"".join(chunks).decode("utf-8")


# ------------------------------------------------------------------------------------------------------------- split

def split_held_out(docs: Iterable[dict], fraction: float = 0.05, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Split documents into (train, held_out) by a hash of the seed and the document's subject: stable across runs
    and machines, and a document keeps its side when others are added or removed.

    The subject is the id after its first "/" (`json.decoder` for `module/json.decoder` and `source/json.decoder`),
    so a module's docstrings and its source, which repeats them, always fall on the same side.

    Raises:
        ValueError: if fraction is not in [0, 1).
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"held-out fraction must be in [0, 1), got {fraction}")
    train, held_out = [], []
    for doc in docs:
        subject = doc["id"].split("/", 1)[-1]
        digest = hashlib.sha256(f"{seed}:{subject}".encode("utf-8")).digest()
        (held_out if int.from_bytes(digest[:8], "big") < fraction * 2**64 else train).append(doc)
    return train, held_out


# ------------------------------------------------------------------------------------------------------------ shards

def write_shards(
    docs: Iterable[dict],
    out_dir: str | os.PathLike,
    max_docs_per_shard: int = 10_000,
    max_bytes_per_shard: int = 1_000_000,
    prefix: str = SHARD_PREFIX,
    progress: Progress | None = None,
) -> list[Path]:
    """Write documents as WebDataset shards `<prefix>-000000.tar`, ... in `out_dir`.

    A shard is closed before a document that would pass either limit (a single larger document gets a shard of its
    own). The shards are written in a staging directory and moved in only when all are complete, replacing any
    previous `<prefix>-*.tar`. Tar headers carry mtime 0, so equal documents give byte-identical shards.

    Args:
        progress: optional `progress("shards", done, total)` after each document; total is 0 when `docs` has no len.
    Returns:
        The shard paths, in order.
    Raises:
        ValueError: on a non-positive limit.
    """
    import webdataset as wds

    if max_docs_per_shard < 1 or max_bytes_per_shard < 1:
        raise ValueError("max_docs_per_shard and max_bytes_per_shard must be positive")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".{prefix}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        names = []
        samples = _samples(docs, progress)
        for batch in _shard_batches(samples, max_docs_per_shard, max_bytes_per_shard):
            names.append(f"{prefix}-{len(names):06d}.tar")
            with open(staging / names[-1], "wb") as stream, wds.TarWriter(stream, encoder=False, mtime=0) as writer:
                for sample in batch:
                    writer.write(sample)
        for old in out_dir.glob(f"{prefix}-*.tar"):
            old.unlink()
        for name in names:
            os.replace(staging / name, out_dir / name)  # each rename is atomic
        return [out_dir / name for name in names]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def shard_key(doc_id: str) -> str:
    """The WebDataset key for a document id (no dots: WebDataset splits member names at the first one)."""
    return _KEY_UNSAFE.sub("_", doc_id)


def _samples(docs: Iterable[dict], progress: Progress | None) -> Iterator[dict]:
    total = len(docs) if hasattr(docs, "__len__") else 0
    keys = set()
    for done, doc in enumerate(docs, 1):
        key = shard_key(doc["id"])
        if key in keys:  # `a.b` and `a_b` sanitize alike: disambiguate by the id's hash, still deterministic
            key = f"{key}-{hashlib.sha1(doc['id'].encode('utf-8')).hexdigest()[:8]}"
        keys.add(key)
        meta = {"id": doc["id"], "source": doc["source"]}
        yield {
            "__key__": key,
            "txt": doc["text"].encode("utf-8"),
            "json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8"),
        }
        if progress is not None:
            progress("shards", done, total)


def _shard_batches(samples: Iterable[dict], max_docs: int, max_bytes: int) -> Iterator[list[dict]]:
    batch, size = [], 0
    for sample in samples:
        nbytes = len(sample["txt"]) + len(sample["json"])
        if batch and (len(batch) >= max_docs or size + nbytes > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(sample)
        size += nbytes
    if batch:
        yield batch


def iter_shard_texts(shard_dir_or_pattern: str | os.PathLike) -> Iterator[dict]:
    """Read documents `{"id", "source", "text"}` back from shards, in shard then write order.

    Args:
        shard_dir_or_pattern: a directory (its `*.tar`, not recursive), a glob (`dir/corpus-*.tar`), a brace
            pattern (`dir/corpus-{000000..000003}.tar`) or one shard path.
    Raises:
        FileNotFoundError: if nothing matches.
    """
    import webdataset as wds

    paths = _shard_paths(str(shard_dir_or_pattern))
    if not paths:
        raise FileNotFoundError(f"no shards match {shard_dir_or_pattern}")
    # No node/worker splitting: this reads everything, in order, in the calling process.
    dataset = wds.WebDataset(paths, shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False)
    for sample in dataset:
        meta = json.loads(sample["json"])
        yield {"id": meta["id"], "source": meta["source"], "text": sample["txt"].decode("utf-8")}


def _shard_paths(spec: str) -> list[str]:
    if os.path.isdir(spec):
        return sorted(glob.glob(os.path.join(glob.escape(os.path.abspath(spec)), "*.tar")))
    if any(c in spec for c in "*?["):
        return sorted(os.path.abspath(p) for p in glob.glob(spec))
    from braceexpand import braceexpand  # a webdataset dependency

    # absolute paths: webdataset's gopen would run a location starting with "pipe:" as a command
    return [os.path.abspath(p) for p in braceexpand(spec) if os.path.isfile(p)]


# --------------------------------------------------------------------------------------------------------- tokenizer

def train_tokenizer(texts: Iterable[str], out_dir: str | os.PathLike, vocab_size: int = 4096):
    """Train a GPT-2-style byte-level BPE tokenizer and save it as a Hugging Face tokenizer folder.

    `<|endoftext|>` (id 0) is bos, eos, unk and pad. No normalizer and byte-level decoding, so
    `decode(encode(text)) == text` for any string. The folder holds tokenizer.json, vocab.json, merges.txt,
    tokenizer_config.json and special_tokens_map.json; `AutoTokenizer.from_pretrained(out_dir)` loads it.

    Returns:
        The trained tokenizer as a `transformers.PreTrainedTokenizerFast` (GPT-2 class).
    Raises:
        ValueError: if vocab_size cannot hold the 256 bytes plus the special token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2TokenizerFast

    if vocab_size < 257:
        raise ValueError(f"vocab_size must be at least 257 (256 bytes + {EOS_TOKEN}), got {vocab_size}")
    # Same pipeline as GPT-2's tokenizer.json: byte-level pre-tokenizer with its regex, no prefix space.
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, so nothing is ever unknown
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    hf = GPT2TokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        add_prefix_space=False,
        clean_up_tokenization_spaces=False,  # True would turn "a ." into "a." on decode
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(str(out_dir))
    tokenizer.model.save(str(out_dir))  # vocab.json + merges.txt, for loaders that build GPT-2 from those
    # transformers 5 no longer writes this file; older loaders (and people) still read it.
    special = {name: EOS_TOKEN for name in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return hf


# ------------------------------------------------------------------------------------------------------------- build

def build_corpus_and_tokenizer(
    out_dir: str | os.PathLike,
    progress: Progress | None = None,
    held_out_fraction: float = 0.05,
    vocab_size: int = 4096,
    seed: int = 0,
    include_source: bool = False,
) -> dict:
    """Build the embedded default's corpus and tokenizer under `out_dir` (layout in the module docstring).

    Args:
        out_dir: usually `llmfs.paths.default_dir()`; existing `corpus/` and `tokenizer/` are replaced.
        progress: optional `progress(stage, done, total)`; stages `docs`, `shards`, `tokenizer`.
        include_source: add the standard library's source files (see `iter_python_docs`).
    Returns:
        Stats: documents, train/held-out documents and bytes, shards, vocab_size, train_tokens, and seconds per stage.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds = {}
    start = time.perf_counter()
    docs = list(iter_python_docs(progress, include_source))
    train, held_out = split_held_out(docs, held_out_fraction, seed)
    seconds["docs"] = time.perf_counter() - start

    staging = out_dir / f".corpus.tmp-{uuid.uuid4().hex[:8]}"
    tokenizer_staging = out_dir / f".tokenizer.tmp-{uuid.uuid4().hex[:8]}"
    try:
        start = time.perf_counter()
        shards = write_shards(train, staging, prefix=SHARD_PREFIX, progress=progress)
        held_out_shards = write_shards(held_out, staging / "heldout", prefix=HELDOUT_PREFIX)
        seconds["shards"] = time.perf_counter() - start

        start = time.perf_counter()
        if progress is not None:
            progress("tokenizer", 0, 1)
        tokenizer = train_tokenizer((d["text"] for d in train), tokenizer_staging, vocab_size)
        if progress is not None:
            progress("tokenizer", 1, 1)
        seconds["tokenizer"] = time.perf_counter() - start

        encodings = tokenizer.backend_tokenizer.encode_batch([d["text"] for d in train], add_special_tokens=False)
        stats = {
            "documents": len(docs),
            "train_documents": len(train),
            "held_out_documents": len(held_out),
            "train_bytes": sum(len(d["text"].encode("utf-8")) for d in train),
            "held_out_bytes": sum(len(d["text"].encode("utf-8")) for d in held_out),
            "shards": len(shards),
            "held_out_shards": len(held_out_shards),
            "vocab_size": len(tokenizer),
            "train_tokens": sum(len(e.ids) for e in encodings),
            "include_source": include_source,
            "python": sys.version.split()[0],
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
        }
        (staging / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
        replace_dir(staging, out_dir / "corpus")
        replace_dir(tokenizer_staging, out_dir / "tokenizer")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(tokenizer_staging, ignore_errors=True)
    return stats

