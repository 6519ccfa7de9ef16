"""Scaling of 1 vs 2 training processes through torchrun (DDP), ours beside bare PyTorch DDP; on a GPU, tokens/s
and MFU of GPT-2 small.

CPU (gloo), what this machine can measure: the same GPT (random weights, random tokens, no download) trained
`--steps` steps by
  - ours: `llmfs.train.train` under torchrun, which wraps the model in DDP itself and gives each rank its rows of
    the global batch (`llmfs.distributed`), as `torchrun -m llmfs train` runs;
  - peer: the same model in a bare PyTorch DDP loop (AdamW, clipping, nothing else), the ceiling for our loop;
each with 1 process x 1 thread, 2 processes x 1 thread (weak scaling: the per-process batch stays, the global batch
doubles) and 1 process x 2 threads (the same two cores used by one process instead). Scaling efficiency =
tokens/s with 2 processes / (2 x tokens/s with 1). Configurations alternate over `--rounds`, the median tokens/s of
the steps after `--warmup` is reported. A CPU measure: gloo's all-reduce goes through the kernel's loopback and the
two processes share the memory bus, so it says little about GPUs.

GPU (`--gpu`): GPT-2 small (124M, context 1024, bf16 autocast) on one GPU and, where there are several, on all of
them through torchrun: tokens/s and MFU = 6 x parameters + 12 x layers x width x context FLOPs per token (PaLM's
count) x tokens/s / the GPU's peak dense bf16 FLOP/s (`--peak-tflops`, else known for A100 / H100 / H200).

    .venv/bin/python bench/distributed_scaling.py                 # CPU: 1 vs 2 processes, ours and peer, ~5 minutes
    .venv/bin/python bench/distributed_scaling.py --gpu           # a CUDA machine: GPT-2 small tokens/s and MFU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}


# -- the worker: one rank -------------------------------------------------------------------------------------------
def worker(args) -> None:
    import torch

    from llmfs import distributed
    from llmfs.config import TrainConfig
    from llmfs.model import GPT, GPTConfig
    from llmfs.train import RandomWindows, train

    device = "cuda" if args.gpu else "cpu"
    env = distributed.setup(device)
    dev = distributed.device_for(env, device)
    cfg = _model_config(args)
    torch.manual_seed(0)
    model = GPT(GPTConfig(**cfg))
    tokens = torch.randint(0, cfg["vocab_size"], (200_000,))
    global_batch = RandomWindows(tokens, args.batch * env.world_size, args.seq, seed=1)
    batches = distributed.RankSlice(global_batch, env) if env.active else global_batch
    precision = "bf16" if args.gpu else "fp32"
    steps = args.warmup + args.steps
    if args.impl == "ours":
        tcfg = TrainConfig(steps=steps, batch_size=args.batch, seq_len=args.seq, warmup_steps=2, eval_every=0,
                           checkpoint_every=0, device=device, precision=precision, tf32=args.gpu)
        result = train(model, batches, tcfg, device=dev)
        times = [h["step_time_s"] for h in result.history[args.warmup:]]
    else:
        times = _bare_ddp(model, batches, steps, dev, env, args)[args.warmup:]
    if env.is_main:
        step_s = statistics.median(times)
        n_params = sum(p.numel() for p in model.parameters())
        print(json.dumps({"tokens_per_s": args.batch * env.world_size * args.seq / step_s, "step_s": step_s,
                          "processes": env.world_size, "threads": torch.get_num_threads(), "params": n_params,
                          "gpu": torch.cuda.get_device_name() if args.gpu else None}), flush=True)
    distributed.teardown()


def _bare_ddp(model, batches, steps, dev, env, args) -> list[float]:
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP
    model.to(dev).train()
    net = DDP(model, device_ids=[torch.device(dev).index] if args.gpu else None) if env.active else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        x, y = batches.batch(step, 0)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.gpu):
            _, loss = net(x.to(dev), y.to(dev))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if args.gpu:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def _model_config(args) -> dict:
    if args.gpu:  # GPT-2 small, vocabulary padded to a multiple of 64 as nanoGPT does
        return dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50304)
    return dict(n_layer=4, n_head=4, n_embd=256, n_positions=256, vocab_size=8192)


# -- the driver -----------------------------------------------------------------------------------------------------
def launch(impl: str, processes: int, threads: int, args) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
           str(Path(__file__).resolve()), "--worker", "--impl", impl, "--batch", str(args.batch), "--seq",
           str(args.seq), "--steps", str(args.steps), "--warmup", str(args.warmup)] + (["--gpu"] if args.gpu else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        raise SystemExit(f"{impl} x{processes} failed:\n{p.stderr[-3000:]}")
    return json.loads(lines[-1])


def cpu(args) -> None:
    configs = [(1, 1), (2, 1), (1, 2)]  # (processes, threads each)
    runs: dict[tuple, list[float]] = {}
    for _ in range(args.rounds):
        for impl in ("ours", "peer"):
            for processes, threads in configs:
                r = launch(impl, processes, threads, args)
                runs.setdefault((impl, processes, threads), []).append(r["tokens_per_s"])
                print(f"{impl:4s} {processes} proc x {threads} thread: {r['tokens_per_s']:,.0f} tokens/s",
                      file=sys.stderr)
    tps = {k: statistics.median(v) for k, v in runs.items()}
    print(f"\n{_machine()}; model {_model_config(args)}, batch {args.batch} x {args.seq} tokens per process, "
          f"{args.steps} steps after {args.warmup} warm-up, median of {args.rounds} rounds\n")
    print("| | 1 proc x 1 thread | 2 procs x 1 thread | efficiency (2 procs / 2 x 1) | 1 proc x 2 threads "
          "| 2 procs / 1 proc x 2 threads |")
    print("|---|---|---|---|---|---|")
    for impl in ("ours", "peer"):
        one, two, wide = tps[(impl, 1, 1)], tps[(impl, 2, 1)], tps[(impl, 1, 2)]
        print(f"| {impl} | {one:,.0f} tok/s | {two:,.0f} tok/s | {two / (2 * one):.2f} | {wide:,.0f} tok/s "
              f"| {two / wide:.2f} |")
    print(f"\nours / peer: 1 process {tps[('ours', 1, 1)] / tps[('peer', 1, 1)]:.2f}, 2 processes "
          f"{tps[('ours', 2, 1)] / tps[('peer', 2, 1)]:.2f}")
    print(json.dumps({"machine": _machine(), "tokens_per_s": {f"{k[0]}-{k[1]}x{k[2]}": v for k, v in tps.items()}}))


def gpu(args) -> None:
    import torch
    n_gpus = torch.cuda.device_count()
    name = torch.cuda.get_device_name()
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    cfg = _model_config(args)
    for processes in sorted({1, n_gpus}):
        for impl in ("ours", "peer"):
            r = launch(impl, processes, 8, args)
            flops_per_token = 6 * r["params"] + 12 * cfg["n_layer"] * cfg["n_embd"] * args.seq
            mfu = flops_per_token * r["tokens_per_s"] / (peak * 1e12 * processes) if peak else None
            print(json.dumps({"impl": impl, "gpu": name, **r,
                              "mfu": round(mfu, 4) if mfu is not None else None, "peak_tflops": peak}))


def _machine() -> str:
    cpu_name = platform.processor() or "CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    return f"{cpu_name}, {os.cpu_count()} vCPU, torch {torch.__version__}, gloo"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true", help="GPT-2 small on CUDA: tokens/s and MFU")
    ap.add_argument("--batch", type=int, default=None, help="sequences per process per step (8 CPU, 16 GPU)")
    ap.add_argument("--seq", type=int, default=None, help="tokens per sequence (128 CPU, 1024 GPU)")
    ap.add_argument("--steps", type=int, default=30, help="measured steps")
    ap.add_argument("--warmup", type=int, default=5, help="steps left out of the measure")
    ap.add_argument("--rounds", type=int, default=2, help="CPU: times each configuration runs (alternating)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="GPU: peak dense bf16 TFLOP/s for MFU")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", choices=["ours", "peer"], default="ours", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.batch = args.batch or (16 if args.gpu else 8)
    args.seq = args.seq or (1024 if args.gpu else 128)
    if args.worker:
        worker(args)
    elif args.gpu:
        gpu(args)
    else:
        cpu(args)


if __name__ == "__main__":
    main()
