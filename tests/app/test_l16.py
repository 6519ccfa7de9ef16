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
    at.text_input(key="l16.run_name").input("tiny check").run()
    at.button(key="l16.start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
    ids = at.session_state["l16.compare"]
    assert len(ids) == 2
    jobs = state.jobs()
    for run_id in ids:
        assert jobs.wait(run_id, 120) == "succeeded", jobs.get(run_id).status().get("error")
    assert [jobs.get(r).config()["precision"] for r in ids] == ["fp32", "bf16"]
    assert [jobs.get(r).name for r in ids] == ["tiny check · fp32", "tiny check · bf16"]  # the name, and what differs
    assert at.text_input(key="l16.run_name").value == ""  # emptied for the next comparison
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    summary = table_with(at, "speedup").set_index("precision")
    assert list(summary.index) == ["fp32", "bf16"]
    assert summary.loc["fp32", "speedup"] == 1.0 and summary.loc["bf16", "speedup"] > 0
    assert (summary["state"] == "succeeded").all()
    assert "**bf16** ran" in texts(at.markdown)
    assert "speed_spread" in summary.columns  # how much each run's speed varied: what "about the same" is judged by
    assert not at.button(key="l16.start").disabled                          # both done: a new comparison can start


def _row(precision, tps, spread=None, **more):
    return {"run_id": precision, "state": "succeeded", "precision": precision, "tokens_per_s": tps,
            "final_loss": 5.0, "speed_spread": spread, **more}


def _rows(*rows):
    from llmfs.precision import summarize
    spreads = {r["run_id"]: r["speed_spread"] for r in rows}
    return [{**r, "speed_spread": spreads[r["run_id"]]} for r in summarize(list(rows))]


def test_a_speed_difference_within_noise_is_called_about_the_same():
    """fp32 at 5,905 tokens/s and bf16 at 5,880 on a CPU: bf16 is not 'the best at 1.0x', the two ran alike."""
    from app.precision_view import conclusion
    text = " ".join(conclusion(_rows(_row("fp32", 5905, 0.03), _row("bf16", 5880, 0.02)), gpu=False))
    assert "**bf16** ran **about as fast as fp32** (1.00×: a difference under 5%" in text
    assert "the best was" not in text and "every precision ran about as fast as fp32" in text


def test_noise_is_the_runs_own_step_to_step_spread():
    from app.precision_view import conclusion, speed_spread
    steady = [{"step": i, "tokens_per_s": 1000.0 + (i % 2)} for i in range(20)]
    jumpy = [{"step": i, "tokens_per_s": 1000.0 * (1.3 if i % 2 else 0.7)} for i in range(23)]
    assert speed_spread(steady) < 0.01 and abs(speed_spread(jumpy) - 0.3) < 0.01  # ±30 % around 1,000 tokens/s
    assert speed_spread(steady[:5]) is None  # too few steps to say
    # 10 % faster: a real difference for steady runs, noise for runs whose speed varied by ±30 % from step to step
    steady_text = " ".join(conclusion(_rows(_row("fp32", 1000, 0.01), _row("bf16", 1100, 0.01)), gpu=False))
    assert "**bf16** ran **1.10×** as fast" in steady_text and "the best was bf16 at 1.10×" in steady_text
    jumpy_text = " ".join(conclusion(_rows(_row("fp32", 1000, 0.3), _row("bf16", 1100, 0.25)), gpu=False))
    assert "about as fast as fp32" in jumpy_text and "within the ±30% by which their speed varied" in jumpy_text


def test_a_slower_precision_is_not_called_the_best():
    from app.precision_view import conclusion
    text = " ".join(conclusion(_rows(_row("fp32", 1000, 0.02), _row("fp16", 400, 0.02), _row("bf16", 990, 0.02)),
                               gpu=False))
    assert "none of the 16-bit precisions was faster than fp32 (fp16 0.40×, the others about the same)" in text
    assert "the best was" not in text
