"""L12 building blocks: the loaded model (cached, shared, never mutated), its architecture, parity, vocabulary
surgery, the freezing layer map, the pretrained-vs-random comparison and the before / after samples."""

from __future__ import annotations

import re
import time

import plotly.graph_objects as go
import streamlit as st

from llmfs import memory
from llmfs.access import models_dir
from llmfs.config import TrainConfig
from llmfs.freeze import plan_freeze
from llmfs.sources import SourceError
from llmfs.targets import STRATEGIES

from . import charts, forms, identity, panels, run_panels, state
from .text import md_escape

SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@st.cache_resource(max_entries=4, show_spinner="Loading the model ...")
def loaded(source: str):
    """(model, tokenizer, folder), shared by every session. Never mutate it: a training job loads its own copy."""
    from llmfs.sources import resolve_model_dir
    from llmfs.weights import load_pretrained
    folder = resolve_model_dir(source)
    model, tokenizer = load_pretrained(str(folder))
    return model.eval(), tokenizer, folder


def model_picker(key: str) -> tuple | None:
    """The model chooser with a Load button; the loaded (model, tokenizer, folder) or None, errors shown inline."""
    source = forms.config_form(TrainConfig, key=f"{key}.pick", fields=["model"])
    source = source.model if source else None
    if source and st.button("Load", key=f"{key}.load", icon=":material/download:"):
        st.session_state[f"{key}.source"] = source
    chosen = st.session_state.get(f"{key}.source")
    if not chosen:
        st.caption("Pick a model and press **Load**. llmfs-tiny works offline; hub ids need a network.")
        return None
    try:
        state.ensure_builtins(chosen)
        return (*loaded(chosen), chosen)
    except (SourceError, ValueError, OSError) as e:
        st.error(md_escape(e), icon=":material/error:")
        return None


def architecture(model) -> None:
    from llmfs.weights import model_summary
    s = model_summary(model)
    cols = st.columns(5)
    for col, (label, value, help_) in zip(cols, [
            ("Parameters", f"{s['total_params']:,}", "Numbers the model learned (a tied head counted once)."),
            ("Blocks", s["n_layer"], "Transformer blocks stacked on top of each other."),
            ("Heads", s["n_head"], "Attention heads per block: each looks for a different kind of relation."),
            ("Width", s["n_embd"], "Size of the vector that represents each token inside the model."),
            ("Context", s["n_positions"], "The most tokens the model can look at at once.")]):
        col.metric(label, value, help=help_)
    fig = go.Figure(go.Bar(x=[g["params"] for g in s["groups"]], y=[g["group"] for g in s["groups"]],
                           orientation="h", text=[f"{g['share']:.0%}" for g in s["groups"]],
                           marker_color="#4c6ef5"))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title="Where the parameters are",
                      xaxis_title="parameters", yaxis=dict(autorange="reversed"))
    st.plotly_chart(fig, width="stretch")
    st.caption(f"Vocabulary: {s['vocab_size']:,} tokens; the output head is "
               f"{'tied to (shares) the token embeddings' if s['tie_word_embeddings'] else 'a separate matrix'}.")


def parity(folder, model, tokenizer, key: str) -> None:
    text = st.text_input("Text to compare on", value="The quick brown fox jumps over the lazy dog.",
                         key=f"{key}.parity_text", persist_state="session")
    if st.button("Run the parity check", key=f"{key}.parity", icon=":material/compare_arrows:"):
        from llmfs.weights import parity_check
        with st.spinner("Running the text through both models ..."):
            st.session_state[f"{key}.parity_result"] = parity_check(folder, text, tokenizer=tokenizer, model=model)
    res = st.session_state.get(f"{key}.parity_result")
    if res:
        ok = res["ok"]
        (st.success if ok else st.error)(
            f"Largest difference between our logits and transformers' {res['reference']}: "
            f"**{res['max_abs_delta']:.1e}** (allowed: {res['tolerance']:.0e}) over {res['n_tokens']} tokens. "
            + ("The conversion is exact up to float rounding." if ok else "The conversion is wrong."),
            icon=":material/check_circle:" if ok else ":material/error:")
        st.dataframe({"our top-5 next tokens": [shown_token(t) for t in res["ours_top5"]],
                      "transformers' top-5": [shown_token(t) for t in res["reference_top5"]]},
                     hide_index=False, width="content")
        st.caption("␣ is a space, ⏎ a line break, ⇥ a tab: a token is often a word with the space before it.")


WHITESPACE = {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍", "\u00a0": "⍽"}


def shown_token(token: str) -> str:
    """A token as text a person can see: every space, line break and tab as a visible sign (`␣the`, `⏎`), other
    invisible characters by their code (`\\x0b`), and the empty token as `(empty)`."""
    if token == "":
        return "(empty)"
    return "".join(WHITESPACE.get(ch) or (ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256
                                          else f"\\u{ord(ch):04x}") for ch in token)


def vocabulary(model, tokenizer, key: str) -> None:
    from llmfs.vocab import add_tokens, pad_vocab
    words = st.text_input("New tokens (comma-separated)", value="dataclass, asyncio.gather, <|user|>",
                          key=f"{key}.vocab_words",
                          persist_state="session", help="Words or special markers to give their own token.")
    init = st.radio("Start the new rows from", ["subtoken_mean", "mean"], horizontal=True, key=f"{key}.vocab_init",
                    persist_state="session",
                    format_func={"subtoken_mean": "the average of the pieces the word used to be split into",
                                 "mean": "the average of all embeddings"}.get)
    special = st.checkbox("Add them as special tokens", key=f"{key}.vocab_special", persist_state="session",
                          help="Special tokens (like chat markers <|user|>) are never split and never merged with "
                               "the text around them.")
    new = [w.strip() for w in words.split(",") if w.strip()]
    if not new:
        return
    bigger, new_tok, report = add_tokens(model, tokenizer, new, special=special, init=init)
    c1, c2, c3 = st.columns(3)
    c1.metric("Vocabulary before", f"{report.old_vocab_size:,}")
    c2.metric("Vocabulary after", f"{report.new_vocab_size:,}", delta=len(report.tokens))
    c3.metric("Old tokens' logits changed by", f"{_old_logit_change(model, bigger, tokenizer):.1e}",
              help="Resizing adds rows; every existing token's score must stay exactly as it was.")
    st.dataframe([{"new token": shown_token(t), "id": i,
                   "was split into": " ".join(f"[{shown_token(p)}]" for p in report.splits.get(t, ()))}
                  for t, i in zip(report.tokens, report.ids)], hide_index=True)
    if report.skipped:
        st.caption(f"Already in the vocabulary (skipped): {md_escape(', '.join(map(shown_token, report.skipped)))}")
    padded, pad = pad_vocab(bigger, multiple=64)
    st.caption(f"Padding for speed: {pad.old_rows:,} rows -> {pad.new_rows:,} (a multiple of 64, which matrix "
               "multiplications handle faster); the padding rows are never predicted, so outputs do not change.")
    name = st.text_input("Save as a model folder named", value="llmfs-tiny-plus", key=f"{key}.save_name",
                         persist_state="session")
    if st.button("Save it for fine-tuning", key=f"{key}.save", icon=":material/save:"):
        from llmfs.weights import save_hf_folder
        folder = save_hf_folder(padded, models_dir(identity.workshop_user()) /
                                (SAFE_NAME.sub("_", name).lstrip(".") or "model"), tokenizer=new_tok)
        if identity.shows_paths():
            st.success(f"Saved to {md_escape(folder)}. Pick it as **A folder on this machine** under Fine-tune.")
        else:  # a participant: the folder is theirs, its path the server's
            st.success(f"Saved as **{md_escape(folder.name)}** among your models.")


def _old_logit_change(old, new, tokenizer) -> float:
    import torch
    ids = torch.tensor([tokenizer("def read(path): return open(path).read()")["input_ids"]])
    with torch.no_grad():
        return (old(ids)[0] - new(ids)[0][..., : old.config.vocab_size]).abs().max().item()


def layer_map(model, key: str) -> dict:
    """Strategy controls, the layer map and the memory estimate; returns the TrainConfig fields chosen."""
    cfg = forms.config_form(TrainConfig, key=f"{key}.freeze",
                            fields=["freeze", "freeze_layers", "unfreeze_every", "layer_lr_decay"])
    if cfg is None:
        return {}
    st.caption(f"**{cfg.freeze}**: {STRATEGIES[cfg.freeze]}")
    plan = plan_freeze(model, cfg.freeze, n_layers=cfg.freeze_layers, unfreeze_every=cfg.unfreeze_every,
                       lr_decay=cfg.layer_lr_decay)
    groups = plan.groups()
    colors = {"trains": "#2f9e44", "partly trains": "#f08c00", "frozen": "#adb5bd"}
    labels = [_group_label(g) for g in groups]
    fig = go.Figure(go.Bar(x=[g["params"] for g in groups], y=labels, orientation="h",
                           marker_color=[colors.get(g["status"], "#adb5bd") for g in groups],
                           text=[g["status"] for g in groups], textposition="auto"))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), yaxis=dict(autorange="reversed"),
                      title="Layer map: green trains, grey is frozen", xaxis_title="parameters")
    st.plotly_chart(fig, width="stretch")
    c1, c2 = st.columns(2)
    c1.metric("Parameters that train", f"{plan.trainable_params:,}",
              help=f"{plan.trainable_params / plan.total_params:.1%} of all {plan.total_params:,} parameters.")
    shape = train_shape(key)
    try:
        est = memory.estimate(model.config, freeze=plan, **shape)
    except ValueError as e:
        st.caption(f"No memory estimate: {md_escape(e)}")
    else:
        c2.metric("Memory for training", charts.fmt_bytes(est.total_bytes),
                  help="Weights; gradients and AdamW's two running averages for what trains; and the activations "
                       "the forward pass keeps for backward, which a frozen bottom also spares.")
        st.plotly_chart(memory_parts_figure(est, shape), width="stretch")
    for note in plan.notes:
        st.caption(note)
    return {"freeze": cfg.freeze, "freeze_layers": cfg.freeze_layers, "unfreeze_every": cfg.unfreeze_every,
            "layer_lr_decay": cfg.layer_lr_decay}


def train_shape(key: str) -> dict:
    """Batch, sequence length and precision as the fine-tune form of step 4 holds them (its defaults before it has
    been shown): what the memory estimate of the layer map is for."""
    default = TrainConfig()
    return {"batch_size": int(st.session_state.get(f"{key}.batch_size") or default.batch_size),
            "seq_len": int(st.session_state.get(f"{key}.seq_len") or default.seq_len),
            "precision": str(st.session_state.get(f"{key}.precision") or default.precision)}


def memory_parts_figure(est: memory.Estimate, shape: dict) -> go.Figure:
    parts = {part: getattr(est, field) for field, part in charts.TENSOR_PARTS.items()}
    fig = go.Figure(go.Bar(x=list(parts.values()), y=list(parts), orientation="h",
                           marker_color=[charts.TENSOR_COLORS[p] for p in parts],
                           text=[charts.fmt_bytes(v) for v in parts.values()], textposition="auto"))
    fig.update_layout(height=200, margin=dict(l=10, r=10, t=10, b=10), yaxis=dict(autorange="reversed"),
                      xaxis_title=f"bytes ({shape['precision']}, batches of {shape['batch_size']} × "
                                  f"{shape['seq_len']} tokens as step 4 sets them)")
    return fig


def _group_label(g: dict) -> str:
    label = g["group"] + (" (shares the embeddings)" if g.get("tied") else "")
    if (g.get("start_step") or 1) > 1:
        label += f" (from step {g['start_step']})"
    if (g.get("lr_scale") or 1) != 1:
        label += f" x{g['lr_scale']:.2f} lr"
    return label


def freeze_note(freeze: dict, where: str = "step 3 · What trains") -> None:
    """Say, in the form that uses it, which layers will train, and `where` that was chosen."""
    strategy = freeze.get("freeze") or "full"
    what = STRATEGIES.get(strategy, strategy)
    if strategy in ("freeze_bottom", "train_top"):
        what += f" (Blocks: {freeze.get('freeze_layers')})"
    st.info(f"**Which layers train** (set in {where}): **{strategy}**: {what}",
            icon=":material/ac_unit:" if strategy != "full" else ":material/layers:")


def random_freeze_warning(freeze: dict) -> None:
    """The comparison's random-weights run keeps what is frozen at its random values: say so before it starts."""
    strategy = freeze.get("freeze") or "full"
    if strategy not in ("full", "llrd"):
        st.warning(f"Step 3 freezes part of the model (**{strategy}**): in the run from random weights the frozen "
                   "layers stay random (with `gradual`, until their turn comes), so it cannot learn as a full "
                   "fine-tune would. Choose **full** in step 3 to compare the weights alone.",
                   icon=":material/ac_unit:")


def submit_comparison(key: str, cfg: TrainConfig, name: str = "") -> None:
    """Queue the same fine-tune twice, from pretrained and from random weights; remember both for the overlay
    (named `name · pretrained weights` and `name · random weights` when a name was typed)."""
    from llmfs.recipes import preflight_train
    try:
        configs = [cfg.replace(init=init, save_model=False) for init in ("pretrained", "random")]
        for c in configs:
            state.jobs().admit("train", c)  # the workshop's rules first: a refused path is never opened
            preflight_train(c)
        ids = state.jobs().submit_batch([("train", c) for c in configs], owner=key)  # both or neither
    except (ValueError, OSError) as e:
        st.error(md_escape(e), icon=":material/error:")
        return
    run_panels.name_runs(ids, name, f"{key}.both")
    st.session_state[f"{key}.compare"] = ids
    for rid in ids:
        state.remember(key, rid)
    time.sleep(0.1)
    st.rerun()


def samples(run_id: str | None) -> None:
    """Text generated before and after fine-tuning, side by side (same prompts, same seed)."""
    if not run_id:
        return
    status = state.jobs().get(run_id).status()
    result = status.get("result") or {}
    if not result.get("samples"):
        st.caption("When the run finishes, text generated before and after training appears here.")
        return
    if not identity.may_see_texts(status.get("user")):
        panels.withheld()
        return
    for s in result["samples"]:
        st.caption("Prompt")
        st.code(s["prompt"], language=None, wrap_lines=True)  # the data's own text: never read as Markdown
        before, after = st.columns(2)
        before.text_area("Before training", s["before"], height=140, disabled=True, key=f"{run_id}.{s['prompt']}.b",
                         persist_state="session")
        after.text_area("After training", s["after"], height=140, disabled=True, key=f"{run_id}.{s['prompt']}.a",
                        persist_state="session")
