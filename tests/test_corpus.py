"""Tests for llmfs.corpus and llmfs.paths: the embedded default's corpus and tokenizer. CPU-only, offline."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmfs import corpus, paths

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMFS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def docs():
    return list(corpus.iter_python_docs())


@pytest.fixture(scope="module")
def subset(docs):
    # Every 10th document plus awkward ones: unicode, dots and slashes in ids, ids that sanitize alike.
    extra = [
        {"id": "test/unicode", "source": "test", "text": "naïve café ☕ 日本語 🤖\r\n\ttabs  and  spaces "},
        {"id": "test/a.b", "source": "test", "text": "dotted id"},
        {"id": "test/a_b", "source": "test", "text": "same key as test/a.b once sanitized"},
    ]
    return docs[::10] + extra


def _digest(documents) -> str:
    return hashlib.sha256(json.dumps(documents, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------------- paths

def test_home_comes_from_env_and_is_created(home):
    assert not home.exists()
    assert paths.llmfs_home() == home and home.is_dir()
    assert paths.default_dir() == home / "default"
    assert paths.runs_dir() == home / "runs"


def test_home_defaults_to_user_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("LLMFS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.llmfs_home() == tmp_path / ".cache" / "llmfs"


# ------------------------------------------------------------------------------------------------------- documents

def test_docs_are_nonempty_unique_and_sorted(docs):
    ids = [d["id"] for d in docs]
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    assert all(d["text"] and d["text"] == d["text"].strip() for d in docs)
    texts = [d["text"] for d in docs]
    assert len(texts) == len(set(texts))
    assert {d["source"] for d in docs} == {"docstrings", "pydoc_topics"}
    assert {"topic/for", "module/json", "module/builtins", "module/asyncio"} <= set(ids)
    assert sum(len(t.encode()) for t in texts) > 1_000_000  # 1.97 MB on CPython 3.11.7


def test_module_documents_have_headings_and_source_defaults(docs):
    by_id = {d["id"]: d["text"] for d in docs}
    assert by_id["module/json"].startswith("Module json\n===========\n\nJSON (JavaScript Object Notation)")
    assert "\njson.dumps(obj, *, skipkeys=False" in by_id["module/json"]
    assert "\nclass json.JSONDecoder(" in by_id["module/json"]  # re-exported from json.decoder, documented once
    assert "\nos.makedirs(name, mode=0o777, exist_ok=False)\n" in by_id["module/os"]  # as written, not 511


def test_denied_and_private_modules_are_skipped(docs):
    tops = {d["id"].split("/")[1].split(".")[0] for d in docs if d["id"].startswith("module/")}
    assert not tops & {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "distutils"}
    parts = {p for d in docs if d["id"].startswith("module/") for p in d["id"][7:].split(".")}
    assert not any(p.startswith("_") or p in ("test", "tests") for p in parts)
    assert not any(d["id"].startswith("module/encodings.") for d in docs)


def test_docs_do_not_depend_on_the_process(docs, tmp_path):
    # Another hash seed (random per extracting child), working directory and environment give the same corpus:
    # evaluated defaults such as `cgi.parse(environ=os.environ)` would otherwise copy the environment into the text.
    script = (
        "import hashlib, json; from llmfs import corpus; "
        "print(hashlib.sha256(json.dumps(list(corpus.iter_python_docs()), sort_keys=True).encode()).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123", "PYTHONPATH": str(ROOT), "LLMFS_TEST_SECRET": "hunter2-s3cr3t"}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == _digest(docs)


def test_signature_shows_defaults_as_written_never_live_reprs():
    def f(a, env=os.environ, mode=0o777, *, obj=object(), name="x"):
        pass

    assert corpus._signature(f) == "(a, env=os.environ, mode=0o777, *, obj=object(), name=\"x\")"
    assert corpus._literal(os.environ) == corpus._literal(object()) == "..."
    assert corpus._literal(None) == "None" and corpus._literal("utf-8") == "'utf-8'"


def test_wanted_filters_names():
    assert corpus._wanted("json") and corpus._wanted("xml.etree.ElementTree")
    denied = ("_json", "json._private", "this", "tkinter.ttk", "unittest.test", "asyncio.__main__", "encodings.cp1252")
    assert not any(corpus._wanted(name) for name in denied)


def test_stopping_early_ends_the_extracting_process():
    docs = corpus.iter_python_docs()
    first = next(docs)
    docs.close()  # kills the child instead of waiting for the rest
    assert first["id"].startswith("module/")


# ----------------------------------------------------------------------------------------------------------- split

def test_held_out_split_is_disjoint_complete_and_deterministic(docs):
    train, held = corpus.split_held_out(docs, 0.1, seed=0)
    assert {d["id"] for d in train}.isdisjoint(d["id"] for d in held)
    assert sorted(d["id"] for d in train + held) == sorted(d["id"] for d in docs)
    assert 0.05 < len(held) / len(docs) < 0.15
    assert corpus.split_held_out(docs, 0.1, seed=0) == (train, held)
    assert corpus.split_held_out(reversed(docs), 0.1, seed=0)[1] == held[::-1]  # a doc's side ignores the others
    assert corpus.split_held_out(docs, 0.1, seed=1)[1] != held


def test_held_out_split_keeps_a_modules_docs_and_source_together():
    docs = [{"id": f"{kind}/mod{i}", "source": kind, "text": ""} for i in range(200) for kind in ("module", "source")]
    train, held = corpus.split_held_out(docs, 0.2)
    assert held and {d["id"].split("/")[1] for d in train}.isdisjoint(d["id"].split("/")[1] for d in held)


def test_held_out_fraction_is_validated():
    with pytest.raises(ValueError, match="fraction"):
        corpus.split_held_out([], 1.0)


# ---------------------------------------------------------------------------------------------------------- shards

def test_shards_round_trip_exact_texts(subset, tmp_path):
    shards = corpus.write_shards(subset, tmp_path / "s", max_docs_per_shard=7, max_bytes_per_shard=50_000)
    assert len(shards) >= 6 and [p.name for p in shards] == [f"corpus-{i:06d}.tar" for i in range(len(shards))]
    assert list(corpus.iter_shard_texts(tmp_path / "s")) == subset
    assert list(corpus.iter_shard_texts(str(tmp_path / "s" / "corpus-*.tar"))) == subset
    brace = str(tmp_path / "s" / f"corpus-{{000000..{len(shards) - 1:06d}}}.tar")
    assert list(corpus.iter_shard_texts(brace)) == subset
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [p.name for p in shards]  # no staging dir left


def test_shards_respect_limits_and_replace_previous_ones(subset, tmp_path):
    many = corpus.write_shards(subset, tmp_path, max_docs_per_shard=5)
    assert len(many) == -(-len(subset) // 5)
    few = corpus.write_shards(subset[:3], tmp_path)
    assert len(few) == 1 and sorted(tmp_path.glob("corpus-*.tar")) == few
    assert list(corpus.iter_shard_texts(tmp_path)) == subset[:3]


def test_shards_are_byte_identical_when_rewritten(subset, tmp_path):
    first = [p.read_bytes() for p in corpus.write_shards(subset, tmp_path / "a")]
    second = [p.read_bytes() for p in corpus.write_shards(subset, tmp_path / "b")]
    assert first == second


def test_reading_missing_shards_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(corpus.iter_shard_texts(tmp_path / "nothing-*.tar"))


# ------------------------------------------------------------------------------------------------------- tokenizer

@pytest.fixture(scope="module")
def tokenizer_dir(subset, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    corpus.train_tokenizer((d["text"] for d in subset), out, vocab_size=1024)
    return out


@pytest.mark.parametrize("text", [
    "def f(x):\n    return x ** 2  # square . , ;",
    "  leading and trailing spaces  \r\n\t",
    "naïve café ☕ 日本語 🤖 Ünïcödé ∑ ≠ \x00\x7f",
])
def test_tokenizer_round_trips_text(tokenizer_dir, text):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.eos_token_id not in ids  # no special tokens added by encode


def test_tokenizer_loads_as_gpt2_with_endoftext_specials(tokenizer_dir):
    from transformers import AutoTokenizer, GPT2TokenizerFast

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert isinstance(tok, GPT2TokenizerFast) and len(tok) == 1024
    assert tok.eos_token == tok.bos_token == tok.unk_token == tok.pad_token == "<|endoftext|>"
    assert tok.eos_token_id == 0
    files = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"}
    assert files <= {p.name for p in tokenizer_dir.iterdir()}
    # vocab.json + merges.txt alone give the same tokenizer
    only_bpe = tokenizer_dir.parent / "only_bpe"
    only_bpe.mkdir(exist_ok=True)
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
        (only_bpe / name).write_bytes((tokenizer_dir / name).read_bytes())
    text = "import json\njson.dumps({'a': 1})"
    assert GPT2TokenizerFast.from_pretrained(only_bpe).encode(text) == tok.encode(text)


def test_tokenizer_training_is_deterministic(subset, tokenizer_dir, tmp_path):
    corpus.train_tokenizer((d["text"] for d in subset), tmp_path, vocab_size=1024)
    for name in ("tokenizer.json", "vocab.json", "merges.txt"):
        assert (tmp_path / name).read_bytes() == (tokenizer_dir / name).read_bytes(), name


def test_tokenizer_rejects_tiny_vocab(tmp_path):
    with pytest.raises(ValueError, match="257"):
        corpus.train_tokenizer(["abc"], tmp_path, vocab_size=100)


# ----------------------------------------------------------------------------------------------------------- build

def test_build_writes_corpus_splits_and_tokenizer(subset, monkeypatch, home):
    from transformers import AutoTokenizer

    monkeypatch.setattr(corpus, "iter_python_docs", lambda progress=None, include_source=False: iter(subset))
    calls = []
    out = paths.default_dir()
    stats = corpus.build_corpus_and_tokenizer(out, progress=lambda *a: calls.append(a), vocab_size=512)

    train = list(corpus.iter_shard_texts(out / "corpus"))
    held = list(corpus.iter_shard_texts(out / "corpus" / "heldout"))
    assert (train, held) == corpus.split_held_out(subset)
    assert stats["documents"] == len(subset) and stats["train_documents"] == len(train)
    assert stats["train_bytes"] == sum(len(d["text"].encode()) for d in train)
    assert json.loads((out / "corpus" / "stats.json").read_text()) == stats
    assert AutoTokenizer.from_pretrained(out / "tokenizer").eos_token == "<|endoftext|>"
    assert {c[0] for c in calls} == {"shards", "tokenizer"} and calls[-1] == ("tokenizer", 1, 1)
    assert sorted(p.name for p in out.iterdir()) == ["corpus", "tokenizer"]  # no staging directories left

    corpus.build_corpus_and_tokenizer(out, vocab_size=512)  # a rebuild replaces both in place
    assert list(corpus.iter_shard_texts(out / "corpus")) == train
    assert sorted(p.name for p in out.iterdir()) == ["corpus", "tokenizer"]
