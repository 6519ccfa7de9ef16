"""Tests for llmfs/weights.py, held against transformers' GPT2LMHeadModel built from tiny random configs (offline)."""

import dataclasses
import json
import warnings
from pathlib import Path

import pytest
import torch

from llmfs.model import GPT, GPTConfig
from llmfs.weights import hf_to_ours, load_hf_folder, ours_to_hf, save_hf_folder

transformers = pytest.importorskip("transformers")

# Parity tolerance in fp32: the two implementations differ only in kernel order (sdpa vs eager, tanh-GELU
# formulas); observed deltas are ~2e-7.
ATOL = 1e-4


def _hf_model(tied: bool = True, seed: int = 0):
    config = transformers.GPT2Config(
        n_layer=2, n_head=2, n_embd=64, n_positions=64, vocab_size=100,
        tie_word_embeddings=tied, bos_token_id=None, eos_token_id=None,
    )
    config._attn_implementation = "eager"  # the reference math, no fused kernel
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config).eval()
    if not tied:  # make sure a mix-up of head and embedding would show in the logits
        assert not torch.equal(model.lm_head.weight, model.transformer.wte.weight)
    return model


def _idx(vocab_size: int = 100) -> torch.Tensor:
    return torch.randint(0, vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))


def _max_delta(ours: GPT, hf) -> float:
    idx = _idx(ours.config.vocab_size)
    with torch.no_grad():
        return (ours(idx)[0] - hf(idx).logits).abs().max().item()


@pytest.mark.parametrize("tied", [True, False])
def test_converted_state_dict_gives_hf_logits(tied):
    hf = _hf_model(tied)
    ours = GPT(GPTConfig.from_hf(hf.config)).eval()
    ours.load_state_dict(hf_to_ours(hf.state_dict()))
    assert ours.config.tie_word_embeddings is tied
    assert (ours.lm_head.weight is ours.transformer.wte.weight) is tied
    assert _max_delta(ours, hf) < ATOL


def test_our_keys_equal_gpt2lmheadmodel_keys():
    hf = _hf_model()
    assert list(GPT(GPTConfig.from_hf(hf.config)).state_dict()) == list(hf.state_dict())


def test_hub_layout_without_prefix_head_or_buffers():
    # The `gpt2` hub checkpoint is a GPT2Model dump: no "transformer." prefix, no lm_head, and (from older
    # transformers) causal-mask buffers.
    hf = _hf_model()
    base = hf.transformer.state_dict()
    assert "wte.weight" in base and "lm_head.weight" not in base
    base["h.0.attn.bias"] = torch.ones(1, 1, 64, 64, dtype=torch.bool)
    base["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    converted = hf_to_ours(base)
    assert set(converted) == set(hf_to_ours(hf.state_dict()))
    assert converted["lm_head.weight"] is converted["transformer.wte.weight"]
    assert converted["transformer.h.1.mlp.c_fc.weight"].shape == (256, 64)  # Conv1D (64, 256) transposed


def test_ours_to_hf_inverts_hf_to_ours():
    sd = _hf_model(tied=False).state_dict()
    back = ours_to_hf(hf_to_ours(sd))
    assert list(back) == list(sd)
    for key in sd:
        assert torch.equal(back[key], sd[key]), key


def _write_safetensors(hf, folder):
    hf.save_pretrained(folder)


def _write_sharded(hf, folder):
    hf.save_pretrained(folder, max_shard_size="50KB")
    assert (folder / "model.safetensors.index.json").is_file()


def _write_bin(hf, folder):
    # transformers 5 ignores safe_serialization=False and always writes safetensors, so write the legacy
    # pickle format the way older versions did.
    hf.config.save_pretrained(folder)
    torch.save(hf.state_dict(), folder / "pytorch_model.bin")


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("write", [_write_safetensors, _write_sharded, _write_bin])
def test_load_hf_folder_gives_hf_logits(tmp_path, write, tied):
    hf = _hf_model(tied)
    write(hf, tmp_path)
    ours = load_hf_folder(tmp_path)
    assert not ours.training
    assert (ours.lm_head.weight is ours.transformer.wte.weight) is tied
    assert ours.transformer.wte.weight.device.type == "cpu"
    assert _max_delta(ours, hf) < ATOL


def test_tied_config_ignores_a_different_head_in_the_file(tmp_path):
    hf = _hf_model(tied=False)
    hf.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    with pytest.warns(UserWarning, match="ignoring the file's different lm_head.weight"):
        ours = load_hf_folder(tmp_path)
    assert torch.equal(ours.lm_head.weight, hf.transformer.wte.weight)


@pytest.mark.parametrize("tied", [True, False])
def test_save_hf_folder_loads_in_transformers(tmp_path, tied):
    torch.manual_seed(0)
    ours = GPT(dataclasses.replace(GPTConfig.preset("tiny"), tie_word_embeddings=tied)).eval()
    folder = save_hf_folder(ours, tmp_path / "ckpt")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    assert isinstance(hf, transformers.GPT2LMHeadModel)
    assert _max_delta(ours, hf) < ATOL
    back = load_hf_folder(folder)
    for key, value in ours.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


class _FakeTokenizer:
    def save_pretrained(self, path):
        (path / "tokenizer.json").write_text("{}")


def test_save_hf_folder_replaces_atomically(tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "stale.txt").write_text("from an older save")
    save_hf_folder(GPT(GPTConfig.preset("tiny")), target, tokenizer=_FakeTokenizer())
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp folders left behind


def test_failed_save_leaves_the_old_folder_and_no_temp(tmp_path):
    target = tmp_path / "ckpt"
    save_hf_folder(GPT(GPTConfig.preset("tiny")), target)
    before = (target / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="bias=False"):
        save_hf_folder(GPT(dataclasses.replace(GPTConfig.preset("tiny"), bias=False)), target)
    assert (target / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_llama_folder_is_refused_with_a_clear_message(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with pytest.raises(ValueError, match=r"only GPT-2-architecture checkpoints are supported.*'llama'"):
        load_hf_folder(tmp_path)


def test_missing_files_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_folder(tmp_path)
    _hf_model().config.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="model.safetensors, model.safetensors.index.json or pytorch_model.bin"):
        load_hf_folder(tmp_path)


def test_weights_that_do_not_match_the_config_are_refused(tmp_path):
    hf = _hf_model()
    hf.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "n_layer": 3}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"do not match its config.json: missing \['transformer.h.2"):
            load_hf_folder(tmp_path)


# -- load_pretrained, parity, export after fine-tuning (L12) ------------------------------------------------------
def test_load_pretrained_local_folder_matches_transformers(tiny_hf_folder):
    from transformers import AutoModelForCausalLM

    from llmfs.weights import load_pretrained
    model, tok = load_pretrained(str(tiny_hf_folder))
    ids = torch.tensor([tok("def add(a, b): return a + b")["input_ids"]])
    ref = AutoModelForCausalLM.from_pretrained(tiny_hf_folder).eval()
    with torch.no_grad():
        assert (model(ids)[0] - ref(ids).logits).abs().max().item() < 1e-4


def test_non_gpt2_folder_names_what_is_supported(tmp_path):
    from llmfs.sources import SourceError
    from llmfs.weights import load_pretrained
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mistral", "hidden_size": 64}))
    with pytest.raises(SourceError, match=r"'mistral' model.*GPT-2.*Llama-family.*smollm2-135m.*L15"):
        load_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with pytest.raises(SourceError, match=r"lacks vocab_size, intermediate_size"):
        load_pretrained(str(tmp_path))


def test_parity_check_reports_small_delta(tiny_hf_folder):
    from llmfs.weights import PARITY_TOLERANCE, parity_check
    res = parity_check(tiny_hf_folder)
    assert res["ok"] and res["max_abs_delta"] < PARITY_TOLERANCE and res["n_tokens"] > 5
    assert res["ours_top5"] == res["reference_top5"] and res["reference"] == "GPT2LMHeadModel"


def test_parity_check_catches_a_broken_conversion(tiny_hf_folder):
    from llmfs.weights import load_hf_folder, parity_check
    model = load_hf_folder(tiny_hf_folder)
    with torch.no_grad():
        model.transformer.h[0].attn.c_attn.weight.mul_(1.01)  # what a forgotten transpose-like slip would do
    assert not parity_check(tiny_hf_folder, model=model)["ok"]


def test_fine_tuned_export_loads_in_transformers_with_same_logits(tiny_hf_folder, tmp_path):
    from transformers import AutoModelForCausalLM

    from llmfs.config import TrainConfig
    from llmfs.train import RandomWindows, train
    from llmfs.weights import load_pretrained, save_hf_folder
    model, tok = load_pretrained(str(tiny_hf_folder))
    before = model.transformer.h[0].mlp.c_fc.weight.clone()
    train(model, RandomWindows(torch.randint(0, 300, (2000,)), 4, 16), TrainConfig(steps=3, warmup_steps=1,
          device="cpu"))
    assert not torch.equal(before, model.transformer.h[0].mlp.c_fc.weight)
    out = save_hf_folder(model, tmp_path / "export", tokenizer=tok)
    ref = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.randint(0, 300, (2, 20))
    model.eval()
    with torch.no_grad():
        assert (model(ids)[0] - ref(ids).logits).abs().max().item() < 1e-4


def test_cli_load_json(tiny_hf_folder):
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-m", "llmfs", "load", "--model", str(tiny_hf_folder), "--json"], cwd=root,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["parity"]["ok"] and res["n_layer"] == 2 and res["vocab_size"] == 300
    assert res["total_params"] == sum(g["params"] for g in res["groups"])


def test_offline_hub_id_fails_fast(monkeypatch):
    import time

    from llmfs.sources import SourceError
    from llmfs.weights import load_pretrained
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    with pytest.raises(SourceError, match="Cannot fetch 'distilgpt2'.*HF_HUB_OFFLINE"):
        load_pretrained("distilgpt2")
    assert time.time() - t0 < 10
