"""Change a model's vocabulary: add tokens, pad it for speed, or move the model to another tokenizer.

Every function returns a new model (and tokenizer) and leaves its arguments untouched: the UI passes in a cached,
shared model. Rows of tokens that already exist are copied bit for bit, so their logits do not change; only how the
new rows start differs. A padded input model comes back unpadded from ``add_tokens`` and ``swap_tokenizer``; pad
the result again with ``pad_vocab``. ``add_tokens`` and ``swap_tokenizer`` take our GPT and our Llama alike;
``pad_vocab`` only our GPT (our Llama has no padded vocabulary: ``padded_size`` gives the arithmetic).

References:
- Hewitt 2021, "Initializing New Word Embeddings for Pretrained Language Models": new rows at the mean of the
  existing ones keep the model's next-token distribution close to the old one ("mean").
- Gee et al. 2022, "Fast Vocabulary Transfer for Language Model Compression": a new token starts at the mean of
  the rows of the pieces the old tokenizer splits it into ("subtoken_mean", and ``swap_tokenizer``).
- karpathy/nanoGPT ``train.py``: GPT-2's 50257 tokens padded to 50304, "nearest multiple of 64 for efficiency".
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn as nn
from torch.nn import functional as F

from .llama import Llama
from .model import GPT

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Model = GPT | Llama
Init = Literal["mean", "subtoken_mean"]
INITS: tuple[str, ...] = ("mean", "subtoken_mean")


@dataclass(frozen=True)
class AddTokensReport:
    """What ``add_tokens`` did, for the UI to show."""

    tokens: tuple[str, ...]
    """Tokens added, in the order given."""
    ids: tuple[int, ...]
    """Their ids in the new tokenizer (same order)."""
    skipped: tuple[str, ...]
    """Tokens that were already in the vocabulary (nothing changes for them)."""
    old_vocab_size: int
    new_vocab_size: int
    init: str
    """How the new rows started: "mean" or "subtoken_mean"."""
    splits: dict[str, tuple[str, ...]]
    """How the old tokenizer split each added token (decoded pieces)."""


@dataclass(frozen=True)
class PadReport:
    """What ``pad_vocab`` did: ``vocab_size`` real tokens now live in ``new_rows`` rows."""

    vocab_size: int
    old_rows: int
    new_rows: int
    multiple: int


@dataclass(frozen=True)
class SwapReport:
    """How ``swap_tokenizer`` filled each row of the new vocabulary; the three counts add up to new_vocab_size."""

    old_vocab_size: int
    new_vocab_size: int
    matched: int
    """Same token string in both vocabularies: the row was copied."""
    from_subtokens: int
    """Mean of the old rows of the old tokenizer's split of the token's text."""
    from_mean: int
    """Split to nothing (or no text): the mean of all old rows."""


def add_tokens(
    model: Model,
    tokenizer: PreTrainedTokenizerBase,
    new_tokens: Sequence[str],
    special: bool = False,
    init: Init = "mean",
) -> tuple[Model, PreTrainedTokenizerBase, AddTokensReport]:
    """Add ``new_tokens`` to a copy of ``tokenizer`` and give each a new row in a copy of ``model``.

    The embedding and the head grow together (one matrix when tied, both when untied); every other weight is
    copied, so the logits of the existing tokens are unchanged and the new tokens only add columns.

    Args:
        special: add them as special tokens (never split, and dropped by ``decode(skip_special_tokens=True)``).
        init: "mean" of all existing rows (Hewitt 2021), or "subtoken_mean": the mean of the rows of the pieces
            the old tokenizer splits the token into (Gee et al. 2022).

    Returns:
        (new model, new tokenizer, report). Tokens already in the vocabulary are skipped and reported.

    Raises:
        ValueError: unknown ``init``, or a tokenizer with more ids than the model has rows.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    V = _check_tokenizer(model, tokenizer)
    new_tokenizer = copy.deepcopy(tokenizer)
    before = new_tokenizer.get_vocab()
    if special:
        # replace_extra_special_tokens=False: keep the special tokens the tokenizer already has.
        new_tokenizer.add_special_tokens(
            {"additional_special_tokens": list(new_tokens)}, replace_extra_special_tokens=False
        )
    else:
        new_tokenizer.add_tokens(list(new_tokens))
    after = new_tokenizer.get_vocab()
    unique = list(dict.fromkeys(new_tokens))
    added = [t for t in unique if t in after and t not in before]
    ids = [after[t] for t in added]
    split_ids = {t: tokenizer(t, add_special_tokens=False)["input_ids"] for t in added}
    # A tokenizer smaller than the model hands out ids below vocab_size: those rows were unused and are reused.
    new_V = max([V, *(i + 1 for i in ids)])
    tables = []
    for old in _real_rows(model):
        table = torch.cat([old, old.new_zeros(new_V - V, old.size(1))])  # (new_V, C)
        for token, i in zip(added, ids):
            table[i] = _mean_row(old, split_ids[token] if init == "subtoken_mean" else [])
        tables.append(table)
    report = AddTokensReport(
        tokens=tuple(added),
        ids=tuple(ids),
        skipped=tuple(t for t in unique if t not in added),
        old_vocab_size=V,
        new_vocab_size=new_V,
        init=init,
        splits={t: tuple(tokenizer.decode([i]) for i in split_ids[t]) for t in added},
    )
    return _with_vocab(model, tables, new_V), new_tokenizer, report


def padded_size(vocab_size: int, multiple: int = 64) -> int:
    """``vocab_size`` rounded up to a multiple of ``multiple`` (GPT-2's 50,257 -> 50,304 for 64, as nanoGPT pads).

    Raises:
        ValueError: a size below 1 or ``multiple`` < 1.
    """
    if not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple!r}")
    if not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    return -(-vocab_size // multiple) * multiple


def pad_vocab(model: GPT, multiple: int = 64) -> tuple[GPT, PadReport]:
    """A copy of ``model`` whose embedding and head have a multiple of ``multiple`` rows, for faster matmuls.

    ``config.vocab_size`` stays the real vocabulary and ``config.padded_vocab_size`` sizes the tensors;
    ``forward`` drops the padding columns, so logits, softmax and loss equal the unpadded model's. The padding
    rows are zeros: no token id looks them up and no logit reads them, so they get no gradient and stay inert.
    Export with ``save_hf_folder(unpad_vocab(model), ...)``: transformers' GPT-2 has no padded vocabulary.

    Raises:
        ValueError: ``multiple`` < 1, or our Llama (its forward has no padding columns to drop).
    """
    if isinstance(model, Llama):
        raise ValueError("Padding the vocabulary is implemented for this lab's GPT only: our Llama's forward has no "
                         "padding columns to drop. padded_size gives the rounded size.")
    V = model.config.vocab_size
    rows = padded_size(V, multiple)
    tables = [torch.cat([old, old.new_zeros(rows - V, old.size(1))]) for old in _real_rows(model)]
    report = PadReport(vocab_size=V, old_rows=model.config.vocab_rows, new_rows=rows, multiple=multiple)
    return _with_vocab(model, tables, V, padded_vocab_size=rows), report


def unpad_vocab(model: GPT) -> GPT:
    """A copy of ``model`` with the padding rows dropped (``padded_vocab_size=None``); same logits."""
    return _with_vocab(model, [rows.clone() for rows in _real_rows(model)], model.config.vocab_size)


def swap_tokenizer(
    model: Model, old_tokenizer: PreTrainedTokenizerBase, new_tokenizer: PreTrainedTokenizerBase
) -> tuple[Model, SwapReport]:
    """A copy of ``model`` with one row per token of ``new_tokenizer`` (Fast Vocabulary Transfer, Gee et al. 2022).

    A token whose string is in the old vocabulary keeps its old row. Any other token starts at the mean of the
    old rows of the old tokenizer's split of its decoded text, or at the mean of all old rows if that split is
    empty. The head follows: tied stays tied, an untied head is rebuilt the same way from its own rows.

    Raises:
        ValueError: ``old_tokenizer`` has more ids than the model has rows (it is not this model's tokenizer).
    """
    V = _check_tokenizer(model, old_tokenizer)
    new_V = len(new_tokenizer)
    origins = row_origins(old_tokenizer, new_tokenizer)
    tables = [_rows_from(old, origins) for old in _real_rows(model)]  # (new_V, C) each
    report = SwapReport(
        old_vocab_size=V,
        new_vocab_size=new_V,
        matched=sum(1 for o in origins if o.kind == "matched"),
        from_subtokens=sum(1 for o in origins if o.kind == "subtokens"),
        from_mean=sum(1 for o in origins if o.kind == "mean"),
    )
    return _with_vocab(model, tables, new_V), report


@dataclass(frozen=True)
class RowOrigin:
    """Where ``swap_tokenizer`` takes one new token's row from."""

    kind: Literal["matched", "subtokens", "mean"]
    """"matched": the same token string is in the old vocabulary; "subtokens": the mean of the old rows of the old
    tokenizer's split of the token's text; "mean": nothing to split, the mean of all old rows."""
    ids: tuple[int, ...]
    """The old ids whose rows are averaged (one for "matched", none for "mean")."""


def row_origins(
    old_tokenizer: PreTrainedTokenizerBase, new_tokenizer: PreTrainedTokenizerBase, ids: Sequence[int] | None = None
) -> list[RowOrigin]:
    """How ``swap_tokenizer`` starts the row of each new token id in ``ids`` (default: every id of
    ``new_tokenizer``), without touching a model: the UI shows it for the tokens of one sentence."""
    old_vocab = old_tokenizer.get_vocab()
    ids = list(range(len(new_tokenizer))) if ids is None else [int(i) for i in ids]
    origins: list[RowOrigin | None] = []
    pending = []
    for n, token in enumerate(new_tokenizer.convert_ids_to_tokens(ids)):
        if token is not None and token in old_vocab:
            origins.append(RowOrigin("matched", (old_vocab[token],)))
        else:
            origins.append(None)
            pending.append(n)
    texts = new_tokenizer.batch_decode([[ids[n]] for n in pending])
    for n, split in zip(pending, old_tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []):
        origins[n] = RowOrigin("subtokens" if split else "mean", tuple(split))
    return origins  # type: ignore[return-value]  (every None was filled above)


def _check_tokenizer(model: Model, tokenizer: PreTrainedTokenizerBase) -> int:
    V = model.config.vocab_size
    if len(tokenizer) > V:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} ids but the model only {V} token rows; "
            "pass the tokenizer the model was trained with"
        )
    return V


@torch.no_grad()
def _rows_from(table: torch.Tensor, origins: Sequence[RowOrigin]) -> torch.Tensor:
    """One new row per origin, in three batched operations instead of one small one per row (50,257 of them for
    GPT-2's vocabulary): matched rows copied bit for bit, pieces averaged by one `embedding_bag`, and the mean of
    all rows for the rest."""
    out = table.mean(0).expand(len(origins), -1).clone()
    matched = [(n, o.ids[0]) for n, o in enumerate(origins) if o.kind == "matched"]
    if matched:
        rows, ids = zip(*matched)
        out[list(rows)] = table[list(ids)]
    pieces = [(n, o.ids) for n, o in enumerate(origins) if o.kind == "subtokens"]
    if pieces:
        rows, bags = zip(*pieces)
        flat = torch.tensor([i for bag in bags for i in bag], dtype=torch.long, device=table.device)
        offsets = torch.tensor([0, *itertools.accumulate(len(bag) for bag in bags[:-1])], dtype=torch.long,
                               device=table.device)
        out[list(rows)] = F.embedding_bag(flat, table, offsets, mode="mean")
    return out


def _mean_row(table: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
    # A one-id "mean" is the row itself, bit for bit: matched tokens keep exactly their old row.
    return table[list(ids)].mean(0) if ids else table.mean(0)


def _embedding(model: Model) -> nn.Embedding:
    return model.model.embed_tokens if isinstance(model, Llama) else model.transformer.wte


@torch.no_grad()
def _real_rows(model: Model) -> list[torch.Tensor]:
    """The embedding's rows of real tokens, plus the head's when untied (padding rows left out)."""
    V = model.config.vocab_size
    weights = [_embedding(model).weight]
    if model.lm_head.weight is not weights[0]:
        weights.append(model.lm_head.weight)
    return [w.detach()[:V] for w in weights]


def _with_vocab(model: Model, tables: list[torch.Tensor], vocab_size: int,
                padded_vocab_size: int | None = None) -> Model:
    """A deep copy of ``model`` that owns ``tables`` (fresh tensors) as its embedding and untied head."""
    # Copy everything but the two tables (weights, requires_grad flags, train/eval mode): a memo entry makes
    # deepcopy reuse the old tensors instead of copying rows that are replaced right after.
    wte, head = _embedding(model).weight, model.lm_head.weight
    new = copy.deepcopy(model, memo={id(wte): wte, id(head): head})
    llama = isinstance(new, Llama)
    changes = {"vocab_size": vocab_size} if llama else {"vocab_size": vocab_size,
                                                         "padded_vocab_size": padded_vocab_size}
    new.config = dataclasses.replace(model.config, **changes)
    rows, C = tables[0].shape
    embedding = nn.Embedding(rows, C, _weight=tables[0], _freeze=not wte.requires_grad)
    if llama:
        new.model.embed_tokens = embedding
    else:
        new.transformer.wte = embedding
    new.lm_head = nn.Linear(C, rows, bias=False, device="meta")
    if len(tables) == 1:
        new.lm_head.weight = embedding.weight  # tied stays tied (GPT.tie_weights does the same)
    else:
        new.lm_head.weight = nn.Parameter(tables[1], requires_grad=head.requires_grad)
    return new
