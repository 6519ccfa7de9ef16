"""Text from data or users, made safe for the places where Streamlit reads Markdown (labels, st.error, captions).

Streamlit renders Markdown (and its own `:colour[...]`, `:emoji:` and `$math$` extensions) in nearly every string it
shows. A document, a file name or an error message quoting a path must be shown as written: `=====` must not become a
heading, `_x_` must not become italics. CommonMark lets a backslash escape any ASCII punctuation; we escape the
characters that act anywhere (emphasis, code, links, HTML, math, tables, Streamlit's `:name[...]` and `:emoji:`) and,
at the start of a line, those that make headings, lists, quotes and rules, so ordinary punctuation stays readable
in the source (and in tests that read it).
"""

from __future__ import annotations

import re

_ANYWHERE = re.compile(r"([\\`*_\[\]<>~$|{}]|:(?=[A-Za-z_]))")   # `:` only where a :name[...] or :emoji: starts
_LINE_MARK = re.compile(r"^([ \t]*)([#=+\-])", re.MULTILINE)          # headings, setext underlines, lists, rules
_LINE_NUMBER = re.compile(r"^([ \t]*\d+)([.)])", re.MULTILINE)         # "1." / "1)" would start a numbered list


def md_escape(text: object) -> str:
    """`text` with its Markdown-active characters escaped: shown exactly as written, never interpreted.
    Line breaks are kept (as Markdown hard breaks) so a multi-line message still reads as lines."""
    escaped = _ANYWHERE.sub(r"\\\1", str(text))
    escaped = _LINE_NUMBER.sub(r"\1\\\2", _LINE_MARK.sub(r"\1\\\2", escaped))
    return escaped.replace("\n", "  \n")


def one_line(text: object, n: int = 120) -> str:
    """`text` on one line, at most `n` characters (an ellipsis where it was cut), escaped for a Markdown label."""
    flat = " ".join(str(text).split())
    return md_escape(flat if len(flat) <= n else flat[: n - 1] + "…")


def rough_duration(seconds: float | None) -> str:
    """A duration for estimates, in words: they are guesses, so no seconds past the first minute."""
    seconds = float(seconds or 0)
    if seconds < 60:
        return "under a minute"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"
