"""The runner: results with standard errors and drill-down records, the eval job, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from llmfs.config import EvalConfig
from llmfs.eval.runner import evaluate, submit_eval
from llmfs.eval.scorer import mean_stderr, pooled_stderr
from llmfs.model import GPT, GPTConfig
from llmfs.sources import SourceError

SHARED_BENCHMARKS = Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks"
needs_samples = pytest.mark.skipif(not SHARED_BENCHMARKS.is_dir(), reason="shared benchmark samples not present")


@pytest.fixture
def model_and_tokenizer(tiny_hf_folder):
    from transformers import AutoTokenizer
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=300, n_positions=256, n_embd=32, n_layer=2, n_head=2)).eval()
    return model, AutoTokenizer.from_pretrained(tiny_hf_folder)


@needs_samples
def test_hellaswag_results_and_drill_down(model_and_tokenizer):
    model, tok = model_and_tokenizer
    seen = []
    cfg = EvalConfig(task="hellaswag", data=str(SHARED_BENCHMARKS / "hellaswag_val_200.jsonl"), limit=6)
    res = evaluate(model, tok, cfg, progress=lambda done, total, running: seen.append((done, total, running)))
    assert res["n_items"] == 6 and res["task"] == "hellaswag" and not res["stopped"]
    items = res["items"]
    for rec in items:
        assert rec["predicted"] == max(range(4), key=lambda i: rec["logliks"][i])
        norm = [ll / len(c) for ll, c in zip(rec["logliks"], rec["choices"])]
        assert rec["predicted_norm"] == max(range(4), key=lambda i: norm[i])
        assert rec["correct"] == (rec["predicted"] == rec["gold"])
    accs = [float(r["correct"]) for r in items]
    assert res["metrics"]["acc"] == pytest.approx(sum(accs) / 6)
    assert res["metrics"]["acc_stderr"] == pytest.approx(mean_stderr(accs))
    assert set(res["metrics"]) == {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"}
    assert seen[-1][:2] == (6, 6) and set(seen[-1][2]) == {"acc", "acc_norm"}


@needs_samples
def test_mmlu_overall_is_weighted_by_subject_size(model_and_tokenizer):
    model, tok = model_and_tokenizer
    res = evaluate(model, tok, EvalConfig(task="mmlu", data=str(SHARED_BENCHMARKS / "mmlu_sample.jsonl"), limit=4))
    groups = res["groups"]
    assert len(groups) == 5 and all(g["n"] == 4 for g in groups.values())
    weighted = sum(g["acc"] * g["n"] for g in groups.values()) / sum(g["n"] for g in groups.values())
    assert res["metrics"]["acc"] == pytest.approx(weighted)
    assert res["metrics"]["acc_stderr"] == pytest.approx(
        pooled_stderr([g["acc_stderr"] for g in groups.values()], [g["n"] for g in groups.values()]))


class CharTokenizer:
    bos_token_id = eos_token_id = 0

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) for c in text]


class NextLetterModel:
    """Always predicts the next letter of the alphabet (logit 10 for id + 1): greedy after "a" is "bcd..."."""

    config = type("Cfg", (), {"n_positions": 32})()

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.nn.functional.one_hot((ids + 1) % 128, 128).float()  # (B, T, 128)


def test_reference_items_score_loglik_perplexity_and_exact_match(tmp_path):
    path = tmp_path / "ref.jsonl"
    path.write_text(json.dumps({"prompt": "a", "reference": "bcd"}) + "\n"
                    + json.dumps({"prompt": "a", "reference": "bce"}) + "\n")
    res = evaluate(NextLetterModel(), CharTokenizer(), EvalConfig(task="custom", data=str(path)))
    first, second = res["items"]
    assert first["exact_match"] and not second["exact_match"]
    hit = 10.0 - math.log(math.exp(10.0) + 127)  # log-probability of the predicted letter
    miss = 0.0 - math.log(math.exp(10.0) + 127)
    assert first["loglik"] == pytest.approx(3 * hit, abs=1e-4)
    assert second["loglik"] == pytest.approx(2 * hit + miss, abs=1e-4)
    assert res["metrics"]["exact_match"] == 0.5
    assert res["metrics"]["perplexity"] == pytest.approx(math.exp(-(5 * hit + miss) / 6), rel=1e-4)
    assert res["metrics"]["perplexity_stderr"] > 0  # the two items differ, so resampling them spreads the score


@needs_samples
def test_perplexity_task_rolling_and_sliding(model_and_tokenizer):
    model, tok = model_and_tokenizer
    cfg = EvalConfig(task="perplexity", data=str(SHARED_BENCHMARKS / "wikitext2_test_sample.txt"), limit=1,
                     max_length=64)
    rolling = evaluate(model, tok, cfg)
    sliding = evaluate(model, tok, cfg.replace(stride=64))
    assert rolling["metrics"]["word_perplexity"] == pytest.approx(sliding["metrics"]["word_perplexity"], rel=1e-5)
    rec = rolling["items"][0]
    assert rec["words"] > 100 and rec["bytes"] > rec["words"]
    assert rolling["metrics"]["bits_per_byte"] == pytest.approx(-rec["loglik"] / rec["bytes"] / math.log(2))


@needs_samples
def test_a_stopped_evaluation_keeps_what_it_scored(model_and_tokenizer):
    model, tok = model_and_tokenizer
    calls = []
    cfg = EvalConfig(task="truthfulqa_mc1", data=str(SHARED_BENCHMARKS / "truthfulqa_mc_100.jsonl"), limit=40)
    res = evaluate(model, tok, cfg, should_stop=lambda: bool(calls.append(1)) or len(calls) > 1)
    assert res["stopped"] and res["n_items"] == 32 and res["n_total"] == 40


def test_eval_job_writes_results_and_items(home_with_default, tmp_path):
    from llmfs.runner import default_manager
    jobs = default_manager(telemetry_interval=60)
    try:
        run_id = submit_eval(jobs, EvalConfig(task="llmfs-cloze", limit=40, batch_size=8))
        assert jobs.wait(run_id, timeout=300) == "succeeded", jobs.get(run_id).status()
        run = jobs.get(run_id)
        results = json.loads((run.path / "results.json").read_text())
        assert results["n_items"] == 40 and 0 <= results["metrics"]["acc"] <= 1
        assert results["metrics"]["acc_stderr"] is not None and "items" not in results
        items = [json.loads(line) for line in (run.path / "items.jsonl").read_text().splitlines()]
        assert len(items) == 40 and {"prompt", "choices", "logliks", "predicted", "gold", "correct"} <= set(items[0])
        progress = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
        progress = [p for p in progress if p["kind"] == "eval_progress"]
        assert [p["done"] for p in progress] == [32, 40] and "acc" in progress[-1]
        # what the Runs page and the instructor read: questions, not training steps
        assert run.status()["progress"] == {"done": 40, "total": 40, "unit": "questions"}
        with pytest.raises(SourceError, match="No data file"):
            submit_eval(jobs, EvalConfig(task="custom", data=str(tmp_path / "missing.jsonl")))
    finally:
        jobs.shutdown()


def test_cli_eval_prints_scores_with_standard_errors(home_with_default, tmp_path, capsys):
    from llmfs.cli import main
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps({"question": f"{i} + 1 =", "choices": [str(i + 1), str(i + 2)], "answer": 0})
                            + "\n" for i in range(5)))
    code = main(["eval", "--task", "custom", "--data", str(data), "--json"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out["state"] == "succeeded" and out["n_items"] == 5
    assert set(out["metrics"]) == {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"}
    code = main(["eval", "--task", "custom", "--json"])  # no data: refused before any job
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 2 and out["field"] == "data"


def test_an_adapter_is_named_by_its_library_name(llmfs_home, tmp_path):
    import io
    import zipfile

    from safetensors.torch import save

    from llmfs import adapters as lib
    from llmfs.eval.runner import adapter_name, progress_unit
    from llmfs.eval.tasks import Task
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("adapter_config.json", json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
                                                       "target_modules": ["c_attn"]}))
        zf.writestr("adapter_model.safetensors",
                    save({"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight": torch.zeros(4, 32)}))
    adapter = lib.import_zip(buf.getvalue(), name="poems-r4")
    assert adapter_name(str(adapter.path)) == "poems-r4"
    lib.rename_adapter(adapter.id, "sonnets")
    assert adapter_name(str(adapter.path)) == "sonnets"
    assert adapter_name(str(tmp_path / "not-an-adapter")) == "not-an-adapter"
    assert progress_unit(Task("perplexity", "perplexity", [], (), "x")) == "documents"
    assert progress_unit(Task("mmlu", "multiple_choice", [], (), "x")) == "questions"
