"""The L13 page: it renders, it shows a finished pipeline run (seeded, no pipeline), it runs a real small pipeline
from its form, and its pure helpers (upload names, the LSH S-curve) are right."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from types import SimpleNamespace

import apphelpers  # tests/app is on sys.path
import pytest
from streamlit.testing.v1 import AppTest

from app import charts, pipeline_view
from llmfs.data.pipeline import PipelineConfig
from llmfs.runs import Run, new_run_id

REPO = Path(__file__).resolve().parents[2]
PAGE = "pages/l13_data.py"


def open_page() -> AppTest:
    return apphelpers.open_page(PAGE, timeout=60)


texts = apphelpers.texts


def chart_types(at: AppTest) -> list[str]:
    """The trace types of every plotly chart on the page, in order ("scatter", "funnel", "bar" ...)."""
    types = []
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        types.append(",".join(sorted({t.get("type", "scatter") for t in spec["data"]})) or "empty")
    return types


KEPT, DUP = "web:7", "web:42"
RESULT = {
    "documents_in": 10, "documents_out": 6, "bytes_in": 50_000, "bytes_out": 30_000, "elapsed_s": 1.5,
    "documents_per_s": 6.7, "drops": {"gopher_quality:word_count": 3, "minhash_dedup:near_duplicate": 1},
    "funnel": [{"step": "read", "documents": 10, "dropped": 0},
               {"step": "gopher_quality", "documents": 7, "dropped": 3},
               {"step": "minhash_dedup", "documents": 6, "dropped": 1}],
    "samples": {"gopher_quality:word_count": [{"id": "web:3", "source": "web.jsonl", "text": "Click here. Menu.",
                                               "duplicate_of": None, "jaccard_estimate": None}],
                "minhash_dedup:near_duplicate": [{"id": DUP, "source": "web.jsonl", "text": "The same story, again.",
                                                  "duplicate_of": KEPT, "jaccard_estimate": 0.83}]},
    "clusters": [{"kept": KEPT, "duplicates": [{"id": DUP, "jaccard": 0.83}]}],
    "read_errors": [{"source": "web.jsonl", "location": "line 5", "reason": "not valid JSON"}],
    "read_error_count": 1, "shards": [], "shards_written": 0, "duplicates": 1, "stopped": False,
    "mix": {"total": 10, "exhausted": ["a.jsonl"], "count_a.jsonl": 4, "share_a.jsonl": 0.4, "target_a.jsonl": 0.5,
            "count_web.jsonl": 6, "share_web.jsonl": 0.6, "target_web.jsonl": 0.5},
}


def seed_pipeline_run(home: Path, result: dict = RESULT) -> str:
    """A finished pipeline run folder as the job leaves it (two pipeline records, telemetry, a result), with one
    shard written by the real shard writer."""
    from llmfs.data.documents import Document
    from llmfs.data.shards import write_documents

    cfg = PipelineConfig(inputs=("a.jsonl", "web.jsonl"), weights=(1.0, 1.0), filters=("gopher_quality",),
                         dedup="minhash")
    run = Run.create(home / "runs" / new_run_id("pipeline"), "pipeline", dataclasses.asdict(cfg), owner="l13")
    shards = write_documents([Document(id=KEPT, text="The same story, once.", source="web.jsonl")] +
                             [Document(id=f"web:{i}", text=f"Kept text {i}.", source="web.jsonl") for i in range(5)],
                             run.path / "shards")
    result = {**result, "shards": [str(s.path) for s in shards], "shards_written": len(shards)}
    t0 = time.time()
    for i, (done, kept) in enumerate([(5, 3), (10, 6)]):
        run.append_metrics(done, kind="telemetry", process_rss_bytes=300e6 + i * 1e6, system_total_bytes=16e9)
        run.append_metrics(done, kind="pipeline", documents_in=done, documents_out=kept, bytes_in=done * 5000,
                           documents_per_s=done / (0.75 * (i + 1)), bytes_per_s=5000 * done / (0.75 * (i + 1)),
                           funnel=result["funnel"], drops=result["drops"], read_errors=1, mix=result["mix"],
                           elapsed_s=0.75 * (i + 1))
    run.update_status(started=t0)
    run.mark_finished("succeeded", result=result)
    return run.run_id


def test_page_renders_every_stage_before_any_run(llmfs_home):
    at = open_page()
    assert at.title[0].value.startswith("L13")
    assert [h.value for h in at.subheader][:4] == ["1 · Sources and mixing", "2 · Quality filters",
                                                   "3 · Deduplication", "4 · Shards, then packing"]
    assert at.checkbox(key="l13.builtin").value
    assert at.multiselect(key="l13.filters").value == ["gopher_quality", "gopher_repetition", "c4"]
    assert at.number_input(key="l13.c4.min_sentences").value == 5     # a filter's thresholds, from its dataclass
    assert at.number_input(key="l13.minhash.bands").value == 14
    assert chart_types(at) == ["scatter"]                               # the S-curve
    start = at.button(key="l13.start")
    assert start.label == "Run the pipeline" and not start.disabled
    assert "No run yet" in texts(at.info)


def test_refusals_name_the_setting_and_keep_start_off(llmfs_home):
    at = open_page()
    at.checkbox(key="l13.builtin").uncheck().run()
    assert "at least one source" in texts(at.caption) and at.button(key="l13.start").disabled
    assert not at.warning and not at.error             # nothing was done wrong: Start just waits for a source
    at.checkbox(key="l13.builtin").check().run()
    at.number_input(key="l13.gopher_quality.max_bullet_lines").set_value(1.5).run()
    assert "Max bullet lines" in texts(at.error) and at.button(key="l13.start").disabled
    at.number_input(key="l13.gopher_quality.max_bullet_lines").set_value(0.9).run()
    at.text_input(key="l13.path").input("/tmp/x.jsonl").run()
    at.number_input(key="l13.w.builtin").set_value(0.0).run()
    at.number_input(key="l13.w.path").set_value(0.0).run()
    assert "Mixing weights" in texts(at.error) and at.button(key="l13.start").disabled


def test_missing_file_is_refused_before_queueing(llmfs_home):
    at = open_page()
    at.text_input(key="l13.path").input("/no/such/file.jsonl").run()
    at.button(key="l13.start").click().run()
    assert "No data at /no/such/file.jsonl" in texts(at.error)
    assert not any((llmfs_home / "runs").glob("*"))


def test_finished_run_shows_funnel_drops_samples_and_clusters(llmfs_home):
    run_id = seed_pipeline_run(llmfs_home)
    at = open_page()
    assert chart_types(at) == ["scatter", "funnel", "bar", "scatter", "scatter", "bar"]  # S-curve, funnel, drops,
    metrics = {m.label: m.value for m in at.metric}                                      # speed, memory, mix
    assert metrics["Documents read"] == "10" and metrics["Kept"] == "6" and metrics["Unreadable records"] == "1"
    funnel = json.loads(at.get("plotly_chart")[1].proto.spec)["data"][0]
    assert funnel["x"] == [10, 7, 6] and funnel["y"] == ["Read", "Gopher quality", "Near-duplicate removal"]
    assert "a.jsonl** ran out after 4 documents" in texts(at.caption)

    samples = at.selectbox(key=f"samples:{run_id}")
    assert samples.value == "gopher_quality:word_count"       # the reason that dropped most comes first
    assert "Click here. Menu." in texts(at.text)
    samples.set_value("minhash_dedup:near_duplicate").run()
    assert f"copy of `{KEPT}`" in texts(at.caption) and "0.83" in texts(at.caption)

    shown = texts(at.text)                                    # the near-duplicate tab: kept next to dropped
    assert "The same story, again." in shown and "The same story, once." in shown  # the kept one from the shards
    assert f"Kept: `{KEPT}`" in texts(at.caption) and "similarity ≈ 0.83" in texts(at.caption)
    assert [t.label for t in at.tabs] == ["Dropped documents (4)", "Near-duplicates (1)", "Unreadable records (1)",
                                          "Shards (1)"]
    assert "line 5" in at.dataframe[1].value["location"].tolist()
    assert at.dataframe[2].value["documents"].tolist() == [6]
    assert str(llmfs_home / "runs" / run_id / "shards") in texts(at.code)
    assert "Use this data for training" in texts(at.markdown)
    assert not any(b.label == "Stop" for b in at.button)


def test_run_from_the_page_writes_shards_with_changed_thresholds_only(llmfs_home, tmp_path):
    data = tmp_path / "web.jsonl"
    story = "The river rose in the night and the town woke to water in the streets. " * 8
    lines = [{"text": story}, {"text": story}, {"text": "too short"}]
    data.write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n")
    at = open_page()
    at.checkbox(key="l13.builtin").uncheck().run()
    at.text_input(key="l13.path").input(str(data)).run()
    at.multiselect(key="l13.filters").set_value(["length"]).run()
    at.number_input(key="l13.length.min_chars").set_value(50).run()
    at.radio(key="l13.dedup").set_value("exact").run()
    at.button(key="l13.start").click().run()
    assert not at.exception and not at.error
    (run,) = [Run(p) for p in (llmfs_home / "runs").iterdir()]
    config = run.config()
    assert config["thresholds"] == {"length": {"min_chars": 50}} and config["dedup"] == "exact"
    deadline = time.time() + 60
    while run.state not in ("succeeded", "failed") and time.time() < deadline:
        time.sleep(0.2)
    assert run.state == "succeeded", run.status().get("error")
    at.run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Kept"] == "1"
    assert run.status()["result"]["drops"] == {"length:too_short": 1, "exact_dedup:duplicate": 1}
    assert [o["run_id"] for o in pipeline_view.pipeline_outputs()] == [run.run_id]
    assert pipeline_view.pipeline_outputs()[0]["path"] == str(run.path / "shards")


def test_hub_dataset_offline_fails_fast_with_the_reason(llmfs_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = open_page()
    at.checkbox(key="l13.builtin").uncheck().run()
    at.text_input(key="l13.hub").input("wikitext:wikitext-2-raw-v1").run()
    at.button(key="l13.start").click().run()
    (run,) = [Run(p) for p in (llmfs_home / "runs").iterdir()]
    assert run.config()["inputs"] == ["hf:wikitext:wikitext-2-raw-v1"]
    deadline = time.time() + 30
    while run.state not in ("succeeded", "failed") and time.time() < deadline:
        time.sleep(0.2)
    assert run.state == "failed"
    at.run()
    assert "Cannot stream the dataset 'wikitext'" in texts(at.error)


@pytest.mark.parametrize("name", ["../../etc/passwd", "../../etc/passwd.txt", "..\\secret.jsonl", "/etc/x.txt",
                                  "notes.exe", ".jsonl", "..", "a.jsonl\0.txt"])
def test_upload_names_that_are_paths_or_of_other_types_are_refused(name):
    with pytest.raises(ValueError):
        pipeline_view.safe_upload_name(name)


@pytest.mark.parametrize("name, safe", [("web sample (1).jsonl", "web_sample_1.jsonl"), (".hidden.txt", "hidden.txt"),
                                        ("Données.parquet", "Donnes.parquet"), ("a-b_c.TXT", "a-b_c.TXT")])
def test_upload_names_are_sanitised(name, safe):
    assert pipeline_view.safe_upload_name(name) == safe


def test_uploads_are_saved_under_the_uploads_folder_with_a_size_limit(llmfs_home):
    def upload(name, data):
        return SimpleNamespace(name=name, size=len(data), getbuffer=lambda: memoryview(data))

    path = pipeline_view.save_upload(upload("my web.jsonl", b'{"text": "hi"}\n'))
    assert path == llmfs_home / "uploads" / "my_web.jsonl" and path.read_bytes() == b'{"text": "hi"}\n'
    assert pipeline_view.upload_limit_mb() == 200  # no workshop limits file
    big = SimpleNamespace(name="big.txt", size=250_000_000, getbuffer=None)
    with pytest.raises(ValueError, match="200 MB"):
        pipeline_view.save_upload(big)
    assert sorted(p.name for p in (llmfs_home / "uploads").iterdir()) == ["my_web.jsonl"]


def test_s_curve_is_the_lsh_candidate_probability():
    # FineWeb's 14 bands x 8 rows at Jaccard 0.7 / 0.8 / 0.9: 0.56, 0.92, 0.9996 (llmfs.data.dedup's docstring).
    # Computed by hand: 0.7^8 = 0.0576480, 1 - (1 - 0.0576480)^14 = 0.56450.
    assert charts.candidate_probability(0.7, 14, 8) == pytest.approx(0.5645, abs=1e-4)
    assert charts.candidate_probability(0.8, 14, 8) == pytest.approx(0.9235, abs=1e-4)
    assert charts.candidate_probability(0.9, 14, 8) == pytest.approx(0.9996, abs=1e-4)
    assert charts.candidate_probability(0.3, 1, 1) == pytest.approx(0.3)          # one band of one row: P = s
    assert charts.candidate_probability(0.5, 2, 1) == pytest.approx(0.75)         # 1 - (1 - 0.5)^2
    assert charts.lsh_threshold(14, 8) == pytest.approx(0.719, abs=1e-3)          # (1/14)^(1/8)
    fig = charts.s_curve_figure(20, 5)
    assert [t.name for t in fig.data] == ["FineWeb (14 x 8)", "20 bands x 5 rows"]
    ys = fig.data[1].y
    assert ys[0] == 0 and ys[-1] == 1 and all(a <= b for a, b in zip(ys, ys[1:]))


def test_drop_reasons_read_as_words():
    assert charts.reason_name("gopher_repetition:dup_5gram_frac") == "Gopher repetition: repeated 5-word phrases"
    assert charts.reason_name("minhash_dedup:near_duplicate") == "Near-copy of a kept document"
    assert charts.reason_help("gopher_quality:word_count").startswith("Too few words")


def test_reading_speed_is_per_gap_of_at_least_a_second():
    records = [{"kind": "pipeline", "elapsed_s": t, "documents_in": n, "bytes_in": n * 1000}
               for t, n in [(0.5, 100), (1.0, 250), (2.0, 450), (2.1, 470)]]
    rates = charts.pipeline_rates(records)
    assert rates["t"] == [1.0, 2.0]                 # 0.5 s is too soon; 2.1 s is 0.1 s after the last point used
    assert rates["docs"] == [250.0, 200.0] and rates["mb"] == [0.25, 0.2]


def test_mix_shares_read_the_flat_mix_record():
    assert charts.mix_shares(RESULT["mix"]) == [
        {"source": "a.jsonl", "count": 4, "share": 0.4, "target": 0.5},
        {"source": "web.jsonl", "count": 6, "share": 0.6, "target": 0.5}]
    assert charts.mix_shares(None) == []


def test_a_jsonl_with_bad_lines_is_offered_without_them(llmfs_home):
    """2 unreadable lines of 5: refused as it is, with the lines named; ticked, the other 3 are saved and read."""
    at = open_page()
    data = b'{"text": "one"}\n{"text": broken}\n{"text": "three"}\n{"title": "no text"}\n{"text": "five"}\n'
    at.file_uploader(key="l13.uploads").set_value([("notes.jsonl", data, "application/json")]).run()
    assert "notes.jsonl was refused (2 problems" in texts(at.error)
    skip = next(c for c in at.checkbox if c.label.startswith("Skip"))
    assert skip.label == "Skip these 2 lines: 2 and 4, and use the other 3"
    assert not (llmfs_home / "uploads" / "notes.jsonl").exists()
    skip.check().run()
    assert not at.error and "Saved without its 2 unreadable lines: 2 and 4." in texts(at.caption)
    saved = llmfs_home / "uploads" / "notes.jsonl"
    assert saved.read_bytes() == b'{"text": "one"}\n{"text": "three"}\n{"text": "five"}\n'
    assert "notes.jsonl" in texts(at.markdown)                 # a source row of its own, with a weight
    assert "3 documents, 12 characters" in texts(at.caption)
    assert not at.button(key="l13.start").disabled


def test_a_run_too_quick_to_chart_says_so(llmfs_home):
    """A finished run with one reading: no empty axis "waiting" for readings that will never come."""
    run = Run.create(llmfs_home / "runs" / new_run_id("pipeline"), "pipeline",
                     dataclasses.asdict(PipelineConfig(inputs=("a.jsonl",))), owner="l13")
    run.append_metrics(0, kind="telemetry", process_rss_bytes=300e6, system_total_bytes=16e9)
    quick = {**RESULT, "elapsed_s": 0.3, "mix": {}, "shards": [], "shards_written": 0}
    run.append_metrics(10, kind="pipeline", documents_in=10, documents_out=6, bytes_in=50_000, elapsed_s=0.3,
                       funnel=quick["funnel"], drops=quick["drops"], read_errors=0, mix={})
    run.mark_finished("succeeded", result=quick)
    at = open_page()
    shown = texts(at.caption)
    assert "Finished in 0.3 s: too quick to chart the reading speed. On average 33 documents and 0.17 MB per " \
           "second." in shown
    assert "Finished in 0.3 s: too quick to chart memory over time. One reading: 300 MB." in shown
    assert "Waiting for" not in json.dumps([json.loads(c.proto.spec) for c in at.get("plotly_chart")])
    assert chart_types(at) == ["scatter", "funnel", "bar"]   # the S-curve, the funnel, the drops: no empty axes
    assert "took 0.3 s" in shown


def test_uploads_are_kept_when_the_person_leaves_the_page_and_comes_back(llmfs_home):
    at = open_page()
    at.file_uploader(key="l13.uploads").set_value([("notes.jsonl", b'{"text": "one two"}\n', "application/json")]).run()
    at.checkbox(key="l13.builtin").uncheck().run()
    at.switch_page("pages/runs.py").run()
    at.switch_page("pages/l13_data.py").run()
    assert not at.exception
    assert not at.checkbox(key="l13.builtin").value                      # an unchecked source stays unchecked
    assert "Using the 1 file you uploaded earlier in this session" in texts(at.caption)
    assert "notes.jsonl" in texts(at.markdown) and not at.button(key="l13.start").disabled
    at.button(key="l13.forget_uploads").click().run()
    assert "notes.jsonl" not in texts(at.markdown)
