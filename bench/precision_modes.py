"""fp32 vs fp16 vs bf16 (vs bf16-pure) training on one model: tokens/s and peak memory, through the real loop.

Every mode trains the same model (same seed, same batches) with `llmfs.train.train`, so the figures include the
autocast, the gradient scaler and the optimizer exactly as a run in the app pays for them. Modes alternate in
rounds (fp32, fp16, bf16, fp32, fp16, bf16 ...) so machine noise hits all alike; the median tokens/s of the steps
after warm-up is reported. Memory: on CUDA, `torch.cuda.max_memory_allocated` (what tensors used) and NVML's
used memory (what nvidia-smi shows, allocator cache and CUDA context included) sampled while the mode trains; on
the CPU, the process's peak resident memory, which includes everything else the process holds.

    .venv/bin/python bench/precision_modes.py                                  # CPU, a small GPT, ~1-2 minutes
    .venv/bin/python bench/precision_modes.py --preset gpt2 --batch 8 --seq 1024 --device cuda --tf32
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmfs import telemetry  # noqa: E402
from llmfs.config import TrainConfig  # noqa: E402
from llmfs.model import GPT, GPTConfig  # noqa: E402
from llmfs.memory import estimate  # noqa: E402
from llmfs.precision import PrecisionError, plan_precision  # noqa: E402
from llmfs.train import RandomWindows, train  # noqa: E402


class NvmlPeak:
    """Samples NVML's used GPU memory every 50 ms in a thread; `.peak` after `stop()`."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            used = telemetry.snapshot().get("gpu_memory_used_bytes") or 0
            self.peak = max(self.peak, used)
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_mode(cfg: GPTConfig, mode: str, args) -> dict:
    torch.manual_seed(0)
    model = GPT(cfg)
    tokens = torch.randint(0, cfg.vocab_size, (args.batch * (args.seq + 1) * 64,))
    tcfg = TrainConfig(steps=args.steps, batch_size=args.batch, seq_len=args.seq, lr=3e-4, warmup_steps=0,
                       eval_every=0, checkpoint_every=0, device=args.device, precision=mode, tf32=args.tf32)
    if args.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with NvmlPeak() as nvml:
        result = train(model, RandomWindows(tokens, args.batch, args.seq, seed=1), tcfg, device=args.device)
    rates = [h["tokens_per_s"] for h in result.history[args.warmup:]]
    out = {"mode": mode, "tokens_per_s": statistics.median(rates), "final_loss": result.final_loss,
           "peak_torch_bytes": result.peak_memory_bytes if args.device == "cuda" else None,
           "peak_nvml_bytes": nvml.peak or None,
           "peak_rss_bytes": result.peak_memory_bytes if args.device != "cuda" else None,
           "skipped_steps": result.skipped_steps,
           "estimate_bytes": estimate(cfg, "full", precision=mode, batch_size=args.batch, seq_len=args.seq).total_bytes}
    del model, result
    gc.collect()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default=None, help="A GPTConfig preset (gpt2, gpt2-medium ...); default: a small GPT.")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=12, help="Steps per mode and round.")
    p.add_argument("--warmup", type=int, default=3, help="Steps left out of the median.")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--modes", default="fp32,fp16,bf16")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tf32", action="store_true", help="TF32 matmuls for fp32 (GPUs from compute capability 8.0).")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    cfg = (GPTConfig.preset(args.preset) if args.preset
           else GPTConfig(vocab_size=8192, n_positions=args.seq, n_embd=384, n_layer=6, n_head=6))
    modes = []
    for m in args.modes.split(","):
        try:
            plan_precision(m, args.device, tf32=args.tf32)
            modes.append(m)
        except PrecisionError as e:
            print(f"skipping {m}: {e}", file=sys.stderr)
    rounds: dict[str, list[dict]] = {m: [] for m in modes}
    for _ in range(args.rounds):
        for m in modes:
            rounds[m].append(run_mode(cfg, m, args))
    rows = []
    for m in modes:
        rs = rounds[m]
        best = {k: max((r[k] for r in rs if r[k] is not None), default=None)
                for k in ("peak_torch_bytes", "peak_nvml_bytes", "peak_rss_bytes")}
        rows.append({"mode": m, "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs),
                     "final_loss": rs[-1]["final_loss"], "skipped_steps": rs[-1]["skipped_steps"],
                     "estimate_bytes": rs[-1]["estimate_bytes"], **best})
    ref = next((r for r in rows if r["mode"] == "fp32"), None)
    machine = telemetry.describe_machine()
    gpu = ", ".join(g.get("name", "?") for g in machine.get("gpus") or []) or "no GPU"
    print(f"\nmodel: {sum(p.numel() for p in GPT(cfg).parameters()):,} params, batch {args.batch} x seq {args.seq}, "
          f"device {args.device} ({gpu}, {machine['cpu_count']} CPUs, torch {machine['torch']})"
          f"{', TF32 on' if args.tf32 else ''}")
    print("| mode | tokens/s | speed-up vs fp32 | peak torch | peak NVML | peak RSS | estimate | final loss |")
    print("|---|---|---|---|---|---|---|---|")
    mb = lambda b: f"{b / 2**20:,.0f} MiB" if b else "-"  # noqa: E731
    for r in rows:
        speed = f"{r['tokens_per_s'] / ref['tokens_per_s']:.2f}x" if ref else "-"
        print(f"| {r['mode']} | {r['tokens_per_s']:,.0f} | {speed} | {mb(r['peak_torch_bytes'])} | "
              f"{mb(r['peak_nvml_bytes'])} | {mb(r['peak_rss_bytes'])} | {mb(r['estimate_bytes'])} | "
              f"{r['final_loss']:.3f} |")
    if args.json:
        print(json.dumps({"rows": rows, "args": vars(args), "machine": {"gpus": gpu, "cpus": machine["cpu_count"]}}))


if __name__ == "__main__":
    main()
