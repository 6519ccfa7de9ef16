"""Log-likelihood of continuations: the one scorer behind every multiple-choice benchmark (L14).

A multiple-choice question becomes one request per choice, ``(context, continuation)``; the model's answer is the
choice whose continuation it finds most likely. Everything here follows EleutherAI's lm-evaluation-harness 0.4:

- tokenizing: ``lm_eval/api/model.py`` ``TemplateLM.loglikelihood`` and ``_encode_pair`` (trailing spaces of the
  context move to the continuation; the whole is encoded and split after the context's tokens, so the tokens always
  add up to the tokens of context + continuation; an empty context becomes the BOS/EOS prefix token) and
  ``HFLM.tok_encode`` with its default ``add_bos_token=None``: the tokenizer's own rule decides whether a BOS
  starts each encoding (none for GPT-2 and SmolLM2, one for Llama-2 and Llama-3), see ``tok_encode``;
- scoring: ``lm_eval/models/huggingface.py`` ``HFLM._loglikelihood_tokens`` (context + continuation left-truncated
  to ``max_length + 1`` tokens, the last one dropped as input; the sum of the continuation tokens' log-probabilities,
  and whether greedy decoding would have produced exactly those tokens); requests sorted longest first;
- metrics: ``lm_eval/api/task.py`` ``ConfigurableTask.process_results`` for ``multiple_choice`` (acc = argmax of the
  summed log-likelihoods; acc_norm = argmax of log-likelihood / number of characters of the choice) and
  ``lm_eval/api/metrics.py`` (``mean_stderr``, ``pooled_sample_stderr``).

Where lm-eval runs one row per request, this scorer shares work between requests with the same context; see
``score_requests``. The results are the same up to float rounding (tests/eval hold it against lm-eval's HFLM, for
our GPT and our Llama).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

LogitsFn = Callable[[torch.Tensor], Any]  # (B, T) token ids -> (B, T, V) logits, or a tuple / HF output holding them
Progress = Callable[[int, int], None]
PAD_ID = 0  # right padding: a causal model's real positions never see it


@dataclass(frozen=True)
class TokenRequest:
    """A request after tokenizing: the continuation's tokens are scored given the context's."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]


def prefix_token_id(tokenizer: Any) -> int:
    """The token an empty context starts from: BOS, else EOS (lm-eval ``HFLM.prefix_token_id``)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos if bos is not None else tokenizer.eos_token_id


def prefix_text(tokenizer: Any) -> str | None:
    """The prefix token as text (e.g. ``<|endoftext|>``, SmolLM2's ``<|im_start|>``); None if it cannot be told."""
    decode = getattr(tokenizer, "decode", None)
    try:
        text = decode(prefix_token_id(tokenizer)) if decode else None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError):
        return None
    return text or None


def tok_encode(tokenizer: Any, text: str, prefix: str | None = None) -> list[int]:
    """Token ids of ``text`` as lm-eval's ``HFLM.tok_encode`` makes them with its default ``add_bos_token=None``.

    The tokenizer's own defaults decide whether a BOS token is added (SmolLM2's and GPT-2's add none; Llama-2's
    and Llama-3's add one), except for a text that already starts with the prefix token's text (``prefix``, see
    ``prefix_text``), which is encoded without special tokens so the BOS is not doubled.
    """
    if prefix and text.startswith(prefix):
        return tokenizer.encode(text, add_special_tokens=False)
    return tokenizer.encode(text)


def encode_pair(tokenizer: Any, context: str, continuation: str, _cache: dict | None = None,
                prefix: str | None = None) -> TokenRequest:
    """Tokens of ``(context, continuation)`` exactly as lm-eval's ``TemplateLM.loglikelihood`` makes them
    (``prefix``: the prefix token's text, as ``tok_encode`` takes it).

    Raises:
        ValueError: the continuation is empty (there is nothing to score).
    """
    if not continuation:
        raise ValueError(f"empty continuation for context {context[-60:]!r}: there is nothing to score")
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:  # "Answer: " + "A" tokenizes worse than "Answer:" + " A"
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    if not context:
        cont = tokenizer.encode(continuation, add_special_tokens=False)
        prefix = prefix_token_id(tokenizer)
        if cont[0] == prefix:
            return TokenRequest(tuple(cont[:1]), tuple(cont[1:]))
        return TokenRequest((prefix,), tuple(cont))
    cache = {} if _cache is None else _cache
    if context not in cache:
        cache[context] = tok_encode(tokenizer, context, prefix)
    ctx = cache[context]
    whole = tok_encode(tokenizer, context + continuation, prefix)
    return TokenRequest(tuple(ctx), tuple(whole[len(ctx):]))


def encode_requests(tokenizer: Any, requests: Sequence[tuple[str, str]]) -> list[TokenRequest]:
    """``encode_pair`` for many requests; a context shared by several choices is encoded once."""
    cache: dict[str, list[int]] = {}
    prefix = prefix_text(tokenizer)
    return [encode_pair(tokenizer, ctx, cont, cache, prefix) for ctx, cont in requests]


def loglikelihoods(model: LogitsFn, tokenizer: Any, requests: Sequence[tuple[str, str]], *,
                   max_length: int | None = None, batch_size: int = 16, share_context: bool = True,
                   progress: Progress | None = None) -> list[tuple[float, bool]]:
    """``(sum of log-probabilities of the continuation, is_greedy)`` for each ``(context, continuation)``."""
    return score_requests(model, encode_requests(tokenizer, requests), max_length=max_length,
                          batch_size=batch_size, share_context=share_context, progress=progress)


def score_requests(model: LogitsFn, requests: Sequence[TokenRequest], *, max_length: int | None = None,
                   batch_size: int = 16, share_context: bool = True,
                   progress: Progress | None = None) -> list[tuple[float, bool]]:
    """Score tokenized requests; results in the order given.

    Requests are grouped by context. With ``share_context`` and our ``GPT`` or ``Llama``, a group whose every
    context + continuation fits the window runs its context once: continuation rows attend to the context's cached
    keys and values (``_gpt_shared_logits``, ``_llama_shared_logits``). In a causal decoder the context's hidden
    states do not depend on what follows it, so this computes the very numbers lm-eval's one-row-per-request
    forward computes, only once per group instead of once per choice (up to float summation order, ~1e-6); our
    Llama is scored this way too (the same rotary positions, grouped-query attention). A group where some row would be
    left-truncated (lm-eval truncates each row by its own continuation's length) runs row by row instead, as does
    any model that is only a logits callable; there a row serves every request whose input is a prefix of its
    input, which includes lm-eval's own one-token-continuation cache (MMLU's " A" .. " D" share one row).

    Args:
        model: our ``GPT`` or ``Llama``, or any callable mapping (B, T) ids to (B, T, V) logits.
        max_length: the window in tokens (default: the model's ``config.n_positions``).
        batch_size: sequences per forward pass.
        progress: ``progress(done, total)`` in requests.

    Raises:
        ValueError: a request with no context or continuation tokens, or a continuation longer than the window.
    """
    max_length = max_length or context_length(model)
    for r in requests:
        if not r.context or not r.continuation:
            raise ValueError("every request needs at least one context token and one continuation token")
        if len(r.continuation) > max_length:
            raise ValueError(f"a continuation of {len(r.continuation)} tokens does not fit the {max_length}-token "
                             "window; shorten the choices or use a model with a longer context")
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, r in enumerate(requests):
        groups[r.context].append(i)
    shared_logits = _shared_logits_fn(model) if share_context else None
    shared, single = [], []
    for ctx, idxs in groups.items():
        fits = all(len(ctx) + len(requests[i].continuation) <= max_length + 1 for i in idxs)
        (shared if fits and shared_logits else single).append(idxs)
    results: list[tuple[float, bool] | None] = [None] * len(requests)
    done = _Counter(len(requests), progress)
    with torch.no_grad(), _eval_mode(model):
        _score_rows(model, requests, [i for idxs in single for i in idxs], max_length, batch_size, results, done)
        _score_shared(model, shared_logits, requests, shared, batch_size, results, done)
    return results  # type: ignore[return-value]


# -- row by row (lm-eval's layout) --------------------------------------------------------------------------------
@dataclass
class _Row:
    input: tuple[int, ...]
    members: list[tuple[int, int]]  # (request index, length of that request's input)


def _score_rows(model, requests, indices, max_length, batch_size, results, done) -> None:
    rows: list[_Row] = []
    by_context: dict[tuple[int, ...], list[_Row]] = defaultdict(list)
    # Longest first within a context, so shorter inputs find a row that contains them.
    for i in sorted(indices, key=lambda i: -len(requests[i].context) - len(requests[i].continuation)):
        r = requests[i]
        inp = (r.context + r.continuation)[-(max_length + 1):][:-1]
        row = next((w for w in by_context[r.context] if w.input[: len(inp)] == inp), None)
        if row is None:
            row = _Row(inp, [])
            by_context[r.context].append(row)
            rows.append(row)
        row.members.append((i, len(inp)))
    rows.sort(key=lambda w: (-len(w.input), w.input))  # lm-eval's _collate: longest first
    for batch in _batches(rows, lambda w: len(w.input), batch_size, _vocab_width(model)):
        ids = _pad([w.input for w in batch], _device(model))
        logits = _logits(model, ids)  # (B, T, V)
        for b, row in enumerate(batch):
            first = min(n - len(requests[i].continuation) for i, n in row.members)
            logprobs = F.log_softmax(logits[b, first:].float(), dim=-1)  # only the scored positions: (T', V)
            for i, n in row.members:
                cont = requests[i].continuation
                results[i] = _sum_and_greedy(logprobs[n - len(cont) - first: n - first], cont)
                done.add(1)


# Logits per forward pass (1 GiB in fp32). One 8192-token window of SmolLM2's 49,152-token vocabulary is 4e8
# logits on its own: sixteen such rows at once would need 25 GiB.
LOGITS_BUDGET = 2 ** 28


def _batches(items: Sequence, width: Callable[[Any], int], batch_size: int, vocab: int | None):
    """``items`` in batches of at most ``batch_size``, and of no more than LOGITS_BUDGET logits (rows x widest row
    x vocabulary) where the vocabulary is known: long windows of a large vocabulary run fewer rows at a time.
    Batching changes no score: rows are right-padded and causal."""
    batch: list = []
    widest = 0
    for item in items:
        w = max(widest, width(item))
        if batch and (len(batch) >= batch_size or (vocab and (len(batch) + 1) * w * vocab > LOGITS_BUDGET)):
            yield batch
            batch, w = [], width(item)
        batch.append(item)
        widest = w
    if batch:
        yield batch


def _vocab_width(model: Any) -> int | None:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "padded_vocab_size", None) or getattr(cfg, "vocab_size", None)


# -- shared context (our GPT and Llama) ---------------------------------------------------------------------------
def _score_shared(model, shared_logits, requests, groups: list[list[int]], batch_size, results, done) -> None:
    # Longest first, as lm-eval orders its rows: memory errors surface at once and batches pad little.
    groups = sorted(groups, key=lambda g: -max(len(requests[i].context) + len(requests[i].continuation) for i in g))
    batch: list[list[int]] = []
    seqs = 0
    for g in groups:
        n = 1 + len({requests[i].continuation[:-1] for i in g if len(requests[i].continuation) > 1})
        if batch and seqs + n > batch_size:
            _score_shared_batch(model, shared_logits, requests, batch, results, done)
            batch, seqs = [], 0
        batch.append(g)
        seqs += n
    if batch:
        _score_shared_batch(model, shared_logits, requests, batch, results, done)


def _score_shared_batch(model, shared_logits, requests, batch: list[list[int]], results, done) -> None:
    device = _device(model)
    contexts = [requests[g[0]].context for g in batch]
    row_index: dict[tuple[int, tuple[int, ...]], int] = {}
    row_tokens, row_group = [], []
    for gi, g in enumerate(batch):
        for i in g:
            tail = requests[i].continuation[:-1]  # the continuation's own inputs; its first token reads the context
            if tail and (gi, tail) not in row_index:
                row_index[(gi, tail)] = len(row_tokens)
                row_tokens.append(tail)
                row_group.append(gi)
    ctx_lens = torch.tensor([len(c) for c in contexts], device=device)
    ctx_logits, row_logits = shared_logits(
        model, _pad(contexts, device), ctx_lens, _pad(row_tokens, device) if row_tokens else None,
        torch.tensor(row_group, device=device, dtype=torch.long))
    ctx_last = F.log_softmax(ctx_logits.float(), -1)  # (G, V): each context's last position
    row_lp = F.log_softmax(row_logits.float(), -1) if row_logits is not None else None  # (R, Tr, V)
    for gi, g in enumerate(batch):
        for i in g:
            cont = requests[i].continuation
            parts = [ctx_last[gi: gi + 1]]
            if len(cont) > 1:
                parts.append(row_lp[row_index[(gi, cont[:-1])], : len(cont) - 1])
            results[i] = _sum_and_greedy(torch.cat(parts), cont)
            done.add(1)


def _gpt_shared_logits(model, ctx: torch.Tensor, ctx_lens: torch.Tensor, rows: torch.Tensor | None,
                       row_group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits at the last position of G contexts (G, Tc) -> (G, V), and at every position of R continuation rows
    (R, Tr) -> (R, Tr, V), row r continuing context row_group[r].

    The same computation as ``GPT.forward`` (llmfs/model.py), with one change: a continuation row's queries attend
    to its context's keys and values (computed once, in the context's own causal pass) and then causally to its own.
    Contexts and rows are right-padded; padded context slots are masked out of the rows' attention.
    """
    tf, cfg = model.transformer, model.config
    G, Tc = ctx.shape
    x = tf.wte(ctx) + tf.wpe(torch.arange(Tc, device=ctx.device))  # (G, Tc, C)
    xr = mask = None
    if rows is not None:
        R, Tr = rows.shape
        pos = (ctx_lens[row_group][:, None] + torch.arange(Tr, device=ctx.device)).clamp(max=cfg.n_positions - 1)
        xr = tf.wte(rows) + tf.wpe(pos)  # (R, Tr, C)
        sees_ctx = torch.arange(Tc, device=ctx.device)[None, :] < ctx_lens[row_group][:, None]  # (R, Tc)
        causal = torch.ones(Tr, Tr, dtype=torch.bool, device=ctx.device).tril()  # (Tr, Tr)
        mask = torch.cat([sees_ctx[:, None, :].expand(R, Tr, Tc), causal.expand(R, Tr, Tr)], dim=2)[:, None]
        # mask: (R, 1, Tr, Tc + Tr), broadcast over heads
    for block in tf.h:
        attn = block.attn
        q, k, v = _heads(attn, block.ln_1(x))  # 3 x (G, nh, Tc, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + attn.c_proj(y.transpose(1, 2).reshape(x.shape))
        x = x + block.mlp(block.ln_2(x))
        if xr is not None:
            qr, kr, vr = _heads(attn, block.ln_1(xr))  # 3 x (R, nh, Tr, hs)
            keys = torch.cat([k[row_group], kr], dim=2)  # (R, nh, Tc + Tr, hs)
            values = torch.cat([v[row_group], vr], dim=2)
            yr = F.scaled_dot_product_attention(qr, keys, values, attn_mask=mask)
            xr = xr + attn.c_proj(yr.transpose(1, 2).reshape(xr.shape))
            xr = xr + block.mlp(block.ln_2(xr))
    head = lambda h: model.lm_head(tf.ln_f(h))[..., : cfg.vocab_size]  # noqa: E731 - drop padded-vocab columns
    last = x[torch.arange(G, device=ctx.device), ctx_lens - 1]  # (G, C): only these predict a continuation
    return head(last), (head(xr) if xr is not None else None)


def _heads(attn, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, T, C = h.shape
    q, k, v = attn.c_attn(h).split(C, dim=2)  # 3 x (B, T, C)
    return tuple(t.view(B, T, attn.n_head, C // attn.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)


def _llama_shared_logits(model, ctx: torch.Tensor, ctx_lens: torch.Tensor, rows: torch.Tensor | None,
                         row_group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``_gpt_shared_logits`` for our Llama: the same computation as ``Llama.forward`` (llmfs/llama.py), with a
    continuation row's queries attending to its context's keys and values, then causally to its own.

    A row's tokens sit right after its context, so their rotary angles are those of positions
    ``len(context) + 0, 1, ...``; the context's keys were rotated once, at their own positions, as a KV cache holds
    them. Grouped-query attention: SDPA repeats the key-value heads (``enable_gqa``).
    """
    dec = model.model
    G, Tc = ctx.shape
    x = dec.embed_tokens(ctx)  # (G, Tc, C)
    cos, sin = model.rotary(torch.arange(Tc, device=ctx.device), x.dtype)  # (1, 1, Tc, hs)
    xr = mask = cos_r = sin_r = None
    if rows is not None:
        R, Tr = rows.shape
        xr = dec.embed_tokens(rows)  # (R, Tr, C)
        pos = ctx_lens[row_group][:, None] + torch.arange(Tr, device=ctx.device)  # (R, Tr)
        cos_r, sin_r = (t.reshape(R, 1, Tr, -1) for t in model.rotary(pos.reshape(-1), xr.dtype))  # (R, 1, Tr, hs)
        sees_ctx = torch.arange(Tc, device=ctx.device)[None, :] < ctx_lens[row_group][:, None]  # (R, Tc)
        causal = torch.ones(Tr, Tr, dtype=torch.bool, device=ctx.device).tril()  # (Tr, Tr)
        mask = torch.cat([sees_ctx[:, None, :].expand(R, Tr, Tc), causal.expand(R, Tr, Tr)], dim=2)[:, None]
    for block in dec.layers:
        attn = block.self_attn
        q, k, v = _llama_heads(attn, block.input_layernorm(x), cos, sin)  # (G, nh | nkv, Tc, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + attn.o_proj(y.transpose(1, 2).reshape(G, Tc, -1))
        x = x + block.mlp(block.post_attention_layernorm(x))
        if xr is not None:
            qr, kr, vr = _llama_heads(attn, block.input_layernorm(xr), cos_r, sin_r)  # (R, nh | nkv, Tr, hs)
            keys = torch.cat([k[row_group], kr], dim=2)  # (R, nkv, Tc + Tr, hs)
            values = torch.cat([v[row_group], vr], dim=2)
            yr = F.scaled_dot_product_attention(qr, keys, values, attn_mask=mask, enable_gqa=True)
            xr = xr + attn.o_proj(yr.transpose(1, 2).reshape(xr.shape[0], xr.shape[1], -1))
            xr = xr + block.mlp(block.post_attention_layernorm(xr))
    head = lambda h: model.lm_head(dec.norm(h))  # noqa: E731
    last = x[torch.arange(G, device=ctx.device), ctx_lens - 1]  # (G, C)
    return head(last), (head(xr) if xr is not None else None)


def _llama_heads(attn, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Queries, keys (both rotated) and values of our Llama's ``Attention``, as its ``forward`` makes them."""
    from ..llama import rotate_half

    B, T, _ = h.shape
    q = attn.q_proj(h).view(B, T, attn.n_head, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(h).view(B, T, attn.n_kv_head, attn.head_dim).transpose(1, 2)
    v = attn.v_proj(h).view(B, T, attn.n_kv_head, attn.head_dim).transpose(1, 2)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin, v


# -- helpers ------------------------------------------------------------------------------------------------------
def _sum_and_greedy(logprobs: torch.Tensor, cont: Sequence[int]) -> tuple[float, bool]:
    """logprobs (k, V) at the k positions predicting the k continuation tokens."""
    target = torch.tensor(cont, device=logprobs.device)
    ll = logprobs.gather(1, target[:, None]).sum()
    return float(ll), bool((logprobs.argmax(-1) == target).all())


def _logits(model: LogitsFn, ids: torch.Tensor) -> torch.Tensor:
    out = model(ids)
    if isinstance(out, tuple):
        out = out[0]
    return getattr(out, "logits", out)


def _pad(seqs: Sequence[Sequence[int]], device) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([list(s) + [PAD_ID] * (width - len(s)) for s in seqs], dtype=torch.long, device=device)


def _shared_logits_fn(model: Any) -> Callable | None:
    """How to run a shared context through ``model``: our GPT's or our Llama's way; None for any other model (a
    transformers model, a logits callable), which is scored row by row."""
    from ..llama import Llama
    from ..model import GPT
    if isinstance(model, GPT):
        return _gpt_shared_logits
    if isinstance(model, Llama):
        return _llama_shared_logits
    return None


def context_length(model: Any) -> int:
    """The model's window: ``config.n_positions`` (ours, HF GPT-2) or ``max_position_embeddings``."""
    cfg = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        if getattr(cfg, name, None):
            return int(getattr(cfg, name))
    raise ValueError("cannot tell the model's context length: pass max_length")


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return torch.device("cpu")


class _eval_mode:
    """model.eval() for the duration (no dropout while scoring), then the mode it had."""

    def __init__(self, model: Any):
        self.model, self.was_training = model, getattr(model, "training", False)

    def __enter__(self):
        if hasattr(self.model, "eval"):
            self.model.eval()

    def __exit__(self, *exc):
        if self.was_training:
            self.model.train()


class _Counter:
    def __init__(self, total: int, progress: Progress | None):
        self.done, self.total, self.progress = 0, total, progress

    def add(self, n: int) -> None:
        self.done += n
        if self.progress:
            self.progress(self.done, self.total)


# -- metrics ------------------------------------------------------------------------------------------------------
def choose(logliks: Sequence[float], choices: Sequence[str]) -> tuple[int, int]:
    """(argmax of log-likelihood, argmax of log-likelihood per character of the choice).

    lm-eval divides by ``len(choice)`` of ``doc_to_choice`` (without the target delimiter); ties go to the first
    choice, as ``np.argmax`` does.
    """
    norm = [ll / len(c) if c else ll for ll, c in zip(logliks, choices)]
    return _argmax(logliks), _argmax(norm)


def _argmax(xs: Sequence[float]) -> int:
    return max(range(len(xs)), key=lambda i: (xs[i], -i))


def mean_stderr(values: Sequence[float]) -> float | None:
    """Standard error of the mean: sample standard deviation / sqrt(n) (lm-eval ``mean_stderr``); None if n < 2."""
    n = len(values)
    if n < 2:
        return None
    mu = sum(values) / n
    return math.sqrt(sum((x - mu) ** 2 for x in values) / (n - 1)) / math.sqrt(n)


def mean_with_stderr(values: Sequence[float]) -> tuple[float | None, float | None]:
    return (sum(values) / len(values) if values else None), mean_stderr(values)


def pooled_stderr(stderrs: Sequence[float], sizes: Sequence[int]) -> float | None:
    """Standard error of a group score weighted by subtask size (lm-eval ``pooled_sample_stderr``, used for MMLU)."""
    if len(sizes) == 0 or sum(sizes) <= len(sizes) or any(s is None for s in stderrs):
        return None
    var = sum((n - 1) * se ** 2 * n for n, se in zip(sizes, stderrs)) / (sum(sizes) - len(sizes))
    return math.sqrt(var / sum(sizes))
