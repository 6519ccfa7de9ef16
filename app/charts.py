"""Plotly figures built from a run's metrics records (the lines of metrics.jsonl): pure functions, records -> figure.

Every figure is readable from its first point: markers on while points are few, explicit axis ranges (the loss
chart's x axis spans the whole run, so it also shows how far along the run is), and an empty figure says what it
is waiting for instead of drawing an empty grid.
"""

from __future__ import annotations

import statistics
from typing import Iterable, Mapping

import plotly.graph_objects as go

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

    Returns {"label", "help", "t" (seconds since the first telemetry record), "used", "allocated" (torch's
    allocator, GPU only, or None), "total" (bytes or None)}.
    """
    tele = of_kind(records, "telemetry")
    gpu = [r for r in tele if r.get("gpu_memory_used_bytes") is not None]
    t0 = tele[0]["time"] if tele else 0.0
    if gpu:
        return {"label": "GPU memory used", "help": "all processes on the GPU, as the driver (NVML) reports it",
                "t": [r["time"] - t0 for r in gpu], "used": [r["gpu_memory_used_bytes"] for r in gpu],
                "allocated": [r.get("cuda_allocated_bytes") for r in gpu]
                if any(r.get("cuda_allocated_bytes") is not None for r in gpu) else None,
                "total": gpu[-1].get("gpu_memory_total_bytes")}
    rss = [r for r in tele if r.get("process_rss_bytes") is not None]
    return {"label": "App process memory", "help": "no GPU: the resident memory of the app process the run "
                                                   "trains in (it includes the app itself)",
            "t": [r["time"] - t0 for r in rss], "used": [r["process_rss_bytes"] for r in rss], "allocated": None,
            "total": rss[-1].get("system_total_bytes") if rss else None}


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
    """Memory over the run's wall-clock time, with the device's total as a dashed line when it is in view."""
    s = memory_series(records)
    if not s["used"]:
        return _waiting("Seconds since the start", "Memory",
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
    return _figure(traces, "Seconds since the start", f"Memory ({unit})",
                   x_range=_padded(0, max(s["t"]), rel=0.02, minimum=1), y_range=[0, top / scale * 1.1], **layout)


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


def loss_overlay(runs: Mapping[str, list[dict]]) -> go.Figure:
    """Training loss of several runs (lines) and their held-out losses (diamonds, same colour, no legend entry)."""
    traces = []
    for i, (name, records) in enumerate(runs.items()):
        train = by_step(of_kind(records, "train"))
        evals = by_step(of_kind(records, "eval"))
        if train:
            traces.append(_trend_line([r["step"] for r in train], [r["loss"] for r in train], name, i))
        if evals:
            traces.append({**_diamonds([r["step"] for r in evals], [r["eval_loss"] for r in evals],
                                       f"{name} (held-out)", _color(i), group=name), "showlegend": False})
    if not traces:
        return _waiting("Step", "Loss", "None of these runs has a training step yet")
    return _figure(traces, "Step", "Loss (" + LOSS_HELP + ")", legend=OVERLAY_LEGEND, height=HEIGHT + 40)


def memory_overlay(runs: Mapping[str, list[dict]]) -> go.Figure:
    series = {name: memory_series(records) for name, records in runs.items()}
    peak = max((max(s["used"]) for s in series.values() if s["used"]), default=0)
    unit, scale = memory_unit(peak)
    labels = sorted({s["label"] for s in series.values() if s["used"]})
    traces = [_line(s["t"], [v / scale for v in s["used"]], name, _color(i))
              for i, (name, s) in enumerate(series.items()) if s["used"]]
    if not traces:
        return _waiting("Seconds since the start", "Memory", "No memory readings yet")
    return _figure(traces, "Seconds since the start", f"{' / '.join(labels)} ({unit})",
                   y_range=[0, peak / scale * 1.1], legend=OVERLAY_LEGEND, height=HEIGHT + 40)


def throughput_overlay(runs: Mapping[str, list[dict]]) -> go.Figure:
    traces = []
    for i, (name, records) in enumerate(runs.items()):
        train = by_step(of_kind(records, "train"))
        if train:
            traces.append(_trend_line([r["step"] for r in train], [r.get("tokens_per_s", 0) for r in train], name, i))
    if not traces:
        return _waiting("Step", "Tokens per second", "None of these runs has a training step yet")
    return _figure(traces, "Step", "Tokens per second", legend=OVERLAY_LEGEND, height=HEIGHT + 40)


def _trend_line(xs: list, ys: list, name: str, i: int) -> dict:
    if len(ys) < SMOOTH_FROM:
        return _line(xs, ys, name, _color(i), group=name)
    return _line(xs, smooth(ys), name, _color(i), group=name, markers=False)


# -- building blocks ----------------------------------------------------------------------------------------------
# Figures are assembled as plain dicts and validated once by go.Figure: about 5x cheaper than many update_*()
# calls, which matters for a panel that redraws every second while a run trains in the same process.
_PALETTE = ("#4361ee", "#f77f00", "#2a9d8f", "#e63946", "#7b2cbf", "#588157", "#bc6c25", "#6c757d")
MAX_POINTS = 2000   # longer series are thinned (evenly, keeping the last point) before they are sent


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
    if len(xs) <= limit:
        return xs, ys
    stride = -(-(len(xs) - 1) // (limit - 1))  # ceil: at most limit - 1 strided points, then the last one
    keep = list(range(0, len(xs) - 1, stride)) + [len(xs) - 1]
    return [xs[i] for i in keep], [ys[i] for i in keep]


def _step_range(last: int, total: int | None) -> list[float]:
    """x from 0 to a little past the last step (so early points spread out), never past the run's end."""
    right = max(last * 1.25, 10)
    if total:
        right = min(right, total)
    return _padded(0, max(right, last), rel=0.02, minimum=0.5)


def _padded(lo: float, hi: float, rel: float = 0.08, minimum: float = 0.05) -> list[float]:
    pad = max((hi - lo) * rel, minimum)
    return [lo - pad, hi + pad]
