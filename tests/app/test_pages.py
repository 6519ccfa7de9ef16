"""AppTest smoke tests of every page, the form's refusals, and the panel over seeded run folders (no training)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import apphelpers  # tests/app is on sys.path
import pytest
from streamlit.testing.v1 import AppTest

from llmfs.runs import Run

REPO = Path(__file__).resolve().parents[2]

LESSONS = ["pages/l12_pretrained.py", "pages/l13_data.py", "pages/l14_eval.py", "pages/l15_lora.py",
           "pages/l16_precision.py"]
# Lessons whose page has the one-run training form (L13 and L14 do not train; L16 compares several runs).
TRAINING_FORM = [p for p in LESSONS if p not in ("pages/l13_data.py", "pages/l14_eval.py", "pages/l16_precision.py")]


open_page = apphelpers.open_page


texts = apphelpers.texts


def plotly_charts(at: AppTest) -> list:
    return at.get("plotly_chart")


def test_home_without_default_explains_and_offers_quick_start(llmfs_home):
    at = open_page()
    assert at.title[0].value == "llmfs-lab"
    assert "not built yet" in texts(at.info) and "5 minutes" in texts(at.info)
    assert [b.label for b in at.button] == ["Start the quick start run"]
    assert "CPU cores" in texts(at.markdown)
    assert "No run yet" in texts(at.info)


@pytest.mark.parametrize("page", TRAINING_FORM)
def test_lesson_page_renders_form_and_empty_panel(llmfs_home, page):
    at = open_page(page)
    key = page.split("/")[1][:3]
    assert at.title[0].value.startswith(key.upper())
    assert "being built" not in texts(at.info)
    assert at.number_input(key=f"{key}.steps").value == 200
    assert at.number_input(key=f"{key}.batch_size").value == 8
    assert at.selectbox(key=f"{key}.model.kind").value == "llmfs-tiny"
    assert any(e.label == "Advanced settings" for e in at.expander)
    start = at.button(key=f"{key}.start")
    assert start.label == "Start training" and not start.disabled
    assert "No run yet" in texts(at.info)


def test_runs_page_empty(llmfs_home):
    at = open_page("pages/runs.py")
    assert "No runs yet" in texts(at.info)
    assert not at.dataframe


def test_form_refuses_batch_size_zero_naming_the_field(llmfs_home):
    at = open_page("pages/l12_pretrained.py")
    at.number_input(key="l12.batch_size").set_value(0).run()
    assert not at.exception
    message = texts(at.error)
    assert "Batch size" in message and "got 0" in message and "batch_size" not in message  # the label people see
    assert at.button(key="l12.start").disabled


def test_form_names_advanced_field_and_where_it_is(llmfs_home):
    at = open_page("pages/l15_lora.py")
    at.number_input(key="l15.weight_decay").set_value(2.0).run()
    message = texts(at.error)
    assert "Weight decay" in message and "Advanced settings" in message and "between 0 and 1" in message
    assert "weight_decay" not in message
    assert at.button(key="l15.start").disabled
    at.number_input(key="l15.weight_decay").set_value(0.05).run()
    assert not at.error and not at.button(key="l15.start").disabled


def test_submit_refusal_is_shown_by_the_button(llmfs_home):
    """A sequence longer than the model's context, and a data path that is not there, are refused in place, where
    they were typed (the start button off), before anything is queued."""
    at = open_page("pages/l16_precision.py")
    at.number_input(key="l16.seq_len").set_value(512).run()
    assert "Sequence length" in texts(at.error) and "256" in texts(at.error)
    assert at.button(key="l16.start").disabled
    at.number_input(key="l16.seq_len").set_value(128).run()
    at.selectbox(key="l16.data.kind").set_value("path").run()
    at.text_input(key="l16.data.path").input("/no/such/file.txt").run()
    assert "No data at /no/such/file.txt" in texts(at.error).replace("\\", "")
    assert at.button(key="l16.start").disabled
    assert not (llmfs_home / "runs").exists() or not any((llmfs_home / "runs").iterdir())


def test_model_picker_takes_a_folder_or_hub_id(llmfs_home):
    at = open_page("pages/l15_lora.py")
    at.selectbox(key="l15.model.kind").set_value("hub").run()
    assert at.text_input(key="l15.model.hub").placeholder == "gpt2"
    at.text_input(key="l15.model.hub").input("").run()
    assert "model is empty" in texts(at.error)


def test_lesson_page_shows_its_latest_run_from_disk(llmfs_home, seed):
    """After a refresh (a new session) a lesson page still shows the run it started, read from the run folder."""
    seed(owner="l12", steps=30, seed_loss=7.0)
    at = open_page("pages/l12_pretrained.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Training loss"] == "5.500" and metrics["Held-out loss"] == "5.800"
    assert metrics["Tokens / second"] == "10,260"  # median of the last 20 seeded steps: 10,251 ... 10,270
    assert len(plotly_charts(at)) == 3
    assert "Step 30 of 30" in str(at.get("progress")[0].proto.text)
    assert not any(b.label == "Stop" for b in at.button)


def test_runs_page_lists_opens_and_compares(llmfs_home, seed):
    first = seed(owner="l12", lr=1e-3)
    second = seed(owner="home", lr=3e-3, state="cancelled", done=12)
    at = open_page("pages/runs.py")
    table = at.dataframe[0].value
    assert set(table["run"]) == {first, second}
    assert table.set_index("run").loc[second, "progress"] == "12 / 20 steps"
    assert table.set_index("run").loc[first, "started from"] == "L12 Pretrained weights"
    select = at.multiselect(key="runs.selected")
    assert sorted(select.options) == sorted([f"{first} · L12 Pretrained weights", f"{second} · Home quick start"])
    assert len(select.value) == 1  # the newest run is open
    assert any(b.label == "Resume" for b in at.button)  # the cancelled one is newest
    select.set_value([first, second]).run()
    assert not at.exception
    assert len(plotly_charts(at)) == 3  # overlaid loss, memory, throughput
    assert "Settings that differ" in [h.value for h in at.subheader]
    diff = at.dataframe[-1].value
    assert list(diff.index) == ["Learning rate"]  # the label the form shows, not the field's name in code


def test_failed_run_shows_plain_error_and_traceback(llmfs_home, seed):
    run_id = seed(state="failed", done=7)
    at = open_page("pages/runs.py")
    assert at.multiselect(key="runs.selected").value == [run_id]
    assert "training diverged" in texts(at.error)
    assert any("traceback" in e.label for e in at.expander)


def test_running_run_from_elsewhere_has_a_live_panel(llmfs_home, seed):
    """A run marked running by a live process (here: this test) that this app's manager does not own."""
    run_id = seed(state="running", steps=100, done=5, owner="cli")
    at = open_page("pages/runs.py")
    assert "Step 5 of 100" in str(at.get("progress")[0].proto.text)
    stop = next(b for b in at.button if b.label == "Stop")
    stop.click().run()
    assert "not managed by this app" in texts(at.warning)
    assert Run(llmfs_home / "runs" / run_id).state == "running"


def test_a_run_on_several_processes_says_how_it_split_the_work(llmfs_home, seed):
    run_id = seed(state="running", steps=100, done=5, owner="cli")
    run = Run(llmfs_home / "runs" / run_id)
    run.append_metrics(1, kind="ranks", world_size=2, strategy="fsdp", data_fingerprints=["a1", "b2"])
    run.append_metrics(0, kind="data_parts", train_tokens=[12000, 11800])
    at = open_page("pages/runs.py")
    assert "2 training processes (FSDP), each reading its own part of the data (12,000, 11,800 tokens)" in \
        texts(at.caption)


def test_delete_asks_first(llmfs_home, seed):
    keep, doomed = seed(), seed()
    at = open_page("pages/runs.py")
    at.multiselect(key="runs.selected").set_value([doomed]).run()
    next(b for b in at.button if b.label.startswith("Delete")).click().run()
    assert "cannot be undone" in texts(at.warning)
    assert (llmfs_home / "runs" / doomed).exists()
    next(b for b in at.button if b.label == "Yes, delete").click().run()
    assert not at.exception
    assert not (llmfs_home / "runs" / doomed).exists() and (llmfs_home / "runs" / keep).exists()
    assert not any(doomed in option for option in at.multiselect(key="runs.selected").options)
    assert "Deleted 1 run." in texts(at.success)  # said once, where the runs are listed


def test_deleting_several_runs_says_how_many(llmfs_home, seed):
    ids = [seed(), seed(), seed()]
    at = open_page("pages/runs.py")
    at.multiselect(key="runs.selected").set_value(ids[:2]).run()
    next(b for b in at.button if b.label.startswith("Delete")).click().run()
    next(b for b in at.button if b.label == "Yes, delete").click().run()
    assert "Deleted 2 runs." in texts(at.success)
    at.run()  # the message is for the delete, not for every later visit
    assert "Deleted" not in texts(at.success)


def test_runs_table_tells_runs_apart_by_precision_lora_init_data_and_name(llmfs_home, seed):
    """The three L16 runs differ only in precision; L15's in LoRA; L12's in the initial weights: each has a column,
    in plain words, and a run's name has one too."""
    fp32, bf16 = seed(owner="l16"), seed(owner="l16", precision="bf16")
    qlora = seed(owner="l15", lora_rank=8, lora_targets="qkv,mlp_in", quantize="4bit")
    scratch = seed(owner="l12", init="random")
    Run(llmfs_home / "runs" / bf16).rename("my bf16 try")
    table = open_page("pages/runs.py").dataframe[0].value.set_index("run")
    assert table.loc[fp32, "precision"] == "fp32" and table.loc[bf16, "precision"] == "bf16"
    assert table.loc[qlora, "LoRA"] == "rank 8 on qkv,mlp_in, 4-bit base"
    assert table.loc[fp32, "LoRA"] == "none (full model)"
    assert table.loc[scratch, "init"] == "random weights" and table.loc[fp32, "init"] == "pretrained weights"
    assert table.loc[fp32, "data"] == "llmfs-corpus"
    assert table.loc[bf16, "name"] == "my bf16 try"


def test_runs_table_progress_by_kind(llmfs_home, seed):
    """A finished evaluation counts questions, a pipeline the documents it read: never `0 / ?` or `Steps 0 / 100`."""
    root = llmfs_home / "runs"
    waiting = seed(state="pending", steps=20, done=0)
    ev = Run.create(root / "20260101-000000-eval-aaaaaa", "eval", {"task": "llmfs-cloze", "model": "llmfs-tiny"})
    ev.update_status(progress={"done": 100, "total": 100, "unit": "items"})
    ev.mark_finished("succeeded", result={"task": "llmfs-cloze", "n_items": 100})
    pipe = Run.create(root / "20260101-000001-pipeline-bbbbbb", "pipeline", {"inputs": ["a.txt"]})
    pipe.mark_finished("succeeded", result={"documents_in": 1234, "documents_out": 1000})
    going = Run.create(root / "20260101-000002-pipeline-cccccc", "pipeline", {"inputs": ["a.txt"]})
    going.mark_running()
    going.append_metrics(5, kind="pipeline", documents_in=5, documents_out=4)
    table = open_page("pages/runs.py").dataframe[0].value.set_index("run")
    assert table.loc[ev.run_id, "progress"] == "100 / 100 questions"
    assert table.loc[pipe.run_id, "progress"] == "1,234 documents read"
    assert table.loc[going.run_id, "progress"] == "5 documents read"
    assert table.loc[waiting, "progress"] == "not started · 20 steps planned"
    assert table.loc[ev.run_id, "kind"] == "evaluation" and table.loc[pipe.run_id, "kind"] == "data pipeline"


def test_a_run_is_renamed_on_the_runs_page_and_named_everywhere(llmfs_home, seed):
    first, second = seed(owner="l12"), seed(owner="l12", init="random")
    at = open_page("pages/runs.py")
    at.multiselect(key="runs.selected").set_value([first]).run()
    at.text_input(key=f"runs.name:{first}").input("  baseline   *bold* ")
    next(b for b in at.button if b.label == "Rename").click().run()
    assert not at.exception
    assert Run(llmfs_home / "runs" / first).name == "baseline *bold*"
    assert "Renamed" in texts(at.success)
    assert at.dataframe[0].value.set_index("run").loc[first, "name"] == "baseline *bold*"
    assert at.multiselect(key="runs.selected").value == [first]  # still open, now called by its name
    assert f"baseline *bold* · {first} · L12 Pretrained weights" in at.multiselect(key="runs.selected").options
    assert "**baseline \\*bold\\*** · Run" in texts(at.caption)  # the panel names it, as written
    at.multiselect(key="runs.selected").set_value([first, second]).run()
    legend = {t.get("name") for chart in plotly_charts(at) for t in json.loads(chart.proto.spec)["data"]}
    assert {"baseline *bold*", "random weights"} <= legend  # the name, and the other run by what sets it apart
    assert not any(first[-6:] in str(n) or second[-6:] in str(n) for n in legend)  # no id tails: nothing to decode


@pytest.mark.slow
def test_resume_queues_the_run_again_and_it_finishes(home_with_default, seed):
    """The one AppTest that really trains: Resume on a cancelled run puts it back through the job runner."""
    run_id = seed(state="cancelled", steps=20, done=12, batch_size=2, seq_len=32, eval_batches=1)
    run = Run(home_with_default / "runs" / run_id)
    at = open_page("pages/runs.py")
    next(b for b in at.button if b.label == "Resume").click().run()
    assert not at.exception
    deadline = time.time() + 180
    while run.state not in ("succeeded", "failed") and time.time() < deadline:
        time.sleep(0.5)
    assert run.state == "succeeded", run.status().get("error")
    at.run()
    assert at.multiselect(key="runs.selected").value == [run_id]  # kept while the run changed state
    assert "Step 20 of 20" in str(at.get("progress")[0].proto.text)
    assert not any(b.label in ("Stop", "Resume") for b in at.button)


def test_memory_figure_says_what_it_measures_one_figure_per_thing(llmfs_home, seed):
    """A finished run has no memory 'now': one peak, named by what it counts (not 'Memory 675 MB, peak 675 MB');
    a running one shows the memory in use now with the highest reading so far."""
    done = seed(steps=20)  # RSS readings 401 ... 420 MB
    Run(llmfs_home / "runs" / done).update_status(result={"steps": 20, "total_steps": 20, "final_loss": 4.5,
                                                          "peak_memory_bytes": 430e6})
    at = open_page("pages/runs.py")
    metric = next(m for m in at.metric if "memory" in m.label.lower())
    assert metric.label == "Peak memory" and metric.value == "430 MB"  # the loop's reading was higher
    assert metric.delta == "the run's process" and "resident memory (RSS)" in metric.help  # what it counts
    going = seed(state="running", steps=100, done=5, owner="cli")
    at.multiselect(key="runs.selected").set_value([going]).run()
    metric = next(m for m in at.metric if "memory" in m.label.lower())
    assert metric.label == "Memory now" and metric.value == "405 MB"
    assert metric.delta == "process · peak so far 405 MB"
