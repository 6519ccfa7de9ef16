"""The class views of the instructor page (AppTest): several participants' run folders made directly (no training,
no evaluation), then the leaderboard, everyone's curves and the class presets as the instructor sees them."""

from __future__ import annotations

import json
import time

import pytest
from apphelpers import REPO, texts  # tests/app is on sys.path
from streamlit.testing.v1 import AppTest

from app import instructor_view
from llmfs import classroom
from llmfs.runs import FAILED, SUCCEEDED, Run, new_run_id

PASSWORD = "class-views-test"

pytestmark = pytest.mark.usefixtures("router_on_every_run")  # see tests/app/conftest.py


def evaluation(home, user, score, *, n=100, stderr=0.03, state=SUCCEEDED, name="") -> str:
    run = Run.create(home / "runs" / new_run_id("eval"), "eval",
                     {"task": "mmlu", "model": "llmfs-tiny", "adapter": "", "num_fewshot": 0, "data": ""},
                     owner="l14", user=user)
    if name:
        run.rename(name)
    if state == SUCCEEDED:
        run.mark_finished(state, result={"task": "mmlu", "n_items": n,
                                         "metrics": {"acc": score, "acc_stderr": stderr}})
    else:
        run.mark_finished(state, error="The model could not be loaded.")
    time.sleep(0.002)
    return run.run_id


def training(home, user, owner="l15", losses=(3.0, 2.5, 2.0), held_out=2.6) -> str:
    run = Run.create(home / "runs" / new_run_id("train"), "train", {"steps": len(losses)}, owner=owner, user=user)
    for step, loss in enumerate(losses, start=1):
        run.append_metrics(step, kind="train", loss=loss)
    run.append_metrics(len(losses), kind="eval", eval_loss=held_out)
    run.mark_finished(SUCCEEDED, result={})
    time.sleep(0.002)
    return run.run_id


@pytest.fixture
def instructor(llmfs_home, monkeypatch):
    monkeypatch.setenv("LLMFS_INSTRUCTOR_PASSWORD", PASSWORD)
    monkeypatch.setattr(instructor_view, "WRONG_PASSWORD_DELAY_S", 0.0)
    return llmfs_home


def unlocked() -> AppTest:
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/instructor.py").run()
    at.text_input(key="instructor.password").input(PASSWORD)
    next(b for b in at.button if b.label == "Unlock").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts_of(at: AppTest, kind: str) -> list[dict]:
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return [s for s in specs if s["data"] and s["data"][0].get("type") == kind]


def frame_with(at: AppTest, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_leaderboard_shows_each_participant_once_with_their_best(instructor):
    evaluation(instructor, "Ana", 0.30)
    best = evaluation(instructor, "Ana", 0.45, stderr=0.04, name="<b>rank 8</b> *run*")
    bo = evaluation(instructor, "Bo", 0.40)
    evaluation(instructor, "Bo", 0.99, state=FAILED)
    evaluation(instructor, "Cy_d", 0.35, n=20)
    at = unlocked()

    board = frame_with(at, "participant")
    assert list(board["participant"]) == ["Ana", "Bo", "Cy_d"]            # once each, best first
    assert list(board["rank"]) == [1, 2, 3]
    ana = board.iloc[0]
    assert ana["score"] == "0.450 ± 0.040" and ana["run"] == f"runs?run={best}"
    assert ana["run name"] == "<b>rank 8</b> *run*" and ana["evaluations"] == 2   # text, as written
    assert board.iloc[1]["run"] == f"runs?run={bo}" and board.iloc[1]["score"] == "0.400 ± 0.030"
    assert list(board["questions"]) == [100, 100, 20]

    (bars,) = charts_of(at, "bar")
    assert bars["data"][0]["x"] == ["Ana", "Bo", "Cy_d"] and bars["data"][0]["y"] == [0.45, 0.40, 0.35]
    assert bars["data"][0]["error_y"]["array"] == [0.04, 0.03, 0.03]
    assert bars["layout"]["yaxis"]["title"]["text"] == "accuracy<br>(higher is better)"
    assert bars["layout"]["title"]["text"] == "MMLU: each participant's best"
    assert "numbers of questions (20, 100)" in texts(at.warning)
    assert "Not directly comparable" in texts(at.warning)


def test_everyones_curves_one_line_per_participant(instructor):
    training(instructor, "Ana", losses=(9.0, 8.0))
    training(instructor, "Ana", losses=(3.0, 2.0, 1.5), held_out=2.4)
    training(instructor, "Bo", losses=(4.0, 3.5))
    training(instructor, "<i>Cy</i>", owner="l12")
    at = unlocked()

    assert at.selectbox(key="instructor.class.lesson").value == "l15"   # most participants first
    (lines,) = charts_of(at, "scatter")
    assert [t["name"] for t in lines["data"]] == ["Ana", "Bo"]          # names in the legend, one line each
    assert lines["data"][0]["y"] == [3.0, 2.0, 1.5]                       # Ana's newest run
    assert lines["layout"]["yaxis"]["title"]["text"] == "Training loss (lower is better)"
    assert "One line per participant" in texts(at.caption)

    at.segmented_control(key="instructor.class.curve_metric").set_value("eval_loss").run()
    (lines,) = charts_of(at, "scatter")
    assert [(t["name"], t["y"]) for t in lines["data"]] == [("Ana", [2.4]), ("Bo", [2.6])]
    assert "Held-out loss" in lines["layout"]["yaxis"]["title"]["text"]

    at.toggle(key="instructor.class.every_run").set_value(True).run()
    (lines,) = charts_of(at, "scatter")
    assert len(lines["data"]) == 3

    at.selectbox(key="instructor.class.lesson").set_value("l12").run()
    (lines,) = charts_of(at, "scatter")
    assert lines["data"][0]["name"].startswith("&lt;i&gt;Cy&lt;/i&gt;")  # plotly shows the tags as typed
    assert not at.exception


def test_class_presets_listed_and_removed(instructor):
    classroom.save_preset("l12", "TrainConfig", {"steps": 50, "lora_targets": ["qkv"]}, by="Prof_X")
    classroom.save_preset("l15", "TrainConfig", {"lora_rank": 8})
    at = unlocked()

    shown = texts(at.markdown)
    assert "Make these the class preset" in shown
    assert "L12 Pretrained weights" in shown and "L15 LoRA & QLoRA" in shown
    assert r"Prof\_X" in shown                                           # a name, not Markdown
    settings = [d.value for d in at.dataframe if list(d.value.columns) == ["setting", "value"]]
    assert [dict(zip(s["setting"], s["value"])) for s in settings] == [{"steps": "50", "lora_targets": '["qkv"]'},
                                                                       {"lora_rank": "8"}]

    at.button(key="instructor.class.remove:l12").click().run()
    assert not at.exception
    assert classroom.load_preset("l12") is None and classroom.load_preset("l15") is not None
    assert "L12 Pretrained weights" not in texts(at.markdown)
    at.button(key="instructor.class.remove:l15").click().run()
    assert classroom.list_presets() == {}
    assert "No class preset yet" in texts(at.caption)


def test_an_empty_class_says_what_will_show(instructor):
    at = unlocked()
    shown = texts(at.info)
    assert "No finished evaluation yet" in shown and "No training run yet" in shown
    assert "No class preset yet" in texts(at.caption)
