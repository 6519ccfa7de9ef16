"""llmfs.eval vs EleutherAI's lm-evaluation-harness: the same model folder, the same items, scores and items/s.

lm-eval runs its own task definitions (the task yamls shipped in the package, with only the dataset pointed at the
local samples in /work/shared/data/benchmarks or --bench-dir) through its Hugging Face backend, ``HFLM`` (fp32, as
ours; its default ``add_bos_token=None``: the tokenizer's own rule); llmfs runs ``llmfs.eval.runner.evaluate`` on
our model loaded from the same folder by ``llmfs.weights.load_model``: our GPT for GPT-2 folders, our Llama for
Llama / SmolLM2 / Qwen2 folders. Both get their tasks built before the clock
starts; the timed part is requests -> model -> scores. Runs alternate (ours, theirs) and the median is reported.

lm-eval is not a dependency of llmfs; install it for this bench only: ``.venv/bin/pip install lm-eval==0.4.13``.

    .venv/bin/python bench/eval_vs_lm_eval.py                   # llmfs-tiny (built on first use), CPU, ~5 min
    .venv/bin/python bench/eval_vs_lm_eval.py --model path/to/hf-gpt2-folder --limit 100 --device cuda
    LLMFS_HOME=/tmp/llmfs-shared .venv/bin/python bench/eval_vs_lm_eval.py --model smollm2-135m \
        --tasks hellaswag --limit 100 --repeats 1 --no-sharing-run 0 --model-calls-run 0  # our Llama, CPU, ~8 min

Measured 2026-11-28 on a shared 2-vCPU VM (load 2-7), CPU, 1 torch thread, batch 16, 3 alternating repeats, items/s
(lm-eval "calls" = HFLM.loglikelihood on requests already built; "e2e" = simple_evaluate on built tasks). Every
score equal to lm-eval's to the last digit shown; log-likelihoods within 6e-5 (4.9e-4 on whole WikiText articles).

    llmfs-tiny (window 256)     llmfs   no sharing   lm-eval calls   lm-eval e2e   scores (llmfs = lm-eval)
    hellaswag, 200              82.7    44.0         46.5            16.5          acc .305, acc_norm .245
    mmlu abstract_algebra, 20   47.3    51.6         39.7            2.6           acc .200 (5-shot)
    truthfulqa_mc1, 100         10.1    10.3         8.8             5.2           acc .230
    truthfulqa_mc2, 100         7.2     7.5          6.5             4.3           acc .5492
    wikitext, 13 articles       1.59    -            1.29            0.78          word ppl 341867, bpb 3.4359
    same shape, window 1024 (random weights)
    truthfulqa_mc2, 100         35.9    6.5          5.6             3.9           acc .5441
    hellaswag, 100              47.2    24.1         19.2            3.8           acc .260, acc_norm .230
    mmlu abstract_algebra, 20   7.5     6.6          4.9             1.4           acc .250

smollm2-135m through our Llama (2026-12-03, same machine, one run): every score equal to lm-eval's, log-likelihoods
within 6.1e-5; hellaswag 200 acc .340 / acc_norm .380 (llmfs 155 s, lm-eval 222 s), truthfulqa_mc2 40 acc .4975
(55 s vs 367 s), wikitext 3 articles word ppl 31.01; the full table is in BENCHMARKS.md.

Sharing the context pays where contexts are long against their continuations (HellaSwag 1.9x, TruthfulQA 5.5x
once its ~285-token preamble fits the window; with a 256-token window every TruthfulQA row is truncated, which
rules sharing out). MMLU's one-token answers already share one row on both sides.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_BENCH_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks"
TASKS = ("hellaswag", "mmlu", "truthfulqa_mc1", "truthfulqa_mc2", "wikitext")


# -- lm-eval's own tasks on local files ---------------------------------------------------------------------------
def lm_eval_spec(task: str, files: dict[str, str], **overrides) -> dict:
    """lm-eval's config for ``task`` (its shipped yaml, includes and !function resolved) reading local files."""
    import lm_eval
    from lm_eval.tasks._yaml_loader import load_yaml

    root = Path(lm_eval.__file__).parent / "tasks"
    yaml_path = {"hellaswag": "hellaswag/hellaswag.yaml", "truthfulqa_mc1": "truthfulqa/truthfulqa_mc1.yaml",
                 "truthfulqa_mc2": "truthfulqa/truthfulqa_mc2.yaml", "wikitext": "wikitext/wikitext.yaml",
                 }.get(task) or f"mmlu/default/{task}.yaml"
    cfg = load_yaml(root / yaml_path)
    cfg.update({"dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": files}})
    for split in ("training_split", "validation_split", "test_split", "fewshot_split"):
        if cfg.get(split) and cfg[split] not in files:
            cfg[split] = None
    cfg.pop("tag", None)
    cfg.update(overrides)
    return cfg


def mmlu_files(bench_file: Path, subject: str, out_dir: Path) -> dict[str, str]:
    """cais/mmlu-shaped test and dev files of one subject, cut from the combined sample."""
    rows = [json.loads(line) for line in bench_file.read_text().splitlines() if line.strip()]
    files = {}
    for split in ("test", "dev"):
        path = out_dir / f"mmlu_{subject}_{split}.jsonl"
        path.write_text("".join(json.dumps({k: r[k] for k in ("question", "subject", "choices", "answer")}) + "\n"
                                for r in rows if r["subject"] == subject and r["split"] == split))
        files[split] = str(path)
    return files


def wikitext_file(bench_file: Path, out_dir: Path, n_docs: int | None = None) -> str:
    """The WikiText sample as EleutherAI/wikitext_document_level rows (``{"page": ...}``, one per article)."""
    from llmfs.eval.tasks.text import split_wikitext_articles
    pages = split_wikitext_articles(bench_file.read_text(encoding="utf-8"))[:n_docs]
    path = out_dir / "wikitext_pages.jsonl"
    path.write_text("".join(json.dumps({"page": p}) + "\n" for p in pages))
    return str(path)


def build_lm_eval_tasks(specs: list[dict]):
    from lm_eval.tasks import TaskManager
    return TaskManager().load(specs)["tasks"]


def run_lm_eval(lm, tasks, limit: int | None) -> dict:
    """lm-eval's results and per-sample records (``log_samples``) for already built tasks."""
    import lm_eval
    # bootstrap_iters > 0 turns standard errors on; acc's is closed-form (mean_stderr), none of these bootstraps
    return lm_eval.simple_evaluate(model=lm, tasks=list(tasks.values()), limit=limit, log_samples=True,
                                   bootstrap_iters=1000, verbosity="ERROR")


def time_lm_eval_model_calls(lm, tasks) -> float:
    """Seconds lm-eval's HFLM spends on the requests a finished run built (its model calls alone)."""
    instances = [inst for t in tasks.values() for inst in t.instances]
    t0 = time.perf_counter()
    if instances[0].request_type == "loglikelihood_rolling":
        lm.loglikelihood_rolling(instances, disable_tqdm=True)
    else:
        lm.loglikelihood(instances, disable_tqdm=True)
    return time.perf_counter() - t0


def lm_eval_logliks(results: dict, task: str) -> list:
    """Per-document log-likelihoods in document order (a list per multiple-choice doc, a float per rolling doc)."""
    samples = sorted(results["samples"][task], key=lambda s: s["doc_id"])
    return [[r[0] for r in s["filtered_resps"]] if isinstance(s["filtered_resps"][0], (list, tuple))
            else s["filtered_resps"][0] for s in samples]


# -- the comparison -----------------------------------------------------------------------------------------------
def model_folder(source: str) -> Path:
    """The Hugging Face folder both sides load: a built-in name's (llmfs-tiny is built, smollm2-135m unpacked, on
    first use) or the folder given."""
    from llmfs.sources import is_builtin, resolve_model_dir
    if is_builtin(source):
        if source == "llmfs-tiny":
            from llmfs.bootstrap import ensure_default
            return ensure_default().model_dir
        return resolve_model_dir(source)
    return Path(source).expanduser()


def our_config(task: str, data: str, limit: int, batch_size: int, num_fewshot: int = 0):
    from llmfs.config import EvalConfig
    return EvalConfig(task="perplexity" if task == "wikitext" else task, data=data, limit=limit,
                      batch_size=batch_size, num_fewshot=num_fewshot)


def our_logliks(results: dict) -> list:
    return [r["logliks"] if "logliks" in r else r["loglik"] for r in results["items"]]


def max_abs_delta(a: list, b: list) -> float:
    flat = lambda xs: [y for x in xs for y in (x if isinstance(x, list) else [x])]  # noqa: E731
    fa, fb = flat(a), flat(b)
    assert len(fa) == len(fb), (len(fa), len(fb))
    return max(abs(x - y) for x, y in zip(fa, fb))


METRIC_NAMES = {"wikitext": ("word_perplexity", "byte_perplexity", "bits_per_byte")}


def compare(task: str, ours: dict, theirs: dict, lm_task: str) -> dict:
    names = METRIC_NAMES.get(task) or tuple(k for k in ours["metrics"] if not k.endswith("_stderr")
                                            and k in ("acc", "acc_norm"))
    row = {"metrics": {}}
    for n in names:
        row["metrics"][n] = {"llmfs": ours["metrics"][n], "lm_eval": theirs["results"][lm_task][f"{n},none"]}
        se = ours["metrics"].get(f"{n}_stderr")
        their_se = theirs["results"][lm_task].get(f"{n}_stderr,none")
        if se is not None and isinstance(their_se, float):
            row["metrics"][n].update(llmfs_stderr=se, lm_eval_stderr=their_se)
    row["max_abs_loglik_delta"] = max_abs_delta(our_logliks(ours), lm_eval_logliks(theirs, lm_task))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None,
                    help="A Hugging Face GPT-2 or Llama-family folder, or a built-in name (llmfs-tiny, smollm2-135m); "
                         "default llmfs-tiny.")
    ap.add_argument("--bench-dir", default=str(DEFAULT_BENCH_DIR))
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--limit", type=int, default=50, help="Items per task (MMLU: per subject; wikitext: articles).")
    ap.add_argument("--mmlu-subject", default="high_school_us_history")
    ap.add_argument("--num-fewshot", type=int, default=5, help="MMLU shots.")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-sharing-run", type=int, default=1,
                    help="1: also time ours with shared contexts off (0 saves a run: a 135M model on a CPU is slow).")
    ap.add_argument("--model-calls-run", type=int, default=1,
                    help="1: also time lm-eval's model calls alone, on the requests its run built.")
    ap.add_argument("--warmup-items", type=int, default=8,
                    help="Items each side scores once before the clock starts (first calls allocate, pick kernels).")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads for both sides. 1 by default: on a shared 2-core machine, OpenMP "
                         "threads that wait on each other made every small op ~10x slower (measured here).")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch
    from lm_eval.models.huggingface import HFLM

    torch.set_num_threads(args.threads)
    from llmfs.eval.runner import evaluate
    from llmfs.eval.tasks import load_task
    from llmfs.weights import load_model

    name = args.model or "llmfs-tiny"
    folder = model_folder(name)
    bench, tmp = Path(args.bench_dir), Path(tempfile.mkdtemp(prefix="eval-bench-"))
    model, tokenizer = load_model(str(folder))
    model.to(args.device).eval()
    lm = HFLM(pretrained=str(folder), batch_size=args.batch_size, device=args.device, dtype=torch.float32)
    report = {"model": name, "folder": str(folder), "our_model": type(model).__name__, "device": args.device,
              "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
              "batch_size": args.batch_size, "tasks": {}}
    for task in args.tasks.split(","):
        if task == "mmlu":
            lm_task = f"mmlu_{args.mmlu_subject}"
            files = mmlu_files(bench / "mmlu_sample.jsonl", args.mmlu_subject, tmp)
            spec = lm_eval_spec(lm_task, files, num_fewshot=args.num_fewshot)
            cfg = our_config("mmlu", files["test"], args.limit, args.batch_size, args.num_fewshot)
            # our mmlu loader wants the split per row: give it the subject's rows with their split
            rows = [{**json.loads(line), "split": s} for s in ("test", "dev")
                    for line in Path(files[s]).read_text().splitlines()]
            merged = tmp / "mmlu_subject.jsonl"
            merged.write_text("".join(json.dumps(r) + "\n" for r in rows))
            cfg = cfg.replace(data=str(merged))
        elif task == "wikitext":
            lm_task, data = task, wikitext_file(bench / "wikitext2_test_sample.txt", tmp)
            spec = lm_eval_spec(task, {"test": data})
            cfg = our_config(task, data, args.limit, args.batch_size)
        else:
            lm_task = task
            data = str(bench / ("hellaswag_val_200.jsonl" if task == "hellaswag" else "truthfulqa_mc_100.jsonl"))
            spec = lm_eval_spec(task, {"validation": data})
            cfg = our_config(task, data, args.limit, args.batch_size)
        ours_task, their_tasks = load_task(cfg), build_lm_eval_tasks([spec])
        times = {"llmfs": [], "llmfs_no_sharing": [], "lm_eval": [], "lm_eval_model_calls": []}
        if args.warmup_items:  # first calls allocate and pick kernels; a few items are enough
            few = dataclasses.replace(ours_task, items=ours_task.items[: args.warmup_items])
            evaluate(model, tokenizer, cfg, task=few)
            run_lm_eval(lm, build_lm_eval_tasks([spec]), min(args.limit, args.warmup_items))
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ours = evaluate(model, tokenizer, cfg, task=ours_task)
            times["llmfs"].append(time.perf_counter() - t0)
            if ours_task.kind == "multiple_choice" and args.no_sharing_run:
                t0 = time.perf_counter()
                evaluate(model, tokenizer, cfg, task=ours_task, share_context=False)
                times["llmfs_no_sharing"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            theirs = run_lm_eval(lm, their_tasks, args.limit)
            times["lm_eval"].append(time.perf_counter() - t0)
            if args.model_calls_run:
                times["lm_eval_model_calls"].append(time_lm_eval_model_calls(lm, their_tasks))
        n = ours["n_items"]
        row = {"items": n, **compare(task, ours, theirs, lm_task)}
        for k, ts in times.items():
            if ts:
                row[f"{k}_seconds"] = round(statistics.median(ts), 1)
                row[f"{k}_items_per_s"] = round(n / statistics.median(ts), 2)
        if times["lm_eval"]:
            theirs_s, ours_s = statistics.median(times["lm_eval"]), statistics.median(times["llmfs"])
            row["speedup_vs_lm_eval"] = round(theirs_s / ours_s, 2)
        report["tasks"][task] = row
        print(f"{task:>15}: {n} items | llmfs {row['llmfs_items_per_s']}/s ({row['llmfs_seconds']} s)"
              + (f" (no sharing {row['llmfs_no_sharing_items_per_s']}/s)" if times["llmfs_no_sharing"] else "")
              + f" | lm-eval {row['lm_eval_items_per_s']}/s ({row['lm_eval_seconds']} s)"
              + (f" (model calls alone {row['lm_eval_model_calls_items_per_s']}/s)"
                 if times["lm_eval_model_calls"] else "")
              + f" | max |d loglik| {row['max_abs_loglik_delta']:.2e} | "
              + ", ".join(f"{m} {v['llmfs']:.4f} vs {v['lm_eval']:.4f}" for m, v in row["metrics"].items()),
              file=sys.stderr)
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
