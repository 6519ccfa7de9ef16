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
    # What a participant may read (see `llmfs.access`): the built-ins, their own uploads and runs, and these
    allow_hub = true             # hub ids and hub datasets (the machine needs a network)
    allow_urls = false           # http(s) / s3 / gs sources; never loopback, link-local or private addresses
    shared_paths = ["/data/class"]  # folders every participant may read (resolved; symlinks out of them refused)
    share_runs = "figures"       # others' runs: "figures" (curves, scores) or "all" (also texts and downloads)

The instructor's password comes from `$LLMFS_INSTRUCTOR_PASSWORD`, or from `.streamlit/secrets.toml`
(`instructor_password = "..."`, read by the app); without one the instructor view stays locked.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tomllib

from .access import AccessError, workshop_access
from .config import DEFAULT_DATA, DEFAULT_MODEL, ConfigError, TrainConfig, check_fields, from_dict, option
from .data.readers import PUBLIC_ONLY_ENV, DataError
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
    allow_hub: bool = option(True, "Participants may name Hugging Face hub models and datasets (needs a network).")
    allow_urls: bool = option(False, "Participants may give http(s), s3:// or gs:// data addresses (never loopback, "
                                     "link-local or private-network ones).")
    shared_paths: tuple[str, ...] = option((), "Folders on this machine every participant may read data and models "
                                               "from (besides the built-ins, their own uploads and their own runs).")
    share_runs: Literal["figures", "all"] = option(
        "figures", "What participants see of each other's runs: `figures` (curves, scores, settings) or `all` (also "
                   "texts: data samples, generations, logs, wrong answers; and downloads: adapters, models).")

    def __post_init__(self) -> None:
        # TOML can hold any type: each setting must have the one it needs
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _NUMBERS:
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise ConfigError(f.name, f"{f.name} must be a number (got {value!r}).")
            elif f.name in ("allow_hub", "allow_urls") and not isinstance(value, bool):
                raise ConfigError(f.name, f"{f.name} must be true or false (got {value!r}).")
        paths = self.shared_paths
        if isinstance(paths, str) or not isinstance(paths, (list, tuple)) or \
                not all(isinstance(p, str) and p.strip() for p in paths):
            raise ConfigError("shared_paths", f'shared_paths must be a list of folders, e.g. ["/data/class"] '
                                              f"(got {paths!r}).")
        object.__setattr__(self, "shared_paths", tuple(paths))
        check_fields(self)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    @property
    def active(self) -> bool:
        return any(getattr(self, f) is not None for f in ("max_queued_per_user", "max_steps", "max_params",
                                                            "max_tokens_per_step", "max_processes"))


_NUMBERS = ("max_queued_per_user", "max_steps", "max_params", "max_tokens_per_step", "max_upload_mb", "max_processes")


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


def make_policy(limits: WorkshopLimits, shared: bool = True):
    """A `JobManager.policy`: refuses a submission that breaks `limits`, saying which limit and what to change;
    with `shared` (workshop mode), also one naming a source the participant may not read (`check_sources`)."""

    def policy(jobs: JobManager, kind: str, cfg: dict, user: str | None, n_before: int = 0) -> None:
        if shared:
            check_sources(limits, kind, cfg, user)  # first: the size checks below read a model's config.json
        check_submission(limits, jobs, kind, cfg, user, n_before)

    return policy


def check_sources(limits: WorkshopLimits, kind: str, cfg: dict, user: str | None) -> None:
    """Every source a job would read (model, adapter, data, benchmark questions, pipeline inputs) is one this
    participant may read (`llmfs.access`); a pipeline's output folder is the server's choice, never the payload's.

    Raises:
        AccessError: naming the source and what the participant may use instead.
    """
    access = workshop_access(user, shared_paths=limits.shared_paths, share_runs=limits.share_runs,
                             allow_hub=limits.allow_hub, allow_urls=limits.allow_urls)
    try:
        if kind in ("train", "eval"):
            access.check_model(str(cfg.get("model") or DEFAULT_MODEL))
        if kind == "train":
            access.check_data(str(cfg.get("data") or DEFAULT_DATA))
        elif kind == "eval":
            access.check_adapter(str(cfg.get("adapter") or ""))
            access.check_benchmark(str(cfg.get("task") or ""), str(cfg.get("data") or ""))
        elif kind == "pipeline":
            inputs = cfg.get("inputs") or ()
            for spec in [inputs] if isinstance(inputs, str) else inputs:
                access.check_data(str(spec))
            if cfg.get("out_dir"):
                raise AccessError("Where a pipeline writes its shards is the server's choice (the run's folder): "
                                  "leave out_dir out.")
    except DataError as e:  # rule 1 (`pipe:`, unknown schemes): the same refusal, in a participant's words
        raise AccessError(str(e)) from e


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
    from .distributed import processes_for
    try:
        return processes_for(from_dict(TrainConfig, cfg))
    except (ValueError, TypeError):
        return int(cfg.get("processes") or 1)


def model_params(source: str) -> int | None:
    """Parameter count from the model's config alone (no weights loaded), or None when it cannot be known cheaply
    (a hub id not downloaded yet: the job's own checks then apply)."""
    from .memory import config_of, param_count
    from .packaged import PACKAGED
    if source.strip() in PACKAGED:   # known without unpacking it
        return PACKAGED[source.strip()].params or None
    config = config_of(source)
    if config is None:
        return None
    try:
        return param_count(config)
    except (ValueError, TypeError, OSError):
        return None


def workshop_mode(secrets: Any = None) -> bool:
    """Several people share this server: the instructor wrote a limits file or set a password."""
    return limits_path().is_file() or instructor_password(secrets) is not None


def install(jobs: JobManager, limits: WorkshopLimits | None = None, shared: bool | None = None) -> WorkshopLimits:
    """Put the workshop's rules on `jobs`: its limits (loaded from the limits file unless given) and, in workshop
    mode (`shared`; default: `workshop_mode()`), who may read what, with http(s) reads of every job restricted to
    public addresses. Returns the limits."""
    limits = limits if limits is not None else load_limits()
    shared = workshop_mode() if shared is None else shared
    jobs.policy = make_policy(limits, shared) if shared or limits.active else None
    jobs.workshop_limits = limits
    if shared:
        jobs.job_env[PUBLIC_ONLY_ENV] = "1"
    else:
        jobs.job_env.pop(PUBLIC_ONLY_ENV, None)
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
