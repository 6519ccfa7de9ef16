"""The one memory estimate (llmfs.memory) held against the tensor bytes a real run holds: for every precision mode
and method the training loop runs on a CPU, each part of `estimate_run` is within 10% of what `llmfs.train`
counted on its own tensors (weights, gradients and AdamW states after an optimizer step; activations through
autograd's saved-tensor hooks during the forward pass). Our GPT in every combination, our Llama (grouped-query
attention, SwiGLU, RMSNorm, a tied head, as smollm2-135m) in every mode and every method."""

from __future__ import annotations

import pytest
import torch

from llmfs import lora
from llmfs.config import TrainConfig
from llmfs.llama import Llama, LlamaConfig
from llmfs.memory import estimate_run, param_count
from llmfs.model import GPT, GPTConfig
from llmfs.precision import PRECISIONS, plan_precision
from llmfs.tensor_memory import PARTS
from llmfs.train import RandomWindows, train

# Every quantized weight matrix a multiple of 64 values (bitsandbytes' block), two heads, untied vocabulary rows.
CFG = GPTConfig(vocab_size=512, n_positions=64, n_embd=64, n_layer=2, n_head=2)
LLAMA = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=64)
METHODS = {"full": {}, "freeze_bottom": {"freeze": "freeze_bottom", "freeze_layers": 1},
           "lora": {"lora_rank": 4, "lora_targets": "qkv,mlp_out"},
           "qlora": {"lora_rank": 4, "lora_targets": "qkv,mlp_out", "quantize": "4bit"}}
TOLERANCE = 0.10


class ListSink:
    def __init__(self):
        self.records = []

    def emit(self, step, kind="train", **metrics):
        self.records.append({"step": step, "kind": kind, **metrics})


def _run(mode: str, method: str, steps: int = 2, config: GPTConfig | LlamaConfig = CFG):
    """A real run as `llmfs.recipes` prepares it (4-bit base first, then the adapters), on the CPU."""
    cfg = TrainConfig(steps=steps, batch_size=4, seq_len=32, lr=1e-3, warmup_steps=1, eval_every=0,
                      checkpoint_every=0, device="cpu", precision=mode, **METHODS[method])
    torch.manual_seed(0)
    model = Llama(config) if isinstance(config, LlamaConfig) else GPT(config)
    if cfg.quantize == "4bit":
        lora.quantize_4bit(model, double_quant=cfg.double_quant,
                           compute_dtype=plan_precision(mode, "cpu").compute_dtype)
    if cfg.lora:
        lora.add_adapter(model, "default", rank=cfg.lora_rank, alpha=8.0, targets=cfg.lora_targets,
                         model_type=getattr(config, "model_type", "gpt2"), seed=0)
        lora.mark_trainable(model, "default")
    sink = ListSink()
    result = train(model, RandomWindows(torch.arange(3000) % config.vocab_size, 4, 32, seed=0), cfg, sink=sink)
    return cfg, result, sink.records


CASES = [(mode, method) for mode in PRECISIONS for method in METHODS
         if not (method == "qlora" and mode == "bf16-pure")]  # TrainConfig refuses a 4-bit base in pure bf16
# Our Llama: every mode (full fine-tune) and every method (in one mode or two), to keep the test short
LLAMA_CASES = [*((mode, "full") for mode in PRECISIONS), ("fp32", "freeze_bottom"), ("bf16", "lora"),
               ("bf16-pure", "lora"), ("fp32", "qlora"), ("bf16", "qlora")]


@pytest.mark.parametrize("config, mode, method", [*((CFG, *c) for c in CASES), *((LLAMA, *c) for c in LLAMA_CASES)],
                         ids=[*(f"gpt-{m}-{x}" for m, x in CASES), *(f"llama-{m}-{x}" for m, x in LLAMA_CASES)])
def test_estimate_within_10_percent_of_the_run(config, mode, method):
    if method == "qlora":
        pytest.importorskip("bitsandbytes")
    cfg, result, records = _run(mode, method, config=config)
    measured = result.tensor_memory
    assert set(measured) == set(PARTS) and all(v > 0 for v in measured.values())
    assert [r["step"] for r in records if r["kind"] == "tensor_memory"] == [1, 2]
    est = estimate_run(config, cfg).to_dict()
    for part in PARTS:
        assert est[part] == pytest.approx(measured[part], rel=TOLERANCE), part
    assert est["total_bytes"] == pytest.approx(sum(measured.values()), rel=TOLERANCE)


def test_bf16_pure_keeps_8_bytes_per_parameter_where_fp32_keeps_16():
    """The run record's bf16-pure estimate used to count fp32 master weights and states (16 bytes a parameter):
    twice what the loop keeps."""
    n = param_count(CFG)
    state = {}
    for mode in ("fp32", "bf16", "bf16-pure"):
        cfg, result, _ = _run(mode, "full", steps=1)
        held = sum(result.tensor_memory[p] for p in PARTS[:3])
        est = estimate_run(CFG, cfg)
        state[mode] = (held / n, (est.weights_bytes + est.gradients_bytes + est.optimizer_bytes) / n)
    assert state["fp32"][0] == pytest.approx(16, abs=0.01) and state["fp32"][1] == 16
    assert state["bf16"][0] == pytest.approx(16, abs=0.01) and state["bf16"][1] == 16  # AMP: fp32 weights, states
    assert state["bf16-pure"][0] == pytest.approx(8, abs=0.01) and state["bf16-pure"][1] == 8


def test_the_run_record_is_the_one_estimate():
    from llmfs.recipes import _memory_estimate
    cfg = TrainConfig(precision="bf16-pure", batch_size=4, seq_len=32, freeze="freeze_bottom", device="cpu")
    model = GPT(CFG)
    recorded = _memory_estimate(model, cfg)
    assert recorded == estimate_run(CFG, cfg).to_dict()
    assert recorded["precision"] == "bf16-pure" and recorded["freeze"] == "freeze_bottom"
