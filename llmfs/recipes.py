"""Recipes: the jobs the runner knows, each turning a config into model + data + loop (torchtune's recipes).

A recipe runs in a worker thread or a job process (`llmfs.jobs`), or on each rank of a torchrun run, with a
`JobContext`; it never knows which (`llmfs.runner` and `llmfs.launch` decide) and never touches a UI. A recipe is an
entry point: it builds the embedded default when its config names it (`ensure_builtins`). `preflight_*` checks run
before a job is queued, so bad input is refused with a message instead of becoming a failed run.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from .adapters import record_training
from .bootstrap import ensure_default
from .builders import build_model
from .config import DEFAULT_DATA, PYTHON_QA, ConfigError, EvalConfig, TrainConfig, from_dict
from .data.readers import HELDOUT
from .data.text import HF_PREFIX
from .defaults import require_default
from .errors import DataError, SourceError
from .eval.runner import eval_job as run_eval
from .fsutil import make_temp_dir, replace_dir
from .jobs import JobContext, JobManager, RankContext, StopFile
from .runs import Run
from .sources import check_hub_source, is_default
from .train import RandomWindows, resolve_device, total_steps_for, train
from .weights import peek_model_config

BUILTIN_TEXT = (DEFAULT_DATA, DEFAULT_DATA + HELDOUT)
BUILTIN_EVAL_TASKS = ("llmfs-cloze", "perplexity")  # their questions / text come from the built-in corpus


def preflight_train(cfg: TrainConfig) -> None:
    """Refuse what is knowable to fail before queueing: sequence longer than the context, more frozen layers
    than the model has, missing paths, no GPU, a data source that is not a path or an address we read."""
    from .data.readers import check_spec
    check_spec(cfg.data)
    examples = example_format(cfg) != "text"   # a file of examples (or the built-in set): read and checked here
    model_config = peek_model_config(cfg.model)
    if examples:
        _preflight_examples(cfg, model_config)
        if not seq_len_was_set(cfg):
            cfg = cfg.replace(seq_len=2)   # the run takes the examples' length, cut to the model's context: no check
    if model_config is not None:
        cfg.check_context(model_config.n_positions)
        cfg.check_layers(model_config.n_layer)
        if cfg.lora:
            _check_lora_fits(cfg, model_config)
    elif (Path(cfg.model).expanduser() / "config.json").is_file():
        _preflight_other_architecture(cfg, Path(cfg.model).expanduser())
    elif not is_default(cfg.model) and not Path(cfg.model).expanduser().exists():
        check_hub_source(cfg.model)
    device = resolve_device(cfg.device)
    _check_processes(cfg, device)
    from .precision import PrecisionError, plan_precision
    try:
        plan_precision(cfg.precision, device, tf32=cfg.tf32)
    except PrecisionError as e:
        raise ConfigError("precision", str(e)) from e
    if not examples and cfg.data != DEFAULT_DATA and not cfg.data.startswith(HF_PREFIX):
        from .data.readers import DataError, resolve_inputs
        try:
            resolve_inputs(cfg.data)
        except DataError as e:
            raise SourceError(f"No data at {cfg.data}: use llmfs-corpus, a .txt / .jsonl / .parquet file, a folder "
                              f"or WebDataset shards ({e}).") from e


def _preflight_examples(cfg: TrainConfig, model_config) -> None:
    """Read the examples (ExampleError names the line and the fix) and, when the model's tokenizer is on this machine
    and the file is small enough to read twice, encode them as the run will: examples cut to nothing are refused
    here, not after the run is queued."""
    from .data.examples import prepare, read_examples
    from .data.text import SUMMARY_MAX_BYTES, tokenizer_for
    examples = read_examples(cfg.data, cfg.data_format)
    source = Path(cfg.data).expanduser()
    if source.is_file() and source.stat().st_size > SUMMARY_MAX_BYTES:
        return
    tokenizer = tokenizer_for(cfg.model)
    if tokenizer is None:
        return
    context = getattr(model_config, "n_positions", None)
    prepare(examples, tokenizer, cfg.seq_len if seq_len_was_set(cfg) else None, cfg.train_on, context)


def _check_processes(cfg: TrainConfig, device: str) -> None:
    """Several processes: one GPU each (or a CPU core each), and a freezing strategy that does not change mid-run."""
    if cfg.processes <= 1:
        return
    import os

    import torch
    if device == "cuda" and cfg.processes > torch.cuda.device_count():
        raise ConfigError("processes", f"processes must be at most {torch.cuda.device_count()}, the GPUs on this "
                                       f"machine, one each (got {cfg.processes}); 0 picks that for you.")
    if device == "cpu" and cfg.processes > (os.cpu_count() or 1):
        raise ConfigError("processes", f"processes must be at most {os.cpu_count()}, the CPU cores of this machine "
                                       f"(got {cfg.processes}).")
    if cfg.freeze == "gradual":
        raise ConfigError("freeze", "Gradual unfreezing changes which weights train during the run, which DDP and "
                                    "FSDP fix when they start: use one process for it, or another strategy.")


def _check_lora_fits(cfg: TrainConfig, model_config) -> None:
    """The LoRA targets name layers our GPT (or Llama) has, and the rank fits them (checked on shapes alone)."""
    import torch

    from .llama import Llama, LlamaConfig
    from .lora import matches, target_modules
    from .model import GPT
    llama = isinstance(model_config, LlamaConfig)
    with torch.device("meta"):
        model = Llama(model_config) if llama else GPT(model_config)
    suffixes = target_modules(cfg.lora_targets, model_config.model_type if llama else "gpt2")
    layers = [m for n, m in model.named_modules() if matches(n, suffixes) and isinstance(m, torch.nn.Linear)]
    if not layers:
        raise ConfigError("lora_targets", f"No layer of this {'Llama' if llama else 'GPT-2'} matches "
                                          f"{cfg.lora_targets!r}: use qkv, attn_proj, mlp_in, mlp_out, lm_head or "
                                          "all-linear.")
    smallest = min(min(m.in_features, m.out_features) for m in layers)
    if cfg.lora_rank > smallest:
        raise ConfigError("lora_rank", f"lora_rank must be between 1 and {smallest}, the narrowest adapted layer's "
                                       f"width (got {cfg.lora_rank}).")


def _preflight_other_architecture(cfg: TrainConfig, folder: Path) -> None:
    """A local folder holding a non-GPT-2 causal LM (Llama, Qwen, ...): it trains through transformers + PEFT, so
    GPT-2's freezing strategies and random re-initialisation do not apply."""
    import json

    from .hf_causal import model_type_of
    from .lora import target_modules
    model_type = model_type_of(folder) or "unknown"
    if cfg.freeze != "full":
        raise ConfigError("freeze", f"Freezing strategies know GPT-2's layers; this is a {model_type} model. Use LoRA "
                                    "(rank above 0) or train every weight (freeze = full).")
    if cfg.init != "pretrained":
        raise ConfigError("init", f"Random re-initialisation is offered for GPT-2-family models only (this is a "
                                  f"{model_type} model).")
    hf_config = json.loads((folder / "config.json").read_text())
    context = hf_config.get("max_position_embeddings") or hf_config.get("n_positions")
    if isinstance(context, int):
        cfg.check_context(context)
    if cfg.lora:
        try:
            target_modules(cfg.lora_targets, model_type)
        except ValueError as e:
            raise ConfigError("lora_targets", str(e)) from e


def example_format(cfg: TrainConfig) -> str:
    """"text", or the format of the examples `cfg.data` holds (chat, prompt, alpaca): the one the config names, or
    the one its file holds (`llmfs.data.examples.detect`).

    Raises:
        ExampleError: the config asks for examples and the data is not a file of them, or the file is neither.
    """
    from .data.examples import ExampleError, detect, is_example_file
    if cfg.data_format == "text":
        return "text"
    found = detect(cfg.data)
    if cfg.data_format == "auto":
        return found
    if found == "text" and not (cfg.data.strip() == PYTHON_QA or is_example_file(cfg.data)):
        raise ExampleError(f"{cfg.data} is not a file of examples (.jsonl, .json or .csv): set the data format to "
                           "auto or text to train on it as plain text.")
    return cfg.data_format


def needs_builtins(cfg: TrainConfig) -> bool:
    return is_default(cfg.model) or cfg.data.strip() in BUILTIN_TEXT


def ensure_builtins(ctx: JobContext, needed: bool) -> None:
    """A job is an entry point: when its config names llmfs-tiny or llmfs-corpus, build them first (once per
    machine; the first run on a fresh machine logs each stage), so that nothing below ever builds them."""
    if needed:
        ensure_default(progress=_log_progress(ctx))


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
    jobs.admit("train", cfg)  # a workshop's rules first: a source the person may not read is never opened
    preflight_train(cfg)
    cfg, note = fit_to_data(cfg)   # short text: a shorter sequence, in the run's config (or refused here)
    if note:  # the run's log and result say it too (`train_job`); from_dict passes over the extra key
        return jobs.submit("train", {**dataclasses.asdict(cfg), SEQ_LEN_NOTE: note}, owner=owner, run_dir=run_dir)
    return jobs.submit("train", cfg, owner=owner, run_dir=run_dir)


# -- short data -------------------------------------------------------------------------------------------------
DEFAULT_SEQ_LEN = TrainConfig().seq_len
SEQ_LEN_NOTE = "seq_len_note"   # a run's config key: why its sequence length is not the one asked for


def seq_len_was_set(cfg: TrainConfig) -> bool:
    """Whether the person chose the sequence length: anything but the default is their choice, which a run on short
    text keeps (and is refused if it does not fit); the default follows the text."""
    return cfg.seq_len != DEFAULT_SEQ_LEN


def fit_to_data(cfg: TrainConfig, train_tokens: int | None = None) -> tuple[TrainConfig, str | None]:
    """`cfg` with the sequence length short text supports, and the sentence saying so (None: nothing changed).

    `train_tokens`: the training tokens (a run knows them); without it, a local file or folder is counted with the
    model's tokenizer (`llmfs.data.text.summarize`), and anything that cannot be counted before the run (the
    built-in corpus, hub data, big data, a model not on this machine yet) is left as it is: the run fits it then.
    Raises:
        ConfigError: the text is too short for the sequence length the person set, or for any sequence at all.
    """
    if train_tokens is None:
        try:
            if example_format(cfg) != "text":
                return cfg, None   # examples: the run sets the length from them (`prepare_examples`)
        except DataError:
            return cfg, None       # the preflight says why
        from .data.text import summarize
        try:
            summary = summarize(cfg.data, cfg.model)
        except (ValueError, OSError):
            return cfg, None    # unreadable data: the preflight's own checks (or the run) say why
        if summary is None or summary.train_tokens is None:
            return cfg, None
        train_tokens = summary.train_tokens
    from .train import MIN_SEQ_LEN, fitted_seq_len
    fit = fitted_seq_len(train_tokens, cfg.seq_len)
    if fit == cfg.seq_len:
        return cfg, None
    if fit is None:
        raise ConfigError("data", f"Your text has {train_tokens:,} tokens to train on: too little to train with "
                                  f"(at least {MIN_SEQ_LEN + 2} are needed). Add more text.")
    if seq_len_was_set(cfg):
        raise ConfigError("seq_len", f"Your text has {train_tokens:,} tokens to train on, fewer than one sequence of "
                                     f"the sequence length you set ({cfg.seq_len:,} tokens, plus 2). Set a sequence "
                                     f"length of {fit:,} or less (or {DEFAULT_SEQ_LEN}, which follows the text), or "
                                     "add more text.")
    return cfg.replace(seq_len=fit), (f"Your text has {train_tokens:,} tokens to train on: sequence length {fit:,} "
                                      f"is used instead of {cfg.seq_len:,}.")


def heldout_windows(cfg: TrainConfig, tokens, context: int | None = None):
    """The held-out windows a run evaluates on (`llmfs.train.HeldOutWindows`). On llmfs-corpus: the very windows
    Home's held-out loss of llmfs-tiny was measured on (batch, length and seed of its pretraining, `home_heldout`),
    the run's own number of batches at each evaluation and all of Home's at the last, so a fine-tune's figure and
    Home's compare. Elsewhere: the run's batch and sequence length."""
    from .train import HeldOutWindows
    if cfg.data.strip() == DEFAULT_DATA:
        home = home_heldout()
        seq = min(home["seq_len"], context) if context else home["seq_len"]
        return HeldOutWindows(tokens, home["batch_size"], seq, min(cfg.eval_batches, home["batches"]),
                              seed=home["seed"], final_batches=home["batches"])
    return HeldOutWindows(tokens, cfg.batch_size, cfg.seq_len, cfg.eval_batches, seed=cfg.seed + 1)


def home_heldout() -> dict:
    """How Home's held-out loss of llmfs-tiny was measured: {batch_size, seq_len, seed, batches} of the windows
    drawn from llmfs-corpus's held-out documents (recorded by the pretraining; the default pretraining's for a
    build from before it was recorded)."""
    from .bootstrap import PRETRAIN, heldout_windows_of
    recorded = (require_default().info().get("pretrain") or {}).get("heldout_windows")
    return recorded or heldout_windows_of(PRETRAIN)


def train_job(ctx: JobContext, payload: dict) -> dict:
    """Load the model and data named by the config, train with the shared loop, save the model (or the adapter)."""
    from . import distributed
    from .weights import save_hf_folder

    cfg = from_dict(TrainConfig, payload)
    ensure_builtins(ctx, needs_builtins(cfg))
    env = distributed.current()  # one process, or one rank of several: the launcher decided (`llmfs.runner`)
    t0 = time.time()
    ctx.log(f"Loading model {cfg.model} ({cfg.init} weights) ...")
    fmt = example_format(cfg)
    # examples without a chosen length take their own (cut to the model's context): nothing to check it against yet
    follows = fmt != "text" and not seq_len_was_set(cfg)
    built = build_model(ctx, cfg.replace(seq_len=2) if follows else cfg)  # the family's builder (`llmfs.builders`)
    model, tokenizer, plan, base_name = built.model, built.tokenizer, built.plan, built.base_name
    ctx.log(f"Reading and tokenizing {cfg.data} ..." if fmt == "text" else
            f"Reading the examples of {cfg.data} ({fmt} format) ...")
    data = (_text_data if fmt == "text" else _example_data)(ctx, cfg, payload, tokenizer, model, env, t0)
    cfg, batches, heldout, total = data.cfg, data.batches, data.heldout, data.total
    ctx.log(f"Held-out loss: measured on {data.heldout_on}" + (f", {heldout.tokens_read:,} tokens." if heldout.usable
                                                                else "."))
    if heldout.note:
        ctx.log(heldout.note)
    ctx.emit(0, kind="heldout", on=data.heldout_on, tokens=heldout.tokens_read, note=heldout.note or "")
    before = _samples(model, tokenizer, data.prompts, cfg) if env.is_main else []
    ctx.progress(0, total)
    result = train(model, batches, cfg, val_batches=heldout,
                   sink=ctx, should_stop=ctx.should_stop, checkpoint_dir=ctx.checkpoint_dir, resume=ctx.resume,
                   total_steps=total, freeze_plan=plan)
    if env.active and distributed.is_fsdp(model):  # gather the shards: rank 0 samples and saves a whole copy
        whole, _ = distributed.full_state(model, None)
        if env.is_main:
            model = _whole_copy(ctx, cfg, whole)
    if not env.is_main:
        return {}
    ctx.progress(result.steps_done, total)
    after = _samples(model, tokenizer, data.prompts, cfg)
    samples = [{"prompt": b["prompt"], "before": b["text"], "after": a["text"],
                **({"expected": b["expected"]} if "expected" in b else {})} for b, a in zip(before, after)]
    out = {
        "final_loss": result.final_loss, "losses": result.losses, "steps": result.steps_done,
        "total_steps": total, "stopped": result.stopped,
        "eval_loss": result.evals[-1]["eval_loss"] if result.evals else None,
        "tokens_per_s": result.tokens_per_s, "peak_memory_bytes": result.peak_memory_bytes,
        "trainable_params": result.trainable_params, "total_params": result.total_params, "samples": samples,
        "precision": result.precision, "seq_len": cfg.seq_len, "seq_len_note": data.seq_len_note,
        "heldout_on": data.heldout_on, "heldout_tokens": heldout.tokens_read if heldout.usable else 0,
        "heldout_note": heldout.note, "data_format": fmt,
    }
    if data.examples is not None:
        out["examples"] = data.examples
    if cfg.precision == "fp16" and cfg.grad_scaling:
        out.update(loss_scales=result.loss_scales, skipped_steps=result.skipped_steps)
    out["memory_estimate"] = _memory_estimate(model, cfg)
    if cfg.lora and result.history:
        out["adapter_dir"] = str(_save_adapter(model, cfg, ctx.run_dir / "adapter", base_name))
        saved = record_training(out["adapter_dir"], base=base_name, data=cfg.data, steps=result.steps_done,
                                rank=cfg.lora_rank, alpha=cfg.lora_alpha, targets=cfg.lora_targets,
                                quantize=cfg.quantize, precision=cfg.precision, final_loss=out["final_loss"],
                                eval_loss=out["eval_loss"], run_id=ctx.run_dir.name,
                                name=Run(ctx.run_dir).name)
        ctx.log(f"Saved the LoRA adapter to {out['adapter_dir']} (PEFT's format; base model: {saved.base_model}).")
    elif cfg.save_model and result.history:
        save_hf_folder(model.cpu().float(), ctx.run_dir / "model", tokenizer=tokenizer)
        ctx.log(f"Saved the model to {ctx.run_dir / 'model'} (a Hugging Face folder).")
    return out


@dataclasses.dataclass
class _RunData:
    """What a run trains and evaluates on, however its data is read (plain text, or examples)."""
    cfg: TrainConfig              # with the sequence length the data set
    batches: object               # a `llmfs.train.BatchSource`
    heldout: object               # `HeldOutWindows` or `HeldOutExamples`
    heldout_on: str
    total: int                    # optimizer steps
    prompts: list                 # text prompts, or conversations, to sample before and after training
    seq_len_note: str | None = None
    examples: dict | None = None  # for examples: what `EncodedSet.report` counts


def _text_data(ctx: JobContext, cfg: TrainConfig, payload: dict, tokenizer, model, env, t0: float) -> _RunData:
    """Plain text: one long token stream, random windows of the sequence length (short text: shorter windows)."""
    from . import distributed
    from .data.text import load_tokens
    part = _data_part(cfg.data, env)
    data = load_tokens(cfg.data, tokenizer, part=part)
    train_tokens, val_tokens = data.train, data.heldout
    cfg, fitted = fit_to_data(cfg, len(train_tokens) if part is None else
                              min(distributed.gather(len(train_tokens), env)))
    fitted = fitted or payload.get(SEQ_LEN_NOTE)  # fitted before it was queued (`submit_train`)
    if fitted:
        ctx.log(fitted)
    if part is None:
        total = total_steps_for(cfg, len(train_tokens))
    else:  # every rank its own share: the same step count on all of them, from the whole
        shares = distributed.gather(len(train_tokens), env)
        total = total_steps_for(cfg, sum(shares) // env.world_size)
        ctx.log(f"Each of the {env.world_size} processes reads its own part of {cfg.data} (whole shards or every "
                f"{env.world_size}th document): {', '.join(f'{n:,}' for n in shares)} training tokens.")
        ctx.emit(0, kind="data_parts", train_tokens=shares)
    ctx.log(f"{len(train_tokens):,} training tokens, {len(val_tokens):,} held-out; {total} steps of "
            f"{cfg.tokens_per_step * env.world_size:,} tokens on {_where(cfg, env)} (set-up {time.time() - t0:.1f}s).")
    _log_precision(ctx, cfg)
    if part is not None:  # each rank draws from its own share of the data
        batches = RandomWindows(train_tokens, cfg.batch_size, cfg.seq_len, seed=cfg.seed + 1_000_003 * env.rank)
    else:
        # Several processes on data every rank read whole: each step's global batch (per-process batch x processes)
        # is drawn as one process would draw it and every rank trains on its own rows of it, so the run matches one
        # process with the global batch.
        batches = RandomWindows(train_tokens, cfg.batch_size * env.world_size, cfg.seq_len, seed=cfg.seed)
        if env.active:
            batches = distributed.RankSlice(batches, env)
    return _RunData(cfg, batches, heldout_windows(cfg, val_tokens, _context_of(model)), data.split.heldout_on, total,
                    sample_prompts(val_tokens, tokenizer), fitted)


def _example_data(ctx: JobContext, cfg: TrainConfig, payload: dict, tokenizer, model, env, t0: float) -> _RunData:
    """Examples: each rendered through the model's chat template, trained on the assistant's tokens (or all), one
    example per row padded to the batch's longest (or packed when asked); every 10th example held out (a handful:
    measured on the training examples, with a note); the sequence length from the longest example unless set."""
    from . import distributed
    from .data.example_batches import ExampleBatches, HeldOutExamples, PackedExamples
    from .data.examples import prepare, read_examples
    examples = read_examples(cfg.data, cfg.data_format)
    context = _context_of(model)
    prepared = prepare(examples, tokenizer, cfg.seq_len if seq_len_was_set(cfg) else None, cfg.train_on, context)
    note = None
    if prepared.seq_len != cfg.seq_len:
        note = (f"Sequence length {prepared.seq_len:,} (the longest example"
                f"{', cut to ' + format(prepared.seq_len, ',') if prepared.truncated else ''}) instead of "
                f"{cfg.seq_len:,}: it follows the examples when you do not set it.")
        cfg = cfg.replace(seq_len=prepared.seq_len)
        ctx.log(note)
    report = prepared.report()
    ctx.log(f"{report['examples']:,} examples to train on ({report['trained_tokens']:,} of their {report['tokens']:,} "
            f"tokens trained on: {'the answers' if cfg.train_on == 'assistant' else 'all of them'}), "
            f"{report['heldout_examples']:,} held out; through {prepared.template}.")
    if prepared.truncated:
        ctx.log(f"{prepared.truncated:,} example{'s were' if prepared.truncated != 1 else ' was'} longer than "
                f"{cfg.seq_len + 1:,} tokens and cut at the end.")
    if prepared.dropped:
        ctx.log(f"{prepared.dropped:,} example{'s' if prepared.dropped != 1 else ''} left out: the answer lies beyond "
                "the sequence length, so nothing was left to learn from.")
    ctx.emit(0, kind="examples", **report)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = cfg.batch_size * env.world_size
    if cfg.pack:
        batches = PackedExamples(prepared.train, width, cfg.seq_len, seed=cfg.seed)
    else:
        batches = ExampleBatches(prepared.train, width, pad, seed=cfg.seed, grad_accum=cfg.grad_accum)
    if env.active:
        batches = distributed.RankSlice(batches, env)
    total = total_steps_for(cfg, prepared.tokens)
    ctx.log(f"{total} steps of {cfg.batch_size * env.world_size} examples on {_where(cfg, env)} "
            f"(set-up {time.time() - t0:.1f}s).")
    _log_precision(ctx, cfg)
    heldout = HeldOutExamples(prepared.heldout, cfg.batch_size, pad, prepared.heldout_note)
    prompts = _sample_conversations(examples, prepared)
    return _RunData(cfg, batches, heldout, prepared.heldout_on, total, prompts, note, report)


def _sample_conversations(examples, prepared, n: int = 2) -> list[list[dict]]:
    """Conversations to answer before and after training: held-out ones first (the model never trained on them)."""
    held = prepared.heldout_index
    rest = [i for i in range(len(examples)) if i not in set(held)]
    return [examples.conversations[i] for i in (held + rest)[:n]]


def _samples(model, tokenizer, prompts: list, cfg: TrainConfig) -> list[dict]:
    """Text sampled for each prompt: a text prompt is continued; a conversation's question is answered greedily
    through the chat template, as the model's most likely answer ({"prompt": the question, "text": the answer,
    "expected": the answer the example gives})."""
    from .data.examples import question_and_answer
    from .generate import SampleConfig, reply, sample_many
    if not prompts or isinstance(prompts[0], str):
        return sample_many(model, tokenizer, prompts, SampleConfig(seed=cfg.seed))
    greedy = SampleConfig(temperature=0.0, max_new_tokens=64, seed=cfg.seed)
    out = []
    for conversation in prompts:
        question, answer = question_and_answer(conversation)
        text = reply(model, tokenizer, messages=question, cfg=greedy)["text"].strip()
        out.append({"prompt": question[-1]["content"], "text": text, "expected": answer})
    return out


def _where(cfg: TrainConfig, env) -> str:
    return resolve_device(cfg.device) + (f", {env.world_size} processes ({cfg.strategy.upper()})" if env.active
                                         else "")


def _context_of(model) -> int | None:
    """The model's context length (ours: config.n_positions; a transformers model: its config's), if it says."""
    config = getattr(getattr(model, "hf", None), "config", None) or getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _data_part(data: str, env) -> tuple[int, int] | None:
    """(rank, processes) when each process should read only its own part of `data`: several processes and at
    least one input (a shard, a file) per process, so a large or remote dataset is read once in all, not once per
    process. Smaller data (one file) is read whole by every rank, which then trains on its rows of each global
    batch. None: read it whole."""
    if not env.active or data.startswith(HF_PREFIX):
        return None
    from .data.readers import DataError, resolve_inputs
    try:
        inputs = resolve_inputs(data)
    except DataError:
        return None
    return (env.rank, env.world_size) if len(inputs) >= env.world_size else None


def _whole_copy(ctx: JobContext, cfg: TrainConfig, state: dict):
    """The trained model as one plain module on the CPU, from an FSDP run's gathered tensors."""
    quiet = RankContext(ctx.run, StopFile(ctx.run_dir), resume=False)
    model = build_model(quiet, cfg.replace(device="cpu")).model
    model.load_state_dict(state, strict=False)
    return model


def _log_precision(ctx: JobContext, cfg: TrainConfig) -> None:
    from .precision import MODE_HELP, plan_precision
    plan = plan_precision(cfg.precision, resolve_device(cfg.device), tf32=cfg.tf32, grad_scaling=cfg.grad_scaling)
    ctx.log(f"Precision {plan.mode}{' + TF32' if plan.tf32 else ''}: {MODE_HELP[plan.mode]}")
    for note in plan.warnings:
        ctx.log(f"Note: {note}")


def _memory_estimate(model, cfg: TrainConfig) -> dict | None:
    """The pre-flight estimate for this run's method, precision, freezing strategy, shapes and batch
    (`llmfs.memory.estimate_run`), to set beside the measured peak; None when the model's shapes cannot be read
    (the run's result does not depend on it)."""
    from .memory import estimate_run
    config = getattr(getattr(model, "hf", None), "config", None)
    config = config.to_dict() if config is not None else model.config
    try:
        return estimate_run(config, cfg).to_dict()
    except (ValueError, TypeError):
        return None


def _save_adapter(model, cfg: TrainConfig, path: Path, base_name: str) -> Path:
    """The run's adapter in PEFT's format: ours through `llmfs.lora.save_adapter`, PEFT's through its own
    save_pretrained; both name the base model so `PeftModel.from_pretrained` finds it."""
    from . import lora
    from .hf_causal import CausalLM
    if isinstance(model, CausalLM):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(".adapter.tmp-", path.parent)
        model.hf.save_pretrained(str(tmp))
        replace_dir(tmp, path)
        return path
    return lora.save_adapter(model, path, "default", alpha=cfg.lora_alpha, rslora=cfg.lora_rslora,
                             base_model=base_name,
                             targets=lora.target_modules(cfg.lora_targets,
                                                         getattr(model.config, "model_type", "gpt2")))


def submit_precision_comparison(jobs: JobManager, cfg: TrainConfig, modes=("fp32", "fp16", "bf16"),
                                owner: str | None = None) -> list[str]:
    """The same model, data and seed once per precision mode, queued back to back (FIFO: they run one after the
    other, never competing for the device). Every mode is checked before any is queued."""
    configs = [cfg.replace(precision=m) for m in modes]
    if not configs:
        raise ConfigError("precision", "Pick at least one precision to compare.")
    for c in configs:
        jobs.admit("train", c)
        preflight_train(c)
    _, note = fit_to_data(configs[0])  # short text: the same shorter sequence for every mode
    if note:
        configs = [{**dataclasses.asdict(fit_to_data(c)[0]), SEQ_LEN_NOTE: note} for c in configs]
    return jobs.submit_batch([("train", c) for c in configs], owner=owner)


def precision_comparison(jobs: JobManager, run_ids: list[str]) -> list[dict]:
    """`llmfs.precision.summarize` over the runs' results and telemetry (runs still going have no figures yet)."""
    from .precision import peak_nvml_bytes, summarize
    rows = []
    for rid in run_ids:
        run = jobs.get(rid)
        status = run.status()
        result = status.get("result") or {}
        rows.append({"run_id": rid, "state": status.get("state"),
                     "precision": result.get("precision") or run.config().get("precision", "fp32"),
                     "tokens_per_s": result.get("tokens_per_s"), "peak_memory_bytes": result.get("peak_memory_bytes"),
                     "final_loss": result.get("final_loss"), "skipped_steps": result.get("skipped_steps"),
                     "peak_nvml_bytes": peak_nvml_bytes(run.read_metrics("telemetry"))})
    return summarize(rows)


def sample_prompts(val_tokens, tokenizer, n: int = 2, length: int = 12) -> list[str]:
    """Prompts cut from held-out text (so they suit whatever data the run trains on), spread through it."""
    starts = [int(len(val_tokens) * i / n) for i in range(n)]
    prompts = [tokenizer.decode(val_tokens[s: s + length].tolist()).replace(tokenizer.eos_token or "", "").strip()
               for s in starts]
    return [p for p in prompts if p] or ["The"]


def pipeline_job(ctx: JobContext, payload: dict) -> dict:
    from .data.pipeline import pipeline_job as run
    inputs = payload.get("inputs") or ()
    ensure_builtins(ctx, any(str(s).strip() in BUILTIN_TEXT for s in ([inputs] if isinstance(inputs, str) else inputs)))
    return run(ctx, payload)


def eval_job(ctx: JobContext, payload: dict) -> dict:
    cfg = from_dict(EvalConfig, payload)
    ensure_builtins(ctx, is_default(cfg.model) or (not cfg.data.strip() and cfg.task in BUILTIN_EVAL_TASKS))
    return run_eval(ctx, payload)


