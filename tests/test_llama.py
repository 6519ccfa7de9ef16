"""Our from-scratch Llama against transformers' own (LlamaForCausalLM, Qwen2ForCausalLM) on tiny random configs:
the same state-dict keys, logits within 1e-4 (grouped-query ratios, tied and untied heads, RoPE scaling, biases),
and KV-cache generation equal to a full forward pass and to transformers' greedy generate."""

from __future__ import annotations

import re
import pytest
import torch

from llmfs.llama import WEIGHT_MAP, Llama, LlamaConfig, rope_frequencies

BASE = dict(vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=2, max_position_embeddings=64,
            rms_norm_eps=1e-6)


def hf_pair(kind: str = "llama", **cfg):
    """(transformers model with random weights, ours loaded from its state dict)."""
    from transformers import LlamaConfig as HFLlama
    from transformers import LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    if kind == "qwen2":
        hf = Qwen2ForCausalLM(Qwen2Config(**{**BASE, **cfg}))
    else:
        hf = LlamaForCausalLM(HFLlama(**{**BASE, **cfg}))
    with torch.no_grad():  # non-trivial norms and biases, so a missing one shows in the logits
        for name, p in hf.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    hf.eval()
    ours = Llama(LlamaConfig.from_hf(hf.config.to_dict())).eval()
    missing, unexpected = ours.load_state_dict(hf.state_dict(), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"} and not [m for m in missing if "embed" in m]
    return hf, ours


CASES = {
    "multi-head": dict(num_attention_heads=4, num_key_value_heads=4),
    "grouped 4:2": dict(num_attention_heads=4, num_key_value_heads=2),
    "multi-query 6:1": dict(num_attention_heads=6, num_key_value_heads=1),
    "untied head": dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False),
    "tied head": dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True),
    "llama3 rope scaling": dict(num_attention_heads=4, num_key_value_heads=2, rope_theta=500000.0,
                                rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                              "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    "linear rope scaling": dict(num_attention_heads=4, num_key_value_heads=2,
                                rope_scaling={"rope_type": "linear", "factor": 2.0}),
    "attention and mlp bias": dict(num_attention_heads=4, num_key_value_heads=2, attention_bias=True,
                                   mlp_bias=True),
    "explicit head_dim": dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16),
}


@pytest.mark.parametrize("case", list(CASES))
def test_logits_equal_transformers(case):
    hf, ours = hf_pair(**CASES[case])
    idx = torch.randint(0, BASE["vocab_size"], (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = hf(idx).logits
        got, _ = ours(idx)
    assert (got - want).abs().max().item() < 1e-4


def test_qwen2_biases_on_qkv_only():
    hf, ours = hf_pair("qwen2", num_attention_heads=4, num_key_value_heads=2)
    assert ours.config.qkv_bias and not ours.config.o_bias
    assert ours.model.layers[0].self_attn.q_proj.bias is not None and ours.model.layers[0].self_attn.o_proj.bias is None
    idx = torch.randint(0, BASE["vocab_size"], (1, 33), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (ours(idx)[0] - hf(idx).logits).abs().max().item() < 1e-4


def test_state_dict_keys_are_transformers_keys_and_the_map_covers_them():
    hf, ours = hf_pair(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    assert set(ours.state_dict()) == set(hf.state_dict())
    patterns = {k.replace("{i}", str(i)) for k in WEIGHT_MAP for i in range(BASE["num_hidden_layers"])}
    assert set(hf.state_dict()) == patterns


def test_rope_frequencies_equal_transformers():
    from transformers import LlamaConfig as HFLlama
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16}
    hf = HFLlama(**BASE, num_attention_heads=2, num_key_value_heads=1, head_dim=64, rope_theta=500000.0,
                 rope_scaling=scaling)
    want, _ = ROPE_INIT_FUNCTIONS["llama3"](hf, "cpu")
    got = rope_frequencies(LlamaConfig.from_hf(hf.to_dict()))
    assert torch.allclose(got, want, rtol=1e-6, atol=0)
    assert not torch.allclose(got, rope_frequencies(LlamaConfig.from_hf({**hf.to_dict(), "rope_parameters": {
        "rope_type": "default", "rope_theta": 500000.0}})))   # the scaling really changed something


def test_kv_cache_equals_full_forward_and_transformers_generate():
    hf, ours = hf_pair(num_attention_heads=4, num_key_value_heads=2)
    prompt = torch.randint(0, BASE["vocab_size"], (1, 7), generator=torch.Generator().manual_seed(3))
    ours_out = ours.generate(prompt, max_new_tokens=12, temperature=0)
    with torch.no_grad():
        hf_out = hf.generate(prompt, max_new_tokens=12, do_sample=False, min_new_tokens=12, pad_token_id=0)
        full, _ = ours(ours_out[:, :-1])       # no cache: the same greedy picks from one pass over everything
    assert ours_out.tolist() == hf_out.tolist()
    assert full[0, prompt.shape[1] - 1:].argmax(-1).tolist() == ours_out[0, prompt.shape[1]:].tolist()


def test_cached_chunk_after_a_past_matches_one_pass():
    _, ours = hf_pair(num_attention_heads=4, num_key_value_heads=2)
    idx = torch.randint(0, BASE["vocab_size"], (2, 20), generator=torch.Generator().manual_seed(4))
    caches = [[] for _ in ours.model.layers]
    with torch.no_grad():
        first, _ = ours(idx[:, :12], caches=caches)
        second, _ = ours(idx[:, 12:], caches=caches)
        whole, _ = ours(idx)
    assert torch.allclose(torch.cat((first, second), 1), whole, atol=1e-5)


def test_training_step_lowers_the_loss_and_bad_configs_are_refused():
    ours = Llama(LlamaConfig(**BASE, num_attention_heads=4, num_key_value_heads=2))
    idx = torch.randint(0, BASE["vocab_size"], (4, 16), generator=torch.Generator().manual_seed(5))
    opt = torch.optim.AdamW(ours.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        _, loss = ours(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5
    with pytest.raises(ValueError, match="multiple of num_key_value_heads"):
        LlamaConfig(**BASE, num_attention_heads=4, num_key_value_heads=3)
    with pytest.raises(ValueError, match="not a Llama-family model"):
        LlamaConfig.from_hf({"model_type": "gpt2"})
    with pytest.raises(ValueError, match="not supported"):
        LlamaConfig(**BASE, num_attention_heads=4, num_key_value_heads=2, rope_scaling={"rope_type": "yarn"})


def test_load_llama_reads_a_saved_folder(tmp_path):
    hf, _ = hf_pair(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    hf.save_pretrained(tmp_path / "m")
    from llmfs.llama import load_llama
    ours = load_llama(tmp_path / "m")
    idx = torch.randint(0, BASE["vocab_size"], (1, 30), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert (ours(idx)[0] - hf(idx).logits).abs().max().item() < 1e-4
    assert ours.lm_head.weight is ours.model.embed_tokens.weight      # tied stays tied: one tensor, not two
    (tmp_path / "m" / "model.safetensors").rename(tmp_path / "m" / "weights.bin")
    with pytest.raises(ValueError, match="only safetensors"):
        load_llama(tmp_path / "m")


def test_weight_map_lists_every_tensor_of_the_model_including_biases():
    from llmfs.llama import Llama, LlamaConfig, weight_map
    for extra in ({}, {"qkv_bias": True}, {"o_bias": True, "mlp_bias": True}):
        config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False, **extra)
        names = {re.sub(r"\.\d+\.", ".{i}.", n) for n in Llama(config).state_dict()}
        assert set(weight_map(config)) == names
