"""The one memory estimate (`llmfs.memory.estimate_run`) against the tensor bytes real runs hold, per precision mode
and method, on llmfs-tiny's shape.

Each case trains a few steps through the real loop (`llmfs.train.train`, the model prepared as `llmfs.recipes`
prepares it: 4-bit base first, then the adapters), which counts its own tensors (`llmfs.tensor_memory`: weights,
gradients and AdamW states after the optimizer step; activations through autograd's saved-tensor hooks). The
table sets the estimate beside the largest count; `ratio` = estimate / measured.

    .venv/bin/python bench/memory_estimate.py                    # CPU, ~1 minute
    .venv/bin/python bench/memory_estimate.py --device cuda --batch 8 --seq 256
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmfs import lora  # noqa: E402
from llmfs.config import TrainConfig  # noqa: E402
from llmfs.memory import estimate_run, fmt_bytes  # noqa: E402
from llmfs.model import GPT, TINY_CONFIG  # noqa: E402
from llmfs.precision import PRECISIONS, plan_precision  # noqa: E402
from llmfs.tensor_memory import PARTS  # noqa: E402
from llmfs.train import RandomWindows, train  # noqa: E402

METHODS = {"full": {}, "freeze_bottom (2 of 4 blocks)": {"freeze": "freeze_bottom", "freeze_layers": 2},
           "LoRA r=8 qkv": {"lora_rank": 8, "lora_targets": "qkv"},
           "QLoRA r=8 qkv": {"lora_rank": 8, "lora_targets": "qkv", "quantize": "4bit"}}


def run_case(mode: str, method: str, args) -> dict:
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch, seq_len=args.seq, lr=1e-3, warmup_steps=1,
                      eval_every=0, checkpoint_every=0, device=args.device, precision=mode, **METHODS[method])
    torch.manual_seed(0)
    model = GPT(TINY_CONFIG)
    if cfg.quantize == "4bit":
        lora.quantize_4bit(model, double_quant=cfg.double_quant, device=args.device,
                           compute_dtype=plan_precision(mode, args.device).compute_dtype)
    if cfg.lora:
        lora.add_adapter(model, "default", rank=cfg.lora_rank, alpha=16.0, targets=cfg.lora_targets, seed=0)
        lora.mark_trainable(model, "default")
    tokens = torch.randint(0, TINY_CONFIG.vocab_size, (20_000,), generator=torch.Generator().manual_seed(0))
    measured = train(model, RandomWindows(tokens, args.batch, args.seq, seed=0), cfg).tensor_memory
    est = estimate_run(TINY_CONFIG, cfg).to_dict()
    return {"mode": mode, "method": method, "estimate": {p: est[p] for p in PARTS}, "measured": measured}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()
    rows = []
    for mode in PRECISIONS:
        for method in METHODS:
            if "4bit" in METHODS[method].values() and mode == "bf16-pure":
                continue  # TrainConfig refuses a 4-bit base in pure bf16
            print(f"{mode} / {method} ...", file=sys.stderr, flush=True)
            rows.append(run_case(mode, method, args))
    print(f"\nllmfs-tiny ({TINY_CONFIG.n_layer} layers, {TINY_CONFIG.n_embd} wide, vocabulary "
          f"{TINY_CONFIG.vocab_size}), batch {args.batch} x {args.seq} tokens, AdamW, {args.device}, "
          f"torch {torch.__version__}\n", file=sys.stderr)
    print("| mode | method | estimate | measured | ratio | weights | gradients | optimizer states | activations |",
          file=sys.stderr)
    print("|---|---|---|---|---|---|---|---|---|", file=sys.stderr)
    for r in rows:
        est, got = r["estimate"], r["measured"]
        parts = " | ".join(f"{est[p] / got[p]:.3f}" if got[p] else "-" for p in PARTS)
        print(f"| {r['mode']} | {r['method']} | {fmt_bytes(sum(est.values()))} | {fmt_bytes(sum(got.values()))} | "
              f"{sum(est.values()) / sum(got.values()):.3f} | {parts} |", file=sys.stderr)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
