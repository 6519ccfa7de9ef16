"""The token view: a generated answer with each token coloured by the probability the model gave it, the other
tokens it considered on hover, and a bar chart of them for one token. Pure functions, token dicts -> HTML or a
figure (a token dict is `llmfs.generate.TokenStep.to_dict()`: id, text, prob, top).

Every text is data: escaped before it goes into HTML (content and attributes alike), never read as Markdown.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import plotly.graph_objects as go

# Five steps of probability, lowest first: (from this probability up, background colour, the words for it).
# Translucent colours so the text stays readable on the light and the dark theme alike.
BANDS = ((0.0, "rgba(230, 57, 70, 0.55)", "below 10%: a surprise to the model"),
         (0.1, "rgba(247, 127, 0, 0.45)", "10–30%"),
         (0.3, "rgba(252, 191, 73, 0.45)", "30–60%"),
         (0.6, "rgba(144, 190, 109, 0.40)", "60–90%"),
         (0.9, "rgba(67, 170, 139, 0.25)", "90% or more: what the model expected"))
CHOSEN = "#e8590c"      # the bar of the token the model wrote
OTHER = "#4c6ef5"

STYLE = """<style>
.llmfs-tokens { white-space: pre-wrap; font-family: "Source Code Pro", monospace; font-size: 0.9rem;
  line-height: 1.7; overflow-wrap: anywhere; margin: 0; }
.llmfs-tokens.prose { font-family: inherit; font-size: 1rem; line-height: 1.75; }
.llmfs-tokens .tok { border-radius: 3px; padding: 1px 0; }
.llmfs-tokens .tok[title] { cursor: help; }
.llmfs-tokens .prompt { opacity: 0.6; }
.llmfs-tokens .cursor { opacity: 0.5; }
.llmfs-legend { display: flex; flex-wrap: wrap; gap: 0.3rem 0.9rem; font-size: 0.8rem; align-items: center; }
.llmfs-legend .swatch { display: inline-block; width: 1.6em; height: 1em; border-radius: 3px; vertical-align: -0.15em;
  margin-right: 0.3em; }
</style>"""


def band_of(prob: float) -> int:
    """Which of the five BANDS a probability falls in (0: lowest)."""
    return max(i for i, (low, _, _) in enumerate(BANDS) if prob >= low or i == 0)


def shown_token(text: str, token_id: int | None = None) -> str:
    """A token's text as a reader can see it (plain text, not escaped): quoted, so a leading space shows, with
    line breaks and tabs drawn as arrows; a token that adds no character yet (the first bytes of one split over
    several tokens) says so."""
    if not text:
        return "(part of a character)" if token_id is None else f"(part of a character, token {token_id})"
    return "‘" + text.replace("\n", "↵").replace("\t", "⇥") + "’"


def percent(prob: float) -> str:
    """0.8712 -> "87.1%"; below a thousandth, "under 0.1%" (the chart's bars hold the exact value)."""
    return f"{prob:.1%}" if prob >= 0.001 or prob == 0 else "under 0.1%"


def hover_text(n: int, token: dict) -> str:
    """The tooltip of token #n: its probability, then the alternatives the model weighed (plain text)."""
    lines = [f"#{n}: {shown_token(token['text'], token['id'])} {percent(token['prob'])}",
             "The model's top choices here:"]
    lines += [f"  {shown_token(t['text'])} {percent(t['prob'])}" + ("  ← written" if t["id"] == token["id"] else "")
              for t in token.get("top") or []]
    return "\n".join(lines)


def tokens_html(tokens: Sequence[dict], *, coloured: bool = True, prompt: str = "", writing: bool = False,
                prose: bool = False) -> str:
    """An answer as safe HTML: each token a span (coloured by its band when `coloured`) whose title lists the
    alternatives; `prompt` first, greyed (the text a continuation follows). While still `writing`: a cursor, and
    no titles yet (the answer is sent again with each new token: a fraction of the bytes). In the page's own font
    when `prose` (a chat answer), else monospace (a continued text may be code)."""
    parts = [f'<span class="prompt">{html.escape(prompt)}</span>'] if prompt else []
    for n, token in enumerate(tokens, 1):
        colour = f' style="background: {BANDS[band_of(token["prob"])][1]}"' if coloured else ""
        title = "" if writing else f' title="{html.escape(hover_text(n, token), quote=True)}"'
        parts.append(f'<span class="tok"{colour}{title}>{html.escape(token["text"])}</span>')
    if writing:
        parts.append('<span class="cursor">▌</span>')
    return f'<div class="llmfs-tokens{" prose" if prose else ""}">{"".join(parts)}</div>'


def legend_html() -> str:
    swatches = "".join(f'<span><span class="swatch" style="background: {colour}"></span>{html.escape(words)}</span>'
                       for _, colour, words in BANDS)
    return (f'<div class="llmfs-legend"><span>How likely the model found each token when it wrote it:</span>'
            f"{swatches}</div>")


def alternatives(token: dict) -> list[dict]:
    """The alternatives of one token, most likely first, with the written token among them even when it was not in
    the model's top few (a sampled unlikely token): [{"id", "text", "prob", "written"}]."""
    rows = [{**t, "written": t["id"] == token["id"]} for t in token.get("top") or []]
    if not any(r["written"] for r in rows):
        rows.append({"id": token["id"], "text": token["text"], "prob": token["prob"], "written": True})
    return sorted(rows, key=lambda r: -r["prob"])


def alternatives_figure(n: int, token: dict) -> go.Figure:
    """Horizontal bars: the probability of each token the model considered at step n, the written one marked."""
    rows = alternatives(token)[::-1]    # plotly draws the first bar at the bottom
    labels = [f"{shown_token(r['text'], r['id'])}{'  (written)' if r['written'] else ''}" for r in rows]
    trace = go.Bar(x=[r["prob"] for r in rows], y=labels, orientation="h",
                   marker={"color": [CHOSEN if r["written"] else OTHER for r in rows]},
                   text=[percent(r["prob"]) for r in rows], textposition="outside", cliponaxis=False,
                   hovertemplate="%{y}: %{x:.2%}<extra></extra>")
    fig = go.Figure(data=[trace])
    fig.update_layout(height=60 + 34 * len(rows), margin={"l": 10, "r": 50, "t": 40, "b": 10}, showlegend=False,
                      title={"text": f"Token #{n}: what the model could have written", "font": {"size": 14}})
    fig.update_xaxes(title_text="probability", range=[0, 1.12], tickformat=".0%")
    fig.update_yaxes(automargin=True)
    return fig
