"""Our LoRA (llmfs.lora) vs Hugging Face PEFT: training-step time and peak memory on the same model, data and
LoRA settings; and full fine-tune vs LoRA vs QLoRA against `llmfs.memory.compare`'s estimates.

Table 1 (ours vs PEFT). One GPT-2-shaped base with random weights, identical on both sides: transformers'
GPT2LMHeadModel for PEFT, and our GPT loaded from its state dict (`llmfs.weights.hf_to_ours`). Ours puts adapters
on with `llmfs.lora.add_adapter` + `mark_trainable`; PEFT with `get_peft_model(LoraConfig(target_modules=
llmfs.lora.target_modules(...), fan_in_fan_out=True))` (GPT-2's Conv1D layers). Both get the same A matrices (B
starts at zero), the same random token batches (fixed seed), the same loss (cross-entropy over all positions) and
the same AdamW step over the adapter parameters, so their losses must agree step by step: the table shows the
largest difference, as proof that both sides did the same work. A third column puts PEFT's LoRA layers on *our*
GPT, which separates the LoRA layers' cost from the base models' (our GPT vs transformers' GPT-2).
Runs are interleaved (ours, PEFT, PEFT-on-ours, ours, ...) so machine load hits every side alike; the median step
time over --steps timed steps (after warm-up) is reported.

Table 2 (fine-tuning methods, our GPT): full fine-tune (every weight trains), LoRA and QLoRA (the base's linear
layers in 4-bit NF4 through `llmfs.lora.quantize_4bit`, bitsandbytes), interleaved the same way, next to
`llmfs.memory.compare(...)` for the same model, batch and sequence length.

Memory, one measure: on CUDA, `torch.cuda.max_memory_allocated` over the training steps. On a CPU, the peak
resident set size (RSS, psutil, sampled every millisecond by a thread) during three training steps minus the RSS
just before the model was built, each variant in a fresh Python process (a process's allocator keeps freed memory,
so measuring several variants in one process would charge one with another's leftovers). Freed heap is returned
with malloc_trim before the steps start. It includes weights, gradients, optimizer states, activations and
allocator slack; it is what the operating system sees, not a count of tensors.

    .venv/bin/python bench/lora_vs_peft.py            # CPU defaults: a few minutes on 2 cores
    .venv/bin/python bench/lora_vs_peft.py --quick    # a smoke run (~1.5 minutes)
    .venv/bin/python bench/lora_vs_peft.py --threads 1 # steadier on a shared machine (BENCHMARKS.md uses it)
    .venv/bin/python bench/lora_vs_peft.py --device cuda --batch 16 --seq 256
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmfs import lora  # noqa: E402  (import llmfs first: it quiets bitsandbytes' offline warning)
from llmfs.model import GPT, GPTConfig  # noqa: E402
from llmfs.weights import hf_to_ours  # noqa: E402

RANK, ALPHA = 8, 16.0
CONFIG = dict(vocab_size=8192, n_positions=256, n_embd=384, n_layer=6, n_head=6)  # dropout 0 on every side
SETTINGS = ("qkv", "all-linear")
SIDES = ("ours", "peft", "peft_on_ours")
METHODS = ("full", "lora", "qlora")
LR = 1e-3


# -- models -------------------------------------------------------------------------------------------------------
def hf_base(cfg: GPTConfig, device: str):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(**cfg.to_hf_dict())).to(device)


def ours_from(hf, cfg: GPTConfig, device: str) -> GPT:
    with torch.device("meta"):
        model = GPT(cfg)
    model.load_state_dict(hf_to_ours({k: v.detach().clone() for k, v in hf.state_dict().items()}), assign=True)
    model.tie_weights()
    return model.to(device)


def build_side(side: str, targets: str, cfg: GPTConfig, device: str, seed_a: int = 1):
    """(model, uses_our_forward) with LoRA adapters on `targets`, only the adapters trainable, A drawn from a
    fixed seed and identical across sides."""
    from peft import LoraConfig, get_peft_model
    hf = hf_base(cfg, device)
    suffixes = lora.target_modules(targets, "gpt2")
    if side == "peft":
        model = get_peft_model(hf, LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=suffixes,
                                              fan_in_fan_out=True, bias="none"))
        ours_forward = False
    else:
        model = ours_from(hf, cfg, device)
        del hf
        if side == "ours":
            lora.add_adapter(model, "default", rank=RANK, alpha=ALPHA, targets=targets, seed=seed_a)
            lora.mark_trainable(model, "default")
        else:  # PEFT's LoRA layers on our GPT (nn.Linear, so no fan_in_fan_out)
            model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0,
                                                     target_modules=suffixes, bias="none"))
        ours_forward = True
    _same_a(model, cfg, targets, device, seed_a)
    model.train()
    return model, ours_forward


def _same_a(model, cfg: GPTConfig, targets: str, device: str, seed: int) -> None:
    """Give every side the A matrices ours draws (B is zero everywhere), so their losses can be compared."""
    ref = GPT(GPTConfig(**CONFIG))  # shapes only; the same module order and names as every side
    lora.add_adapter(ref, "default", rank=RANK, alpha=ALPHA, targets=targets, seed=seed)
    a = {name: layer.lora_A["default"].weight for name, layer in lora.lora_layers(ref).items()}
    done = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_A." in name:
                module = name.split(".lora_A.")[0].removeprefix("base_model.model.")
                p.copy_(a[module].to(device))
                done += 1
    assert done == len(a), (done, len(a))


def build_method(method: str, cfg: GPTConfig, device: str):
    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    if method == "qlora":
        lora.quantize_4bit(model, double_quant=True, device=device)
    if method != "full":
        lora.add_adapter(model, "default", rank=RANK, alpha=ALPHA, targets="qkv", seed=1)
        lora.mark_trainable(model, "default")
    return model.train(), True


def optimizer_for(model) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.0)


def trainable_params(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# -- one step ------------------------------------------------------------------------------------------------------
def step(model, ours_forward: bool, opt, x, y, device: str) -> tuple[float, float]:
    """forward + backward + AdamW; returns (seconds, loss)."""
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    if ours_forward:
        loss = model(x, y)[1]
    else:  # the same loss as ours: cross-entropy over every position against the same targets
        logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, loss.item()


def batches(n: int, batch: int, seq: int, vocab: int, device: str):
    g = torch.Generator().manual_seed(1234)
    out = []
    for _ in range(n):
        t = torch.randint(0, vocab, (batch, seq + 1), generator=g)
        out.append((t[:, :-1].to(device), t[:, 1:].to(device)))
    return out


def interleaved(builders: dict, args, device: str) -> dict:
    """Build every variant, then step them in turn (a, b, c, a, b, c, ...) on the same batches."""
    cfg = GPTConfig(**CONFIG)
    data = batches(args.warmup + args.steps, args.batch, args.seq, cfg.vocab_size, device)
    built = {name: make() for name, make in builders.items()}
    opts = {name: optimizer_for(m) for name, (m, _) in built.items()}
    times = {name: [] for name in built}
    losses = {name: [] for name in built}
    for i, (x, y) in enumerate(data):
        for name, (model, ours_forward) in built.items():
            dt, loss = step(model, ours_forward, opts[name], x, y, device)
            losses[name].append(loss)
            if i >= args.warmup:
                times[name].append(dt)
    return {name: {"median_step_s": statistics.median(times[name]), "min_step_s": min(times[name]),
                   "step_times_s": [round(t, 4) for t in times[name]], "losses": losses[name],
                   "trainable_params": trainable_params(built[name][0])} for name in built}


# -- memory (one fresh process per variant) ----------------------------------------------------------------------
def _rss() -> int:
    import psutil
    return psutil.Process().memory_info().rss


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


class PeakRSS:
    """Samples the process's RSS every `interval` seconds in a thread; `.peak` is the largest seen."""

    def __init__(self, interval: float = 0.001):
        self.interval, self.peak = interval, _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def measure_memory(spec: dict) -> dict:
    """Run in a fresh process: peak memory of 3 training steps of one variant (see the module docstring)."""
    device = spec["device"]
    cfg = GPTConfig(**CONFIG)
    data = batches(3, spec["batch"], spec["seq"], cfg.vocab_size, device)
    import peft  # noqa: F401  (imports outside the measured window)
    import transformers  # noqa: F401
    _trim()
    baseline = _rss()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        cuda_baseline = torch.cuda.memory_allocated()
    if spec["kind"] == "side":
        model, ours_forward = build_side(spec["name"], spec["targets"], cfg, device)
    else:
        model, ours_forward = build_method(spec["name"], cfg, device)
    opt = optimizer_for(model)
    _trim()
    after_build = _rss()
    with PeakRSS() as peak:
        for x, y in data:
            step(model, ours_forward, opt, x, y, device)
    out = {"peak_rss_delta_bytes": peak.peak - baseline, "model_rss_delta_bytes": after_build - baseline,
           "baseline_rss_bytes": baseline}
    if device == "cuda":
        out["cuda_peak_allocated_bytes"] = torch.cuda.max_memory_allocated() - cuda_baseline
    out["peak_bytes"] = out.get("cuda_peak_allocated_bytes", out["peak_rss_delta_bytes"])
    return out


def memory_in_subprocess(spec: dict) -> dict:
    cmd = [sys.executable, __file__, "--_memory", json.dumps(spec)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"memory run {spec} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# -- report -------------------------------------------------------------------------------------------------------
def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def machine(device: str) -> str:
    from llmfs.telemetry import describe_machine
    d = describe_machine()
    cpu = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    text = (f"{cpu}, {d['cpu_count']} CPUs, {torch.get_num_threads()} torch threads, "
            f"{(d.get('system_total_bytes') or 0) / 1e9:.0f} GB RAM, {device}")
    if device == "cuda":
        text += f" ({torch.cuda.get_device_name()})"
    return text + f", torch {d['torch']}, Python {d['python']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="timed steps per variant (after warm-up)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0: torch's default). On a shared machine 1 is steadier: with 2 threads "
                         "on 2 busy cores every parallel region waits for a descheduled thread.")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 3 timed steps, batch 4 x 64, one setting")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory runs (one process per variant)")
    ap.add_argument("--_memory", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._memory:
        spec = json.loads(args._memory)
        if spec.get("threads"):
            torch.set_num_threads(spec["threads"])
        print(json.dumps(measure_memory(spec)))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.warmup, args.batch, args.seq = 3, 1, 4, 64
    settings = SETTINGS[:1] if args.quick else SETTINGS
    cfg = GPTConfig(**CONFIG)
    load = os.getloadavg()
    started = time.time()
    report = {"machine": machine(args.device), "load_before": [round(v, 2) for v in load],
              "config": CONFIG | {"batch": args.batch, "seq": args.seq, "rank": RANK, "alpha": ALPHA},
              "steps": args.steps, "warmup": args.warmup, "command": " ".join([".venv/bin/python", *sys.argv]),
              "lora_vs_peft": {}, "methods": {}}

    for targets in settings:
        print(f"[{targets}] timing ours / PEFT / PEFT on our GPT ...", file=sys.stderr, flush=True)
        res = interleaved({side: (lambda s=side: build_side(s, targets, cfg, args.device)) for side in SIDES},
                          args, args.device)
        ref = res["ours"]["losses"]
        for side in SIDES:
            res[side]["max_abs_loss_delta_vs_ours"] = max(abs(a - b) for a, b in zip(ref, res[side]["losses"]))
        if not args.no_memory:
            for side in SIDES:
                print(f"[{targets}] memory of {side} (fresh process) ...", file=sys.stderr, flush=True)
                res[side]["memory"] = memory_in_subprocess({"kind": "side", "name": side, "targets": targets,
                                                            "device": args.device, "batch": args.batch,
                                                            "seq": args.seq, "threads": args.threads})
        report["lora_vs_peft"][targets] = res

    from llmfs.memory import compare
    print("[methods] timing full / LoRA / QLoRA ...", file=sys.stderr, flush=True)
    res = interleaved({m: (lambda m=m: build_method(m, cfg, args.device)) for m in METHODS}, args, args.device)
    estimates = compare(cfg, rank=RANK, targets="qkv", batch_size=args.batch, seq_len=args.seq, precision="fp32")
    for m in METHODS:
        res[m]["estimate"] = {k: v for k, v in vars(estimates[m]).items() if k.endswith(("_bytes", "_params"))}
        if not args.no_memory:
            print(f"[methods] memory of {m} (fresh process) ...", file=sys.stderr, flush=True)
            res[m]["memory"] = memory_in_subprocess({"kind": "method", "name": m, "device": args.device,
                                                     "batch": args.batch, "seq": args.seq,
                                                     "threads": args.threads})
    report["methods"] = res
    report["load_after"] = [round(v, 2) for v in os.getloadavg()]
    report["seconds"] = round(time.time() - started, 1)
    print_tables(report, args)
    print(json.dumps(report, default=float))


def print_tables(report: dict, args) -> None:
    mem_name = "CUDA peak allocated" if args.device == "cuda" else "peak RSS above pre-model baseline"
    p = lambda *a: print(*a, file=sys.stderr)  # noqa: E731
    p(f"\nMachine: {report['machine']}; load {report['load_before']} -> {report['load_after']}; "
      f"{report['seconds']:.0f} s")
    p(f"Model: GPT-2 shape, {CONFIG['n_layer']} layers, {CONFIG['n_embd']} wide, {CONFIG['n_head']} heads, vocab "
      f"{CONFIG['vocab_size']}; batch {args.batch} x {args.seq} tokens; LoRA r={RANK}, alpha={ALPHA:g}; fp32; "
      f"median of {args.steps} steps after {args.warmup} warm-up, interleaved\n")
    p("| targets | adapter params | ours ms/step | PEFT ms/step | **speed ours/PEFT** | PEFT on our GPT ms/step | "
      "speed ours/PEFT-on-our-GPT | ours memory | PEFT memory | max abs loss diff |")
    p("|---|---|---|---|---|---|---|---|---|---|")
    def mem(side: dict) -> str:
        return mib(side["memory"]["peak_bytes"]) if "memory" in side else "-"

    for targets, r in report["lora_vs_peft"].items():
        o, q, po = r["ours"], r["peft"], r["peft_on_ours"]
        p(f"| {targets} | {o['trainable_params']:,} | {o['median_step_s'] * 1e3:,.0f} | "
          f"{q['median_step_s'] * 1e3:,.0f} | **{q['median_step_s'] / o['median_step_s']:.2f}x** | "
          f"{po['median_step_s'] * 1e3:,.0f} | {po['median_step_s'] / o['median_step_s']:.2f}x | {mem(o)} | {mem(q)} | "
          f"{max(q['max_abs_loss_delta_vs_ours'], po['max_abs_loss_delta_vs_ours']):.1e} |")
    p(f"\nspeed ours/PEFT = PEFT's median step time / ours (above 1: ours is faster). Memory: {mem_name}. "
      "Loss diff: largest |loss ours - loss PEFT| over all steps (same A, same batches: the same computation).\n")
    p("| method | trainable params | ms/step | measured memory | estimate (memory.compare) | estimate: weights / "
      "grads / optimizer / activations |")
    p("|---|---|---|---|---|---|")
    for m, r in report["methods"].items():
        e = r["estimate"]
        p(f"| {m} | {r['trainable_params']:,} | {r['median_step_s'] * 1e3:,.0f} | "
          f"{mib(r['memory']['peak_bytes']) if 'memory' in r else '-'} | {mib(e['total_bytes'])} | "
          f"{mib(e['weights_bytes'])} / {mib(e['gradients_bytes'])} / {mib(e['optimizer_bytes'])} / "
          f"{mib(e['activations_bytes'])} |")
    p("\nThe qlora row runs with fp32 compute and fp32 embeddings / norms / head (quantize_4bit's default on a CPU), "
      "as memory.compare's estimate at precision fp32 counts them.")


if __name__ == "__main__":
    main()
