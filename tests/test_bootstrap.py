"""The embedded default: built once, loadable by transformers, and better than random init on held-out text."""

from __future__ import annotations

import threading

import torch

from llmfs.bootstrap import TINY_CONFIG, DefaultAssets, ensure_default
from llmfs.weights import load_hf_folder


def test_layout_and_ready_marker(default_assets_template):
    a = default_assets_template
    assert a.ready()
    assert sorted(p.name for p in a.corpus_train.glob("*.tar"))[0] == "corpus-000000.tar"
    assert list(a.corpus_heldout.glob("heldout-*.tar"))
    assert (a.model_dir / "config.json").exists() and (a.model_dir / "model.safetensors").exists()
    assert (a.model_dir / "tokenizer.json").exists()
    info = a.info()
    assert info["corpus"]["train_documents"] > 100 and info["corpus"]["vocab_size"] == TINY_CONFIG.vocab_size
    # Even a 20-step pretrain beats random init on held-out text; the real 600-step one gets far lower.
    assert info["pretrain"]["heldout_loss"] < info["pretrain"]["random_init_heldout_loss"] - 0.5


def test_transformers_loads_llmfs_tiny_with_equal_logits(default_assets_template):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder = default_assets_template.model_dir
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    ours = load_hf_folder(folder).eval()
    ids = torch.tensor([tok("def fibonacci(n):\n    return")["input_ids"]])
    with torch.no_grad():
        delta = (hf(ids).logits - ours(ids)[0]).abs().max().item()
    assert delta < 1e-4


def test_second_call_reuses_the_build(default_assets_template, monkeypatch):
    import llmfs.bootstrap as bootstrap
    monkeypatch.setattr(bootstrap, "_build", lambda *a, **k: (_ for _ in ()).throw(AssertionError("rebuilt")))
    assert ensure_default(root=default_assets_template.root).ready()


def test_concurrent_callers_build_once(tmp_path, monkeypatch):
    import llmfs.bootstrap as bootstrap
    builds = []

    def fake_build(assets, progress, pretrain):
        builds.append(1)
        assets.model_dir.mkdir(parents=True)
        (assets.model_dir / "config.json").write_text("{}")
        bootstrap.atomic_write_json(assets.root / "READY.json", {"version": bootstrap.VERSION})

    monkeypatch.setattr(bootstrap, "_build", fake_build)
    root = tmp_path / "default"
    threads = [threading.Thread(target=ensure_default, kwargs={"root": root}) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert builds == [1] and DefaultAssets(root).ready()
