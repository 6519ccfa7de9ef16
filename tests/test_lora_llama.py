"""Our LoRA on our Llama, held against PEFT on transformers' LlamaForCausalLM loaded from the same folder: the
trainable count (the formula and PEFT's), our adapter loaded by PEFT and PEFT's loaded by ours with the same logits,
merge / unmerge / merge_and_unload against PEFT's merge, a tied head with an adapter on it, QLoRA on the CPU, and the
whole path of L15 (a LoRA run through the job runner, then several adapters on one base: swap, mix, merge)."""

from __future__ import annotations

import json

import pytest
import torch

from llmfs import lora
from llmfs.errors import SourceError
from llmfs.llama import Llama, load_llama

BLOCK = "qkv,attn_proj,mlp_in,mlp_out"   # q/k/v, o, gate + up, down: every linear layer of a block
WITH_HEAD = BLOCK + ",lm_head"
# the tiny Llama of conftest: hidden 32, 4 query heads and 2 key / value heads of width 8, MLP 64, vocabulary 300
HIDDEN, KV, MLP, VOCAB = 32, 16, 64, 300


@pytest.fixture
def pair(tiny_llama_folder):
    """transformers' LlamaForCausalLM and our Llama from the same folder, plus a batch of ids."""
    from transformers import LlamaForCausalLM
    hf = LlamaForCausalLM.from_pretrained(tiny_llama_folder).eval()
    ours = load_llama(tiny_llama_folder)
    return hf, ours, torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(0))


def _randomize_b(model, name="default", std=0.2, seed=1):
    """B starts at zero (the adapter does nothing); give it values, as training would, so there is an effect."""
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


def _peft(hf, targets, rank=4, alpha=8, **kw):
    from peft import LoraConfig, get_peft_model
    return get_peft_model(hf, LoraConfig(r=rank, lora_alpha=alpha, target_modules=lora.target_modules(targets, "llama"),
                                         **kw))


def test_targets_map_to_llamas_module_names():
    assert lora.target_modules(BLOCK, "llama") == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                    "down_proj"]
    assert lora.target_modules("all-linear", "qwen2") == lora.target_modules(BLOCK, "llama")


@pytest.mark.parametrize("targets", ["qkv", BLOCK, WITH_HEAD])
@pytest.mark.parametrize("rank", [1, 4])
def test_trainable_count_is_the_formula_and_peft_count(pair, targets, rank):
    hf, ours, _ = pair
    layers = lora.add_adapter(ours, rank=rank, alpha=8, targets=targets, model_type="llama")
    trainable = lora.mark_trainable(ours)
    modules = dict(ours.named_modules())
    formula = lora.lora_param_count([(modules[n].in_features, modules[n].out_features) for n in layers], rank)
    assert trainable == formula == sum(p.numel() for p in ours.parameters() if p.requires_grad)
    # by hand, per block: q, o (32 -> 32), k, v (32 -> 16, grouped-query), gate, up (32 -> 64), down (64 -> 32)
    per_block = {"qkv": rank * ((HIDDEN + HIDDEN) + 2 * (HIDDEN + KV)),
                 "attn_proj": rank * (HIDDEN + HIDDEN),
                 "mlp_in": 2 * rank * (HIDDEN + MLP), "mlp_out": rank * (MLP + HIDDEN)}
    expected = 2 * sum(per_block[t] for t in targets.split(",") if t in per_block)
    expected += rank * (HIDDEN + VOCAB) if "lm_head" in targets else 0
    assert trainable == expected
    assert _peft(hf, targets, rank).get_nb_trainable_parameters()[0] == trainable


def test_starts_equal_to_the_base_and_only_adapters_train(pair):
    _, ours, ids = pair
    base = _logits(ours, ids)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    lora.add_adapter(ours, rank=4, alpha=8, targets=WITH_HEAD, model_type="llama", seed=0)
    assert torch.equal(_logits(ours, ids), base)   # B = 0: exactly the base model
    lora.mark_trainable(ours)
    ours.train()
    opt = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        _, loss = ours(ids, ids)
        loss.backward()
        opt.step()
        opt.zero_grad()
    after = ours.state_dict()
    assert all(torch.equal(after[k], before[k.replace(".base_layer", "")]) for k in after if "lora_" not in k)
    assert not torch.allclose(_logits(ours.eval(), ids), base)


@pytest.mark.parametrize("rslora", [False, True])
def test_our_adapter_loads_in_peft_on_llama_with_the_same_logits(pair, tiny_llama_folder, tmp_path, rslora):
    from peft import PeftModel
    from transformers import LlamaForCausalLM
    _, ours, ids = pair
    base = _logits(ours, ids)
    lora.add_adapter(ours, rank=4, alpha=8, targets=BLOCK, model_type="llama", rslora=rslora)
    _randomize_b(ours)
    path = lora.save_adapter(ours, tmp_path / "ad", alpha=8, rslora=rslora, base_model=str(tiny_llama_folder),
                             targets=lora.target_modules(BLOCK, "llama"))
    cfg = json.loads((path / "adapter_config.json").read_text())
    assert cfg["fan_in_fan_out"] is False and cfg["use_rslora"] is rslora   # nn.Linear, not GPT-2's Conv1D
    assert sorted(cfg["target_modules"]) == sorted(lora.target_modules(BLOCK, "llama"))
    # the way a reader of the adapter loads it: the base named in the file, then PEFT
    peft_model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(cfg["base_model_name_or_path"]),
                                           str(path)).eval()
    ours_out = _logits(ours, ids)
    assert (ours_out - base).abs().max() > 1e-2                    # the adapter really changes the model
    assert (_logits(peft_model, ids) - ours_out).abs().max() < 1e-4


def test_a_peft_trained_adapter_loads_in_ours_with_the_same_logits(pair, tmp_path):
    hf, ours, ids = pair
    base = _logits(ours, ids)
    peft_model = _peft(hf, WITH_HEAD, rank=3, alpha=6)
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=5e-2)
    peft_model.train()
    for _ in range(3):   # trained by PEFT, so B is whatever PEFT's training made of it
        peft_model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    peft_model.eval().save_pretrained(tmp_path / "p")
    # PEFT saves a copy of the head beside an adapter on it (save_embedding_layers): equal to ours, so skipped ...
    from safetensors.torch import load_file, save_file
    saved = load_file(str(tmp_path / "p" / lora.WEIGHTS_FILE))
    head = "base_model.model.lm_head.base_layer.weight"
    assert torch.equal(saved[head], ours.lm_head.weight)
    # ... but a head of its own (retrained, resized) would replace the base's under every adapter: refused
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / lora.CONFIG_FILE).write_text((tmp_path / "p" / lora.CONFIG_FILE).read_text())
    save_file({**saved, head: saved[head] + 0.1}, str(tmp_path / "q" / lora.WEIGHTS_FILE))
    with pytest.raises(SourceError, match="its own copy of this model's weight"):
        lora.load_adapter_into(ours, tmp_path / "q", name="q")
    assert not lora.has_lora(ours)
    lora.load_adapter_into(ours, tmp_path / "p", name="p")
    assert lora.active_adapters(ours) == {"p": 1.0}
    expected = _logits(peft_model, ids)
    assert (expected - base).abs().max() > 1e-2
    assert (_logits(ours, ids) - expected).abs().max() < 1e-4
    lora.set_active(ours, None)
    assert torch.equal(_logits(ours, ids), base)


def test_merge_unmerge_and_merge_and_unload_equal_peft_merge(pair):
    hf, ours, ids = pair
    peft_model = _peft(hf, BLOCK, init_lora_weights=False).eval()   # random A and B
    state = {k: v for k, v in peft_model.state_dict().items() if "lora_" in k}
    lora.add_adapter(ours, rank=4, alpha=8, targets=BLOCK, model_type="llama")
    for name, layer in lora.lora_layers(ours).items():   # the same A and B as PEFT's
        with torch.no_grad():
            layer.lora_A["default"].weight.copy_(state[f"base_model.model.{name}.lora_A.default.weight"])
            layer.lora_B["default"].weight.copy_(state[f"base_model.model.{name}.lora_B.default.weight"])
    unmerged = _logits(ours, ids)
    assert (unmerged - _logits(peft_model, ids)).abs().max() < 1e-4
    base_state = {k: v.clone() for k, v in ours.state_dict().items()}
    lora.merge(ours)
    assert (_logits(ours, ids) - unmerged).abs().max() < 1e-5
    lora.unmerge(ours)
    assert all((ours.state_dict()[k] - v).abs().max() < 1e-6 for k, v in base_state.items())
    plain = lora.merge_and_unload(ours)
    merged_hf = peft_model.merge_and_unload()
    assert not lora.has_lora(plain) and all(type(m) is not lora.LoRALinear for m in plain.modules())
    theirs = merged_hf.state_dict()
    ours_state = plain.state_dict()
    assert set(ours_state) == set(theirs)   # the same names as transformers' model: it saves as a plain Llama
    assert max((ours_state[k] - theirs[k]).abs().max().item() for k in theirs) < 1e-6
    assert (_logits(plain, ids) - _logits(merged_hf, ids)).abs().max() < 1e-4


def _tied_folder(tmp_path, save_tiny_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=HIDDEN, intermediate_size=MLP, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=128, bos_token_id=0,
                      eos_token_id=0, pad_token_id=0, tie_word_embeddings=True)
    folder = tmp_path / "tied-llama"
    LlamaForCausalLM(cfg).save_pretrained(folder)
    save_tiny_tokenizer(folder, vocab_size=VOCAB)
    return folder


def test_tied_head_gets_its_own_copy_before_an_adapter_merges_into_it(tmp_path, save_tiny_tokenizer):
    """SmolLM2 ties its head to the word embeddings: merging a head adapter into the shared matrix would change
    every input token's embedding too. The head is untied first; the saved model says so and loads in
    transformers with the adapted model's logits."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    from llmfs.weights import save_hf_folder
    folder = _tied_folder(tmp_path, save_tiny_tokenizer)
    ours = load_llama(folder)
    assert ours.config.tie_word_embeddings and ours.lm_head.weight is ours.model.embed_tokens.weight
    ids = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(0))
    embeddings = ours.model.embed_tokens.weight.detach().clone()
    lora.add_adapter(ours, rank=4, alpha=8, targets="qkv,lm_head", model_type="llama")
    _randomize_b(ours)
    adapter = lora.save_adapter(ours, tmp_path / "ad", alpha=8, base_model=str(folder),
                                targets=lora.target_modules("qkv,lm_head", "llama"))
    adapted = _logits(ours, ids)
    peft_model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(folder), str(adapter)).eval()
    assert (_logits(peft_model, ids) - adapted).abs().max() < 1e-4
    lora.merge_and_unload(ours)
    assert torch.equal(ours.model.embed_tokens.weight, embeddings)   # the inputs' embeddings did not move
    assert ours.lm_head.weight is not ours.model.embed_tokens.weight
    assert not ours.config.tie_word_embeddings
    assert (_logits(ours, ids) - adapted).abs().max() < 1e-5
    saved = save_hf_folder(ours, tmp_path / "merged")
    assert json.loads((saved / "config.json").read_text())["tie_word_embeddings"] is False
    reloaded = AutoModelForCausalLM.from_pretrained(saved).eval()
    assert (_logits(reloaded, ids) - adapted).abs().max() < 1e-4


def test_swapping_and_mixing_adapters_on_one_llama(pair):
    _, ours, ids = pair
    base = _logits(ours, ids)
    lora.add_adapter(ours, "a", rank=4, alpha=8, targets="qkv", model_type="llama")
    lora.add_adapter(ours, "b", rank=2, alpha=4, targets="qkv,mlp_in", model_type="llama")
    _randomize_b(ours, "a", seed=1)
    _randomize_b(ours, "b", seed=2)
    lora.set_active(ours, "a")
    out_a = _logits(ours, ids)
    lora.set_active(ours, "b")
    out_b = _logits(ours, ids)
    assert (out_a - base).abs().max() > 1e-3 and (out_b - out_a).abs().max() > 1e-3
    lora.set_active(ours, "a")
    assert torch.equal(_logits(ours, ids), out_a)
    layer = lora.lora_layers(ours)["model.layers.0.self_attn.k_proj"]
    x = torch.randn(3, HIDDEN)
    lora.set_active(ours, {"a": 0.25, "b": 0.75})
    with torch.no_grad():
        expected = layer.base_layer(x) + x @ (0.25 * layer.delta_weight("a") + 0.75 * layer.delta_weight("b")).T
        assert (layer(x) - expected).abs().max() < 1e-5
    lora.set_active(ours, None)
    assert torch.equal(_logits(ours, ids), base)


# -- QLoRA ----------------------------------------------------------------------------------------------------
def test_4bit_llama_trains_on_cpu_and_the_loss_drops(pair):
    from llmfs.config import TrainConfig
    from llmfs.train import RandomWindows, count_params, train
    _, ours, ids = pair
    full_logits = _logits(ours, ids)
    full = count_params(ours)[1]
    assert lora.quantize_4bit(ours, double_quant=True) == 2 * 7   # q, k, v, o, gate, up, down per block; not the head
    assert lora.is_quantized(ours) and type(ours.lm_head) is torch.nn.Linear
    assert all(getattr(m, "support_avx512bf16_for_cpu", False) is False for m in ours.modules()
               if type(m).__name__ == "Linear4bit")
    # 4-bit weights are close to, not equal to, the originals
    q_logits = _logits(ours, ids)
    assert 0 < (q_logits - full_logits).abs().max() < 0.5 * full_logits.abs().max()
    layers = lora.add_adapter(ours, rank=4, alpha=8, targets=WITH_HEAD, model_type="llama", seed=0)
    assert len(layers) == 2 * 7 + 1
    trainable = lora.mark_trainable(ours)
    assert count_params(ours) == (trainable, full + trainable)
    ours.eval()
    _logits(ours, ids)   # the eval-mode forward that used to break backward on AVX512-BF16 CPUs
    torch.manual_seed(0)
    text = torch.randint(0, 40, (4000,))   # a small vocabulary: easy to learn, so the loss must fall
    cfg = TrainConfig(steps=30, batch_size=8, seq_len=32, lr=3e-2, warmup_steps=0, eval_every=0, device="cpu")
    result = train(ours, RandomWindows(text, 8, 32), cfg)
    assert sum(result.losses[-5:]) / 5 < 0.8 * sum(result.losses[:5]) / 5
    assert all(p.dtype == torch.float32 for n, p in ours.named_parameters() if "lora_" in n)
    with pytest.raises(ValueError, match="4-bit"):
        lora.merge(ours)


# -- the whole path: a run, then adapters on one base ----------------------------------------------------------
@pytest.fixture
def two_llama_runs(tiny_llama_folder, llmfs_home, tmp_path):
    """Two short LoRA runs on the tiny Llama through the job runner (qkv; qkv + MLP), with a high learning rate so
    their adapters visibly change the model. Returns their adapter folders."""
    from llmfs.config import TrainConfig
    from llmfs.recipes import submit_train
    from llmfs.runner import default_manager
    data = tmp_path / "text.txt"
    data.write_text("The quick brown fox jumps over the lazy dog. def add(a, b): return a + b\n" * 200)
    jobs = default_manager(telemetry_interval=60)
    folders = []
    try:
        for targets in ("qkv", "qkv,mlp_in,mlp_out"):
            cfg = TrainConfig(model=str(tiny_llama_folder), data=str(data), steps=4, batch_size=2, seq_len=32,
                              lora_rank=4, lora_alpha=8, lora_targets=targets, lr=5e-2, warmup_steps=0,
                              eval_every=0, device="cpu")
            rid = submit_train(jobs, cfg)
            assert jobs.wait(rid, 240) == "succeeded", jobs.get(rid).status().get("traceback")
            folders.append(jobs.get(rid).path / "adapter")
    finally:
        jobs.shutdown()
    return folders


def test_llama_runs_adapters_swap_mix_and_merge(two_llama_runs, tiny_llama_folder, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from llmfs.adapting import attach, base_of, compare_generations, merge_adapter
    from llmfs.generate import SampleConfig
    first, second = two_llama_runs
    assert base_of(first) == str(tiny_llama_folder.resolve())
    adapted = attach(base_of(first), {"A": first, "B": second})
    assert not adapted.peft and isinstance(adapted.model, Llama)   # our Llama with our LoRA, not PEFT
    assert lora.adapter_names(adapted.model) == ["A", "B"] and lora.active_adapters(adapted.model) == {}
    ids = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(0))
    outs = {}
    for label, active in {"base": None, "A": "A", "B": "B", "mix": {"A": 0.5, "B": 0.5}}.items():
        adapted.activate(active)
        outs[label] = _logits(adapted.model, ids)
    adapted.activate(None)
    assert (outs["A"] - outs["base"]).abs().max() > 1e-3 and (outs["B"] - outs["A"]).abs().max() > 1e-3
    # the mix: each layer adds half of each adapter's update (not the mean of their logits), unlike either alone
    assert (outs["mix"] - outs["A"]).abs().max() > 1e-4 and (outs["mix"] - outs["B"]).abs().max() > 1e-4
    for label in ("A", "B"):   # each adapter alone equals PEFT's on transformers' Llama
        peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_folder),
                                               str(first if label == "A" else second)).eval()
        assert (_logits(peft_model, ids) - outs[label]).abs().max() < 1e-4
    texts = compare_generations(adapted, "The quick", {"base": None, "A": "A", "mix": {"A": 0.5, "B": 0.5}},
                                SampleConfig(max_new_tokens=8, temperature=0.0))
    assert [t["label"] for t in texts] == ["base", "A", "mix"] and all(isinstance(t["text"], str) for t in texts)
    assert lora.active_adapters(adapted.model) == {}   # the base is left bare
    # merged: a plain Hugging Face Llama folder that transformers loads, with the adapted model's logits
    merged = merge_adapter(second, tmp_path / "merged")
    config = json.loads((merged / "config.json").read_text())
    assert config["model_type"] == "llama" and (merged / "tokenizer.json").is_file()
    assert (merged / "generation_config.json").read_text() == (tiny_llama_folder / "generation_config.json").read_text()
    hf = AutoModelForCausalLM.from_pretrained(merged).eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    assert not any("lora" in k for k in hf.state_dict())
    assert (_logits(hf, ids) - outs["B"]).abs().max() < 1e-4
