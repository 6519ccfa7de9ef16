"""Repeat a run: the `python -m llmfs ...` command, and a short Python program, that start a new run with exactly
the settings of an old one (its config.json "kind" and "config").

The command carries only the flags whose values differ from the defaults (the defaults are the dataclass's, the
same ones the CLI's flags take), plus the ones that say what the run is about even at their defaults: the model
and the data of a training run, the model and the benchmark of an evaluation, every input of a pipeline.
Parsing it with the CLI's parser gives back the run's config.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from .config import EvalConfig, TrainConfig, field_info

KINDS = ("train", "eval", "pipeline")
COMMANDS = {"train": "train", "eval": "eval", "pipeline": "data"}   # run kind -> the CLI command that starts one
ALWAYS = {"train": ("model", "data"), "eval": ("model", "task")}
# pipeline fields that `data` takes in a form of its own (the rest: one --flag per field, like train's)
_PIPELINE_SPECIAL = ("inputs", "weights", "filters", "thresholds")


def config_class(kind: str) -> type:
    """The config dataclass of a run kind (ValueError for a kind no command starts)."""
    if kind == "train":
        return TrainConfig
    if kind == "eval":
        return EvalConfig
    if kind == "pipeline":
        from .data.pipeline import PipelineConfig
        return PipelineConfig
    raise ValueError(f"A {kind!r} run cannot be repeated from the command line (only {', '.join(KINDS)} runs).")


def settings(kind: str, config: dict) -> dict:
    """The run's config as the dataclass's fields (keys it does not have, such as a pipeline's out_dir, left out;
    JSON's lists as the tuples the dataclass holds)."""
    infos = field_info(config_class(kind))
    return {name: _as_field(config[name]) for name in infos if name in config}


def changed(kind: str, config: dict) -> dict:
    """The fields whose values differ from the defaults, plus those `ALWAYS` shows, in the dataclass's order."""
    infos = field_info(config_class(kind))
    always = ALWAYS.get(kind, ())
    values = settings(kind, config)
    return {name: value for name, value in values.items()
            if name in always or value != _as_field(infos[name]["default"])}


def argv(kind: str, config: dict) -> list[str]:
    """The arguments after `python -m llmfs` that start a run like this one."""
    values = changed(kind, config)
    if kind == "pipeline":
        return _pipeline_argv(config, values)
    args = [COMMANDS[kind]]
    for name, value in values.items():
        args += _flag_args(name, value)
    return args


def command(kind: str, config: dict) -> str:
    """`argv` as one shell line (every value quoted as the shell needs), starting `python -m llmfs`."""
    return shlex.join(["python", "-m", "llmfs", *argv(kind, config)])


def pipeline_flag_text(name: str, value: Any) -> str | None:
    """How `data` takes a PipelineConfig field with a flag of its own form (`--weights 0.7,0.3`, `--filters a,b`,
    `--thresholds JSON`); None for no value. The CLI reads a settings file's values through it too."""
    if value is None:
        return None
    if name == "weights":
        return ",".join(repr(float(w)) for w in value)
    if name == "filters":
        return ",".join(value)
    if name == "thresholds":
        return json.dumps(value)
    raise ValueError(f"{name} is not a pipeline setting with a flag of its own form")


def _pipeline_argv(config: dict, values: dict) -> list[str]:
    inputs = _as_field(config.get("inputs") or ())
    args = ["data"]
    for spec in (inputs,) if isinstance(inputs, str) else inputs:
        args += _value_args("--input", str(spec))
    for name in ("weights", "filters", "thresholds"):
        text = pipeline_flag_text(name, values.get(name))
        if text:
            args += _value_args(f"--{name}", text)
    for name, value in values.items():
        if name not in _PIPELINE_SPECIAL:
            args += _flag_args(name, value)
    # The original output folder, kept: the command is then the run exactly. `data` refuses a folder that already
    # holds shards, so pasting it as it is cannot overwrite the original's; the person picks a new folder (or drops
    # --out: the new run's own folder), and the app says so beside the command.
    if config.get("out_dir"):
        args += _value_args("--out", str(config["out_dir"]))
    return args


def _flag_args(name: str, value: Any) -> list[str]:
    flag = "--" + name.replace("_", "-")   # as llmfs.cli.add_config_args names them
    if isinstance(value, bool):
        return [flag if value else "--no-" + flag[2:]]
    if value is None:
        return []   # no field defaults to a value and takes None too; nothing to say on the command line
    return _value_args(flag, repr(value) if isinstance(value, float) else str(value))


def _value_args(flag: str, text: str) -> list[str]:
    """`--flag value`, or `--flag=value` when the value starts with "-" (argparse would read it as a flag)."""
    return [f"{flag}={text}"] if text.startswith("-") else [flag, text]


def _as_field(value: Any) -> Any:
    return tuple(_as_field(v) for v in value) if isinstance(value, list) else value


# -- the same through Python ----------------------------------------------------------------------------------------
_FIGURES = {"train": ('"final_loss"', "final training loss"), "eval": ('"metrics"', "scores"),
            "pipeline": ('"documents_out"', "documents kept")}


def snippet(kind: str, config: dict) -> str:
    """A short Python program that starts the same run through `llmfs` (the job runner the CLI and the app use),
    waits for it and prints its main figure."""
    cls = config_class(kind)
    kwargs = ", ".join(f"{name}={value!r}" for name, value in changed(kind, config).items())
    lines = [f"from {cls.__module__} import {cls.__name__}"]
    if kind == "train":
        lines += ["from llmfs.recipes import submit_train"]
    elif kind == "eval":
        lines += ["from llmfs.eval.runner import submit_eval"]
    else:
        lines = ["import dataclasses", "", *lines]
    lines += ["from llmfs.runner import default_manager", "", f"cfg = {cls.__name__}({kwargs})",
              "jobs = default_manager()  # runs under $LLMFS_HOME/runs, like the app's and the command line's"]
    if kind == "train":
        lines += ['run_id = submit_train(jobs, cfg, owner="script")']
    elif kind == "eval":
        lines += ['run_id = submit_eval(jobs, cfg, owner="script")']
    else:  # no out_dir: the shards go into the new run's own folder (never over the original's)
        lines += ['run_id = jobs.submit("pipeline", dataclasses.asdict(cfg), owner="script")']
    key, words = _FIGURES[kind]
    lines += ["jobs.wait(run_id)", "status = jobs.get(run_id).status()",
              f'print(run_id, status["state"], "{words}:", (status.get("result") or {{}}).get({key}))']
    return "\n".join(lines) + "\n"


def settings_header(kind: str, run_id: str, file_name: str) -> str:
    """The comment heading a run's downloaded settings file: what it is and the command that reads it."""
    how = f"python -m llmfs {COMMANDS[kind]} --config {shlex.quote(file_name)}"
    lines = [f"Settings of run {run_id} (llmfs {kind}).", f"Repeat it: {how}",
             "Keys are the settings' names; a flag on the command line overrides the file."]
    return "\n".join(lines)

