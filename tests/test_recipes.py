"""The train recipe end to end through the job runner: a local HF folder and a text file, and the bundled default."""

from __future__ import annotations

import pytest

from llmfs.config import ConfigError, TrainConfig
from llmfs.recipes import submit_train
from llmfs.runner import default_manager
from llmfs.runs import SUCCEEDED
from llmfs.sources import SourceError


@pytest.fixture
def jobs(llmfs_home):
    jm = default_manager(telemetry_interval=0.2)
    yield jm
    jm.shutdown()


def test_train_job_on_local_folder_and_text_file(jobs, tiny_hf_folder, tmp_path):
    data = tmp_path / "notes.txt"
    data.write_text("Lists are mutable sequences. Tuples are immutable sequences. " * 200)
    cfg = TrainConfig(model=str(tiny_hf_folder), data=str(data), steps=8, batch_size=4, seq_len=32,
                      warmup_steps=1, eval_every=4, device="cpu")
    rid = submit_train(jobs, cfg, owner="t")
    assert jobs.wait(rid, 120) == SUCCEEDED, jobs.get(rid).status().get("traceback")
    run = jobs.get(rid)
    result = run.status()["result"]
    assert len(result["losses"]) == 8 and result["eval_loss"] is not None
    assert [m["step"] for m in run.read_metrics("eval")] == [4, 8]
    assert (run.path / "model" / "config.json").exists()
    assert run.read_metrics("telemetry")
    # Text generated before and after fine-tuning, from prompts cut out of the held-out text.
    samples = result["samples"]
    assert len(samples) == 2 and all(s["prompt"] and isinstance(s["after"], str) for s in samples)
    assert samples[0]["prompt"] in data.read_text()


def test_random_init_starts_near_uniform_loss(jobs, home_with_default):
    import math
    cfg = TrainConfig(init="random", steps=2, batch_size=2, seq_len=32, warmup_steps=1, device="cpu",
                      save_model=False)
    rid = submit_train(jobs, cfg)
    assert jobs.wait(rid, 120) == SUCCEEDED, jobs.get(rid).status().get("traceback")
    first = jobs.get(rid).status()["result"]["losses"][0]
    assert abs(first - math.log(4096)) < 0.5


def test_preflight_refuses_before_queueing(jobs, home_with_default, tmp_path):
    with pytest.raises(ConfigError, match="Sequence length must be between 2 and 256"):
        submit_train(jobs, TrainConfig(seq_len=1000))
    with pytest.raises(SourceError, match="No data at"):
        submit_train(jobs, TrainConfig(data=str(tmp_path / "missing.txt")))
    assert jobs.list_runs() == []


def test_bad_jsonl_fails_with_line_number(jobs, tiny_hf_folder, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": broken}\n')
    rid = submit_train(jobs, TrainConfig(model=str(tiny_hf_folder), data=str(bad), steps=2, seq_len=16,
                                           device="cpu"))
    assert jobs.wait(rid, 60) == "failed"
    assert jobs.get(rid).status()["error"].startswith(f"{bad}, line 2: not valid JSON")


def test_hub_dataset_offline_fails_fast(monkeypatch):
    import time

    from llmfs.data.text import DataError, read_texts
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    with pytest.raises(DataError, match="HF_HUB_OFFLINE"):
        read_texts("hf:wikitext:wikitext-2-raw-v1")
    assert time.time() - t0 < 5


def test_generation_before_and_after_is_seeded(home_with_default):
    from llmfs.generate import SampleConfig, generate_text
    from llmfs.weights import load_pretrained
    model, tok = load_pretrained("llmfs-tiny")
    a = generate_text(model, tok, "def f(x):", SampleConfig(seed=3, max_new_tokens=12))
    b = generate_text(model, tok, "def f(x):", SampleConfig(seed=3, max_new_tokens=12))
    greedy = generate_text(model, tok, "def f(x):", SampleConfig(temperature=0.0, max_new_tokens=12))
    assert a == b and isinstance(greedy, str) and len(tok(a)["input_ids"]) <= 12


def test_linear_probe_job_trains_only_the_head(jobs, tiny_hf_folder, tmp_path):
    import torch

    from llmfs.weights import load_hf_folder
    data = tmp_path / "notes.txt"
    data.write_text("Lists are mutable sequences. Tuples are immutable sequences. " * 200)
    cfg = TrainConfig(model=str(tiny_hf_folder), data=str(data), steps=3, batch_size=4, seq_len=32, lr=1e-2,
                      warmup_steps=1, eval_every=0, device="cpu", freeze="linear_probe")
    rid = submit_train(jobs, cfg)
    assert jobs.wait(rid, 120) == SUCCEEDED, jobs.get(rid).status().get("traceback")
    run = jobs.get(rid)
    assert run.status()["result"]["trainable_params"] == 300 * 32  # the untied head: vocab x n_embd
    assert run.read_metrics("freeze")[0]["strategy"] == "linear_probe"
    assert "Freezing strategy linear_probe" in run.log_tail(40)
    before, after = load_hf_folder(tiny_hf_folder), load_hf_folder(run.path / "model")
    assert not after.config.tie_word_embeddings  # saved with its own head
    assert torch.equal(after.transformer.wte.weight, before.transformer.wte.weight)
    assert torch.equal(after.transformer.h[1].mlp.c_fc.weight, before.transformer.h[1].mlp.c_fc.weight)
    assert not torch.equal(after.lm_head.weight, before.lm_head.weight)


def test_preflight_refuses_more_blocks_than_the_model_has(jobs, tiny_hf_folder):
    with pytest.raises(ConfigError, match=r"Blocks \(freeze_bottom / train_top\) must be between 0 and 2, the model's number of blocks"):
        submit_train(jobs, TrainConfig(model=str(tiny_hf_folder), seq_len=16, freeze="train_top", freeze_layers=3))
    assert jobs.list_runs() == []
