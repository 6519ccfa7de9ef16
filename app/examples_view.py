"""The preview of examples before training: the first examples as the model will see them (through its chat
template), every token coloured by whether the model learns to write it, the length of every example against the
sequence length, and what would be cut or left out. `llmfs.data.examples.preview` computes it all, the way a run
reads the examples; this module only draws it.

Every text here is data: escaped before it goes into HTML, never read as Markdown. Special tokens (the template's
markers such as <|im_start|>) and line breaks are drawn so they can be seen.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from llmfs.config import PYTHON_QA

from .text import md_escape

PLOT_CONFIG = {"displaylogo": False}
LEARNT, CONTEXT = "rgba(47, 158, 68, 0.30)", "rgba(134, 142, 150, 0.16)"   # translucent: both themes read them
LEARNT_LINE, CUT = "#2f9e44", "#e03131"
FORMATS = {"chat": "chat", "prompt": "prompt / response", "alpaca": "Alpaca"}   # the long words name the fields
LEARNT_WORDS = "learnt: the model is trained to write these"
CONTEXT_WORDS = "context only: the model reads these, but is not trained to write them"

STYLE = f"""<style>
.llmfs-ex {{ white-space: pre-wrap; font-family: "Source Code Pro", monospace; font-size: 0.85rem; line-height: 1.9;
  overflow-wrap: anywhere; margin: 0 0 0.4rem 0; }}
.llmfs-ex .t {{ border-radius: 3px; padding: 1px 0; margin-right: 1px; }}
.llmfs-ex .l {{ background: {LEARNT}; box-shadow: inset 0 -2px {LEARNT_LINE}; }}
.llmfs-ex .c {{ background: {CONTEXT}; }}
.llmfs-ex .sp {{ font-size: 0.75rem; border: 1px solid rgba(128, 128, 128, 0.6); border-radius: 4px;
  padding: 0 3px; }}
.llmfs-ex .nl, .llmfs-ex .tab {{ opacity: 0.55; }}
.llmfs-ex .cut {{ color: {CUT}; font-family: inherit; }}
.llmfs-ex-legend {{ display: flex; flex-wrap: wrap; gap: 0.3rem 1.2rem; font-size: 0.85rem; align-items: center; }}
.llmfs-ex-legend .sw {{ display: inline-block; width: 1.8em; height: 1.05em; border-radius: 3px;
  vertical-align: -0.2em; margin-right: 0.35em; }}
</style>"""


# -- computing it (cached: the tokenizer reads every example) ----------------------------------------------------
def stamp_of(source: str) -> float:
    """When `source` last changed (a file's time; the built-in set: 0), so an upload saved again is read afresh."""
    if source == PYTHON_QA:
        return 0.0
    try:
        return Path(source).stat().st_mtime
    except OSError:
        return 0.0


class NoTokenizer(LookupError):
    """The model's tokenizer is not on this machine yet (not cached: the next call looks again)."""


@st.cache_data(show_spinner=False, max_entries=32)
def compute(source: str, stamp: float, model: str, seq_len: int | None, train_on: str, fmt: str = "auto") -> dict:
    """`llmfs.data.examples.preview` with `model`'s tokenizer and context length, as a dict; {"error": message} for
    examples that cannot be read. `stamp`: the source's time (`stamp_of`), so a changed file is read afresh.

    Raises:
        NoTokenizer: the model is not on this machine yet.
    """
    from llmfs.data.examples import ExampleError, preview
    from llmfs.data.text import tokenizer_for
    from llmfs.weights import peek_model_config
    tokenizer = tokenizer_for(model)
    if tokenizer is None:
        raise NoTokenizer(model)
    config = peek_model_config(model)
    try:
        out = preview(source, tokenizer, seq_len=seq_len, train_on=train_on, fmt=fmt,
                      context=getattr(config, "n_positions", None)).to_dict()
    except ExampleError as e:
        return {"error": str(e)}
    out["special"] = sorted(special_tokens(tokenizer))
    return out


def special_tokens(tokenizer) -> set[str]:
    """The tokenizer's special and added tokens (the template's markers), drawn as boxes in the preview."""
    out = set(getattr(tokenizer, "all_special_tokens", ()) or ())
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    out.update(str(t) for t in decoder.values())
    return {t for t in out if t}


# -- drawing it ---------------------------------------------------------------------------------------------------
def piece_html(text: str, trained: bool, special: set[str] | frozenset = frozenset()) -> str:
    """One token as safe HTML: green when learnt, grey when context only; a special token in a box; line breaks
    and tabs drawn (↵, ⇥) before the break itself; a token that adds no character yet drawn as ·."""
    kind = "l" if trained else "c"
    title = html.escape(f"{text!r}: {'learnt' if trained else 'context only'}", quote=True)
    if text in special:
        inner = f'<span class="sp">{html.escape(text)}</span>'
    elif not text:
        inner = "·"
    else:
        inner = (html.escape(text).replace("\n", '<span class="nl">↵</span>\n')
                 .replace("\t", '<span class="tab">⇥</span>\t'))
    return f'<span class="t {kind}" title="{title}">{inner}</span>'


def example_html(shown: dict, special: set[str] | frozenset = frozenset()) -> str:
    """A previewed example (`Preview.shown`'s item) as safe HTML, with a mark where it is cut."""
    body = "".join(piece_html(text, trained, special) for text, trained in shown["pieces"])
    if shown.get("truncated"):
        body += f'<span class="cut"> ✂ {shown["cut_tokens"]:,} more tokens cut off here</span>'
    return f'<div class="llmfs-ex">{body}</div>'


def legend_html() -> str:
    return ('<div class="llmfs-ex-legend">'
            f'<span><span class="sw" style="background: {LEARNT}; box-shadow: inset 0 -2px {LEARNT_LINE}"></span>'
            f'{html.escape(LEARNT_WORDS)}</span>'
            f'<span><span class="sw" style="background: {CONTEXT}"></span>{html.escape(CONTEXT_WORDS)}</span>'
            '</div>')


def cut_at(p: dict) -> int:
    """Tokens an example keeps at most: the sequence length, plus the one token its last position predicts."""
    return p["seq_len"] + 1


def length_bins(lengths: list[int], cut: int) -> tuple[float, list[tuple[float, int]]]:
    """(bin width, [(left edge, examples)]) of the examples' lengths: whole tokens, at most about 40 bins, one bin
    edge at cut + 0.5, so that every bar is either kept whole (left of it) or cut (right of it)."""
    low, high = min(min(lengths), cut), max(max(lengths), cut)
    width = max(1, math.ceil((high - low + 1) / 40))
    edge = cut + 0.5
    counts = Counter(math.floor((n - edge) / width) for n in lengths)
    return width, [(edge + k * width, counts[k]) for k in sorted(counts)]


def lengths_figure(p: dict) -> go.Figure:
    """A histogram of the examples' lengths in tokens: blue bars for the examples kept whole, red for those cut, a
    dashed line where the cut falls."""
    cut, lengths = cut_at(p), p["lengths"]
    width, bins = length_bins(lengths, cut)
    fig = go.Figure()
    for name, colour, side in (("kept whole", "#4c6ef5", lambda x: x < cut), ("cut at the end", CUT,
                                                                            lambda x: x > cut)):
        part = [(x, n) for x, n in bins if side(x)]
        if not part:
            continue
        words = [f"{math.ceil(x)} tokens" if width == 1 else f"{math.ceil(x)}–{math.floor(x + width)} tokens"
                 for x, _ in part]
        fig.add_bar(x=[x + width / 2 for x, _ in part], y=[n for _, n in part], width=width * 0.92, name=name,
                    marker_color=colour, customdata=words,
                    hovertemplate="%{customdata}: %{y} examples<extra>" + name + "</extra>")
    low, high = min(min(lengths), cut), max(max(lengths), cut)
    start = 0 if low < 0.4 * high else max(0, low - 3 * width)   # from zero unless that squeezes every bar right
    side = "top left" if cut - start >= 0.6 * (high - start) else "top right"   # the words where there is room
    fig.add_vline(x=cut + 0.5, line_dash="dash", line_color=CUT, line_width=2,
                  annotation_text=f"cut after {cut:,} tokens", annotation_position=side, annotation_font_color=CUT,
                  annotation_bgcolor="rgba(255, 255, 255, 0.85)")
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), bargap=0, showlegend=len(fig.data) > 1,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
                      xaxis_title="tokens per example", yaxis_title="examples",
                      xaxis=dict(range=[start, high + 3 * width]))
    return fig


def cut_words(p: dict) -> list[str]:
    """What the sequence length does to these examples, in sentences (empty when nothing is cut)."""
    cut, n, dropped = cut_at(p), p["truncated"], p["dropped"]
    out = []
    if n:
        out.append(f"{n:,} example{'s are' if n != 1 else ' is'} longer than {cut:,} tokens and will be cut at the "
                   "end: the model does not see what comes after.")
    if dropped:
        out.append(f"{dropped:,} of {'them' if n != 1 else 'it'} will be left out: the cut comes before "
                   f"{'their answers start' if dropped != 1 else 'its answer starts'}, so nothing is left to learn "
                   "from.")
    return out


def preview_panel(p: dict, model: str, key: str) -> None:
    """The whole preview: counts in words, the token view of the first examples, the lengths against the cut."""
    n = p["examples"]
    learnt = p["trained_tokens"] / p["tokens"] if p["tokens"] else 0.0
    st.markdown(f"**{n:,} example{'s' if n != 1 else ''}** in {md_escape(FORMATS.get(p['format'], p['format']))} "
                f"format, read through {md_escape(p['template'])} of **{md_escape(model)}**: "
                f"{p['tokens']:,} tokens in all, of which the model learns from **{p['trained_tokens']:,}** "
                f"({learnt:.0%}).")
    st.html(STYLE)
    st.html(legend_html())
    special = set(p.get("special") or ())
    for i, shown in enumerate(p["shown"], 1):
        where = "" if p.get("builtin") else f", line {shown['line']} of your file"
        st.caption(f"Example {i}{where}: {shown['tokens']:,} tokens, {shown['trained']:,} of them learnt"
                   + (f"; {shown['cut_tokens']:,} cut off" if shown["truncated"] else ""))
        st.html(example_html(shown, special))
    st.caption("Boxes such as " + md_escape("<|im_start|>") + " are the template's special tokens; ↵ is a line "
               "break. Hover over a token to see it on its own.")
    left, right = st.columns([3, 2], vertical_alignment="center")
    with left:
        st.plotly_chart(lengths_figure(p), key=f"{key}.lengths", config=PLOT_CONFIG)
    with right:
        cut = cut_at(p)
        how = ("You set the sequence length" if p["seq_len_chosen"] else
               "The sequence length follows your examples (the longest one, at most 512 tokens)")
        st.markdown(f"{how}: each example keeps at most **{cut:,} tokens**.")
        words = cut_words(p)
        if words:
            st.warning(" ".join(words), icon=":material/content_cut:")
        else:
            st.success("No example is cut: every one fits whole.", icon=":material/check_circle:")
        st.caption(md_escape(heldout_words(p)))


def heldout_words(p: dict) -> str:
    """How the held-out loss will be measured, in a sentence."""
    text = p["heldout"]
    if text.startswith("on "):
        return (f"To check the model on questions it never trained on, the run holds some back: the held-out loss "
                f"is measured {text}.")
    return text
