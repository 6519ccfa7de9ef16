"""Documents/s of each quality filter and dedup step on the same stream as bench/minhash_vs_datasketch.py.

Each filter sees every document (not only what earlier filters kept), with its default thresholds; the regex and
range filters get two typical rules each. `chain` is all filters as FilterSteps one after another, then exact and
MinHash dedup, the way a pipeline runs them. One process, one core; the median of `--repeats` runs. A JSON line
goes to stdout, a table to stderr.

    .venv/bin/python bench/filters_throughput.py                     # about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from minhash_vs_datasketch import WEB_SAMPLE, build_corpus, fresh, machine  # noqa: E402

from llmfs.data.dedup import ExactDeduper, MinHashDeduper  # noqa: E402
from llmfs.data.filters import FILTERS, FilterStep, RangeFilter, RangeRule, RegexFilter, RegexRule  # noqa: E402


def make_filters() -> dict:
    filters = {name: cls() for name, cls in FILTERS.items()}
    filters["regex"] = RegexFilter(rules=(RegexRule("needs_the", r"\bthe\b", must_match=True),
                                          RegexRule("boilerplate", r"click here|all rights reserved")))
    filters["range"] = RangeFilter(rules=(RangeRule("words", "words", min=20, max=100_000),
                                          RangeRule("lines", "lines", max=10_000)))
    return filters


def time_filter(f, docs) -> tuple[float, Counter]:
    docs = fresh(docs)                                          # C4 edits texts; language writes metadata
    verdicts: Counter = Counter()
    t = time.perf_counter()
    for d in docs:
        v = f(d)
        verdicts["kept" if v is True else "dropped"] += 1
    return time.perf_counter() - t, verdicts


def time_chain(filters: dict, docs) -> tuple[float, list]:
    steps = [FilterStep(f) for f in filters.values()] + [ExactDeduper(), MinHashDeduper()]
    t = time.perf_counter()
    stream = iter(fresh(docs))
    for step in steps:
        stream = step(stream)
    kept = sum(1 for _ in stream)
    return time.perf_counter() - t, [(s.name, s.stats["forwarded"]) for s in steps] + [("kept", kept)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=3600)
    ap.add_argument("--planted", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=WEB_SAMPLE)
    args = ap.parse_args()

    docs, _ = build_corpus(args.data, args.docs, args.planted)
    filters = make_filters()
    times: dict[str, list[float]] = {name: [] for name in filters}
    times.update(exact_dedup=[], minhash_dedup=[], chain=[])
    drops: dict[str, float] = {}
    funnel: list = []
    for _ in range(args.repeats):
        for name, f in filters.items():
            t, verdicts = time_filter(f, docs)
            times[name].append(t)
            drops[name] = verdicts["dropped"] / len(docs)
        for name, cls in (("exact_dedup", ExactDeduper), ("minhash_dedup", MinHashDeduper)):
            step = cls()
            t0 = time.perf_counter()
            sum(1 for _ in step(iter(fresh(docs))))
            times[name].append(time.perf_counter() - t0)
            drops[name] = step.stats["dropped"] / len(docs)
        t, funnel = time_chain(filters, docs)
        times["chain"].append(t)

    results = {name: {"docs_per_s": round(len(docs) / statistics.median(ts), 1),
                      "drop_fraction": round(drops[name], 4) if name in drops else None}
               for name, ts in times.items()}
    report = {"bench": "filters_throughput", "docs": len(docs), "machine": machine(), "results": results,
              "chain_funnel": funnel}
    m = report["machine"]
    print(f"{len(docs)} docs; {m['nproc']} CPUs, {m['cpu']}, load {m['load_avg_1min']}; one core used",
          file=sys.stderr)
    for name, r in results.items():
        drop = f"  drops {r['drop_fraction']:.1%} (alone)" if r["drop_fraction"] is not None else ""
        print(f"  {name:<18} {r['docs_per_s']:>10,.0f} docs/s{drop}", file=sys.stderr)
    print("  chain funnel: " + " -> ".join(f"{n} {k}" for n, k in funnel), file=sys.stderr)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
