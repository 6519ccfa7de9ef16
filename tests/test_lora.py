"""Adapters in PEFT's format load onto our GPT with PEFT's logits (the evaluation path for base + adapter)."""

from __future__ import annotations

import pytest
import torch

from llmfs.lora import load_adapter
from llmfs.sources import SourceError
from llmfs.weights import load_hf_folder


@pytest.fixture
def peft_adapter(tiny_hf_folder, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_hf_folder)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc"], init_lora_weights=False,
                     fan_in_fan_out=True)
    peft_model = get_peft_model(base, cfg).eval()
    folder = tmp_path / "adapter"
    peft_model.save_pretrained(folder)
    return folder, peft_model


def test_adapter_gives_peft_logits_and_leaves_base_alone(tiny_hf_folder, peft_adapter):
    folder, peft_model = peft_adapter
    base = load_hf_folder(tiny_hf_folder)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    adapted = load_adapter(base, folder)
    ids = torch.randint(0, 300, (2, 24))
    with torch.no_grad():
        ref = peft_model(ids).logits
        assert (adapted(ids)[0] - ref).abs().max().item() < 1e-4
        assert (base(ids)[0] - ref).abs().max().item() > 1e-3  # the adapter really changes the model
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())


def test_not_an_adapter_folder(tiny_hf_folder, tmp_path):
    with pytest.raises(SourceError, match="not an adapter folder"):
        load_adapter(load_hf_folder(tiny_hf_folder), tmp_path)


def test_eval_with_adapter(tiny_hf_folder, peft_adapter, tmp_path):
    from llmfs.config import EvalConfig
    from llmfs.eval.runner import apply_adapter
    folder, _ = peft_adapter
    assert EvalConfig(model=str(tiny_hf_folder), adapter=str(folder), task="llmfs-cloze").adapter == str(folder)
    adapted = apply_adapter(load_hf_folder(tiny_hf_folder), str(folder))
    assert adapted.config.n_layer == 2
