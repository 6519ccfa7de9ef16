"""Shard writer: limits, exact round trip through our reader and webdataset, shards appear whole."""

from __future__ import annotations

import json

import pytest
import webdataset as wds

from llmfs.corpus import iter_shard_texts
from llmfs.data.documents import Document
from llmfs.data.readers import read_documents
from llmfs.data.shards import ShardInfo, ShardWriter, write_documents


def _docs(n: int, size: int = 10) -> list[Document]:
    return [Document(f"{i:0{size}d}", f"d{i}", "unit", {}) for i in range(n)]


def test_max_docs_splits_shards(tmp_path):
    shards = write_documents(_docs(10), tmp_path, max_docs=3)
    assert [s.path.name for s in shards] == [f"shard-{i:06d}.tar" for i in range(4)]
    assert [s.documents for s in shards] == [3, 3, 3, 1]
    assert [s.last_id for s in shards] == ["d2", "d5", "d8", "d9"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [s.path.name for s in shards]  # no temp files left


def test_max_bytes_closes_a_shard_before_a_document_that_would_pass_it(tmp_path):
    docs = _docs(6, size=100)
    # payload per document: 100 text bytes + its json ({"id": "d0", "metadata": {}, "source": "unit"}: 46 bytes)
    per_doc = 100 + len(json.dumps({"id": "d0", "metadata": {}, "source": "unit"}, sort_keys=True))
    assert per_doc == 146
    docs.insert(3, Document("x" * 1000, "big", "unit"))
    shards = write_documents(docs, tmp_path, prefix="part", max_bytes=2 * per_doc + 10)
    assert [s.documents for s in shards] == [2, 1, 1, 2, 1]  # d0 d1 | d2 | big (alone, over the limit) | d3 d4 | d5
    assert all(s.bytes <= 2 * per_doc + 10 for s in shards if s.documents > 1)
    assert [d.id for d in read_documents(tmp_path)] == [d.id for d in docs]


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # wds.WebDataset leaves closing its shard files to the GC
def test_exact_round_trip(tmp_path):
    docs = [
        Document("plain", "a.b", "src1", {"lang": "en", "score": 0.25, "tags": ["x", "y"]}),
        Document("  leading/trailing spaces\r\nCRLF\n\n", "a_b", "src1"),   # sanitizes like "a.b": same key
        Document("", "empty", "src2"),
        Document("ünïcödé ☃ \U0001f600 \x00 nul", "path/with/slashes", "src2", {"nested": {"k": [1, 2]}}),
        Document("x" * 100_000, "id " + "long" * 50, ""),
    ]
    shards = write_documents(docs, tmp_path, max_docs=2)
    assert [s.documents for s in shards] == [2, 2, 1]
    assert list(read_documents(tmp_path)) == docs
    # The same bytes through webdataset itself, and through the corpus reader (which reads id / source).
    texts = [s["txt"].decode("utf-8") for s in wds.WebDataset([str(s.path) for s in shards], shardshuffle=False,
                                                                   empty_check=False)]
    assert texts == [d.text for d in docs]
    assert [(d["id"], d["text"]) for d in iter_shard_texts(tmp_path)] == [(d.id, d.text) for d in docs]


def test_shards_appear_only_when_complete(tmp_path):
    seen = []
    with ShardWriter(tmp_path, max_docs=3, on_shard=lambda info: seen.append(
            (info, sorted(p.name for p in tmp_path.glob("*.tar"))))) as writer:
        for doc in _docs(4):
            writer.write(doc)
        # mid-shard: the finished shard and a hidden temp file; the folder reads as the finished shard only
        assert sorted(p.name for p in tmp_path.glob("*.tar")) == ["shard-000000.tar"]
        assert [p.name.startswith(".shard-000001.tar.tmp-") for p in tmp_path.iterdir()].count(True) == 1
        assert [d.id for d in read_documents(tmp_path)] == ["d0", "d1", "d2"]
    assert seen[0] == (ShardInfo(tmp_path / "shard-000000.tar", 3, 30 + 3 * 46, "d2"), ["shard-000000.tar"])
    assert [s.documents for s in writer.shards] == [3, 1]


def test_an_error_discards_only_the_unfinished_shard(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, max_docs=2) as writer:
            for doc in _docs(3):
                writer.write(doc)
            raise RuntimeError("pipeline failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-000000.tar"]


def test_existing_shards_need_overwrite_and_numbering_can_continue(tmp_path):
    write_documents(_docs(4), tmp_path, max_docs=2)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ShardWriter(tmp_path)
    more = write_documents(_docs(2), tmp_path, max_docs=2, start_index=2)  # a resumed pipeline's next shards
    assert [s.path.name for s in more] == ["shard-000002.tar"]
    write_documents(_docs(1), tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-000000.tar"]


def test_limits_and_text_are_validated(tmp_path):
    with pytest.raises(ValueError, match="must be positive"):
        ShardWriter(tmp_path, max_docs=0)
    with ShardWriter(tmp_path / "s") as writer:
        with pytest.raises(ValueError, match="'bad': the text is not valid Unicode at character 1"):
            writer.write(Document("a\udcff", "bad"))
