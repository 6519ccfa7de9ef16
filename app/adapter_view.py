"""The L15 page's adapter parts: the adapter library (rename, delete, download, upload), adapters swapped on one
loaded base with generations side by side, and merging one into a model folder.

Everything is read from disk afresh (the adapter library, run folders). The one thing held in memory is a base
model with adapters attached, cached process-wide and used under its own lock: switching adapters is a flag on the
shared model, so two sessions must not generate through it at the same time.

In a workshop every adapter is listed with its figures, but only its owner (and the instructor) may rename, delete,
download or merge it, or generate with it (everyone may use everyone's with share_runs = "all"; renaming and deleting
stay the owner's).
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from llmfs import access, memory
from llmfs import adapters as lib
from llmfs.config import DEFAULT_MODEL
from llmfs.sources import SourceError

from . import choices, forms, identity, panels
from .text import md_escape

PLOT_CONFIG = {"displaylogo": False}
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


# -- 3 · the adapter library ------------------------------------------------------------------------------------
def base_label(base: str) -> str:
    """llmfs-tiny for the built-in model (by name or by its folder), `fine-tuned <id>` for a run's model, else the
    folder or hub id."""
    if not base:
        return "(not recorded)"
    base = lib.portable_base(base)
    return DEFAULT_MODEL if base == DEFAULT_MODEL else choices.model_name(base)


def layers_label(targets: tuple[str, ...]) -> str:
    return lib.layer_words(targets)


def origin_label(a: lib.AdapterInfo) -> str:
    return f"run {choices.short_id(a.run_id)}" if a.run_id else "uploaded"


def adapter_label(a: lib.AdapterInfo) -> str:
    """The picker's line: the name, then what tells adapters apart when the name does not say it already."""
    if a.training and not a.renamed:   # the default name already says rank, layers, data and steps
        return f"{a.name} · {base_label(a.base_model)}"
    return f"{a.name} · rank {a.rank} on {layers_label(a.targets)} · {base_label(a.base_model)}"


def name_of(adapter_id: str) -> str:
    """An adapter's name as it is now (read afresh: a rename shows at once), or a note that it is gone."""
    try:
        return lib.get_adapter(adapter_id).name
    except lib.AdapterError:
        return "(an adapter since deleted)"


def picker(where, label: str, options: list, format_func, key: str, multi: bool = False, **kwargs):
    """A selectbox (or, `multi`, a multiselect) of adapters whose shown names may change (a rename, here or in
    another tab). The browser keeps the text of the options it shows and sends it back, which after a rename no
    longer matches (the picker shows the old name, then falls back to another adapter): when the picked options'
    texts changed since the last run, the value is set again, which sends the new texts to the browser."""
    shown = f"{key}.shown"

    def texts_of(value):
        if multi:
            return [format_func(v) for v in (value or []) if v in options]
        return format_func(value) if value in options else None

    current = st.session_state.get(key)
    if current is not None and st.session_state.get(shown) not in (None, texts_of(current)):
        if multi:
            st.session_state[key] = [v for v in current if v in options]
        elif current in options:
            st.session_state[key] = current
    widget = where.multiselect if multi else where.selectbox
    value = widget(label, options, format_func=format_func, key=key, persist_state="session", **kwargs)
    st.session_state[shown] = texts_of(value)
    return value


def may_use(a: lib.AdapterInfo) -> bool:
    """Download, merge, generate with: its owner's and the instructor's (everyone's with share_runs = "all")."""
    return identity.may_see_texts(a.user)


def may_change(a: lib.AdapterInfo) -> bool:
    """Rename, delete: in a workshop only its owner (or the instructor), whatever is shared."""
    return not identity.workshop_mode() or identity.is_instructor() or bool(a.user and identity.is_mine(a.user))


def usable(adapters: list[lib.AdapterInfo]) -> list[lib.AdapterInfo]:
    return [a for a in adapters if may_use(a)]


def _flash(key: str, kind: str, text: str) -> None:
    """A message to show once after the rerun a change needs (the table above the buttons must redraw)."""
    st.session_state[f"{key}.lib.flash"] = (kind, text)
    st.rerun()


def library_section(key: str) -> None:
    """The table of every adapter (runs' and uploaded), then rename / download / delete for the one picked."""
    flash = st.session_state.pop(f"{key}.lib.flash", None)
    if flash:
        getattr(st, flash[0])(flash[1], icon=":material/check_circle:" if flash[0] == "success" else None)
    adapters = lib.list_adapters()
    if not adapters:
        st.info("No adapters yet. Train one in step 2 (it is saved here when the run finishes), or add a .zip "
                "above.", icon=":material/inventory_2:")
    else:
        workshop = identity.workshop_mode()
        st.dataframe([library_row(a, workshop) for a in adapters], hide_index=True, column_config={
            "name": st.column_config.TextColumn("Name"),
            "base": st.column_config.TextColumn("Base model", help="The model it was trained on"),
            "data": st.column_config.TextColumn("Trained on", help="The text its run trained on; blank for an "
                                                                   "uploaded adapter (its zip does not say)"),
            "steps": st.column_config.NumberColumn("Steps", help="Training steps its run took"),
            "rank": st.column_config.NumberColumn("Rank"),
            "alpha": st.column_config.NumberColumn("Alpha", format="%g"),
            "layers": st.column_config.TextColumn("Layers"),
            "bits": st.column_config.TextColumn("Base stored in", help="4-bit: trained as QLoRA, on a base kept in "
                                                                        "4 bits; the adapter itself is full precision"),
            "final_loss": st.column_config.NumberColumn("Training loss", format="%.3f",
                                                        help="The training loss at its run's last step"),
            "eval_loss": st.column_config.NumberColumn(
                "Held-out loss", format="%.3f", help="Its run's last held-out loss, on the held-out share of the "
                                                     "text it trained on (compare adapters trained on the same text)"),
            "size": st.column_config.TextColumn("Size"),
            "from": st.column_config.TextColumn("From", help="A training run, or an uploaded zip"),
            "by": st.column_config.TextColumn("By", help="Who trained or added it"),
            "created": st.column_config.DatetimeColumn("Created", format="D MMM, HH:mm")})
        manage(key, adapters)


def library_row(a: lib.AdapterInfo, workshop: bool = False) -> dict:
    """One adapter's row in the library table: its name and what it was trained on, as far as that is known."""
    t = a.training or {}   # an uploaded adapter's zip does not say: "-" (numbers stay empty)
    return {"name": a.name, "base": base_label(a.base_model), "data": t.get("data_label") or "-",
            "steps": t.get("steps"), "rank": a.rank, "alpha": a.alpha, "layers": layers_label(a.targets),
            "bits": ("4-bit" if t.get("quantize") == "4bit" else "full precision") if t else "-",
            "final_loss": t.get("final_loss"), "eval_loss": t.get("eval_loss"),
            "size": memory.fmt_bytes(a.size_bytes), "from": origin_label(a),
            **({"by": a.user or "-"} if workshop else {}),
            "created": dt.datetime.fromtimestamp(a.created)}


def trained_on(a: lib.AdapterInfo) -> str:
    """What the adapter was trained on, in one sentence (or that its upload did not say)."""
    t = a.training
    alpha = f"alpha {a.alpha:g}"
    if not t:
        return (f"Rank {a.rank} on {layers_label(a.targets)}, {alpha}, for {base_label(a.base_model)}; uploaded, so "
                "what it was trained on is not recorded.")
    losses = [f"training loss {t['final_loss']:.3f}" if t.get("final_loss") is not None else "",
              f"held-out loss {t['eval_loss']:.3f} (on held-out text from the same data)"
              if t.get("eval_loss") is not None else ""]
    steps = t.get("steps")
    text = (f"Trained on {t.get('data_label') or 'unrecorded data'}"
            + (f" for {steps} step{'' if steps == 1 else 's'}" if steps is not None else "")
            + f": rank {a.rank} on {layers_label(a.targets)}, {alpha}, base {base_label(a.base_model)}"
            + (" stored in 4 bits (QLoRA)" if t.get("quantize") == "4bit" else "")
            + (f", {t['precision']}" if t.get("precision") and t["precision"] != "fp32" else ""))
    extra = ", ".join(x for x in losses if x)
    run = f" Run {t['run_id']}." if t.get("run_id") else ""
    return text + (f"; {extra}." if extra else ".") + run


def manage(key: str, adapters: list[lib.AdapterInfo]) -> None:
    by_id = {a.id: a for a in adapters}
    pick = by_id[picker(st, "Adapter", list(by_id), lambda i: adapter_label(by_id[i]), f"{key}.lib.pick")]
    st.caption(md_escape(trained_on(pick)))
    if identity.shows_paths():
        st.caption(f"Folder: `{pick.path}` (PEFT's format: pick it under *LoRA adapters* on L14, or give this path, "
                   "to evaluate a model with it).")
    elif may_use(pick):
        st.caption("PEFT's format. To evaluate a model with it, pick it under *LoRA adapters* on L14.")
    else:
        panels.withheld(f"{md_escape(pick.name)} is {md_escape(pick.user or 'someone else')}'s: downloading it, "
                        "merging it or generating with it is for them and the instructor.")
    left, right = st.columns([2, 3], vertical_alignment="bottom")
    mine = may_change(pick)
    not_mine = None if mine else "Only the person who trained or added it (or the instructor) can rename or delete it."
    name = left.text_input("Name", value=pick.name, key=f"{key}.lib.name.{pick.id}",
                           persist_state="session", disabled=not mine, max_chars=lib.MAX_NAME_CHARS,
                           help="Until you rename it, an adapter a run trained is called by its rank, layers, "
                                "data and steps.")
    row = right.container(horizontal=True)
    if row.button("Rename", key=f"{key}.lib.rename", icon=":material/edit:",
                  disabled=not mine or name.strip() == pick.name, help=not_mine):
        try:
            renamed = lib.rename_adapter(pick.id, name)
        except lib.AdapterError as e:
            st.error(md_escape(identity.shown(str(e))), icon=":material/error:")
        else:
            _flash(key, "success", f"Renamed to **{md_escape(renamed.name)}**.")
    if may_use(pick):
        row.download_button("Download", data=functools.partial(lib.export_zip, pick.id), on_click="ignore",
                            file_name=f"{SAFE_NAME.sub('-', pick.name).strip('-') or 'adapter'}.zip",
                            mime="application/zip", icon=":material/download:", key=f"{key}.lib.download",
                            help="A .zip of the adapter folder, which PEFT's from_pretrained reads once unpacked.")
    confirm = f"{key}.lib.confirm"
    if row.button("Delete", key=f"{key}.lib.delete", icon=":material/delete:", disabled=not mine, help=not_mine):
        st.session_state[confirm] = pick.id
    if not mine:  # a confirmation asked before the pick changed to someone else's
        st.session_state.pop(confirm, None)
    if st.session_state.get(confirm) == pick.id:
        what = "the adapter folder of its run (the run and its charts stay)" if pick.run_id else "its folder"
        st.warning(f"Delete **{md_escape(pick.name)}**? This removes {what} and cannot be undone.",
                   icon=":material/warning:")
        buttons = st.container(horizontal=True)
        if buttons.button("Yes, delete", type="primary", key=f"{key}.lib.yes"):
            st.session_state.pop(confirm, None)
            try:
                lib.delete_adapter(pick.id)
            except (lib.AdapterError, OSError) as e:
                st.error(md_escape(identity.shown(str(e))), icon=":material/error:")
            else:
                _flash(key, "success", f"Deleted **{md_escape(pick.name)}**.")
        if buttons.button("Cancel", key=f"{key}.lib.no"):
            st.session_state.pop(confirm, None)
            st.rerun()


def upload(key: str) -> None:
    file = st.file_uploader("Add an adapter from a .zip", type=["zip"], key=f"{key}.lib.upload",
                            help="A zip of a PEFT adapter folder: adapter_config.json and adapter_model.safetensors "
                                 "(README.md allowed). Its name in the library is the file's name.")
    if file is None:
        return
    done: dict = st.session_state.setdefault(f"{key}.lib.imported", {})
    if file.file_id not in done:   # import once, not on every rerun while the file sits in the uploader
        try:
            info = lib.import_zip(file.getvalue(), name=Path(file.name).stem or "adapter",
                                  user=identity.workshop_user())
        except lib.AdapterError as e:
            done[file.file_id] = ("error", str(e))
        else:
            done[file.file_id] = ("success", f"Added **{md_escape(info.name)}** to the library.")
            _flash(key, *done[file.file_id])
    kind, text = done[file.file_id]
    if kind == "error":
        st.error(f"**{md_escape(file.name)}** was not added: {md_escape(text)}", icon=":material/error:")


# -- 4 · swap and compare ---------------------------------------------------------------------------------------
@dataclass
class Loaded:
    """A base with adapters "A" (and "B") attached; `lock` serialises generation, since activating is per model."""
    adapted: object
    lock: threading.Lock


@st.cache_resource(max_entries=2, show_spinner="Loading the base model and the adapters ...")
def loaded(base: str, adapters: tuple[tuple[str, str, float], ...]) -> Loaded:
    """Keyed by the base and each adapter's (name, folder, weights file time): a changed adapter loads afresh."""
    from llmfs.adapting import attach
    return Loaded(attach(base, {name: folder for name, folder, _ in adapters}), threading.Lock())


def _stamp(a: lib.AdapterInfo) -> float:
    try:
        return (a.path / "adapter_model.safetensors").stat().st_mtime
    except OSError:
        return 0.0


def compare_section(key: str) -> None:
    from llmfs.generate import SampleConfig
    adapters = [a for a in usable(lib.list_adapters()) if a.base_model]
    if not adapters:
        st.info("Train or upload an adapter first (steps 2 and 3): its outputs appear here beside the base "
                "model's.", icon=":material/compare:")
        return
    bases = list(dict.fromkeys(a.base_model for a in adapters))
    base = st.selectbox("Base model", bases, format_func=base_label, key=f"{key}.swap.base", persist_state="session",
                        help="Adapters only fit the model they were trained on: the lists below show those.")
    mine = {a.id: a for a in adapters if a.base_model == base}
    ids = list(mine)
    left, right = st.columns(2)
    # by name alone: the base is picked above, and the library's table says what each was trained on
    a_id = picker(left, "Adapter A", ids, lambda i: mine[i].name, f"{key}.swap.a")
    b_id = picker(right, "Adapter B (optional)", [None] + [i for i in ids if i != a_id],
                  lambda i: "(none)" if i is None else mine[i].name, f"{key}.swap.b")
    prompt = st.text_area("Prompt", value="def read_config(path):\n", key=f"{key}.swap.prompt",
                          persist_state="session", height=80)
    weight = None
    if b_id:
        weight = st.slider("Mix: weight of A (B gets the rest)", 0.0, 1.0, 0.5, 0.05, key=f"{key}.swap.mix",
                           persist_state="session",
                           help="The mixed model adds w × A's update + (1 − w) × B's to the same frozen base.")
    with st.expander("Sampling settings"):
        sample = forms.config_form(SampleConfig, key=f"{key}.swap.sample")
    if st.button("Generate", type="primary", icon=":material/auto_awesome:", key=f"{key}.swap.go",
                 disabled=sample is None or not prompt.strip()):
        picked = [("A", mine[a_id])] + ([("B", mine[b_id])] if b_id else [])
        # outputs are labelled by slot and adapter id, never by name: the name is read when they are shown, so a
        # rename shows on outputs generated before it
        variants: dict = {"base": None, "A": "A"}
        if b_id:
            variants.update(B="B", mix={"A": weight, "B": 1 - weight})
        result = generate(base, picked, prompt, variants, sample)
        st.session_state[f"{key}.swap.result"] = {**result, "ids": {"A": a_id, "B": b_id}, "weight": weight}
    result = st.session_state.get(f"{key}.swap.result")
    if result:
        show_outputs(result)


def generate(base: str, picked: list, prompt: str, variants: dict, sample) -> dict:
    """Run the prompt through every variant on the cached base; {"prompt", "outputs"} or {"error"}."""
    from llmfs.adapting import compare_generations
    try:
        model = loaded(base, tuple((name, str(a.path), _stamp(a)) for name, a in picked))
        if model.adapted.peft:   # PEFT switches one adapter at a time
            variants = {k: v for k, v in variants.items() if not isinstance(v, dict)}
        with model.lock, st.spinner("Generating ..."):
            outputs = compare_generations(model.adapted, prompt, variants, sample)
    except (SourceError, ValueError, OSError, RuntimeError, KeyError) as e:
        return {"error": f"Could not generate: {identity.shown(str(e))}"}
    return {"prompt": prompt, "outputs": outputs}


def output_label(slot: str, result: dict) -> str:
    """What produced an output, with the adapter's name as it is now: "Base model", "A · <name>", "Mix · ..."."""
    ids, weight = result.get("ids") or {}, result.get("weight")
    if slot == "base":
        return "Base model"
    if slot == "mix":
        return f"Mix · {weight:.0%} A + {1 - weight:.0%} B" if weight is not None else "Mix of A and B"
    return f"{slot} · {name_of(ids[slot])}" if ids.get(slot) else slot


def diff_html(base: str, text: str) -> str:
    """`text` as safe HTML (every character escaped, whitespace kept), the words that differ from `base` marked."""
    from llmfs.adapting import word_diff
    pieces = "".join(f"<mark>{html.escape(piece)}</mark>" if changed else html.escape(piece)
                     for piece, changed in word_diff(base, text))
    return f'<div class="llmfs-output">{pieces}</div>'


OUTPUT_STYLE = """<style>
.llmfs-output { white-space: pre-wrap; font-family: "Source Code Pro", monospace; font-size: 0.9rem;
  line-height: 1.5; overflow-wrap: anywhere; }
.llmfs-output mark { background: rgba(255, 196, 0, 0.35); color: inherit; border-radius: 2px; padding: 0 1px; }
</style>"""


def show_outputs(result: dict) -> None:
    """The prompt once, then each variant's continuation, readable, with the words that differ from the base
    model's marked. Every text is data: escaped, never read as Markdown or HTML."""
    from llmfs.adapting import changed_share
    if "error" in result:
        st.error(md_escape(result["error"]), icon=":material/error:")
        return
    outputs = result["outputs"]
    st.markdown("**Prompt** (the same for every output below)")
    st.code(result["prompt"], language=None, wrap_lines=True)
    st.caption("Same prompt, same seed, the same loaded base: only which adapter is switched on changes. "
               "Highlighted: the words that differ from the base model's output. An adapter trained for a few steps "
               "may change little; one trained longer on other text changes more.")
    st.html(OUTPUT_STYLE)
    base = next((o["text"] for o in outputs if o["label"] == "base"), None)
    for row in range(0, len(outputs), 2):
        cols = st.columns(2)
        for col, out in zip(cols, outputs[row:row + 2]):
            with col.container(border=True):
                st.markdown(f"**{md_escape(output_label(out['label'], result))}**")
                text = out["text"]
                if not text:
                    st.caption("(nothing: the model ended the text at once)")
                elif base is None or out["label"] == "base":
                    st.html(diff_html(text, text))
                else:
                    share = changed_share(base, text)
                    st.html(diff_html(base, text))
                    st.caption("Identical to the base model's output." if text == base else
                               f"{share:.0%} of its words differ from the base model's.")


# -- 5 · merge and export -----------------------------------------------------------------------------------------
def models_dir() -> Path:
    """Where merged models go: `$LLMFS_HOME/models`, in a workshop the participant's own folder under it."""
    return access.models_dir(identity.workshop_user())


def merge_section(key: str) -> None:
    from llmfs.adapting import merge_adapter
    adapters = [a for a in usable(lib.list_adapters()) if a.base_model]
    if not adapters:
        st.info("Train or upload an adapter first: merging needs one.", icon=":material/merge:")
        return
    by_id = {a.id: a for a in adapters}
    pick = by_id[picker(st, "Adapter to merge", list(by_id), lambda i: adapter_label(by_id[i]), f"{key}.merge.pick")]
    # keyed by the adapter's name too: after a rename the suggested name follows it
    name = st.text_input("Name of the merged model", value=f"{pick.name}-merged",
                         key=f"{key}.merge.name.{pick.id}.{pick.name}",
                         persist_state="session",
                         help="Letters, digits, dots, dashes and underscores; other characters become dashes.")
    folder = models_dir() / (SAFE_NAME.sub("-", name.strip()).strip("-.") or "merged")
    where = (f"to `{folder}`" if identity.shows_paths() else  # a code span shows a path as written
             f"among your models as **{md_escape(folder.name)}**")
    st.caption(f"It will be saved {where}" + (" (a model of this name exists: it will be replaced)."
                                              if folder.exists() else "."))
    if st.button("Merge and save", type="primary", icon=":material/merge:", key=f"{key}.merge.go"):
        try:
            with st.spinner(f"Loading {base_label(pick.base_model)} and folding the adapter in ..."):
                out = merge_adapter(pick.path, folder)
        except (SourceError, ValueError, OSError, RuntimeError) as e:
            st.session_state[f"{key}.merge.done"] = ("error", f"Could not merge: {identity.shown(str(e))}", None)
        else:
            st.session_state[f"{key}.merge.done"] = ("success", str(out), pick.user)
    done = st.session_state.get(f"{key}.merge.done")
    if done and done[0] == "error":
        st.error(md_escape(done[1]), icon=":material/error:")
    elif done and identity.shows_paths():
        st.success(f"Merged model saved to `{done[1]}`: a normal Hugging Face model folder, no adapter "
                   "needed. "
                   "Load it on **L12** (Model → *A folder on this machine*), fine-tune it further here, or "
                   "evaluate it on **L14** (paste the path under *More models*).", icon=":material/check_circle:")
    elif done:
        st.success(f"Merged model saved among your models as **{md_escape(Path(done[1]).name)}**: a normal Hugging "
                   "Face model folder, no adapter needed. Evaluate it on **L14** (it is listed under *Models*).",
                   icon=":material/check_circle:")
    if done and done[0] == "success":
        merged_download(key, Path(done[1]), done[2] if len(done) > 2 else None)


def merged_download(key: str, folder: Path, user: str | None) -> None:
    """The merged model as a .zip of its Hugging Face folder, for whoever may use the adapter it came from."""
    from llmfs.adapting import zip_model_folder
    if not (folder / "config.json").is_file():
        st.caption("The merged model's folder is gone (deleted or replaced); merge again to download it.")
        return
    if not identity.may_see_texts(user):
        panels.withheld()
        return
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    st.download_button(f"Download the merged model (.zip, about {memory.fmt_bytes(size)})",
                       data=functools.partial(zip_model_folder, folder), on_click="ignore",
                       file_name=f"{folder.name}.zip", mime="application/zip", icon=":material/download:",
                       key=f"{key}.merge.download",
                       help="The Hugging Face folder (config, weights, tokenizer), zipped: unpack it and load it "
                            "with AutoModelForCausalLM.from_pretrained, or on L12 as a folder.")

