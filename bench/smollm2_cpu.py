"""What a 135M model costs on this machine: seconds per training step (full fine-tune, LoRA, QLoRA) through the lab's
own builder and training loop, and generation tokens/s (our Llama's KV cache vs transformers' `generate`), next to
`llmfs.timing`'s estimate for the same settings. The ratios measured / FLOP-count time are what `llmfs.timing.
EFFICIENCY` holds; the settings the pages propose for smollm2-135m come from these figures (BENCHMARKS.md).

    LLMFS_HOME=/tmp/llmfs-shared .venv/bin/python bench/smollm2_cpu.py            # smollm2-135m (unpacked once)
    .venv/bin/python bench/smollm2_cpu.py --steps 3 --modes lora --batch 4 --seq 128
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmfs import builders, timing  # noqa: E402
from llmfs.config import TrainConfig  # noqa: E402
from llmfs.sources import resolve_model_dir  # noqa: E402
from llmfs.train import RandomWindows, train  # noqa: E402

MODES = {"full": {}, "lora": {"lora_rank": 8, "lora_targets": "qkv"},
         "qlora": {"lora_rank": 8, "lora_targets": "qkv", "quantize": "4bit"}}


class Ctx:
    def log(self, message):
        pass

    def emit(self, *a, **k):
        pass


class Times:
    """Wall time between training records: the per-step times the loop itself reports."""

    def __init__(self):
        self.stamps = []

    def emit(self, step, kind="train", **metrics):
        if kind == "train":
            self.stamps.append(time.perf_counter())


def step_seconds(model: str, mode: str, steps: int, batch: int, seq: int) -> tuple[float, timing.TimeEstimate]:
    cfg = TrainConfig(model=model, steps=steps + 1, batch_size=batch, seq_len=seq, eval_every=0, eval_batches=1,
                      checkpoint_every=0, warmup_steps=1, device="cpu", save_model=False, **MODES[mode])
    built = builders.build_model(Ctx(), cfg)
    tokens = torch.randint(0, built.model.config.vocab_size, (batch * (seq + 1) * (steps + 2),))
    sink = Times()
    train(built.model, RandomWindows(tokens, batch, seq), cfg, sink=sink, device="cpu", freeze_plan=built.plan)
    gaps = [b - a for a, b in zip(sink.stamps, sink.stamps[1:])]  # the first step (warm-up) is not counted
    estimate = timing.estimate_train(cfg, resolve_model_dir(model))
    return statistics.median(gaps), estimate


def generation(model: str, new: int) -> dict:
    from transformers import AutoModelForCausalLM

    from llmfs.weights import load_pretrained
    ours, tok = load_pretrained(model)
    ref = AutoModelForCausalLM.from_pretrained(resolve_model_dir(model), dtype=torch.float32).eval()
    question = "What is the capital of France?"
    if tok.chat_template:
        question = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           tokenize=False)
    ids = torch.tensor([tok(question, add_special_tokens=False)["input_ids"]])
    out = {}
    for name, fn in (("ours", lambda: ours.generate(ids, new, temperature=0)),
                     ("transformers", lambda: ref.generate(ids, max_new_tokens=new, min_new_tokens=new,
                                                           do_sample=False, pad_token_id=tok.eos_token_id))):
        fn()  # warm-up
        t0 = time.perf_counter()
        seq = fn()
        out[name] = {"tokens_per_s": (seq.shape[1] - ids.shape[1]) / (time.perf_counter() - t0),
                     "text": tok.decode(seq[0, ids.shape[1]:], skip_special_tokens=True)[:80]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--modes", default="full,lora,qlora")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--new", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)
    rate = timing.matmul_rate("cpu")
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, matmul "
          f"{rate / 1e9:.1f} GFLOP/s")
    rows = []
    for mode in args.modes.split(","):
        measured, est = step_seconds(args.model, mode, args.steps, args.batch, args.seq)
        flop_time = est.flops_per_step / rate
        rows.append({"mode": mode, "s_per_step": round(measured, 2), "estimated_s_per_step":
                     round(est.seconds_per_step, 2), "efficiency": round(flop_time / measured, 3),
                     "tokens_per_s": round(args.batch * args.seq / measured)})
        print(json.dumps(rows[-1]))
    gen = generation(args.model, args.new)
    print(json.dumps(gen))
    print(json.dumps({"model": args.model, "batch": args.batch, "seq": args.seq, "rows": rows,
                      "generation": {k: round(v["tokens_per_s"], 1) for k, v in gen.items()}}))


if __name__ == "__main__":
    main()
