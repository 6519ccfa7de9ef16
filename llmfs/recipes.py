"""Recipes: the jobs the runner knows, each turning a config into model + data + loop (torchtune's recipes).

A recipe runs in a worker thread with a `JobContext`; it never touches a UI. `preflight_*` checks run before a job
is queued, so bad input is refused with a message instead of becoming a failed run.
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import DEFAULT_DATA, TrainConfig, from_dict
from .data.text import HF_PREFIX
from .eval.runner import eval_job
from .jobs import JobContext, JobManager
from .paths import runs_dir
from .sources import SourceError, check_hub_source, is_default, peek_model_config
from .train import RandomWindows, resolve_device, total_steps_for, train


def preflight_train(cfg: TrainConfig) -> None:
    """Refuse what is knowable to fail before queueing: sequence longer than the context, more frozen layers
    than the model has, missing paths, no GPU."""
    model_config = peek_model_config(cfg.model)
    if model_config is not None:
        cfg.check_context(model_config.n_positions)
        cfg.check_layers(model_config.n_layer)
    elif not is_default(cfg.model) and not Path(cfg.model).expanduser().exists():
        check_hub_source(cfg.model)
    resolve_device(cfg.device)
    if cfg.data != DEFAULT_DATA and not cfg.data.startswith(HF_PREFIX):
        from .data.readers import DataError, resolve_inputs
        try:
            resolve_inputs(cfg.data)
        except DataError as e:
            raise SourceError(f"No data at {cfg.data}: use llmfs-corpus, a .txt / .jsonl / .parquet file, a folder "
                              f"or WebDataset shards ({e}).") from e


def _log_progress(ctx: JobContext):
    """A bootstrap progress callback that writes a log line per stage and per tenth of it, so the first run on a
    fresh machine (which builds llmfs-tiny) shows what it is doing."""
    last: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        tenth = (10 * done) // max(total, 1)
        if last.get(stage) != tenth:
            last[stage] = tenth
            ctx.log(f"Building the embedded default: {stage} {done}/{total}")
    return progress


def submit_train(jobs: JobManager, cfg: TrainConfig, owner: str | None = None,
                 run_dir: str | Path | None = None) -> str:
    preflight_train(cfg)
    return jobs.submit("train", cfg, owner=owner, run_dir=run_dir)


def train_job(ctx: JobContext, payload: dict) -> dict:
    """Load the model and data named by the config, train with the shared loop, save the model."""
    from .data.text import load_token_data
    from .freeze import apply_freeze, freeze_options
    from .generate import SampleConfig, sample_many
    from .sources import load_model
    from .weights import save_hf_folder

    cfg = from_dict(TrainConfig, payload)
    t0 = time.time()
    ctx.log(f"Loading model {cfg.model} ({cfg.init} weights) ...")
    model, tokenizer = load_model(cfg.model, init=cfg.init, seed=cfg.seed, progress=_log_progress(ctx))
    cfg.check_context(model.config.n_positions)
    cfg.check_layers(model.config.n_layer)
    plan = apply_freeze(model, **freeze_options(cfg))  # our private copy: load_model built it for this job
    ctx.log(plan.summary())
    ctx.emit(0, kind="freeze", strategy=plan.strategy, trainable_params=plan.trainable_params,
             total_params=plan.total_params)
    ctx.log(f"Reading and tokenizing {cfg.data} ...")
    train_tokens, val_tokens = load_token_data(cfg.data, tokenizer)
    total = total_steps_for(cfg, len(train_tokens))
    ctx.log(f"{len(train_tokens):,} training tokens, {len(val_tokens):,} held-out; {total} steps of "
            f"{cfg.tokens_per_step:,} tokens on {resolve_device(cfg.device)} (set-up {time.time() - t0:.1f}s).")
    prompts = sample_prompts(val_tokens, tokenizer)
    before = sample_many(model, tokenizer, prompts, SampleConfig(seed=cfg.seed))
    ctx.progress(0, total)
    result = train(model, RandomWindows(train_tokens, cfg.batch_size, cfg.seq_len, seed=cfg.seed),
                   cfg, val_batches=RandomWindows(val_tokens, cfg.batch_size, cfg.seq_len, seed=cfg.seed + 1),
                   sink=ctx, should_stop=ctx.should_stop, checkpoint_dir=ctx.checkpoint_dir, resume=ctx.resume,
                   total_steps=total, freeze_plan=plan)
    ctx.progress(result.steps_done, total)
    after = sample_many(model, tokenizer, prompts, SampleConfig(seed=cfg.seed))
    samples = [{"prompt": b["prompt"], "before": b["text"], "after": a["text"]} for b, a in zip(before, after)]
    if cfg.save_model and result.history:
        save_hf_folder(model.cpu(), ctx.run_dir / "model", tokenizer=tokenizer)
        ctx.log(f"Saved the model to {ctx.run_dir / 'model'} (a Hugging Face folder).")
    return {
        "final_loss": result.final_loss, "losses": result.losses, "steps": result.steps_done,
        "total_steps": total, "stopped": result.stopped,
        "eval_loss": result.evals[-1]["eval_loss"] if result.evals else None,
        "tokens_per_s": result.tokens_per_s, "peak_memory_bytes": result.peak_memory_bytes,
        "trainable_params": result.trainable_params, "total_params": result.total_params, "samples": samples,
    }


def sample_prompts(val_tokens, tokenizer, n: int = 2, length: int = 12) -> list[str]:
    """Prompts cut from held-out text (so they suit whatever data the run trains on), spread through it."""
    starts = [int(len(val_tokens) * i / n) for i in range(n)]
    prompts = [tokenizer.decode(val_tokens[s: s + length].tolist()).replace(tokenizer.eos_token or "", "").strip()
               for s in starts]
    return [p for p in prompts if p] or ["The"]


def pipeline_job(ctx: JobContext, payload: dict) -> dict:
    from .data.pipeline import pipeline_job as run
    return run(ctx, payload)


def default_manager(root: str | Path | None = None, slots: int = 1, telemetry_interval: float = 1.0) -> JobManager:
    """A JobManager over `$LLMFS_HOME/runs` with every recipe registered."""
    jobs = JobManager(root or runs_dir(), slots=slots, telemetry_interval=telemetry_interval)
    jobs.register("train", train_job)
    jobs.register("pipeline", pipeline_job)
    jobs.register("eval", eval_job)
    return jobs
