"""Our GPT vs transformers' GPT2LMHeadModel: training tokens/s and memory on the same config, fp32 and bf16.

Both models get identical weights (ours converted from the HF model), the same batches and the same AdamW step.
Runs alternate (ours, theirs, ours, theirs ...) in one process so machine noise hits both alike; the median
step time is reported. Memory: on CUDA, torch.cuda.max_memory_allocated per step; everywhere, the bytes of
activations saved for backward (counted through autograd's saved-tensor hooks), which is what differs between
two implementations of the same architecture (weights, gradients and optimizer states are equal by construction).

    .venv/bin/python bench/gpt_vs_transformers.py                     # CPU defaults, ~1-2 minutes
    .venv/bin/python bench/gpt_vs_transformers.py --preset gpt2 --batch 8 --seq 1024 --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmfs.model import GPT, GPTConfig  # noqa: E402
from llmfs.weights import hf_to_ours  # noqa: E402


def build_pair(cfg: GPTConfig, device: str):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    theirs = GPT2LMHeadModel(GPT2Config(**cfg.to_hf_dict())).to(device)
    ours = GPT(cfg).to(device)
    ours.load_state_dict(hf_to_ours({k: v.detach().clone() for k, v in theirs.state_dict().items()}))
    ours.tie_weights()
    return ours, theirs


class SavedBytes:
    """Counts bytes of tensors autograd saves for backward during a forward pass."""

    def __init__(self):
        self.bytes = 0
        self._seen: set[int] = set()

    def pack(self, t: torch.Tensor):
        key = t.untyped_storage().data_ptr()
        if key not in self._seen:  # a storage saved twice costs memory once
            self._seen.add(key)
            self.bytes += t.untyped_storage().nbytes()
        return t

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)


def loss_of(model, x, y, is_ours: bool) -> torch.Tensor:
    if is_ours:
        return model(x, y)[1]
    return model(input_ids=x, labels=x).loss  # transformers' own loss path (it shifts the labels itself)


def step(model, opt, x, y, is_ours: bool, dtype: str, device: str, count: SavedBytes | None = None) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    autocast = (torch.autocast(device_type=device, dtype=torch.bfloat16) if dtype == "bf16"
                else contextlib.nullcontext())
    with autocast, (count.hooks() if count else contextlib.nullcontext()):
        loss = loss_of(model, x, y, is_ours)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench(cfg: GPTConfig, batch: int, seq: int, steps: int, dtype: str, device: str) -> dict:
    ours, theirs = build_pair(cfg, device)
    models = {"llmfs GPT": (ours, True), "transformers GPT2LMHeadModel": (theirs, False)}
    opts = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, (m, _) in models.items()}
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (batch, seq), generator=g).to(device)
    y = torch.randint(0, cfg.vocab_size, (batch, seq), generator=g).to(device)
    times = {name: [] for name in models}
    out = {}
    for name, (m, is_ours) in models.items():  # warm-up + memory measurement
        counter = SavedBytes()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        step(m, opts[name], x, y, is_ours, dtype, device, counter)
        out[name] = {"saved_activation_bytes": counter.bytes}
        if device == "cuda":
            out[name]["cuda_peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
    for _ in range(steps):
        for name, (m, is_ours) in models.items():
            times[name].append(step(m, opts[name], x, y, is_ours, dtype, device))
    for name in models:
        med = statistics.median(times[name])
        out[name].update(median_step_s=med, tokens_per_s=batch * seq / med)
    a, b = out["llmfs GPT"], out["transformers GPT2LMHeadModel"]
    return {"dtype": dtype, "results": out, "speed_ratio_ours_over_theirs": a["tokens_per_s"] / b["tokens_per_s"],
            "activation_memory_ratio_ours_over_theirs": a["saved_activation_bytes"] / b["saved_activation_bytes"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default=None, help="a GPTConfig preset (gpt2, ...); default: a 6-layer 256-wide model")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    cfg = (GPTConfig.preset(args.preset) if args.preset
           else GPTConfig(vocab_size=8192, n_positions=512, n_embd=256, n_layer=6, n_head=4))
    report = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                         f"{args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""),
              "torch": torch.__version__, "config": cfg.to_hf_dict() | {"batch": args.batch, "seq": args.seq},
              "runs": [bench(cfg, args.batch, args.seq, args.steps, d, args.device) for d in args.dtypes.split(",")]}
    for r in report["runs"]:
        print(f"{r['dtype']}: ours/theirs speed {r['speed_ratio_ours_over_theirs']:.2f}x, activation memory "
              f"{r['activation_memory_ratio_ours_over_theirs']:.2f}x", file=sys.stderr)
        for name, v in r["results"].items():
            print(f"  {name:<30} {v['tokens_per_s']:>10,.0f} tok/s  {v['saved_activation_bytes'] / 2**20:8.1f} MiB "
                  "saved activations", file=sys.stderr)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
