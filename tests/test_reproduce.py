"""Repeating a run (llmfs.reproduce): the command shown, parsed by the CLI's own parser, gives the run's config back
(every type of field); run for real it makes a run with the same config; the Python snippet does too."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from llmfs import cli, reproduce
from llmfs.config import EvalConfig, TrainConfig
from llmfs.data.pipeline import PipelineConfig
from llmfs.runs import Run

REPO = Path(__file__).resolve().parents[1]


def as_run_config(cfg, **extra) -> dict:
    """The config as a run's config.json holds it (JSON: tuples are lists)."""
    return json.loads(json.dumps({**dataclasses.asdict(cfg), **extra}))


def parsed(cmd: str):
    words = shlex.split(cmd)
    assert words[:3] == ["python", "-m", "llmfs"]
    return cli.build_parser().parse_args(words[3:])


TRAIN = TrainConfig(model="/data/my model", data="-notes.txt", data_format="chat", pack=True, steps=7,
                    epochs=1.5, lr=3e-5, min_lr_ratio=0.0, save_model=False, double_quant=False, lora_rank=8,
                    lora_alpha=16.5, lora_targets="qkv,mlp_in", tf32=True, grad_scaling=False, seed=0)


def test_a_training_runs_command_gives_its_config_back():
    cmd = reproduce.command("train", as_run_config(TRAIN, seq_len_note="ignored: not a setting"))
    assert cmd.startswith("python -m llmfs train --model '/data/my model' --data=-notes.txt ")
    assert "--no-save-model" in cmd and "--pack" in cmd and "--epochs 1.5" in cmd and "--lr 3e-05" in cmd
    assert "--batch-size" not in cmd and "--seq-len-note" not in cmd   # defaults and non-settings left out
    assert cli.config_from_args(TrainConfig, parsed(cmd)) == TRAIN


def test_defaults_give_the_shortest_command():
    assert reproduce.argv("train", as_run_config(TrainConfig())) == ["train", "--model", "llmfs-tiny", "--data",
                                                                      "llmfs-corpus"]
    assert reproduce.argv("eval", as_run_config(EvalConfig())) == ["eval", "--model", "llmfs-tiny", "--task",
                                                                   "llmfs-cloze"]


def test_an_evaluations_command_gives_its_config_back():
    cfg = EvalConfig(model="gpt2", adapter="/runs/x/adapter", task="mmlu", num_fewshot=5, limit=3, seed=9,
                     device="cpu", data="q's.jsonl")
    cmd = reproduce.command("eval", as_run_config(cfg))
    assert cli.config_from_args(EvalConfig, parsed(cmd)) == cfg


def test_a_pipelines_command_gives_its_config_back():
    cfg = PipelineConfig(inputs=("a b.jsonl", "llmfs-corpus", "-odd.txt"), weights=(0.5, 0.25, 0.25),
                         mix_until="first_exhausted", filters=("c4", "length"), dedup="minhash",
                         thresholds={"length": {"min_words": 3}}, shingle_size=3, bands=7, rows=4, limit=100,
                         shard_max_docs=50, shard_max_bytes=5000, errors="raise", seed=3, samples_per_reason=0)
    config = as_run_config(cfg, out_dir="/srv/out dir")
    args = parsed(reproduce.command("pipeline", config))
    assert cli.pipeline_config(args) == cfg and args.out == "/srv/out dir"
    app_run = as_run_config(PipelineConfig(inputs=("x.txt",)))   # the app's: shards in the run's own folder
    assert reproduce.argv("pipeline", app_run) == ["data", "--input", "x.txt"]
    assert cli.pipeline_config(parsed(reproduce.command("pipeline", app_run))) == PipelineConfig(inputs=("x.txt",))


def test_other_kinds_are_not_repeated():
    with pytest.raises(ValueError, match="cannot be repeated"):
        reproduce.argv("tokenize", {})


def test_the_snippet_builds_the_same_config():
    code = reproduce.snippet("train", as_run_config(TRAIN))
    assert len(code.splitlines()) <= 12
    namespace: dict = {}
    exec("\n".join(line for line in code.splitlines() if line.startswith(("from", "import", "cfg ="))), namespace)
    assert namespace["cfg"] == TRAIN
    pipeline = PipelineConfig(inputs=("a",), filters=("c4",), thresholds={"c4": {"min_sentences": 2}})
    namespace = {}
    code = reproduce.snippet("pipeline", as_run_config(pipeline, out_dir="/srv/x"))
    exec("\n".join(line for line in code.splitlines() if line.startswith(("from", "import", "cfg ="))), namespace)
    assert namespace["cfg"] == pipeline and "/srv/x" not in code   # the new run writes into its own folder


# -- for real: the command and the snippet each start a run with the same config -------------------------------------
TINY = TrainConfig(steps=2, batch_size=2, seq_len=16, lr=2e-3, warmup_steps=1, eval_every=0, eval_batches=1,
                   checkpoint_every=0, save_model=False, seed=7, device="cpu")


def test_the_command_run_for_real_makes_a_run_with_the_same_config(home_with_default, tmp_path):
    original = as_run_config(TINY)
    out = tmp_path / "again"
    words = shlex.split(reproduce.command("train", original))
    env = {**os.environ, "LLMFS_HOME": str(home_with_default)}
    p = subprocess.run([sys.executable, *words[1:], "--out", str(out), "--json"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout.splitlines()[-1])["state"] == "succeeded"
    assert Run(out).config() == original


def test_the_snippet_run_for_real_makes_a_run_with_the_same_config(home_with_default, capsys):
    original = as_run_config(TINY)
    namespace: dict = {}
    exec(reproduce.snippet("train", original), namespace)
    try:
        run = namespace["jobs"].get(namespace["run_id"])
        assert run.state == "succeeded" and run.config() == original
        printed = capsys.readouterr().out
        assert printed.startswith(f"{run.run_id} succeeded final training loss: ")
        assert float(printed.split(": ")[-1]) == pytest.approx(run.status()["result"]["final_loss"])
    finally:
        namespace["jobs"].shutdown()


def test_a_pipeline_snippet_run_for_real(llmfs_home, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": f"Document number {i} says something."}) + "\n" for i in range(4))
                   + json.dumps({"text": "Document number 0 says something."}) + "\n")
    cfg = PipelineConfig(inputs=(str(src),), dedup="exact", shard_max_docs=2)
    namespace: dict = {}
    exec(reproduce.snippet("pipeline", as_run_config(cfg, out_dir=str(tmp_path / "elsewhere"))), namespace)
    try:
        run = namespace["jobs"].get(namespace["run_id"])
        assert run.state == "succeeded" and run.config() == as_run_config(cfg)
        assert capsys.readouterr().out.strip().endswith("documents kept: 4")
        assert len(list((run.path / "shards").glob("shard-*.tar"))) == 2 and not (tmp_path / "elsewhere").exists()
    finally:
        namespace["jobs"].shutdown()
