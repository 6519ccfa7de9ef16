"""Shared fixtures: offline, a temp LLMFS_HOME, tiny models built in place (never downloaded)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks"

# A quick pretrain: enough to produce a valid llmfs-tiny folder in seconds; the real one trains for minutes.
QUICK_PRETRAIN_STEPS = 20


@pytest.fixture(scope="session")
def default_assets_template(tmp_path_factory):
    """The embedded default built once per test session (real corpus and tokenizer, a 20-step llmfs-tiny)."""
    from llmfs.bootstrap import PRETRAIN, ensure_default
    root = tmp_path_factory.mktemp("llmfs-default") / "default"
    quick = PRETRAIN.replace(steps=QUICK_PRETRAIN_STEPS, warmup_steps=2, batch_size=8, eval_batches=2)
    return ensure_default(root=root, pretrain=quick)


@pytest.fixture
def llmfs_home(tmp_path, monkeypatch):
    """An empty LLMFS_HOME for one test."""
    home = tmp_path / "llmfs-home"
    home.mkdir()
    monkeypatch.setenv("LLMFS_HOME", str(home))
    return home


@pytest.fixture
def home_with_default(llmfs_home, default_assets_template):
    """An LLMFS_HOME whose embedded default is already built (copied from the session's template)."""
    shutil.copytree(default_assets_template.root, llmfs_home / "default")
    return llmfs_home


@pytest.fixture
def tiny_hf_folder(tmp_path):
    """A tiny GPT-2 made with transformers and saved with save_pretrained, plus a byte-level tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=300)
    folder = tmp_path / "tiny-gpt2"
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    _save_tiny_tokenizer(folder, vocab_size=300)
    return folder


@pytest.fixture
def tiny_llama_folder(tmp_path):
    """A tiny Llama made with transformers and saved with save_pretrained (another architecture than GPT-2)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=300, max_position_embeddings=128, bos_token_id=0,
                      eos_token_id=0, pad_token_id=0)
    folder = tmp_path / "tiny-llama"
    LlamaForCausalLM(cfg).save_pretrained(folder)
    _save_tiny_tokenizer(folder, vocab_size=300)
    return folder


@pytest.fixture
def fake_smollm2(llmfs_home, tiny_llama_folder):
    """The name smollm2-135m resolving to a tiny Llama in this test's LLMFS_HOME, as if unpacked: pages and
    commands that take the built-in name run in seconds (the real model has one test of its own)."""
    import json

    from llmfs.packaged import SMOLLM2, folder_of, is_converted
    folder = folder_of(SMOLLM2)
    shutil.copytree(tiny_llama_folder, folder)
    (folder / "llmfs_source.json").write_text(json.dumps({"name": SMOLLM2.name, "fake": "a tiny Llama for tests"}))
    assert is_converted(folder)
    return folder


@pytest.fixture
def tiny_mistral_folder(tmp_path):
    """A tiny Mistral saved with save_pretrained: an architecture neither of our models implements, which trains
    through transformers + PEFT."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    cfg = MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, vocab_size=300, max_position_embeddings=128, bos_token_id=0,
                        eos_token_id=0, pad_token_id=0, sliding_window=None)
    folder = tmp_path / "tiny-mistral"
    MistralForCausalLM(cfg).save_pretrained(folder)
    _save_tiny_tokenizer(folder, vocab_size=300)
    return folder


@pytest.fixture(scope="session")
def save_tiny_tokenizer():
    """The function that writes the tiny byte-level tokenizer into a model folder (for module-scoped fixtures that
    build their own tiny model; a test module cannot import conftest reliably, tests/app has one too)."""
    return _save_tiny_tokenizer


def _save_tiny_tokenizer(folder: Path, vocab_size: int) -> None:
    from llmfs.corpus import train_tokenizer
    texts = ["def add(a, b):\n    return a + b\n", "The quick brown fox jumps over the lazy dog. " * 20,
             "Python is a programming language. Lists, dicts and sets are built in."] * 10
    train_tokenizer(texts, folder, vocab_size=vocab_size)


# -- two workers (pytest-xdist, `make test`) ---------------------------------------------------------------------
# Tests that start many processes or a browser, or time a page under load, run one after another on one worker
# (`--dist loadgroup`): two of them at once on a 2-core machine would measure each other. Everything else is spread
# over both workers.
HEAVY = ("test_load.py", "test_distributed.py", "test_smollm2.py", "test_faults.py", "test_job_processes.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.path.name
        if name in HEAVY or name.startswith("test_browser") or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.xdist_group("heavy"))


# -- a clean exit -----------------------------------------------------------------------------------------------
# With torch, pyarrow and Streamlit all loaded, CPython's final teardown (C++ static destructors, after every test
# has passed and every report is written) sometimes aborts with "terminate called without an active exception",
# turning a green run into exit code 134. Nothing of ours runs then (faulthandler shows no Python frame): the
# JobManagers have already stopped their workers through their atexit hook. So once pytest is completely done we
# leave with its own exit status, skipping that teardown.
_EXIT_STATUS = {"value": 0}


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS["value"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    import sys
    if os.environ.get("LLMFS_TEST_NORMAL_EXIT"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS["value"])
