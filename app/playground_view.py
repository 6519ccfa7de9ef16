"""The playground: chat with a model, or let it continue a text, with its adapters side by side (the base and each
adapter on the same prompt and seed), the tokens streaming in, a Stop button, and the token view (each token
coloured by the probability the model gave it, its alternatives on hover and in a chart).

One function draws it all, `chat_panel`, under a session-state key prefix, so the Playground page and L15 share it.

Many people at once: the models are shared by the whole server and answers are written a few at a time
(`served_models`), each at most CAP_NEW_TOKENS long. Training runs in child processes, so a generation never stalls
a run.

Streamlit reruns the script when any button is pressed while it runs: the answer so far lives in session_state,
token by token, so Stop (or any other click) keeps it on screen, marked as stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from llmfs import adapters as lib
from llmfs.config import DEFAULT_MODEL
from llmfs.generate import DEFAULT_PROMPTS, SampleConfig
from llmfs.sources import BUILTIN_MODELS, looks_like_path

from . import adapter_view, choices, forms, identity, served_models, settings_view, state, token_view
from .served_models import BASE
from .text import md_escape

CAP_NEW_TOKENS = 256     # per answer on this page: an answer holds a generation slot others may be waiting for
DEFAULT_NEW_TOKENS = 128
MAX_ADAPTERS = 3         # beside the base: four columns still read on a laptop
BOARD_HEIGHT = 480       # pixels of conversation per column before it scrolls
DRAW_EVERY_S = 0.1       # an answer on screen is redrawn at most this often while it is written
TOP_N = 5                # alternatives kept per token
CHAT, TEXT = "Chat", "Continue text"
PLOT_CONFIG = {"displaylogo": False}
KINDS = {**{name: forms.MODEL_SOURCES.get(name, name) for name in BUILTIN_MODELS},
         "mine": "A model you trained or saved", "hub": "A Hugging Face hub id"}
FINISH_WORDS = {"length": "reached the new-token limit", "context": "reached the model's context length",
                "stopped": "stopped", "interrupted": "stopped: the page changed while it was writing"}


# -- picking the model and the adapters -------------------------------------------------------------------------
def pick_model(key: str, default: str | None) -> str:
    """A built-in model, one of this person's (a run's saved model, or one saved on L12 / L15), or a hub id."""
    kinds = list(KINDS)
    initial = default if default in KINDS else ("mine" if default and looks_like_path(default) else
                                                 "hub" if default else DEFAULT_MODEL)
    kind = st.selectbox("Model", kinds, index=kinds.index(initial), format_func=KINDS.get, key=f"{key}.model.kind",
                        persist_state="session",
                        help="The model that answers. The adapters you can add beside it are the ones trained on "
                             "this model.")
    if kind in BUILTIN_MODELS:
        return kind
    if kind == "hub":
        return st.text_input("Hub id", value=default if initial == "hub" else "", key=f"{key}.model.hub",
                             placeholder="HuggingFaceTB/SmolLM2-135M-Instruct", persist_state="session",
                             help="A model on huggingface.co, downloaded once into this machine's cache (it needs "
                                  "a network the first time). Small models, up to a few hundred million "
                                  "parameters, answer quickly without a GPU.").strip()
    trained = [m for m in choices.trained_models() if identity.may_see_texts(m["user"])]
    labels = {m["path"]: m["label"] for m in trained} | {
        p: f"{Path(p).name} (saved model)" for p in choices.saved_models()}
    if not labels:
        st.caption("No model of yours yet: a training run with *Save the model* on keeps one, and L12 and L15 "
                   "save models too.")
        return ""
    options = list(labels)
    return st.selectbox("Your model", options, index=options.index(default) if default in options else 0,
                        format_func=labels.get, key=f"{key}.model.mine", persist_state="session")


def fitting_adapters(base: str) -> list[lib.AdapterInfo]:
    """The adapters this person may use that were trained on `base`, newest first."""
    return [a for a in adapter_view.usable(lib.list_adapters()) if a.base_model and lib.fits_base(a.base_model, base)]


def pick_adapters(key: str, base: str, given: list[str] | None) -> list[lib.AdapterInfo]:
    adapters = {a.id: a for a in fitting_adapters(base)}
    wkey = f"{key}.adapters"
    if given is not None and st.session_state.get(f"{wkey}.given") != list(given):   # a caller's new suggestion
        st.session_state[f"{wkey}.given"] = list(given)
        st.session_state[wkey] = [i for i in given if i in adapters][:MAX_ADAPTERS]
    current = st.session_state.get(wkey)
    if current and any(i not in adapters for i in current):   # another model picked, or an adapter deleted
        st.session_state[wkey] = [i for i in current if i in adapters]
    if not adapters:
        st.caption(f"No adapter fits {md_escape(adapter_view.base_label(base))} yet: train one on **L15** (it "
                   "lands in the adapter library) and it appears here, beside the model.")
        return []
    picked = adapter_view.picker(
        st, "Adapters to compare", list(adapters), lambda i: adapters[i].name, wkey, multi=True,
        max_selections=MAX_ADAPTERS, placeholder="None: the model alone",
        help=f"Each adapter you pick answers in a column of its own, beside the model without it (up to "
             f"{MAX_ADAPTERS}). Only adapters trained on this model are listed.")
    for i in picked:
        st.caption(f"**{md_escape(adapters[i].name)}**: {md_escape(adapter_view.trained_on(adapters[i]))}")
    return [adapters[i] for i in picked]


def load(key: str, base: str) -> served_models.Served | None:
    """The shared model for `base`, or None with the reason shown. A failure is remembered for this session (a
    hub that does not answer is not asked again on every click) until *Try again*."""
    from llmfs.sources import resolve_model_dir
    failed = st.session_state.setdefault(f"{key}.failed", {})
    error_slot, button_slot = st.empty(), st.empty()
    retried = base in failed
    if retried:
        error_slot.error(failed[base], icon=":material/error:")
        if not button_slot.button("Try again", key=f"{key}.retry", icon=":material/refresh:"):
            return None
        error_slot.empty()
        failed.pop(base)
    try:
        state.ensure_builtins(base)
        with st.spinner(f"Looking for {base} ..."):
            folder = resolve_model_dir(base)
        served = served_models.served(base, folder)
    except Exception as e:   # noqa: BLE001 - any model anyone names: whatever fails is said where they picked it
        failed[base] = (f"Could not load **{md_escape(choices.model_name(base))}**: "
                        f"{md_escape(identity.shown(str(e) or type(e).__name__))}")
        error_slot.error(failed[base], icon=":material/error:")
        if not retried:
            button_slot.button("Try again", key=f"{key}.retry", icon=":material/refresh:")
        return None
    button_slot.empty()
    return served


# -- sampling ---------------------------------------------------------------------------------------------------
def sample_settings(key: str) -> SampleConfig | None:
    """Greedy or sampled, through the house form of SampleConfig; None (with the reason shown) when refused."""
    greedy = st.toggle("Greedy: always the most likely token", key=f"{key}.greedy", persist_state="session",
                       help="On: the model always takes the token it finds most likely, so the same prompt gives "
                            "the same answer every time (temperature 0). Off: it draws each token at random by "
                            "its probability, shaped by the settings below; the seed makes the draw repeatable.")
    if greedy:
        cfg = forms.config_form(SampleConfig, key=f"{key}.sample", fields=["max_new_tokens"],
                                defaults={"max_new_tokens": DEFAULT_NEW_TOKENS, "temperature": 0.0})
    else:
        cfg = forms.config_form(SampleConfig, key=f"{key}.sample", defaults={"max_new_tokens": DEFAULT_NEW_TOKENS})
    settings_view.settings_files(SampleConfig, f"{key}.sample", cfg, page="playground", boxed=False)
    if cfg is not None and cfg.max_new_tokens > CAP_NEW_TOKENS:
        st.error(f"**New tokens**: at most {CAP_NEW_TOKENS} here (you asked for {cfg.max_new_tokens}): the "
                 "playground is shared, and a long answer holds a place others wait for.", icon=":material/error:")
        return None
    return cfg


def settings_summary(cfg: SampleConfig | None) -> str:
    if cfg is None:
        return "Sampling settings (a value needs fixing)"
    if cfg.temperature == 0:
        return f"Sampling: greedy, up to {cfg.max_new_tokens} new tokens"
    return (f"Sampling: temperature {cfg.temperature:g}, top-k {cfg.top_k or 'off'}, top-p {cfg.top_p:g}, "
            f"seed {cfg.seed}, up to {cfg.max_new_tokens} new tokens")


# -- the conversation in session_state --------------------------------------------------------------------------
def conversation(key: str, mode: str, sig: tuple) -> dict:
    """This mode's conversation: {"sig", "turns": [{"user", "system", "replies": {variant: {"tokens", "finish",
    "error", "cut"}}}], "status": idle | running | stopped, "stop_asked"}. A new one when the model or the adapters
    changed; an answer left "running" was cut short by a rerun (Stop, or another click): marked stopped."""
    skey = f"{key}.convo.{mode}"
    convo = st.session_state.get(skey)
    if convo is None or convo["sig"] != sig:
        if convo and convo["turns"]:
            st.caption("A new conversation: the model or the adapters changed.")
        convo = {"sig": sig, "turns": [], "status": "idle", "stop_asked": False}
        st.session_state[skey] = convo
    if convo["status"] == "running":
        for reply in convo["turns"][-1]["replies"].values():
            if reply["finish"] is None and not reply["error"]:
                reply["finish"] = "stopped" if convo["stop_asked"] else "interrupted"
        convo["status"] = "stopped"
    return convo


def _ask_stop(skey: str) -> None:
    convo = st.session_state.get(skey)
    if convo is not None:
        convo["stop_asked"] = True


def messages_for(convo: dict, variant: str) -> list[dict]:
    """The conversation as `variant` saw it: the system message, each earlier question with its own answer, then
    the newest question."""
    turns = convo["turns"]
    system = turns[-1]["system"].strip()
    messages = [{"role": "system", "content": system}] if system else []
    for turn in turns[:-1]:
        answer = turn["replies"].get(variant) or {"tokens": []}
        messages += [{"role": "user", "content": turn["user"]},
                     {"role": "assistant", "content": "".join(t["text"] for t in answer["tokens"])}]
    return messages + [{"role": "user", "content": turns[-1]["user"]}]


# -- generating ---------------------------------------------------------------------------------------------------
def generate(engine: served_models.Engine, convo: dict, mode: str, cfg: SampleConfig, slots: dict, coloured: bool,
             box) -> None:
    """Write the newest turn's answers, one token of each variant in turn so the columns fill together; every
    token is stored in session_state before it is shown (a rerun keeps what was written)."""
    from llmfs.generate import prompt_ids, stream_tokens
    turn = convo["turns"][-1]
    adapted = engine.adapted
    context = int(adapted.model.config.n_positions)
    with served_models.held(served_models.slots(), box, *served_models.NO_SLOT), \
            served_models.held(engine.lock, box, *served_models.MODEL_BUSY):
        streams, drawn = {}, {}
        try:
            for variant in slots:
                reply = turn["replies"][variant]
                try:
                    ids = prompt_ids(adapted.tokenizer, **({"prompt": turn["user"]} if mode == TEXT else
                                                           {"messages": messages_for(convo, variant)}))
                    streams[variant] = stream_tokens(adapted.model, adapted.tokenizer, ids, cfg, top_n=TOP_N)
                except ValueError as e:   # templates.TemplateError: a conversation this template refuses
                    reply["error"] = str(e)
                    _show_reply(slots[variant], reply, cfg, coloured, mode, turn)
                    continue
                reply["cut"] = max(0, len(ids) - (context - 1))
            while streams:
                for variant in list(streams):
                    reply = turn["replies"][variant]
                    adapted.activate(engine.active[variant])
                    try:
                        step = next(streams[variant])
                    except StopIteration:
                        reply["finish"] = streams.pop(variant).finish
                        _show_reply(slots[variant], reply, cfg, coloured, mode, turn)
                        continue
                    except (RuntimeError, ValueError) as e:
                        reply["error"] = f"Generation failed: {identity.shown(str(e))}"
                        streams.pop(variant).close()
                        _show_reply(slots[variant], reply, cfg, coloured, mode, turn)
                        continue
                    reply["tokens"].append(step.to_dict())
                    if time.monotonic() - drawn.get(variant, 0.0) >= DRAW_EVERY_S:
                        _show_reply(slots[variant], reply, cfg, coloured, mode, turn, writing=True)
                        drawn[variant] = time.monotonic()
        finally:
            for stream in streams.values():
                stream.close()
            adapted.activate(None)
    convo["status"] = "idle"


# -- drawing ------------------------------------------------------------------------------------------------------
def variant_label(variant: str, base: str) -> str:
    if variant == BASE:
        return f"Base model · {adapter_view.base_label(base)}"
    return f"Adapter · {adapter_view.name_of(variant)}"


def _finish_note(reply: dict, cfg: SampleConfig | None) -> str:
    n = len(reply["tokens"])
    words = [f"{n} token{'' if n == 1 else 's'}"]
    if reply.get("finish") in FINISH_WORDS:
        limit = f" ({cfg.max_new_tokens})" if reply["finish"] == "length" and cfg else ""
        words.append(FINISH_WORDS[reply["finish"]] + limit)
    if reply.get("cut"):
        words.append(f"the first {reply['cut']} tokens of the conversation did not fit the model's context and "
                     "were left out")
    return " · ".join(words)


def _show_reply(slot, reply: dict, cfg, coloured: bool, mode: str, turn: dict, writing: bool = False) -> None:
    """One answer (into `slot`, an st.empty): its tokens, then a line on how it ended."""
    with slot.container():
        if reply["error"]:
            st.error(md_escape(reply["error"]), icon=":material/error:")
            return
        prompt = turn["user"] if mode == TEXT else ""
        if not reply["tokens"] and not writing:
            if prompt:
                st.html(token_view.tokens_html([], prompt=prompt))
            st.caption("(nothing: the model ended its answer at once)" if reply["finish"] == "end" else
                       _finish_note(reply, cfg))
            return
        st.html(token_view.tokens_html(reply["tokens"], coloured=coloured, prompt=prompt, writing=writing,
                                       prose=mode == CHAT))
        if not writing:
            st.caption(_finish_note(reply, cfg))


def draw_board(board, convo: dict, variants: list[str], base: str, mode: str, cfg, coloured: bool,
               live: bool) -> dict:
    """One column per variant with its conversation (or continuation); returns {variant: st.empty} for the
    newest answer when it is about to be written."""
    slots = {}
    cols = board.columns(len(variants), gap="medium", border=True)
    for col, variant in zip(cols, variants):
        col.markdown(f"**{md_escape(variant_label(variant, base))}**")
        if not convo["turns"]:
            col.caption("Its answers appear here." if mode == CHAT else "Its continuation appears here.")
            continue
        # a scrolling box, kept at its bottom while tokens arrive: the message box below stays in view
        with col.container(height=BOARD_HEIGHT, border=False, autoscroll=True):
            for i, turn in enumerate(convo["turns"]):
                reply = turn["replies"][variant]
                newest = i == len(convo["turns"]) - 1
                if mode == CHAT:
                    with st.chat_message("user"):
                        st.markdown(md_escape(turn["user"]))
                    where = st.chat_message("assistant")
                else:
                    where = st.container()
                slot = where.empty()
                if newest and live:
                    slots[variant] = slot
                    with slot.container():
                        st.caption("Waiting for its turn ...")
                else:
                    _show_reply(slot, reply, cfg, coloured, mode, turn)
    return slots


def look_at_token(key: str, convo: dict, variants: list[str], base: str) -> None:
    """The newest answers, one token at a time: which one, then a bar chart of what the model could have written
    there, with the probabilities it gave each."""
    if not convo["turns"]:
        return
    replies = convo["turns"][-1]["replies"]
    have = [v for v in variants if replies.get(v) and replies[v]["tokens"]]
    if not have:
        return
    st.markdown("**Look at one token** of the newest answer")
    left, right = st.columns([2, 3], gap="large")
    with left:
        variant = have[0] if len(have) == 1 else st.selectbox(
            "Whose answer", have, format_func=lambda v: variant_label(v, base), key=f"{key}.look.variant")
        tokens = replies[variant]["tokens"]
        lowest = min(range(len(tokens)), key=lambda i: tokens[i]["prob"]) + 1
        n = st.select_slider(
            "Look at token #", options=list(range(1, len(tokens) + 1)), value=lowest,
            format_func=lambda i: f"#{i} {token_view.shown_token(tokens[i - 1]['text'], tokens[i - 1]['id'])}",
            key=f"{key}.look.n.{variant}.{len(convo['turns'])}.{len(tokens)}",
            help="Slide through the answer token by token. It starts at the token the model found least likely.")
        token = tokens[n - 1]
        st.markdown(f"Token #{n}, {md_escape(token_view.shown_token(token['text'], token['id']))}: the model gave "
                    f"it **{token_view.percent(token['prob'])}**.")
        st.caption("The percentages are the model's own probabilities for the next token (its softmax at "
                   "temperature 1), before temperature, top-k and top-p shape the draw.")
    right.plotly_chart(token_view.alternatives_figure(n, token), key=f"{key}.look.chart", config=PLOT_CONFIG)


# -- the panel ----------------------------------------------------------------------------------------------------
def chat_panel(key: str, base: str | None = None, adapter_ids: list[str] | None = None,
               allow_model_pick: bool = True) -> None:
    """The whole playground, its widgets and state under keys starting with `key`.

    Args:
        base: the model to start with (a built-in name, a hub id or a model folder); with `allow_model_pick`
            False, the only one offered.
        adapter_ids: adapters to pick for the person (ids of the adapter library); picked again whenever the
            list given changes (a newly trained adapter), otherwise the person's own choice stays.
    """
    st.html(token_view.STYLE)
    top = st.columns(2, gap="large")
    with top[0]:
        if allow_model_pick:
            base = pick_model(key, base)
        else:
            base = base or DEFAULT_MODEL
            st.markdown(f"**Model**: {md_escape(adapter_view.base_label(base))}")
        served = load(key, base) if base else None
    if served is None:
        if not base:
            st.info("Pick a model above.", icon=":material/arrow_upward:")
        return
    with top[1]:
        picked = pick_adapters(key, base, adapter_ids)
    box = st.empty()
    engine, problems = served_models.engine_for(served, base, picked, box)
    for a in picked:
        if a.id in problems:
            st.error(f"The adapter **{md_escape(a.name)}** does not fit "
                     f"{md_escape(adapter_view.base_label(base))}: {md_escape(identity.shown(problems[a.id]))}",
                     icon=":material/error:")
    variants = [v for v in engine.active]

    options = st.columns([2, 2, 3], vertical_alignment="top")
    mode = options[0].radio("What to do", [CHAT, TEXT], horizontal=True, key=f"{key}.mode", persist_state="session",
                            help="Chat: write messages, the model answers through its chat template. Continue "
                                 "text: give the start of a text and the model writes what comes next.")
    coloured = options[1].toggle("Colour tokens by probability", value=True, key=f"{key}.colour",
                                 persist_state="session",
                                 help="Each token's background says how likely the model found it. Hover over a "
                                      "token to see the other tokens it considered.")
    with options[2]:
        sample_box = st.expander("Sampling settings")
    with sample_box:
        cfg = sample_settings(key)
    options[2].caption(md_escape(settings_summary(cfg)))
    system = ""
    if mode == CHAT:
        from llmfs.templates import has_own_template, template_name
        tokenizer = engine.adapted.tokenizer
        with st.expander("System message (optional)"):
            system = st.text_area("System message", key=f"{key}.system", persist_state="session",
                                  placeholder="You are a helpful assistant. Answer in one sentence.",
                                  help="Instructions the model reads before the conversation; empty for none. A "
                                       "change applies from the next message.")
        st.caption(f"Your messages reach the model through {md_escape(template_name(tokenizer))}."
                   + ("" if has_own_template(tokenizer) else
                      " It was not trained on conversations: expect odd answers until an adapter teaches it, or "
                      "try *Continue text*."))
    if coloured:
        st.html(token_view.legend_html())

    convo = conversation(key, mode, (base, tuple(variants)))
    board = st.container()
    row = st.container(horizontal=True, vertical_alignment="bottom")
    new = None
    with row:
        if mode == CHAT:
            new = st.chat_input("Message the model" + ("s" if len(variants) > 1 else ""), key=f"{key}.input",
                                max_chars=4000, disabled=cfg is None, submit_mode="disable")
        else:
            prompt = st.text_area("Text to continue", value=DEFAULT_PROMPTS[2], key=f"{key}.prompt",
                                  persist_state="session", height=90)
            if st.button("Generate", type="primary", icon=":material/auto_awesome:", key=f"{key}.go",
                         disabled=cfg is None or not prompt):
                new = prompt
        stop_slot, clear_slot = st.empty(), st.empty()
    status = st.empty()
    if new is not None and cfg is not None:
        turn = {"user": new, "system": system,
                "replies": {v: {"tokens": [], "finish": None, "error": None, "cut": 0} for v in variants}}
        convo["turns"] = (convo["turns"] if mode == CHAT else []) + [turn]
        convo["status"], convo["stop_asked"] = "running", False
    if clear_slot.button("New conversation" if mode == CHAT else "Clear", key=f"{key}.clear",
                         icon=":material/restart_alt:", disabled=not convo["turns"],
                         help="Forget the messages so far and start again." if mode == CHAT else
                              "Clear the outputs."):
        convo["turns"], convo["status"] = [], "idle"
    if convo["status"] == "stopped":
        status.caption("Stopped: what was written so far stays above.")
    live = convo["status"] == "running"
    slots = draw_board(board, convo, variants, base, mode, cfg, coloured, live)
    if live:
        stop_slot.button("Stop", icon=":material/stop_circle:", key=f"{key}.stop", on_click=_ask_stop,
                         args=(f"{key}.convo.{mode}",), help="Stop writing; what was written so far stays.")
        generate(engine, convo, mode, cfg, slots, coloured, status)
        stop_slot.empty()
    look_at_token(key, convo, variants, base)
