"""Perplexity of text longer than the model's window, two ways.

- **Sliding window with a stride** (Hugging Face, "Perplexity of fixed-length models"): the window moves ``stride``
  tokens at a time and each window scores only the tokens the previous window did not; with a stride smaller than
  the window, every scored token sees at least ``window - stride`` tokens of context. Two deliberate differences
  from the guide's loop: a window of n input tokens scores the n tokens that follow each of them (the guide's
  windows lose their first token when windows do not overlap), and the last window is pulled back to end at the
  text's end so its tokens keep a full window of context, as lm-eval's last rolling window does.
- **lm-eval's rolling log-likelihood** (``lm_eval/utils.py`` ``get_rolling_token_windows`` with ``context_len=1``
  and ``make_disjoint_window``; ``HFLM.loglikelihood_rolling``): disjoint windows of ``max_length`` predicted
  tokens, the first conditioned on the BOS/EOS prefix token, each later one on the single token before it.
  With ``stride == window`` the sliding window computes exactly this (tests/eval hold the two together).

The wikitext task's metrics (``lm_eval/tasks/wikitext/preprocess_wikitext.py`` ``process_results``,
``lm_eval/api/metrics.py`` ``weighted_perplexity`` / ``bits_per_byte``) sum log-likelihoods over documents and
divide by the words (``re.split(r"\\s+", page)``) or UTF-8 bytes of the original page.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.nn import functional as F

from .scorer import (
    TokenRequest,
    _batches,
    _device,
    _eval_mode,
    _logits,
    _pad,
    _vocab_width,
    context_length,
    prefix_text,
    prefix_token_id,
    score_requests,
    tok_encode,
)

Progress = Callable[[int, int], None]


# -- lm-eval's rolling windows ------------------------------------------------------------------------------------
def rolling_token_windows(tokens: Sequence[int], prefix_token: int, max_seq_len: int,
                          context_len: int = 1) -> Iterator[tuple[list[int], list[int]]]:
    """``(input tokens, predicted tokens)`` windows covering ``tokens`` (lm-eval ``get_rolling_token_windows``).

    Only the last ``len(predicted)`` logits of each input are scored.
    """
    if not 1 <= context_len <= max_seq_len:
        raise ValueError(f"context_len must be between 1 and max_seq_len={max_seq_len}, got {context_len}")
    tokens = list(tokens)
    if not tokens:
        return
    pred_len = max_seq_len - context_len + 1
    first = min(max_seq_len, len(tokens))
    yield [prefix_token] + tokens[: first - 1], tokens[:first]  # the first window predicts all its tokens
    predicted = first
    while predicted < len(tokens):
        window_pred_len = min(len(tokens) - predicted, pred_len)
        window_end = predicted + window_pred_len
        yield tokens[window_end - max_seq_len - 1: window_end - 1], tokens[window_end - window_pred_len: window_end]
        predicted += window_pred_len


def make_disjoint_window(pair: tuple[list[int], list[int]]) -> tuple[list[int], list[int]]:
    """Cut the context so it does not overlap the predicted tokens (lm-eval ``make_disjoint_window``)."""
    a, b = pair
    return a[: len(a) - (len(b) - 1)], b


def rolling_loglikelihoods(model: Any, token_lists: Sequence[Sequence[int]], *, prefix_token: int,
                           max_length: int | None = None, batch_size: int = 16,
                           progress: Progress | None = None) -> list[float]:
    """Total log-likelihood of each token list, scored in lm-eval's disjoint rolling windows."""
    max_length = max_length or context_length(model)
    requests, owner = [], []
    for d, tokens in enumerate(token_lists):
        for ctx, pred in map(make_disjoint_window, rolling_token_windows(tokens, prefix_token, max_length)):
            requests.append(TokenRequest(tuple(ctx), tuple(pred)))
            owner.append(d)
    scores = score_requests(model, requests, max_length=max_length, batch_size=batch_size, share_context=False,
                            progress=progress)
    totals = [0.0] * len(token_lists)
    for d, (ll, _) in zip(owner, scores):
        totals[d] += ll
    return totals


# -- sliding window with a stride (Hugging Face style) ------------------------------------------------------------
def sliding_windows(n_targets: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, first_scored)`` for each window over ``n_targets`` (input, next token) pairs.

    The window reads inputs ``begin:end`` and scores the pairs ``first_scored:end`` (the ones no earlier window
    scored).
    """
    if not 1 <= stride <= max_length:
        raise ValueError(f"stride must be between 1 and the window ({max_length}), got {stride}")
    windows, begin, scored = [], 0, 0
    while scored < n_targets:
        begin = min(begin, max(0, n_targets - max_length))  # the last window ends at the text's end
        end = min(begin + max_length, n_targets)
        windows.append((begin, end, scored))
        scored, begin = end, begin + stride
    return windows


def sliding_loglikelihood(model: Any, tokens: Sequence[int], *, max_length: int | None = None,
                          stride: int | None = None, prefix_token: int | None = None,
                          batch_size: int = 16) -> tuple[float, int]:
    """(total log-likelihood, tokens scored) of one token list, windows of ``max_length`` moving by ``stride``.

    With ``prefix_token`` (lm-eval's convention) the first token is scored too, conditioned on it; without it (the
    Hugging Face guide's) the first token only serves as context.
    """
    max_length = max_length or context_length(model)
    stride = stride or max_length
    seq = ([prefix_token] if prefix_token is not None else []) + list(tokens)
    windows = sliding_windows(len(seq) - 1, max_length, stride)
    device = _device(model)
    total = 0.0
    with torch.no_grad(), _eval_mode(model):
        for batch in _batches(windows, lambda w: w[1] - w[0], batch_size, _vocab_width(model)):
            ids = _pad([seq[b:e] for b, e, _ in batch], device)  # (B, T)
            logits = _logits(model, ids)  # (B, T, V)
            for row, (b, e, first) in enumerate(batch):
                targets = torch.tensor(seq[first + 1: e + 1], device=device)  # the tokens after inputs first..e-1
                logprobs = F.log_softmax(logits[row, first - b: e - b].float(), dim=-1)  # the scored positions only
                total += float(logprobs.gather(1, targets[:, None]).sum())
    return total, len(seq) - 1


# -- documents and the wikitext metrics ---------------------------------------------------------------------------
def word_count(page: str) -> int:
    """Words as lm-eval's wikitext task counts them: ``len(re.split(r"\\s+", page))`` on the original page."""
    return len(re.split(r"\s+", page))


def document_loglikelihoods(model: Any, tokenizer: Any, texts: Sequence[str], *, max_length: int | None = None,
                            stride: int = 0, batch_size: int = 16,
                            progress: Progress | None = None) -> list[tuple[float, int]]:
    """(log-likelihood, tokens) of each text: lm-eval's rolling windows when ``stride`` is 0 or the whole window,
    else the sliding window with that stride."""
    max_length = max_length or context_length(model)
    prefix = prefix_token_id(tokenizer)
    text_of_prefix = prefix_text(tokenizer)
    token_lists = [tok_encode(tokenizer, t, text_of_prefix) for t in texts]  # lm-eval's: the tokenizer's defaults
    if not stride or stride >= max_length:
        lls = rolling_loglikelihoods(model, token_lists, prefix_token=prefix, max_length=max_length,
                                     batch_size=batch_size)
        out = [(ll, len(t)) for ll, t in zip(lls, token_lists)]
        if progress:
            progress(len(texts), len(texts))
        return out
    out = []
    for i, tokens in enumerate(token_lists):
        ll, _ = sliding_loglikelihood(model, tokens, max_length=max_length, stride=stride, prefix_token=prefix,
                                      batch_size=batch_size) if tokens else (0.0, 0)
        out.append((ll, len(tokens)))
        if progress:
            progress(i + 1, len(texts))
    return out


def text_metrics(logliks: Sequence[float], tokens: Sequence[int], words: Sequence[int],
                 n_bytes: Sequence[int]) -> dict[str, float | None]:
    """word_perplexity, byte_perplexity, bits_per_byte (lm-eval's wikitext definitions, summed over documents as
    ``weighted_perplexity`` / ``bits_per_byte`` do) and token_perplexity, from per-document counts."""
    ll, n_words, total_bytes, n_tokens = sum(logliks), sum(words), sum(n_bytes), sum(tokens)
    return {
        "word_perplexity": _exp(-ll / n_words) if n_words else None,
        "byte_perplexity": _exp(-ll / total_bytes) if total_bytes else None,
        "bits_per_byte": -ll / total_bytes / math.log(2) if total_bytes else None,
        "token_perplexity": _exp(-ll / n_tokens) if n_tokens else None,
    }


def text_metrics_stderr(logliks: Sequence[float], tokens: Sequence[int], words: Sequence[int],
                        n_bytes: Sequence[int], iters: int = 1000, seed: int = 1234) -> dict[str, float | None]:
    """`<metric>_stderr` for each of `text_metrics` by bootstrap over documents (as lm-eval's `bootstrap_stderr`
    does for metrics without a closed form): resample the documents with replacement, recompute the corpus-level
    metric, take the standard deviation. None with fewer than two documents."""
    import numpy as np

    names = ("word_perplexity", "byte_perplexity", "bits_per_byte", "token_perplexity")
    if len(logliks) < 2:
        return {f"{n}_stderr": None for n in names}
    cols = np.array([logliks, tokens, words, n_bytes], dtype=np.float64)        # (4, n_docs)
    idx = np.random.default_rng(seed).integers(0, cols.shape[1], (iters, cols.shape[1]))
    ll, n_tok, n_words, n_b = cols[:, idx].sum(axis=2)                           # each (iters,)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        samples = {"word_perplexity": np.exp(-ll / n_words), "byte_perplexity": np.exp(-ll / n_b),
                   "bits_per_byte": -ll / n_b / math.log(2), "token_perplexity": np.exp(-ll / n_tok)}
    out = {}
    for name in names:
        vals = samples[name][np.isfinite(samples[name])]
        out[f"{name}_stderr"] = float(vals.std(ddof=1)) if len(vals) > 1 else None
    return out


def _exp(x: float) -> float:
    return math.exp(x) if x < 700 else math.inf
