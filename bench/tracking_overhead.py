"""What TensorBoard charts cost a training step: the same run with the event files written and without.

Two figures, each with TensorBoard on and off in alternating rounds (so machine noise hits both alike):

1. `emit`: the time one step's records take to report (`JobContext.emit`: the metrics.jsonl line, plus the event
   written to TensorBoard's queue when on), over many emits of a real train record; the median microseconds a step.
2. `llmfs-tiny`: training steps of a model of llmfs-tiny's shape (`llmfs.model.TINY_CONFIG`, random weights,
   random windows) through the real loop (`llmfs.train.train`) with a real JobContext as its sink, the telemetry
   sampler on: the median wall time from one step's record to the next (a whole step, its reporting included; the
   median keeps a busy machine's stalls out), then the median over rounds.

    .venv/bin/python bench/tracking_overhead.py                     # CPU, a minute or two
    .venv/bin/python bench/tracking_overhead.py --device cuda --steps 200
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmfs import telemetry  # noqa: E402
from llmfs.config import TrainConfig  # noqa: E402
from llmfs.jobs import JobContext  # noqa: E402
from llmfs.model import GPT, TINY_CONFIG  # noqa: E402
from llmfs.runs import Run  # noqa: E402
from llmfs.train import RandomWindows, train  # noqa: E402

RECORD = {"loss": 5.4321, "lr": 3e-4, "grad_norm": 1.23, "tokens": 2048, "step_time_s": 0.0123,
          "tokens_per_s": 166504.1, "total_steps": 1000, "elapsed_s": 12.3, "tokens_seen": 2_048_000}


def context(root: Path, name: str, tensorboard: bool) -> JobContext:
    os.environ["LLMFS_TENSORBOARD"] = "1" if tensorboard else "0"
    return JobContext(Run.create(root / name, "train", {}), threading.Event())


def emit_cost(root: Path, tensorboard: bool, n: int, tag: str) -> float:
    """Median microseconds per emit of a train record (in blocks of 100, so the timer's own cost is shared)."""
    ctx = context(root, f"emit-{tag}", tensorboard)
    blocks = []
    for b in range(n // 100):
        t0 = time.perf_counter()
        for i in range(100):
            ctx.emit(b * 100 + i + 1, **RECORD)
        blocks.append((time.perf_counter() - t0) / 100)
    ctx.close_tracking()
    return statistics.median(blocks) * 1e6


def step_cost(root: Path, tensorboard: bool, args, tag: str) -> float:
    """Wall seconds per training step of an llmfs-tiny-shaped GPT, reporting to a real JobContext."""
    torch.manual_seed(0)
    model = GPT(TINY_CONFIG).to(args.device)
    tokens = torch.randint(TINY_CONFIG.vocab_size, (50_000,))
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch, seq_len=args.seq, warmup_steps=2, eval_every=0,
                      device=args.device)
    ctx = context(root, f"train-{tag}", tensorboard)
    sampler = telemetry.Sampler(lambda snap: ctx.emit(ctx.last_step, kind="telemetry", **snap), 1.0).start()
    train(model, RandomWindows(tokens, args.batch, args.seq), cfg, sink=ctx, device=args.device)
    sampler.stop()
    ctx.close_tracking()
    times = [r["time"] for r in ctx.run.read_metrics("train")]
    return statistics.median(b - a for a, b in zip(times, times[1:]))  # step to step, reporting included


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--emits", type=int, default=2000)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        emits: dict[bool, list[float]] = {True: [], False: []}
        steps: dict[bool, list[float]] = {True: [], False: []}
        for r in range(args.rounds):
            for on in ((True, False) if r % 2 == 0 else (False, True)):
                emits[on].append(emit_cost(root, on, args.emits, f"{r}-{on}"))
                steps[on].append(step_cost(root, on, args, f"{r}-{on}"))
        event_bytes = sum(f.stat().st_size for f in root.glob("train-0-True/tensorboard/*"))
    out = {
        "emit_us": {"tensorboard": statistics.median(emits[True]), "off": statistics.median(emits[False])},
        "step_ms": {"tensorboard": statistics.median(steps[True]) * 1e3,
                    "off": statistics.median(steps[False]) * 1e3},
        "event_file_bytes_per_step": event_bytes / args.steps,
        "rounds": args.rounds, "steps": args.steps, "batch": args.batch, "seq": args.seq, "device": args.device,
        "torch": torch.__version__, "cpus": os.cpu_count(),
    }
    out["emit_us"]["added"] = out["emit_us"]["tensorboard"] - out["emit_us"]["off"]
    out["step_ms"]["added_pct"] = 100 * (out["step_ms"]["tensorboard"] / out["step_ms"]["off"] - 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
