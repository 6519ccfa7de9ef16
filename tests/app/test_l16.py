"""The L16 page: it renders on an empty home with the format table, the explorer and the memory estimate; the
explorer flags underflow and overflow and names a bad token; the loss-scaling demonstration on llmfs-tiny shows
fp16 losing fewer gradient entries with scaling than without; a tiny fp32-vs-bf16 comparison started from the page
runs both and fills the summary table."""

from __future__ import annotations

import json
from pathlib import Path

import apphelpers  # tests/app is on sys.path
import torch
from streamlit.testing.v1 import AppTest

from app import state

REPO = Path(__file__).resolve().parents[2]
PAGE = "pages/l16_precision.py"


def open_page() -> AppTest:
    return apphelpers.open_page(PAGE, timeout=60)


texts = apphelpers.texts


def table_with(at: AppTest, column: str):
    """The (first) rendered dataframe that has `column`."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def percent(metric_value: str) -> float:
    return float(metric_value.rstrip("%"))


def test_page_renders_on_an_empty_home(llmfs_home):
    at = open_page()
    assert at.title[0].value.startswith("L16")
    assert [h.value for h in at.subheader] == ["1 · Number formats", "2 · Why fp16 needs loss scaling",
                                               "3 · Compare precisions on your model", "Runs and results"]
    assert at.multiselect(key="l16.modes").value == ["fp32", "fp16", "bf16"]
    assert at.number_input(key="l16.steps").value == 60
    formats = table_with(at, "gap after 1.0")
    assert formats["format"].tolist() == ["fp32", "fp16", "bf16"]
    assert formats.set_index("format").loc["fp16", "largest"] == "65,504"
    bits, estimate = [json.loads(c.proto.spec)["data"] for c in at.get("plotly_chart")]
    assert [t["x"] for t in bits] == [[1, 1, 1], [8, 5, 8], [23, 10, 7]]       # sign, exponent, mantissa
    assert [t["name"] for t in estimate] == ["weights", "gradients", "optimizer states", "activations"]
    assert estimate[0]["y"] == ["fp32", "fp16", "bf16", "bf16-pure"]
    if not torch.cuda.is_available():
        assert "fp16 on a CPU is emulated" in texts(at.info)
        assert "no GPU" in texts(at.caption)
    assert "No comparison yet" in texts(at.info)
    assert at.button(key="l16.demo").disabled                                  # llmfs-tiny is not built here
    assert not at.button(key="l16.start").disabled


def test_explorer_flags_underflow_and_overflow_and_names_a_bad_token(llmfs_home):
    at = open_page()
    table = table_with(at, "fp16 status").set_index("value")
    assert table.loc["1e-08", "fp16 status"] == "underflow to 0"
    assert table.loc["70,000", "fp16 status"] == "overflow to inf"
    assert table.loc["1e-08", "bf16 status"].startswith("rounded")            # bf16 has fp32's range
    assert table.loc["70,000", "bf16"] == "70144"
    assert "fp16 lost 1e-08 (underflow to 0), 70,000 (overflow to inf)" in texts(at.caption)
    at.text_input(key="l16.values").input("1, 0.5x, 3").run()
    assert not at.exception
    assert "“0.5x” is not a number" in texts(at.error)


def test_loss_scaling_demo_keeps_gradients_fp16_would_lose(home_with_default):
    at = open_page()
    at.button(key="l16.demo").click().run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    without, with_ = percent(metrics["Lost without loss scaling"]), percent(metrics["Lost with loss scaling"])
    assert without > with_
    assert metrics["Loss scale used"].startswith("2^")
    demo = table_with(at, "lost to zero").set_index("variant")["lost to zero"]
    assert demo["fp32"] == 0
    assert demo["fp16, no loss scaling"] > demo["fp16 with loss scaling"]


def test_fp32_vs_bf16_comparison_from_the_page(home_with_default):
    at = open_page()
    at.multiselect(key="l16.modes").set_value(["fp32", "bf16"]).run()
    at.number_input(key="l16.steps").set_value(3).run()
    at.number_input(key="l16.batch_size").set_value(2).run()
    at.number_input(key="l16.seq_len").set_value(32).run()
    at.button(key="l16.start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
    ids = at.session_state["l16.compare"]
    assert len(ids) == 2
    jobs = state.jobs()
    for run_id in ids:
        assert jobs.wait(run_id, 120) == "succeeded", jobs.get(run_id).status().get("error")
    assert [jobs.get(r).config()["precision"] for r in ids] == ["fp32", "bf16"]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    summary = table_with(at, "speedup").set_index("precision")
    assert list(summary.index) == ["fp32", "bf16"]
    assert summary.loc["fp32", "speedup"] == 1.0 and summary.loc["bf16", "speedup"] > 0
    assert (summary["state"] == "succeeded").all()
    assert "**bf16** ran" in texts(at.markdown)
    assert not at.button(key="l16.start").disabled                          # both done: a new comparison can start
