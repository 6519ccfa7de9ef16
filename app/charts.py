"""Plotly figures built from a run's metrics records (the lines of metrics.jsonl): pure functions, records -> figure.

Every figure is readable from its first point: markers on while points are few, explicit axis ranges (the loss
chart's x axis spans the whole run, so it also shows how far along the run is), and an empty figure says what it
is waiting for instead of drawing an empty grid.
"""

from __future__ import annotations

import re
import statistics
import textwrap
from typing import Iterable, Mapping

import plotly.graph_objects as go

from llmfs.data.dedup import candidate_probability, lsh_threshold  # noqa: F401 (the L13 page reads them here too)
from llmfs.eval.metrics import LOWER_IS_BETTER
from llmfs.memory import PART_LABELS

HEIGHT = 300
SMOOTH_FROM = 30          # steps before a smoothed trend line is added to the loss chart
MARKERS_UP_TO = 150        # beyond this many points a line alone reads better than a line of dots
LOSS_HELP = "lower is better"


# -- picking values out of records ------------------------------------------------------------------------------
def of_kind(records: Iterable[dict], kind: str) -> list[dict]:
    return [r for r in records if r.get("kind") == kind]


def by_step(records: Iterable[dict]) -> list[dict]:
    """One record per step, the last one written winning (a resumed run may repeat steps after its checkpoint)."""
    latest: dict[int, dict] = {}
    for r in records:
        latest[int(r.get("step", 0))] = r
    return [latest[s] for s in sorted(latest)]


def total_steps(records: Iterable[dict]) -> int | None:
    train = of_kind(records, "train")
    return train[-1].get("total_steps") if train else None


def memory_series(records: Iterable[dict]) -> dict:
    """What the memory chart plots: GPU memory from NVML where present, else the process's resident memory.

    Returns {"label", "help", "t0" (the first telemetry record's time), "t" (seconds since t0), "used",
    "allocated" (torch's allocator, GPU only, or None), "total" (bytes or None)}.
    """
    tele = of_kind(records, "telemetry")
    gpu = [r for r in tele if r.get("gpu_memory_used_bytes") is not None]
    t0 = tele[0]["time"] if tele else 0.0
    if gpu:
        return {"label": "GPU memory used", "help": "all processes on the GPU, as the driver (NVML) reports it",
                "t0": t0, "t": [r["time"] - t0 for r in gpu], "used": [r["gpu_memory_used_bytes"] for r in gpu],
                "allocated": [r.get("cuda_allocated_bytes") for r in gpu]
                if any(r.get("cuda_allocated_bytes") is not None for r in gpu) else None,
                "total": gpu[-1].get("gpu_memory_total_bytes")}
    rss = [r for r in tele if r.get("process_rss_bytes") is not None]
    return {"label": "Run process memory", "help": "no GPU: the resident memory of the process the run trains "
                                                   "in (Python and PyTorch's libraries included)",
            "t0": t0, "t": [r["time"] - t0 for r in rss], "used": [r["process_rss_bytes"] for r in rss],
            "allocated": None, "total": rss[-1].get("system_total_bytes") if rss else None}


# What the training loop counts on its own tensors (`llmfs.tensor_memory`, kind="tensor_memory" records): the parts
# in the order they stack, and their colours (the L15 and L16 estimate charts use the same).
TENSOR_PARTS = {field: label.lower() for field, label in PART_LABELS.items()}  # the estimate's parts, same order
TENSOR_COLORS = {"weights": "#4361ee", "gradients": "#f77f00", "optimizer states": "#2a9d8f",
                 "activations": "#7b2cbf"}
TENSOR_LABEL = "Tensor memory (weights, gradients, optimizer states, activations)"


def tensor_memory_series(records: Iterable[dict], t0: float | None = None) -> dict:
    """The training loop's tensor counts: {"t" (seconds since `t0`, default the first count), "steps", and one list
    of bytes per part of `TENSOR_PARTS`}; empty lists before the first count (and for runs from before counting)."""
    counts = by_step(of_kind(records, "tensor_memory"))
    times = [r.get("time", 0.0) for r in counts]
    start = t0 if t0 is not None and counts and t0 <= times[0] else (times[0] if times else 0.0)
    out: dict = {"t": [t - start for t in times], "steps": [r["step"] for r in counts]}
    out.update({field: [r.get(field) or 0 for r in counts] for field in TENSOR_PARTS})
    return out


def tensor_peak(records: Iterable[dict]) -> dict | None:
    """The count with the largest total (bytes per part of `TENSOR_PARTS`), or None before the first one."""
    counts = of_kind(records, "tensor_memory")
    if not counts:
        return None
    best = max(counts, key=lambda r: sum(r.get(f) or 0 for f in TENSOR_PARTS))
    return {f: best.get(f) or 0 for f in TENSOR_PARTS}


def smooth(values: list[float], half_window: int | None = None) -> list[float]:
    """Centred moving average (no lag, unlike an exponential one, which trails a falling loss): each point is the
    mean of up to `half_window` neighbours on each side; the window narrows at the ends. The default widens with
    the run: 2 neighbours at 40 steps, 10 at 400."""
    n = len(values)
    h = half_window if half_window is not None else max(2, n // 40)
    prefix = [0.0]
    for v in values:
        prefix.append(prefix[-1] + v)
    out = []
    for i in range(n):
        lo, hi = max(0, i - h), min(n, i + h + 1)
        out.append((prefix[hi] - prefix[lo]) / (hi - lo))
    return out


def memory_unit(max_bytes: float) -> tuple[str, float]:
    return ("GB", 1e9) if max_bytes >= 1e9 else ("MB", 1e6)


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    unit, scale = memory_unit(n)
    return f"{n / scale:,.1f} {unit}" if unit == "GB" else f"{n / scale:,.0f} {unit}"


def recent_tokens_per_s(records: Iterable[dict], last: int = 20) -> float | None:
    """Median tokens/s over the last `last` steps (the first steps include warm-up and are slow)."""
    train = by_step(of_kind(records, "train"))
    values = [r["tokens_per_s"] for r in train[-last:] if r.get("tokens_per_s")]
    return statistics.median(values) if values else None


# -- single-run figures -----------------------------------------------------------------------------------------
def loss_figure(records: list[dict], total: int | None = None) -> go.Figure:
    """Training loss per step (line) and held-out loss at each evaluation (diamonds)."""
    train = by_step(of_kind(records, "train"))
    evals = by_step(of_kind(records, "eval"))
    total = total or total_steps(records)
    if not train and not evals:
        return _waiting("Step", "Loss", "Waiting for the first step")
    traces = _with_trend([r["step"] for r in train], [r["loss"] for r in train], "training loss",
                         hover="step %{x}<br>loss %{y:.3f}")
    if evals:
        traces.append(_diamonds([r["step"] for r in evals], [r["eval_loss"] for r in evals], "held-out loss",
                                _color(1), hover="step %{x}<br>held-out loss %{y:.3f}"))
    ys = [r["loss"] for r in train] + [r["eval_loss"] for r in evals]
    last = max([r["step"] for r in train] + [r["step"] for r in evals])
    return _figure(traces, "Step", "Loss (" + LOSS_HELP + ")", x_range=_step_range(last, total),
                   y_range=_padded(min(ys), max(ys)))


def memory_figure(records: list[dict]) -> go.Figure:
    """Memory over the run's wall-clock time, with the device's total as a dashed line when it is in view; under it,
    once the training loop has counted them, the run's own tensors stacked by part (`TENSOR_LABEL`), on the same
    time axis: what tells fp32 from bf16 when the process's total hides it."""
    s = memory_series(records)
    tensors = tensor_memory_series(records, s["t0"] if s["used"] else None)
    if not s["used"]:
        return tensor_memory_figure(tensors) if tensors["t"] else _waiting("Seconds since the start", "Memory",
                                                                         "Waiting for readings")
    peak = max(max(s["used"]), max(v or 0 for v in (s["allocated"] or [0])))
    total = s["total"]
    show_total = bool(total) and peak >= 0.25 * total  # else the total would squash the curve flat
    unit, scale = memory_unit(max(peak, total if show_total else 0))
    hover = "%{x:.0f} s<br>%{y:,.2f} " + unit
    traces = [_line(s["t"], [v / scale for v in s["used"]], s["label"], _color(0), hover=hover)]
    if s["allocated"]:
        traces.append(_line(s["t"], [(v or 0) / scale for v in s["allocated"]], "allocated by PyTorch", _color(2),
                            hover=hover, markers=False))
    layout: dict = {}
    if show_total:
        layout["shapes"] = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": total / scale,
                             "y1": total / scale, "line": {"dash": "dash", "color": "gray", "width": 1.5}}]
        layout["annotations"] = [{"text": f"total {fmt_bytes(total)}", "showarrow": False, "xref": "paper",
                                  "x": 0, "y": total / scale, "xanchor": "left", "yanchor": "bottom",
                                  "font": {"color": "gray", "size": 11}}]
    elif total:  # say it in the legend rather than squash the curve
        traces[0]["name"] += f" (of {fmt_bytes(total)})"
    top = total if show_total else peak
    x_range = _time_range(max(s["t"] + tensors["t"]))
    fig = _figure(traces, "Seconds since the start", f"Memory ({unit})", x_range=x_range,
                  y_range=[0, top / scale * 1.1], **layout)
    if tensors["t"]:
        _add_tensor_row(fig, tensors, x_range)
    return fig


def _tensor_traces(tensors: dict, scale: float, unit: str, axes: dict | None = None) -> list[dict]:
    """One stacked area per part (step-shaped: the counts hold until the next one)."""
    traces = []
    for field, part in TENSOR_PARTS.items():
        color = TENSOR_COLORS[part]
        traces.append({"type": "scatter", "x": tensors["t"], "y": [v / scale for v in tensors[field]], "name": part,
                       "stackgroup": "tensors", "mode": "lines", "line": {"color": color, "width": 1, "shape": "hv"},
                       "legendgroup": "tensors", "customdata": tensors["steps"],
                       "hovertemplate": f"{part}: %{{y:,.2f}} {unit}<br>step %{{customdata}}<extra></extra>",
                       **(axes or {})})
    return traces


def _tensor_unit(tensors: dict) -> tuple[str, float, float]:
    top = max(sum(vals) for vals in zip(*(tensors[f] for f in TENSOR_PARTS)))
    return (*memory_unit(top), top)


def tensor_memory_figure(tensors: dict) -> go.Figure:
    """The tensor counts alone (a run whose process memory was not read)."""
    unit, scale, top = _tensor_unit(tensors)
    return _figure(_tensor_traces(tensors, scale, unit), "Seconds since the first step",
                   f"Tensor memory ({unit})", x_range=_padded(0, max(tensors["t"]), rel=0.02, minimum=1),
                   y_range=[0, top / scale * 1.15], title={"text": TENSOR_LABEL, "font": {"size": 12}})


def _add_tensor_row(fig: go.Figure, tensors: dict, x_range: list) -> None:
    """A second row under the process's memory: the tensors stacked by part, sharing its time axis."""
    unit, scale, top = _tensor_unit(tensors)
    fig.add_traces(_tensor_traces(tensors, scale, unit, {"xaxis": "x2", "yaxis": "y2"}))
    annotations = [*fig.layout.annotations, {
        "text": TENSOR_LABEL, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0, "y": 0.43,
        "xanchor": "left", "yanchor": "bottom", "font": {"size": 11, "color": "gray"}}]
    fig.update_layout(height=HEIGHT + 140, annotations=annotations,
                      xaxis={"domain": [0, 1], "anchor": "y", "title": None},
                      yaxis={"domain": [0.56, 1.0]},
                      xaxis2={"domain": [0, 1], "anchor": "y2", "matches": "x", "range": x_range,
                              "title": {"text": "Seconds since the start"}, "zeroline": False},
                      yaxis2={"domain": [0.0, 0.42], "anchor": "x2", "range": [0, top / scale * 1.15],
                              "title": {"text": f"Tensors ({unit})"}, "zeroline": False})


def throughput_figure(records: list[dict]) -> go.Figure:
    """Training tokens per second at each step."""
    train = by_step(of_kind(records, "train"))
    if not train:
        return _waiting("Step", "Tokens per second", "Waiting for the first step")
    ys = [r.get("tokens_per_s", 0) for r in train]
    traces = _with_trend([r["step"] for r in train], ys, "tokens / s", hover="step %{x}<br>%{y:,.0f} tokens/s")
    return _figure(traces, "Step", "Tokens per second", x_range=_step_range(train[-1]["step"], total_steps(records)),
                   y_range=[0, (max(ys) or 1) * 1.1])


# -- overlays of several runs -----------------------------------------------------------------------------------
# One colour per run; legends go under the chart (long run names); per-step values are drawn as their trend
# (see `smooth`) once a run has SMOOTH_FROM steps, since several noisy lines on one chart hide each other.
OVERLAY_LEGEND = {"orientation": "h", "yanchor": "top", "y": -0.3, "xanchor": "left", "x": 0.0}


def loss_overlay(runs: Mapping[str, list[dict]], colors: Mapping[str, str] | None = None,
                 dashes: Mapping[str, str] | None = None) -> go.Figure:
    """Training loss of several runs (lines) and their held-out losses (diamonds, same colour, no legend entry).
    `colors`: run name -> its colour (`run_colors`); the others take the palette's in turn. `dashes`: run name -> its
    line's dash pattern (`run_dashes`), so that runs whose curves coincide all stay visible."""
    traces = []
    for i, (name, records) in enumerate(runs.items()):
        train = by_step(of_kind(records, "train"))
        evals = by_step(of_kind(records, "eval"))
        color = _color_of(name, i, colors)
        if train:
            traces.append(_dashed(_trend_line([r["step"] for r in train], [r["loss"] for r in train], name, color),
                                  name, dashes))
        if evals:
            traces.append({**_diamonds([r["step"] for r in evals], [r["eval_loss"] for r in evals],
                                       f"{name} (held-out)", color, group=name), "showlegend": False})
    if not traces:
        return _waiting("Step", "Loss", "None of these runs has a training step yet")
    return _figure(traces, "Step", "Loss (" + LOSS_HELP + ")", legend=OVERLAY_LEGEND, height=HEIGHT + 40)


def memory_overlay(runs: Mapping[str, list[dict]], colors: Mapping[str, str] | None = None,
                   dashes: Mapping[str, str] | None = None) -> go.Figure:
    series = {name: memory_series(records) for name, records in runs.items()}
    peak = max((max(s["used"]) for s in series.values() if s["used"]), default=0)
    unit, scale = memory_unit(peak)
    labels = sorted({s["label"] for s in series.values() if s["used"]})
    traces = [_dashed(_line(s["t"], [v / scale for v in s["used"]], name, _color_of(name, i, colors)), name, dashes)
              for i, (name, s) in enumerate(series.items()) if s["used"]]
    if not traces:
        return _waiting("Seconds since the start", "Memory", "No memory readings yet")
    last = max((max(s["t"]) for s in series.values() if s["t"]), default=0.0)
    return _figure(traces, "Seconds since the start", f"{' / '.join(labels)} ({unit})", x_range=_time_range(last),
                   y_range=[0, peak / scale * 1.1], legend=OVERLAY_LEGEND, height=HEIGHT + 40)


def tensor_memory_bars(runs: Mapping[str, list[dict]]) -> go.Figure:
    """Each run's largest tensor count stacked by part, one bar per run, the total at its end: fp32 against bf16
    against bf16-pure as the runs really held them, on any machine."""
    peaks = {name: tensor_peak(records) for name, records in runs.items()}
    peaks = {name: p for name, p in peaks.items() if p}
    if not peaks:
        return _waiting("Tensor memory", "Run", "Waiting for the runs' first steps")
    names = list(peaks)
    top = max(sum(p.values()) for p in peaks.values())
    unit, scale = memory_unit(top)
    traces = [{"type": "bar", "orientation": "h", "y": names, "x": [peaks[n][field] / scale for n in names],
               "name": part, "marker": {"color": TENSOR_COLORS[part]},
               "hovertemplate": f"{part}: %{{x:,.2f}} {unit}<extra>%{{y}}</extra>"}
              for field, part in TENSOR_PARTS.items()]
    totals = [{"text": f" {fmt_bytes(sum(peaks[n].values()))}", "x": sum(peaks[n].values()) / scale, "y": n,
               "showarrow": False, "xanchor": "left", "font": {"size": 12}} for n in names]
    return _figure(traces, f"{TENSOR_LABEL} ({unit})", "", barmode="stack", annotations=totals,
                   height=max(HEIGHT - 80, 60 * len(names) + 120),
                   xaxis={"title": {"text": f"Tensor memory ({unit})"}, "range": [0, top / scale * 1.25]},
                   yaxis={"autorange": "reversed", "type": "category"})


def throughput_overlay(runs: Mapping[str, list[dict]], colors: Mapping[str, str] | None = None,
                       dashes: Mapping[str, str] | None = None) -> go.Figure:
    traces = []
    for i, (name, records) in enumerate(runs.items()):
        train = by_step(of_kind(records, "train"))
        if train:
            traces.append(_dashed(_trend_line([r["step"] for r in train], [r.get("tokens_per_s", 0) for r in train],
                                              name, _color_of(name, i, colors)), name, dashes))
    if not traces:
        return _waiting("Step", "Tokens per second", "None of these runs has a training step yet")
    return _figure(traces, "Step", "Tokens per second", legend=OVERLAY_LEGEND, height=HEIGHT + 40)


def _trend_line(xs: list, ys: list, name: str, color: str) -> dict:
    if len(ys) < SMOOTH_FROM:
        return _line(xs, ys, name, color, group=name)
    return _line(xs, smooth(ys), name, color, group=name, markers=False)


# The same thing in the same colour on every page: a run from pretrained weights is blue and one from random weights
# red wherever they are compared; each precision keeps its colour (L16's charts and the Runs page alike).
PRECISION_COLORS = {"fp32": "#6c757d", "fp16": "#f77f00", "bf16": "#4361ee", "bf16-pure": "#2a9d8f"}
INIT_COLORS = {"pretrained": "#4361ee", "random": "#e63946"}
VALUE_COLORS = {"init": INIT_COLORS, "precision": PRECISION_COLORS}
# Runs in several precisions often draw the same curve: each its own dash, so the one on top hides none below.
PRECISION_DASHES = {"fp32": "solid", "fp16": "dash", "bf16": "dot", "bf16-pure": "dashdot"}


def run_colors(configs: Mapping[str, Mapping], differing: list[str]) -> dict[str, str]:
    """run -> colour, for runs compared on one chart: by the value of the first setting they differ in that has
    colours of its own (pretrained / random, the precision) when that tells every run apart; else the palette's
    colours in turn. `differing`: the settings in which they differ, most telling first (`llmfs.runs.differences`)."""
    for key in differing:
        table = VALUE_COLORS.get(key)
        if table is None:
            continue
        values = [c.get(key) for c in configs.values()]
        if all(v in table for v in values) and len(set(values)) == len(values):
            return {rid: table[c.get(key)] for rid, c in configs.items()}
        break
    return {rid: _color(i) for i, rid in enumerate(configs)}


def run_dashes(configs: Mapping[str, Mapping], differing: list[str]) -> dict[str, str]:
    """run -> its line's dash pattern when the runs differ in their precision first (`PRECISION_DASHES`); else {}."""
    if differing[:1] == ["precision"] and all(c.get("precision") in PRECISION_DASHES for c in configs.values()):
        return {rid: PRECISION_DASHES[c["precision"]] for rid, c in configs.items()}
    return {}


def _dashed(trace: dict, name: str, dashes: Mapping[str, str] | None) -> dict:
    dash = (dashes or {}).get(name)
    if dash:
        trace["line"] = {**trace["line"], "dash": dash}
    return trace


def legend_text(text: str) -> str:
    """A name from a person (a run's name) for a legend or an axis: plotly reads a few HTML tags (`<b>`, `<br>`) in
    them, so `<`, `>` and `&` become entities, which it shows as the characters typed."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _color_of(name: str, i: int, colors: Mapping[str, str] | None) -> str:
    return (colors or {}).get(name) or _color(i)


# -- building blocks ----------------------------------------------------------------------------------------------
# Figures are assembled as plain dicts and validated once by go.Figure: about 5x cheaper than many update_*()
# calls, which matters for a panel that redraws every second while a run trains in the same process.
_PALETTE = ("#4361ee", "#f77f00", "#2a9d8f", "#e63946", "#7b2cbf", "#588157", "#bc6c25", "#6c757d")
# A chart is about 700 px wide: more points than that only add bytes to every poll of every viewer. Longer series
# keep each bucket's lowest and highest point (a spike in the loss stays visible), and the last point.
MAX_POINTS = 800


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _line(xs: list, ys: list, name: str, color: str, *, hover: str | None = None, markers: bool | None = None,
          group: str | None = None) -> dict:
    xs, ys = _thin(xs, ys)
    markers = len(xs) <= MARKERS_UP_TO if markers is None else markers
    trace = {"type": "scatter", "x": xs, "y": ys, "name": name, "mode": "lines+markers" if markers else "lines",
             "line": {"color": color, "width": 2}, "marker": {"color": color, "size": 5}}
    if hover:
        trace["hovertemplate"] = hover + "<extra></extra>"
    if group:
        trace["legendgroup"] = group
    return trace


def _with_trend(xs: list, ys: list, name: str, hover: str) -> list[dict]:
    """The raw per-step values; from SMOOTH_FROM steps on, faint, under a smoothed trend line (one batch is noisy)."""
    raw = _line(xs, ys, name, _color(0), hover=hover)
    if len(xs) < SMOOTH_FROM:
        return [raw]
    raw.update(opacity=0.35, line={"color": _color(0), "width": 1})
    return [raw, _line(xs, smooth(ys), "trend (smoothed)", _color(0), markers=False,
                       hover=hover.replace("%{y", "trend %{y", 1))]


def _diamonds(xs: list, ys: list, name: str, color: str, *, hover: str | None = None, group: str | None = None) -> dict:
    trace = {"type": "scatter", "x": xs, "y": ys, "name": name, "mode": "lines+markers",
             "line": {"color": color, "width": 1, "dash": "dot"},
             "marker": {"color": color, "size": 10, "symbol": "diamond"}}
    if hover:
        trace["hovertemplate"] = hover + "<extra></extra>"
    if group:
        trace["legendgroup"] = group
    return trace


def _figure(traces: list[dict], x_title: str, y_title: str, *, x_range: list | None = None,
            y_range: list | None = None, **layout) -> go.Figure:
    xaxis = {"title": {"text": x_title}, "zeroline": False}
    yaxis = {"title": {"text": y_title}, "zeroline": False}
    if x_range:
        xaxis["range"] = x_range
    if y_range:
        yaxis["range"] = y_range
    base = {"height": HEIGHT, "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "hovermode": "closest",
            "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
            "xaxis": xaxis, "yaxis": yaxis, "showlegend": bool(traces)}
    return go.Figure(data=traces, layout={**base, **layout})


def _waiting(x_title: str, y_title: str, message: str) -> go.Figure:
    """An empty chart that says what it is waiting for."""
    fig = _figure([], x_title, y_title, annotations=[{
        "text": message, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
        "font": {"size": 14, "color": "gray"}}])
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, showgrid=False)
    return fig


def _thin(xs: list, ys: list, limit: int = MAX_POINTS) -> tuple[list, list]:
    """At most `limit` points: the first, each bucket's minimum and maximum in order, the last."""
    n = len(xs)
    if n <= limit:
        return xs, ys
    buckets = max(1, (limit - 2) // 2)
    keep = [0]
    for b in range(buckets):
        lo, hi = 1 + (n - 2) * b // buckets, 1 + (n - 2) * (b + 1) // buckets
        if lo >= hi:
            continue
        part = [(ys[i] if ys[i] is not None else float("nan"), i) for i in range(lo, hi)]
        i_min = min(part, key=lambda t: (t[0] != t[0], t[0]))[1]  # NaN (a diverged step) never the minimum
        i_max = max(part, key=lambda t: (t[0] == t[0], t[0]))[1]
        keep.extend(sorted({i_min, i_max}))
    keep.append(n - 1)
    return [xs[i] for i in keep], [ys[i] for i in keep]


def _step_range(last: int, total: int | None) -> list[float]:
    """x from 0 to a little past the last step (so early points spread out), never past the run's end."""
    right = max(last * 1.25, 10)
    if total:
        right = min(right, total)
    return _padded(0, max(right, last), rel=0.02, minimum=0.5)


def _time_range(last_s: float) -> list[float]:
    """An axis of seconds since the start: from (just before) 0, never negative seconds, to at least 1 s (a single
    reading sits at the left, on an axis a person can read)."""
    pad = max(last_s * 0.02, 0.02)
    return [-pad, max(last_s + pad, 1.0)]


def _padded(lo: float, hi: float, rel: float = 0.08, minimum: float = 0.05) -> list[float]:
    pad = max((hi - lo) * rel, minimum)
    return [lo - pad, hi + pad]


# -- data pipelines (L13) -----------------------------------------------------------------------------------------
# The pipeline's records (kind="pipeline") carry cumulative counts: documents_in / _out, bytes_in, elapsed_s, the
# funnel [{step, documents, dropped}], drops {reason: n} and mix {count_ / share_ / target_<source>}.
STEP_NAMES = {"read": "Read", "gopher_quality": "Gopher quality", "gopher_repetition": "Gopher repetition",
              "c4": "C4 cleaning", "length": "Length", "language": "Language", "regex": "Regex rules",
              "range": "Range rules", "exact_dedup": "Exact-copy removal", "minhash_dedup": "Near-duplicate removal"}
RULE_NAMES = {"word_count": "word count", "mean_word_length": "word length", "symbol_word_ratio": "symbols per word",
              "bullet_lines": "bullet lines", "ellipsis_lines": "lines ending in ...",
              "alpha_words": "words without letters", "stop_words": "few everyday words",
              "dup_line_frac": "repeated lines", "dup_para_frac": "repeated paragraphs",
              "dup_line_char_frac": "text in repeated lines", "dup_para_char_frac": "text in repeated paragraphs",
              "too_few_sentences": "too few sentences", "curly_bracket": "curly brackets (code)",
              "lorem_ipsum": "lorem ipsum", "too_short": "too short", "too_long": "too long",
              "too_few_words": "too few words", "too_many_words": "too many words"}
REASON_NAMES = {"minhash_dedup:near_duplicate": "Near-copy of a kept document",
                "exact_dedup:duplicate": "Exact copy of a kept document"}
STEP_COLORS = {"gopher_quality": 1, "gopher_repetition": 4, "c4": 3, "length": 5, "language": 6, "regex": 7,
               "range": 7, "exact_dedup": 2, "minhash_dedup": 2}


def step_name(step: str) -> str:
    return STEP_NAMES.get(step, step.replace("_", " ").capitalize())


def reason_name(reason: str) -> str:
    """A drop reason in plain words: `gopher_repetition:dup_5gram_frac` -> `Gopher repetition: repeated 5-word
    phrases`."""
    if reason in REASON_NAMES:
        return REASON_NAMES[reason]
    step, _, rule = reason.partition(":")
    if step == "other":                                       # drops_figure's bar for the smallest reasons
        return f"{rule} other rules"
    if not rule:
        return step_name(step)
    if m := re.fullmatch(r"(top|dup)_(\d+)gram_frac", rule):
        rule = f"most common {m[2]}-word phrase" if m[1] == "top" else f"repeated {m[2]}-word phrases"
    else:
        rule = RULE_NAMES.get(rule, rule.replace("_", " "))
    return f"{step_name(step)}: {rule}"


REASON_HELP = {
    "gopher_quality:word_count": "Too few words (under 50 by default) or far too many: menus, error pages, stubs.",
    "gopher_quality:mean_word_length": "Average word length outside 3 to 10 letters: lists of numbers, links or "
                                       "glued-together text.",
    "gopher_quality:symbol_word_ratio": "Too many '#' or '...' for its number of words: hashtags, cut-off snippets.",
    "gopher_quality:bullet_lines": "Almost every line is a bullet point: navigation menus and link lists.",
    "gopher_quality:ellipsis_lines": "Many lines end in '...': teasers that cut off.",
    "gopher_quality:alpha_words": "Too many 'words' without a letter: tables of numbers, code, symbols.",
    "gopher_quality:stop_words": "Hardly any everyday words (the, and, of, to ...): not running English text.",
    "c4:lorem_ipsum": "Placeholder text (lorem ipsum): an unfinished template.",
    "c4:curly_bracket": "Contains a '{': most such pages are code or templates, not prose.",
    "c4:too_few_sentences": "Too few sentences left once C4 removed short, unpunctuated, javascript and cookie lines.",
    "exact_dedup:duplicate": "An exact copy (ignoring case and punctuation) of a document kept earlier.",
    "minhash_dedup:near_duplicate": "Shares most of its word sequences with a document kept earlier: a near-copy.",
    "length:too_short": "Fewer characters than the minimum.", "length:too_long": "More characters than the maximum.",
    "length:too_few_words": "Fewer words than the minimum.", "length:too_many_words": "More words than the maximum.",
}


def reason_help(reason: str) -> str:
    """Why a rule drops documents, in a sentence (for hovers and captions); empty for a rule it does not know."""
    if reason in REASON_HELP:
        return REASON_HELP[reason]
    rule = reason.partition(":")[2]
    if reason.startswith("gopher_repetition:"):
        if rule.startswith("top_"):
            return "One short phrase makes up too much of the text: keyword stuffing, repeated slogans."
        if rule.startswith("dup_") and "gram" in rule:
            return "Long word sequences repeated many times: generated, templated or copy-pasted text."
        return "The same lines or paragraphs again and again: boilerplate, spam, scraped templates."
    if reason.startswith("language:"):
        return "Not in the chosen language(s): too few of that language's common words."
    return ""


def s_curve_figure(bands: int, rows: int, reference: tuple[int, int] | None = (14, 8)) -> go.Figure:
    """The chance of becoming a candidate pair against Jaccard similarity for `bands` x `rows`, with the threshold
    marked; `reference` (FineWeb's 14 x 8) is drawn faintly when the settings differ from it."""
    xs = [i / 100 for i in range(101)]
    hover = "similarity %{x:.2f}<br>candidate with probability %{y:.1%}"
    traces = [_line(xs, [candidate_probability(s, bands, rows) for s in xs], f"{bands} bands x {rows} rows",
                    _color(0), hover=hover, markers=False)]
    if reference and tuple(reference) != (bands, rows):
        b, r = reference
        traces.insert(0, {**_line(xs, [candidate_probability(s, b, r) for s in xs], f"FineWeb ({b} x {r})",
                                  "#adb5bd", hover=hover, markers=False), "line": {"color": "#adb5bd", "dash": "dot"}})
    t = lsh_threshold(bands, rows)
    marks = {"shapes": [{"type": "line", "x0": t, "x1": t, "yref": "paper", "y0": 0, "y1": 1,
                         "line": {"dash": "dash", "color": "gray", "width": 1.5}}],
             "annotations": [{"text": f"threshold ≈ {t:.2f}", "showarrow": False, "x": t, "xanchor": "right",
                              "y": 0.95, "yref": "paper", "font": {"color": "gray", "size": 11}}]}
    return _figure(traces, "Jaccard similarity of two documents", "Chance they are compared", x_range=[0, 1],
                   yaxis={"title": {"text": "Chance they are compared"}, "tickformat": ".0%",
                                                 "range": [-0.03, 1.03], "zeroline": False}, **marks)


def funnel_figure(funnel: list[dict]) -> go.Figure:
    """Documents still in the stream after each step (read, each filter, deduplication), as a funnel."""
    if not funnel:
        return _waiting("Documents", "Step", "Waiting for the first documents")
    names = [step_name(r["step"]) for r in funnel]
    trace = {"type": "funnel", "y": names, "x": [r["documents"] for r in funnel],
             "textinfo": "value+percent initial", "marker": {"color": [_color(0)] + [_color(2)] * (len(funnel) - 1)},
             "customdata": [r.get("dropped", 0) for r in funnel], "connector": {"line": {"color": "#ced4da"}},
             "hovertemplate": "%{y}: %{x:,} documents left<br>%{customdata:,} dropped here<extra></extra>"}
    return go.Figure(data=[trace], layout={"height": HEIGHT, "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
                                           "showlegend": False})


MAX_REASONS = 12


def drops_figure(drops: Mapping[str, int]) -> go.Figure:
    """Documents dropped per reason, largest at the top, one colour per step; past MAX_REASONS bars the smallest
    reasons share one bar."""
    if not drops:
        return _waiting("Documents dropped", "Reason", "Nothing dropped yet")
    items = sorted(drops.items(), key=lambda kv: -kv[1])
    if len(items) > MAX_REASONS:                              # the long tail in one bar, so the chart stays readable
        rest = items[MAX_REASONS - 1:]
        items = items[:MAX_REASONS - 1] + [(f"other:{len(rest)}", sum(n for _, n in rest))]
    items.reverse()                                           # plotly draws the first bar at the bottom
    trace = {"type": "bar", "orientation": "h", "y": [reason_name(r) for r, _ in items], "x": [n for _, n in items],
             "marker": {"color": [_step_color(r.partition(":")[0]) for r, _ in items]},
             "text": [f"{n:,}" for _, n in items], "textposition": "outside", "cliponaxis": False,
             "customdata": [[r, _wrap(reason_help(r))] for r, _ in items],
             "hovertemplate": "<b>%{y}</b>: %{x:,} documents<br>%{customdata[1]}<br>reason code: %{customdata[0]}"
                              "<extra></extra>"}
    fig = _figure([trace], "Documents dropped", "", height=max(HEIGHT, 28 * len(items) + 80), showlegend=False,
                  margin={"l": 10, "r": 40, "t": 30, "b": 10}, x_range=[0, max(n for _, n in items) * 1.15])
    fig.update_xaxes(nticks=4, tickangle=0, tickformat="~s")
    return fig


MIN_GAP_S = 1.0    # a rate over a shorter gap mostly shows the batching of the steps (dedup pulls 128 at once)


def _step_color(step: str) -> str:
    return _color(STEP_COLORS[step]) if step in STEP_COLORS else "#adb5bd"


def _wrap(text: str, width: int = 60) -> str:
    """Plotly hover labels do not wrap: break a sentence into lines with <br>."""
    return "<br>".join(textwrap.wrap(text, width))


def pipeline_rates(records: Iterable[dict]) -> dict:
    """Documents and megabytes read per second between consecutive pipeline records (the records hold running
    totals), against seconds since the start: {"t", "docs", "mb"}. A record less than MIN_GAP_S after the last one
    used is skipped (its documents count in the next gap), so short gaps do not draw spikes."""
    pipe = [r for r in of_kind(records, "pipeline") if r.get("elapsed_s") is not None]
    out: dict = {"t": [], "docs": [], "mb": []}
    prev = {"elapsed_s": 0.0, "documents_in": 0, "bytes_in": 0}
    for r in pipe:
        dt = r["elapsed_s"] - prev["elapsed_s"]
        if dt < MIN_GAP_S:
            continue
        out["t"].append(r["elapsed_s"])
        out["docs"].append((r["documents_in"] - prev["documents_in"]) / dt)
        out["mb"].append((r.get("bytes_in", 0) - prev.get("bytes_in", 0)) / dt / 1e6)
        prev = r
    return out


def pipeline_throughput_figure(records: list[dict]) -> go.Figure:
    """Documents per second (left axis) and megabytes per second (right axis) read over the run."""
    s = pipeline_rates(records)
    if not s["t"]:
        return _waiting("Seconds since the start", "Throughput", "Waiting for the first half second of reading")
    traces = [_line(s["t"], s["docs"], "documents / s", _color(0), hover="%{x:.1f} s<br>%{y:,.0f} documents/s"),
              {**_line(s["t"], s["mb"], "MB / s", _color(1), hover="%{x:.1f} s<br>%{y:,.2f} MB/s"), "yaxis": "y2"}]
    return _figure(traces, "Seconds since the start", "Documents per second",
                   x_range=_padded(0, max(s["t"]), rel=0.02, minimum=0.5), y_range=[0, max(s["docs"]) * 1.15 or 1],
                   yaxis2={"title": {"text": "MB per second"}, "overlaying": "y", "side": "right", "tickmode": "auto",
                           "nticks": 5, "range": [0, max(s["mb"]) * 1.15 or 1], "showgrid": False,
                           "zeroline": False})


def mix_shares(mix: Mapping | None) -> list[dict]:
    """[{source, count, share, target}] from a mix record's flat count_ / share_ / target_<source> keys."""
    if not mix:
        return []
    sources = [k.removeprefix("target_") for k in mix if k.startswith("target_")]
    return [{"source": s, "count": mix.get(f"count_{s}", 0), "share": mix.get(f"share_{s}", 0.0),
             "target": mix[f"target_{s}"]} for s in sources]


def mix_figure(mix: Mapping | None, label=str) -> go.Figure:
    """Target share against realised share of each source (grouped bars); `label` shortens source names."""
    rows = mix_shares(mix)
    if not rows:
        return _waiting("Source", "Share of documents", "Waiting for the first documents")
    names = [label(r["source"]) for r in rows]
    traces = [{"type": "bar", "x": names, "y": [r["target"] for r in rows], "name": "target (your weights)",
               "marker": {"color": "#adb5bd"}, "hovertemplate": "%{x}: target %{y:.1%}<extra></extra>"},
              {"type": "bar", "x": names, "y": [r["share"] for r in rows], "name": "realised so far",
               "marker": {"color": _color(0)}, "customdata": [r["count"] for r in rows],
               "hovertemplate": "%{x}: %{y:.1%} (%{customdata:,} documents)<extra></extra>"}]
    return _figure(traces, "Source", "Share of documents read", barmode="group",
                   yaxis={"title": {"text": "Share of documents read"}, "tickformat": ".0%", "range": [0, 1.05]})


# -- evaluation (L14) ---------------------------------------------------------------------------------------------
# Scores come from results.json ("metrics": {name: value, name + "_stderr": value}); the live records
# (kind="eval_progress") carry done / total and the running value of each metric.
METRIC_NAMES = {"acc": "accuracy", "acc_norm": "length-normalised accuracy", "bits_per_byte": "bits per byte",
                "byte_perplexity": "byte perplexity", "token_perplexity": "token perplexity",
                "word_perplexity": "word perplexity", "perplexity": "perplexity", "exact_match": "exact match",
                "loglik": "log-likelihood"}


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric.replace("_", " "))


def metric_axis(metric: str) -> str:
    return f"{metric_name(metric)} ({'lower' if metric in LOWER_IS_BETTER else 'higher'} is better)"


def running_score_figure(records: list[dict], names: list[str] | None = None) -> go.Figure:
    """The running score of a live evaluation against the questions scored so far, one line per metric (`names`,
    default: every metric the records carry)."""
    progress = by_step(of_kind(records, "eval_progress"))
    if not progress:
        return _waiting("Questions scored", "Score so far", "Waiting for the first questions")
    names = names or [k for k in METRIC_NAMES if any(k in r for r in progress)]
    xs = [r["done"] for r in progress]
    traces = [_line(xs, [r.get(m) for r in progress], metric_name(m), _color(i), markers=True,
                    hover=f"{metric_name(m)} after %{{x:,}} questions: %{{y:.3f}}")
              for i, m in enumerate(names)]
    total = progress[-1].get("total") or xs[-1]
    return _figure(traces, "Questions scored", "Score so far", x_range=_padded(0, max(total, 1), rel=0.02))


def eval_comparison_figure(rows: list[dict], metric: str, chance: float | None = None) -> go.Figure:
    """One bar per model with its standard error as an error bar (rows: {"model", "value", "stderr", "n"}); a dashed
    line at chance level when there is one."""
    rows = [r for r in rows if r.get("value") is not None]
    if not rows:
        return _waiting("Model", metric_axis(metric), "No scores for this measure yet")
    stderr = [r.get("stderr") or 0 for r in rows]
    trace = {"type": "bar", "x": [r["model"] for r in rows], "y": [r["value"] for r in rows],
             "marker": {"color": [_color(i) for i in range(len(rows))]},
             "error_y": {"type": "data", "array": stderr, "visible": True, "color": "#343a40", "thickness": 1.5},
             "text": [f"{r['value']:.3g}" for r in rows], "textposition": "inside", "insidetextanchor": "start",
             "textfont": {"color": "white"},
             "customdata": [[e, r.get("n") or 0] for e, r in zip(stderr, rows)],
             "hovertemplate": "<b>%{x}</b><br>%{y:.3f} ± %{customdata[0]:.3f} (standard error)<br>"
                              "%{customdata[1]:,} questions<extra></extra>"}
    fig = _figure([trace], "", metric_axis(metric), showlegend=False)
    if chance is not None and metric not in LOWER_IS_BETTER:
        fig.add_hline(y=chance, line_dash="dash", line_color="gray", annotation_text=f"chance {chance:.0%}",
                      annotation_position="top left")
    return fig


def before_after_figure(pairs: list[dict]) -> go.Figure:
    """Grouped bars: per task, the base model's score and the fine-tuned model's, each with its standard error.
    pairs: [{"task", "metric", "before", "before_stderr", "after", "after_stderr"}]."""
    if not pairs:
        return _waiting("Benchmark", "Score", "Evaluate a fine-tuned model and its base on the same benchmark")
    xs = [f"{p['task']}<br>{metric_axis(p['metric'])}" for p in pairs]
    traces = []
    for i, (side, name) in enumerate((("before", "before: the base model"), ("after", "after fine-tuning"))):
        errs = [p.get(f"{side}_stderr") or 0 for p in pairs]
        traces.append({"type": "bar", "name": name, "x": xs, "y": [p[side] for p in pairs],
                       "marker": {"color": _color(i)}, "text": [f"{p[side]:.3g}" for p in pairs],
                       "textposition": "inside", "insidetextanchor": "start", "textfont": {"color": "white"},
                       "error_y": {"type": "data", "array": errs, "visible": True, "color": "#343a40"},
                       "hovertemplate": f"{name}<br>%{{x}}: %{{y:.3f}}<extra></extra>"})
    return _figure(traces, "", "Score", barmode="group")
