"""Mixed precision: every mode trains our GPT and our Llama, bf16 tracks fp32, the fp16 scaler skips an overflowing
step and halves its scale, divergence stops the run with the last checkpoint kept, and the capability check refuses
old GPUs."""

from __future__ import annotations

import math

import pytest
import torch

from llmfs.config import TrainConfig
from llmfs.llama import Llama, LlamaConfig, rope_frequencies
from llmfs.memory import estimate
from llmfs.model import GPT, GPTConfig
from llmfs.precision import (
    PrecisionError,
    format_table,
    plan_precision,
    represent,
    summarize,
    underflow_demo,
)
from llmfs.train import RandomWindows, train

TINY = GPTConfig(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2)
# grouped-query attention and a tied head, as smollm2-135m
TINY_LLAMA = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
MODES = ("fp32", "fp16", "bf16", "bf16-pure")


def _model(config):
    torch.manual_seed(0)
    return Llama(config) if isinstance(config, LlamaConfig) else GPT(config)


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    # a learnable stream: a repeating pattern with a little noise
    base = torch.arange(4000) % 16
    noise = torch.randint(0, 64, (4000,), generator=g)
    return torch.where(torch.rand(4000, generator=g) < 0.1, noise, base)


def _run(precision, steps=40, config=TINY, **kw):
    model = _model(config)
    cfg = TrainConfig(steps=steps, batch_size=8, seq_len=16, lr=3e-3, warmup_steps=2, eval_every=0, device="cpu",
                      precision=precision, **kw)
    return model, train(model, RandomWindows(_data(), 8, 16, seed=1), cfg)


@pytest.fixture(scope="module", params=["gpt", "llama"])
def runs(request):
    config = TINY_LLAMA if request.param == "llama" else TINY
    return {mode: _run(mode, config=config)[1] for mode in MODES}


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_trains(runs, mode):
    losses = runs[mode].losses
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    assert runs[mode].precision == mode


def test_bf16_stays_close_to_fp32(runs):
    fp32, bf16 = runs["fp32"].losses, runs["bf16"].losses
    assert abs(fp32[-1] - bf16[-1]) < 0.1 * fp32[-1]
    assert max(abs(a - b) for a, b in zip(fp32, bf16)) < 0.15 * max(fp32)


def test_fp16_records_the_scaler(runs):
    r = runs["fp16"]
    assert len(r.loss_scales) == 40 and r.loss_scales[0] == 2.0**16
    assert runs["fp32"].loss_scales == [] and runs["bf16"].skipped_steps == 0


def test_pure_bf16_keeps_weights_in_bf16():
    model, result = _run("bf16-pure", steps=3)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_pure_bf16_keeps_our_llamas_rotary_frequencies_in_fp32():
    """The weights go to bf16; the rotary frequencies, recomputed rather than stored, stay exact (in bf16 a
    pretrained Llama's positions would drift by radians at a few thousand tokens)."""
    model, result = _run("bf16-pure", steps=3, config=TINY_LLAMA)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.inv_freq.dtype == torch.float32 and torch.equal(model.inv_freq, rope_frequencies(TINY_LLAMA))
    assert "inv_freq" not in model.state_dict()  # still a buffer the checkpoint does not hold


@pytest.mark.parametrize("config, weight", [(TINY, "transformer.h.0.mlp.c_fc.weight"),
                                            (TINY_LLAMA, "model.layers.0.mlp.gate_proj.weight")])
def test_scaler_skips_an_injected_overflow_and_halves_its_scale(config, weight):
    model = _model(config)
    calls = {"n": 0}

    def overflow_on_third_backward(grad):
        calls["n"] += 1
        return grad * float("inf") if calls["n"] == 3 else grad

    model.get_parameter(weight).register_hook(overflow_on_third_backward)
    snapshots = []

    class Sink:
        def emit(self, step, kind="train", **m):
            if kind == "train":
                snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    cfg = TrainConfig(steps=5, batch_size=4, seq_len=16, lr=1e-3, warmup_steps=0, eval_every=0, device="cpu",
                      precision="fp16")
    result = train(model, RandomWindows(_data(), 4, 16), cfg, sink=Sink())
    assert result.skipped_steps == 1
    assert result.loss_scales[:4] == [2.0**16, 2.0**16, 2.0**16, 2.0**15]  # halved after step 3
    assert [h["skipped"] for h in result.history] == [False, False, True, False, False]
    # the skipped step left every weight as it was
    assert all(torch.equal(snapshots[1][k], snapshots[2][k]) for k in snapshots[1])
    assert not all(torch.equal(snapshots[2][k], snapshots[3][k]) for k in snapshots[2])


def test_nan_loss_stops_with_an_explanation_and_keeps_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = GPT(TINY)
    calls = {"n": 0}

    def nan_from_step_4(module, inputs, output):
        calls["n"] += 1
        return output * float("nan") if calls["n"] >= 4 else output

    model.transformer.ln_f.register_forward_hook(nan_from_step_4)
    cfg = TrainConfig(steps=10, batch_size=4, seq_len=16, lr=1e-3, warmup_steps=0, eval_every=0, device="cpu",
                      precision="bf16", checkpoint_every=2)
    with pytest.raises(FloatingPointError, match="step 4.*diverged.*last good checkpoint"):
        train(model, RandomWindows(_data(), 4, 16), cfg, checkpoint_dir=tmp_path)
    from llmfs.train import checkpoint_step
    assert checkpoint_step(tmp_path) == 2


def test_capability_check_refuses_bf16_on_an_old_gpu():
    with pytest.raises(PrecisionError, match="compute capability 7.5.*fp16"):
        plan_precision("bf16", "cuda", capability=(7, 5))
    with pytest.raises(PrecisionError, match="TF32"):
        plan_precision("fp32", "cuda", tf32=True, capability=(7, 0))
    assert plan_precision("bf16", "cuda", capability=(9, 0)).autocast_dtype is torch.bfloat16
    plan = plan_precision("fp16", "cpu", tf32=True)
    assert plan.use_scaler and not plan.tf32 and any("slower" in w for w in plan.warnings)


def test_preflight_refuses_bf16_on_an_old_gpu(monkeypatch):
    from llmfs.config import ConfigError
    from llmfs.recipes import preflight_train
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    with pytest.raises(ConfigError, match="bfloat16") as e:
        preflight_train(TrainConfig(precision="bf16", device="cuda"))
    assert e.value.field == "precision"


@pytest.mark.parametrize("config", [TINY, TINY_LLAMA], ids=["gpt", "llama"])
def test_scaling_rescues_small_gradients(config):
    model = _model(config)
    rows = {r["variant"]: r for r in underflow_demo(model, torch.randint(0, 64, (4, 17)), loss_factor=2.0**-16)}
    assert rows["fp16, no loss scaling"]["zero_fraction"] > 0.3
    assert rows["fp16 with loss scaling"]["zero_fraction"] < 0.01
    assert rows["fp16 with loss scaling"]["rel_error"] < 0.01


def test_number_formats():
    by = {r["format"]: r for r in format_table()}
    assert by["fp16"]["max"] == 65504.0 and by["bf16"]["epsilon"] == 2.0**-7
    assert by["fp16"]["smallest_subnormal"] == 2.0**-24
    rows = represent([1e-8, 70000.0, 1.0])
    assert rows[0]["fp16_status"] == "underflow to 0" and rows[0]["bf16_status"] == "rounded"
    assert rows[1]["fp16_status"] == "overflow to inf" and rows[1]["bf16"] == 70144.0
    assert rows[2]["fp32_status"] == rows[2]["fp16_status"] == "exact"


@pytest.mark.parametrize("config", [TINY, TINY_LLAMA], ids=["gpt", "llama"])
def test_memory_per_mode_amp_saves_activations_pure_bf16_halves_the_rest(config):
    fp32, fp16, amp, pure = (estimate(config, precision=m, batch_size=8, seq_len=32) for m in MODES)
    # AMP keeps fp32 weights, gradients and AdamW states (16 bytes a parameter), as the loop does; only the
    # activations shrink (16-bit matmul inputs and outputs, though with 16-bit copies of the weights)
    assert amp.parts()[:3] == fp16.parts()[:3] == fp32.parts()[:3]
    assert amp.weights_bytes + amp.gradients_bytes + amp.optimizer_bytes == 16 * amp.total_params
    assert fp32.activations_bytes / 2 < amp.activations_bytes < fp32.activations_bytes
    # bf16-pure: the model, so its gradients and AdamW states, in bf16: 8 bytes a parameter
    assert pure.weights_bytes + pure.gradients_bytes + pure.optimizer_bytes == 8 * pure.total_params
    assert pure.activations_bytes < amp.activations_bytes
    assert any("bf16-pure" in n for n in pure.notes) and any("stay fp32" in n for n in amp.notes)


def test_summary_ratios():
    rows = summarize([{"precision": "fp32", "tokens_per_s": 100.0, "peak_memory_bytes": 1000, "final_loss": 2.0,
                       "tensor_bytes": 400},
                      {"precision": "bf16", "tokens_per_s": 250.0, "peak_memory_bytes": 600, "final_loss": 2.1,
                       "tensor_bytes": 200}])
    assert rows[1]["speedup"] == 2.5 and rows[1]["memory_ratio"] == 0.6 and rows[1]["tensor_ratio"] == 0.5
    assert rows[1]["loss_diff"] == pytest.approx(0.1)
