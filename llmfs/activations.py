"""What our models' forward passes keep for the backward pass, op by op: the activations part of
`llmfs.memory.estimate`, for our GPT (`llmfs.model.GPT`) and our Llama (`llmfs.llama.Llama`, which trains every
llama / qwen2 folder).

An operation saves tensors for backward only where a gradient has to flow: nothing below a frozen part of the
network that nothing trainable feeds, a matmul's input only when its weight trains, its weight only when its input
needs a gradient. So freezing the bottom blocks, LoRA and a linear probe change the activations too, not only the
gradients and optimizer states, and this walk through each model's `forward` follows those rules:

- LayerNorm (GPT): its input and the per-token mean and 1/std.
- RMSNorm (Llama, computed in fp32): when its input needs a gradient, the input in fp32 (a new copy when it is
  bf16) and the per-token fp32 1/rms; when its weight trains, the normalized input (in the input's dtype).
- Linear: its input when the weight trains; when the input needs a gradient, the weight, which under autocast is a
  new 16-bit copy of it (an fp32 weight is the parameter itself, counted as a weight).
- Autocast (fp16 / bf16): matmul inputs are cast to 16 bits (a new tensor when the input was fp32, e.g. a norm's
  output: one per consuming layer), the residual stream stays fp32, and the loss's log-softmax runs in fp32.
- Attention (`scaled_dot_product_attention`, fused): q, k, v, its output and one fp32 log-sum-exp per head and
  token; no T x T score matrix. Llama: keys and values at their own (grouped-query) width; q and k are new tensors
  after the rotary embedding, whose cos and sin tables (sequence x head width, the weights' dtype) are kept once.
- GELU (GPT): its input. SwiGLU (Llama): silu's input, silu's output and the up projection's output.
- Cross-entropy: the log-softmax output (our Llama computes it on fp32 logits always), the targets and one
  scalar. Embeddings: the token ids.
- 4-bit base layers (bitsandbytes' Linear4bit): nothing (the frozen weight is dequantized again for backward); the
  output keeps the input's dtype.
- LoRA (`llmfs.lora.LoRALinear`): A's input (cast to the adapters' dtype first) and A's output (r features).

Held against autograd's saved-tensor hooks on a CPU with PyTorch 2.13 (tests/test_memory_measured.py: exact to a
few bytes, both models). CUDA's fused kernels save the same tensors, but pure bf16 keeps LayerNorm statistics in
fp32 there (a few percent more, not counted). Not counted either: dropout masks (the lab fine-tunes without
dropout), temporary buffers. Other architectures (trained through transformers) have no walk here:
`llmfs.memory.activation_bytes` estimates them with a published formula.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .llama import LlamaConfig
from .model import GPTConfig
from .targets import QUANT_SKIP

ID_BYTES = 8  # token ids and targets are int64


@dataclass(frozen=True)
class _Value:
    """A tensor of the forward pass, as far as memory goes: two values with the same key are one storage."""

    key: str
    width: int      # features per token
    nbytes: int     # bytes per element
    grad: bool      # requires grad


@dataclass
class _Forward:
    """The operations both models share, and the bytes they keep (`saved`: storage key -> bytes)."""

    cfg: Any                            # GPTConfig or LlamaConfig
    batch_size: int
    seq_len: int
    param_bytes: int                    # 4, or 2 under pure bf16
    compute_bytes: int                  # what matmuls produce: 2 under autocast or pure bf16, else 4
    autocast: bool
    trains: Callable[[str], bool]       # parameter name -> trains
    lora: Mapping[str, int]             # module name -> adapter rank
    quantized: bool
    saved: dict[str, int] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.batch_size * self.seq_len

    def keep(self, key: str, nbytes: int) -> None:
        self.saved.setdefault(key, nbytes)

    def keep_value(self, v: _Value) -> None:
        self.keep(v.key, self.tokens * v.width * v.nbytes)

    def cast(self, v: _Value, nbytes: int, consumer: str) -> _Value:
        """v in `nbytes` per element: itself when it already is, else a new tensor (each consumer its own)."""
        return v if v.nbytes == nbytes else _Value(f"{v.key}>{consumer}@{nbytes}", v.width, nbytes, v.grad)

    def linear(self, u: _Value, name: str, fan_in: int, fan_out: int) -> _Value:
        w_trains = self.trains(f"{name}.weight")
        if self.quantized and name.split(".")[-1] not in QUANT_SKIP:
            out = _Value(name, fan_out, u.nbytes, u.grad)
        else:
            x = self.cast(u, self.compute_bytes, name) if self.autocast else u
            if w_trains:
                self.keep_value(x)
            if u.grad and self.autocast:
                self.keep(f"{name}.weight@16", fan_in * fan_out * self.compute_bytes)
            out = _Value(name, fan_out, self.compute_bytes, u.grad or w_trains or self.trains(f"{name}.bias"))
        rank = self.lora.get(name)
        return self._lora(u, out, name, fan_in, fan_out, rank) if rank else out

    def _lora(self, u: _Value, out: _Value, name: str, fan_in: int, fan_out: int, rank: int) -> _Value:
        h = self.cast(u, self.param_bytes, f"{name}.lora")  # LoRALinear: x.to(A's dtype)
        a_in = self.cast(h, self.compute_bytes, f"{name}.lora_A") if self.autocast else h
        self.keep_value(a_in)                                      # A trains
        if h.grad and self.autocast:
            self.keep(f"{name}.lora_A@16", fan_in * rank * self.compute_bytes)
        a_out = _Value(f"{name}.lora_A", rank, self.compute_bytes, True)
        self.keep_value(a_out)                                     # B trains
        if self.autocast:
            self.keep(f"{name}.lora_B@16", rank * fan_out * self.compute_bytes)
        return _Value(f"{name}+lora", fan_out, out.nbytes, True)

    @staticmethod
    def add(x: _Value, y: _Value, key: str) -> _Value:
        return _Value(key, x.width, max(x.nbytes, y.nbytes), x.grad or y.grad)


class _GPT(_Forward):
    """`llmfs.model.GPT.forward`."""

    def layer_norm(self, x: _Value, name: str) -> _Value:
        trains = self.trains(f"{name}.weight") or self.trains(f"{name}.bias")
        if x.grad or trains:
            self.keep_value(x)
            self.keep(f"{name}.stats", 2 * self.tokens * x.nbytes)  # mean and 1/std per token
        return _Value(name, x.width, x.nbytes, x.grad or trains)

    def attention(self, qkv: _Value, name: str) -> _Value:
        width = qkv.width // 3
        out_bytes = self.compute_bytes if self.autocast else qkv.nbytes
        if qkv.grad:
            if self.autocast and qkv.nbytes != self.compute_bytes:  # q, k and v each cast on their own
                for part in "qkv":
                    self.keep(f"{name}.{part}@16", self.tokens * width * self.compute_bytes)
            else:
                self.keep_value(qkv)
            self.keep(f"{name}.out", self.tokens * width * out_bytes)
            self.keep(f"{name}.logsumexp", self.batch_size * self.cfg.n_head * self.seq_len * 4)
        return _Value(f"{name}.out", width, out_bytes, qkv.grad)

    def gelu(self, v: _Value, name: str) -> _Value:
        if v.grad:
            self.keep_value(v)
        return _Value(f"{name}.gelu", v.width, v.nbytes, v.grad)

    def block(self, x: _Value, i: int) -> _Value:
        h, pre = self.cfg.n_embd, f"transformer.h.{i}."
        u = self.layer_norm(x, pre + "ln_1")
        qkv = self.linear(u, pre + "attn.c_attn", h, 3 * h)
        y = self.attention(qkv, pre + "attn")
        x = self.add(x, self.linear(y, pre + "attn.c_proj", h, h), pre + "resid_1")
        u = self.layer_norm(x, pre + "ln_2")
        g = self.gelu(self.linear(u, pre + "mlp.c_fc", h, 4 * h), pre + "mlp")
        return self.add(x, self.linear(g, pre + "mlp.c_proj", 4 * h, h), pre + "resid_2")

    def run(self) -> int:
        cfg, n = self.cfg, self.tokens
        wte, wpe = self.trains("transformer.wte.weight"), self.trains("transformer.wpe.weight")
        if wte:
            self.keep("idx", n * ID_BYTES)
        if wpe:
            self.keep("pos", self.seq_len * ID_BYTES)
        x = _Value("embeddings", cfg.n_embd, self.param_bytes, wte or wpe)
        for i in range(cfg.n_layer):
            x = self.block(x, i)
        logits = self.linear(self.layer_norm(x, "transformer.ln_f"), "lm_head", cfg.n_embd, cfg.vocab_rows)
        if logits.grad:
            loss_bytes = 4 if self.autocast else self.compute_bytes  # autocast runs log_softmax in fp32
            self.keep("log_softmax", n * cfg.vocab_size * loss_bytes)
            self.keep("targets", n * ID_BYTES)
            self.keep("total_weight", loss_bytes)
        return sum(self.saved.values())


class _Llama(_Forward):
    """`llmfs.llama.Llama.forward` (the names are Hugging Face's: `model.layers.{i}.self_attn.q_proj` ...)."""

    def rms_norm(self, x: _Value, name: str) -> _Value:
        """`llmfs.llama.RMSNorm`: x.float() * rsqrt(mean(x^2) + eps), back to x's dtype, times the weight."""
        trains = self.trains(f"{name}.weight")
        if x.grad:
            self.keep_value(self.cast(x, 4, name))           # pow and the product keep the fp32 input
            self.keep(f"{name}.rstd", self.tokens * 4)       # one fp32 1/rms per token
        if trains:
            self.keep(f"{name}.normed", self.tokens * x.width * x.nbytes)  # the weight's gradient reads it
        return _Value(name, x.width, max(x.nbytes, self.param_bytes), x.grad or trains)

    def attention(self, q: _Value, k: _Value, v: _Value, name: str) -> _Value:
        """Rotary embeddings on q and k (new tensors, promoted to the cos / sin tables' dtype), then SDPA with
        grouped-query attention: k and v at their own (n_kv_head) width."""
        cfg = self.cfg
        grad = q.grad or k.grad or v.grad
        if q.grad or k.grad:  # q * cos + rotate_half(q) * sin keeps the two tables, computed once per forward
            for table in ("cos", "sin"):
                self.keep(f"rope.{table}", self.seq_len * cfg.head_size * self.param_bytes)
        rotated = max(q.nbytes, self.param_bytes)
        sdpa = self.compute_bytes if self.autocast else rotated
        if grad:
            self.keep(f"{name}.q", self.tokens * q.width * sdpa)
            self.keep(f"{name}.k", self.tokens * k.width * sdpa)
            self.keep_value(self.cast(v, sdpa, name) if self.autocast else v)
            self.keep(f"{name}.out", self.tokens * q.width * sdpa)  # o_proj reads this storage as it is
            self.keep(f"{name}.logsumexp", self.batch_size * cfg.num_attention_heads * self.seq_len * 4)
        return _Value(f"{name}.out", q.width, sdpa, grad)

    def swiglu(self, gate: _Value, up: _Value, name: str) -> _Value:
        """silu(gate) * up: silu keeps its input, the product both its factors."""
        if gate.grad:
            self.keep_value(gate)
        act = _Value(f"{name}.silu", gate.width, gate.nbytes, gate.grad)
        if up.grad:
            self.keep_value(act)
        if act.grad:
            self.keep_value(up)
        return _Value(f"{name}.act", gate.width, max(act.nbytes, up.nbytes), act.grad or up.grad)

    def block(self, x: _Value, i: int) -> _Value:
        cfg, pre = self.cfg, f"model.layers.{i}."
        h, inner = cfg.hidden_size, cfg.intermediate_size
        q_width, kv_width = cfg.num_attention_heads * cfg.head_size, cfg.num_key_value_heads * cfg.head_size
        u = self.rms_norm(x, pre + "input_layernorm")
        q, k, v = (self.linear(u, f"{pre}self_attn.{p}_proj", h, w)
                   for p, w in (("q", q_width), ("k", kv_width), ("v", kv_width)))
        y = self.attention(q, k, v, pre + "self_attn")
        x = self.add(x, self.linear(y, pre + "self_attn.o_proj", q_width, h), pre + "resid_1")
        u = self.rms_norm(x, pre + "post_attention_layernorm")
        a = self.swiglu(self.linear(u, pre + "mlp.gate_proj", h, inner), self.linear(u, pre + "mlp.up_proj", h, inner),
                        pre + "mlp")
        return self.add(x, self.linear(a, pre + "mlp.down_proj", inner, h), pre + "resid_2")

    def run(self) -> int:
        cfg, n = self.cfg, self.tokens
        embeddings = self.trains("model.embed_tokens.weight")
        if embeddings:
            self.keep("idx", n * ID_BYTES)
        x = _Value("embeddings", cfg.hidden_size, self.param_bytes, embeddings)
        for i in range(cfg.num_hidden_layers):
            x = self.block(x, i)
        logits = self.linear(self.rms_norm(x, "model.norm"), "lm_head", cfg.hidden_size, cfg.vocab_size)
        if logits.grad:  # the loss runs on logits.float(): an fp32 log-softmax in every mode
            self.keep("log_softmax", n * cfg.vocab_size * 4)
            self.keep("targets", n * ID_BYTES)
            self.keep("total_weight", 4)
        return sum(self.saved.values())


def saved_bytes(cfg: GPTConfig | LlamaConfig, *, batch_size: int, seq_len: int, param_bytes: int,
                compute_bytes: int, autocast: bool, trains: Callable[[str], bool],
                lora: Mapping[str, int] | None = None, quantized: bool = False) -> int:
    """Bytes the forward pass of our GPT (a `GPTConfig`) or our Llama (a `LlamaConfig`) saves for backward, each
    storage once.

    Args:
        param_bytes: bytes per weight (4, or 2 under pure bf16); the embeddings and residual stream have them.
        compute_bytes: bytes per element matmuls produce (2 under autocast or pure bf16, else 4).
        autocast: fp16 / bf16 mixed precision (16-bit copies of matmul inputs and weights).
        trains: whether a parameter (by its name in the model's `named_parameters()`) gets a gradient.
        lora: adapter rank per adapted linear layer (module name); their A and B train.
        quantized: every linear layer but the head is a 4-bit bitsandbytes layer.
    Raises:
        TypeError: a config of another model (this walk knows our two models' forward passes only).
    """
    walks = {GPTConfig: _GPT, LlamaConfig: _Llama}
    walk = walks.get(type(cfg))
    if walk is None:
        raise TypeError(f"No activation walk for {type(cfg).__name__}: only our GPT's and Llama's configs.")
    return walk(cfg, batch_size, seq_len, param_bytes, compute_bytes, autocast, trains, lora or {}, quantized).run()
