"""Our LoRA held against the formula and against PEFT: counts, start equal to the base, merge / unmerge, the file
format both ways, swapping and mixing adapters, 4-bit bases (QLoRA) on the CPU, and other architectures via PEFT."""

from __future__ import annotations

import json

import pytest
import torch

from llmfs import lora
from llmfs.model import GPT, GPTConfig
from llmfs.sources import SourceError
from llmfs.weights import hf_to_ours

ALL = "qkv,attn_proj,mlp_in,mlp_out,lm_head"


@pytest.fixture
def pair():
    """The same tiny GPT-2 weights as transformers' GPT2LMHeadModel and as our GPT, plus a batch of ids."""
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    hf_cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=300)
    hf = GPT2LMHeadModel(hf_cfg).eval()
    ours = GPT(GPTConfig.from_hf(hf_cfg))
    ours.load_state_dict(hf_to_ours({k: v.clone() for k, v in hf.state_dict().items()}))
    return hf, ours.eval(), torch.randint(0, 300, (2, 16))


def _randomize_b(model, name="default", std=0.2, seed=1):
    """B starts at zero (the adapter does nothing); give it values so the adapter has an effect to compare."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora.lora_layers(model).values():
            if name in layer.lora_B:
                w = layer.lora_B[name].weight
                w.copy_(torch.randn(w.shape, generator=g) * std)


def _logits(model, ids):
    with torch.no_grad():
        out = model(ids)
    return out[0] if isinstance(out, tuple) else out.logits


@pytest.mark.parametrize("targets", ["qkv", "qkv,attn_proj", "all-linear", ALL])
@pytest.mark.parametrize("rank", [1, 4])
def test_trainable_count_is_the_formula_and_peft_count(pair, targets, rank):
    from peft import LoraConfig, get_peft_model
    hf, ours, _ = pair
    layers = lora.add_adapter(ours, rank=rank, alpha=8, targets=targets)
    trainable = lora.mark_trainable(ours)
    modules = dict(ours.named_modules())
    formula = lora.lora_param_count([(modules[n].in_features, modules[n].out_features) for n in layers], rank)
    assert trainable == formula == sum(p.numel() for p in ours.parameters() if p.requires_grad)
    peft_model = get_peft_model(hf, LoraConfig(r=rank, lora_alpha=8, fan_in_fan_out=True,
                                               target_modules=lora.target_modules(targets, "gpt2")))
    assert peft_model.get_nb_trainable_parameters()[0] == trainable


def test_starts_equal_to_base_and_only_adapters_train(pair):
    _, ours, ids = pair
    base = _logits(ours, ids)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    lora.add_adapter(ours, rank=4, alpha=8, targets=ALL, seed=0)
    assert torch.equal(_logits(ours, ids), base)  # B = 0: exactly the base model
    lora.mark_trainable(ours)
    ours.train()
    opt = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        _, loss = ours(ids, ids)
        loss.backward()
        opt.step()
        opt.zero_grad()
    after = ours.state_dict()
    base_keys = [k for k in after if "lora_" not in k]
    assert all(torch.equal(after[k], before[k.replace(".base_layer", "")]) for k in base_keys)
    assert not torch.allclose(_logits(ours.eval(), ids), base)  # the adapters learned something


def test_rslora_scaling():
    assert lora.scaling(16, 16) == 1.0
    assert lora.scaling(16, 16, rslora=True) == 4.0


def test_merge_equals_unmerged_and_unmerge_restores(pair):
    _, ours, ids = pair
    base_state = {k: v.clone() for k, v in ours.state_dict().items()}
    lora.add_adapter(ours, rank=4, alpha=8, targets=ALL)
    _randomize_b(ours)
    unmerged = _logits(ours, ids)
    lora.merge(ours)
    assert (_logits(ours, ids) - unmerged).abs().max() < 1e-5
    # the tied head got its own copy: merging into it must not move the word embeddings
    assert torch.equal(ours.transformer.wte.weight, base_state["transformer.wte.weight"])
    lora.unmerge(ours)
    assert (_logits(ours, ids) - unmerged).abs().max() < 1e-5
    plain = lora.merge_and_unload(ours)
    assert not lora.has_lora(plain)
    assert (_logits(plain, ids) - unmerged).abs().max() < 1e-5


def test_our_adapter_loads_in_peft_with_the_same_logits(pair, tmp_path):
    from peft import PeftModel
    hf, ours, ids = pair
    lora.add_adapter(ours, rank=4, alpha=8, targets=ALL, rslora=True)
    _randomize_b(ours)
    path = lora.save_adapter(ours, tmp_path / "ad", alpha=8, rslora=True, base_model="tiny",
                             targets=lora.target_modules(ALL))
    cfg = json.loads((path / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["peft_type"] == "LORA" and cfg["base_model_name_or_path"] == "tiny"
    peft_model = PeftModel.from_pretrained(hf, str(path)).eval()
    assert (_logits(peft_model, ids) - _logits(ours, ids)).abs().max() < 1e-5


def test_peft_adapter_loads_in_ours_with_the_same_logits(pair, tmp_path):
    from peft import LoraConfig, get_peft_model
    hf, ours, ids = pair
    base = _logits(ours, ids)
    peft_model = get_peft_model(hf, LoraConfig(r=3, lora_alpha=6, target_modules=["c_attn", "c_fc", "c_proj"],
                                               fan_in_fan_out=True, init_lora_weights=False)).eval()
    peft_model.save_pretrained(tmp_path / "p")
    lora.load_adapter_into(ours, tmp_path / "p", name="p")
    assert (_logits(ours, ids) - _logits(peft_model, ids)).abs().max() < 1e-5
    lora.set_active(ours, None)
    assert torch.equal(_logits(ours, ids), base)


def test_swapping_adapters_and_back_is_exact(pair):
    _, ours, ids = pair
    base = _logits(ours, ids)
    lora.add_adapter(ours, "a", rank=4, alpha=8, targets="qkv")
    lora.add_adapter(ours, "b", rank=2, alpha=4, targets="qkv,mlp_in")
    _randomize_b(ours, "a", seed=1)
    _randomize_b(ours, "b", seed=2)
    assert lora.adapter_names(ours) == ["a", "b"]
    lora.set_active(ours, "a")
    out_a = _logits(ours, ids)
    lora.set_active(ours, "b")
    out_b = _logits(ours, ids)
    assert (out_a - base).abs().max() > 1e-3 and (out_b - out_a).abs().max() > 1e-3
    lora.set_active(ours, "a")
    assert torch.equal(_logits(ours, ids), out_a)
    lora.set_active(ours, None)
    assert torch.equal(_logits(ours, ids), base)
    with pytest.raises(ValueError, match="No adapter called 'c'"):
        lora.set_active(ours, "c")


def test_weighted_combination_is_linear_in_the_weights(pair):
    _, ours, _ = pair
    lora.add_adapter(ours, "a", rank=4, alpha=8, targets="qkv")
    lora.add_adapter(ours, "b", rank=4, alpha=8, targets="qkv")
    _randomize_b(ours, "a", seed=1)
    _randomize_b(ours, "b", seed=2)
    layer = lora.lora_layers(ours)["transformer.h.0.attn.c_attn"]
    x = torch.randn(3, 32)
    base = layer.base_layer(x)
    lora.set_active(ours, {"a": 0.25, "b": 0.75})
    with torch.no_grad():
        expected = base + x @ (0.25 * layer.delta_weight("a") + 0.75 * layer.delta_weight("b")).T
        assert (layer(x) - expected).abs().max() < 1e-5


def test_adapter_for_another_base_is_refused_and_changes_nothing(pair, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel
    _, ours, ids = pair
    other = GPT(GPTConfig.from_hf(GPT2Config(n_layer=2, n_head=2, n_embd=48, n_positions=64, vocab_size=300)))
    lora.add_adapter(other, rank=4, alpha=8, targets="qkv")
    lora.save_adapter(other, tmp_path / "wide", alpha=8)
    base = _logits(ours, ids)
    with pytest.raises(SourceError, match="trained on a base of another size"):
        lora.load_adapter_into(ours, tmp_path / "wide")
    assert not lora.has_lora(ours) and torch.equal(_logits(ours, ids), base)
    del GPT2LMHeadModel


def test_bad_settings_are_refused(pair):
    _, ours, _ = pair
    with pytest.raises(ValueError, match="rank"):
        lora.add_adapter(ours, rank=0)
    with pytest.raises(ValueError, match="larger than the layer"):
        lora.add_adapter(ours, rank=64, targets="qkv")
    with pytest.raises(ValueError, match="No linear layer matches"):
        lora.add_adapter(ours, rank=2, targets="q_proj")
    with pytest.raises(ValueError, match="known for"):
        lora.target_modules("qkv", "t5")


# -- QLoRA ----------------------------------------------------------------------------------------------------
def test_4bit_base_trains_on_cpu_after_an_eval_forward(pair):
    from llmfs.config import TrainConfig
    from llmfs.train import RandomWindows, count_params, train
    _, ours, ids = pair
    full = count_params(ours)[1]
    assert lora.quantize_4bit(ours, double_quant=True) == 8  # 4 linear layers per block, the head stays
    assert lora.is_quantized(ours)
    lora.add_adapter(ours, rank=4, alpha=8, targets=ALL, seed=0)  # the head stays full precision, adapted too
    trainable = lora.mark_trainable(ours)
    assert count_params(ours) == (trainable, full + trainable)  # 4-bit tensors counted by their weights
    ours.eval()
    _logits(ours, ids)  # the eval-mode forward that used to break backward on AVX512-BF16 CPUs
    torch.manual_seed(0)
    text = torch.randint(0, 40, (4000,))  # a small vocabulary: easy to learn, so the loss must fall
    cfg = TrainConfig(steps=30, batch_size=8, seq_len=32, lr=3e-2, warmup_steps=0, eval_every=0, device="cpu")
    result = train(ours, RandomWindows(text, 8, 32), cfg)
    assert sum(result.losses[-5:]) / 5 < 0.8 * sum(result.losses[:5]) / 5
    with pytest.raises(ValueError, match="4-bit"):
        lora.merge(ours)


def test_lora_run_stops_and_resumes_to_the_same_losses(pair, tmp_path):
    from llmfs.config import TrainConfig
    from llmfs.train import RandomWindows, train
    _, ours, _ = pair
    text = torch.randint(0, 300, (5000,))
    cfg = TrainConfig(steps=8, batch_size=4, seq_len=16, lr=5e-3, warmup_steps=2, eval_every=0, device="cpu",
                      checkpoint_every=2)

    def fresh():
        m = GPT(ours.config)
        m.load_state_dict(ours.state_dict())
        lora.add_adapter(m, rank=4, alpha=8, targets="qkv", seed=3)
        lora.mark_trainable(m)
        return m

    whole = train(fresh(), RandomWindows(text, 4, 16), cfg).losses
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 5

    first = train(fresh(), RandomWindows(text, 4, 16), cfg, should_stop=stop, checkpoint_dir=tmp_path)
    assert first.stopped and len(first.losses) == 5
    from safetensors.torch import load_file
    saved = load_file(str(tmp_path / "last" / "model.safetensors"))
    assert saved and all("lora_" in k for k in saved)  # only the adapters: the base reloads from its source
    resumed = train(fresh(), RandomWindows(text, 4, 16), cfg, checkpoint_dir=tmp_path, resume=True)
    assert resumed.losses == pytest.approx(whole, rel=1e-4)


# -- other architectures through PEFT ---------------------------------------------------------------------------
def test_tiny_llama_trains_through_peft_and_saves_a_peft_adapter(tiny_llama_folder, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from llmfs.config import TrainConfig
    from llmfs.hf_causal import CausalLM, add_peft_lora, load_causal_lm
    from llmfs.train import RandomWindows, count_params, train
    hf, tokenizer = load_causal_lm(tiny_llama_folder)
    peft_model = add_peft_lora(hf, rank=4, alpha=8, dropout=0.0, targets=ALL, rslora=False,
                               base_model=str(tiny_llama_folder))
    model = CausalLM(peft_model)
    # per layer r * (in + out) for q, o (32 -> 32), k, v (32 -> 16: grouped-query attention, 2 of 4 heads' width),
    # gate, up (32 -> 64) and down (64 -> 32); then the head (32 -> 300)
    per_layer = 2 * 4 * (32 + 32) + 2 * 4 * (32 + 16) + 3 * 4 * (32 + 64)
    assert count_params(model)[0] == 2 * per_layer + 4 * (32 + 300)
    torch.manual_seed(0)
    text = torch.randint(0, 40, (4000,))
    cfg = TrainConfig(steps=30, batch_size=8, seq_len=32, lr=3e-2, warmup_steps=0, eval_every=0, device="cpu")
    result = train(model, RandomWindows(text, 8, 32), cfg)
    assert sum(result.losses[-5:]) / 5 < 0.8 * sum(result.losses[:5]) / 5
    peft_model.save_pretrained(tmp_path / "ad")
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_folder), tmp_path / "ad")
    ids = torch.randint(0, 300, (1, 12))
    assert (_logits(reloaded.eval(), ids) - _logits(model.eval(), ids)).abs().max() < 1e-5
    del tokenizer


def test_llama_lora_run_through_the_job_runner_uses_our_llama(tiny_llama_folder, llmfs_home, tmp_path):
    from llmfs.config import TrainConfig
    from llmfs.recipes import submit_train
    from llmfs.runner import default_manager
    data = tmp_path / "text.txt"
    data.write_text("The quick brown fox jumps over the lazy dog. def add(a, b): return a + b\n" * 200)
    jobs = default_manager(telemetry_interval=60)
    try:
        cfg = TrainConfig(model=str(tiny_llama_folder), data=str(data), steps=4, batch_size=2, seq_len=32,
                          lora_rank=4, lora_targets="qkv", eval_every=0, device="cpu")
        rid = submit_train(jobs, cfg)
        assert jobs.wait(rid, 240) == "succeeded", jobs.get(rid).status().get("traceback")
        run = jobs.get(rid)
        result = run.status()["result"]
        adapter = json.loads((run.path / "adapter" / "adapter_config.json").read_text())
        assert adapter["base_model_name_or_path"] == str(tiny_llama_folder.resolve())
        assert sorted(adapter["target_modules"]) == ["k_proj", "q_proj", "v_proj"]
        assert result["trainable_params"] == 2 * (4 * (32 + 32) + 2 * 4 * (32 + 16))
        assert not (run.path / "model").exists()  # a LoRA run's product is its adapter
        assert "via llmfs.lora" in (run.path / "log.txt").read_text()
    finally:
        jobs.shutdown()
