"""The CLI contract: one JSON object as the last stdout line, progress on stderr, bad input refused (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, home: Path, timeout=300):
    env = {**os.environ, "LLMFS_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "llmfs", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_train_json_contract(home_with_default, tmp_path):
    out_dir = tmp_path / "my-run"
    p = run_cli("train", "--model", "llmfs-tiny", "--data", "llmfs-corpus", "--steps", "12", "--batch-size", "4",
                "--seq-len", "32", "--lr", "1e-3", "--warmup-steps", "2", "--eval-every", "6", "--out", str(out_dir),
                "--name", "my  first\nrun", "--json", home=home_with_default)
    assert p.returncode == 0, p.stderr
    res = last_json(p.stdout)
    for key in ("run_dir", "final_loss", "losses", "tokens_per_s", "peak_memory_bytes", "trainable_params",
                "total_params"):
        assert key in res, key
    assert res["run_dir"] == str(out_dir) and res["state"] == "succeeded"
    assert res["name"] == "my first run" and json.loads((out_dir / "name.json").read_text())["name"] == "my first run"
    assert len(res["losses"]) == 12 and res["final_loss"] == res["losses"][-1]
    assert res["tokens_per_s"] > 0 and res["peak_memory_bytes"] > 0
    assert res["trainable_params"] == res["total_params"] > 1_000_000
    assert "step 12/12" in p.stderr                      # progress went to stderr
    assert (out_dir / "model" / "model.safetensors").exists()
    assert (out_dir / "checkpoints" / "last" / "state.json").exists()

    listing = run_cli("runs", "--json", home=home_with_default)
    assert listing.returncode == 0
    assert last_json(listing.stdout)["count"] == 0  # --out put it outside the registry folder


def test_a_run_name_too_long_is_refused_before_any_job(home_with_default):
    p = run_cli("train", "--steps", "2", "--name", "x" * 61, "--json", home=home_with_default)
    assert p.returncode == 2 and "at most 60 characters" in last_json(p.stdout)["error"]
    assert not (home_with_default / "runs").exists() or not any((home_with_default / "runs").iterdir())


@pytest.mark.parametrize("args,field", [
    (["--lr", "-1"], "lr"),
    (["--batch-size", "0"], "batch_size"),
    (["--seq-len", "4096"], "seq_len"),   # longer than llmfs-tiny's 256-token context
])
def test_bad_hyperparameters_refused_before_any_job(home_with_default, args, field):
    p = run_cli("train", "--steps", "5", *args, "--json", home=home_with_default)
    assert p.returncode == 2
    res = last_json(p.stdout)
    assert res["field"] == field and "between" in res["error"] and args[0] in res["hint"]  # the flag to change
    assert not (home_with_default / "runs").exists() or not any((home_with_default / "runs").iterdir())


def test_unknown_hub_id_offline_fails_fast(llmfs_home):
    p = run_cli("train", "--model", "gpt2", "--steps", "2", "--json", home=llmfs_home, timeout=60)
    assert p.returncode == 2  # refused before any job is queued
    res = last_json(p.stdout)
    assert "Cannot fetch 'gpt2'" in res["error"] and "llmfs-tiny" in res["error"]
    assert not (llmfs_home / "runs").exists() or not any((llmfs_home / "runs").iterdir())


def test_runs_lists_registry(home_with_default):
    from llmfs.runs import Run
    Run.create(home_with_default / "runs" / "20260101-000000-train-abc123", "train", {"lr": 1e-3})
    p = run_cli("runs", "--json", home=home_with_default)
    res = last_json(p.stdout)
    assert res["count"] == 1
    # The creating process (this test) is alive, so the pending run is not marked interrupted.
    assert res["runs"][0]["state"] == "pending"
