"""The L13 pipeline end to end: funnel counts, drop reasons, dedup, mixing, shards holding texts unchanged, bad
records counted with their location, and the CLI contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmfs.config import ConfigError
from llmfs.data.pipeline import PipelineConfig, run_pipeline
from llmfs.data.readers import read_documents

ROOT = Path(__file__).resolve().parents[2]
GOOD = ("The quick brown fox jumps over the lazy dog near the river bank. It was a bright and sunny day, and the "
        "children were playing in the park with their friends. Everyone seemed to be happy with the weather that "
        "afternoon. The teacher said that we should have more days like this one. We all agreed with her and went "
        "back to class with smiles on our faces.")


def _write_jsonl(path: Path, texts: list[str], broken_line: int | None = None) -> Path:
    with open(path, "w") as f:
        for i, t in enumerate(texts, 1):
            f.write("{not json\n" if i == broken_line else json.dumps({"id": f"d{i}", "text": t}) + "\n")
    return path


def test_funnel_drops_dedup_and_shards(tmp_path):
    texts = [GOOD, "too short", GOOD, GOOD.replace("river", "lake") + " Extra words here.", "{ bad } " + GOOD]
    src = _write_jsonl(tmp_path / "in.jsonl", texts)
    cfg = PipelineConfig(inputs=(str(src),), filters=("length", "c4"), thresholds={"length": {"min_words": 20}},
                         dedup="exact")
    records = []
    res = run_pipeline(cfg, tmp_path / "out", emit=lambda step, **kw: records.append(kw))
    assert res["documents_in"] == 5
    assert res["drops"] == {"length:too_short": 1, "c4:curly_bracket": 1, "exact_dedup:duplicate": 1}
    assert [r["documents"] for r in res["funnel"]] == [5, 4, 3, 2]  # read -> length -> c4 -> dedup
    assert res["documents_out"] == 2 and res["duplicates"] == 1
    assert res["samples"]["length:too_short"][0]["text"] == "too short"
    assert res["samples"]["exact_dedup:duplicate"][0]["duplicate_of"] == "d1"
    kept = list(read_documents(tmp_path / "out"))
    assert [d.id for d in kept] == ["d1", "d4"]
    assert kept[0].text == GOOD  # written unchanged (c4 keeps every line of this clean text)
    assert records and records[-1]["documents_out"] == 2


def test_minhash_finds_near_duplicate_cluster(tmp_path):
    near = GOOD.replace("sunny", "warm")
    src = _write_jsonl(tmp_path / "in.jsonl", [GOOD, near, "A completely different text about compilers " * 12])
    res = run_pipeline(PipelineConfig(inputs=(str(src),), dedup="minhash", shingle_size=3, bands=20, rows=3),
                       tmp_path / "out")
    assert res["duplicates"] == 1
    assert res["clusters"][0]["kept"] == "d1" and res["clusters"][0]["duplicates"][0]["id"] == "d2"


def test_bad_records_counted_with_location_not_fatal(tmp_path):
    src = _write_jsonl(tmp_path / "in.jsonl", [GOOD, GOOD + " two", GOOD + " three"], broken_line=2)
    res = run_pipeline(PipelineConfig(inputs=(str(src),)), tmp_path / "out")
    assert res["documents_in"] == 2 and res["read_error_count"] == 1
    err = res["read_errors"][0]
    assert err["location"] == "line 2" and err["source"].endswith("in.jsonl")
    with pytest.raises(ValueError, match="line 2"):
        run_pipeline(PipelineConfig(inputs=(str(src),), errors="raise"), tmp_path / "out2")


def test_mixing_reports_realised_shares(tmp_path):
    a = _write_jsonl(tmp_path / "a.jsonl", [f"{GOOD} a{i}" for i in range(300)])
    b = _write_jsonl(tmp_path / "b.jsonl", [f"{GOOD} b{i}" for i in range(300)])
    res = run_pipeline(PipelineConfig(inputs=(str(a), str(b)), weights=(0.75, 0.25), limit=200, seed=1,
                                      mix_until="first_exhausted"), None)
    share_a = res["mix"][f"share_{a}"]
    assert res["documents_in"] == 200 and abs(share_a - 0.75) < 0.08


def test_stop_keeps_shards_written(tmp_path):
    src = _write_jsonl(tmp_path / "in.jsonl", [f"{GOOD} {i}" for i in range(50)])
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] >= 10

    res = run_pipeline(PipelineConfig(inputs=(str(src),), shard_max_docs=4), tmp_path / "out", should_stop=stop)
    assert res["stopped"] and res["documents_out"] == 10
    assert sum(1 for _ in read_documents(tmp_path / "out")) == 10


@pytest.mark.parametrize("kw,field", [({"weights": (1.0,)}, "weights"), ({"filters": ("nope",)}, "filters"),
                                      ({"inputs": ()}, "inputs"), ({"bands": 0}, "bands")])
def test_bad_config_names_the_field(kw, field):
    base = {"inputs": ("a", "b")} if field == "weights" else {}
    with pytest.raises(ConfigError) as err:
        PipelineConfig(**{**base, **kw})
    assert err.value.field == field


def test_cli_data_json_contract(tmp_path, llmfs_home):
    a = _write_jsonl(tmp_path / "a.jsonl", [GOOD, GOOD, "short"])
    b = _write_jsonl(tmp_path / "b.jsonl", [GOOD + " b"])
    out = tmp_path / "shards"
    env = {**os.environ, "LLMFS_HOME": str(llmfs_home)}
    p = subprocess.run([sys.executable, "-m", "llmfs", "data", "--input", str(a), "--input", str(b), "--weights",
                        "0.7,0.3", "--filters", "length", "--dedup", "exact", "--out", str(out), "--json"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["documents_in"] == 4 and res["documents_out"] == 2 and res["duplicates"] == 1
    assert res["drops"]["length:too_short"] == 1 and res["documents_per_s"] > 0
    assert res["shards"] == [str(out / "shard-000000.tar")]
    texts = sorted(d.text for d in read_documents(out))
    assert texts == sorted([GOOD, GOOD + " b"])


def test_resume_after_stop_loses_nothing_and_writes_nothing_twice(tmp_path):
    texts = [f"{GOOD} number {i}." for i in range(40)] + [f"{GOOD} number 3."]  # the last duplicates d4
    src = _write_jsonl(tmp_path / "in.jsonl", texts)
    cfg = PipelineConfig(inputs=(str(src),), dedup="exact", shard_max_docs=5)
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] >= 12

    first = run_pipeline(cfg, tmp_path / "out", should_stop=stop)
    assert first["stopped"] and first["documents_out"] == 12
    resumed = run_pipeline(cfg, tmp_path / "out", resume=True)
    assert resumed["resumed_documents"] == 12 and not resumed["stopped"]
    ids = [d.id for d in read_documents(tmp_path / "out")]
    assert sorted(ids) == sorted(f"d{i}" for i in range(1, 41))  # every document once; d41 (a duplicate) dropped
    assert resumed["duplicates"] == 1 and resumed["shards_written"] == len(list((tmp_path / "out").glob("*.tar")))
