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
    assert double.seconds_per_step == full.seconds_per_step
    samples = timing.SAMPLE_TOKENS * timing.forward_flops_per_token(tiny_llama_folder, 64) / (
        rate * timing.GENERATION_EFFICIENCY)
    assert double.seconds - samples == pytest.approx(2 * (full.seconds - samples), rel=0.1)
    assert lora.flops_per_step == pytest.approx(full.flops_per_step * 2 / 3)
    assert "LoRA" in lora.basis and "GFLOP" in lora.basis


def test_matmul_rate_is_measured_and_positive():
    assert timing.matmul_rate("cpu") > 1e8


def test_quick_cpu_settings_are_valid_training_settings():
    for name, settings in timing.QUICK_CPU.items():
        cfg = TrainConfig(model=name, **settings)
        assert cfg.lora_rank > 0 and cfg.steps <= 50


def test_an_earlier_run_of_the_same_model_and_method_gives_the_speed(llmfs_home, tiny_hf_folder):
    from llmfs.runs import Run

    def finished(cfg: TrainConfig, tokens_per_s: float) -> Run:
        import dataclasses
        run = Run.create(llmfs_home / "runs" / f"r{tokens_per_s:g}", "train", dataclasses.asdict(cfg))
        run.mark_finished("succeeded", result={"tokens_per_s": tokens_per_s})
        return run

    lora = TrainConfig(model=str(tiny_hf_folder), lora_rank=4, steps=10, batch_size=2, seq_len=32)
    runs = [finished(lora.replace(lora_rank=0), 900.0), finished(lora, 400.0)]   # newest first
    assert timing.observed_speed(runs, lora, "cpu") == 400.0
    assert timing.observed_speed(runs, lora.replace(lora_rank=0), "cpu") == 900.0
    assert timing.observed_speed(runs, lora.replace(quantize="4bit"), "cpu") is None  # QLoRA: no run yet
    est = timing.estimate_train(lora, tiny_hf_folder, observed_tokens_per_s=400.0)
    assert est.seconds_per_step == pytest.approx(2 * 32 / 400.0) and "400 tokens/s" in est.basis
