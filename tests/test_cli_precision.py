"""`train --precision` and `compare-precision`: the scaler's history in the JSON, one run per mode, the table."""

from __future__ import annotations

import pytest

from tests.test_cli import last_json, run_cli


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("Lists are mutable sequences. Tuples are immutable sequences. " * 300)
    return path


def test_train_fp16_reports_the_scaler(tiny_hf_folder, text_file, tmp_path):
    p = run_cli("train", "--model", str(tiny_hf_folder), "--data", str(text_file), "--steps", "4", "--batch-size",
                "2", "--seq-len", "32", "--eval-every", "0", "--precision", "fp16", "--json", home=tmp_path / "home")
    assert p.returncode == 0, p.stderr
    res = last_json(p.stdout)
    assert res["precision"] == "fp16" and res["loss_scales"] == [65536.0] * 4 and res["skipped_steps"] == 0
    assert res["peak_memory_bytes"] > 0 and res["tokens_per_s"] > 0


def test_compare_precision_runs_each_mode_and_prints_the_table(tiny_hf_folder, text_file, tmp_path):
    p = run_cli("compare-precision", "--model", str(tiny_hf_folder), "--data", str(text_file), "--steps", "3",
                "--batch-size", "2", "--seq-len", "32", "--eval-every", "0", "--modes", "fp32,bf16", "--json",
                home=tmp_path / "home")
    assert p.returncode == 0, p.stderr
    rows = last_json(p.stdout)["runs"]
    assert [r["precision"] for r in rows] == ["fp32", "bf16"] and all(r["state"] == "succeeded" for r in rows)
    assert rows[0]["speedup"] == 1.0 and rows[1]["speedup"] > 0 and abs(rows[1]["loss_diff"]) < 0.5
    assert len({r["run_id"] for r in rows}) == 2
    p = run_cli("compare-precision", "--model", str(tiny_hf_folder), "--data", str(text_file), "--steps", "2",
                "--modes", "fp32,fp8", home=tmp_path / "home")
    assert p.returncode == 2 and "fp8" in p.stderr
