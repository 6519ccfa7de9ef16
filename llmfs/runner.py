"""The job runner as the app and the CLI use it: a `JobManager` with every recipe registered, training launched on
one process or, when a run asks for several, through torchrun. The recipes (`llmfs.recipes`) never know how they
are launched, as torchtune's recipes do not: this module and `llmfs.launch` decide."""

from __future__ import annotations

from pathlib import Path

from . import distributed
from .config import TrainConfig, from_dict
from .jobs import JobContext, JobManager
from .launch import launch_job
from .paths import runs_dir
from .recipes import ensure_builtins, eval_job, needs_builtins, pipeline_job
from .recipes import train_job as train_recipe


def train_job(ctx: JobContext, payload: dict) -> dict:
    """The runner's "train" job: the recipe in this process, or (processes > 1) torchrun starting one process per
    rank, each running the same recipe (`llmfs.launch.rank_main`)."""
    cfg = from_dict(TrainConfig, payload)
    n = 1 if distributed.launched() else distributed.processes_for(cfg)
    if n > 1:
        ensure_builtins(ctx, needs_builtins(cfg))  # once here, not raced by every rank
        return launch_job(ctx, cfg, n)
    return train_recipe(ctx, payload)


def default_manager(root: str | Path | None = None, slots: int = 1, telemetry_interval: float = 1.0,
                    isolation: str = "thread") -> JobManager:
    """A JobManager over `$LLMFS_HOME/runs` with every recipe registered (isolation="process": each job in a child
    process, as the web app runs them)."""
    jobs = JobManager(root or runs_dir(), slots=slots, telemetry_interval=telemetry_interval, isolation=isolation)
    jobs.register("train", train_job)
    jobs.register("pipeline", pipeline_job)
    jobs.register("eval", eval_job)
    return jobs
