"""Our MinHash near-dedup vs datasketch's MinHash + MinHashLSH: documents/s, recall and precision on the same stream.

The stream: the 330 real web pages of web_sample.jsonl, grown to `--docs` documents with variants (line order, and
the words of each line but its last, shuffled: same vocabulary, lengths and line ends, different shingles), plus
`--planted` near-copies (a few words replaced, lines or sentences shuffled, or both; see
`llmfs.data.dedup.plant_near_duplicates`), each placed somewhere after its original. Both sides use the same shingles
(5 words, our normalisation) and 14 bands x 8 rows = 112 permutations, keep the first document and drop any later one
that shares a band bucket with an earlier one.

datasketch is run two ways: its fast path (`update_batch` on all shingles, permutations built once and shared) and
the README way (`MinHash()` per document, `update` per shingle). Runs alternate (ours, theirs, ...) in one process;
the median time is reported. A JSON line goes to stdout, a summary to stderr.

    .venv/bin/python bench/minhash_vs_datasketch.py                  # ~3,600 documents, about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmfs.data.dedup import MinHashConfig, MinHashDeduper, MinHasher, plant_near_duplicates, shingles  # noqa: E402
from llmfs.data.documents import Document  # noqa: E402

WEB_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks" / "web_sample.jsonl"


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
                 platform.processor() or platform.machine())
    import datasketch
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": model, "load_avg_1min": round(os.getloadavg()[0], 2),
            "python": platform.python_version(), "numpy": np.__version__, "datasketch": datasketch.__version__}


def build_corpus(path: Path, n_docs: int, n_planted: int, seed: int = 0) -> tuple[list[Document], dict[str, str]]:
    """(stream of documents, planted copy id -> original id)."""
    rng = np.random.default_rng(seed)
    base = [Document(o["text"], o["id"], o.get("source", "")) for o in map(json.loads, path.read_text().splitlines())]
    base = [d for d in base if len(d.text.split()) >= 20]       # a shuffled 5-word page could repeat by chance
    corpus = list(base)
    r = 0
    while len(corpus) < n_docs - n_planted:
        r += 1
        for d in base:
            lines = [ln.split(" ") for ln in d.text.split("\n")]      # the last word stays: lines keep their end
            lines = [" ".join([ln[i] for i in rng.permutation(len(ln) - 1)] + ln[-1:]) for ln in lines]
            text = "\n".join(lines[i] for i in rng.permutation(len(lines)))
            corpus.append(Document(text, f"{d.id}#v{r}", d.source))
    corpus = corpus[:n_docs - n_planted]
    planted = plant_near_duplicates(corpus, n_planted, seed=seed)
    index = {d.id: i for i, d in enumerate(corpus)}
    slots: dict[int, list[Document]] = {}
    for copy, orig in planted:                                  # each copy goes somewhere after its original
        slots.setdefault(int(rng.integers(index[orig], len(corpus))), []).append(copy)
    stream = [x for i, d in enumerate(corpus) for x in [d, *slots.get(i, [])]]
    return stream, {copy.id: orig for copy, orig in planted}


def fresh(docs: list[Document]) -> list[Document]:
    return [Document(d.text, d.id, d.source) for d in docs]


def run_ours(docs: list[Document], cfg: MinHashConfig) -> dict[str, str]:
    step = MinHashDeduper(cfg)
    kept = {d.id for d in step(iter(docs))}
    return {d.id: d.metadata["duplicate_of"] for d in docs if d.id not in kept}


def run_datasketch(docs: list[Document], cfg: MinHashConfig, naive: bool) -> dict[str, str]:
    from datasketch import MinHash, MinHashLSH
    p = cfg.num_perm
    lsh = MinHashLSH(num_perm=p, params=(cfg.bands, cfg.rows))
    perms = MinHash(num_perm=p, seed=cfg.seed).permutations
    sketches: dict[str, MinHash] = {}                           # insertion order = stream order
    rank: dict[str, int] = {}
    root: dict[str, str] = {}
    dropped = {}
    for d in docs:
        sh = shingles(d.text, cfg.n_gram)
        if not sh:
            continue
        if naive:
            m = MinHash(num_perm=p, seed=cfg.seed)
            for s in sh:
                m.update(s.encode("utf-8"))
        else:
            m = MinHash(num_perm=p, seed=cfg.seed, permutations=perms, scheme="affine32")
            m.update_batch([s.encode("utf-8") for s in sh])
        candidates = lsh.query(m)
        root[d.id] = d.id
        if candidates:                                          # the most similar candidate's cluster, like ours
            best = max(candidates, key=lambda k: (sketches[k].jaccard(m), -rank[k]))
            root[d.id] = root[best]
            dropped[d.id] = root[best]
        rank[d.id] = len(rank)
        lsh.insert(d.id, m)
        sketches[d.id] = m
    return dropped


def score(dropped: dict[str, str], truth: dict[str, str]) -> dict:
    """A drop is right when the dropped document and the one it was matched to come from the same original (the
    original itself, or another planted copy of it that was kept)."""
    def source(x: str) -> str:
        return truth.get(x, x)
    right = sum(1 for x, kept in dropped.items() if source(x) == source(kept))
    found = sum(1 for x in truth if x in dropped and source(x) == source(dropped[x]))
    return {"dropped": len(dropped), "recall": round(found / len(truth), 4),
            "precision": round(right / max(1, len(dropped)), 4)}


def signatures_only(docs: list[Document], cfg: MinHashConfig) -> None:
    hasher = MinHasher(cfg)
    for i in range(0, len(docs), cfg.batch_size):
        hasher.signatures([d.text for d in docs[i:i + cfg.batch_size]])


def timed(fn, *args) -> tuple[float, dict]:
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=3600)
    ap.add_argument("--planted", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-naive", action="store_true", help="skip datasketch's per-shingle update run")
    ap.add_argument("--data", type=Path, default=WEB_SAMPLE)
    args = ap.parse_args()

    cfg = MinHashConfig()
    docs, truth = build_corpus(args.data, args.docs, args.planted)
    n_shingles = sum(len(shingles(d.text)) for d in docs)
    times: dict[str, list[float]] = {"ours": [], "datasketch": [], "ours_signatures": []}
    results = {}
    for _ in range(args.repeats):                               # alternate so machine noise hits both alike
        t, results["ours"] = timed(run_ours, fresh(docs), cfg)
        times["ours"].append(t)
        t, results["datasketch"] = timed(run_datasketch, docs, cfg, False)
        times["datasketch"].append(t)
        t, _ = timed(signatures_only, docs, cfg)
        times["ours_signatures"].append(t)
    if not args.no_naive:
        t, results["datasketch_naive"] = timed(run_datasketch, docs, cfg, True)
        times["datasketch_naive"] = [t]

    report = {"bench": "minhash_vs_datasketch", "docs": len(docs), "planted": len(truth), "shingles": n_shingles,
              "num_perm": cfg.num_perm, "bands": cfg.bands, "rows": cfg.rows, "n_gram": cfg.n_gram,
              "machine": machine(), "results": {}}
    for name, ts in times.items():
        med = statistics.median(ts)
        entry = {"seconds": round(med, 3), "docs_per_s": round(len(docs) / med, 1)}
        if name in results:
            entry.update(score(results[name], truth))
        report["results"][name] = entry
    res = report["results"]
    report["speedup_vs_datasketch"] = round(res["ours"]["docs_per_s"] / res["datasketch"]["docs_per_s"], 2)
    if "datasketch_naive" in res:
        report["speedup_vs_datasketch_naive"] = round(res["ours"]["docs_per_s"] / res["datasketch_naive"]["docs_per_s"],
                                                      2)
    m = report["machine"]
    print(f"{len(docs)} docs ({len(truth)} planted near-copies, {n_shingles:,} shingles), {cfg.num_perm} perms = "
          f"{cfg.bands} bands x {cfg.rows} rows; {m['nproc']} CPUs, {m['cpu']}, load {m['load_avg_1min']}",
          file=sys.stderr)
    for name, r in res.items():
        quality = f"  recall {r['recall']:.3f}  precision {r['precision']:.3f}" if "recall" in r else \
            "  (signatures only, no LSH)"
        print(f"  {name:<18} {r['docs_per_s']:>9,.0f} docs/s{quality}", file=sys.stderr)
    print(f"  ours / datasketch: {report['speedup_vs_datasketch']:.1f}x", file=sys.stderr)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
