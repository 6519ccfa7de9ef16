"""The L14 page: it renders on an empty home; seeded finished evaluations fill the results table, the comparison
chart (with error bars), before / after fine-tuning and the wrong-answers drill-down; a real tiny evaluation
started from the page finishes and lands in the table."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import apphelpers  # tests/app is on sys.path
import pytest
from streamlit.testing.v1 import AppTest

from app import adapter_view, eval_view
from llmfs.config import EvalConfig
from llmfs.eval.runner import write_results
from llmfs.runs import Run, new_run_id

REPO = Path(__file__).resolve().parents[2]
PAGE = "pages/l14_eval.py"


def open_page() -> AppTest:
    return apphelpers.open_page(PAGE, timeout=60)


texts = apphelpers.texts


def specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def item(index: int, logliks: list[float], gold: int, choices=("a", "bb", "ccc", "dddd")) -> dict:
    """One multiple-choice record as runner.mc_record writes it (acc by total, acc_norm by per-character)."""
    pred = max(range(len(logliks)), key=lambda i: (logliks[i], -i))
    norm = [ll / len(c) for ll, c in zip(logliks, choices)]
    pred_norm = max(range(len(norm)), key=lambda i: (norm[i], -i))
    return {"index": index, "id": f"q{index}", "group": None, "prompt": f"Question number {index}:",
            "choices": list(choices), "delimiter": " ", "logliks": logliks, "is_greedy": [False] * 4,
            "predicted": pred, "predicted_norm": pred_norm, "gold": gold, "correct": pred == gold,
            "values": {"acc": float(pred == gold), "acc_norm": float(pred_norm == gold)}}


def seed_eval(home: Path, model: str, task: str, items: list[dict], owner: str = "l14") -> str:
    """A finished eval run folder as eval_job leaves it: config, results.json, items.jsonl, a succeeded status."""
    from llmfs.eval.scorer import mean_with_stderr
    cfg = EvalConfig(model=model, task=task, limit=len(items))
    run = Run.create(home / "runs" / new_run_id("eval"), "eval", dataclasses.asdict(cfg), owner=owner)
    metrics = {}
    for name in ("acc", "acc_norm"):
        metrics[name], metrics[f"{name}_stderr"] = mean_with_stderr([i["values"][name] for i in items])
    run.append_metrics(len(items), kind="eval_progress", done=len(items), total=len(items),
                       acc=metrics["acc"], acc_norm=metrics["acc_norm"])
    summary = write_results(run.path, {
        "task": task, "kind": "multiple_choice", "source": "test items", "n_items": len(items),
        "n_total": len(items), "metrics": metrics, "groups": {}, "items": items, "stopped": False, "seconds": 1.0,
        "items_per_s": float(len(items)), "max_length": 256, "config": dataclasses.asdict(cfg)})
    run.update_status(started=time.time() - 1)
    run.mark_finished("succeeded", result=summary)
    return run.run_id


def seed_trained_model(home: Path, seed) -> Path:
    """A succeeded training run (from llmfs-tiny) with a model/ folder."""
    run_id = seed(owner="l12")
    folder = home / "runs" / run_id / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


# Base: right on q0 (by total), wrong on q1 and q2. Fine-tuned: right on all three.
BASE_ITEMS = [item(0, [-1.0, -5.0, -6.0, -9.0], 0), item(1, [-2.0, -3.0, -9.0, -4.0], 3),
              item(2, [-1.0, -2.0, -2.5, -30.0], 2)]
TUNED_ITEMS = [item(0, [-1.0, -5.0, -6.0, -9.0], 0), item(1, [-9.0, -9.0, -9.0, -1.0], 3),
               item(2, [-9.0, -9.0, -0.5, -30.0], 2)]


def test_page_renders_on_an_empty_home(llmfs_home):
    at = open_page()
    assert at.title[0].value.startswith("L14")
    assert [h.value for h in at.subheader] == ["1 · What to test", "2 · How many questions", "Running",
                                               "3 · Results", "4 · What the model got wrong"]
    assert at.multiselect(key="l14.models").value == ["llmfs-tiny"]
    assert at.pills(key="l14.tasks").value == ["llmfs-cloze"]
    assert at.number_input(key="l14.limit").value == 100
    assert not at.button(key="l14.start").disabled
    assert "No evaluation yet" in texts(at.info) and "No finished evaluation yet" in texts(at.info)
    assert not at.get("plotly_chart")


def test_offline_benchmarks_need_a_file_and_fewshot_is_for_mmlu(llmfs_home):
    at = open_page()
    at.pills(key="l14.tasks").set_value(["llmfs-cloze", "hellaswag"]).run()
    assert at.selectbox(key="l14.hellaswag.kind").value == "upload"   # offline first: upload your copy
    assert at.button(key="l14.start").disabled
    with pytest.raises(KeyError):
        at.number_input(key="l14.num_fewshot")
    at.selectbox(key="l14.hellaswag.kind").set_value("path").run()
    at.text_input(key="l14.hellaswag.path").input("/no/such/hellaswag.jsonl").run()
    assert "2 evaluations" in texts(at.caption)
    at.button(key="l14.start").click().run()
    assert "No data file at /no/such/hellaswag.jsonl" in texts(at.error)
    assert not any((llmfs_home / "runs").glob("*"))                   # nothing queued when one is refused
    at.pills(key="l14.tasks").set_value(["mmlu"]).run()
    assert at.number_input(key="l14.num_fewshot").value == 0


def forms_label(name: str) -> str:
    from app.forms import MODEL_SOURCES
    return MODEL_SOURCES[name]


def test_finished_runs_fill_table_charts_before_after_and_wrong_answers(llmfs_home, seed):
    tuned = seed_trained_model(llmfs_home, seed)
    base_id = seed_eval(llmfs_home, "llmfs-tiny", "llmfs-cloze", BASE_ITEMS)
    seed_eval(llmfs_home, str(tuned), "llmfs-cloze", TUNED_ITEMS)
    tail = tuned.parent.name.rsplit("-", 1)[-1]
    at = open_page()
    options = at.multiselect(key="l14.models").options
    assert options[:2] == [forms_label("llmfs-tiny"), forms_label("smollm2-135m")]   # the built-ins first
    assert any(f"fine-tuned {tail} (from llmfs-tiny" in o for o in options[2:])

    table = at.dataframe[0].value
    assert set(table["model"]) == {"llmfs-tiny", f"fine-tuned {tail}"}
    assert sorted(table["metric"]) == ["acc", "acc", "acc_norm", "acc_norm"]
    base_acc = table[(table["model"] == "llmfs-tiny") & (table["metric"] == "acc")].iloc[0]
    # acc 1/3; stderr = sample sd / sqrt(n) = sqrt(1/3) / sqrt(3) = 1/3 (lm-eval's mean_stderr)
    assert base_acc["value"] == pytest.approx(1 / 3) and base_acc["stderr"] == pytest.approx(1 / 3)
    assert base_acc["score"] == "0.333 ± 0.333" and base_acc["n"] == 3

    compare, before_after = specs(at)[:2]
    bars = compare["data"][0]
    assert bars["type"] == "bar" and bars["error_y"]["visible"]
    assert set(bars["x"]) == {"llmfs-tiny", f"fine-tuned {tail}"}
    assert at.selectbox(key="l14.metric.llmfs-cloze").value == "acc_norm"     # the primary measure for cloze
    assert [t["name"] for t in before_after["data"]] == ["before: the base model", "after fine-tuning"]
    assert before_after["data"][1]["y"] == [1.0]
    assert "score the same here" in texts(at.caption)         # acc_norm: both right on all three

    drill = at.selectbox(key="l14.drill")
    drill.set_value(base_id).run()
    at.radio(key="l14.judge").set_value("acc").run()
    assert "**2 of 3** answered wrong." in texts(at.markdown)
    wrong = at.dataframe[1].value
    assert wrong["#"].tolist() == [1, 2]
    assert wrong["model's answer"].tolist() == ["a", "a"] and wrong["right answer"].tolist() == ["dddd", "ccc"]
    assert [e.label for e in at.expander if e.label.startswith("#")] == ["#1 · Question number 1:",
                                                                         "#2 · Question number 2:"]
    choices = at.dataframe[2].value
    assert choices["log-likelihood"].tolist() == [-2.0, -3.0, -9.0, -4.0]
    assert choices[""].tolist() == ["✗ model's pick", "", "", "✓ right answer"]
    # per character, q1: -2/1, -3/2, -9/3, -4/4 -> "dddd"; q2: -1, -1, -0.83, -7.5 -> "ccc": both right now
    at.radio(key="l14.judge").set_value("acc_norm").run()
    assert "**0 of 3** answered wrong." in texts(at.markdown)


def test_a_running_evaluation_shows_progress_and_the_running_score(llmfs_home):
    run_id = seed_eval(llmfs_home, "llmfs-tiny", "hellaswag", BASE_ITEMS)
    run = Run(llmfs_home / "runs" / run_id)
    (run.path / "results.json").unlink()
    run.update_status(state="running", result=None, progress={"done": 64, "total": 100, "unit": "items"})
    run.append_metrics(32, kind="eval_progress", done=32, total=100, acc=0.25, acc_norm=0.3125)
    run.append_metrics(64, kind="eval_progress", done=64, total=100, acc=0.28125, acc_norm=0.34375)
    at = open_page()                                        # a new session: the page finds the run still going
    assert "**llmfs-tiny** on **HellaSwag**" in texts(at.markdown)
    assert any(b.label == "Stop" for b in at.button)
    running = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert [t["name"] for t in running] == ["accuracy", "length-normalised accuracy"]
    assert running[1]["x"][-2:] == [32, 64] and running[1]["y"][-2:] == [0.3125, 0.34375]
    assert at.button(key="l14.start").disabled


def test_before_after_pairs_only_a_model_with_its_base(llmfs_home, seed):
    tuned = seed_trained_model(llmfs_home, seed)
    seed_eval(llmfs_home, str(tuned), "llmfs-cloze", TUNED_ITEMS)
    rows = eval_view.result_rows(eval_view.finished_evals())
    assert eval_view.before_after(rows) == []                  # the base was never scored
    seed_eval(llmfs_home, "llmfs-tiny", "hellaswag", BASE_ITEMS)
    assert eval_view.before_after(eval_view.result_rows(eval_view.finished_evals())) == []  # another task
    seed_eval(llmfs_home, "llmfs-tiny", "llmfs-cloze", BASE_ITEMS)
    (pair,) = eval_view.before_after(eval_view.result_rows(eval_view.finished_evals()))
    assert pair["task"] == "llmfs-cloze" and pair["metric"] == "acc_norm" and pair["after"] == 1.0


def test_a_tiny_evaluation_from_the_page_lands_in_the_table(home_with_default):
    at = open_page()
    at.number_input(key="l14.limit").set_value(8).run()
    at.button(key="l14.start").click().run()
    assert not at.exception and not at.error
    (run_id,) = at.session_state["l14.batch"]
    status = home_with_default / "runs" / run_id / "status.json"
    deadline = time.time() + 120
    while json.loads(status.read_text())["state"] not in ("succeeded", "failed") and time.time() < deadline:
        time.sleep(0.3)
    assert json.loads(status.read_text())["state"] == "succeeded", json.loads(status.read_text()).get("error")
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table["run"].tolist() == [run_id, run_id] and set(table["n"]) == {8}
    assert "Accuracy" in [m.label for m in at.metric]
    assert (home_with_default / "runs" / run_id / "items.jsonl").read_text().count("\n") == 8


def test_adapters_are_tested_on_top_of_every_model_and_alone():
    from app.eval_view import plan
    from llmfs.config import EvalConfig
    cfgs = plan(EvalConfig(limit=5), ["llmfs-tiny", "/m/other"], {"llmfs-cloze": ""}, ["/a/lora1"])
    assert [(c.model, c.adapter) for c in cfgs] == [("llmfs-tiny", ""), ("llmfs-tiny", "/a/lora1"),
                                                     ("/m/other", ""), ("/m/other", "/a/lora1")]


# -- #16: formats in the page, adapters by name, readable task picker, text shown as text -----------------------
def library_adapter(name: str):
    """An adapter in the library (L15's upload path): a LoRA config and one lora_A matrix."""
    import io
    import zipfile

    import torch
    from safetensors.torch import save

    from llmfs import adapters as lib
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["c_attn"],
              "base_model_name_or_path": "llmfs-tiny"}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("adapter_config.json", json.dumps(config))
        zf.writestr("adapter_model.safetensors",
                    save({"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight": torch.zeros(4, 32)}))
    return lib.import_zip(buf.getvalue(), name=name)


def test_benchmarks_are_pills_with_short_names_and_say_what_they_measure(llmfs_home):
    at = open_page()
    pills = at.pills(key="l14.tasks")
    assert pills.options == ["llmfs-cloze", "Perplexity", "HellaSwag", "MMLU", "TruthfulQA MC1", "TruthfulQA MC2",
                             "Your own questions"]
    assert max(len(o) for o in pills.options) <= 20 and pills.proto.wrap  # nothing to clip: they wrap in the column
    pills.set_value(["llmfs-cloze", "mmlu"]).run()
    captions = texts(at.caption)
    assert "Exam questions in 57 subjects" in captions and "Which eight words really come next" in captions


def test_the_format_of_a_benchmark_file_and_its_example_are_in_the_page(llmfs_home):
    from llmfs.eval.tasks import example_files
    at = open_page()
    at.pills(key="l14.tasks").set_value(["hellaswag"]).run()
    assert at.selectbox(key="l14.hellaswag.kind").value == "upload"
    shown = texts(at.markdown)
    assert "**Format of the file**" in shown
    for field in ("`activity_label`", "`ctx`", "`endings`", "`label`"):
        assert field in shown
    example = example_files("hellaswag")[0][2]
    assert example.decode().splitlines()[0] in texts(at.code)
    assert [b.proto.label for b in at.get("download_button") if b.proto.label != "Save these settings"] == \
        ["Example HellaSwag file"]
    assert at.file_uploader(key="l14.hellaswag.upload").proto.label == "Your HellaSwag file (up to 200 MB)"
    # the example file, uploaded as it is, is accepted and planned
    at.file_uploader(key="l14.hellaswag.upload").set_value(("hellaswag_example.jsonl", example,
                                                            "application/json")).run()
    assert not at.error and not at.exception
    assert not at.button(key="l14.start").disabled
    # a broken file: the refusal names the line and says where the format is
    bad = b'{"activity_label": "x", "context": "y", "endings": ["a", "b"], "label": 0}\n'
    at.file_uploader(key="l14.hellaswag.upload").set_value(("bad.jsonl", bad, "application/json")).run()
    (error,) = [e.value for e in at.error]
    assert "line 1: missing field 'ctx'" in error and "just above the upload box" in error
    assert at.button(key="l14.start").disabled
    at.pills(key="l14.tasks").set_value(["custom"]).run()
    assert [b.proto.label for b in at.get("download_button") if b.proto.label != "Save these settings"] == [
        "Example: multiple choice", "Example: prompt and reference"]


def test_adapters_are_picked_from_the_library_by_name(llmfs_home):
    adapter = library_adapter("poems-r4")
    at = open_page()
    pick = at.multiselect(key="l14.adapter_pick")
    assert pick.options == [adapter_view.adapter_label(adapter)]      # as L15's library names it
    assert pick.options[0].startswith("poems-r4 · ")
    pick.set_value([str(adapter.path)]).run()
    assert "2 evaluations" in texts(at.caption)                 # llmfs-tiny alone, and with the adapter


def seed_adapter_eval(home: Path, adapter_path: Path) -> Run:
    """A finished llmfs-cloze evaluation of llmfs-tiny with the adapter at `adapter_path` on it."""
    run = Run(home / "runs" / seed_eval(home, "llmfs-tiny", "llmfs-cloze", BASE_ITEMS))
    config = json.loads((run.path / "config.json").read_text())
    config["config"]["adapter"] = str(adapter_path)
    (run.path / "config.json").write_text(json.dumps(config))
    assert run.config()["adapter"] == str(adapter_path)
    return run


def test_results_and_cards_name_the_adapter_and_follow_a_rename(llmfs_home):
    from llmfs import adapters as lib
    adapter = library_adapter("poems-r4")
    run = seed_adapter_eval(llmfs_home, adapter.path)
    rows = eval_view.result_rows(eval_view.finished_evals())
    assert {r["model"] for r in rows} == {"llmfs-tiny + poems-r4"}
    lib.rename_adapter(adapter.id, "sonnets")
    at = open_page()
    assert set(at.dataframe[0].value["model"]) == {"llmfs-tiny + sonnets"}
    assert set(specs(at)[0]["data"][0]["x"]) == {"llmfs-tiny + sonnets"}
    assert at.selectbox(key="l14.drill").options[0].startswith("llmfs-tiny + sonnets on llmfs-cloze · ")
    lib.delete_adapter(adapter.id)      # gone from the library: the name it had when tested, else its folder
    assert eval_view.tested_label(run.config(), {"adapter_name": "sonnets"}) == "llmfs-tiny + sonnets"
    assert eval_view.tested_label(run.config()) == f"llmfs-tiny + {adapter.path.name}"


def test_a_running_card_says_model_adapter_and_benchmark(llmfs_home):
    run = seed_adapter_eval(llmfs_home, library_adapter("poems-r4").path)
    (run.path / "results.json").unlink()
    run.update_status(state="running", result=None, progress={"done": 1, "total": 3, "unit": "questions"})
    at = open_page()
    assert "**llmfs-tiny + poems-r4** on **llmfs-cloze**" in texts(at.markdown)


def test_labels_say_model_adapter_and_benchmark():
    cfg = {"model": "llmfs-tiny", "adapter": "/gone/runs/eval-x-abc123/adapter", "task": "hellaswag",
           "data": "/up/my_scenes.jsonl"}
    assert eval_view.tested_label(cfg, {"adapter_name": "rank 8 on qkv"}) == "llmfs-tiny + rank 8 on qkv"
    assert eval_view.tested_label(cfg).startswith("llmfs-tiny + adapter of run ")
    assert eval_view.task_label(cfg) == "HellaSwag (my_scenes.jsonl)"
    assert eval_view.task_label({"task": "perplexity", "data": "wikitext"}) == "Perplexity (WikiText-2)"


def test_questions_from_data_are_shown_as_text(llmfs_home):
    prompt = "Module functools\n================\n\n`wraps` **bold** <b>x</b> [link](http://x)"
    wrong = item(0, [-1.0, -5.0, -6.0, -9.0], 3, choices=("# heading", "*a*", "`b`", "= = ="))
    wrong["prompt"] = prompt
    seed_eval(llmfs_home, "llmfs-tiny", "llmfs-cloze", [wrong])
    at = open_page()
    at.radio(key="l14.judge").set_value("acc").run()
    (label,) = [e.label for e in at.expander if e.label.startswith("#0")]
    assert "\\`wraps\\` \\*\\*bold\\*\\* \\<b\\>x\\</b\\> \\[link\\](http://x)" in label
    assert prompt in texts(at.text)                                     # st.text: shown as written
    assert prompt not in texts(at.markdown)
    choices = at.dataframe[2].value["choice"].tolist()
    assert choices == ["# heading", "*a*", "`b`", "= = ="]               # a table: never Markdown
