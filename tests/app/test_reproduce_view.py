"""'Repeat this run' under a run's panel on the Runs page (AppTest, seeded run folders, no training): the command and
the Python snippet for training, evaluation and pipeline runs, the settings download, and server paths hidden
from a workshop participant."""

from __future__ import annotations

import shlex

import pytest
from apphelpers import open_page, texts
from test_l13 import seed_pipeline_run
from test_l14 import item, seed_eval
from test_workshop_ui import open_as, workshop_limits

from llmfs import cli, reproduce
from llmfs.config import EvalConfig, TrainConfig
from llmfs.runs import Run

pytestmark = pytest.mark.usefixtures("router_on_every_run")  # see tests/app/conftest.py
RUNS = "pages/runs.py"


def repeat_section(at) -> tuple[list[str], list[str]]:
    """(the bash blocks, the python blocks) on the page, after checking the expander and the download are there."""
    assert not at.exception, [e.value for e in at.exception]
    assert "Repeat this run" in [e.label for e in at.expander]
    assert "Download these settings (.toml)" in [b.proto.label for b in at.get("download_button")]
    assert "paste it in a terminal where llmfs is installed" in texts(at.markdown)
    return ([c.value for c in at.code if c.proto.language == "bash"],
            [c.value for c in at.code if c.proto.language == "python"])


def test_a_training_runs_panel_shows_its_command_and_snippet(llmfs_home, seed):
    run_id = seed(owner="l12", lr=3e-3, pack=True, save_model=False)
    bash, python = repeat_section(open_page(RUNS))
    config = Run(llmfs_home / "runs" / run_id).config()
    assert bash == [reproduce.command("train", config)]
    assert bash[0] == ("python -m llmfs train --model llmfs-tiny --data llmfs-corpus --pack --steps 20 --lr 0.003 "
                       "--eval-every 10 --no-save-model")   # seed_run's steps and eval_every differ too
    args = cli.build_parser().parse_args(shlex.split(bash[0])[3:])
    assert cli.config_from_args(TrainConfig, args) == TrainConfig(**config)   # the command is the run
    assert python == [reproduce.snippet("train", config).rstrip()] and "submit_train(jobs, cfg" in python[0]


def test_evaluation_and_pipeline_runs_show_theirs(llmfs_home, seed):
    run_id = seed_eval(llmfs_home, "llmfs-tiny", "llmfs-cloze", [item(i, [-1.0, -5.0, -6.0, -9.0], 0)
                                                                  for i in range(2)])
    bash, python = repeat_section(open_page(RUNS))
    assert bash == ["python -m llmfs eval --model llmfs-tiny --task llmfs-cloze --limit 2"]
    assert "submit_eval(jobs, cfg" in python[0]
    assert cli.config_from_args(EvalConfig, cli.build_parser().parse_args(shlex.split(bash[0])[3:])) == \
        EvalConfig(**Run(llmfs_home / "runs" / run_id).config())

    seed_pipeline_run(llmfs_home)   # newer: the one open
    bash, python = repeat_section(open_page(RUNS))
    assert bash == ["python -m llmfs data --input a.jsonl --input web.jsonl --weights 1.0,1.0 --filters "
                    "gopher_quality --dedup minhash"]
    assert 'jobs.submit("pipeline"' in python[0]


def test_a_participant_sees_names_not_the_servers_paths(llmfs_home, seed):
    workshop_limits(llmfs_home)
    data = llmfs_home / "uploads" / "ben" / "notes.jsonl"
    bens = seed(owner="l12", data=str(data), steps=30)
    Run(llmfs_home / "runs" / bens).update_status(user="ben")
    at = open_as("ana", RUNS)
    at.multiselect(key="runs.selected").set_value([bens]).run()
    bash, python = repeat_section(at)
    assert str(llmfs_home) not in bash[0] + python[0]
    assert "--data notes.jsonl --steps 30" in bash[0]
    assert "Paths on this server are shown by their names" in texts(at.caption)


def test_the_panel_says_where_the_runs_tensorboard_and_mlflow_figures_are(llmfs_home, seed):
    run_id = seed(owner="l12")
    run = Run(llmfs_home / "runs" / run_id)
    at = open_page(RUNS)
    assert "TensorBoard charts" not in texts(at.caption)   # no event files (a seeded run): nothing claimed
    (run.path / "tensorboard").mkdir()
    run.update_status(mlflow={"uri": "http://mlflow.example:5000", "experiment": "llmfs", "experiment_id": "1",
                              "run_id": "abc123"})
    at = open_page(RUNS)
    said = texts(at.caption)
    assert f"tensorboard --logdir {run.path / 'tensorboard'}" in said
    assert "Sent to MLflow: run `abc123` in experiment `llmfs` at `http://mlflow.example:5000`" in said


def test_a_lesson_pages_latest_run_shows_its_command_too(llmfs_home, seed):
    run_id = seed(owner="l12", steps=12)
    at = open_page("pages/l12_pretrained.py")
    assert "Repeat this run" in [e.label for e in at.expander]
    assert reproduce.command("train", Run(llmfs_home / "runs" / run_id).config()) in [c.value for c in at.code]
