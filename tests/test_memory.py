"""Memory estimate (llmfs.memory): parameter counts against transformers, adapter counts against PEFT, 4-bit
storage against bitsandbytes, bytes per parameter per precision mode, and the lesson's "7B: ~14 GB in 16 bits,
~4 GB in QLoRA". tests/test_memory_measured.py holds it against the tensors of real runs."""

from __future__ import annotations

import json

import pytest
import torch

from llmfs import memory as M
from llmfs.lora import target_modules
from llmfs.model import GPT, GPTConfig

TINY_GPT2 = {"model_type": "gpt2", "vocab_size": 100, "n_positions": 32, "n_embd": 64, "n_layer": 2, "n_head": 2}
TINY_LLAMA = {"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 64, "tie_word_embeddings": False}
# An architecture neither of our models implements (it trains through transformers): the published formula's case.
MISTRAL_7B = {**M.LLAMA_2_7B, "model_type": "mistral", "architectures": ["MistralForCausalLM"], "sliding_window": None}


def _hf_model(d: dict, meta: bool = False):
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg = AutoConfig.for_model(d["model_type"], **{k: v for k, v in d.items() if k != "model_type"})
    if meta:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(cfg)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg)


# -- parameter counts ----------------------------------------------------------------------------------------------
def test_gpt2_small_count_matches_ours_and_transformers():
    hf_dict = GPTConfig.preset("gpt2").to_hf_dict()
    assert M.param_count(GPTConfig.preset("gpt2")) == 124_439_808
    assert M.param_count(hf_dict) == 124_439_808
    assert M.param_count(M.EXAMPLE_CONFIGS["GPT-2 small (124M)"]) == 124_439_808
    assert _hf_model(hf_dict, meta=True).num_parameters() == 124_439_808  # GPT2LMHeadModel, tied head once


def test_llama_2_7b_count_matches_closed_form():
    c = M.LLAMA_2_7B
    h, i, n, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    # embeddings + untied head, per layer q/k/v/o (4h^2) + gate/up/down (3hi) + two RMSNorms, final norm
    assert 2 * v * h + n * (4 * h * h + 3 * h * i + 2 * h) + h == 6_738_415_616
    assert M.param_count(M.LLAMA_2_7B) == 6_738_415_616
    assert M.param_count(M.EXAMPLE_CONFIGS["GPT-2 XL (1.5B)"]) == 1_557_611_200


def test_config_accepted_as_dict_json_folder_and_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY_LLAMA))
    expected = _hf_model(TINY_LLAMA, meta=True).num_parameters()
    for form in (TINY_LLAMA, json.dumps(TINY_LLAMA, indent=2), str(tmp_path), tmp_path / "config.json"):
        assert M.param_count(form) == expected


def test_linear_shapes_of_our_gpt_equal_transformers_gpt2():
    # activation_function relu is a variant our GPT does not implement, so this one is built by transformers
    # (Conv1D layers); the sizes and names must come out as our GPT's.
    ours = M.linear_shapes(TINY_GPT2)
    theirs = M.linear_shapes({**TINY_GPT2, "activation_function": "relu"})
    assert ours == theirs
    assert ("transformer.h.0.attn.c_attn", 64, 192) in ours and ("lm_head", 64, 100) in ours
    assert len(ours) == 2 * 4 + 1


# -- LoRA adapter counts against PEFT ------------------------------------------------------------------------------
def _peft_counts(d: dict, targets: str, rank: int) -> tuple[int, int]:
    from peft import LoraConfig, get_peft_model
    model = _hf_model(d)
    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=target_modules(targets, d["model_type"]),
                     fan_in_fan_out=d["model_type"] == "gpt2")  # GPT-2's Conv1D stores weights (in, out)
    return get_peft_model(model, cfg).get_nb_trainable_parameters()


@pytest.mark.parametrize("config, targets", [
    (TINY_GPT2, "qkv"), (TINY_GPT2, "qkv,mlp_out"), (TINY_GPT2, "all-linear"),
    (TINY_LLAMA, "qkv,attn_proj"), (TINY_LLAMA, "all-linear"),
])
def test_lora_trainable_equals_formula_and_peft(config, targets):
    rank = 4
    e = M.estimate(config, "lora", rank=rank, targets=targets)
    suffixes = target_modules(targets, config["model_type"])
    formula = sum(rank * (i + o) for name, i, o in M.linear_shapes(config)
                  if any(name == s or name.endswith("." + s) for s in suffixes))
    assert e.trainable_params == formula > 0
    assert (e.trainable_params, e.total_params) == _peft_counts(config, targets, rank)


def test_llama_qkv_attn_proj_targets_q_k_v_o():
    assert target_modules("qkv,attn_proj", "llama") == ["q_proj", "k_proj", "v_proj", "o_proj"]
    # GQA: k and v project to 2 heads * 16 = 32 features, q and o to 64.
    e = M.estimate(TINY_LLAMA, "lora", rank=2, targets="qkv,attn_proj")
    assert e.trainable_params == 2 * 2 * ((64 + 64) + (64 + 32) + (64 + 32) + (64 + 64))


# -- bytes ---------------------------------------------------------------------------------------------------------
def test_lesson_7b_numbers():
    full16 = M.estimate(M.LLAMA_2_7B, "full", precision="bf16-pure")
    assert 13.4e9 < full16.weights_bytes < 13.6e9 and M.fmt_bytes(full16.weights_bytes) == "13.5 GB"
    qlora = M.estimate(M.LLAMA_2_7B, "qlora", precision="bf16-pure")  # the paper's setting: the rest in bf16
    assert 3.5e9 < qlora.weights_bytes < 4.2e9
    # fp32 Adam: 4 + 4 + 8 bytes per parameter; PyTorch's AMP keeps the same fp32 weights, gradients and states;
    # pure bf16: 2 + 2 + 4
    for precision, per_param in (("fp32", 16), ("fp16", 16), ("bf16", 16), ("bf16-pure", 8)):
        e = M.estimate(M.LLAMA_2_7B, "full", precision=precision)
        assert (e.weights_bytes + e.gradients_bytes + e.optimizer_bytes) == per_param * e.total_params


@pytest.mark.parametrize("config", [M.LLAMA_2_7B, GPTConfig.preset("gpt2")])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "bf16-pure"])
def test_qlora_below_lora_below_full(config, precision):
    est = M.compare(config, rank=8, targets="qkv", batch_size=1, seq_len=256, precision=precision)
    assert est["qlora"].total_bytes < est["lora"].total_bytes < est["full"].total_bytes
    assert est["lora"].trainable_params == est["qlora"].trainable_params < est["full"].trainable_params
    for e in est.values():
        assert e.precision == precision
        assert sum(b for _, b in e.parts()) == e.total_bytes
        assert [label for label, _ in e.parts()] == ["Weights", "Gradients", "Optimizer states", "Activations"]
        json.dumps(e.to_dict())


def test_double_quant_saves_the_constants():
    arch = M.architecture(M.LLAMA_2_7B)
    n = arch.quantized_params
    plain, double = M.quantized_bytes(n, double_quant=False), M.quantized_bytes(n, double_quant=True)
    # 0.5 bit -> 0.127 bit of constants per weight (QLoRA sec. 2)
    assert (plain - double) * 8 / n == pytest.approx(0.5 - (8 / 64 + 32 / (64 * 256)), abs=1e-6)
    est = {dq: M.estimate(M.LLAMA_2_7B, "qlora", double_quant=dq).weights_bytes for dq in (False, True)}
    # each of the 224 quantized tensors also keeps its code tables: 64 bytes, plus 1,028 with double quantization
    assert est[False] - est[True] == plain - double - 224 * M.DQ_TABLE_BYTES


@pytest.mark.parametrize("double_quant", [True, False])
def test_quantized_bytes_equal_bitsandbytes_storage(double_quant):
    pytest.importorskip("bitsandbytes")
    from llmfs.lora import QUANT_SKIP, quantize_4bit
    from llmfs.tensor_memory import storage_bytes, weight_tensors
    # every quantized layer a multiple of 64 * 256 weights, so bitsandbytes' blocks divide evenly
    cfg = GPTConfig(vocab_size=256, n_positions=32, n_embd=128, n_layer=1, n_head=2)
    model = GPT(cfg)
    n_layers = quantize_4bit(model, double_quant=double_quant)
    quantized = [m for m in model.modules() if type(m).__name__ == "Linear4bit"]
    weights = sum(m.weight.quant_state.shape.numel() for m in quantized)
    # the packed weights and every tensor of their quantization states (absmax, codes, offset), biases apart
    stored = storage_bytes(t for m in quantized for t in weight_tensors(m) if t is not m.bias)
    arch = M.architecture(cfg)
    assert (arch.quantized_layers, arch.quantized_params) == (n_layers, weights)
    assert arch.quantized_layers == len(arch.linears) - 1  # all but the head
    assert "lm_head" in QUANT_SKIP and not any(type(m).__name__ == "Linear4bit" for m in [model.lm_head])
    assert M.quantized_bytes(weights, double_quant, n_layers) == stored


def test_qlora_weights_rule():
    arch = M.architecture(TINY_LLAMA)
    rest = arch.total_params - arch.quantized_params
    assert rest == 2 * 100 * 64 + 2 * 2 * 64 + 64  # embeddings + head (not quantized), norms
    nf4 = M.quantized_bytes(arch.quantized_params, True, arch.quantized_layers)
    for precision, p in (("fp32", 4), ("bf16", 4), ("bf16-pure", 2)):  # AMP keeps the rest (and adapters) fp32
        e = M.estimate(TINY_LLAMA, "qlora", rank=4, targets="qkv", precision=precision)
        assert e.weights_bytes == nf4 + p * rest + p * e.trainable_params
        assert e.gradients_bytes == p * e.trainable_params and e.optimizer_bytes == 2 * p * e.trainable_params


def test_activations_follow_the_forward_pass():
    gpt2 = GPTConfig.preset("gpt2")

    def act(config=gpt2, **kw):
        return M.estimate(config, "lora", **kw).activations_bytes
    # our GPT, op by op: linear in batch and (fused attention, no T x T scores) in length, up to the loss's
    # one-scalar total weight
    assert act(batch_size=4) == pytest.approx(4 * act(batch_size=1), abs=16)
    assert act(seq_len=1024) == pytest.approx(2 * act(seq_len=512), abs=16)
    big = dict(batch_size=8, seq_len=1024)
    assert act(precision="fp32", **big) > act(precision="bf16", **big) > act(precision="bf16-pure", **big)
    # at batch 1, autocast's 16-bit copies of the (frozen) weights, 2 bytes per parameter, outweigh what it saves
    assert act(precision="bf16") > act(precision="fp32") > act(precision="bf16") - 2 * M.param_count(gpt2)
    # our Llama (llama / qwen2 configs) op by op too: linear in batch and length, up to the rotary tables (one per
    # forward, not per sequence) and the loss's scalar
    llama_act = act(M.LLAMA_2_7B, batch_size=1)
    assert act(M.LLAMA_2_7B, batch_size=4) == pytest.approx(4 * llama_act, rel=1e-4)
    assert act(M.LLAMA_2_7B, seq_len=1024) == pytest.approx(2 * act(M.LLAMA_2_7B, seq_len=512), rel=1e-4)
    # other architectures: Korthikanti et al. table 2, superlinear in length (the a*s^2 attention scores)
    arch = M.architecture(gpt2)
    assert M.activation_bytes(arch, 1, 1024) == 12 * 1024 * (34 * 768 + 5 * 12 * 1024) + 1024 * 50257 * 8
    assert act(MISTRAL_7B, seq_len=1024) > 2 * act(MISTRAL_7B, seq_len=512)
    assert act(MISTRAL_7B, batch_size=4) == 4 * act(MISTRAL_7B, batch_size=1)


def test_our_llama_config_is_read_as_its_config_json(tmp_path):
    """A loaded Llama's `model.config` (what the run record and L12 pass) gives the estimate its folder gives."""
    from llmfs.llama import Llama, LlamaConfig
    ours = LlamaConfig.from_hf({**TINY_LLAMA, "tie_word_embeddings": True})
    (tmp_path / "config.json").write_text(json.dumps(ours.to_hf_dict()))
    assert M.param_count(ours) == M.param_count(tmp_path) == Llama(ours).num_params()  # the tied head once
    assert ("model.layers.1.self_attn.k_proj", 64, 32) in M.linear_shapes(ours)  # 2 key / value heads of 16
    for method in M.METHODS:
        assert M.estimate(ours, method, seq_len=32) == M.estimate(tmp_path, method, seq_len=32)
    assert M.our_config(tmp_path).to_hf_dict() == ours.to_hf_dict()
    assert M.our_config(TINY_GPT2) == M.architecture(TINY_GPT2).gpt
    # architectures we do not train ourselves: none of ours, the published formula for their activations
    assert M.our_config({**TINY_LLAMA, "model_type": "mistral"}) is None
    sliding = {**TINY_LLAMA, "model_type": "qwen2", "use_sliding_window": True}  # a Qwen2 our Llama does not run
    assert M.our_config(sliding) is None and any("Korthikanti" in n for n in M.estimate(sliding).notes)


def test_freezing_strategies_apply_to_our_llama():
    from llmfs.config import TrainConfig
    full = M.estimate(TINY_LLAMA, seq_len=32)
    bitfit = M.estimate(TINY_LLAMA, freeze="bitfit", seq_len=32)
    assert bitfit.trainable_params == 2 * 2 * 64 + 64  # the RMSNorm weights: two a block and the final one
    assert bitfit.gradients_bytes == 4 * bitfit.trainable_params and bitfit.freeze == "bitfit"
    bottom = M.estimate_run(TINY_LLAMA, TrainConfig(freeze="freeze_bottom", freeze_layers=1, seq_len=32, batch_size=1))
    assert bottom.freeze == "freeze_bottom" and bottom.trainable_params < full.trainable_params
    assert bottom.activations_bytes < full.activations_bytes  # nothing below the trained block keeps activations


def test_notes_say_what_is_assumed():
    est = M.compare(M.LLAMA_2_7B, precision="bf16", seq_len=8192)
    assert any("stay fp32" in n for n in est["full"].notes)
    assert any("4-bit NF4" in n for n in est["qlora"].notes)
    assert any("longer than the model's context" in n for n in est["lora"].notes)
    assert any("llmfs.activations" in n for n in est["full"].notes)  # our Llama trains it: counted op by op
    assert any("Korthikanti" in n for n in M.estimate(MISTRAL_7B, seq_len=64).notes)
    pure = M.estimate(GPTConfig.preset("gpt2"), freeze="bitfit", precision="bf16-pure")
    assert any("bf16-pure" in n for n in pure.notes) and any("bitfit" in n for n in pure.notes)


# -- errors --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config, words", [
    ('{"model_type": "llama",}', "not valid JSON"),
    ('{"model_type": "foo"}', "model_type 'foo' is not known to transformers"),
    ({"hidden_size": 64}, "no \"model_type\""),
    ({"model_type": "t5"}, "no causal language model"),
    ("/no/such/folder", "neither a JSON object"),
    ({"model_type": "llama", "hidden_size": "big"}, "hidden_size"),
])
def test_bad_config_says_why(config, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        M.param_count(config)


def test_bad_settings_say_why():
    with pytest.raises(ValueError, match="match no linear layer"):
        M.estimate(TINY_LLAMA, "lora", targets="Wqkv")
    with pytest.raises(ValueError, match="Unknown method"):
        M.estimate(TINY_GPT2, "dora")
    with pytest.raises(ValueError, match="Unknown precision"):
        M.estimate(TINY_GPT2, precision="int8")
    with pytest.raises(ValueError, match="Freezing strategies know the layers of our GPT-2 and Llama only"):
        M.estimate({**TINY_LLAMA, "model_type": "mistral"}, freeze="bitfit")
    with pytest.raises(ValueError, match="seq_len"):
        M.estimate(TINY_GPT2, seq_len=0)


def test_fmt_bytes():
    assert M.fmt_bytes(13_476_831_232) == "13.5 GB"
    assert M.fmt_bytes(497_759_232) == "498 MB"
    assert M.fmt_bytes(1_500_000) == "1.5 MB"
    assert M.fmt_bytes(512) == "512 B"
    assert M.fmt_bytes(None) == "-"


@pytest.mark.parametrize("changes", [dict(lora_rank=8), dict(lora_rank=8, quantize="4bit", batch_size=4, seq_len=64),
                                     dict(lora_rank=16, lora_targets="all-linear", precision="bf16"),
                                     dict(freeze="freeze_embeddings", seq_len=32)])
@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_compare_run_holds_the_runs_own_estimate(changes, family):
    """The page's step 1 (`compare_run`) and the run's record (`estimate_run`) are one estimate for one set of
    settings: the chosen method's figure is the same number, the other methods use the same batch and length."""
    from llmfs.config import TrainConfig
    from llmfs.llama import LlamaConfig
    cfg = TrainConfig(**changes)
    config = (LlamaConfig.from_hf(TINY_LLAMA) if family == "llama" else
              GPTConfig(vocab_size=100, n_positions=128, n_embd=64, n_layer=2, n_head=2))
    method = "qlora" if cfg.quantize == "4bit" else "lora" if cfg.lora else "full"
    both = M.compare_run(config, cfg)
    assert both[method] == M.estimate_run(config, cfg)
    for m, est in both.items():
        assert est.method == m and est.precision == cfg.precision
    assert both["full"].freeze == (cfg.freeze if cfg.freeze != "full" else None)
