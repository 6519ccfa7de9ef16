"""Streaming readers: each format, bad input reported with its location, patterns, resumption, flat memory."""

from __future__ import annotations

import functools
import http.server
import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from llmfs.data.documents import Document, ReadError
from llmfs.data.readers import DocumentReader, ReaderState, read_documents
from llmfs.data.text import DataError

TEXTS = ["first document", "zweites Dokument: Größe", "third\nwith two lines", "", "fifth ☃", "sixth"]


def _jsonl(path: Path, lines: list) -> Path:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines))
    return path


def _tar(path: Path, samples: list[dict]) -> Path:
    with open(path, "wb") as f, wds.TarWriter(f, encoder=False, mtime=0) as w:
        for s in samples:
            w.write(s)
    return path


def _tar_docs(prefix: str, n: int, start: int = 0) -> list[dict]:
    return [{"__key__": f"{prefix}{i:03d}", "txt": f"{prefix} text {i}".encode(),
             "json": json.dumps({"id": f"{prefix}-{i}", "source": "unit", "lang": "en"}).encode()}
            for i in range(start, start + n)]


def _read(spec, **kw) -> tuple[list[Document], list[ReadError]]:
    errors: list[ReadError] = []
    return list(read_documents(spec, on_error=errors.append, **kw)), errors


# -- formats -----------------------------------------------------------------------------------------------------
def test_jsonl_ids_metadata_and_text_key(tmp_path):
    path = _jsonl(tmp_path / "a.jsonl", [{"text": "x", "id": 7, "lang": "en"}, {"body": "y", "metadata": {"k": 1}},
                                         {"text": "z", "metadata": {"k": 2}, "k": 3}])
    docs, errors = _read(path)
    assert [(d.text, d.id, d.metadata) for d in docs] == [
        ("x", "7", {"lang": "en"}), ("z", "a.jsonl:3", {"k": 3})]  # top-level fields win over metadata (datatrove)
    assert docs[0].source == str(path)
    assert errors == [ReadError(str(path), "line 2", 'no "text" text field (fields: body, metadata)')]
    docs, errors = _read(path, text_key="body")
    assert [d.text for d in docs] == ["y"] and len(errors) == 2


def test_jsonl_bad_lines_are_reported_with_line_numbers_and_skipped(tmp_path):
    path = _jsonl(tmp_path / "bad.jsonl", [{"text": "one"}, b'{"text": "two', {"text": "three"}, b"",
                                           b'{"text": "caf\xe9"}', b"[1, 2]", {"text": "seven"}])
    docs, errors = _read(path)
    assert [d.text for d in docs] == ["one", "three", "seven"]
    assert [d.id for d in docs] == ["bad.jsonl:1", "bad.jsonl:3", "bad.jsonl:7"]
    assert [e.location for e in errors] == ["line 2", "line 5", "line 6"]
    assert errors[0].reason.startswith("not valid JSON (Unterminated string")
    # byte offset of \xe9: lines 1-4 are 16 + 14 + 18 + 1 bytes, then '{"text": "caf' is 13
    assert errors[1].reason == "invalid UTF-8 at byte 62"
    assert errors[2].reason == "expected a JSON object, got list"


def test_errors_raise_names_file_and_location(tmp_path):
    path = _jsonl(tmp_path / "bad.jsonl", [{"text": "one"}, b"{broken"])
    seen = []
    reader = iter(read_documents(path, errors="raise", on_error=seen.append))
    assert next(reader).text == "one"
    with pytest.raises(ValueError, match=r"bad\.jsonl, line 2: not valid JSON"):
        next(reader)
    assert [e.location for e in seen] == ["line 2"]  # on_error hears it in raise mode too


def test_text_file_whole_and_paragraphs(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\nbody line 1\nbody line 2\n\n\n  \nlast")
    docs, _ = _read(tmp_path / "a.md")
    assert [(d.id, d.text) for d in docs] == [("a.md", "# Title\n\nbody line 1\nbody line 2\n\n\n  \nlast")]
    docs, _ = _read(tmp_path / "a.md", paragraphs=True)
    assert [(d.id, d.text) for d in docs] == [("a.md:1", "# Title"), ("a.md:3", "body line 1\nbody line 2"),
                                              ("a.md:8", "last")]


def test_invalid_utf8_text(tmp_path):
    path = tmp_path / "b.txt"
    path.write_bytes(b"good one\n\nbad \xff line\nrest of it\n\ngood two\n")
    docs, errors = _read(path)
    assert docs == [] and errors == [ReadError(str(path), "byte 14", "invalid UTF-8; the file is skipped")]
    docs, errors = _read(path, paragraphs=True)
    assert [d.text for d in docs] == ["good one", "good two"]
    assert errors == [ReadError(str(path), "line 3", "invalid UTF-8 at byte 14; paragraph skipped")]


def test_parquet_in_record_batches(tmp_path):
    path = tmp_path / "p.parquet"
    table = pa.table({"text": TEXTS, "id": [f"p{i}" for i in range(6)], "score": [0.5] * 6})
    pq.write_table(table, path, row_group_size=4)
    docs, errors = _read(path, batch_size=2)
    assert [d.text for d in docs] == TEXTS and not errors
    assert docs[1].id == "p1" and docs[1].metadata == {"score": 0.5}
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "nocol.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    docs, errors = _read(tmp_path / "nocol.parquet")
    assert docs == [] and errors[0].location == "column text"
    docs, errors = _read(tmp_path / "junk.parquet")
    assert docs == [] and errors[0].location == "open"


def test_tar_shards_with_brace_pattern_and_truncation(tmp_path):
    for i in range(3):
        _tar(tmp_path / f"shard-{i:03d}.tar", _tar_docs(f"s{i}_", 4))
    docs, errors = _read(str(tmp_path / "shard-{000..002}.tar"))
    assert [d.id for d in docs] == [f"s{i}_-{j}" for i in range(3) for j in range(4)] and not errors
    assert docs[0].text == "s0_ text 0" and docs[0].source == "unit" and docs[0].metadata == {"lang": "en"}

    data = (tmp_path / "shard-001.tar").read_bytes()
    (tmp_path / "shard-001.tar").write_bytes(data[:2600])  # inside the second sample's .json (2048 bytes a sample)
    docs, errors = _read(str(tmp_path / "shard-{000..002}.tar"))
    assert [d.id for d in docs] == [f"s0_-{j}" for j in range(4)] + ["s1_-0"] + [f"s2_-{j}" for j in range(4)]
    assert len(errors) == 1 and errors[0].source.endswith("shard-001.tar")
    assert errors[0].location == "member s1_001.json" and "truncated" in errors[0].reason
    assert "sample s1_001 dropped" in errors[0].reason
    with pytest.raises(ValueError, match=r"shard-001\.tar, member s1_001\.json: truncated"):
        list(read_documents(str(tmp_path / "shard-{000..002}.tar"), errors="raise"))


def test_tar_cut_at_a_member_boundary_is_reported(tmp_path):
    # tarfile alone takes end-of-file between members for the end of the archive; the reader checks for the
    # end-of-archive blocks. Each sample here is 4 x 512 bytes (two headers, two one-block payloads).
    _tar(tmp_path / "s.tar", _tar_docs("k", 3))
    (tmp_path / "s.tar").write_bytes((tmp_path / "s.tar").read_bytes()[:2 * 2048])
    docs, errors = _read(tmp_path / "s.tar")
    assert [d.id for d in docs] == ["k-0"]  # k1 may be whole, but nothing says so: dropped, and reported
    assert "without end-of-archive" in errors[0].reason and "sample k001 dropped" in errors[0].reason


def test_tar_member_problems(tmp_path):
    path = _tar(tmp_path / "m.tar", [{"__key__": "a", "txt": b"plain, no json"}, {"__key__": "b", "json": b"{}"},
                                     {"__key__": "c", "txt": b"\xff"}, {"__key__": "d", "txt": b"ok", "json": b"{"}])
    docs, errors = _read(path)
    assert [(d.id, d.text, d.source) for d in docs] == [("m.tar:a", "plain, no json", str(path))]
    assert [e.location for e in errors] == ["member b.txt", "member c.txt", "member d.json"]


def test_tar_over_http(tmp_path):
    for i in range(2):
        _tar(tmp_path / f"shard-{i}.tar", _tar_docs(f"h{i}_", 3))
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        docs, errors = _read(base + "/shard-{0..1}.tar")
        assert [d.id for d in docs] == [f"h{i}_-{j}" for i in range(2) for j in range(3)] and not errors
        docs, errors = _read(base + "/shard-{1..2}.tar")  # shard-2 does not exist: reported, not fatal
        assert len(docs) == 3 and len(errors) == 1 and errors[0].source.endswith("shard-2.tar")
        first = next(iter(read_documents(base + "/shard-0.tar")))  # stopping early leaves no error behind
        assert first.id == "h0_-0"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_folder_and_glob_read_sorted_with_relative_names(tmp_path):
    (tmp_path / "sub").mkdir()
    _jsonl(tmp_path / "sub" / "b.jsonl", [{"text": "b1"}, {"text": "b2"}])
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "stats.json").write_text('{"not": "jsonl"}')  # a folder's .json is not read
    (tmp_path / "notes.csv").write_text("ignored")
    docs, errors = _read(tmp_path)
    assert [d.id for d in docs] == ["a.txt", "sub/b.jsonl:1", "sub/b.jsonl:2"] and not errors
    docs, _ = _read(str(tmp_path / "**" / "*.jsonl"))
    assert [d.id for d in docs] == ["sub/b.jsonl:1", "sub/b.jsonl:2"]
    with pytest.raises(DataError, match="No files match"):
        _read(str(tmp_path / "*.parquet"))
    with pytest.raises(DataError, match="No data at"):
        _read(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="cannot read this kind"):
        _read(tmp_path / "notes.csv")


def test_llmfs_corpus_reads_the_default_train_shards_only(tmp_path, monkeypatch):
    from llmfs.data import readers
    from llmfs.defaults import DefaultAssets
    from llmfs.corpus import write_shards

    docs = [{"id": f"module/m{i}", "source": "docstrings", "text": f"text {i}"} for i in range(5)]
    write_shards(docs[:4], tmp_path / "corpus", max_docs_per_shard=3)
    write_shards(docs[4:], tmp_path / "corpus" / "heldout", prefix="heldout")
    (tmp_path / "corpus" / "stats.json").write_text("{}")
    monkeypatch.setattr(readers, "require_default", lambda: DefaultAssets(tmp_path))
    got, errors = _read("llmfs-corpus")
    assert [(d.id, d.source, d.text) for d in got] == [(d["id"], d["source"], d["text"]) for d in docs[:4]]
    assert not errors
    assert [d.id for d in _read("llmfs-corpus@heldout")[0]] == ["module/m4"]


def test_hf_streaming_local_files(tmp_path):
    _jsonl(tmp_path / "a.jsonl", [{"text": t, "n": i} for i, t in enumerate(TEXTS)])
    docs, errors = _read(f"hf:json:{tmp_path / 'a.jsonl'}")
    assert [d.text for d in docs] == TEXTS and not errors
    assert docs[2].id == f"json:{tmp_path / 'a.jsonl'}:3" and docs[2].metadata == {"n": 2}
    (tmp_path / "lines.txt").write_text("l1\nl2\nl3\n")
    docs, _ = _read(f"hf:text:{tmp_path / 'lines.txt'}", start_after={"file": f"hf:text:{tmp_path / 'lines.txt'}",
                                                                       "records": 1})
    assert [d.text for d in docs] == ["l2", "l3"]
    # datasets parses JSON in blocks: a broken line ends the stream, reported (a plain path skips just the line)
    _jsonl(tmp_path / "b.jsonl", [{"text": "a"}, b"{broken", {"text": "c"}])
    docs, errors = _read(f"hf:json:{tmp_path / 'b.jsonl'}")
    assert len(errors) == 1 and errors[0].location.startswith("after record") and "the stream ends" in errors[0].reason
    with pytest.raises(DataError, match="no files match"):
        _read(f"hf:json:{tmp_path / 'none' / '*.jsonl'}")


def test_hf_hub_name_offline_fails_fast():
    start = time.perf_counter()
    with pytest.raises(DataError, match="Cannot stream the dataset 'wikitext'.*HF_HUB_OFFLINE"):
        list(read_documents("hf:wikitext:wikitext-2-raw-v1@train"))
    assert time.perf_counter() - start < 5


# -- resumption ----------------------------------------------------------------------------------------------------
def _write_all_formats(folder: Path) -> dict[str, str]:
    """The same six documents in each format; spec -> reader options as a key."""
    _jsonl(folder / "d.jsonl", [{"text": t} for t in TEXTS])
    pq.write_table(pa.table({"text": TEXTS}), folder / "d.parquet", row_group_size=2)
    _tar(folder / "d.tar", [{"__key__": f"k{i}", "txt": t.encode()} for i, t in enumerate(TEXTS)])
    (folder / "d.txt").write_text("\n\n".join(t.replace("\n", " ") or "." for t in TEXTS))
    parts = folder / "parts"
    parts.mkdir()
    for i in range(3):
        _jsonl(parts / f"{i}.jsonl", [{"text": t} for t in TEXTS[2 * i: 2 * i + 2]])
    return {"d.jsonl": "", "d.parquet": "", "d.tar": "", "d.txt": "paragraphs", "parts": ""}


@pytest.mark.parametrize("name", ["d.jsonl", "d.parquet", "d.tar", "d.txt", "parts"])
def test_resume_from_state_and_from_id_gives_exactly_the_rest(tmp_path, name):
    options = {"paragraphs": True} if _write_all_formats(tmp_path)[name] else {}
    spec = tmp_path / name
    everything = [d.id for d in read_documents(spec, **options)]
    assert len(everything) == 6
    for k in range(1, 7):
        reader = DocumentReader(spec, **options)
        head = [d.id for d in itertools.islice(reader, k)]
        saved = json.loads(json.dumps(reader.state.to_dict()))  # the state survives JSON
        assert saved["last_id"] == head[-1] == everything[k - 1]
        assert [d.id for d in read_documents(spec, start_after=saved, **options)] == everything[k:]
        assert [d.id for d in read_documents(spec, start_after=ReaderState.from_dict(saved), **options)] == \
            everything[k:]
        assert [d.id for d in read_documents(spec, start_after=head[-1], **options)] == everything[k:]


def test_resume_checks_the_inputs_and_the_id(tmp_path):
    _write_all_formats(tmp_path)
    reader = DocumentReader(tmp_path / "parts")
    next(iter(reader))
    state = reader.state.to_dict()
    (tmp_path / "parts" / "0.jsonl").rename(tmp_path / "parts" / "9.jsonl")
    with pytest.raises(DataError, match="inputs changed"):
        list(read_documents(tmp_path / "parts", start_after=state))
    with pytest.raises(DataError, match="no document has that id"):
        list(read_documents(tmp_path / "d.jsonl", start_after="nope"))


def test_iterating_a_reader_again_continues(tmp_path):
    _write_all_formats(tmp_path)
    reader = DocumentReader(tmp_path / "d.jsonl")
    first = [d.text for d in itertools.islice(reader, 2)]
    assert first + [d.text for d in reader] == TEXTS


# -- memory --------------------------------------------------------------------------------------------------------
_MEASURE = """
import json, sys, psutil
from llmfs.data.readers import read_documents
before = psutil.Process().memory_info().rss
n = chars = 0
for doc in read_documents(sys.argv[1], paragraphs=True):
    n += 1
    chars += len(doc.text)
# VmHWM, the peak RSS of this process image (ru_maxrss would also count the forking parent's, kept across exec)
peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"docs": n, "chars": chars, "growth": peak - before}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["jsonl", "txt"])
def test_memory_stays_flat_while_streaming_a_large_file(tmp_path, suffix):
    # ~200 MB of 2 KB records; the reader's peak RSS growth (measured in a fresh process, against its RSS after
    # the imports) must stay a small fraction of it.
    n, body = 100_000, "lorem ipsum dolor sit amet " * 75
    path = tmp_path / f"big.{suffix}"
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"text": f"{i} {body}"}) + "\n" if suffix == "jsonl" else f"{i} {body}\n\n")
    size = path.stat().st_size
    assert size > 200_000_000
    root = Path(__file__).resolve().parents[2]
    start = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, cwd=root,
                             check=True)
    finally:
        path.unlink()  # pytest keeps the last runs' tmp dirs: not 200 MB each
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["docs"] == n and result["chars"] == n * (len(body) + 1) + sum(len(str(i)) for i in range(n))
    assert result["growth"] < 50_000_000, f"RSS grew {result['growth'] / 1e6:.0f} MB reading {size / 1e6:.0f} MB"
    assert time.perf_counter() - start < 30
