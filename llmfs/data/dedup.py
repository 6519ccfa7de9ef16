"""Deduplication steps: exact (hash of normalised text) and near-duplicate (MinHash + LSH, FineWeb's defaults).

Both are `Iterator[Document] -> Iterator[Document]` steps that keep the first copy, drop later ones and count
`forwarded`, `dropped` and `dropped_<reason>` in `.stats` (datatrove's convention, read by the funnel chart):

    exact = ExactDeduper()                      # reason "exact_dedup:duplicate"
    near = MinHashDeduper(MinHashConfig())      # reason "minhash_dedup:near_duplicate"
    kept = list(near(exact(docs)))
    near.clusters()                             # [DuplicateCluster(kept_id, [(dup_id, est. Jaccard), ...]), ...]

Normalisation (shared by both, see `words`): lowercase; a word is a run of ASCII letters, digits or `_`, or of
non-ASCII characters outside U+0080-U+00BF (Latin-1 punctuation, NBSP) and U+2000-U+207F (General Punctuation:
curly quotes, dashes, ellipsis, zero-width spaces). Everything else (punctuation, whitespace) separates words, so
"Hello,  World!" and "hello world" are the same text. The rule is byte-level on UTF-8 so that numpy can apply it to
a whole batch of documents at once; `words` is the same rule as a regex, the reference the tests hold it to.

MinHash (Broder 1997) with LSH banding as in FineWeb (Penedo et al. 2024): 5-word shingles, 14 bands x 8 rows =
112 permutations, a pair is a candidate when all 8 values of any band agree, i.e. with probability
1 - (1 - J^8)^14 (0.56 at J = 0.7, 0.92 at J = 0.8, 0.9996 at J = 0.9). All hashing is numpy over a batch of
documents: word hashes from the UTF-8 bytes, shingle hashes from word hashes, and the (shingles x permutations)
matrix reduced with `np.minimum.reduceat` - no Python loop per word or per shingle.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable, Iterator, Literal, Sequence

import numpy as np

from ..config import check_fields, option
from .documents import Document

# --- normalisation -------------------------------------------------------------------------------------------------

# The regex twin of the byte rule in `_scan` (lowercased text): ASCII [0-9a-z_], U+00C0 up to U+1FFF, U+2080 up.
_WORD_RE = re.compile("[0-9a-z_\u00c0-\u1fff\u2080-\U0010ffff]+")
_WORD_BYTE = np.zeros(256, dtype=bool)
_WORD_BYTE[[*range(ord("0"), ord("9") + 1), *range(ord("a"), ord("z") + 1), ord("_"), *range(0x80, 256)]] = True


def words(text: str) -> list[str]:
    """The normalised words of `text` (the reference for the vectorised path; see the module docstring)."""
    return _WORD_RE.findall(text.lower())


def normalize(text: str) -> str:
    """Lowercased words joined by single spaces: what exact dedup hashes."""
    return " ".join(words(text))


def _scan(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes of lowercased text, mask of the bytes that belong to words)."""
    b = np.frombuffer(raw, dtype=np.uint8)
    is_word = _WORD_BYTE[b]
    lead2 = np.flatnonzero(b == 0xC2)                   # U+0080-U+00BF: 2 bytes, C2 xx
    is_word[lead2] = False
    is_word[lead2 + 1] = False
    lead3 = np.flatnonzero(b[:-2] == 0xE2)              # U+2000-U+207F: 3 bytes, E2 80 xx / E2 81 xx
    lead3 = lead3[(b[lead3 + 1] & 0xFE) == 0x80]
    for k in range(3):
        is_word[lead3 + k] = False
    return b, is_word


def _encode(text: str) -> bytes:
    # surrogatepass: a lone surrogate (seen in scraped JSON) becomes 3 bytes >= 0x80, a word character like in _WORD_RE
    return text.lower().encode("utf-8", "surrogatepass")


def normalized_bytes(text: str) -> bytes:
    """`normalize(text).encode()`, computed with numpy (4-5x faster than the regex on web pages)."""
    b, is_word = _scan(_encode(text))
    if not is_word.any():
        return b""
    out = np.where(is_word, b, np.uint8(ord(" ")))
    keep = is_word | np.concatenate(([False], is_word[:-1]))    # word bytes, and the first separator after each word
    return out[keep].tobytes().rstrip(b" ")


# --- hashing -------------------------------------------------------------------------------------------------------

_U64 = np.uint64
_SEED_RNG = np.random.default_rng(0x11F5)               # fixed: word and shingle hashes never depend on `seed`
_SHINGLE_KEYS = _SEED_RNG.integers(0, 2**63, 64, dtype=np.uint64) * _U64(2) + _U64(1)  # one per word in a shingle
_MERSENNE = _U64((1 << 61) - 1)


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer (a bijection that spreads every input bit over all output bits), in place."""
    h ^= h >> _U64(33)
    h *= _U64(0xFF51AFD7ED558CCD)
    h ^= h >> _U64(33)
    h *= _U64(0xC4CEB9FE1A85EC53)
    h ^= h >> _U64(33)
    return h


def _join(texts: Sequence[str]) -> tuple[bytes, np.ndarray]:
    """(lowercased UTF-8 of all texts, each separated by a NUL byte; the byte offset where each text starts).
    One `lower` and one `encode` for the batch; NUL is never a word byte, so no word spans two texts."""
    raw = _encode("\x00".join(texts))
    nul = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 0)
    if len(nul) != len(texts) - 1:                      # a text holds NUL itself: find the offsets text by text
        lens = [len(_encode(t)) + 1 for t in texts]
        return raw, np.cumsum([0] + lens[:-1])
    return raw, np.concatenate(([0], nul + 1))


_POLY_BASE = int(_SEED_RNG.integers(0, 2**63, dtype=np.uint64)) * 2 + 1
_POLY_PIECE = 1 << 19           # bytes hashed at once: the two power tables take 4 MB each
_TABLE_LEN = _POLY_PIECE + 1    # fixed at import (a test shrinks _POLY_PIECE to exercise the piece boundaries)


def _powers(base: int, n: int) -> np.ndarray:
    """base^0 .. base^(n-1) mod 2^64."""
    return np.concatenate(([_U64(1)], np.cumprod(np.full(n - 1, base, dtype=np.uint64))))


@lru_cache(maxsize=1)
def _power_tables() -> tuple[np.ndarray, np.ndarray]:
    """(B^k, B^-k mod 2^64) for k up to a piece, built on first use."""
    return _powers(_POLY_BASE, _TABLE_LEN), _powers(pow(_POLY_BASE, -1, 2**64), _TABLE_LEN)


def _word_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit hash of every word of every text, index of the text each word belongs to)."""
    raw, text_starts = _join(texts)
    b, is_word = _scan(raw)
    edges = np.diff(is_word.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    first, end = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    h = np.empty(len(first), dtype=np.uint64)
    pow_, inv_pow = _power_tables()
    # A word's hash is the polynomial sum(byte_k * B^(k - start)) mod 2^64 (B odd, so B has an inverse mod 2^64):
    # with prefix sums S of byte_k * B^k over the whole piece, a word is (S[end] - S[start]) * B^-start. A few
    # passes over the bytes, none per word. Pieces are cut between words, so every word lies in one piece.
    lo = 0
    while lo < len(first):
        piece_start = first[lo]
        hi = int(np.searchsorted(end, piece_start + _POLY_PIECE, side="right"))
        hi = max(hi, lo + 1)
        piece_end = end[hi - 1]
        if piece_end - piece_start > _POLY_PIECE:       # one word longer than a piece: hash it on its own
            h[lo] = _long_word_hash(b[piece_start:piece_end])
        else:
            v = (b[piece_start:piece_end] * is_word[piece_start:piece_end]).astype(np.uint64)
            prefix = np.zeros(len(v) + 1, dtype=np.uint64)
            np.cumsum(v * pow_[:len(v)], out=prefix[1:])
            s, e = first[lo:hi] - piece_start, end[lo:hi] - piece_start
            h[lo:hi] = (prefix[e] - prefix[s]) * inv_pow[s]
        lo = hi
    h ^= (end - first).astype(np.uint64) * _U64(0x9E3779B97F4A7C15)
    doc = np.searchsorted(text_starts, first, side="right") - 1
    return _fmix64(h), doc


def _long_word_hash(word: np.ndarray) -> np.uint64:
    """The same polynomial for a word longer than a piece, summed piece by piece."""
    total = 0
    for k in range(0, len(word), _POLY_PIECE):
        part = word[k:k + _POLY_PIECE].astype(np.uint64)
        step = int((part * _power_tables()[0][:len(part)]).sum(dtype=np.uint64))
        total = (total + step * pow(_POLY_BASE, k, 2**64)) % 2**64
    return _U64(total)


def _shingle_hashes(wh: np.ndarray, doc: np.ndarray, n_docs: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every n-word shingle inside one text, its text). A text shorter than n words is one shingle of all
    its words (as datasketch users and FineWeb do), so short pages still deduplicate."""
    m = len(wh) - n + 1
    parts_h, parts_doc = [], []
    if m > 0:
        h = wh[:m] * _SHINGLE_KEYS[0]
        for j in range(1, n):                           # n passes over all shingles, not a loop per shingle
            h += wh[j:j + m] * _SHINGLE_KEYS[j]
        inside = doc[:m] == doc[n - 1:]                 # drop shingles that straddle two texts
        parts_h.append(h[inside])
        parts_doc.append(doc[:m][inside])
    counts = np.bincount(doc, minlength=n_docs)
    for d in np.flatnonzero((counts > 0) & (counts < n)):
        w = wh[doc == d]
        parts_h.append(np.array([(w * _SHINGLE_KEYS[:len(w)]).sum()], dtype=np.uint64))
        parts_doc.append(np.array([d]))
    if not parts_h:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    h, d = np.concatenate(parts_h), np.concatenate(parts_doc)
    order = np.argsort(d, kind="stable")
    return _fmix64(h[order]), d[order]


def shingle_hashes(text: str, n: int = 5) -> np.ndarray:
    """The distinct 64-bit hashes of the n-word shingles of `text` (for inspection and tests)."""
    h, _ = _shingle_hashes(*_word_hashes([text]), 1, n)
    return np.unique(h)


def shingles(text: str, n: int = 5) -> set[str]:
    """The n-word shingles of `text` as strings: the reference set (true Jaccard, datasketch input)."""
    w = words(text)
    if len(w) < n:
        return {" ".join(w)} if w else set()
    return {" ".join(w[i:i + n]) for i in range(len(w) - n + 1)}


def _char_shingle_hashes(texts: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Character n-grams of the normalised texts (for languages without spaces between words)."""
    parts_h, parts_doc = [], []
    for d, text in enumerate(texts):
        cp = np.frombuffer(normalize(text).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
        if not len(cp):
            continue
        m = max(len(cp) - n + 1, 1)
        h = cp[:m] * _SHINGLE_KEYS[0]
        for j in range(1, min(n, len(cp))):
            h += cp[j:j + m] * _SHINGLE_KEYS[j]
        parts_h.append(h)
        parts_doc.append(np.full(m, d))
    if not parts_h:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    return _fmix64(np.concatenate(parts_h)), np.concatenate(parts_doc)


# --- the LSH S-curve (the lesson's chart) -------------------------------------------------------------------------
def candidate_probability(s: float, bands: int, rows: int) -> float:
    """Probability that MinHash LSH makes two documents of Jaccard similarity `s` candidates: all `rows` values of
    at least one of `bands` bands agree, 1 - (1 - s^rows)^bands (Leskovec, Rajaraman & Ullman, Mining of Massive
    Datasets, section 3.4.2)."""
    return 1.0 - (1.0 - s ** rows) ** bands


def lsh_threshold(bands: int, rows: int) -> float:
    """Where the S-curve rises steepest, approximately: (1 / bands)^(1 / rows) (same reference)."""
    return (1.0 / bands) ** (1.0 / rows)


# --- MinHash -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MinHashConfig:
    """Near-duplicate detection: shingles, signature size and the LSH banding (FineWeb's defaults)."""

    shingle: Literal["words", "chars"] = option(
        "words", "Compare documents by overlapping runs of words (web text) or of characters (languages written "
                 "without spaces).", label="Shingles")
    n_gram: int = option(5, "Shingle size: words (or characters) per shingle. FineWeb uses 5 words.",
                         min=1, max=64, label="Shingle size")
    bands: int = option(14, "LSH bands. Two documents become candidates when all rows of any one band agree. "
                            "More bands catch less similar pairs.", min=1, max=1024, label="Bands")
    rows: int = option(8, "Hashes per band. More rows make a band match only for more similar pairs. The "
                          "signature has bands x rows values.", min=1, max=64, label="Rows per band")
    seed: int = option(1, "Seed of the permutations.", min=0, max=2**32 - 1, advanced=True)
    scheme: Literal["affine32", "mersenne61"] = option(
        "affine32", "Permutations: `affine32` = a*x+b mod 2^32 on a well-mixed hash (datasketch 2.x's default, "
                    "fast); `mersenne61` = a*x+b mod 2^61-1 (the classic universal hash, 5-8x slower).",
        advanced=True)
    threshold: float | None = option(None, "If set, a candidate counts as a duplicate only when its estimated "
                                           "Jaccard similarity reaches this value (FineWeb: not set).",
                                     min=0.0, max=1.0, label="Verify Jaccard >=")
    batch_size: int = option(128, "Documents hashed together (numpy works on the whole batch at once; 128 keeps "
                                  "a batch of web pages in the CPU cache, measured faster than 64 or 256).",
                             min=1, max=100_000, advanced=True)

    def __post_init__(self) -> None:
        check_fields(self)                              # n_gram <= 64: one _SHINGLE_KEYS entry per position

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows


_CHUNK_ROWS = 8192          # shingles per (permutations x shingles) block: 3.5 MB of uint32 at 112 permutations


class MinHasher:
    """Signatures for a `MinHashConfig`: `signatures(texts)` is (len(texts), num_perm), one batch of numpy."""

    def __init__(self, config: MinHashConfig = MinHashConfig()):
        self.config = config
        rng = np.random.default_rng(config.seed)
        p = config.num_perm
        if config.scheme == "affine32":
            # a odd: x -> a*x + b mod 2^32 is a bijection, so it adds no collisions (datasketch issue #212)
            self.a = (rng.integers(0, 2**31, p, dtype=np.uint32) * np.uint32(2) + np.uint32(1))
            self.b = rng.integers(0, 2**32, p, dtype=np.uint32)
            self.dtype = np.dtype(np.uint32)
        else:
            self.a = rng.integers(1, int(_MERSENNE), p, dtype=np.uint64)
            self.b = rng.integers(0, int(_MERSENNE), p, dtype=np.uint64)
            self.dtype = np.dtype(np.uint64)
        self.empty = np.iinfo(self.dtype).max           # the signature of a text with no words

    def _permute(self, h: np.ndarray) -> np.ndarray:
        """(num_perm, len(h)) permuted values of 64-bit shingle hashes, whose top 32 bits are the input x.
        Permutations run along rows and shingles along columns: the min over a text's shingles is then a
        reduction over contiguous memory, 3-4x faster than the transposed layout here."""
        x = (h >> _U64(32))[None, :]                                    # (1, S)
        if self.dtype == np.uint32:
            out = self.a[:, None] * x.astype(np.uint32)                 # (P, S), wraps mod 2^32
            out += self.b[:, None]
            return out
        # (a*x + b) mod p with p = 2^61-1 in uint64: split a = ah*2^32 + al, so al*x < 2^64 and ah*x < 2^61, and
        # fold with 2^61 = 1 (mod p); 2^32 * ah*x = (ah*x >> 29) + ((ah*x & (2^29-1)) << 32) (mod p).
        ah, al = (self.a >> _U64(32))[:, None], (self.a & _U64(0xFFFFFFFF))[:, None]
        lo, hi = al * x, ah * x                                         # (P, S) each
        out = (lo >> _U64(61)) + (lo & _MERSENNE)
        out += hi >> _U64(29)
        out += (hi & _U64((1 << 29) - 1)) << _U64(32)
        out += self.b[:, None]
        out = (out >> _U64(61)) + (out & _MERSENNE)
        return (out >> _U64(61)) + (out & _MERSENNE)

    def shingles(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(64-bit hash of every shingle, index of its text), grouped by text in order."""
        n = self.config.n_gram
        if self.config.shingle == "chars":
            return _char_shingle_hashes(texts, n)
        wh, doc = _word_hashes(texts)
        return _shingle_hashes(wh, doc, len(texts), n)

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), num_perm) MinHash signatures; a text without words gets all values = `self.empty`."""
        out = np.full((len(texts), self.config.num_perm), self.empty, dtype=self.dtype)
        h, doc = self.shingles(texts)
        counts = np.bincount(doc, minlength=len(texts))
        ends = np.cumsum(counts)
        starts = ends - counts
        d = 0
        while d < len(texts):                           # blocks of whole texts of about _CHUNK_ROWS shingles
            e = max(int(np.searchsorted(ends, starts[d] + _CHUNK_ROWS, side="right")), d + 1)
            lo, hi = starts[d], ends[e - 1]
            if e == d + 1 and hi - lo > _CHUNK_ROWS:    # one long text: a running min over row blocks
                for r in range(lo, hi, _CHUNK_ROWS):
                    np.minimum(out[d], self._permute(h[r:min(r + _CHUNK_ROWS, hi)]).min(axis=1), out=out[d])
            elif hi > lo:
                has = np.flatnonzero(counts[d:e]) + d
                out[has] = np.minimum.reduceat(self._permute(h[lo:hi]), starts[has] - lo, axis=1).T
            d = e
        return out

    def signature(self, text: str) -> np.ndarray:
        return self.signatures([text])[0]


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The fraction of equal signature values: an unbiased estimate of the shingle sets' Jaccard similarity."""
    if sig_a.shape != sig_b.shape:
        raise ValueError(f"signatures differ in length ({sig_a.shape} vs {sig_b.shape}): same num_perm needed.")
    return float(np.mean(sig_a == sig_b))


# --- dedup steps ---------------------------------------------------------------------------------------------------

@dataclass
class DuplicateCluster:
    """A kept document and the documents dropped as its near-duplicates, each with its estimated Jaccard
    similarity to the kept one."""
    kept_id: str
    duplicates: list[tuple[str, float]]


class MinHashDeduper:
    """Streaming near-duplicate removal: keeps the first document of each cluster, drops the rest.

    `add(doc)` -> (is_duplicate, cluster_id) decides one document; calling the object on an iterator of documents
    yields the kept ones (hashing `batch_size` documents at a time, order preserved). A duplicate joins the cluster
    of its most similar candidate (union-find with the kept document as the root). Two kept documents are never
    merged afterwards, because both have already been forwarded. Memory grows with signatures (num_perm values) and
    bucket entries (`bands` per document), never with texts. A text without words is forwarded as it is, and is
    counted as `no_shingles`.

    Marks: `doc.metadata["minhash_cluster"]` (the cluster id is the kept document's id) on every document that has
    a cluster, and `doc.metadata["duplicate_of"]` and `["jaccard_estimate"]` on the dropped ones.
    """

    name = "minhash_dedup"
    reason = "minhash_dedup:near_duplicate"
    on_drop: Callable[[Document, str], None] | None = None   # set by a pipeline that keeps samples of drops

    def __init__(self, config: MinHashConfig = MinHashConfig()):
        self.config = config
        self.hasher = MinHasher(config)
        self.stats: Counter = Counter(forwarded=0, dropped=0)
        rng = np.random.default_rng([config.seed, 0xB4])
        # a band's key: its rows combined with random odd 64-bit weights (a different set per band, so one dict
        # holds all bands). Equal bands always give equal keys; unequal ones collide with odds around 2^-64.
        self._band_weights = rng.integers(0, 2**63, (config.bands, config.rows), dtype=np.uint64) * _U64(2) + _U64(1)
        self._buckets: dict[int, int] = {}              # band key -> index of the first document that had it
        self._sigs = np.empty((1024, config.num_perm), dtype=self.hasher.dtype)
        self._ids: list[str] = []
        self._root: list[int] = []                      # index -> index of its cluster's kept document
        self._dups: dict[int, list[tuple[int, float]]] = {}

    def _band_keys(self, sigs: np.ndarray) -> list[list[int]]:
        rows = sigs.reshape(len(sigs), self.config.bands, self.config.rows).astype(np.uint64)   # (N, bands, rows)
        return (rows * self._band_weights).sum(axis=2, dtype=np.uint64).tolist()                 # (N, bands)

    def _add_signed(self, doc: Document, sig: np.ndarray, keys: list[int]) -> tuple[bool, str | None]:
        if sig[0] == self.hasher.empty and (sig == self.hasher.empty).all():
            return False, None
        i = len(self._ids)
        if i == len(self._sigs):
            self._sigs = np.concatenate([self._sigs, np.empty_like(self._sigs)])
        self._sigs[i] = sig
        self._ids.append(doc.id)
        candidates = sorted({self._buckets[k] for k in keys if k in self._buckets})
        root, jaccard = i, 1.0
        if candidates:
            est = (self._sigs[candidates] == sig).mean(axis=1)                  # (n_candidates,)
            best = int(np.argmax(est))                                          # ties: the earliest document
            if self.config.threshold is None or est[best] >= self.config.threshold:
                root = self._root[candidates[best]]
                jaccard = estimate_jaccard(self._sigs[root], sig)
        self._root.append(root)
        for k in keys:
            self._buckets.setdefault(k, i)
        doc.metadata["minhash_cluster"] = self._ids[root]
        if root == i:
            return False, doc.id
        self._dups.setdefault(root, []).append((i, jaccard))
        doc.metadata["duplicate_of"] = self._ids[root]
        doc.metadata["jaccard_estimate"] = round(jaccard, 4)
        return True, self._ids[root]

    def add(self, doc: Document) -> tuple[bool, str | None]:
        """Record `doc`; (True, kept document's id) if it near-duplicates an earlier one, else (False, its own id),
        or (False, None) for a text without words. Does not update `stats` (the iterator step does)."""
        sig = self.hasher.signatures([doc.text])
        return self._add_signed(doc, sig[0], self._band_keys(sig)[0])

    def __call__(self, docs: Iterable[Document]) -> Iterator[Document]:
        batch: list[Document] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) == self.config.batch_size:
                yield from self._run_batch(batch)
                batch = []
        if batch:
            yield from self._run_batch(batch)

    def _run_batch(self, batch: list[Document]) -> Iterator[Document]:
        sigs = self.hasher.signatures([d.text for d in batch])
        for doc, sig, keys in zip(batch, sigs, self._band_keys(sigs)):
            is_dup, cluster = self._add_signed(doc, sig, keys)
            if is_dup:
                self.stats["dropped"] += 1
                self.stats[f"dropped_{self.reason}"] += 1
                if self.on_drop is not None:
                    self.on_drop(doc, self.reason)
            else:
                self.stats["forwarded"] += 1
                self.stats["no_shingles"] += cluster is None
                yield doc

    def clusters(self) -> list[DuplicateCluster]:
        """Every kept document that has near-duplicates, in input order."""
        return [DuplicateCluster(self._ids[root], [(self._ids[i], j) for i, j in members])
                for root, members in sorted(self._dups.items())]


class ExactDeduper:
    """Streaming exact-duplicate removal: the first document with a given normalised text (see `normalize`) is
    kept, later ones are dropped. Stores a 16-byte BLAKE2b digest per distinct text, never the text.

    `add(doc)` -> (is_duplicate, id of the first copy); dropped documents get `doc.metadata["duplicate_of"]`.
    `duplicates` lists (dropped id, kept id) pairs in input order.
    """

    name = "exact_dedup"
    reason = "exact_dedup:duplicate"
    on_drop: Callable[[Document, str], None] | None = None

    def __init__(self, normalize: bool = True):
        self.normalize = normalize                      # False: byte-identical texts only
        self.stats: Counter = Counter(forwarded=0, dropped=0)
        self._first: dict[bytes, str] = {}
        self.duplicates: list[tuple[str, str]] = []

    def digest(self, text: str) -> bytes:
        data = normalized_bytes(text) if self.normalize else text.encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, digest_size=16).digest()

    def add(self, doc: Document) -> tuple[bool, str]:
        key = self.digest(doc.text)
        first = self._first.get(key)
        if first is None:
            self._first[key] = doc.id
            return False, doc.id
        doc.metadata["duplicate_of"] = first
        self.duplicates.append((doc.id, first))
        return True, first

    def __call__(self, docs: Iterable[Document]) -> Iterator[Document]:
        for doc in docs:
            if self.add(doc)[0]:
                self.stats["dropped"] += 1
                self.stats[f"dropped_{self.reason}"] += 1
                if self.on_drop is not None:
                    self.on_drop(doc, self.reason)
            else:
                self.stats["forwarded"] += 1
                yield doc


def plant_near_duplicates(docs: Sequence[Document], n: int, seed: int = 0, min_words: int = 300,
                          edits: int = 3) -> list[tuple[Document, str]]:
    """`n` edited copies of documents with at least `min_words` words, for testing dedup: (copy, id of its
    original). Copies alternate between `edits` words replaced, the lines (or, in a one-line text, the sentences)
    shuffled, and both. Their ids are "<original id>~near<k>"; the caller decides where they go in the stream."""
    rng = np.random.default_rng(seed)
    pool = [d for d in docs if len(d.text.split()) >= min_words]
    if not pool:
        raise ValueError(f"No document has {min_words} words or more to copy.")
    out = []
    for k in range(n):
        src = pool[int(rng.integers(len(pool)))]
        text = src.text
        if k % 3 in (1, 2):                             # shuffle lines (or sentences)
            sep = "\n" if text.count("\n") >= 2 else ". "
            parts = text.split(sep)
            parts = [parts[i] for i in rng.permutation(len(parts))]
            text = sep.join(parts)
        if k % 3 in (0, 2):                             # replace a few words
            toks = text.split(" ")
            for i in rng.choice(len(toks), size=min(edits, len(toks)), replace=False):
                toks[i] = f"edit{int(rng.integers(10**6))}"
            text = " ".join(toks)
        out.append((Document(text=text, id=f"{src.id}~near{k}", source=src.source), src.id))
    return out
