"""L16 building blocks (the number formats are in `app.formats_view`): the loss-scaling demonstration, the
comparison form with its memory estimate per mode, and the live comparison of the runs (loss, speed, memory, loss
scale) with the summary table and a conclusion written from the numbers.

Everything about a run is read from its folder (status.json, metrics.jsonl); the demonstration runs on the shared
llmfs-tiny of `l12_view.loaded` (never mutated: `underflow_demo` works on a copy).
"""

from __future__ import annotations

import math
import statistics

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from llmfs import memory
from llmfs import precision as prec
from llmfs.config import DEFAULT_MODEL, ConfigError, TrainConfig
from llmfs.runs import FAILED, FINAL_STATES, PENDING, RUNNING, SUCCEEDED
from llmfs.sources import SourceError

from . import charts, forms, identity, l12_view, panels, run_panels, state
from .text import md_escape

PLOT_CONFIG = {"displaylogo": False}
MODE_COLORS = charts.PRECISION_COLORS  # a precision keeps its colour on every page (the Runs page's charts too)
MODE_LABELS = {"fp32": "fp32 (the reference)", "fp16": "fp16 autocast + loss scaling", "bf16": "bf16 autocast",
               "bf16-pure": "bf16-pure (weights and optimizer in bf16 too)"}
MODE_DASHES = charts.PRECISION_DASHES  # coinciding lines stay seen (the Runs page draws them alike)
DEFAULT_MODES = ["fp32", "fp16", "bf16"]

# -- 2 · why fp16 needs loss scaling ---------------------------------------------------------------------------------
EXPONENTS = list(range(-8, -21, -1))
DEMO_TEXT = ("The list data type has some more methods. Here are all of the methods of list objects. Add an item to "
             "the end of the list. Extend the list by appending all the items from the iterable. Insert an item at "
             "a given position. Remove the first item from the list whose value is equal to x. It raises a "
             "ValueError if there is no such item. Return a shallow copy of the list. Sort the items of the list in "
             "place. Dictionaries are sometimes found in other languages as associative memories or arrays. ")
DEMO_COLORS = {"fp32": MODE_COLORS["fp32"], "fp16, no loss scaling": "#e63946", "fp16 with loss scaling": "#2a9d8f"}


def fmt_power(exponent: int) -> str:
    return f"2^{exponent} ≈ {2.0 ** exponent:.0e}"


def demo_ids(tokenizer, batch: int = 4, length: int = 65):
    """A fixed batch of token ids from a paragraph of Python's documentation (llmfs-tiny's kind of text)."""
    import torch
    ids = tokenizer(DEMO_TEXT)["input_ids"]
    ids = (ids * (batch * length // max(len(ids), 1) + 1))[: batch * length]
    return torch.tensor(ids).view(batch, length)


def underflow_section(key: str) -> None:
    """The slider, the button, and the gradient entries each variant lost."""
    exponent = st.select_slider(
        "How small the gradients are", options=EXPONENTS, value=-14, format_func=fmt_power, key=f"{key}.factor",
        persist_state="session",
        help="The loss (and so every gradient) is multiplied by this factor. Late in training the loss is small and "
             "many gradients are tiny; further right = tinier gradients.")
    ready = state.default_ready()
    pressed = st.button("Measure the gradients", key=f"{key}.demo", icon=":material/science:", disabled=not ready)
    if not ready:
        st.caption("This needs llmfs-tiny, which is not built yet: start a comparison in step 3 (the first run "
                   "builds it, about 5 minutes), then come back.")
    if pressed:
        try:
            model, tokenizer, _ = l12_view.loaded(DEFAULT_MODEL)
        except (SourceError, ValueError, OSError) as e:
            st.error(md_escape(e), icon=":material/error:")
            return
        with st.spinner("Computing one batch's gradients three ways…"):
            rows = prec.underflow_demo(model, demo_ids(tokenizer), loss_factor=2.0 ** exponent)
        st.session_state[f"{key}.demo.result"] = {"exponent": exponent, "rows": rows}
    result = st.session_state.get(f"{key}.demo.result")
    if not result:
        if ready:
            st.caption("Press **Measure the gradients**: one batch of llmfs-tiny, its gradients computed in fp32, "
                       "then in fp16 without and with a loss scale, compared entry by entry (a second or two).")
        return
    show_demo(result["rows"], result["exponent"])
    if result["exponent"] != exponent:
        st.caption(f"These results are for {fmt_power(result['exponent'])}: press the button again for the slider's "
                   "new value.")


def show_demo(rows: list[dict], exponent: int) -> None:
    by = {r["variant"]: r for r in rows}
    plain, scaled = by["fp16, no loss scaling"], by["fp16 with loss scaling"]
    a, b, c = st.columns(3)
    a.metric("Lost without loss scaling", f"{plain['zero_fraction']:.1%}",
             help="Share of gradient entries that are zero in fp16 although the fp32 gradient is not: those "
                  "weights get no update at all.")
    b.metric("Lost with loss scaling", f"{scaled['zero_fraction']:.1%}",
             help="The same share when the loss is multiplied by the scale below before backward, and the "
                  "gradients divided by it afterwards.")
    c.metric("Loss scale used", f"2^{round(math.log2(scaled['loss_scale']))}",
             help="The largest power of two, from 2^16 down, at which no scaled gradient overflowed fp16: what the "
                  "GradScaler settles on over a few steps.")
    st.plotly_chart(demo_figure(rows), key="l16-demo", config=PLOT_CONFIG)
    st.dataframe(pd.DataFrame([{"variant": r["variant"], "lost to zero": r["zero_fraction"],
                                "error vs fp32": r["rel_error"], "loss scale": r["loss_scale"]} for r in rows]),
                 hide_index=True, column_config={
                     "variant": "Gradients computed in",
                     "lost to zero": st.column_config.NumberColumn("Entries lost to zero", format="percent"),
                     "error vs fp32": st.column_config.NumberColumn(
                         "Error vs fp32", format="percent",
                         help="Size of the difference from the fp32 gradient, relative to the fp32 gradient's size"),
                     "loss scale": st.column_config.NumberColumn("Loss scale", format="%.0f")})
    verdict = ("Without scaling, fp16 threw away most of the learning signal." if plain["zero_fraction"] > 0.5 else
               "Even here fp16 without scaling loses entries; smaller gradients (slider right) lose far more.")
    st.caption(f"Gradients scaled by {fmt_power(exponent)}. {verdict} With the loss scaled by "
               f"2^{round(math.log2(scaled['loss_scale']))} first, they land inside fp16's range and come back "
               "after the division, almost as in fp32.")


def demo_figure(rows: list[dict]) -> go.Figure:
    shares = [r["zero_fraction"] for r in rows]
    fig = go.Figure(go.Bar(y=[r["variant"] for r in rows], x=shares, orientation="h",
                           marker_color=[DEMO_COLORS.get(r["variant"], "#6c757d") for r in rows],
                           text=[f"{s:.1%}" for s in shares], textposition="outside", cliponaxis=False,
                           hovertemplate="%{y}: %{x:.2%} of gradient entries lost to zero<extra></extra>"))
    fig.update_layout(height=200, margin=dict(l=10, r=50, t=10, b=10), showlegend=False,
                      xaxis=dict(title="gradient entries lost to zero", tickformat=".0%",
                                 range=[0, max(max(shares) * 1.2, 0.05)]),
                      yaxis=dict(autorange="reversed"))
    return fig


# -- 3 · the comparison: form, estimate, plan --------------------------------------------------------------------
FIELDS = ["model", "data", "steps", "batch_size", "seq_len", "lr", "seed", "device", "tf32", "grad_scaling"]
DEFAULTS = {"steps": 60, "batch_size": 8, "seq_len": 128, "lr": 3e-4, "eval_every": 20, "save_model": False}
PART_COLORS = charts.TENSOR_COLORS  # the estimate's parts as the live tensor chart colours them


def modes_picker(key: str) -> list[str]:
    picked = st.multiselect("Precisions to compare", prec.PRECISIONS, default=DEFAULT_MODES, key=f"{key}.modes",
                            persist_state="session",
                            format_func=MODE_LABELS.get,
                            help="One run per precision: same model, data, seed and steps, one after the other.\n\n" +
                                 "\n\n".join(f"**{m}**: {prec.MODE_HELP[m]}" for m in prec.PRECISIONS))
    if not picked:
        st.warning("Pick at least one precision (fp32 and one more to compare).", icon=":material/rule:")
    return [m for m in prec.PRECISIONS if m in picked]


def plan_notes(cfg: TrainConfig, modes: list[str]) -> bool:
    """What the hardware makes of each mode: an error for what it cannot run (False), notes where it is slow."""
    from llmfs.train import resolve_device
    try:
        device = resolve_device(cfg.device)
    except ValueError as e:
        st.error(f"**Device** (under Advanced settings): {md_escape(e)}", icon=":material/error:")
        return False
    notes, ok = [], True
    for mode in modes:
        try:
            notes += prec.plan_precision(mode, device, tf32=cfg.tf32, grad_scaling=cfg.grad_scaling).warnings
        except prec.PrecisionError as e:
            st.error(f"**{mode}**: {md_escape(e)}", icon=":material/error:")
            ok = False
    for note in dict.fromkeys(notes):
        st.info(note, icon=":material/info:")
    return ok


def estimate_section(cfg: TrainConfig, modes: list[str]) -> None:
    """The estimated memory of every mode for this model and batch, as stacked bars, before anything runs."""
    config = memory.config_of(cfg.model)
    if config is None:
        st.caption("The memory estimate needs the model's config.json (a hub model not downloaded yet has none "
                   "here): it appears once the model is on this machine.")
        return
    try:
        rows = [memory.estimate_run(config, cfg, precision=m) for m in prec.PRECISIONS]
    except (ValueError, TypeError, OSError) as e:
        st.caption(f"No memory estimate for this model: {md_escape(e)}")
        return
    st.plotly_chart(estimate_figure(rows, modes), key="l16-estimate", config=PLOT_CONFIG)
    fp32, pure = rows[0], rows[-1]
    amp = next(r for r in rows if r.precision == "bf16")
    st.caption(f"Estimated for {fp32.total_params:,} parameters and a batch of {cfg.batch_size} × {cfg.seq_len} "
               "tokens, counted as the training loop keeps them. **AMP (fp16, bf16) keeps fp32 weights, gradients "
               "and AdamW states** (16 bytes a parameter, as fp32 does) and shrinks the activations, though each "
               "step also holds 16-bit copies of the weights for its matmuls (counted with the activations): "
               f"{amp.total_bytes / fp32.total_bytes:.0%} of fp32 here. **bf16-pure keeps the model itself in "
               f"bf16**, so its gradients and AdamW states too (8 bytes a parameter): "
               f"{pure.total_bytes / fp32.total_bytes:.0%}. The bigger the batch and the sequences, the more AMP "
               "saves. The runs below count their own tensors, so you can check. Modes not picked are drawn faded.")


def estimate_figure(rows: list[memory.Estimate], picked: list[str]) -> go.Figure:
    top = max(r.total_bytes for r in rows) or 1
    unit, scale = charts.memory_unit(top)
    modes = [r.precision for r in rows]
    fig = go.Figure()
    for field, part in charts.TENSOR_PARTS.items():
        values = [getattr(r, field) for r in rows]
        fig.add_bar(y=modes, x=[v / scale for v in values], name=part, orientation="h",
                    marker=dict(color=PART_COLORS[part], opacity=[1.0 if m in picked else 0.35 for m in modes]),
                    customdata=[charts.fmt_bytes(v) for v in values],
                    hovertemplate=f"{part}: %{{customdata}}<extra>%{{y}}</extra>")
    for r in rows:
        fig.add_annotation(x=r.total_bytes / scale, y=r.precision, text=f" {charts.fmt_bytes(r.total_bytes)}",
                           showarrow=False, xanchor="left", font=dict(size=13))
    fig.update_layout(barmode="stack", height=240, margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0, traceorder="normal"),
                      xaxis=dict(title=f"estimated memory for training ({unit})", range=[0, top / scale * 1.25]),
                      yaxis=dict(autorange="reversed"))
    return fig


def machine_note() -> None:
    """Which hardware the runs get, and what that means for the numbers they will show."""
    m = state.machine()
    gpus = m.get("gpus") or []
    if gpus:
        names = md_escape(", ".join(f"{g.get('name', 'GPU')} ({charts.fmt_bytes(g.get('memory_total_bytes'))})"
                                    for g in gpus))
        st.caption(f":material/memory: **This machine**: {names}. The runs train on the GPU, and memory is the "
                   "GPU's, as the driver reports it (NVML) and as PyTorch allocated it.")
    elif m.get("cuda_available"):
        st.caption(":material/memory: **This machine** has a CUDA GPU (its memory could not be read): the runs "
                   "train there.")
    else:
        st.caption(f":material/memory: **This machine**: no GPU, {m.get('cpu_count', '?')} CPU cores. The runs "
                   "train on the CPU, which has no 16-bit tensor cores: expect **no speed-up** (fp16 is usually "
                   "slower). Memory is each run's own process (RSS), Python and PyTorch's libraries included, so "
                   "the differences between runs are smaller than the estimate above shows.")


def submit(key: str, cfg: TrainConfig, modes: list[str], name: str = "") -> None:
    """Queue one run per mode (every mode checked first); remember them for this page, or say why not. `name`: the
    name typed before Start (each run gets it with its precision)."""
    from llmfs.recipes import submit_precision_comparison
    try:
        ids = submit_precision_comparison(state.jobs(), cfg, modes, owner=key)
    except ConfigError as e:
        forms.show_config_error(e, forms.field_info_any(e.field))
        return
    except (SourceError, ValueError, OSError) as e:
        st.error(md_escape(e), icon=":material/error:")
        return
    run_panels.name_runs(ids, name, key)
    for run_id in ids:
        state.remember(key, run_id)
    st.session_state[f"{key}.compare"] = ids
    st.rerun()


# -- 3 · the comparison: live runs and results ---------------------------------------------------------------------
def batch(key: str) -> list[str]:
    """The runs of the comparison this session started last; after a refresh, the newest one on disk (the newest
    run from this page and the runs queued just before it with the same settings, one per precision)."""
    ids = [r for r in st.session_state.get(f"{key}.compare", []) if r in state.recalled(key)]
    if ids:
        return ids
    found, settings = [], None
    for run in state.jobs().list_runs():
        if run.kind != "train" or run.status().get("owner") != key:
            continue
        cfg = dict(run.config())
        mode = cfg.pop("precision", "fp32")
        if settings is None:
            settings = cfg
        elif cfg != settings or mode in [m for _, m in found]:
            break
        found.append((run.run_id, mode))
    return [rid for rid, _ in reversed(found)]


def comparison_section(key: str, start: str) -> None:
    ids = batch(key)
    if not ids:
        st.info(f"No comparison yet. Press **{start}**: each run's progress, then the loss, speed, memory and "
                "loss-scale charts appear here, live, and a summary when the runs are done.",
                icon=":material/monitoring:")
        return
    jobs = state.jobs()
    live = any(jobs.get(r).state not in FINAL_STATES for r in ids)
    st.fragment(run_every=panels.POLL_S if live else None)(_comparison_body)(ids, live)


def _comparison_body(ids: list[str], was_live: bool) -> None:
    jobs = state.jobs()
    try:
        runs = [jobs.get(r) for r in ids]
    except KeyError:
        st.warning("A run of this comparison was deleted (Runs page): start a new comparison.")
        return
    states = [r.state for r in runs]
    if was_live and all(s in FINAL_STATES for s in states):
        st.rerun(scope="app")  # redraw once as still charts: polling stops
    records = {_mode(r): panels.records_of(r.run_id) for r in runs}
    _status_lines(runs, records)
    if any(charts.of_kind(rec, "train") for rec in records.values()):
        _live_charts(records)
    if all(s in FINAL_STATES for s in states):
        results(ids)


def _mode(run) -> str:
    return run.config().get("precision", "fp32")


def _status_lines(runs: list, records: dict) -> None:
    """One progress bar per run, its precision and state in the bar's text; a Stop button while any is going."""
    jobs = state.jobs()
    live = [r for r in runs if r.state in (PENDING, RUNNING)]
    for run in runs:
        status, mode = run.status(), _mode(run)
        run_state = status.get("state")
        label = panels.BADGES.get(run_state, (run_state,))[0]
        train = charts.by_step(charts.of_kind(records[mode], "train"))
        total = int((train[-1].get("total_steps") if train else None) or run.config().get("steps") or 1)
        step = train[-1]["step"] if train else 0
        if run_state == PENDING:
            pos = jobs.queue_position(run.run_id)
            ahead = pos - 1 + len(jobs.active()) if pos else 0
            text = f"waiting: {ahead} run{'s' if ahead > 1 else ''} ahead" if ahead else "waiting to start"
        elif run_state == RUNNING and not train:
            text = "preparing: loading the model and data"
        else:
            text = f"{label.lower()} · step {step:,} of {total:,}"
            if run_state in FINAL_STATES and status.get("finished") and status.get("started"):
                text += f" · took {panels.fmt_duration(status['finished'] - status['started'])}"
        named = f" · {md_escape(run.name.removesuffix(f' · {mode}'))}" if run.name else ""  # its precision is first
        st.progress(min(1.0, step / total), text=f"**{mode}**{named} · {text}")
        if run_state == FAILED:
            st.error(f"{mode}: {md_escape(identity.shown(status.get('error') or 'the run failed'))}",
                     icon=":material/error:")
    if live:
        stopping = st.session_state.get("l16.stopping") == [r.run_id for r in live]
        if st.button("Stopping…" if stopping else "Stop the comparison", key="l16.stop", icon=":material/stop:",
                     disabled=stopping, help="Stops the running run after its current step and takes the waiting "
                                             "ones out of the queue."):
            for run in live:
                jobs.cancel(run.run_id)
            st.session_state["l16.stopping"] = [r.run_id for r in live]
            st.rerun(scope="fragment")
    if not state.default_ready() and any(r.state in (PENDING, RUNNING) for r in runs):
        st.info("The first run on this machine builds llmfs-tiny and its corpus first: about 5 minutes more.",
                icon=":material/construction:")


def _recolor(fig: go.Figure) -> go.Figure:
    """The same colour for a precision on every chart of the page, and its own dash pattern, so that curves lying
    on top of each other (the same run in another precision often does) all stay visible."""
    for trace in fig.data:
        mode = (trace.name or "").removesuffix(" (held-out)")
        if mode not in MODE_COLORS:
            continue
        trace.update(marker=dict(color=MODE_COLORS[mode]), line=dict(color=MODE_COLORS[mode]))
        if not trace.name.endswith("(held-out)"):
            trace.update(line=dict(dash=MODE_DASHES[mode], width=3 if mode == "fp32" else 2))
    return fig


def _live_charts(records: dict) -> None:
    with st.container(border=True):
        st.plotly_chart(_recolor(charts.loss_overlay(records)), key="l16:loss", config=PLOT_CONFIG)
        st.caption("Training loss per step (diamonds: held-out loss). Same data, same seed: the precisions should "
                   "track each other closely, often on top of each other, since 16 bits change the rounding, not "
                   "what the model learns.")
    left, right = st.columns(2)
    with left, st.container(border=True):
        st.plotly_chart(_recolor(charts.throughput_overlay(records)), key="l16:tps", config=PLOT_CONFIG)
        st.caption("Tokens per second: higher is faster. Anything else busy on this machine slows a run down, so "
                   "compare runs made back to back on an otherwise idle machine.")
    with right, st.container(border=True):
        st.plotly_chart(_recolor(charts.memory_overlay(records)), key="l16:memory", config=PLOT_CONFIG)
        about = charts.memory_series(next(iter(records.values())))["help"]
        st.caption(about[0].upper() + about[1:] + ".")
    if any(charts.of_kind(rec, "tensor_memory") for rec in records.values()):
        with st.container(border=True):
            st.plotly_chart(charts.tensor_memory_bars(records), key="l16:tensors", config=PLOT_CONFIG)
            st.caption("What each run's own tensors held at their largest, counted by the training loop: weights, "
                       "gradients and AdamW states after an update, and what the forward pass saved for backward. "
                       "This is what the precision changes (the process or GPU total above adds the same libraries, "
                       "caches and context to every run): fp32 and AMP keep 16 bytes of weights, gradients and "
                       "states per parameter, bf16-pure 8. Compare it with the estimate above.")
    scaled = {m: charts.of_kind(rec, "scaler") for m, rec in records.items()}
    scaled = {m: s for m, s in scaled.items() if s}
    if scaled:
        with st.container(border=True):
            st.plotly_chart(loss_scale_figure(scaled), key="l16:scale", config=PLOT_CONFIG)
            st.caption("The fp16 run's loss scale. The GradScaler starts at 2^16; whenever the scaled gradients "
                       "overflow (inf) it skips that step, weights unchanged (red ×), and halves the scale; after "
                       "2,000 good steps in a row it doubles it. A few skipped steps at the start are normal.")


def loss_scale_figure(scaler: dict[str, list[dict]]) -> go.Figure:
    """The loss scale over the steps (log2 axis), skipped steps marked."""
    fig = go.Figure()
    scales = []
    for mode, records in scaler.items():
        recs = charts.by_step(records)
        scales += [r["loss_scale"] for r in recs]
        color = MODE_COLORS.get(mode, MODE_COLORS["fp16"])
        fig.add_scatter(x=[r["step"] for r in recs], y=[r["loss_scale"] for r in recs], name=f"{mode} loss scale",
                        mode="lines+markers" if len(recs) <= charts.MARKERS_UP_TO else "lines", line_shape="hv",
                        line=dict(color=color, width=2), marker=dict(color=color, size=5),
                        customdata=[r.get("grad_underflow_frac") or 0 for r in recs],
                        hovertemplate="step %{x}<br>scale %{y:,.0f}<br>%{customdata:.2%} of gradients below fp16's "
                                      "smallest<extra></extra>")
        skipped = [r for r in recs if r.get("skipped")]
        if skipped:
            fig.add_scatter(x=[r["step"] for r in skipped], y=[r["loss_scale"] for r in skipped], mode="markers",
                            name="skipped step (overflow)", marker=dict(symbol="x", size=11, color="#e63946"),
                            hovertemplate="step %{x} skipped: the gradients overflowed at scale %{y:,.0f}"
                                          "<extra></extra>")
    lo = math.floor(math.log2(min(scales))) if scales else 0
    hi = math.ceil(math.log2(max(scales))) if scales else 16
    ticks = list(range(lo - 1, hi + 2))
    fig.update_layout(height=charts.HEIGHT, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
                      xaxis=dict(title="Step"),
                      yaxis=dict(title="Loss scale (log₂ axis)", type="log", tickvals=[2.0 ** k for k in ticks],
                                 ticktext=[f"2^{k}" for k in ticks],
                                 range=[(lo - 1.5) * math.log10(2), (hi + 1.5) * math.log10(2)]))
    return fig


# -- the results ---------------------------------------------------------------------------------------------------
def speed_spread(train: list[dict], skip: int = 3) -> float | None:
    """How much a run's speed varied from step to step, relative to its typical speed (± this fraction): half the
    spread of the middle half of its per-step tokens/s over their median (the first `skip` steps, which warm up,
    left out). None below 4 steps."""
    speeds = [r["tokens_per_s"] for r in train[skip:] if r.get("tokens_per_s")]
    if len(speeds) < 4:
        return None
    q1, _, q3 = statistics.quantiles(speeds, n=4)
    median = statistics.median(speeds)
    return (q3 - q1) / 2 / median if median > 0 else None


NOISE_FLOOR = 0.05  # two runs' speeds closer than 5 % are never called different: back-to-back runs vary that much


def speed_noise(row: dict, ref: dict) -> float:
    """The speed difference below which a run and the fp32 run count as equally fast: the larger of the two runs'
    own step-to-step spreads (`speed_spread`), and never below NOISE_FLOOR."""
    return max([NOISE_FLOOR] + [s for s in (row.get("speed_spread"), ref.get("speed_spread")) if s])


def same_speed(row: dict, ref: dict) -> bool:
    """Is a run's speed-up over fp32 within the noise of the two runs' measurements?"""
    return abs((row.get("speedup") or 1.0) - 1.0) <= speed_noise(row, ref)


def fmt_times(x: float) -> str:
    """A speed ratio: two decimals near 1 (where 1.0× would hide that 0.96 is slower), one above 2."""
    return f"{x:.1f}×" if x >= 2 else f"{x:.2f}×"


def comparison_rows(ids: list[str]) -> list[dict]:
    """`llmfs.precision.summarize` over the runs' results and telemetry: one row per run, speed-up, memory ratio
    and final-loss difference against the fp32 run (runs that failed or were stopped have no figures), and each
    run's step-to-step speed spread (`speed_spread`)."""
    jobs = state.jobs()
    rows, spreads = [], {}
    for rid in ids:
        run = jobs.get(rid)
        status = run.status()
        result = status.get("result") or {}
        rows.append({"run_id": rid, "state": status.get("state"), "precision": result.get("precision") or _mode(run),
                     "tokens_per_s": result.get("tokens_per_s"), "peak_memory_bytes": result.get("peak_memory_bytes"),
                     "final_loss": result.get("final_loss"), "skipped_steps": result.get("skipped_steps"),
                     "peak_nvml_bytes": prec.peak_nvml_bytes(run.read_metrics("telemetry")),
                     "tensor_bytes": sum((charts.tensor_peak(run.read_metrics("tensor_memory")) or {}).values())
                     or None})
        spreads[rid] = speed_spread(charts.by_step(run.read_metrics("train")))
    return [{**row, "speed_spread": spreads.get(row.get("run_id"))} for row in prec.summarize(rows)]


def results(ids: list[str]) -> None:
    rows = comparison_rows(ids)
    gpu = bool(state.machine().get("gpus")) or bool(state.machine().get("cuda_available"))
    st.markdown("##### Summary")
    frame = pd.DataFrame([{**r, "speed_spread": 100 * r["speed_spread"] if r.get("speed_spread") else None,
                           "peak_memory": charts.fmt_bytes(r.get("peak_memory_bytes")),
                           "peak_nvml": charts.fmt_bytes(r.get("peak_nvml_bytes")),
                           "tensors": charts.fmt_bytes(r.get("tensor_bytes"))} for r in rows])
    columns = ["precision", "state", "tokens_per_s", "speedup", "speed_spread", "tensors", "tensor_ratio",
               "peak_memory", "memory_ratio", "final_loss", "loss_diff", "skipped_steps"] + \
        (["peak_nvml"] if gpu else [])
    mem_help = ("Peak memory PyTorch allocated on the GPU during training." if gpu else
                "The run's own process's resident memory (RSS) at its peak, Python and PyTorch's libraries included.")
    st.dataframe(frame.reindex(columns=columns), hide_index=True, placeholder="–", key="l16.summary", column_config={
        "precision": "Precision", "state": "State",
        "tokens_per_s": st.column_config.NumberColumn("Tokens / s", format="%,.0f",
                                                      help="Training tokens per second over the whole run."),
        "speedup": st.column_config.NumberColumn("Speed-up vs fp32", format="%.2f×",
                                                 help="Tokens per second divided by the fp32 run's: 2.00× = twice "
                                                      "as fast."),
        "speed_spread": st.column_config.NumberColumn(
            "Speed varied by", format="±%.1f%%", help="How much the run's speed varied from step to step (the middle "
                                                     "half of its steps' tokens per second, relative to the typical "
                                                     "step): speed-ups within this, or under 5%, are about the same "
                                                     "speed."),
        "tensors": st.column_config.TextColumn("Tensor memory", help="The most the run's own tensors held "
                                               "(weights, gradients, optimizer states, activations), counted by "
                                               "the training loop."),
        "tensor_ratio": st.column_config.NumberColumn("Tensors vs fp32", format="%.2f×",
                                                      help="Tensor memory divided by the fp32 run's."),
        "peak_memory": st.column_config.TextColumn("Peak memory", help=mem_help),
        "memory_ratio": st.column_config.NumberColumn("Memory vs fp32", format="%.2f×",
                                                      help="Peak memory divided by the fp32 run's: 0.50× = half."),
        "final_loss": st.column_config.NumberColumn("Final loss", format="%.3f"),
        "loss_diff": st.column_config.NumberColumn("Loss vs fp32", format="%+.4f",
                                                   help="Final training loss minus the fp32 run's: near 0 = the "
                                                        "lower precision learned as well."),
        "skipped_steps": st.column_config.NumberColumn("Skipped steps", help="fp16: steps the loss scaler "
                                                                             "skipped because of inf gradients."),
        "peak_nvml": st.column_config.TextColumn("GPU memory (nvidia-smi)", help="The largest GPU memory the driver "
                                                 "reported (NVML): PyTorch's cache and the CUDA context included.")})
    if any(r.get("speedup") for r in rows):
        left, right = st.columns(2)
        left.plotly_chart(ratio_figure(rows, "speedup", "Speed vs fp32 (higher is faster)"), key="l16:speedup",
                          config=PLOT_CONFIG)
        field = "tensor_ratio" if any(r.get("tensor_ratio") for r in rows) else "memory_ratio"
        right.plotly_chart(ratio_figure(rows, field, ("Tensor memory" if field == "tensor_ratio" else "Peak memory")
                                        + " vs fp32 (lower is smaller)"), key="l16:memratio", config=PLOT_CONFIG)
    for line in conclusion(rows, gpu):
        st.markdown(line)


def ratio_figure(rows: list[dict], field: str, title: str) -> go.Figure:
    shown = [r for r in rows if r.get(field) is not None]
    fig = go.Figure(go.Bar(x=[r["precision"] for r in shown], y=[r[field] for r in shown],
                           marker_color=[MODE_COLORS.get(r["precision"], "#6c757d") for r in shown],
                           text=[f"{r[field]:.2f}×" for r in shown], textposition="outside", cliponaxis=False,
                           hovertemplate="%{x}: %{y:.2f}× fp32<extra></extra>"))
    top = max([r[field] for r in shown] + [1.0])
    fig.add_hline(y=1.0, line_dash="dash", line_color="gray", annotation_text="fp32",
                  annotation_position="top left")
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=40, b=10), showlegend=False,
                      title=dict(text=title, font=dict(size=14)), yaxis=dict(range=[0, top * 1.25]))
    return fig


def conclusion(rows: list[dict], gpu: bool) -> list[str]:
    """The comparison in sentences, from its numbers and the hardware it ran on. A speed difference within the
    runs' own step-to-step variation (`same_speed`) is called what it is: about the same speed."""
    lines = []
    for r in rows:
        if r.get("state") != SUCCEEDED:
            lines.append(f"**{r['precision']}** {r.get('state') or 'did not finish'}: it has no figures.")
    ref = next((r for r in rows if r["precision"] == "fp32" and r.get("tokens_per_s")), None)
    if ref is None:
        lines.append("Include **fp32** in the comparison: speed-up, memory and loss are measured against it.")
        return lines
    others = [r for r in rows if r is not ref and r.get("speedup")]
    for r in others:
        if same_speed(r, ref):
            noise = speed_noise(r, ref)
            line = (f"**{r['precision']}** ran **about as fast as fp32** ({fmt_times(r['speedup'])}: "
                    + (f"a difference within the ±{noise:.0%} by which their speed varied from step to step)"
                       if noise > NOISE_FLOOR else
                       f"a difference under {NOISE_FLOOR:.0%}, which runs made one after the other vary by anyway)"))
        else:
            line = f"**{r['precision']}** ran **{fmt_times(r['speedup'])}** as fast as fp32"
        if r.get("tensor_ratio"):
            line += f", with {r['tensor_ratio']:.2f}× its tensor memory"
        elif r.get("memory_ratio"):
            line += f", with {r['memory_ratio']:.2f}× its peak memory"
        diff = r.get("loss_diff")
        if diff is not None:
            line += (", and reached the same loss (within 0.02)" if abs(diff) < 0.02 else
                     f", and ended {abs(diff):.3f} {'above' if diff > 0 else 'below'} fp32's loss")
        if r.get("skipped_steps"):
            line += (f"; the scaler skipped {r['skipped_steps']} step{'s' if r['skipped_steps'] > 1 else ''} while it "
                     "lowered a scale that started too high (normal)")
        lines.append(line + ".")
    if not others:
        return lines
    faster = [r for r in others if r["speedup"] > 1 and not same_speed(r, ref)]
    best = max(faster, key=lambda r: r["speedup"]) if faster else None
    slower = [r for r in others if r["speedup"] < 1 and not same_speed(r, ref)]
    if best is None:
        if slower:
            verdict = ("none of the 16-bit precisions was faster than fp32 ("
                       + ", ".join(f"{r['precision']} {fmt_times(r['speedup'])}" for r in slower)
                       + (", the others about the same" if len(slower) < len(others) else "") + ")")
        else:
            verdict = ("every precision ran about as fast as fp32 (the differences are within the runs' own "
                       "variation), so none was measurably faster")
    if not gpu:
        if best is not None and best["speedup"] >= 1.15:
            lines.append(f"**{best['precision']}** was {fmt_times(best['speedup'])} faster even on this CPU: some "
                         "recent processors have 16-bit instructions (AVX-512 BF16, AMX), and on a shared machine "
                         "timings also vary with whatever else runs. The 2-3× of mixed precision comes from a GPU's "
                         "tensor cores on big matmuls (fp16 on NVIDIA GPUs since Volta, bf16 since Ampere).")
        else:
            start = (f"On this CPU the best was {best['precision']} at {fmt_times(best['speedup'])}: the"
                     if best else f"On this CPU {verdict}. The")
            lines.append(start + " 2-3× speed-up needs a GPU's tensor cores, which multiply 16-bit numbers "
                         "several times faster than 32-bit ones (fp16 on NVIDIA GPUs since Volta, bf16 since "
                         "Ampere). A CPU mostly converts 16-bit numbers back and forth instead, so it gains little "
                         "or loses.")
        lines.append("Peak memory measures each run's whole process here (RSS), libraries included, which hides "
                     "what 16 bits save; tensor memory counts only the run's own tensors, which is where they save "
                     "it.")
    elif best is not None and best["speedup"] >= 1.5:
        lines.append(f"On this GPU **{best['precision']}** was {fmt_times(best['speedup'])} faster: its matmuls ran "
                     "on 16-bit tensor cores. Memory falls by less than half under AMP, because the fp32 weights, "
                     "gradients and optimizer states stay; only bf16-pure halves them.")
    else:
        start = (f"Even on this GPU the best speed-up was {fmt_times(best['speedup'])}:" if best else
                 f"Even on this GPU {verdict}:")
        lines.append(start + " this model's matmuls are too small to keep the tensor cores busy, so the time goes "
                     "to launching kernels and moving data. The speed-up appears with bigger matrices: a bigger "
                     "model, batch or sequence length.")
    return lines
