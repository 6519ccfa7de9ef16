"""Quality filters for web text, datatrove-style: a filter is a frozen config whose `__call__(doc)` returns True
(keep) or `(False, "<filter>:<rule>")`. `FilterStep` turns one into an `Iterator[Document] -> Iterator[Document]`
step that counts `forwarded`, `dropped` and `dropped_<reason>` (what the pipeline's funnel chart draws).

    steps = [FilterStep(f) for f in build_filters("gopher_quality,gopher_repetition,c4")]
    for step in steps:
        docs = step(docs)

Every threshold is a field with help text (`llmfs.config.option`), so the UI draws a form and the CLI prints the
help; `None` switches a rule off; change one with `dataclasses.replace(GopherQualityFilter(), min_words=20)`.
Words are whitespace-separated tokens (datatrove uses an NLTK/spaCy tokenizer, which also splits off punctuation).

Drop reasons:
    gopher_quality:    word_count, mean_word_length, symbol_word_ratio, bullet_lines, ellipsis_lines, alpha_words,
                       stop_words
    gopher_repetition: dup_para_frac, dup_para_char_frac, dup_line_frac, dup_line_char_frac, top_{2,3,4}gram_frac,
                       dup_{5..10}gram_frac
    c4:                lorem_ipsum, curly_bracket, too_few_sentences (it also removes lines: see C4QualityFilter)
    length:            too_short, too_long, too_few_words, too_many_words
    language:          not_<languages> (e.g. not_en)
    regex:             <rule name>          range: <rule name>, <rule name>_missing
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, ClassVar, Iterable, Iterator, Sequence, Union

import numpy as np

from ..config import ConfigError, check_fields, option
from .documents import Document

Verdict = Union[bool, tuple[bool, str]]


def _check_bounds(cfg: Any, *pairs: tuple[str, str]) -> None:
    check_fields(cfg)
    for lo, hi in pairs:
        a, b = getattr(cfg, lo), getattr(cfg, hi)
        if a is not None and b is not None and a > b:
            raise ConfigError(lo, f"{lo} ({a}) must not exceed {hi} ({b}).")


def _split_list(s: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in s.split(",") if w.strip())


# --- Gopher quality (Rae et al. 2021, "Scaling Language Models", appendix A: MassiveWeb quality filters) ----------

_SYMBOL_ONLY = re.compile(r"(?<!\S)[^\s\w]+(?!\S)")            # tokens without a letter, digit or underscore
_NO_LETTER = re.compile(r"(?<!\S)(?:[\d_]|[^\w\s])+(?!\S)")     # tokens without an alphabetic character
_BULLETS = ("•", "‣", "◦", "●", "▪", "-", "*")


@lru_cache(maxsize=32)
def _word_set_re(words: str) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(map(re.escape, _split_list(words))) + r")\b")


@dataclass(frozen=True)
class GopherQualityFilter:
    """Gopher's quality rules with the paper's thresholds (Rae et al. 2021, appendix A), checked in the order of
    datatrove's GopherQualityFilter; the first rule broken is the reason."""

    name: ClassVar[str] = "gopher_quality"
    min_words: int | None = option(50, "Drop documents with fewer words (symbol-only tokens not counted).", min=0)
    max_words: int | None = option(100_000, "Drop documents with more words.", min=0)
    min_mean_word_length: float | None = option(3.0, "Drop documents with a lower mean word length (chars).", min=0)
    max_mean_word_length: float | None = option(10.0, "Drop documents with a higher mean word length.", min=0)
    max_symbol_word_ratio: float | None = option(0.1, "Drop documents with more '#', or more '...', per word.", min=0)
    max_bullet_lines: float | None = option(0.9, "Drop documents where a larger fraction of (non-empty) lines "
                                                 "start with a bullet.", min=0, max=1)
    max_ellipsis_lines: float | None = option(0.3, "Drop documents where a larger fraction of lines end with an "
                                                   "ellipsis.", min=0, max=1)
    min_alpha_words: float | None = option(0.8, "Drop documents where a smaller fraction of words contain an "
                                                "alphabetic character.", min=0, max=1)
    min_stop_words: int | None = option(2, "Drop documents with fewer stop words (any case; repeats count).", min=0)
    stop_words: str = option("the,be,to,of,and,that,have,with", "Stop words, comma-separated (Gopher's eight).")

    def __post_init__(self) -> None:
        _check_bounds(self, ("min_words", "max_words"), ("min_mean_word_length", "max_mean_word_length"))

    def __call__(self, doc: Document) -> Verdict:
        text = doc.text
        words = text.split()
        n_words = len(words)
        symbol_only = _SYMBOL_ONLY.findall(text)
        n_real = n_words - len(symbol_only)
        if (self.min_words is not None and n_real < self.min_words) or \
                (self.max_words is not None and n_real > self.max_words):
            return False, "gopher_quality:word_count"
        if n_real == 0:                                 # only reachable with min_words switched off
            return False, "gopher_quality:word_count"
        mean_len = (sum(map(len, words)) - sum(map(len, symbol_only))) / n_real
        if (self.min_mean_word_length is not None and mean_len < self.min_mean_word_length) or \
                (self.max_mean_word_length is not None and mean_len > self.max_mean_word_length):
            return False, "gopher_quality:mean_word_length"
        if self.max_symbol_word_ratio is not None and (
                text.count("#") / n_words > self.max_symbol_word_ratio
                or (text.count("...") + text.count("…")) / n_words > self.max_symbol_word_ratio):
            return False, "gopher_quality:symbol_word_ratio"
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]   # blank lines are layout, not lines
        if self.max_bullet_lines is not None and \
                sum(ln.startswith(_BULLETS) for ln in lines) / len(lines) > self.max_bullet_lines:
            return False, "gopher_quality:bullet_lines"
        if self.max_ellipsis_lines is not None and \
                sum(ln.endswith(("...", "…")) for ln in lines) / len(lines) > self.max_ellipsis_lines:
            return False, "gopher_quality:ellipsis_lines"
        if self.min_alpha_words is not None and \
                (n_words - len(_NO_LETTER.findall(text))) / n_words < self.min_alpha_words:
            return False, "gopher_quality:alpha_words"
        if self.min_stop_words is not None:             # stop at the count needed: most pages say "the" early
            found = itertools.islice(_word_set_re(self.stop_words).finditer(text.lower()), self.min_stop_words)
            if sum(1 for _ in found) < self.min_stop_words:
                return False, "gopher_quality:stop_words"
        return True


# --- Gopher repetition (Rae et al. 2021, table A1; datatrove GopherRepetitionFilter) ---------------------------------

_PARA_SPLIT = re.compile(r"\n{2,}")
_LINE_SPLIT = re.compile(r"\n+")


def _dup_counts(parts: list[str]) -> tuple[int, int]:
    """(number of parts that repeat an earlier one, their characters)."""
    seen: set[str] = set()
    n = chars = 0
    for p in parts:
        if p in seen:
            n += 1
            chars += len(p)
        else:
            seen.add(p)
    return n, chars


def _ngram_ids(ids: np.ndarray, n: int) -> np.ndarray:
    """One int64 id per n-gram of word ids (wrapping multiply-add; equal n-grams always get equal ids)."""
    m = len(ids) - n + 1
    h = ids[:m].copy()
    for j in range(1, n):
        h = h * np.int64(1_000_003) + ids[j:j + m]
    return h


def _dup_ngram_chars(h: np.ndarray, word_lens: np.ndarray, n: int, limit: float) -> int:
    """Characters in n-grams that repeat an earlier n-gram, scanning left to right and jumping past each repeat so
    overlapping repeats count once (datatrove's find_all_duplicate; n-gram = words joined without spaces).
    0 means no n-gram repeats; a count at or below `limit` may be an upper bound (enough to pass the rule)."""
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    repeat = first[inverse] < np.arange(len(h))
    if not repeat.any():
        return 0
    chars = np.convolve(word_lens, np.ones(n, dtype=np.int64), mode="valid")    # characters of each n-gram
    bound = int(chars[repeat].sum())                    # every repeat counted, jumps ignored: >= the exact count
    if bound <= limit:
        return bound
    seen: set[int] = set()
    total, i, hl = 0, 0, h.tolist()
    while i < len(hl):
        if hl[i] in seen:
            total += int(chars[i])
            i += n
        else:
            seen.add(hl[i])
            i += 1
    return total


@dataclass(frozen=True)
class GopherRepetitionFilter:
    """Gopher's repetition rules (Rae et al. 2021, table A1): fractions of duplicated lines, paragraphs and
    n-grams. Character fractions are over the whole text's length, as in datatrove."""

    name: ClassVar[str] = "gopher_repetition"
    dup_line_frac: float | None = option(0.30, "Max fraction of lines that repeat an earlier line.", min=0, max=1)
    dup_para_frac: float | None = option(0.30, "Max fraction of paragraphs that repeat an earlier one.", min=0, max=1)
    dup_line_char_frac: float | None = option(0.20, "Max fraction of characters in repeated lines.", min=0, max=1)
    dup_para_char_frac: float | None = option(0.20, "Max fraction of characters in repeated paragraphs.", min=0, max=1)
    top_2gram_frac: float | None = option(0.20, "Max fraction of characters in the most common 2-gram.", min=0, max=1)
    top_3gram_frac: float | None = option(0.18, "The same for 3-grams.", min=0, max=1)
    top_4gram_frac: float | None = option(0.16, "The same for 4-grams.", min=0, max=1)
    dup_5gram_frac: float | None = option(0.15, "Max fraction of characters in repeated 5-grams.", min=0, max=1)
    dup_6gram_frac: float | None = option(0.14, "The same for 6-grams.", min=0, max=1)
    dup_7gram_frac: float | None = option(0.13, "The same for 7-grams.", min=0, max=1)
    dup_8gram_frac: float | None = option(0.12, "The same for 8-grams.", min=0, max=1)
    dup_9gram_frac: float | None = option(0.11, "The same for 9-grams.", min=0, max=1)
    dup_10gram_frac: float | None = option(0.10, "The same for 10-grams.", min=0, max=1)

    def __post_init__(self) -> None:
        check_fields(self)

    def __call__(self, doc: Document) -> Verdict:
        text = doc.text
        if not text.strip():
            return True
        size = len(text)
        for parts, frac, char_frac, what in (
                (_PARA_SPLIT.split(text.strip()), self.dup_para_frac, self.dup_para_char_frac, "para"),
                (_LINE_SPLIT.split(text.strip()), self.dup_line_frac, self.dup_line_char_frac, "line")):
            n_dup, dup_chars = _dup_counts(parts)
            if frac is not None and n_dup / len(parts) > frac:
                return False, f"gopher_repetition:dup_{what}_frac"
            if char_frac is not None and dup_chars / size > char_frac:
                return False, f"gopher_repetition:dup_{what}_char_frac"
        words = text.split()
        ids = np.fromiter(map(hash, words), dtype=np.int64, count=len(words))     # one id per word, per process
        lens = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        for n in (2, 3, 4):
            frac = getattr(self, f"top_{n}gram_frac")
            if frac is None or len(words) < n:
                continue
            _, first, counts = np.unique(_ngram_ids(ids, n), return_index=True, return_counts=True)
            top = np.flatnonzero(counts == counts.max())
            i = first[top].min()                        # ties: the n-gram seen first (Counter.most_common)
            if (lens[i:i + n].sum() + n - 1) * counts.max() / size > frac:
                return False, f"gopher_repetition:top_{n}gram_frac"
        for n in range(5, 11):
            frac = getattr(self, f"dup_{n}gram_frac")
            if frac is None or len(words) < n:
                continue
            chars = _dup_ngram_chars(_ngram_ids(ids, n), lens, n, frac * size)
            if chars / size > frac:
                return False, f"gopher_repetition:dup_{n}gram_frac"
            if chars == 0:                              # no repeated n-gram: no longer one repeats either
                break
        return True


# --- C4 (Raffel et al. 2020, section 2.2; tfds c4_utils.clean_page, as in datatrove C4QualityFilter) ---------------

_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_SENTENCE_END = re.compile(r"[.!?]+['\"”’)\]]*(?=\s|$)")
_TERMINAL = (".", "?", "!", '"', "'")


@dataclass(frozen=True)
class C4QualityFilter:
    """C4's page cleaning. It *edits* the document: lines are removed, and the text that survives is the kept
    lines joined by newlines. A line goes when it has a word over `max_word_length` characters (`long_word`), does
    not end in terminal punctuation or ends in "..." (`no_terminal_punct`), has fewer than `min_words_per_line`
    words (`too_few_words`), mentions javascript (`javascript`) or a cookie / terms-of-use phrase (`policy`);
    `doc.metadata["c4_lines_dropped"]` counts them by reason. Wikipedia-style citation marks ("[1]", "[edit]")
    are cut from the lines. The whole page goes for "lorem ipsum" or a "{" in a kept line, or fewer than
    `min_sentences` sentences in the kept lines. Sentences are counted with a regex (a run ending in . ! ? before
    a space or the line end), not NLTK punkt as in C4, so "Mr. Smith" counts two. The bad-words list is not
    applied (it needs a download)."""

    name: ClassVar[str] = "c4"
    min_sentences: int | None = option(5, "Drop pages with fewer sentences left after line filtering.", min=0)
    min_words_per_line: int | None = option(3, "Remove lines with fewer words.", min=0)
    max_word_length: int | None = option(1000, "Remove lines with a longer word (characters).", min=1)
    terminal_punct: bool = option(True, "Remove lines that do not end in . ? ! \" or ' (or that end in ...).")
    remove_citations: bool = option(True, "Cut Wikipedia-style citation marks such as [1] or [edit] from lines.")
    javascript_lines: bool = option(True, "Remove lines that mention javascript.")
    policy_lines: bool = option(True, "Remove lines with one of the policy phrases.")
    policy_phrases: str = option("terms of use,privacy policy,cookie policy,uses cookies,use of cookies,use cookies",
                                 "Policy phrases, comma-separated (C4's list).", advanced=True)
    lorem_ipsum: bool = option(True, "Drop pages that contain 'lorem ipsum' (placeholder text).")
    curly_bracket: bool = option(True, "Drop pages with a '{' (most are code).")

    def __post_init__(self) -> None:
        check_fields(self)

    def __call__(self, doc: Document) -> Verdict:
        dropped: Counter = Counter()
        kept, sentences = [], 0
        phrases = _split_list(self.policy_phrases) if self.policy_lines else ()
        verdict: Verdict = True
        for line in doc.text.splitlines():
            line = line.strip()
            words = line.split()
            if self.max_word_length is not None and any(len(w) > self.max_word_length for w in words):
                dropped["long_word"] += 1
                continue
            if self.remove_citations:
                line = _CITATION.sub("", line)
            if self.terminal_punct and (not line.endswith(_TERMINAL) or line.endswith("...")):
                dropped["no_terminal_punct"] += 1
                continue
            if self.min_words_per_line is not None and len(line.split()) < self.min_words_per_line:
                dropped["too_few_words"] += 1
                continue
            lower = line.lower()
            if self.lorem_ipsum and "lorem ipsum" in lower:
                verdict = False, "c4:lorem_ipsum"
                break
            if self.javascript_lines and "javascript" in lower:
                dropped["javascript"] += 1
                continue
            if self.curly_bracket and "{" in line:
                verdict = False, "c4:curly_bracket"
                break
            if any(p in lower for p in phrases):
                dropped["policy"] += 1
                continue
            sentences += max(1, len(_SENTENCE_END.findall(line)))
            kept.append(line)
        doc.metadata["c4_lines_dropped"] = dict(dropped)
        if verdict is not True:
            return verdict
        if self.min_sentences is not None and sentences < self.min_sentences:
            return False, "c4:too_few_sentences"
        doc.text = "\n".join(kept).strip()
        return True

    @staticmethod
    def line_stats(doc: Document) -> dict[str, int]:
        """Lines this filter removed from `doc`, by reason (FilterStep adds them up as `lines_dropped_c4:<r>`)."""
        return doc.metadata.get("c4_lines_dropped", {})


# --- length bounds -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LengthFilter:
    """Bounds on characters and on whitespace-separated words. The default upper bound is C4's 190,000 characters
    (tfds c4_utils.is_valid_length)."""

    name: ClassVar[str] = "length"
    min_chars: int | None = option(100, "Drop shorter documents (characters).", min=0)
    max_chars: int | None = option(190_000, "Drop longer documents (characters).", min=0)
    min_words: int | None = option(None, "Drop documents with fewer words.", min=0)
    max_words: int | None = option(None, "Drop documents with more words.", min=0)

    def __post_init__(self) -> None:
        _check_bounds(self, ("min_chars", "max_chars"), ("min_words", "max_words"))

    def __call__(self, doc: Document) -> Verdict:
        n = len(doc.text)
        if self.min_chars is not None and n < self.min_chars:
            return False, "length:too_short"
        if self.max_chars is not None and n > self.max_chars:
            return False, "length:too_long"
        if self.min_words is not None or self.max_words is not None:
            w = len(doc.text.split())
            if self.min_words is not None and w < self.min_words:
                return False, "length:too_few_words"
            if self.max_words is not None and w > self.max_words:
                return False, "length:too_many_words"
        return True


# --- language (offline stop-word heuristic) ------------------------------------------------------------------------

# The most frequent function words of each language (hand-picked from frequency lists). A language's score is the
# fraction of a document's words on its list. On web_sample.jsonl's English pages the English score has median 0.38
# (5th percentile 0.22) and the best other language's median 0.05; pages under 0.1 are mostly keyword lists and
# product specs. No model download (FineWeb uses fastText lid.176, a download).
STOP_WORDS: dict[str, frozenset[str]] = {lang: frozenset(words.split()) for lang, words in {
    "en": "the of and to a in is that for it was on with as he be by at are this i you his from or have an they "
          "which not but had we were she her their been has there will would all its one can if more who what when "
          "so about no my your our them do out up",
    "de": "der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an werden aus "
          "er hat dass sie nach wird bei einer um am sind noch wie einem über einen so zum war haben nur oder aber "
          "vor zur bis mehr durch man sein wurde ich",
    "fr": "de la le et les des en un du une que est pour qui dans a par plus pas au sur ne se ce il sont ou avec "
          "son sa aux elle mais nous vous leur été ses cette je on comme tout l d qu n",
    "es": "de la que el en y a los se del las un por con no una su para es al lo como más pero sus le ya o este sí "
          "porque esta entre cuando muy sin sobre también me hasta hay donde han fue",
    "it": "di e il la che in a per un del non è una le si i da con sono al lo come gli della più ma anche nel alla "
          "dei delle ha se questo ci ne su cui tra l",
    "pt": "de a o que e do da em um para é com não uma os no se na por mais as dos como mas foi ao ele das tem à "
          "seu sua ou ser quando muito há nos já está também",
    "nl": "de en van het een in is dat op te zijn met voor niet aan er die als ook om door maar bij dan zo nog uit "
          "wel naar was heeft worden kan wordt deze dit hij ze",
}.items()}
_LETTERS = re.compile(r"[^\W\d_]+")


def language_scores(text: str) -> dict[str, float]:
    """language -> fraction of the words of `text` on that language's stop-word list."""
    counts = Counter(_LETTERS.findall(text.lower()))
    total = sum(counts.values())
    if not total:
        return {lang: 0.0 for lang in STOP_WORDS}
    return {lang: sum(counts[w] for w in words if w in counts) / total for lang, words in STOP_WORDS.items()}


@dataclass(frozen=True)
class LanguageFilter:
    """Keeps documents whose best-scoring language (see `language_scores`) is allowed and scores at least
    `min_score`. Writes `doc.metadata["language"]` and `["language_score"]` (kept or not)."""

    name: ClassVar[str] = "language"
    languages: str = option("en", f"Languages to keep, comma-separated, from: {', '.join(STOP_WORDS)}.")
    min_score: float = option(0.10, "Minimum fraction of the document's words that are stop words of its language.",
                              min=0, max=1, step=0.01)

    def __post_init__(self) -> None:
        check_fields(self)
        unknown = set(_split_list(self.languages)) - set(STOP_WORDS)
        if unknown or not _split_list(self.languages):
            raise ConfigError("languages", f"languages must be a comma-separated list of {', '.join(STOP_WORDS)} "
                                           f"(got {self.languages!r}).")

    def __call__(self, doc: Document) -> Verdict:
        scores = language_scores(doc.text)
        best = max(scores, key=scores.__getitem__)
        doc.metadata["language"] = best
        doc.metadata["language_score"] = round(scores[best], 4)
        allowed = _split_list(self.languages)
        if best in allowed and scores[best] >= self.min_score:
            return True
        return False, "language:not_" + "+".join(allowed)


# --- user rules ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RegexRule:
    """`pattern` must (or, with must_match=False, must not) be found in the text; else drop as `regex:<name>`."""
    name: str
    pattern: str
    must_match: bool = False
    ignore_case: bool = True


@dataclass(frozen=True)
class RegexFilter:
    """User regex rules, checked in order."""

    name: ClassVar[str] = "regex"
    rules: tuple[RegexRule, ...] = option((), "Regex rules: RegexRule(name, pattern, must_match, ignore_case).")

    def __post_init__(self) -> None:
        for r in self.rules:
            try:
                _compiled(r.pattern, r.ignore_case)
            except re.error as e:
                raise ConfigError("rules", f"rule {r.name!r}: invalid regex {r.pattern!r} ({e}).") from e

    def __call__(self, doc: Document) -> Verdict:
        for r in self.rules:
            if (_compiled(r.pattern, r.ignore_case).search(doc.text) is not None) != r.must_match:
                return False, f"regex:{r.name}"
        return True


@lru_cache(maxsize=256)
def _compiled(pattern: str, ignore_case: bool) -> re.Pattern:
    return re.compile(pattern, re.IGNORECASE if ignore_case else 0)


@dataclass(frozen=True)
class RangeRule:
    """`field` must lie in [min, max]; else drop as `range:<name>`. `field` is `chars`, `words` or `lines` of the
    text, or a key of `doc.metadata` holding a number (missing / not a number: `range:<name>_missing`)."""
    name: str
    field: str
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class RangeFilter:
    """User min / max rules on a numeric field, checked in order."""

    name: ClassVar[str] = "range"
    rules: tuple[RangeRule, ...] = option((), "Range rules: RangeRule(name, field, min, max).")

    def __call__(self, doc: Document) -> Verdict:
        for r in self.rules:
            value = _field_value(doc, r.field)
            if value is None:
                return False, f"range:{r.name}_missing"
            if (r.min is not None and value < r.min) or (r.max is not None and value > r.max):
                return False, f"range:{r.name}"
        return True


def _field_value(doc: Document, name: str) -> float | None:
    if name == "chars":
        return len(doc.text)
    if name == "words":
        return len(doc.text.split())
    if name == "lines":
        return len(doc.text.splitlines())
    value = doc.metadata.get(name)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# --- registry and step ---------------------------------------------------------------------------------------------

FILTERS: dict[str, type] = {cls.name: cls for cls in (
    GopherQualityFilter, GopherRepetitionFilter, C4QualityFilter, LengthFilter, LanguageFilter, RegexFilter,
    RangeFilter)}


def build_filters(names: str | Sequence[str], overrides: dict[str, dict[str, Any]] | None = None) -> list:
    """Filters by registry name, in order: `build_filters("gopher_quality,c4", {"c4": {"min_sentences": 3}})`.

    Raises:
        ValueError: an unknown name (the message lists the known ones) or an override for a filter not asked for.
        ConfigError: an override outside its allowed range.
    """
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    unknown = [n for n in wanted if n not in FILTERS] + [n for n in (overrides or {}) if n not in wanted]
    if unknown:
        raise ValueError(f"Unknown or unused filter name(s): {', '.join(unknown)}. Known: {', '.join(FILTERS)}.")
    return [FILTERS[n](**(overrides or {}).get(n, {})) for n in wanted]


class FilterStep:
    """`Iterator[Document] -> Iterator[Document]`: forwards the documents `filter` keeps and counts in `stats`
    `forwarded`, `dropped` and `dropped_<reason>` (plus `lines_dropped_c4:<reason>` for a line-editing filter).
    Dropped documents get `doc.metadata["dropped_by"] = reason` (for an exclusion writer)."""

    def __init__(self, filter: Any, on_drop: Callable[[Document, str], None] | None = None):
        self.filter = filter
        self.name: str = filter.name
        self.stats: Counter = Counter(forwarded=0, dropped=0)
        self.on_drop = on_drop  # the pipeline keeps samples of what was dropped, for the UI to show

    def __call__(self, docs: Iterable[Document]) -> Iterator[Document]:
        line_stats = getattr(self.filter, "line_stats", None)
        for doc in docs:
            verdict = self.filter(doc)
            if line_stats is not None:
                for reason, n in line_stats(doc).items():
                    self.stats[f"lines_dropped_{self.name}:{reason}"] += n
            if verdict is True or (isinstance(verdict, tuple) and verdict[0]):
                self.stats["forwarded"] += 1
                yield doc
            else:
                reason = verdict[1] if isinstance(verdict, tuple) else f"{self.name}:rejected"
                doc.metadata["dropped_by"] = reason
                self.stats["dropped"] += 1
                self.stats[f"dropped_{reason}"] += 1
                if self.on_drop is not None:
                    self.on_drop(doc, reason)

