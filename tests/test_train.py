"""The training loop: loss falls, the stop flag is honoured, resume continues the history (our GPT's and our
Llama's), LR schedule shape, no weight decay on norms and biases, the tensor bytes it counts."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from llmfs.config import ConfigError, TrainConfig
from llmfs.llama import Llama, LlamaConfig
from llmfs.model import GPT, GPTConfig
from llmfs.train import RandomWindows, checkpoint_step, lr_at, make_optimizer, total_steps_for, train

TINY = GPTConfig(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2)
TINY_LLAMA = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)  # a tied head


def _model(config):
    return Llama(config) if isinstance(config, LlamaConfig) else GPT(config)


def _data(n=4000, seed=0):
    # A learnable sequence: a repeating pattern with a little noise, so the loss can fall far below ln(64).
    g = torch.Generator().manual_seed(seed)
    base = torch.arange(n) % 17
    noise = torch.randint(0, 64, (n,), generator=g)
    keep = torch.rand(n, generator=g) < 0.9
    return torch.where(keep, base, noise)


def _cfg(**kw):
    base = dict(steps=60, batch_size=8, seq_len=16, lr=3e-3, warmup_steps=5, eval_every=20, eval_batches=2,
                checkpoint_every=0, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


class ListSink:
    def __init__(self):
        self.records = []

    def emit(self, step, kind="train", **metrics):
        self.records.append({"step": step, "kind": kind, **metrics})


def test_loss_falls_on_tiny_config():
    torch.manual_seed(0)
    model = GPT(TINY)
    data = _data()
    sink = ListSink()
    result = train(model, RandomWindows(data, 8, 16, seed=1), _cfg(), val_batches=RandomWindows(data, 8, 16, seed=2),
                   sink=sink)
    first = sum(result.losses[:5]) / 5
    last = sum(result.losses[-5:]) / 5
    assert first > math.log(64) * 0.8          # starts near uniform
    assert last < first * 0.6                  # and learns the pattern
    assert [e["step"] for e in result.evals] == [20, 40, 60]
    assert result.evals[-1]["eval_loss"] < result.evals[0]["eval_loss"]
    train_records = [r for r in sink.records if r["kind"] == "train"]
    assert [r["step"] for r in train_records] == list(range(1, 61))
    assert all(r["tokens_per_s"] > 0 and r["lr"] > 0 for r in train_records)
    assert result.trainable_params == result.total_params == model.num_params()


def test_stop_flag_honoured_between_steps():
    model = GPT(TINY)
    data = _data()
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] > 7  # asked once before each step: 7 steps run, then it stops

    result = train(model, RandomWindows(data, 8, 16), _cfg(steps=100), should_stop=should_stop)
    assert result.stopped
    assert result.steps_done == 7 and len(result.history) == 7


@pytest.mark.parametrize("config", [TINY, TINY_LLAMA], ids=["gpt", "llama"])
def test_resume_continues_the_history(tmp_path, config):
    data = _data()
    cfg = _cfg(steps=30, checkpoint_every=10, eval_every=0)

    torch.manual_seed(0)
    straight = train(_model(config), RandomWindows(data, 8, 16), cfg, checkpoint_dir=tmp_path / "a")

    torch.manual_seed(0)
    n = {"i": 0}

    def stop_after_12():
        n["i"] += 1
        return n["i"] > 12

    first = train(_model(config), RandomWindows(data, 8, 16), cfg, checkpoint_dir=tmp_path / "b",
                  should_stop=stop_after_12)
    assert first.stopped and first.steps_done == 12
    assert checkpoint_step(tmp_path / "b") == 12   # the stop wrote a checkpoint

    torch.manual_seed(123)  # a different init: resume must restore the weights, not rely on the seed
    resumed = train(_model(config), RandomWindows(data, 8, 16), cfg, checkpoint_dir=tmp_path / "b", resume=True)
    assert [h["step"] for h in resumed.history] == list(range(1, 31))
    # Same data per step, same weights and optimizer state: the resumed run matches the uninterrupted one.
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("config, no_decay", [
    (TINY, (".bias", "ln_1.weight", "ln_2.weight", "ln_f.weight")),
    # Qwen2's q / k / v biases; RMSNorm weights as LayerNorm's
    (dataclasses.replace(TINY_LLAMA, qkv_bias=True, model_type="qwen2", tie_word_embeddings=False),
     (".bias", "input_layernorm.weight", "post_attention_layernorm.weight", "model.norm.weight")),
], ids=["gpt", "llama"])
def test_norm_weights_and_biases_get_no_weight_decay(config, no_decay):
    model = _model(config)
    optimizer = make_optimizer(model, _cfg(weight_decay=0.1))
    decays = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    names = dict(model.named_parameters())
    assert set(decays) == {id(p) for p in names.values()}  # every tensor once, a tied head under its embedding
    assert {n for n, p in names.items() if decays[id(p)] == 0.0} == {n for n in names if n.endswith(no_decay)}
    assert {decays[id(p)] for n, p in names.items() if not n.endswith(no_decay)} == {0.1}


def test_checkpoint_files_are_safe_formats(tmp_path):
    train(GPT(TINY), RandomWindows(_data(), 8, 16), _cfg(steps=3, warmup_steps=1), checkpoint_dir=tmp_path)
    files = sorted(p.name for p in (tmp_path / "last").iterdir())
    assert files == ["model.safetensors", "optimizer.pt", "state.json"]
    torch.load(tmp_path / "last" / "optimizer.pt", weights_only=True)  # loadable without unpickling code


def test_lr_schedule_warmup_then_cosine_to_floor():
    lrs = [lr_at(s, 100, 1.0, 10, 0.1) for s in range(1, 101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # non-increasing after warm-up
    assert lrs[-1] == pytest.approx(0.1)


def test_epochs_set_the_step_count():
    cfg = _cfg(epochs=2.0, batch_size=4, seq_len=10)
    assert total_steps_for(cfg, train_tokens=400) == 20


def test_nan_loss_stops_with_explanation():
    class NaNModel(GPT):
        def forward(self, idx, targets=None):
            logits, loss = super().forward(idx, targets)
            return logits, loss * float("nan")

    with pytest.raises(FloatingPointError, match="became nan at step 1"):
        train(NaNModel(TINY), RandomWindows(_data(), 8, 16), _cfg(steps=3, warmup_steps=1))


def test_frozen_model_refused():
    model = GPT(TINY)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="Nothing to train"):
        train(model, RandomWindows(_data(), 8, 16), _cfg(steps=2, warmup_steps=1))


@pytest.mark.parametrize("field,value,words", [
    ("lr", -0.1, "Learning rate must be between"),
    ("batch_size", 0, "Batch size must be between 1 and 4096 (got 0)"),
    ("steps", 0, "Training steps must be between 1"),
    ("grad_clip", float("nan"), "Gradient clipping must be a finite number"),
    ("device", "tpu", "Device must be one of auto, cpu, cuda"),
])
def test_invalid_hyperparameters_name_field_and_range(field, value, words):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**{field: value})
    assert err.value.field == field
    assert words in str(err.value)


def test_sequence_longer_than_context_refused():
    cfg = TrainConfig(seq_len=512)
    with pytest.raises(ConfigError,
                       match=r"Sequence length must be between 2 and 256, the model's context length \(got 512\)"):
        cfg.check_context(256)


def test_random_windows_refuse_too_little_data():
    with pytest.raises(ValueError, match="fewer than one sequence"):
        RandomWindows(torch.arange(10), 2, 16)


def test_tensor_memory_counted_on_the_first_every_tenth_and_the_last_step():
    sink = ListSink()
    torch.manual_seed(0)
    model = GPT(TINY)
    result = train(model, RandomWindows(_data(), 8, 16), _cfg(steps=12, eval_every=0), sink=sink)
    counts = [r for r in sink.records if r["kind"] == "tensor_memory"]
    assert [r["step"] for r in counts] == [1, 10, 12]
    n, tensors = model.num_params(), len(list(model.parameters()))
    last = counts[-1]
    assert last["weights_bytes"] == last["gradients_bytes"] == 4 * n
    assert last["optimizer_bytes"] == 8 * n + 4 * tensors  # AdamW's two fp32 moments, and a step counter each
    assert last["activations_bytes"] > 0 and result.tensor_memory == {k: v for k, v in last.items()
                                                                       if k.endswith("_bytes")}
    pure = train(GPT(TINY), RandomWindows(_data(), 8, 16), _cfg(steps=1, precision="bf16-pure")).tensor_memory
    assert pure["weights_bytes"] * 2 == last["weights_bytes"]
    assert pure["activations_bytes"] < last["activations_bytes"]


# -- short text (issue 16) ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("tokens,seq_len,fit", [(443, 128, 128), (130, 128, 128), (129, 128, 64), (100, 128, 64),
                                                (66, 128, 64), (65, 128, 32), (10, 128, 8), (9, 128, None),
                                                (0, 128, None), (100, 16, 16)])
def test_the_sequence_length_follows_short_text(tokens, seq_len, fit):
    from llmfs.train import fitted_seq_len
    assert fitted_seq_len(tokens, seq_len) == fit
    if fit is not None:
        RandomWindows(torch.arange(tokens), 2, fit).batch(1)   # it really fits


def test_short_held_out_text_is_measured_as_it_is():
    from llmfs.train import HeldOutWindows
    whole = HeldOutWindows(torch.arange(1000), 4, 128, 3, seed=1, final_batches=5)
    assert whole.usable and whole.note is None and (whole.batches, whole.final_batches) == (3, 5)
    assert whole.batch(0, 0)[0].shape == (4, 128) and whole.tokens_read == 5 * 4 * 128
    short = HeldOutWindows(torch.arange(25), 8, 128, 4, seed=1)
    x, y = short.batch(0, 0)
    assert x.shape == (1, 23) and torch.equal(y, x + 1)
    assert (short.batches, short.final_batches, short.tokens_read) == (1, 1, 23)
    assert "only 25 tokens, so it is measured as one window of 23 tokens" in short.note
    none = HeldOutWindows(torch.arange(3), 8, 128, 4)
    assert not none.usable and "too little to measure a held-out loss on" in none.note


def test_a_run_with_a_tiny_held_out_text_trains_and_reports_no_held_out_loss():
    from llmfs.train import HeldOutWindows
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    cfg = TrainConfig(steps=2, batch_size=2, seq_len=8, warmup_steps=0, eval_every=1, device="cpu",
                      checkpoint_every=0)
    result = train(model, RandomWindows(torch.randint(0, 50, (100,)), 2, 8), cfg,
                   val_batches=HeldOutWindows(torch.arange(3), 2, 8, 4))
    assert result.steps_done == 2 and result.evals == []
