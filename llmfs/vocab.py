"""Change a model's vocabulary: add tokens, pad it for speed, or move the model to another tokenizer.

Every function returns a new model (and tokenizer) and leaves its arguments untouched: the UI passes in a cached,
shared model. Rows of tokens that already exist are copied bit for bit, so their logits do not change; only how the
new rows start differs. A padded input model comes back unpadded from ``add_tokens`` and ``swap_tokenizer``; pad
the result again with ``pad_vocab``.

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn as nn

from .model import GPT

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

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
    model: GPT,
    tokenizer: PreTrainedTokenizerBase,
    new_tokens: Sequence[str],
    special: bool = False,
    init: Init = "mean",
) -> tuple[GPT, PreTrainedTokenizerBase, AddTokensReport]:
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


def pad_vocab(model: GPT, multiple: int = 64) -> tuple[GPT, PadReport]:
    """A copy of ``model`` whose embedding and head have a multiple of ``multiple`` rows, for faster matmuls.

    ``config.vocab_size`` stays the real vocabulary and ``config.padded_vocab_size`` sizes the tensors;
    ``forward`` drops the padding columns, so logits, softmax and loss equal the unpadded model's. The padding
    rows are zeros: no token id looks them up and no logit reads them, so they get no gradient and stay inert.
    Export with ``save_hf_folder(unpad_vocab(model), ...)``: transformers' GPT-2 has no padded vocabulary.

    Raises:
        ValueError: ``multiple`` < 1.
    """
    if not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple!r}")
    V = model.config.vocab_size
    rows = -(-V // multiple) * multiple  # round up
    tables = [torch.cat([old, old.new_zeros(rows - V, old.size(1))]) for old in _real_rows(model)]
    report = PadReport(vocab_size=V, old_rows=model.config.vocab_rows, new_rows=rows, multiple=multiple)
    return _with_vocab(model, tables, V, padded_vocab_size=rows), report


def unpad_vocab(model: GPT) -> GPT:
    """A copy of ``model`` with the padding rows dropped (``padded_vocab_size=None``); same logits."""
    return _with_vocab(model, [rows.clone() for rows in _real_rows(model)], model.config.vocab_size)


def swap_tokenizer(
    model: GPT, old_tokenizer: PreTrainedTokenizerBase, new_tokenizer: PreTrainedTokenizerBase
) -> tuple[GPT, SwapReport]:
    """A copy of ``model`` with one row per token of ``new_tokenizer`` (Fast Vocabulary Transfer, Gee et al. 2022).

    A token whose string is in the old vocabulary keeps its old row. Any other token starts at the mean of the
    old rows of the old tokenizer's split of its decoded text, or at the mean of all old rows if that split is
    empty. The head follows: tied stays tied, an untied head is rebuilt the same way from its own rows.

    Raises:
        ValueError: ``old_tokenizer`` has more ids than the model has rows (it is not this model's tokenizer).
    """
    V = _check_tokenizer(model, old_tokenizer)
    old_vocab = old_tokenizer.get_vocab()
    new_V = len(new_tokenizer)
    sources: list[list[int]] = [[] for _ in range(new_V)]  # old ids whose rows each new row averages
    pending = []
    for i, token in enumerate(new_tokenizer.convert_ids_to_tokens(list(range(new_V)))):
        if token is not None and token in old_vocab:
            sources[i] = [old_vocab[token]]
        else:
            pending.append(i)
    texts = new_tokenizer.batch_decode([[i] for i in pending])
    for i, ids in zip(pending, old_tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []):
        sources[i] = ids
    tables = [torch.stack([_mean_row(old, ids) for ids in sources]) for old in _real_rows(model)]  # (new_V, C)
    from_mean = sum(1 for i in pending if not sources[i])
    report = SwapReport(
        old_vocab_size=V,
        new_vocab_size=new_V,
        matched=new_V - len(pending),
        from_subtokens=len(pending) - from_mean,
        from_mean=from_mean,
    )
    return _with_vocab(model, tables, new_V), report


def _check_tokenizer(model: GPT, tokenizer: PreTrainedTokenizerBase) -> int:
    V = model.config.vocab_size
    if len(tokenizer) > V:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} ids but the model only {V} token rows; "
            "pass the tokenizer the model was trained with"
        )
    return V


def _mean_row(table: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
    # A one-id "mean" is the row itself, bit for bit: matched tokens keep exactly their old row.
    return table[list(ids)].mean(0) if ids else table.mean(0)


@torch.no_grad()
def _real_rows(model: GPT) -> list[torch.Tensor]:
    """The embedding's rows of real tokens, plus the head's when untied (padding rows left out)."""
    V = model.config.vocab_size
    weights = [model.transformer.wte.weight]
    if model.lm_head.weight is not model.transformer.wte.weight:
        weights.append(model.lm_head.weight)
    return [w.detach()[:V] for w in weights]


def _with_vocab(model: GPT, tables: list[torch.Tensor], vocab_size: int, padded_vocab_size: int | None = None) -> GPT:
    """A deep copy of ``model`` that owns ``tables`` (fresh tensors) as its embedding and untied head."""
    new = copy.deepcopy(model)  # keeps everything else: weights, requires_grad flags, train/eval mode
    new.config = dataclasses.replace(model.config, vocab_size=vocab_size, padded_vocab_size=padded_vocab_size)
    rows, C = tables[0].shape
    wte, head = model.transformer.wte.weight, model.lm_head.weight
    new.transformer.wte = nn.Embedding(rows, C, _weight=tables[0], _freeze=not wte.requires_grad)
    new.lm_head = nn.Linear(C, rows, bias=False, device="meta")
    if len(tables) == 1:
        new.tie_weights()
    else:
        new.lm_head.weight = nn.Parameter(tables[1], requires_grad=head.requires_grad)
    return new
