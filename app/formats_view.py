"""L16's number formats: fp32 / fp16 / bf16 bit layouts and ranges, and an explorer of what each format does to
the values a user types (exact, rounded, subnormal, underflow to 0, overflow to inf)."""

from __future__ import annotations

import math
import re

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from llmfs import precision as prec

# -- 1 · number formats ------------------------------------------------------------------------------------------
DEFAULT_VALUES = "1, 0.1, 1e-8, 70000, 3.14159265"
MAX_VALUES = 20
BIT_PARTS = (("sign_bits", "sign", "#adb5bd"), ("exponent_bits", "exponent: the range", "#4361ee"),
             ("mantissa_bits", "mantissa: the precision", "#f77f00"))
STATUS_COLORS = {"underflow to 0": "#e63946", "overflow to inf": "#e63946", "subnormal": "#f77f00",
                 "exact": "#2a9d8f"}


def bits_figure(rows: list[dict]) -> go.Figure:
    """One horizontal bar per format, split into its sign, exponent and mantissa bits."""
    names = [r["format"] for r in rows]
    fig = go.Figure()
    for field, label, color in BIT_PARTS:
        bits = [r[field] for r in rows]
        fig.add_bar(y=names, x=bits, name=label, orientation="h", marker_color=color,
                    text=[str(b) for b in bits], textposition="inside", insidetextanchor="middle",
                    hovertemplate=f"%{{y}}: %{{x}} {label.split(':')[0]} bit(s)<extra></extra>")
    fig.update_layout(barmode="stack", height=190, margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0, traceorder="normal"),
                      xaxis=dict(title="bits", range=[0, 32.5], dtick=4), yaxis=dict(autorange="reversed"))
    return fig


def formats_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{"format": r["format"], "largest": fmt_number(r["max"]),
                          "smallest normal": fmt_number(r["smallest_normal"]),
                          "smallest at all": fmt_number(r["smallest_subnormal"]),
                          "gap after 1.0": fmt_number(r["epsilon"]), "decimal digits": r["decimal_digits"]}
                         for r in rows])


FORMAT_COLUMNS = {
    "format": "Format",
    "largest": st.column_config.TextColumn("Largest", help="Anything bigger becomes inf (overflow)."),
    "smallest normal": st.column_config.TextColumn("Smallest normal", help="Below this, digits of precision are "
                                                   "lost one by one (subnormal numbers)."),
    "smallest at all": st.column_config.TextColumn("Smallest at all", help="The smallest subnormal: anything "
                                                   "smaller in size rounds to 0 (underflow)."),
    "gap after 1.0": st.column_config.TextColumn("Gap after 1.0", help="Machine epsilon: the next number after 1.0 "
                                                 "is 1 + this. Smaller = finer steps."),
    "decimal digits": st.column_config.NumberColumn("Decimal digits", format="%.1f",
                                                    help="About how many significant digits a value keeps."),
}


def fmt_number(x: float) -> str:
    """A stored value as people read it: inf, 0, 65,504, 3.140625, 6.1e-05."""
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if abs(x) >= 1e6 or abs(x) < 1e-3:
        return f"{x:.3g}"
    return f"{x:,.9g}" if abs(x) >= 1000 else f"{x:.9g}"


def fmt_stored(x: float) -> str:
    """A value read back from a format, with enough digits (9) to show how it was rounded."""
    return fmt_number(x) if math.isinf(x) or x == 0 else f"{x:.9g}"


_POWER = re.compile(r"^([+-]?\d+(?:\.\d*)?)\s*(?:\^|\*\*)\s*([+-]?\d+)$")


def parse_values(text: str) -> list[float]:
    """The numbers typed, separated by commas (`2^-24` and `2**-24` allowed).

    Raises:
        ValueError: naming the first token that is not a number, or too many numbers.
    """
    values = []
    for token in [t.strip() for t in text.split(",")]:
        if not token:
            continue
        power = _POWER.match(token.replace(" ", ""))
        try:
            value = float(power[1]) ** int(power[2]) if power else float(token)
        except (ValueError, OverflowError):
            raise ValueError(f"“{token}” is not a number. Type numbers separated by commas, such as 0.1, 1e-8, "
                             "70000 or 2^-24.") from None
        if math.isnan(value):
            raise ValueError(f"“{token}” is not a number (NaN): NaN stays NaN in every format.")
        if math.isinf(value):
            raise ValueError(f"“{token}” is too large for any float (even 64-bit): type a finite number.")
        values.append(value)
    if len(values) > MAX_VALUES:
        raise ValueError(f"{len(values)} numbers: type at most {MAX_VALUES}.")
    return values


def represent_frame(rows: list[dict]) -> pd.DataFrame:
    """The explorer's table: per value, each format's stored value and what happened to it."""
    out = []
    for r in rows:
        row = {"value": fmt_number(r["value"])}
        for name in prec.FORMATS:
            row[name] = fmt_stored(r[name])
            row[f"{name} status"] = _status_text(r[f"{name}_status"], r[f"{name}_rel_error"])
        out.append(row)
    return pd.DataFrame(out)


def _status_text(status: str, rel: float | None) -> str:
    if status in ("rounded", "subnormal") and rel:
        return f"{status} ({rel * 100:.2g}% off)"
    return status


def _status_style(cell: str) -> str:
    for status, color in STATUS_COLORS.items():
        if str(cell).startswith(status):
            weight = "font-weight: bold; " if color == "#e63946" else ""
            return f"{weight}color: {color}"
    return ""


def explorer(key: str) -> None:
    """Type numbers, see what each format stores."""
    text = st.text_input("Numbers to store, separated by commas", value=DEFAULT_VALUES, key=f"{key}.values",
                         persist_state="session",
                         help="Any numbers: 0.1, 1e-8 (a tiny gradient), 70000 (a large activation), 2^-24 "
                              "(fp16's smallest). Each is stored in fp32, fp16 and bf16 and read back.")
    try:
        values = parse_values(text)
    except ValueError as e:
        st.error(str(e), icon=":material/error:")
        return
    if not values:
        st.info("Type a few numbers, separated by commas.", icon=":material/keyboard:")
        return
    rows = prec.represent(values)
    frame = represent_frame(rows)
    status_cols = [c for c in frame.columns if c.endswith("status")]
    st.dataframe(frame.style.map(_status_style, subset=status_cols), hide_index=True, key=f"{key}.represent",
                 column_config={"value": "You typed",
                                **{f: st.column_config.TextColumn(f"{f} stores") for f in prec.FORMATS},
                                **{f"{f} status": st.column_config.TextColumn(
                                    f"{f}: what happened", help="exact; rounded (relative error); subnormal (below "
                                    "the smallest normal: fewer digits); underflow to 0; overflow to inf")
                                   for f in prec.FORMATS}})
    st.caption(explorer_note(rows))


def explorer_note(rows: list[dict]) -> str:
    """What fp16 lost that bf16 kept, and the precision bf16 pays for its range, for the values typed."""
    lost16 = [r for r in rows if r["fp16_status"] in ("underflow to 0", "overflow to inf")]
    lostbf = [r for r in rows if r["bf16_status"] in ("underflow to 0", "overflow to inf")]
    both = [r for r in rows if r not in lost16 and r["fp16_rel_error"] is not None and r["bf16_rel_error"] is not None]
    parts = []
    if lost16:
        parts.append("fp16 lost " + ", ".join(f"{fmt_number(r['value'])} ({r['fp16_status']})" for r in lost16) +
                     ": its 5 exponent bits span only about 6e-8 to 65,504" +
                     ("; bf16, with fp32's 8 exponent bits, kept them." if not lostbf else "."))
    else:
        parts.append("Every value fits fp16's range (about 6e-8 to 65,504).")
    if both:
        finer = sum(r["fp16_rel_error"] <= r["bf16_rel_error"] for r in both)
        parts.append(f"Where both keep a value, fp16 is as close or closer in {finer} of {len(both)}: it has 10 "
                     "mantissa bits to bf16's 7 (about 3.3 decimal digits to 2.4). bf16 trades precision for range; "
                     "training tolerates the first far better than the second.")
    return " ".join(parts)
