"""Tests for llmfs/model.py: shapes, causality, generation, configs. CPU, tiny models, fixed seeds."""

import dataclasses
import math

import pytest
import torch
from torch.nn import functional as F

from llmfs.model import GPT, PRESETS, GPTConfig
from llmfs.sampling import filter_top_k, filter_top_p

TINY = GPTConfig.preset("tiny")


@pytest.fixture
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(TINY).eval()


def _prompt(batch: int = 2, length: int = 8, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, TINY.vocab_size, (batch, length), generator=g)


# --- forward -------------------------------------------------------------------------------------------------


def test_forward_shapes_and_initial_loss(model):
    idx = _prompt(2, 16)
    logits, loss = model(idx)
    assert logits.shape == (2, 16, TINY.vocab_size)
    assert loss is None
    _, loss = model(idx, targets=_prompt(2, 16, seed=2))
    assert loss.dim() == 0
    # Small init gives near-uniform predictions: loss on random targets is close to ln(vocab_size).
    # (Not targets=idx: with a tied head each token's own embedding already scores it higher.)
    assert abs(loss.item() - math.log(TINY.vocab_size)) < 0.5


def test_loss_ignores_minus_100(model):
    idx = _prompt(2, 16)
    targets = idx.clone()
    targets[:, ::2] = -100
    logits, loss = model(idx, targets=targets)
    keep = targets != -100
    expected = F.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(loss, expected)


def test_sequence_longer_than_context_raises(model):
    idx = torch.zeros(1, TINY.n_positions + 1, dtype=torch.long)
    with pytest.raises(ValueError, match=r"exceeds the model's context n_positions=128; use a shorter --seq-len"):
        model(idx)


def test_attention_is_causal(model):
    idx = _prompt(1, 20)
    changed = idx.clone()
    changed[0, 12] = (idx[0, 12] + 1) % TINY.vocab_size
    before, _ = model(idx)
    after, _ = model(changed)
    torch.testing.assert_close(before[:, :12], after[:, :12], atol=1e-6, rtol=0)
    assert not torch.allclose(before[:, 12:], after[:, 12:])


def test_head_is_tied_unless_configured_otherwise():
    tied = GPT(TINY)
    assert tied.lm_head.weight is tied.transformer.wte.weight
    untied = GPT(dataclasses.replace(TINY, tie_word_embeddings=False))
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    assert untied.num_params() - tied.num_params() == TINY.vocab_size * TINY.n_embd


def test_residual_projections_use_scaled_init():
    torch.manual_seed(0)
    cfg = GPTConfig.preset("small")
    model = GPT(cfg)
    expected = 0.02 / math.sqrt(2 * cfg.n_layer)
    assert model.transformer.h[0].mlp.c_proj.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert model.transformer.h[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_a_few_steps_overfit_one_batch(model):
    model.train()
    idx = _prompt(2, 32)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        _, loss = model(idx[:, :-1], targets=idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# --- parameter counts ----------------------------------------------------------------------------------------

# The published sizes of OpenAI's checkpoints as counted by transformers' GPT2LMHeadModel (tied head counted once).
@pytest.mark.parametrize(
    "name, expected",
    [
        ("gpt2", 124_439_808),
        ("gpt2-medium", 354_823_168),
        ("gpt2-large", 774_030_080),
        ("gpt2-xl", 1_557_611_200),
        ("tiny", 141_056),
        ("small", 1_088_256),
    ],
)
def test_preset_param_counts(name, expected):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = GPT(GPTConfig.preset(name))
    assert model.num_params() == expected


def test_num_params_trainable_only(model):
    model.transformer.wpe.weight.requires_grad_(False)
    assert model.num_params() - model.num_params(trainable_only=True) == TINY.n_positions * TINY.n_embd


# --- config --------------------------------------------------------------------------------------------------


def test_presets_and_aliases():
    assert set(PRESETS) == {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "tiny", "small"}
    cfg = GPTConfig.preset("gpt2-xl")
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_positions, cfg.vocab_size) == (48, 25, 1600, 1024, 50257)
    assert cfg.block_size == cfg.n_positions == 1024
    assert GPTConfig.preset("tiny", dropout=0.1).dropout == 0.1
    with pytest.raises(ValueError, match=r"unknown preset 'gpt3'.*'gpt2'"):
        GPTConfig.preset("gpt3")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_layer = 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_embd=100, n_head=3), r"n_embd=100 must be divisible by n_head=3"),
        (dict(n_layer=0), r"n_layer must be a positive integer, got 0"),
        (dict(vocab_size=-5), r"vocab_size must be a positive integer, got -5"),
        (dict(n_head=2.0), r"n_head must be a positive integer"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
        (dict(layer_norm_epsilon=0.0), r"layer_norm_epsilon must be > 0"),
        (dict(padded_vocab_size=500), r"padded_vocab_size must be an integer >= vocab_size=512"),
    ],
)
def test_config_validation_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY, **kwargs)


def test_hf_config_round_trip():
    transformers = pytest.importorskip("transformers")
    for name in ("gpt2", "tiny"):
        cfg = GPTConfig.preset(name)
        hf = transformers.GPT2Config(**cfg.to_hf_dict())
        assert GPTConfig.from_hf(hf) == cfg
        assert GPTConfig.from_hf(hf.to_dict()) == cfg
    assert transformers.GPT2Config(**TINY.to_hf_dict()).eos_token_id is None  # 50256 is outside a 512 vocab


def test_from_hf_rejects_other_architectures_and_variants():
    with pytest.raises(ValueError, match=r"only GPT-2-architecture.*found model_type 'llama'"):
        GPTConfig.from_hf({"model_type": "llama", "hidden_size": 64})
    with pytest.raises(ValueError, match=r"n_inner=100"):
        GPTConfig.from_hf({"model_type": "gpt2", "n_embd": 64, "n_head": 2, "n_inner": 100})
    with pytest.raises(ValueError, match=r"activation_function='relu'"):
        GPTConfig.from_hf({"model_type": "gpt2", "activation_function": "relu"})
    with pytest.raises(ValueError, match=r"bias=False has no equivalent"):
        dataclasses.replace(TINY, bias=False).to_hf_dict()
    with pytest.raises(ValueError, match=r"padded vocabulary \(512 tokens in 576 rows\).*unpad_vocab"):
        dataclasses.replace(TINY, padded_vocab_size=576).to_hf_dict()


def test_padded_vocab_sizes_the_tensors_but_not_the_logits():
    padded = GPT(dataclasses.replace(TINY, padded_vocab_size=576))
    assert padded.transformer.wte.weight.shape == padded.lm_head.weight.shape == (576, TINY.n_embd)
    logits, loss = padded(_prompt(2, 8), _prompt(2, 8, seed=2))
    assert logits.shape == (2, 8, TINY.vocab_size) and torch.isfinite(loss)
    assert dataclasses.replace(TINY, padded_vocab_size=None).vocab_rows == TINY.vocab_size


# --- generation ----------------------------------------------------------------------------------------------


def test_generate_appends_max_new_tokens(model):
    out = model.generate(_prompt(2, 5), max_new_tokens=7, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 12)
    torch.testing.assert_close(out[:, :5], _prompt(2, 5))


def test_greedy_is_deterministic_and_matches_top_k_1_and_tiny_top_p(model):
    prompt = _prompt(2, 5)
    greedy = model.generate(prompt, 10, temperature=0)
    assert torch.equal(greedy, model.generate(prompt, 10, temperature=0))
    g = torch.Generator().manual_seed(0)
    assert torch.equal(greedy, model.generate(prompt, 10, temperature=1.0, top_k=1, generator=g))
    assert torch.equal(greedy, model.generate(prompt, 10, temperature=1.0, top_p=1e-6, generator=g))


def test_sampling_is_reproducible_with_a_generator(model):
    prompt = _prompt(2, 5)
    runs = [
        model.generate(prompt, 10, top_k=50, top_p=0.9, generator=torch.Generator().manual_seed(3)) for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
    # top_p=1.0 filters nothing: the same draws as plain sampling.
    a = model.generate(prompt, 10, top_p=1.0, generator=torch.Generator().manual_seed(3))
    b = model.generate(prompt, 10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_generate_stops_at_eos(model):
    prompt = _prompt(1, 5)
    first = model.generate(prompt, 1, temperature=0)[0, -1].item()
    out = model.generate(prompt, 10, temperature=0, eos_token_id=first)
    assert out.shape == (1, 6)
    assert out[0, -1].item() == first


def test_generate_pads_finished_rows_with_eos(model):
    prompt = _prompt(2, 5)
    free = model.generate(prompt, 6, temperature=0)
    eos = free[0, 6].item()  # row 0's second new token
    out = model.generate(prompt, 6, temperature=0, eos_token_id=eos)
    row0 = out[0, 5:].tolist()
    stop = row0.index(eos)
    assert all(t == eos for t in row0[stop:])
    if eos not in free[1, 5:].tolist():
        assert out.shape == free.shape  # row 1 never finishes: all steps run


def test_generate_crops_to_context(model):
    prompt = _prompt(1, TINY.n_positions)
    out = model.generate(prompt, 3, temperature=0)
    assert out.shape == (1, TINY.n_positions + 3)


@pytest.mark.parametrize("kwargs", [dict(temperature=-1.0), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5)])
def test_generate_rejects_bad_sampling_settings(model, kwargs):
    with pytest.raises(ValueError):
        model.generate(_prompt(1, 3), 1, **kwargs)


def test_filters_keep_the_expected_tokens():
    logits = torch.log(torch.tensor([[0.05, 0.5, 0.15, 0.3]]))
    kept = lambda filtered: torch.isfinite(filtered)[0].tolist()  # noqa: E731
    assert kept(filter_top_k(logits, 2)) == [False, True, False, True]
    assert kept(filter_top_k(logits, 10)) == [True, True, True, True]
    # Cumulative mass in descending order: 0.5, 0.8, 0.95, 1.0.
    assert kept(filter_top_p(logits, 0.6)) == [False, True, False, True]
    assert kept(filter_top_p(logits, 0.85)) == [False, True, True, True]
    assert kept(filter_top_p(logits, 0.1)) == [False, True, False, False]
