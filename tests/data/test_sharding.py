"""Sharded reading over HTTP on loopback: across ranks and DataLoader workers every document is read exactly once,
with many shards (whole shards per reader) and with few (every n-th document); reading resumes mid-shard; a
position saved for another reader count is refused; object storage without its fsspec backend says what to install."""

from __future__ import annotations

import collections
import functools
import http.server
import threading
from pathlib import Path

import pytest
import torch

from llmfs.data.documents import Document
from llmfs.data.readers import DataError, read_documents
from llmfs.data.sharding import Part, Progress, ShardedDocuments, part_for
from llmfs.data.shards import write_documents


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """serve(n_docs, docs_per_shard) -> (URL pattern of the shards, all ids), over HTTP on 127.0.0.1."""
    servers = []

    def serve(n_docs: int, per_shard: int):
        folder = tmp_path / f"shards-{n_docs}-{per_shard}"
        docs = [Document(text=f"document number {i} " * 5, id=f"doc-{i:04d}") for i in range(n_docs)]
        shards = write_documents(docs, folder, max_docs=per_shard)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                 functools.partial(_QuietHandler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        pattern = f"http://127.0.0.1:{server.server_address[1]}/shard-{{000000..{len(shards) - 1:06d}}}.tar"
        ids = [d.id for d in read_documents(folder, errors="raise")]
        assert len(ids) == n_docs
        return pattern, ids

    yield serve
    for s in servers:
        s.shutdown()
        s.server_close()


def _read_all(spec: str, world: int, workers: int, **kw) -> list[list[str]]:
    """The ids each rank's DataLoader (with `workers` worker processes) yields."""
    per_rank = []
    for rank in range(world):
        loader = torch.utils.data.DataLoader(ShardedDocuments(spec, rank, world, errors="raise", **kw),
                                             batch_size=None, num_workers=workers)
        per_rank.append([item["id"] for item in loader])
    return per_rank


@pytest.mark.parametrize("n_docs, per_shard", [(120, 10), (30, 15)])  # 12 shards for 4 readers; 2 shards for 4
def test_every_document_is_read_once_across_ranks_and_workers(served, n_docs, per_shard):
    pattern, ids = served(n_docs, per_shard)
    per_rank = _read_all(pattern, world=2, workers=2)
    seen = collections.Counter(i for rank in per_rank for i in rank)
    assert seen == collections.Counter(ids)  # each exactly once
    assert all(per_rank) and not set(per_rank[0]) & set(per_rank[1])  # the ranks' parts are disjoint
    assert abs(len(per_rank[0]) - len(per_rank[1])) <= per_shard


def test_reading_resumes_in_the_middle_of_a_shard(served):
    pattern, ids = served(60, 20)  # 3 shards, 2 readers (ranks): whole shards each, rank 0 gets two
    first = ShardedDocuments(pattern, 0, 2, errors="raise")
    progress, taken = Progress(), []
    for item in first:
        taken.append(item["id"])
        progress.update(item)
        if len(taken) == 25:  # 5 documents into rank 0's second shard
            break
    saved = progress.state_dict()
    rest = [item["id"] for item in ShardedDocuments(pattern, 0, 2, errors="raise", start=saved)]
    whole = [item["id"] for item in ShardedDocuments(pattern, 0, 2, errors="raise")]
    assert taken + rest == whole and len(whole) == 40
    with pytest.raises(ValueError, match="saved for 2 readers"):
        next(iter(ShardedDocuments(pattern, 0, 1, errors="raise", start={"0": saved["0"]})))


def test_resume_with_few_shards_continues_the_document_stride(served):
    pattern, ids = served(10, 10)  # one shard, 3 readers: every third document
    parts = [[item["id"] for item in ShardedDocuments(pattern, r, 3)] for r in range(3)]
    assert sorted(i for p in parts for i in p) == sorted(ids) and [len(p) for p in parts] == [4, 3, 3]
    it = iter(ShardedDocuments(pattern, 1, 3))
    progress = Progress()
    progress.update(next(it))
    assert [item["id"] for item in ShardedDocuments(pattern, 1, 3, start=progress.state_dict())] == parts[1][1:]


def test_parts_are_rank_major_and_checked():
    assert part_for(1, 2, worker=0, workers=3) == Part(3, 6)
    assert part_for(0, 1) == Part(0, 1)  # outside a DataLoader worker
    with pytest.raises(ValueError):
        Part(4, 4)
    with pytest.raises(ValueError, match="rank 2 is not among 2"):
        ShardedDocuments("x", 2, 2)


def test_object_storage_without_its_backend_says_what_to_install(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_s3fs(name, *args, **kwargs):
        if name.startswith("s3fs"):
            raise ImportError("No module named 's3fs'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_s3fs)
    with pytest.raises(DataError, match="pip install s3fs"):
        list(read_documents("s3://bucket/shard-{0..1}.tar", errors="raise"))


@pytest.fixture
def s3_bucket(monkeypatch):
    """A real S3 API on loopback (moto's server), with shards uploaded; s3fs reaches it through AWS_ENDPOINT_URL."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in dict(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                           AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint).items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="lab")
    yield client
    server.stop()


def test_shards_in_s3_are_read_once_across_ranks(s3_bucket, tmp_path):
    docs = [Document(text=f"stored in a bucket {i} " * 3, id=f"s3doc-{i:03d}") for i in range(50)]
    for shard in write_documents(docs, tmp_path / "shards", max_docs=10):
        s3_bucket.upload_file(str(shard.path), "lab", f"shards/{Path(shard.path).name}")
    spec = "s3://lab/shards/shard-{000000..000004}.tar"
    read = list(read_documents(spec, errors="raise"))
    ids = [d.id for d in read]
    assert len(set(ids)) == 50 and sorted(d.text for d in read) == sorted(d.text for d in docs)
    per_rank = _read_all(spec, world=2, workers=2)
    assert collections.Counter(i for rank in per_rank for i in rank) == collections.Counter(ids)
