"""Packing: full rows only, no token lost or repeated across documents, workers and ranks; the train adapter."""

from __future__ import annotations

import itertools
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader

from llmfs.data import packing
from llmfs.data.documents import Document
from llmfs.data.packing import PackedBatches, PackedDataset
from llmfs.data.shards import write_documents

SEQ = 15  # rows of 16 tokens
N_DOCS = 41


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from llmfs.corpus import train_tokenizer

    texts = [f"document {i}: " + " ".join(f"word{j % 7}" for j in range(i % 13 + 1)) for i in range(50)]
    return train_tokenizer(texts * 3, tmp_path_factory.mktemp("tok"), vocab_size=300)


DOCS = [Document(f"document {i}: " + " ".join(f"word{j % 7}" for j in range(i % 13 + 1)), f"d{i}") for i in
        range(N_DOCS)]


def _ids(tokenizer, doc: Document) -> tuple[int, ...]:
    return tuple(tokenizer(doc.text, add_special_tokens=False)["input_ids"])


def _expected(tokenizer, docs=DOCS) -> list[int]:
    return [t for d in docs for t in (*_ids(tokenizer, d), tokenizer.eos_token_id)]


def _split_docs(tokenizer, tokens: list[int]) -> list[str]:
    """The document ids a token stream holds, found by cutting at EOS (every text tokenizes differently)."""
    by_ids = {_ids(tokenizer, d): d.id for d in DOCS}
    assert len(by_ids) == N_DOCS
    pieces, current = [], []
    for t in tokens:
        if t == tokenizer.eos_token_id:
            pieces.append(by_ids[tuple(current)])
            current = []
        else:
            current.append(t)
    assert current == []  # drop_last=False: the stream ends on a document's EOS
    return pieces


def _consumer_rows(ds: PackedDataset, worker: int, workers: int, monkeypatch) -> list[torch.Tensor]:
    """The rows `ds` gives as DataLoader worker `worker` of `workers` (get_worker_info faked, then restored)."""
    with monkeypatch.context() as m:
        m.setattr(packing, "get_worker_info", lambda: SimpleNamespace(id=worker, num_workers=workers))
        return list(ds)


def test_rows_are_full_and_hold_every_token_in_order(tokenizer):
    expected = _expected(tokenizer)
    rows = list(PackedDataset(lambda: DOCS, tokenizer, SEQ))
    assert rows and all(r.shape == (SEQ + 1,) and r.dtype == torch.long for r in rows)
    packed = torch.cat(rows).tolist()
    assert packed == expected[:len(packed)] and len(expected) - len(packed) < SEQ + 1
    # documents span rows: the leftover of one carries into the next (some row holds an EOS mid-way)
    assert any(tokenizer.eos_token_id in r[1:-1].tolist() for r in rows)
    short = list(PackedDataset(lambda: DOCS, tokenizer, SEQ, drop_last=False))
    assert torch.cat(short).tolist() == expected and len(short[-1]) < SEQ + 1


@pytest.mark.parametrize("source", ["factory", "5 shards", "3 shards"])
def test_two_ranks_by_two_workers_see_everything_exactly_once(tokenizer, tmp_path, monkeypatch, source):
    if source == "factory":
        documents = lambda: iter(DOCS)  # noqa: E731
    else:
        n = int(source[0])
        documents = [s.path for s in write_documents(DOCS, tmp_path, max_docs=-(-N_DOCS // n))]
        assert len(documents) == n
    if source == "5 shards":
        assert PackedDataset(tmp_path, tokenizer, SEQ).paths == [str(p) for p in documents]  # a folder spec
    seen, full_rows = [], 0
    for rank, worker in itertools.product(range(2), range(2)):
        ds = PackedDataset(documents, tokenizer, SEQ, rank=rank, world_size=2, drop_last=False)
        rows = _consumer_rows(ds, worker, 2, monkeypatch)
        seen += _split_docs(tokenizer, torch.cat(rows).tolist())
        full = PackedDataset(documents, tokenizer, SEQ, rank=rank, world_size=2)
        full_rows += sum(1 for r in _consumer_rows(full, worker, 2, monkeypatch) if len(r) == SEQ + 1)
        if source == "5 shards":  # enough shards: consumer c = 2 * rank + worker reads shard files c, c + 4
            with monkeypatch.context() as m:
                m.setattr(packing, "get_worker_info", lambda: SimpleNamespace(id=worker, num_workers=2))
                ids = [d.id for d in ds.documents()]
            assert ids == [d.id for d in DOCS if int(d.id[1:]) // 9 % 4 == rank * 2 + worker]
    assert sorted(seen) == sorted(d.id for d in DOCS)  # every document once, none twice
    assert full_rows >= len(_expected(tokenizer)) // (SEQ + 1) - 4  # at most one partial row lost per consumer


@pytest.mark.parametrize("world_size", [1, 2])
def test_real_dataloader_workers_split_like_the_simulation(tokenizer, monkeypatch, world_size):
    real, simulated, docs = Counter(), Counter(), []
    for rank in range(world_size):
        ds = PackedDataset(lambda: iter(DOCS), tokenizer, SEQ, rank=rank, world_size=world_size, drop_last=False)
        real.update(tuple(r.tolist()) for r in DataLoader(ds, batch_size=None, num_workers=2))
        for worker in range(2):
            rows = _consumer_rows(ds, worker, 2, monkeypatch)
            simulated.update(tuple(r.tolist()) for r in rows)
            docs += _split_docs(tokenizer, torch.cat(rows).tolist())
    assert real == simulated
    assert sorted(docs) == sorted(d.id for d in DOCS)
    batches = list(DataLoader(PackedDataset(lambda: iter(DOCS), tokenizer, SEQ), batch_size=3, num_workers=2))
    assert batches[0].shape == (3, SEQ + 1)


def test_rank_from_torch_distributed(tokenizer, monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 3)
    ds = PackedDataset(lambda: DOCS, tokenizer, SEQ)
    assert (ds.rank, ds.world_size) == (1, 3) and ds.consumer() == (1, 3)
    assert [d.id for d in ds.documents()] == [f"d{i}" for i in range(1, N_DOCS, 3)]


def test_shard_shuffle_is_seeded_per_epoch(tokenizer, tmp_path):
    paths = [s.path for s in write_documents(DOCS, tmp_path, max_docs=5)]
    order = lambda ds: [d.id for d in ds.documents()]  # noqa: E731
    a, b = PackedDataset(paths, tokenizer, SEQ, seed=7), PackedDataset(paths, tokenizer, SEQ, seed=7)
    assert order(a) == order(b) != order(PackedDataset(paths, tokenizer, SEQ)) == [d.id for d in DOCS]
    assert sorted(order(a)) == sorted(d.id for d in DOCS)
    first = order(a)
    a.set_epoch(1)
    assert order(a) != first
    assert [torch.equal(x, y) for x, y in zip(a, b)].count(False) > 0  # epochs differ, rows follow the order


def test_validation(tokenizer):
    with pytest.raises(ValueError, match="seq_len"):
        PackedDataset(lambda: DOCS, tokenizer, 0)
    with pytest.raises(ValueError, match="rank must be in"):
        PackedDataset(lambda: DOCS, tokenizer, SEQ, rank=2, world_size=2)
    with pytest.raises(ValueError, match="eos_token_id"):
        PackedDataset(lambda: DOCS, SimpleNamespace(eos_token_id=None), SEQ)


# -- PackedBatches: the training loop's BatchSource -----------------------------------------------------------------
def test_packed_batches_follow_the_stream_and_can_jump(tokenizer):
    ds = PackedDataset(lambda: DOCS, tokenizer, SEQ)
    rows = list(ds)
    source = PackedBatches(ds, batch_size=2, grad_accum=2)
    x, y = source.batch(1, 0)
    assert x.shape == y.shape == (2, SEQ) and torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(torch.cat([x, y[:, -1:]], 1), torch.stack(rows[:2]))
    assert torch.equal(source.batch(1, 1)[0], torch.stack(rows[2:4])[:, :-1])
    assert torch.equal(source.batch(2, 1)[0], torch.stack(rows[6:8])[:, :-1])     # batch (2 - 1) * 2 + 1 = 3
    # a fresh source asked for step 2 (a resumed run) reads forward to the same batch; going back restarts
    assert torch.equal(PackedBatches(ds, 2, grad_accum=2).batch(2, 1)[0], source.batch(2, 1)[0])
    assert torch.equal(source.batch(1, 0)[0], x)
    assert torch.equal(source.batch(0, 1)[0], source.batch(1, 1)[0])  # step 0 (evaluate) counts from the start


def test_packed_batches_cycle_and_run_out(tokenizer):
    ds = PackedDataset(lambda: DOCS, tokenizer, SEQ)
    n_rows = len(list(ds))
    endless = PackedBatches(ds, batch_size=n_rows)
    assert torch.equal(endless.batch(1)[0], endless.batch(2)[0])  # one batch per epoch: epoch 2 = epoch 1
    once = PackedBatches(ds, batch_size=n_rows, cycle=False)
    once.batch(1)
    with pytest.raises(ValueError, match="ran out"):
        once.batch(2)
    with pytest.raises(ValueError, match="no full sequence"):
        PackedBatches(PackedDataset(lambda: DOCS[:1], tokenizer, 500), 1).batch(1)


def test_train_consumes_packed_batches(tokenizer):
    from llmfs.config import TrainConfig
    from llmfs.model import GPT, GPTConfig
    from llmfs.train import train

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=len(tokenizer), n_positions=SEQ, n_embd=16, n_layer=1, n_head=2))
    cfg = TrainConfig(steps=4, batch_size=2, seq_len=SEQ, lr=1e-3, warmup_steps=1, eval_every=2, eval_batches=2,
                      checkpoint_every=0, device="cpu")
    ds = PackedDataset(lambda: DOCS, tokenizer, SEQ)
    result = train(model, PackedBatches(ds, 2), cfg, val_batches=PackedBatches(ds, 2))
    assert len(result.losses) == 4 and all(r["tokens"] == 2 * SEQ for r in result.history)
    assert [e["step"] for e in result.evals] == [2, 4]
