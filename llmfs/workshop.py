"""Workshop mode: one server, many participants. Per-user limits from the instructor's config file, the policy
that enforces them at submission, and the instructor's password.

The limits file is TOML, read from `$LLMFS_WORKSHOP_CONFIG`, else `$LLMFS_HOME/workshop.toml`; without one there
are no limits (a single user's lab). Example:

    # $LLMFS_HOME/workshop.toml
    max_queued_per_user = 2      # pending + running jobs one participant may have at once
    max_steps = 500              # training steps per run
    max_params = 200_000_000     # model size (parameters) a participant may train or evaluate
    max_tokens_per_step = 16384  # batch size x sequence length x accumulation
    max_upload_mb = 50           # size of one uploaded file

The instructor's password comes from `$LLMFS_INSTRUCTOR_PASSWORD`, or from `.streamlit/secrets.toml`
(`instructor_password = "..."`, read by the app); without one the instructor view stays locked.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from .config import ConfigError, check_fields, option
from .jobs import JobManager, LimitError
from .paths import llmfs_home


@dataclass(frozen=True)
class WorkshopLimits:
    """What one participant may ask of the shared server. None: no limit."""

    max_queued_per_user: int | None = option(None, "Jobs (waiting + running) one participant may have at once.",
                                             min=1, max=10_000)
    max_steps: int | None = option(None, "Training steps per run.", min=1, max=10_000_000)
    max_params: int | None = option(None, "Model size, in parameters, a participant may train or evaluate.",
                                    min=1, max=10**13)
    max_tokens_per_step: int | None = option(None, "Tokens per training step (batch x sequence x accumulation).",
                                             min=1, max=10**9)
    max_upload_mb: float = option(200.0, "Size of one uploaded file, in MB.", min=0.001, max=100_000)
    max_processes: int | None = option(None, "Training processes (GPUs) one run may use at once; 1 keeps every run "
                                             "on one, so participants' runs take turns per GPU.", min=1, max=1024)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # TOML can hold any type: a number is what each setting needs
            value = getattr(self, f.name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f.name, f"{f.name} must be a number (got {value!r}).")
        check_fields(self)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    @property
    def active(self) -> bool:
        return any(getattr(self, f) is not None for f in ("max_queued_per_user", "max_steps", "max_params",
                                                            "max_tokens_per_step", "max_processes"))


def limits_path() -> Path:
    return Path(os.environ.get("LLMFS_WORKSHOP_CONFIG") or llmfs_home() / "workshop.toml").expanduser()


def load_limits(path: str | os.PathLike | None = None) -> WorkshopLimits:
    """The limits in `path` (default `limits_path()`); no file: no limits.

    Raises:
        ConfigError: the file is not valid TOML, names an unknown setting, or a value is out of range.
    """
    path = Path(path) if path else limits_path()
    if not path.is_file():
        return WorkshopLimits()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError("file", f"{path} is not valid TOML ({e}). Fix the file or remove it.") from e
    known = {f.name for f in dataclasses.fields(WorkshopLimits)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(unknown[0], f"{path}: unknown setting {unknown[0]!r}; the settings are "
                                      f"{', '.join(sorted(known))}.")
    return WorkshopLimits(**data)


def make_policy(limits: WorkshopLimits):
    """A `JobManager.policy`: refuses a submission that breaks `limits`, saying which limit and what to change."""

    def policy(jobs: JobManager, kind: str, cfg: dict, user: str | None, n_before: int = 0) -> None:
        check_submission(limits, jobs, kind, cfg, user, n_before)

    return policy


def check_submission(limits: WorkshopLimits, jobs: JobManager, kind: str, cfg: dict, user: str | None,
                     n_before: int = 0) -> None:
    """`n_before`: jobs of the same batch accepted ahead of this one (not queued yet).

    Raises:
        LimitError: naming the limit, the value asked for, and what to do instead."""
    if limits.max_queued_per_user is not None:
        mine = len(jobs.user_jobs(user)) + n_before
        if mine >= limits.max_queued_per_user:
            if n_before:
                raise LimitError(f"This asks for {n_before + 1} jobs at once and you have {mine - n_before} waiting "
                                 f"or running; this workshop allows {limits.max_queued_per_user} per person. Compare "
                                 "fewer at a time, or wait for your jobs to finish.")
            raise LimitError(f"You already have {mine} job(s) waiting or running, the most this workshop allows "
                             f"per person ({limits.max_queued_per_user}). Wait for one to finish, or stop one.")
    steps = cfg.get("steps")
    if limits.max_steps is not None and kind == "train" and isinstance(steps, int) and steps > limits.max_steps:
        raise LimitError(f"{steps:,} training steps is more than this workshop allows per run "
                         f"({limits.max_steps:,}). Lower the number of steps.")
    if limits.max_tokens_per_step is not None and kind == "train":
        tokens = int(cfg.get("batch_size", 1)) * int(cfg.get("seq_len", 1)) * int(cfg.get("grad_accum", 1))
        if tokens > limits.max_tokens_per_step:
            raise LimitError(f"Each step would read {tokens:,} tokens (batch x sequence x accumulation), more than "
                             f"this workshop allows ({limits.max_tokens_per_step:,}). Lower the batch size or the "
                             "sequence length.")
    if limits.max_processes is not None and kind == "train":
        asked = _processes_asked(cfg)
        if asked > limits.max_processes:
            raise LimitError(f"This run would start {asked} training processes, more than this workshop allows per "
                             f"run ({limits.max_processes}). Set Processes to {limits.max_processes}.")
    if limits.max_params is not None and cfg.get("model"):
        n = model_params(str(cfg["model"]))
        if n is not None and n > limits.max_params:
            raise LimitError(f"{cfg['model']} has {n:,} parameters, more than this workshop allows "
                             f"({limits.max_params:,}). Pick a smaller model (llmfs-tiny always fits).")


def _processes_asked(cfg: dict) -> int:
    from .config import TrainConfig, from_dict
    from .launch import processes_for
    try:
        return processes_for(from_dict(TrainConfig, cfg))
    except (ValueError, TypeError):
        return int(cfg.get("processes") or 1)


def model_params(source: str) -> int | None:
    """Parameter count from the model's config alone (no weights loaded), or None when it cannot be known cheaply
    (a hub id not downloaded yet: the job's own checks then apply)."""
    from .memory import config_of, param_count
    config = config_of(source)
    if config is None:
        return None
    try:
        return param_count(config)
    except (ValueError, TypeError, OSError):
        return None


def install(jobs: JobManager, limits: WorkshopLimits | None = None) -> WorkshopLimits:
    """Put the workshop's limits on `jobs` (loaded from the limits file unless given); returns them."""
    limits = limits if limits is not None else load_limits()
    jobs.policy = make_policy(limits) if limits.active else None
    return limits


def instructor_password(secrets: Any = None) -> str | None:
    """`$LLMFS_INSTRUCTOR_PASSWORD`, else `instructor_password` in the app's secrets; None when neither is set."""
    value = os.environ.get("LLMFS_INSTRUCTOR_PASSWORD")
    if not value and secrets is not None:
        try:
            value = secrets.get("instructor_password")
        except Exception:  # no secrets.toml: Streamlit raises when it is read
            value = None
    return str(value) if value else None


def password_ok(given: str, expected: str | None) -> bool:
    """Constant-time comparison; always False when no password is configured (the view stays locked)."""
    return bool(expected) and hmac.compare_digest(given.encode("utf-8"), str(expected).encode("utf-8"))
