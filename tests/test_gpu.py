"""CUDA paths, run by `bench/gpu_check.sh` on a GPU (`pytest -m gpu`); CI has no GPU and deselects them."""

from __future__ import annotations

import pytest
import torch

from llmfs.config import TrainConfig
from llmfs.model import GPT, GPTConfig
from llmfs.train import RandomWindows, train

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SMALL = GPTConfig(vocab_size=8192, n_positions=512, n_embd=512, n_layer=8, n_head=8)


def _train(mode: str, steps: int = 6, model=None, **kw):
    torch.manual_seed(0)
    model = model or GPT(SMALL)
    tokens = torch.randint(0, SMALL.vocab_size, (200_000,))
    cfg = TrainConfig(steps=steps, batch_size=16, seq_len=512, lr=3e-4, warmup_steps=0, eval_every=0,
                      checkpoint_every=0, device="cuda", precision=mode, **kw)
    torch.cuda.empty_cache()
    return train(model, RandomWindows(tokens, 16, 512), cfg, device="cuda")


def test_nvml_reads_the_gpu():
    from llmfs import telemetry
    snap = telemetry.snapshot()
    assert snap.get("gpu_memory_total_bytes", 0) > 1e9
    x = torch.empty(512 * 2**20, dtype=torch.uint8, device="cuda")  # 512 MiB
    used = telemetry.snapshot()["gpu_memory_used_bytes"]
    assert used >= 512 * 2**20
    del x


def test_half_precision_saves_activation_memory_and_bf16_pure_more():
    peaks = {m: _train(m).peak_memory_bytes for m in ("fp32", "bf16", "fp16", "bf16-pure")}
    assert peaks["bf16"] < peaks["fp32"] and peaks["fp16"] < peaks["fp32"]
    assert peaks["bf16-pure"] < peaks["bf16"]


def test_fp16_scaler_on_cuda():
    result = _train("fp16", steps=8)
    assert len(result.loss_scales) == 8 and all(s > 0 for s in result.loss_scales)


def test_qlora_trains_on_cuda():
    from llmfs import lora
    model = GPT(SMALL).cuda()
    before = torch.cuda.memory_allocated()
    lora.quantize_4bit(model, device="cuda", compute_dtype=torch.bfloat16)
    assert torch.cuda.memory_allocated() < before
    lora.add_adapter(model, rank=8, alpha=16, targets="all-linear", seed=0)
    lora.mark_trainable(model)
    result = _train("bf16", steps=10, model=model)
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert result.losses[-1] < result.losses[0]


def hold_gpu_memory(ctx, cfg):
    """A job that keeps 2 GiB on the GPU until it is stopped (module level: it runs in a child process)."""
    import time
    x = torch.empty(2 * 2**30, dtype=torch.uint8, device="cuda")
    ctx.emit(1, loss=float(x.numel()))
    while not ctx.should_stop():
        time.sleep(0.05)
    return {}


def _nvml_used() -> int:
    from llmfs import telemetry
    return telemetry.snapshot()["gpu_memory_used_bytes"]


def test_a_job_process_gives_all_its_gpu_memory_back(tmp_path):
    from llmfs.jobs import JobManager
    jobs = JobManager(tmp_path / "runs", telemetry_interval=0.2, isolation="process")
    jobs.register("hold", hold_gpu_memory)
    try:
        before = _nvml_used()
        rid = jobs.submit("hold", {})
        import time
        end = time.time() + 120
        while not jobs.get(rid).read_metrics("train") and time.time() < end:
            time.sleep(0.1)
        during = _nvml_used()
        assert during - before >= 2 * 2**30  # the 2 GiB and the child's CUDA context
        jobs.cancel(rid)
        assert jobs.wait(rid, 60) == "cancelled"
        time.sleep(1.0)
        assert _nvml_used() - before < 64 * 2**20  # all of it back once the process is gone
    finally:
        jobs.shutdown()


def test_the_instructors_free_memory_gives_cached_blocks_back():
    from app import instructor_view
    x = torch.empty(1024 * 2**20, dtype=torch.uint8, device="cuda")
    del x  # freed to PyTorch's cache: NVML still counts it
    cached = torch.cuda.memory_reserved()
    assert cached >= 1024 * 2**20
    before = _nvml_used()
    instructor_view.free_memory()
    assert torch.cuda.memory_reserved() < cached and before - _nvml_used() >= 900 * 2**20
