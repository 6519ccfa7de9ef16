"""The LoRA command line (L15): `train --lora-rank` writes a PEFT adapter that PEFT itself loads with our logits, and
`adapters list / export / merge` find, copy and fold it. Real runs on a tiny GPT-2; one training run is shared."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch
from test_cli import last_json, run_cli

RANK = 4


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory, save_tiny_tokenizer):
    """The same tiny GPT-2 as conftest's `tiny_hf_folder`, built once for the module (one training run serves
    every test here)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("base") / "tiny-gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=300)).save_pretrained(folder)
    save_tiny_tokenizer(folder, vocab_size=300)
    return folder


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("llmfs-home")


@pytest.fixture(scope="module")
def lora_run(base_folder, home, tmp_path_factory):
    """`train --lora-rank 4 --lora-targets qkv` for 3 steps; returns (process, its JSON)."""
    data = tmp_path_factory.mktemp("data") / "text.txt"
    data.write_text("The quick brown fox jumps over the lazy dog. Lists, dicts and sets are built in.\n" * 200)
    # A high learning rate without warm-up, so three steps move B (zero at the start) well away from zero and the
    # adapter visibly changes the logits the comparisons below check.
    p = run_cli("train", "--model", str(base_folder), "--data", str(data), "--lora-rank", str(RANK),
                "--lora-targets", "qkv", "--steps", "3", "--batch-size", "2", "--seq-len", "32", "--lr", "0.05",
                "--warmup-steps", "0", "--eval-every", "0", "--json", home=home)
    return p, (last_json(p.stdout) if p.stdout.strip() else {})


def _peft_model(base_folder: Path, adapter_dir: str):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_folder), adapter_dir).eval()


IDS = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(0))


@pytest.mark.slow
def test_lora_train_reports_adapter_and_parameter_counts(lora_run, base_folder):
    from llmfs.weights import load_hf_folder

    p, res = lora_run
    assert p.returncode == 0, p.stderr
    assert res["state"] == "succeeded" and "step 3/3" in p.stderr
    for key in ("adapter_dir", "trainable_params", "total_params", "peak_memory_bytes", "tokens_per_s"):
        assert res.get(key) is not None, key
    config = json.loads((Path(res["adapter_dir"]) / "adapter_config.json").read_text())
    assert config["r"] == RANK and config["peft_type"] == "LORA"
    assert Path(config["base_model_name_or_path"]).resolve() == base_folder.resolve()
    assert (Path(res["adapter_dir"]) / "adapter_model.safetensors").is_file()
    # r * (in + out) for every c_attn (qkv) layer, and nothing else trains.
    c_attn = [m for n, m in load_hf_folder(base_folder).named_modules() if n.endswith("attn.c_attn")]
    assert len(c_attn) == 2
    assert res["trainable_params"] == sum(RANK * (m.in_features + m.out_features) for m in c_attn)
    assert res["total_params"] > res["trainable_params"]
    assert res["peak_memory_bytes"] > 0 and res["tokens_per_s"] > 0


@pytest.mark.slow
def test_run_adapter_loads_in_peft_with_our_logits(lora_run, base_folder):
    from llmfs.lora import load_adapter
    from llmfs.weights import load_hf_folder

    _, res = lora_run
    ours_base = load_hf_folder(base_folder)
    ours = load_adapter(ours_base, res["adapter_dir"])
    with torch.no_grad():
        ref = _peft_model(base_folder, res["adapter_dir"])(IDS).logits
        assert (ours(IDS)[0] - ref).abs().max().item() < 1e-4
        assert (ours_base(IDS)[0] - ref).abs().max().item() > 1e-3  # the adapter trained: not a no-op


def test_quantize_without_lora_is_refused(llmfs_home):
    p = run_cli("train", "--quantize", "4bit", "--steps", "2", "--json", home=llmfs_home, timeout=60)
    assert p.returncode == 2
    res = last_json(p.stdout)
    assert res["field"] == "quantize" and "LoRA rank" in res["error"]
    assert "--lora-rank" in res["hint"] and "--lora-rank" in p.stderr  # names the fix in flags
    assert not (llmfs_home / "runs").exists()


@pytest.mark.slow
def test_adapters_list(lora_run, home, base_folder):
    _, res = lora_run
    p = run_cli("adapters", "list", "--json", home=home, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = {a["id"]: a for a in last_json(p.stdout)["adapters"]}
    row = rows[f"run:{res['run_id']}"]
    assert row["rank"] == RANK and row["alpha"] == 16.0 and row["targets"] == ["attn.c_attn"]
    assert row["origin"] == "run" and row["run_id"] == res["run_id"] and row["size_bytes"] > 0
    assert Path(row["path"]) == Path(res["adapter_dir"])
    assert Path(row["base_model"]).resolve() == base_folder.resolve()
    human = run_cli("adapters", "list", home=home, timeout=60)
    assert f"run:{res['run_id']}" in human.stdout


@pytest.mark.slow
def test_adapters_export_zip_and_folder(lora_run, home, tmp_path, base_folder):
    _, res = lora_run
    adapter = f"run:{res['run_id']}"
    p = run_cli("adapters", "export", adapter, "--out", str(tmp_path / "x.zip"), "--json", home=home, timeout=60)
    assert p.returncode == 0, p.stderr
    assert last_json(p.stdout)["path"] == str(tmp_path / "x.zip")
    with zipfile.ZipFile(tmp_path / "x.zip") as zf:
        assert sorted(zf.namelist()) == ["adapter_config.json", "adapter_model.safetensors"]
        assert zf.read("adapter_model.safetensors") == (Path(res["adapter_dir"]) / "adapter_model.safetensors"
                                                        ).read_bytes()

    p = run_cli("adapters", "export", adapter, "--out", str(tmp_path / "folder"), "--json", home=home, timeout=60)
    assert p.returncode == 0, p.stderr
    folder = Path(last_json(p.stdout)["path"])
    assert sorted(f.name for f in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temp folder left behind

    again = run_cli("adapters", "export", adapter, "--out", str(tmp_path / "x.zip"), "--json", home=home, timeout=60)
    assert again.returncode == 2 and "already exists" in last_json(again.stdout)["error"]  # nothing overwritten


@pytest.mark.slow
def test_adapters_merge_gives_peft_logits(lora_run, home, tmp_path, base_folder):
    from transformers import AutoModelForCausalLM

    _, res = lora_run
    out = tmp_path / "merged"
    p = run_cli("adapters", "merge", f"run:{res['run_id']}", "--out", str(out), "--json", home=home)
    assert p.returncode == 0, p.stderr
    info = last_json(p.stdout)
    assert info["model_dir"] == str(out) and info["adapter"] == f"run:{res['run_id']}"
    assert Path(info["base_model"]).resolve() == base_folder.resolve()
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        ref = _peft_model(base_folder, res["adapter_dir"])(IDS).logits
        assert (merged(IDS).logits - ref).abs().max().item() < 1e-4


@pytest.mark.parametrize("command", ["merge", "export"])
@pytest.mark.parametrize("adapter", ["run:no-such-run", "lib:nothing-here", "not-an-adapter-folder"])
def test_unknown_adapter_is_refused(home, tmp_path, command, adapter):
    if adapter == "not-an-adapter-folder":
        (tmp_path / adapter).mkdir()
        adapter = str(tmp_path / adapter)
    p = run_cli("adapters", command, adapter, "--out", str(tmp_path / "out"), "--json", home=home, timeout=60)
    assert p.returncode == 2
    res = last_json(p.stdout)
    assert res["error"] and res["error"] in p.stderr
    assert not (tmp_path / "out").exists()
