"""Training on examples (chat, prompt / response, Alpaca) through the job runner: small sets finish, the run says
what it read, bad files are refused before queueing."""

from __future__ import annotations

import json

import pytest

from llmfs.config import PYTHON_QA, TrainConfig
from llmfs.data.examples import ExampleError
from llmfs.recipes import example_format, submit_train
from llmfs.runner import default_manager
from llmfs.runs import SUCCEEDED

CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"),
            ("Portugal", "Lisbon"), ("Austria", "Vienna"), ("Greece", "Athens"), ("Poland", "Warsaw"),
            ("Norway", "Oslo"), ("Ireland", "Dublin")]


@pytest.fixture
def jobs(llmfs_home):
    jm = default_manager(telemetry_interval=0.5)
    yield jm
    jm.shutdown()


def ten_examples(path):
    path.write_text("".join(json.dumps({"prompt": f"What is the capital of {c}?", "response": f"{a}."}) + "\n"
                            for c, a in CAPITALS))
    return path


def test_ten_examples_train_an_adapter_and_the_run_reports_what_it_read(jobs, tiny_hf_folder, tmp_path):
    data = ten_examples(tmp_path / "capitals.jsonl")
    cfg = TrainConfig(model=str(tiny_hf_folder), data=str(data), steps=6, batch_size=4, warmup_steps=1, eval_every=3,
                      device="cpu", lora_rank=4, lora_targets="all-linear")
    assert example_format(cfg) == "prompt"
    rid = submit_train(jobs, cfg, owner="t")
    assert jobs.wait(rid, 120) == SUCCEEDED, jobs.get(rid).status().get("traceback")
    run = jobs.get(rid)
    result = run.status()["result"]
    report = result["examples"]
    assert result["data_format"] == "prompt" and report["format"] == "prompt"
    assert report["examples"] == 9 and report["heldout_examples"] == 1 and report["truncated"] == 0
    assert 0 < report["trained_tokens"] < report["tokens"]
    # the sequence length followed the examples (the default was not set) and the run says so
    assert result["seq_len"] == report["seq_len"] < 128 and "follows the examples" in result["seq_len_note"]
    assert result["heldout_on"] == "1 held-out example of 10" and result["eval_loss"] is not None
    assert [m["step"] for m in run.read_metrics("eval")] == [3, 6]
    assert run.read_metrics("examples")[0]["trained_tokens"] == report["trained_tokens"]
    # before / after: the held-out question, answered through the template
    assert result["samples"][0]["prompt"] == "What is the capital of Austria?"   # the 6th: every 6th of 10 is held out
    assert result["samples"][0]["expected"] == "Vienna."   # the answer the example gives, beside the model's
    assert (run.path / "adapter" / "adapter_config.json").exists()


def test_three_examples_measure_on_themselves_and_say_so(jobs, tiny_hf_folder, tmp_path):
    data = tmp_path / "three.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Capital of {c}?"},
                                                     {"role": "assistant", "content": a}]}) + "\n"
                            for c, a in CAPITALS[:3]))
    rid = submit_train(jobs, TrainConfig(model=str(tiny_hf_folder), data=str(data), steps=2, batch_size=2,
                                         warmup_steps=1, device="cpu", save_model=False))
    assert jobs.wait(rid, 120) == SUCCEEDED, jobs.get(rid).status().get("traceback")
    result = jobs.get(rid).status()["result"]
    assert result["examples"]["examples"] == 3 and result["examples"]["heldout_examples"] == 3
    assert "too few to hold any out" in result["heldout_note"] and result["eval_loss"] is not None


def test_a_bad_example_file_is_refused_before_queueing_with_its_line(jobs, tiny_hf_folder, tmp_path):
    data = tmp_path / "mixed.jsonl"
    data.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n" + json.dumps({"prompt": "a"}) + "\n")
    with pytest.raises(ExampleError, match="mixed.jsonl line 2: not an example"):
        submit_train(jobs, TrainConfig(model=str(tiny_hf_folder), data=str(data), steps=1, device="cpu"))
    assert jobs.list_runs() == []
    notes = tmp_path / "notes.txt"
    notes.write_text("plain text")
    with pytest.raises(ExampleError, match="not a file of examples"):
        example_format(TrainConfig(data=str(notes), data_format="chat"))


def test_the_built_in_question_set_trains_without_any_file(jobs, tiny_hf_folder):
    cfg = TrainConfig(model=str(tiny_hf_folder), data=PYTHON_QA, steps=2, batch_size=4, warmup_steps=1,
                      device="cpu", save_model=False, seq_len=64)
    rid = submit_train(jobs, cfg)
    assert jobs.wait(rid, 120) == SUCCEEDED, jobs.get(rid).status().get("traceback")
    result = jobs.get(rid).status()["result"]
    assert result["data_format"] == "chat" and result["examples"]["examples"] > 100
    assert result["seq_len"] == 64 and result["examples"]["truncated"] > 0   # set by the person: kept, long ones cut


def test_cli_train_detects_examples_and_reports_them(llmfs_home, tiny_hf_folder, tmp_path):
    """`train --data FILE --format prompt --json`: the run's JSON says how many examples, trained tokens and cuts."""
    import subprocess
    import sys
    data = ten_examples(tmp_path / "capitals.jsonl")
    p = subprocess.run([sys.executable, "-m", "llmfs", "train", "--model", str(tiny_hf_folder), "--data", str(data),
                        "--format", "prompt", "--steps", "2", "--batch-size", "2", "--seq-len", "40", "--device",
                        "cpu", "--no-save-model", "--json"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["state"] == SUCCEEDED and out["data_format"] == "prompt"
    examples = out["examples"]
    assert examples["examples"] + examples["heldout_examples"] + examples["dropped"] == 10
    assert examples["trained_tokens"] > 0 and examples["seq_len"] == 40 and examples["format"] == "prompt"
    assert isinstance(examples["truncated"], int)


def test_examples_cut_to_nothing_are_refused_before_queueing(jobs, tiny_hf_folder, tmp_path):
    data = ten_examples(tmp_path / "capitals.jsonl")
    with pytest.raises(ExampleError, match="nothing is left to learn from: use a longer sequence length"):
        submit_train(jobs, TrainConfig(model=str(tiny_hf_folder), data=str(data), seq_len=8, device="cpu"))
    assert jobs.list_runs() == []
