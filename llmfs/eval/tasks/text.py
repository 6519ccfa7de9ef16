"""Documents for perplexity: the embedded default's held-out text, a local file, or WikiText-2 from the hub.

WikiText (``data="wikitext"``, or a local .txt in WikiText's raw format) is scored as lm-eval's ``wikitext``
task does (``lm_eval/tasks/wikitext/wikitext.yaml``, ``preprocess_wikitext.py``): one document per article, the
detokenized text scored, the words and bytes of the original page counted.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...sources import SourceError
from .base import Task, TextDoc, convert_rows, load_hub_rows, read_jsonl, require_str, select

HUB_PATH, HUB_NAME, HUB_SPLIT = "EleutherAI/wikitext_document_level", "wikitext-2-raw-v1", "test"
ARTICLE_TITLE = re.compile(r"^ = [^=].* = $")  # " = Robert Boulter = "; sections are " = = Career = = "
METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte", "token_perplexity")


def wikitext_detokenizer(string: str) -> str:
    """lm-eval ``wikitext/preprocess_wikitext.py`` ``wikitext_detokenizer`` (applied to ``doc["page"]``)."""
    # contractions
    string = string.replace("s '", "s'")
    string = re.sub(r"/' [0-9]/", r"/'[0-9]/", string)
    # number separators
    string = string.replace(" @-@ ", "-")
    string = string.replace(" @,@ ", ",")
    string = string.replace(" @.@ ", ".")
    # punctuation
    string = string.replace(" : ", ": ")
    string = string.replace(" ; ", "; ")
    string = string.replace(" . ", ". ")
    string = string.replace(" ! ", "! ")
    string = string.replace(" ? ", "? ")
    string = string.replace(" , ", ", ")
    # double brackets
    string = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", string)
    string = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", string)
    string = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", string)
    string = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', string)
    string = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", string)
    # miscellaneous
    string = string.replace("= = = =", "====")
    string = string.replace("= = =", "===")
    string = string.replace("= =", "==")
    string = string.replace(" " + chr(176) + " ", chr(176))
    string = string.replace(" \n", "\n")
    string = string.replace("\n ", "\n")
    string = string.replace(" N ", " 1 ")
    string = string.replace(" 's", "'s")
    return string


def split_wikitext_articles(raw: str) -> list[str]:
    """Pages of a raw WikiText file, cut before each top-level title line (each line keeps its newline)."""
    pages: list[list[str]] = []
    for line in raw.splitlines(keepends=True):
        if ARTICLE_TITLE.match(line.rstrip("\r\n")) or not pages:
            pages.append([])
        pages[-1].append(line)
    return ["".join(p) for p in pages if "".join(p).strip()]


def wikitext_doc(page: str, index: int) -> TextDoc:
    return TextDoc(id=str(index), text=wikitext_detokenizer(page), page=page)


def read_docs(data: str) -> tuple[list[TextDoc], str]:
    """Documents of ``data``; also says how they were read."""
    if data == "wikitext":
        pages = [r["page"] for r in load_hub_rows(HUB_PATH, HUB_NAME, HUB_SPLIT)]
        return [wikitext_doc(p, i) for i, p in enumerate(pages)], f"{HUB_PATH} ({HUB_NAME}, {HUB_SPLIT})"
    path = Path(data).expanduser()
    if path.suffix == ".jsonl":
        convert = lambda row, i: (wikitext_doc(require_str(row, "page"), i) if "page" in row  # noqa: E731
                                  else TextDoc(str(row.get("id", i)), require_str(row, "text"), row["text"]))
        return convert_rows(data, read_jsonl(data), convert), data
    if not path.is_file():
        raise SourceError(f"No text file at {data}: give a .txt or .jsonl file (with a 'text' field), "
                          "'wikitext' for WikiText-2 from the hub, or leave it empty for the built-in text.")
    raw = path.read_text(encoding="utf-8")
    if any(ARTICLE_TITLE.match(line) for line in raw.splitlines()[:5]):
        pages = split_wikitext_articles(raw)
        return [wikitext_doc(p, i) for i, p in enumerate(pages)], f"{data} (WikiText, {len(pages)} articles)"
    return [TextDoc("0", raw, raw)], data


def load(data: str = "", limit: int = 0, seed: int = 0) -> Task:
    if data:
        docs, source = read_docs(data)
    else:
        from .cloze import heldout_docs
        docs = [TextDoc(d["id"], d["text"], d["text"]) for d in heldout_docs()]
        source = "llmfs corpus (held-out documents)"
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise ValueError(f"{data or source} has no text to score.")
    return Task("perplexity", "perplexity", select(docs, limit, seed), METRICS, source=source)
