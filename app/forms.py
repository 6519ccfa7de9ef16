"""Forms drawn from config dataclasses: one widget per field, from the field's metadata (label, help, min / max,
advanced). The dataclass stays the one validator: the form builds the config and, when `__post_init__` refuses
it, shows the message naming the field instead of returning a config.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
import types
from pathlib import Path
from typing import Any, Callable, Union, get_args, get_origin

import streamlit as st

from llmfs.config import DEFAULT_DATA, DEFAULT_MODEL, PYTHON_QA, ConfigError, field_info
from llmfs.jobs import LimitError
from llmfs.sources import SourceError, looks_like_path

from . import identity, settings_view, state
from .choices import data_choice, model_choice, pipeline_outputs, saved_models, trained_models
from .text import md_escape, rough_duration
from .uploads import TRAINING_SUFFIXES, fmt_mb, saved_upload, upload_limit_mb

# The built-in names first (llmfs.sources.BUILTIN_MODELS), then the kinds of source a person types or picks.
MODEL_SOURCES = {DEFAULT_MODEL: "llmfs-tiny (built in, a tiny 1.35M GPT-2, works offline)",
                 "smollm2-135m": "smollm2-135m (built in, a real 135M chat model, works offline)",
                 "mine": "A model you trained or saved", "folder": "A folder on this machine",
                 "hub": "A Hugging Face hub id"}
SOURCE_KINDS = ("mine", "folder", "hub")
DATA_SOURCES = {DEFAULT_DATA: "llmfs-corpus (built in)",
                PYTHON_QA: "llmfs-python-qa (built in: questions about Python)",
                "upload": "Upload a .txt / .jsonl / .parquet file of text, or .jsonl / .json / .csv examples",
                "pipeline": "The output of an L13 data pipeline run",
                "hubdata": "A Hugging Face hub dataset",
                "path": "A file, a folder or WebDataset shards on this machine"}


def config_form(cls: type, key: str, defaults: Any = None, fields: list[str] | None = None) -> Any | None:
    """Draw a widget per field of the dataclass `cls` and return the config they describe, or None (with the
    reason shown under the form) when the values are refused.

    Args:
        key: prefix of the widget keys; one form per key on a page.
        defaults: a dict (or instance of `cls`) of starting values; fields not drawn keep these values.
        fields: the fields to draw, in order (default: all); advanced ones go into an "Advanced settings" expander.
    """
    info = field_info(cls)
    start = dataclasses.asdict(defaults) if dataclasses.is_dataclass(defaults) else dict(defaults or {})
    names = list(fields) if fields is not None else list(info)
    settings_view.remember_drawn(key, names)            # a loaded settings file may set these widgets
    start = settings_view.start_values(key, cls, start)  # the class preset, where the instructor set one
    values = {n: start[n] for n in start if n not in names}
    limits_of = functools.cache(_limits_for)   # one read of the model's config per form, not one per field

    def draw(name: str) -> None:
        # the model drawn (or given) so far bounds some fields: their help shows its range, not the config's
        meta = _bounded(info[name], name, limits_of(values.get("model", start.get("model"))))
        values[name] = _widget(name, meta, start.get(name, info[name]["default"]), key)

    for name in [n for n in names if not info[n].get("advanced")]:
        draw(name)
    advanced = [n for n in names if info[n].get("advanced")]
    if advanced:
        with st.expander("Advanced settings"):
            for name in advanced:  # one per line: two abreast broke the labels in a form a third of a laptop wide
                draw(name)
    picked = _PICKED.__dict__.pop(key, None)   # what the data picker left for this form (`_data_picker`)
    try:
        cfg = cls(**values)
        _check_against_model(cfg, limits_of(getattr(cfg, "model", None)))
    except ConfigError as e:
        if e.field == "data" and picked is not None and picked.waiting:
            return None  # no data chosen yet: the picker says what it waits for; an error comes only after a mistake
        show_config_error(e, info.get(e.field, {}), advanced=bool(info.get(e.field, {}).get("advanced")))
        return None
    return _data_checked(cfg, picked)


def show_config_error(e: ConfigError, meta: dict, *, advanced: bool = False) -> None:
    """A refused value, under the form: the field's label (where the message does not start with it) and the
    message, shown as written (it may quote a path or a name, which Markdown would mangle)."""
    label, message = label_of(e.field, meta), str(e)
    where = " (under Advanced settings)" if advanced else ""
    head = f"**{md_escape(label)}**{where}: " if where or not message.startswith(label) else ""
    st.error(head + md_escape(message), icon=":material/error:")


def _limits_for(source: Any) -> dict[str, int]:
    """The field maxima the model `source` sets (`llmfs.weights.model_limits`), read once per folder state."""
    if not isinstance(source, str) or not source.strip():
        return {}
    path = Path(source.strip()).expanduser()
    stamp = (path / "config.json").stat().st_mtime if (path / "config.json").is_file() else 0.0
    return _model_limits(source.strip(), stamp)


@st.cache_data(show_spinner=False, max_entries=64)
def _model_limits(source: str, stamp: float) -> dict[str, int]:
    from llmfs.weights import model_limits
    return model_limits(source)


def _bounded(meta: dict, name: str, limits: dict[str, int]) -> dict:
    """`meta` with its maximum lowered to what the chosen model allows (and the help saying why)."""
    if name not in limits or meta.get("max") is None or limits[name] >= meta["max"]:
        return meta
    why = {"seq_len": "the model's context length", "freeze_layers": "the model's number of blocks"}.get(name)
    return {**meta, "max": limits[name], "max_why": why}


def _check_against_model(cfg: Any, limits: dict[str, int]) -> None:
    """The checks a run's preflight makes against its model, made here so the form refuses in place."""
    if "seq_len" in limits and hasattr(cfg, "check_context"):
        cfg.check_context(limits["seq_len"])
    if "freeze_layers" in limits and hasattr(cfg, "check_layers"):
        cfg.check_layers(limits["freeze_layers"])


def start_button(key: str, cfg: Any | None, label: str = "Start training") -> bool:
    """The page's start button: off while the form's values are refused or the page's last run is still going;
    above it, for a training run, the time it is expected to take here."""
    busy = state.busy(key)
    if cfg is not None and hasattr(cfg, "lora_rank") and hasattr(cfg, "steps"):
        expected_time(cfg)
        _quick_settings(cfg, key)
    pressed = st.button(label, type="primary", icon=":material/play_arrow:", disabled=cfg is None or busy,
                        key=f"{key}.start")
    if busy:
        st.caption("The run started from this page is still going: stop it, or wait for it to finish.")
    return pressed and cfg is not None


def expected_time(cfg: Any) -> None:
    """"Expected time: about 4 min" from the model's size and this machine's speed (`llmfs.timing`), or nothing
    when the model's shape is not known without loading it (a hub id not downloaded yet)."""
    from llmfs.architecture import config_of
    from llmfs.timing import estimate_train
    from llmfs.train import resolve_device
    try:
        shape = config_of(cfg.model)
        device = resolve_device(cfg.device)
        if shape is None:
            return
        est = estimate_train(cfg, shape, device=device, observed_tokens_per_s=_observed_speed(
            str(cfg.model), int(cfg.lora_rank), str(cfg.quantize), device))
    except (ValueError, OSError, RuntimeError):
        return
    runs = len(cfg.modes) if hasattr(cfg, "modes") else 1
    st.caption(f"**Expected time: {rough_duration(est.seconds * runs)}** " + md_escape(
        f"({est.steps} steps at about {_seconds(est.seconds_per_step)} each), an estimate from {est.basis}; loading "
        "the model and waiting for other runs come on top."))


def _seconds(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:.0f} s"


@st.cache_data(ttl=30, show_spinner=False, max_entries=64)
def _observed_speed(model: str, lora_rank: int, quantize: str, device: str) -> float | None:
    """`llmfs.timing.observed_speed` over the runs on disk, read at most every 30 s per model and method rather than
    on every rerun of a form (a workshop server holds hundreds of runs)."""
    from llmfs.timing import observed_speed
    return observed_speed(state.jobs().list_runs(), types.SimpleNamespace(
        model=model, lora_rank=lora_rank, quantize=quantize), device)


def submit_job(key: str, submit: Callable[[], str]) -> None:
    """Call `submit()` (which queues a job and returns its run id); remember the run for page `key` and redraw
    the page, or show why it was refused (a bad value, a missing file, no GPU, a workshop limit) where the user
    pressed the button."""
    if try_submit(key, submit) is not None:
        st.rerun()  # redraw the page with the run in it: the start button off, the panel live


def try_submit(key: str, submit: Callable[[], str]) -> str | None:
    """`submit()` and remember the run for page `key`; returns its id, or None after showing the refusal here.
    Every submission goes through `state.jobs()`, so it carries the session's name and meets the workshop's limits."""
    try:
        run_id = submit()
    except ConfigError as e:
        show_config_error(e, field_info_any(e.field))
        return None
    except LimitError as e:
        st.error(f"**Not queued: a limit of this workshop.** {md_escape(e)}", icon=":material/block:")
        return None
    except (SourceError, ValueError, OSError) as e:
        st.error(md_escape(e), icon=":material/error:")
        return None
    state.remember(key, run_id)
    return run_id


def label_of(name: str, meta: dict) -> str:
    return meta.get("label") or name.replace("_", " ").capitalize()


def field_info_any(name: str) -> dict:
    from llmfs.config import TrainConfig
    return field_info(TrainConfig).get(name, {})


# -- one widget per field ---------------------------------------------------------------------------------------
def _widget(name: str, meta: dict, default: Any, key: str) -> Any:
    label, help_, wkey = label_of(name, meta), meta.get("help"), f"{key}.{name}"
    if name == "model":
        return _source_picker(label, help_, default, wkey, MODEL_SOURCES, DEFAULT_MODEL)
    if name == "data":
        return _data_picker(label, help_, default, wkey)
    if meta.get("choices"):
        choices = list(meta["choices"])
        return st.selectbox(label, choices, index=choices.index(default) if default in choices else 0,
                            help=help_, key=wkey, persist_state="session")
    base, optional = _base_type(meta["type"])
    if base is bool:
        return st.checkbox(label, value=bool(default), help=help_, key=wkey, persist_state="session")
    # The range goes into the help, not into the widget's min / max: a number input with bounds silently keeps
    # its last value when an out-of-range one is typed (and a run would start with it); without them the value
    # reaches the dataclass, whose message names the field and the range, and the start button stays off.
    if base is int:
        return st.number_input(label, value=None if default is None else int(default),
                               step=int(meta.get("step") or 1), help=_with_range(help_, meta), key=wkey,
                               persist_state="session",
                               placeholder="empty" if optional else None)
    if base is float:
        return st.number_input(label, value=None if default is None else float(default),
                               step=float(meta.get("step") or _float_step(default)), format="%g",
                               help=_with_range(help_, meta), key=wkey, persist_state="session",
                               placeholder="empty: not used" if optional else None)
    value = st.text_input(label, value="" if default is None else str(default), help=help_, key=wkey,
                          persist_state="session")
    return None if optional and not value.strip() else value


def _source_picker(label: str, help_: str | None, default: str, wkey: str, sources: dict, builtin: str) -> str:
    """A choice between the built-in source and the other kinds, with a text box for a path or hub id."""
    kinds = list(sources)
    initial, text = model_choice(default)   # as a loaded settings file sets it (app.settings_view)
    if initial not in kinds:
        initial = "folder" if "folder" in sources else kinds[1]
    kind = st.selectbox(label, kinds, index=kinds.index(initial), format_func=sources.get, help=help_,
                        key=f"{wkey}.kind", persist_state="session")
    if kind == builtin or kind not in SOURCE_KINDS:  # a built-in name is its own source
        from llmfs.packaged import PACKAGED
        if kind in PACKAGED:
            st.caption(md_escape(PACKAGED[kind].about))
        return kind
    if kind == "mine":
        return _own_model_picker(default, wkey)
    if kind == "hub":
        return st.text_input("Hub id", value=text, placeholder="gpt2", key=f"{wkey}.hub", persist_state="session",
                             help="Downloaded once into the Hugging Face cache; needs a network the first time.")
    placeholder = "/path/to/model-folder (it holds config.json)" if "hub" in sources else "/path/to/texts or file.jsonl"
    return st.text_input("Path on this machine", value=text, placeholder=placeholder, key=f"{wkey}.path",
                         persist_state="session")


def _quick_settings(cfg: Any, form_key: str) -> None:
    """Beside the expected time, for a built-in model that is slow on a CPU (smollm2-135m) while the form asks for
    more: one click to settings that finish in a few minutes here (`llmfs.timing.QUICK_CPU`; the fields of the
    page's form, whose widgets are keyed `<form_key>.<field>`)."""
    from llmfs.timing import QUICK_CPU
    quick = QUICK_CPU.get(str(cfg.model).strip())
    if not quick or state.machine().get("cuda_available"):
        return
    work = lambda c: c["steps"] * c["batch_size"] * c["seq_len"]  # noqa: E731 - the tokens the run trains on
    if work(vars(cfg) if not dataclasses.is_dataclass(cfg) else dataclasses.asdict(cfg)) <= work(quick):
        return   # already as quick

    def use_quick() -> None:
        for name, value in quick.items():
            st.session_state[f"{form_key}.{name}"] = value

    st.button("Use quick settings for this CPU", key=f"{form_key}.quick", on_click=use_quick,
              icon=":material/bolt:", help=md_escape(
                  "A 135M-parameter model trains slowly without a GPU. These settings finish in a few minutes: " +
                  ", ".join(f"{k} {v}" for k, v in quick.items()) + " (fields this page does not show are left "
                  "alone)."))


def _own_model_picker(default: str, wkey: str) -> str:
    """The models of this person's finished training runs and the ones they saved (L12, L15), by name: in a
    workshop nobody types a server path."""
    trained = [m for m in trained_models() if identity.may_see_texts(m["user"])]
    labels = {m["path"]: m["label"] for m in trained} | {p: f"{Path(p).name} (saved model)" for p in saved_models()}
    if not labels:
        st.caption("No model of yours yet: train one (it is kept when its run finishes), or save one on L12 or L15.")
        return ""
    options = list(labels)
    return st.selectbox("Your model", options, index=options.index(default) if default in options else 0,
                        format_func=labels.get, key=f"{wkey}.mine", persist_state="session")


class _Picked:
    """What the data picker of a form left for `config_form` in this script run: whether it waits for a choice
    (so the form shows no error for the empty value), and a place under the widget for the data's counts."""

    def __init__(self, slot, waiting: bool):
        self.slot, self.waiting = slot, waiting


_PICKED = threading.local()   # form key -> _Picked, per script run (each session's script runs in its own thread)


def _data_picker(label: str, help_: str | None, default: str, wkey: str) -> str:
    """Training text: the built-in corpus, an upload, a pipeline run's shards, a hub dataset, or a path. Under the
    choice: what it holds (documents, characters, tokens, `_data_checked`), or, while nothing is chosen yet, a
    caption saying what Start waits for (not an error: nothing was done wrong)."""
    value = _pick_data(label, help_, default, wkey)
    form_key = wkey.removesuffix(".data")
    _PICKED.__dict__[form_key] = _Picked(st.container(), waiting=not value.strip())
    return value


def _pick_data(label: str, help_: str | None, default: str, wkey: str) -> str:
    kinds = list(DATA_SOURCES)
    initial, text = data_choice(default)   # as a loaded settings file sets it (app.settings_view)
    kind = st.selectbox(label, kinds, index=kinds.index(initial), format_func=DATA_SOURCES.get, help=help_,
                        key=f"{wkey}.kind", persist_state="session")
    if kind in (DEFAULT_DATA, PYTHON_QA):   # a built-in name is its own source
        return kind
    if kind == "upload":
        return _upload_picker(wkey)
    if kind == "pipeline":
        outputs = pipeline_outputs()
        if not outputs:
            st.caption("No finished pipeline run yet: build one on the L13 page.")
            return ""
        pick = st.selectbox("Pipeline run", outputs, format_func=lambda o: o["label"], key=f"{wkey}.pipeline",
                            persist_state="session")
        return pick["path"]
    if kind == "hubdata":
        name = st.text_input("Dataset", value=text if initial == "hubdata" else "",
                             placeholder="wikitext:wikitext-2-raw-v1", key=f"{wkey}.hub", persist_state="session",
                             help="NAME or NAME:CONFIG, streamed from the hub (needs a network).")
        if not name.strip():
            st.caption("Type a dataset's name: Start waits for it.")
        return f"hf:{name.strip()}" if name.strip() else ""
    path = st.text_input("Path on this machine", value=text if initial == "path" else "",
                         placeholder="/path/to/texts, file.jsonl or shards/shard-{000000..000009}.tar",
                         key=f"{wkey}.path", persist_state="session")
    if not path.strip():
        st.caption("Type the path of a file, a folder or shards: Start waits for it.")
    return path


def _upload_picker(wkey: str) -> str:
    """An uploaded file's saved path, or "". A file uploader cannot keep its file when the person leaves the page
    (Streamlit drops it), so the last file saved from this picker is remembered for the browser session and used
    again on return, said in a caption, until another is uploaded or the person lets it go."""
    limit = upload_limit_mb()
    last_key, use_key = f"{wkey}.last_upload", f"{wkey}.use_last"
    fresh = f"{wkey}.upload" not in st.session_state    # the page was just opened (again): the uploader is empty
    upload = st.file_uploader(f"Your file (up to {fmt_mb(limit)}; text, or examples to learn from)",
                              type=[x[1:] for x in TRAINING_SUFFIXES], key=f"{wkey}.upload",
                              max_upload_size=max(1, math.ceil(limit)),
                              help='Text: .txt, .parquet with a "text" column, or .jsonl with one {"text": ...} a '
                                   'line. Examples (questions and the answers to learn): .jsonl / .json records '
                                   'such as {"prompt": "...", "response": "..."}, chat {"messages": [...]} or '
                                   'Alpaca {"instruction", "input", "output"}, or a .csv of two columns, the '
                                   'question then the answer.')
    if upload is not None:
        path = saved_upload(upload, wkey, kind="training")
        st.session_state[last_key], st.session_state[use_key] = (None if path is None else str(path)), False
        return "" if path is None else str(path)
    last = st.session_state.get(last_key)
    if last and not Path(last).is_file():   # deleted since (a workshop's clean-up, another tab)
        last = st.session_state[last_key] = None
    if fresh and last:
        st.session_state[use_key] = True
    if last and st.session_state.get(use_key):
        left, right = st.columns([4, 1], vertical_alignment="center")
        left.caption(md_escape(f"Using {Path(last).name}, which you uploaded earlier in this session. Upload "
                               "another file to replace it."))
        if right.button("Forget it", key=f"{wkey}.forget", icon=":material/close:"):
            st.session_state[last_key], st.session_state[use_key] = None, False
            st.rerun()
        return last
    st.session_state[last_key] = None   # taken out of the uploader: forgotten
    st.caption("Choose a file to train on: its documents and tokens are counted here, and Start waits for it.")
    return ""


def _data_checked(cfg: Any, picked: _Picked | None) -> Any | None:
    """`cfg`, after saying under the data picker what the chosen text holds (documents, characters, and tokens to
    train on and held out, counted with the model's tokenizer as the run will: `llmfs.data.text.summarize`) and
    what a run on it will do (a shorter sequence for short text). None, with the reason there, when the text
    cannot train with these settings (too little of it, or shorter than the sequence length the person set)."""
    if picked is None or not all(hasattr(cfg, f) for f in ("data", "model", "seq_len")):
        return cfg
    from llmfs.data.text import summarize
    from llmfs.errors import AccessError
    from llmfs.recipes import fit_to_data
    with picked.slot:
        try:
            state.jobs().admit("train", cfg)  # a workshop's rules first: a path this person may not read is not read
        except AccessError as e:
            st.error(md_escape(e), icon=":material/block:")
            return None
        except LimitError:
            return cfg  # a limit on the run itself (Start says which): its data is not counted before that is fixed
        try:
            words = example_counts(cfg)   # examples (questions and answers): counted as such, not as text
        except (ValueError, OSError) as e:  # a line that is not an example: said where the data was chosen
            st.error(md_escape(e), icon=":material/error:")
            return None
        if words:
            st.caption(md_escape(words))
            return cfg
        try:
            summary = summarize(cfg.data, cfg.model)
        except (ValueError, OSError) as e:  # no such file, an unreadable record: said where the data was chosen
            st.error(md_escape(e), icon=":material/error:")
            return None
        if summary is None:  # the built-in corpus, hub data, big data: nothing to count before the run
            return cfg
        st.caption(md_escape(data_counts(summary)))
        if summary.train_tokens is None:
            return cfg
        try:
            _, note = fit_to_data(cfg, summary.train_tokens)
        except ConfigError as e:
            show_config_error(e, field_info_any(e.field))
            return None
        if note:
            st.info(note + " (A sequence length of your own, under the training settings, is kept as you set it.)",
                    icon=":material/straighten:")
    return cfg


def example_counts(cfg: Any) -> str | None:
    """What a file of examples (or the built-in question set) holds, in words; None for plain text.

    Raises:
        llmfs.data.examples.ExampleError (a ValueError): a record that is not an example, named by its line.
    """
    from llmfs.data.examples import FORMAT_WORDS, read_examples
    from llmfs.recipes import example_format
    if example_format(cfg) == "text":
        return None
    examples = read_examples(cfg.data, cfg.data_format)
    n = len(examples)
    what = "the answers" if getattr(cfg, "train_on", "assistant") == "assistant" else "every token"
    return (f"{n:,} example{'s' if n != 1 else ''} ({FORMAT_WORDS[examples.format]}): each goes through the "
            f"model's chat template as a conversation, and the model learns from {what}. The sequence length "
            "follows the longest example unless you set one.")


def data_counts(summary) -> str:
    """A `DataSummary` in words: "1 document, 1,234 characters: 443 tokens to train on, 25 held out (...)"."""
    docs = f"{summary.documents:,} document{'s' if summary.documents != 1 else ''}"
    text = f"{docs}, {summary.characters:,} characters"
    if summary.train_tokens is None:
        return text + ". Its tokens are counted when the model is on this machine (the run counts them)."
    return (f"{text}: {summary.train_tokens:,} tokens to train on, {summary.heldout_tokens:,} held out to measure "
            f"the held-out loss on ({summary.heldout_on}), counted with {_model_name(summary.tokenizer)}'s "
            "tokenizer.")


def _model_name(model: str) -> str:
    """A model as a sentence names it: a folder by its name (a server path means nothing to a participant)."""
    return Path(model).name if looks_like_path(model) or Path(model).expanduser().is_dir() else model


def _base_type(t: Any) -> tuple[type, bool]:
    """(int / float / bool / str, whether None is allowed) for an annotation such as `float | None`."""
    if get_origin(t) in (Union, types.UnionType):
        args = [a for a in get_args(t) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return t, False


def _with_range(help_: str | None, meta: dict) -> str | None:
    lo, hi = meta.get("min"), meta.get("max")
    if lo is None and hi is None:
        return help_
    if lo is not None and hi is not None:
        span = f"from {_num(lo)} to {_num(hi)}"
    else:
        span = f"{_num(lo)} or more" if lo is not None else f"at most {_num(hi)}"
    why = f" ({meta['max_why']})" if meta.get("max_why") else ""
    return f"{help_ or ''}\n\nAllowed: {span}{why}."


def _num(x: float) -> str:
    if isinstance(x, float) and x and (abs(x) < 1e-3 or abs(x) >= 1e6):
        return f"{x:.0e}"
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def _float_step(default: float | None) -> float:
    """A tenth of the default's leading digit (0.95 -> 0.01, 1.0 -> 0.1), at most 0.1."""
    if not default:
        return 0.01
    return min(0.1, 10.0 ** (math.floor(math.log10(abs(default))) - 1))
