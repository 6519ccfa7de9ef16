"""The class as a whole (llmfs.classroom): leaderboard, everyone's curves, class presets, read from run folders made
directly (no training, no evaluation)."""

from __future__ import annotations

import json
import time

import pytest

from llmfs import classroom
from llmfs.runs import FAILED, SUCCEEDED, Run, new_run_id


def evaluation(root, user, score, *, task="mmlu", metric="acc", stderr=0.02, n=100, state=SUCCEEDED, name="",
               model="llmfs-tiny", adapter="", fewshot=0, extra=None):
    run = Run.create(root / new_run_id("eval"), "eval", {"task": task, "model": model, "adapter": adapter,
                                                         "num_fewshot": fewshot, "data": ""},
                     owner="l14", user=user)
    if name:
        run.rename(name)
    metrics = {metric: score, f"{metric}_stderr": stderr, **(extra or {})}
    if state == SUCCEEDED:
        run.mark_finished(state, result={"task": task, "n_items": n, "metrics": metrics})
    else:
        run.mark_finished(state, error="The model could not be loaded.")
    time.sleep(0.002)  # distinct finishing times: the earlier of two equal scores is kept
    return run


def training(root, user, owner="l15", losses=(3.0, 2.5, 2.0), evals=(), state=SUCCEEDED):
    run = Run.create(root / new_run_id("train"), "train", {"steps": len(losses)}, owner=owner, user=user)
    for step, loss in enumerate(losses, start=1):
        run.append_metrics(step, kind="train", loss=loss)
    for step, loss in evals:
        run.append_metrics(step, kind="eval", eval_loss=loss)
    run.mark_finished(state, result={})
    time.sleep(0.002)
    return run


# -- leaderboard --------------------------------------------------------------------------------------------------
def test_leaderboard_keeps_each_participants_best_with_its_stderr_and_run(tmp_path):
    evaluation(tmp_path, "Ana", 0.30, stderr=0.05)
    best = evaluation(tmp_path, "Ana", 0.45, stderr=0.04, name="rank 8", adapter="/srv/runs/x/adapter")
    evaluation(tmp_path, "Bo", 0.40, stderr=0.03)
    evaluation(tmp_path, "Bo", 0.99, state=FAILED)       # a failed run has no score, whatever it says
    evaluation(tmp_path, "Cy", 0.90, task="hellaswag", metric="acc_norm")  # another benchmark

    rows = classroom.leaderboard(list(tmp_path.iterdir()), "mmlu")
    assert [(r["rank"], r["user"], r["score"]) for r in rows] == [(1, "Ana", 0.45), (2, "Bo", 0.40)]
    ana = rows[0]
    assert ana["stderr"] == 0.04 and ana["metric"] == "acc" and not ana["lower_is_better"]
    assert ana["run_id"] == best.run_id and ana["run_name"] == "rank 8"
    assert ana["model"] == "llmfs-tiny" and ana["adapter"] == "x/adapter"
    assert ana["n_items"] == 100 and ana["num_fewshot"] == 0 and ana["runs"] == 2
    assert rows[1]["runs"] == 1      # Bo's failed evaluation was not one of his tries
    assert classroom.caveats(rows) == [] and not classroom.mixed_question_counts(rows)


def test_main_metric_and_a_lower_is_better_measure(tmp_path):
    for user, bpb in (("Ana", 1.9), ("Bo", 1.2), ("Bo", 1.5)):
        evaluation(tmp_path, user, bpb, task="perplexity", metric="bits_per_byte", stderr=None,
                   extra={"word_perplexity": bpb * 10})
    evaluation(tmp_path, "Cy", 0.5, task="hellaswag", metric="acc", extra={"acc_norm": 0.6, "acc_norm_stderr": 0.1})
    runs = list(tmp_path.iterdir())
    assert classroom.tasks_with_results(runs) == ["perplexity", "hellaswag"]   # most evaluated first
    rows = classroom.leaderboard(runs, "perplexity")
    assert [(r["user"], r["score"]) for r in rows] == [("Bo", 1.2), ("Ana", 1.9)]
    assert rows[0]["metric"] == "bits_per_byte" and rows[0]["lower_is_better"] and rows[0]["stderr"] is None
    assert classroom.metrics_of(runs, "perplexity")[0] == "bits_per_byte"
    assert [r["score"] for r in classroom.leaderboard(runs, "perplexity", "word_perplexity")] == [12.0, 19.0]
    hella = classroom.leaderboard(runs, "hellaswag")                  # acc_norm ranks when a task has it
    assert hella[0]["metric"] == "acc_norm" and hella[0]["score"] == 0.6 and hella[0]["stderr"] == 0.1


def test_equal_scores_share_a_rank_and_different_question_counts_are_flagged(tmp_path):
    evaluation(tmp_path, "Ana", 0.5, n=20)
    evaluation(tmp_path, "Bo", 0.5, n=100)
    evaluation(tmp_path, "Cy", 0.4, n=100)
    first = evaluation(tmp_path, "Dee", 0.3, n=100)
    evaluation(tmp_path, "Dee", 0.3, n=100)            # the same score again: her first run stays
    evaluation(tmp_path, None, 0.2, n=100)             # the command line's: one entry without a name
    rows = classroom.leaderboard(list(tmp_path.iterdir()), "mmlu")
    # equal scores share a rank; the one on more questions is listed first
    assert [(r["rank"], r["user"]) for r in rows] == [(1, "Bo"), (1, "Ana"), (3, "Cy"), (4, "Dee"),
                                                      (5, classroom.NO_NAME)]
    assert rows[3]["run_id"] == first.run_id
    assert classroom.mixed_question_counts(rows)
    assert classroom.caveats(rows) == ["numbers of questions (20, 100)"]


def test_more_questions_win_between_a_participants_equal_scores(tmp_path):
    evaluation(tmp_path, "Ana", 0.5, n=20)
    surer = evaluation(tmp_path, "Ana", 0.5, n=200)
    assert classroom.leaderboard(list(tmp_path.iterdir()), "mmlu")[0]["run_id"] == surer.run_id


def test_no_results_no_leaderboard(tmp_path):
    training(tmp_path, "Ana")
    evaluation(tmp_path, "Bo", 0.5, state=FAILED)
    runs = list(tmp_path.iterdir())
    assert classroom.tasks_with_results(runs) == [] and classroom.leaderboard(runs, "mmlu") == []


# -- curves -------------------------------------------------------------------------------------------------------
def test_curves_one_series_per_participant_their_newest_run_of_the_lesson(tmp_path):
    training(tmp_path, "Ana", losses=(9.0, 8.0))
    ana = training(tmp_path, "Ana", losses=(3.0, 2.0, 1.5), evals=[(2, 2.4)])
    bo = training(tmp_path, "Bo", losses=(4.0, 3.5), state=FAILED)    # a failed run's curve still shows
    training(tmp_path, "Cy", owner="l12")                              # another lesson
    queued = Run.create(tmp_path / new_run_id("train"), "train", {}, owner="l15", user="Bo")  # no step yet
    runs = list(tmp_path.iterdir())

    series = classroom.curves(runs, "l15")
    assert [(s["user"], s["run_id"]) for s in series] == [("Ana", ana.run_id), ("Bo", bo.run_id)]
    assert series[0]["steps"] == [1, 2, 3] and series[0]["values"] == [3.0, 2.0, 1.5]
    assert series[1]["state"] == FAILED and queued.run_id not in [s["run_id"] for s in series]

    held_out = classroom.curves(runs, "l15", "eval_loss")
    assert [(s["user"], s["steps"], s["values"]) for s in held_out] == [("Ana", [2], [2.4])]
    assert len(classroom.curves(runs, "l15", every_run=True)) == 3
    assert classroom.lessons_with_runs(runs) == ["l15", "l12"]         # the lesson with most people first


def test_a_resumed_runs_repeated_step_counts_once(tmp_path):
    run = training(tmp_path, "Ana", losses=(3.0, 2.0))
    run.append_metrics(2, kind="train", loss=1.8)
    run.append_metrics(3, kind="train", loss=float("nan"))            # a diverged step: a gap, not a point
    (series,) = classroom.curves([run], "l15")
    assert series["steps"] == [1, 2] and series["values"] == [3.0, 1.8]


# -- presets ------------------------------------------------------------------------------------------------------
def test_presets_round_trip(llmfs_home):
    assert classroom.load_preset("l12") is None and classroom.list_presets() == {}
    values = {"steps": 50, "lr": 3e-4, "lora_targets": ("qkv", "proj"), "data": "builtin:chat"}
    before = time.time()
    classroom.save_preset("l12", "TrainConfig", values, by="Prof")
    classroom.save_preset("l15.lora", "TrainConfig", {"lora_rank": 8})
    path = llmfs_home / "workshop" / "presets" / "l12.json"
    assert json.loads(path.read_text())["cls"] == "TrainConfig"

    preset = classroom.load_preset("l12")
    assert preset["cls"] == "TrainConfig" and preset["by"] == "Prof" and preset["saved"] >= before
    assert preset["values"] == {**values, "lora_targets": ["qkv", "proj"]}
    assert set(classroom.list_presets()) == {"l12", "l15.lora"}
    assert classroom.list_presets()["l15.lora"]["by"] == "instructor"

    classroom.save_preset("l12", "TrainConfig", {"steps": 10})         # a new preset replaces the old
    assert classroom.load_preset("l12")["values"] == {"steps": 10}
    assert classroom.delete_preset("l12") is True and classroom.delete_preset("l12") is False
    assert classroom.load_preset("l12") is None and list(classroom.list_presets()) == ["l15.lora"]


@pytest.mark.parametrize("page", ["", "../l12", "a/b", "..", ".hidden", "l12\x00", "x" * 81, "l12 page", None])
def test_bad_page_names_are_refused(llmfs_home, page):
    with pytest.raises(ValueError, match="page name"):
        classroom.save_preset(page, "TrainConfig", {"steps": 1})
    with pytest.raises(ValueError):
        classroom.load_preset(page)
    assert not (llmfs_home / "workshop").exists() or not any((llmfs_home / "workshop").rglob("*.json"))


@pytest.mark.parametrize("values", [{"steps": object()}, {"lr": float("nan")}, {1: 2}, ["steps", 1]])
def test_values_must_be_plain_json(llmfs_home, values):
    with pytest.raises(ValueError, match="settings"):
        classroom.save_preset("l12", "TrainConfig", values)
    assert classroom.load_preset("l12") is None


def test_an_unreadable_preset_file_is_skipped(llmfs_home):
    classroom.save_preset("l12", "TrainConfig", {"steps": 5})
    (classroom.presets_dir() / "l13.json").write_text("{torn")
    assert list(classroom.list_presets()) == ["l12"] and classroom.load_preset("l13") is None
