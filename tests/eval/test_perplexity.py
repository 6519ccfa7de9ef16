"""Perplexity: lm-eval's rolling windows by hand, the sliding window against them and a plain forward pass."""

from __future__ import annotations

import math

import pytest
import torch

from llmfs.eval.perplexity import (
    make_disjoint_window,
    rolling_loglikelihoods,
    rolling_token_windows,
    sliding_loglikelihood,
    sliding_windows,
    text_metrics,
    word_count,
)
from llmfs.model import GPT, GPTConfig

P = -1  # the prefix token (BOS/EOS in lm-eval)


def test_rolling_windows_of_ten_tokens_in_a_window_of_four():
    # Written by hand from lm-eval's get_rolling_token_windows(max_seq_len=4, context_len=1): the first window
    # predicts 0..3 from [P, 0, 1, 2]; then 4..7 from [3, 4, 5, 6]; the last predicts 8, 9 with a full window.
    windows = list(rolling_token_windows(list(range(10)), P, max_seq_len=4))
    assert windows == [([P, 0, 1, 2], [0, 1, 2, 3]), ([3, 4, 5, 6], [4, 5, 6, 7]), ([5, 6, 7, 8], [8, 9])]
    # make_disjoint_window keeps only the context before the predicted tokens.
    assert [make_disjoint_window(w) for w in windows] == [([P], [0, 1, 2, 3]), ([3], [4, 5, 6, 7]),
                                                          ([5, 6, 7], [8, 9])]


def test_rolling_windows_edge_cases():
    assert list(rolling_token_windows([], P, 4)) == []
    assert list(rolling_token_windows([7, 8], P, 4)) == [([P, 7], [7, 8])]
    assert list(rolling_token_windows(list(range(8)), P, 4)) == [([P, 0, 1, 2], [0, 1, 2, 3]),
                                                                ([3, 4, 5, 6], [4, 5, 6, 7])]


def test_sliding_windows_score_each_token_once():
    # 10 (input, next token) pairs, window 4, stride 2: each window scores what the previous did not; the last
    # window is pulled back to end at the text's end.
    assert sliding_windows(10, 4, 2) == [(0, 4, 0), (2, 6, 4), (4, 8, 6), (6, 10, 8)]
    assert sliding_windows(10, 4, 4) == [(0, 4, 0), (4, 8, 4), (6, 10, 8)]
    assert sliding_windows(3, 4, 4) == [(0, 3, 0)]
    with pytest.raises(ValueError, match="stride"):
        sliding_windows(10, 4, 5)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=100, n_positions=16, n_embd=32, n_layer=2, n_head=2)).eval()


@pytest.mark.parametrize("n", [1, 5, 16, 17, 40, 64])
def test_sliding_with_stride_equal_to_window_is_lm_evals_rolling(model, n):
    tokens = torch.randint(1, 100, (n,), generator=torch.Generator().manual_seed(n)).tolist()
    rolling = rolling_loglikelihoods(model, [tokens], prefix_token=0, max_length=16)[0]
    sliding, scored = sliding_loglikelihood(model, tokens, max_length=16, stride=16, prefix_token=0)
    assert scored == n
    assert sliding == pytest.approx(rolling, abs=1e-4)


def test_sliding_window_equals_one_forward_pass_when_the_text_fits(model):
    tokens = torch.randint(1, 100, (15,), generator=torch.Generator().manual_seed(3)).tolist()
    seq = torch.tensor([[0] + tokens])  # prefix token first, as lm-eval scores the first token
    with torch.no_grad():
        _, loss = model(seq[:, :-1], targets=seq[:, 1:])
    for stride in (4, 16):
        ll, n = sliding_loglikelihood(model, tokens, max_length=16, stride=stride, prefix_token=0)
        assert -ll / n == pytest.approx(float(loss), abs=1e-5)
    # Without a prefix token (the Hugging Face guide's convention) the first token is only context.
    ll, n = sliding_loglikelihood(model, tokens, max_length=16, stride=16)
    with torch.no_grad():
        _, loss = model(seq[:, 1:-1], targets=seq[:, 2:])
    assert n == 14 and -ll / n == pytest.approx(float(loss), abs=1e-5)


def test_a_smaller_stride_gives_more_context(model):
    tokens = torch.randint(1, 100, (64,), generator=torch.Generator().manual_seed(5)).tolist()
    full, _ = sliding_loglikelihood(model, tokens, max_length=16, stride=16, prefix_token=0)
    overlapping, _ = sliding_loglikelihood(model, tokens, max_length=16, stride=4, prefix_token=0)
    assert overlapping != pytest.approx(full, abs=1e-3)  # different windows, different numbers


def test_wikitext_metrics_by_hand():
    # lm-eval: word_perplexity = exp(-sum ll / sum words); byte_perplexity over UTF-8 bytes; bits_per_byte =
    # -sum ll / sum bytes / ln 2.
    m = text_metrics([-6.0, -4.0], tokens=[8, 12], words=[2, 3], n_bytes=[8, 12])
    assert m["word_perplexity"] == pytest.approx(math.exp(2.0))
    assert m["byte_perplexity"] == pytest.approx(math.exp(0.5))
    assert m["bits_per_byte"] == pytest.approx(0.5 / math.log(2))
    assert m["token_perplexity"] == pytest.approx(math.exp(0.5))


def test_word_count_is_lm_evals_split():
    assert word_count(" = Robert Boulter = \n") == 6  # re.split(r"\s+") keeps the empty ends
    assert word_count("two words") == 2


def test_perplexity_stderr_by_bootstrap_over_documents():
    import math

    from llmfs.eval.perplexity import text_metrics, text_metrics_stderr
    # Four documents, one much harder than the rest: the corpus-level bits per byte depends on which are drawn.
    ll, tok, words, nbytes = [-10.0, -12.0, -11.0, -60.0], [10, 12, 11, 15], [5, 6, 5, 7], [30, 36, 33, 40]
    errs = text_metrics_stderr(ll, tok, words, nbytes)
    point = text_metrics(ll, tok, words, nbytes)
    assert set(errs) == {f"{k}_stderr" for k in point}
    assert 0 < errs["bits_per_byte_stderr"] < point["bits_per_byte"]
    # Equal documents: every resample gives the same value, so no spread.
    same = text_metrics_stderr([-10.0] * 5, [10] * 5, [5] * 5, [30] * 5)
    assert math.isclose(same["bits_per_byte_stderr"], 0.0, abs_tol=1e-12)
    assert text_metrics_stderr([-10.0], [10], [5], [30])["bits_per_byte_stderr"] is None
