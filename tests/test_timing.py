"""llmfs.timing: the expected time said before Start, counted from the model's shapes and this machine's speed."""

from __future__ import annotations

import pytest

from llmfs import timing
from llmfs.config import TrainConfig
from llmfs.model import TINY_CONFIG, GPT


def test_forward_flops_count_every_linear_layer_and_attention():
    arch_params = sum(m.weight.numel() for n, m in GPT(TINY_CONFIG).named_modules()
                      if type(m).__name__ == "Linear")
    per_token = timing.forward_flops_per_token(TINY_CONFIG, seq_len=64)
    attention = 2 * TINY_CONFIG.n_layer * 64 * TINY_CONFIG.n_embd
    assert per_token == 2 * arch_params + attention


def test_estimate_scales_with_the_work_and_lora_costs_less_than_full(tiny_llama_folder):
    cfg = TrainConfig(steps=10, batch_size=2, seq_len=32, eval_every=0, eval_batches=1)
    rate = 1e10  # a fixed speed: the test is about the counting, not this machine
    full = timing.estimate_train(cfg, tiny_llama_folder, rate=rate)
    double = timing.estimate_train(cfg.replace(steps=20), tiny_llama_folder, rate=rate)
    lora = timing.estimate_train(cfg.replace(lora_rank=4), tiny_llama_folder, rate=rate)
    assert double.seconds_per_step == full.seconds_per_step and double.seconds > 1.9 * full.seconds
    assert lora.flops_per_step == pytest.approx(full.flops_per_step * 2 / 3)
    assert "LoRA" in lora.basis and "GFLOP" in lora.basis


def test_matmul_rate_is_measured_and_positive():
    assert timing.matmul_rate("cpu") > 1e8


def test_quick_cpu_settings_are_valid_training_settings():
    for name, settings in timing.QUICK_CPU.items():
        cfg = TrainConfig(model=name, **settings)
        assert cfg.lora_rank > 0 and cfg.steps <= 50
