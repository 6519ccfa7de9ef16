"""Our Llama vs transformers' LlamaForCausalLM: training tokens/s and activation memory on the same weights and
batches, and generation tokens/s with our KV cache vs transformers' `generate` (greedy, same prompt).

Training uses a random Llama of SmolLM2-135M's width with fewer layers (so a CPU step takes seconds); generation
uses the real smollm2-135m when given its unpacked folder (`--model FOLDER`, written by
`llmfs.packaged.convert(SMOLLM2, FOLDER)`), else the same random model. Runs alternate ours / theirs in one process;
medians are reported.

    .venv/bin/python bench/llama_vs_transformers.py
    .venv/bin/python bench/llama_vs_transformers.py --model /tmp/smollm2 --new 64
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from gpt_vs_transformers import SavedBytes  # noqa: E402

from llmfs.llama import Llama, LlamaConfig, load_llama  # noqa: E402

SHAPE = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3,
             max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=True, rope_theta=100000.0)


def random_pair(layers: int):
    from transformers import LlamaConfig as HFConfig
    from transformers import LlamaForCausalLM
    torch.manual_seed(0)
    theirs = LlamaForCausalLM(HFConfig(**SHAPE, num_hidden_layers=layers))
    ours = Llama(LlamaConfig.from_hf(theirs.config.to_dict()))
    ours.load_state_dict(theirs.state_dict(), strict=False)
    ours.lm_head.weight = ours.model.embed_tokens.weight
    return ours, theirs


def train_step(model, opt, x, ours: bool, count: SavedBytes | None = None) -> float:
    t0 = time.perf_counter()
    with count.hooks() if count else contextlib.nullcontext():
        loss = model(x[:, :-1], x[:, 1:])[1] if ours else model(input_ids=x, labels=x).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def bench_training(layers: int, batch: int, seq: int, steps: int) -> dict:
    ours, theirs = random_pair(layers)
    models = {"llmfs Llama": (ours, True), "transformers LlamaForCausalLM": (theirs, False)}
    opts = {n: torch.optim.AdamW(m.parameters(), lr=1e-4) for n, (m, _) in models.items()}
    x = torch.randint(0, SHAPE["vocab_size"], (batch, seq + 1), generator=torch.Generator().manual_seed(0))
    out = {}
    for name, (m, is_ours) in models.items():
        counter = SavedBytes()
        train_step(m, opts[name], x, is_ours, counter)
        out[name] = {"saved_activation_bytes": counter.bytes, "times": []}
    for _ in range(steps):
        for name, (m, is_ours) in models.items():
            out[name]["times"].append(train_step(m, opts[name], x, is_ours))
    for v in out.values():
        v["median_step_s"] = statistics.median(v.pop("times"))
        v["tokens_per_s"] = batch * seq / v["median_step_s"]
    a, b = out["llmfs Llama"], out["transformers LlamaForCausalLM"]
    return {"layers": layers, "batch": batch, "seq": seq, "results": out,
            "speed_ratio_ours_over_theirs": a["tokens_per_s"] / b["tokens_per_s"],
            "activation_memory_ratio_ours_over_theirs": a["saved_activation_bytes"] / b["saved_activation_bytes"]}


def bench_generation(folder: str | None, layers: int, prompt_len: int, new: int, repeats: int) -> dict:
    if folder:
        from transformers import AutoModelForCausalLM
        ours, theirs = load_llama(folder), AutoModelForCausalLM.from_pretrained(folder).eval()
    else:
        ours, theirs = random_pair(layers)
    ours.eval(), theirs.eval()
    vocab = ours.config.vocab_size
    prompt = torch.randint(0, vocab, (1, prompt_len), generator=torch.Generator().manual_seed(1))
    times = {"llmfs Llama (KV cache)": [], "transformers generate": []}
    same = True
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            a = ours.generate(prompt, new, temperature=0)
            times["llmfs Llama (KV cache)"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = theirs.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)
            times["transformers generate"].append(time.perf_counter() - t0)
            same = same and a.tolist() == b.tolist()
    res = {k: {"median_s": statistics.median(v), "tokens_per_s": new / statistics.median(v)} for k, v in times.items()}
    return {"model": folder or f"random, {layers} layers", "prompt_tokens": prompt_len, "new_tokens": new,
            "same_tokens": same, "results": res,
            "speed_ratio_ours_over_theirs": res["llmfs Llama (KV cache)"]["tokens_per_s"]
            / res["transformers generate"]["tokens_per_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--model", default=None, help="a Llama folder for the generation figures (default: random)")
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    report = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, cpu",
              "torch": torch.__version__,
              "training": bench_training(args.layers, args.batch, args.seq, args.steps),
              "generation": bench_generation(args.model, args.layers, args.prompt, args.new, args.repeats)}
    t, g = report["training"], report["generation"]
    print(f"training: ours/theirs speed {t['speed_ratio_ours_over_theirs']:.2f}x, activation memory "
          f"{t['activation_memory_ratio_ours_over_theirs']:.2f}x", file=sys.stderr)
    for name, v in t["results"].items():
        print(f"  {name:<32} {v['tokens_per_s']:>8,.0f} tok/s  {v['saved_activation_bytes'] / 2**20:8.1f} MiB saved",
              file=sys.stderr)
    print(f"generation ({g['model']}): ours/theirs {g['speed_ratio_ours_over_theirs']:.2f}x, same tokens: "
          f"{g['same_tokens']}", file=sys.stderr)
    for name, v in g["results"].items():
        print(f"  {name:<32} {v['tokens_per_s']:>8,.1f} tok/s", file=sys.stderr)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
