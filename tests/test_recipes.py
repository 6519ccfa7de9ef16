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
    with pytest.raises(ConfigError, match=r"Blocks \(freeze_bottom / train_top\) must be between 0 and 2, the model's "
                                          r"number of blocks"):
        submit_train(jobs, TrainConfig(model=str(tiny_hf_folder), seq_len=16, freeze="train_top", freeze_layers=3))
    assert jobs.list_runs() == []


# -- own text: a few paragraphs train to the end (issue 16) ------------------------------------------------------
PARAGRAPHS = "\n\n".join([
    "My grandmother kept bees behind the old barn. Every summer she lifted the frames out one by one and held them "
    "up to the light, counting the capped cells.",
    "The honey was dark in the years when the heather flowered late, and pale and runny when the clover came "
    "first. She wrote the colour of each harvest in a small green notebook.",
    "When the hives swarmed she walked out with a cardboard box and a soft brush, talking to the bees the whole "
    "time as if they were children who had wandered off.",
    "In winter the hives were wrapped in sacking and the notebook went back on the kitchen shelf, between the "
    "recipes and the seed catalogues.",
    "I still have the notebook. The last entry says only: good year, gentle bees, forty jars.",
])


def test_a_few_paragraphs_train_to_the_end(jobs, home_with_default, tmp_path):
    """Five paragraphs (1.2 kB): their held-out share (the last 5%) is far shorter than one sequence, which used to
    fail the run after it was queued ("Only 25 tokens of data")."""
    from llmfs.data.text import summarize
    data = tmp_path / "bees.txt"
    data.write_text(PARAGRAPHS)
    summary = summarize(str(data), "llmfs-tiny")
    assert summary.documents == 1 and summary.characters == len(PARAGRAPHS)
    assert summary.train_tokens > 130 > summary.heldout_tokens > 4
    rid = submit_train(jobs, TrainConfig(data=str(data), steps=2, batch_size=2, warmup_steps=1, eval_every=1,
                                         device="cpu", save_model=False))
    assert jobs.wait(rid, 120) == SUCCEEDED, jobs.get(rid).status().get("error")
    result = jobs.get(rid).status()["result"]
    assert result["seq_len"] == 128 and result["seq_len_note"] is None
    assert result["eval_loss"] is not None and [m["step"] for m in jobs.get(rid).read_metrics("eval")] == [1, 2]
    assert result["heldout_on"] == "the last 5% of the text of bees.txt"
    assert f"only {summary.heldout_tokens} tokens" in result["heldout_note"]
    assert result["heldout_tokens"] == summary.heldout_tokens - 2


def test_short_text_gets_a_shorter_sequence_unless_one_was_set(jobs, home_with_default, tmp_path):
    from llmfs.data.text import summarize
    data = tmp_path / "short.txt"
    data.write_text(PARAGRAPHS[:300])
    tokens = summarize(str(data), "llmfs-tiny").train_tokens
    assert 66 <= tokens < 130
    with pytest.raises(ConfigError, match=f"Your text has {tokens} tokens to train on, fewer than one sequence of the "
                                          r"sequence length you set \(200 tokens, plus 2\). Set a sequence length of "
                                          "64 or less"):
        submit_train(jobs, TrainConfig(data=str(data), seq_len=200, device="cpu"))
    assert jobs.list_runs() == []
    rid = submit_train(jobs, TrainConfig(data=str(data), steps=2, batch_size=2, warmup_steps=1, device="cpu",
                                         save_model=False))
    run = jobs.get(rid)
    assert run.config()["seq_len"] == 64        # decided before queueing: the run's own settings say so
    assert jobs.wait(rid, 120) == SUCCEEDED, run.status().get("error")
    result = run.status()["result"]
    assert result["seq_len"] == 64
    assert result["seq_len_note"] == f"Your text has {tokens} tokens to train on: sequence length 64 is used instead " \
                                     "of 128."
    assert result["seq_len_note"] in (run.path / "log.txt").read_text()


def test_too_little_text_is_refused_before_queueing(jobs, home_with_default, tmp_path):
    data = tmp_path / "tiny.txt"
    data.write_text("Bees.")
    with pytest.raises(ConfigError, match="too little to train with"):
        submit_train(jobs, TrainConfig(data=str(data), device="cpu"))
    assert jobs.list_runs() == []


def test_fine_tune_on_the_corpus_reports_held_out_loss_on_homes_windows(jobs, home_with_default):
    """Home's held-out loss of llmfs-tiny and a fine-tune's are measured on the same windows of the same held-out
    documents: a step that changes nothing (learning rate 1e-8) reports Home's figure."""
    from llmfs.data.text import CORPUS_HELDOUT
    from llmfs.defaults import require_default
    pre = require_default().info()["pretrain"]
    rid = submit_train(jobs, TrainConfig(steps=1, batch_size=2, seq_len=32, lr=1e-8, warmup_steps=0,
                                         device="cpu", save_model=False))
    assert jobs.wait(rid, 240) == SUCCEEDED, jobs.get(rid).status().get("error")
    result = jobs.get(rid).status()["result"]
    assert result["heldout_on"] == CORPUS_HELDOUT
    assert result["eval_loss"] == pytest.approx(pre["heldout_loss"], abs=2e-4)
    windows = pre["heldout_windows"]
    assert result["heldout_tokens"] == windows["batches"] * windows["batch_size"] * windows["seq_len"]
