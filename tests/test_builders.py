"""llmfs.builders: a training run's model comes from the builder registered for its family; a new family plugs in
with one registry entry, without touching the recipe."""

from __future__ import annotations

from llmfs import builders
from llmfs.config import TrainConfig
from llmfs.freeze import FreezePlan
from llmfs.hf_causal import CausalLM
from llmfs.llama import Llama
from llmfs.model import GPT


class Ctx:
    """What a builder reports through: log lines and emitted records."""

    def __init__(self):
        self.lines, self.records = [], []

    def log(self, message):
        self.lines.append(message)

    def emit(self, step, kind="train", **metrics):
        self.records.append({"step": step, "kind": kind, **metrics})


def test_our_gpt_full_fine_tune_gets_a_freeze_plan(tiny_hf_folder):
    ctx = Ctx()
    built = builders.build_model(ctx, TrainConfig(model=str(tiny_hf_folder), device="cpu", freeze="bitfit", seq_len=16))
    assert isinstance(built.model, GPT) and isinstance(built.plan, FreezePlan) and built.plan.strategy == "bitfit"
    assert built.base_name == str(tiny_hf_folder.resolve())
    assert [r["kind"] for r in ctx.records] == ["freeze"] and ctx.records[0]["strategy"] == "bitfit"


def test_our_gpt_with_lora_trains_only_the_adapters(tiny_hf_folder):
    ctx = Ctx()
    built = builders.build_model(ctx, TrainConfig(model=str(tiny_hf_folder), device="cpu", lora_rank=4, seq_len=16))
    trainable = {n for n, p in built.model.named_parameters() if p.requires_grad}
    assert built.plan is None and trainable and all("lora_" in n for n in trainable)
    assert "LoRA rank 4" in ctx.lines[-1]


def test_a_llama_folder_builds_our_llama_with_our_lora(tiny_llama_folder):
    ctx = Ctx()
    built = builders.build_model(ctx, TrainConfig(model=str(tiny_llama_folder), device="cpu", lora_rank=4,
                                                   lora_targets="qkv,mlp_out", seq_len=16))
    assert isinstance(built.model, Llama) and built.plan is None
    trainable = sorted({n.split(".lora_")[0].rsplit(".", 1)[-1] for n, p in built.model.named_parameters()
                        if p.requires_grad})
    assert trainable == ["down_proj", "k_proj", "q_proj", "v_proj"]
    assert "LoRA rank 4" in ctx.lines[-1] and "via llmfs.lora" in ctx.lines[-1]


def test_a_llama_full_fine_tune_gets_a_freeze_plan(tiny_llama_folder):
    built = builders.build_model(Ctx(), TrainConfig(model=str(tiny_llama_folder), device="cpu", freeze="train_top",
                                                     freeze_layers=1, seq_len=16))
    assert isinstance(built.model, Llama) and built.plan.strategy == "train_top"
    trains = {n for n, p in built.model.named_parameters() if p.requires_grad}
    assert trains == {n for n, _ in built.model.named_parameters()
                      if n.startswith(("model.layers.1.", "model.norm.", "lm_head."))}
    assert built.model.lm_head.weight is not built.model.model.embed_tokens.weight  # untied for train_top


def test_another_family_goes_through_peft(tiny_mistral_folder):
    built = builders.build_model(Ctx(), TrainConfig(model=str(tiny_mistral_folder), device="cpu", lora_rank=4,
                                                     seq_len=16))
    assert isinstance(built.model, CausalLM) and built.model.config.model_type == "mistral"


def test_a_new_family_plugs_in_with_one_registry_entry(tiny_llama_folder, monkeypatch):
    seen = []

    def build_llama(ctx, cfg, folder, base_name, device):
        seen.append((folder, base_name, device))
        return builders.BuiltModel("our llama", "its tokenizer", None, base_name)

    monkeypatch.setitem(builders.BUILDERS, "llama", build_llama)
    built = builders.build_model(Ctx(), TrainConfig(model=str(tiny_llama_folder), device="cpu"))
    assert built.model == "our llama" and seen == [(tiny_llama_folder, str(tiny_llama_folder.resolve()), "cpu")]
    assert builders.builder_for("mistral") is builders.build_hf_causal and builders.builder_for("gpt2") is \
        builders.build_ours and builders.builder_for("qwen2") is builders.build_ours
