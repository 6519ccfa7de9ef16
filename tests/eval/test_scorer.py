"""The multiple-choice scorer: tokenizing as lm-eval does, exact log-likelihoods, sharing a context, metrics."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch.nn import functional as F

from llmfs.eval.scorer import (
    TokenRequest,
    choose,
    encode_pair,
    loglikelihoods,
    mean_stderr,
    pooled_stderr,
    score_requests,
)
from llmfs.model import GPT, GPTConfig


class CharTokenizer:
    """One token per character (id = code point); BOS/EOS id 0. Enough to make tokenization visible."""

    bos_token_id = eos_token_id = 0

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) for c in text]


class TableModel:
    """A hand-made "model": the logits at each position depend only on the token there (a bigram table)."""

    def __init__(self, table: torch.Tensor, n_positions: int = 64):
        self.table = table  # (V, V)
        self.config = type("Cfg", (), {"n_positions": n_positions})()
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(ids.shape))
        return self.table[ids]  # (B, T, V)


def bigram_table(prefers: dict[int, int], vocab: int = 128, strength: float = 5.0) -> torch.Tensor:
    table = torch.zeros(vocab, vocab)
    for cur, nxt in prefers.items():
        table[cur, nxt] = strength
    return table


def test_hand_made_logits_pick_the_right_choice():
    # After "a" the table prefers "b", after "b" it prefers "c": " bc" is not it, "bc" is.
    model = TableModel(bigram_table({ord("a"): ord("b"), ord("b"): ord("c")}))
    (ll_bc, greedy_bc), (ll_xy, greedy_xy) = loglikelihoods(model, CharTokenizer(), [("a", "bc"), ("a", "xy")])
    # Exact: after "a" or "b" the preferred token has probability e^5 / (e^5 + 127) and every other one
    # 1 / (e^5 + 127); after "x" (no preference) every token has 1 / 128.
    z = math.log(math.exp(5.0) + 127)
    assert ll_bc == pytest.approx(2 * (5.0 - z), abs=1e-5)
    assert ll_xy == pytest.approx(-z - math.log(128), abs=1e-5)
    assert greedy_bc and not greedy_xy
    assert choose([ll_bc, ll_xy], ["bc", "xy"]) == (0, 0)


def test_acc_and_acc_norm_differ_when_lengths_differ():
    # The long choice loses on the sum but wins per character: -12/8 = -1.5 > -10/2 = -5.
    assert choose([-10.0, -12.0], ["ab", "abcdefgh"]) == (0, 1)
    # lm-eval normalises by the choice without the delimiter; ties go to the first choice (np.argmax).
    assert choose([-4.0, -4.0], ["xx", "yy"]) == (0, 0)


def test_encode_pair_moves_trailing_spaces_to_the_continuation():
    tok = CharTokenizer()
    r = encode_pair(tok, "Answer: ", "A")
    assert r.context == tuple(map(ord, "Answer:")) and r.continuation == tuple(map(ord, " A"))
    assert encode_pair(tok, "", "hi") == TokenRequest((0,), (ord("h"), ord("i")))  # empty context: prefix token
    with pytest.raises(ValueError, match="empty continuation"):
        encode_pair(tok, "context", "")


def test_encode_pair_splits_the_whole_encoding(tiny_hf_folder):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_hf_folder)
    ctx, cont = "The quick brown", " fox jumps"
    r = encode_pair(tok, ctx, cont)
    assert list(r.context) + list(r.continuation) == tok.encode(ctx + cont)
    assert list(r.context) == tok.encode(ctx)


def random_requests(seed: int, vocab: int, max_ctx: int, max_cont: int) -> list[TokenRequest]:
    rng = random.Random(seed)
    reqs = []
    for _ in range(12):
        ctx = tuple(rng.randrange(vocab) for _ in range(rng.randint(1, max_ctx)))
        for _ in range(rng.randint(1, 5)):
            reqs.append(TokenRequest(ctx, tuple(rng.randrange(vocab) for _ in range(rng.randint(1, max_cont)))))
    reqs.append(TokenRequest((1, 2, 3), (4,)))  # one-token continuations sharing a context, as in MMLU
    reqs.append(TokenRequest((1, 2, 3), (5,)))
    return reqs


@pytest.mark.parametrize("padded", [False, True])
def test_shared_context_gives_the_same_logliks_as_each_pair_alone(padded):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=2,
                          padded_vocab_size=128 if padded else None))
    reqs = random_requests(seed=1, vocab=100, max_ctx=26, max_cont=10)  # some rows exceed the window: truncated
    alone = [score_requests(model, [r], share_context=False)[0] for r in reqs]
    for batch_size in (1, 4, 64):
        shared = score_requests(model, reqs, batch_size=batch_size)
        rows = score_requests(model, reqs, batch_size=batch_size, share_context=False)
        for (a, ga), (s, gs), (w, gw) in zip(alone, shared, rows):
            assert s == pytest.approx(a, abs=1e-4) and w == pytest.approx(a, abs=1e-4)
            assert ga == gs == gw


def test_truncation_keeps_the_last_window_plus_one_tokens():
    """lm-eval: (context + continuation)[-(max_length + 1):][:-1] is the input."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, n_positions=8, n_embd=16, n_layer=1, n_head=2))
    ctx, cont = tuple(range(1, 11)), (11, 12, 13)
    (ll, _), = score_requests(model, [TokenRequest(ctx, cont)])
    kept = list(ctx + cont)[-9:]
    with torch.no_grad():
        logits, _ = model(torch.tensor([kept[:-1]]))
    expected = F.log_softmax(logits[0, -3:], -1).gather(1, torch.tensor(cont)[:, None]).sum()
    assert ll == pytest.approx(float(expected), abs=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        score_requests(model, [TokenRequest((1,), tuple(range(1, 10)))])


def test_one_row_serves_continuations_that_differ_only_in_their_last_token():
    model = TableModel(bigram_table({}))
    reqs = [TokenRequest((1, 2, 3), (t,)) for t in (10, 11, 12, 13)]  # MMLU's " A" .. " D"
    score_requests(model, reqs, share_context=False)
    assert model.calls == [(1, 3)]  # one forward pass, one row (lm-eval's one-token-continuation cache)


def test_mean_stderr_is_the_sample_std_over_sqrt_n():
    # [1, 0, 1, 1]: mean 0.75, sample variance 0.25, stderr 0.5 / 2 (lm-eval mean_stderr)
    assert mean_stderr([1, 0, 1, 1]) == pytest.approx(0.25)
    assert mean_stderr([1.0]) is None


def test_pooled_stderr_matches_lm_evals_formula():
    # Two subjects of 4 and 6 items with stderrs 0.25 and 0.2 (lm-eval pooled_sample_stderr, by hand):
    # var = (3 * 0.0625 * 4 + 5 * 0.04 * 6) / (10 - 2) = 0.24375; stderr = sqrt(0.24375 / 10)
    assert pooled_stderr([0.25, 0.2], [4, 6]) == pytest.approx(math.sqrt(0.24375 / 10))
