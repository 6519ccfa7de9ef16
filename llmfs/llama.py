"""A from-scratch Llama-family decoder (Llama 2 / 3, SmolLM, Qwen2) with Hugging Face's parameter names.

The blocks are the GPT-2 blocks of ``llmfs.model`` with four changes, each a line or two here:
- **RMSNorm** instead of LayerNorm: divide by the root mean square, no mean subtracted, no bias.
- **Rotary position embeddings** instead of learned positions: each query / key pair of dimensions is rotated by
  an angle proportional to the position, so their dot product depends on the distance between tokens.
  `rope_theta` sets the slowest rotation; Llama-3's `rope_scaling` slows the low frequencies for long contexts.
- **SwiGLU MLP**: down(silu(gate(x)) * up(x)), three matrices instead of two.
- **Grouped-query attention**: fewer key / value heads than query heads (SmolLM2-135M: 9 and 3), each key / value
  head shared by a group of query heads; the KV cache shrinks by the same ratio.

Parameter names equal ``LlamaForCausalLM``'s state-dict keys (``model.layers.0.self_attn.q_proj.weight`` ...), so a
checkpoint loads with ``load_state_dict`` as it is: ``WEIGHT_MAP`` lists the correspondence as data (the identity,
kept explicit so the L12 layer map can show it). Everything runs through PyTorch's SDPA.

References: Touvron et al. 2023 (Llama), Su et al. 2021 (RoFormer), Shazeer 2020 (GLU variants), Ainslie et al. 2023
(GQA); transformers ``models/llama/modeling_llama.py`` and ``modeling_rope_utils.py``; litgpt ``model.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

from .sampling import check_sampling, next_token

# model_type values whose folders this model reads (Qwen2 adds biases to q / k / v; the rest is Llama's).
MODEL_TYPES = ("llama", "qwen2")
ROPE_TYPES = ("default", "linear", "llama3")

# Our parameter name -> Hugging Face's, per block ({i}) and for the rest: the identity, as data.
BLOCK_WEIGHTS = ("input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                 "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                 "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")
WEIGHT_MAP: dict[str, str] = {
    "model.embed_tokens.weight": "model.embed_tokens.weight",
    **{f"model.layers.{{i}}.{name}": f"model.layers.{{i}}.{name}" for name in BLOCK_WEIGHTS},
    "model.norm.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}


def weight_map(config: LlamaConfig) -> dict[str, str]:
    """`WEIGHT_MAP` plus the biases `config` has (Qwen2's q / k / v, Llama's `attention_bias` and `mlp_bias`)."""
    biases = [f"self_attn.{p}_proj.bias" for p in "qkv" if config.qkv_bias]
    biases += ["self_attn.o_proj.bias"] if config.o_bias else []
    biases += [f"mlp.{p}_proj.bias" for p in ("gate", "up", "down") if config.mlp_bias]
    return {**WEIGHT_MAP, **{f"model.layers.{{i}}.{b}": f"model.layers.{{i}}.{b}" for b in biases}}


@dataclass(frozen=True)
class LlamaConfig:
    """Shape of a Llama-family model. Field names follow ``transformers.LlamaConfig``."""

    vocab_size: int = 49152
    hidden_size: int = 576
    intermediate_size: int = 1536
    num_hidden_layers: int = 30
    num_attention_heads: int = 9
    num_key_value_heads: int = 3
    head_dim: int | None = None
    """Width of one head (None: hidden_size / num_attention_heads)."""
    max_position_embeddings: int = 8192
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: Mapping[str, Any] | None = field(default=None, hash=False)
    """None, {"rope_type": "linear", "factor"} or Llama-3's {"rope_type": "llama3", "factor", "low_freq_factor",
    "high_freq_factor", "original_max_position_embeddings"}."""
    tie_word_embeddings: bool = True
    qkv_bias: bool = False
    """Biases on the query / key / value projections (Qwen2 has them; Llama's `attention_bias` sets all four)."""
    o_bias: bool = False
    mlp_bias: bool = False
    model_type: str = "llama"
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    """config.json fields this model does not use but a saved folder keeps (token ids, generation defaults)."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads={self.num_attention_heads} must be a multiple of "
                             f"num_key_value_heads={self.num_key_value_heads}: each key / value head serves a group "
                             "of query heads")
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                             f"{self.num_attention_heads}: set head_dim")
        if self.head_size % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.head_size}")
        rope_type = (self.rope_scaling or {}).get("rope_type", (self.rope_scaling or {}).get("type", "default"))
        if rope_type not in ROPE_TYPES:
            raise ValueError(f"rope scaling {rope_type!r} is not supported (supported: {', '.join(ROPE_TYPES)})")

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def n_positions(self) -> int:
        """The context length under GPT-2's name, which the training code reads."""
        return self.max_position_embeddings

    @property
    def n_layer(self) -> int:
        return self.num_hidden_layers

    @classmethod
    def from_hf(cls, hf: Mapping[str, Any] | Any) -> LlamaConfig:
        """From a ``config.json`` dict (or a transformers config): transformers 4's `rope_theta` / `rope_scaling`
        and transformers 5's `rope_parameters` both read.

        Raises:
            ValueError: another architecture, or a feature this model does not implement (sliding windows, an
                unknown RoPE scaling).
        """
        d = dict(hf) if isinstance(hf, Mapping) else hf.to_dict()
        model_type = d.get("model_type", "llama")
        if model_type not in MODEL_TYPES:
            raise ValueError(f"model_type {model_type!r} is not a Llama-family model (supported: "
                             f"{', '.join(MODEL_TYPES)})")
        if d.get("use_sliding_window"):
            raise ValueError("sliding-window attention (Qwen2's use_sliding_window) is not implemented")
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act {d.get('hidden_act')!r} is not supported (Llama's MLP uses silu)")
        rope = dict(d.get("rope_parameters") or {})
        scaling = d.get("rope_scaling") or {k: v for k, v in rope.items() if k != "rope_theta"}
        if scaling and scaling.get("rope_type", scaling.get("type", "default")) == "default":
            scaling = None
        theta = rope.get("rope_theta", d.get("rope_theta", 10000.0))
        missing = [k for k in REQUIRED_FIELDS if k not in d]
        if missing:
            raise ValueError(f"config.json lacks {', '.join(missing)}, which a {model_type} config always has")
        qwen = model_type == "qwen2"
        bias = bool(d.get("attention_bias", False))
        return cls(vocab_size=d["vocab_size"], hidden_size=d["hidden_size"],
                   intermediate_size=d["intermediate_size"], num_hidden_layers=d["num_hidden_layers"],
                   num_attention_heads=d["num_attention_heads"],
                   num_key_value_heads=d.get("num_key_value_heads") or d["num_attention_heads"],
                   head_dim=d.get("head_dim"), max_position_embeddings=d.get("max_position_embeddings", 2048),
                   rms_norm_eps=d.get("rms_norm_eps", 1e-6), rope_theta=float(theta),
                   rope_scaling=dict(scaling) if scaling else None,
                   tie_word_embeddings=bool(d.get("tie_word_embeddings", not qwen)),
                   qkv_bias=qwen or bias, o_bias=bias and not qwen, mlp_bias=bool(d.get("mlp_bias", False)),
                   model_type=model_type, extra={k: d[k] for k in KEPT_FIELDS if d.get(k) is not None})

    def to_hf_dict(self) -> dict[str, Any]:
        """config.json for transformers' LlamaForCausalLM / Qwen2ForCausalLM (what `from_hf` reads back)."""
        qwen = self.model_type == "qwen2"
        out: dict[str, Any] = {
            "model_type": self.model_type, "architectures": ["Qwen2ForCausalLM" if qwen else "LlamaForCausalLM"],
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads, "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_size, "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps, "rope_theta": self.rope_theta,
            "rope_scaling": dict(self.rope_scaling) if self.rope_scaling else None,
            "tie_word_embeddings": self.tie_word_embeddings, "hidden_act": "silu", "mlp_bias": self.mlp_bias}
        if qwen:
            out["use_sliding_window"] = False
        else:
            out["attention_bias"] = self.o_bias
        return {**dict(self.extra), **out}


REQUIRED_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
# config.json fields kept through a load and a save although the model does not read them.
KEPT_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "initializer_range", "torch_dtype")


def rope_frequencies(config: LlamaConfig) -> torch.Tensor:
    """The rotation speed of each pair of dimensions (head_size / 2 values, fastest first), after any scaling."""
    dim = config.head_size
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    scaling = dict(config.rope_scaling or {})
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "linear":  # positions divided by the factor: every frequency slowed alike
        return inv_freq / scaling["factor"]
    if kind == "llama3":
        # Llama 3.1: wavelengths longer than the original context / low_freq_factor are slowed by `factor`, those
        # shorter than context / high_freq_factor kept, and the band between blended smoothly.
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old_context = scaling.get("original_max_position_embeddings", config.max_position_embeddings)
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > old_context / low, inv_freq / factor, inv_freq)
        smooth = (old_context / wavelen - low) / (high - low)
        blended = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_context / high) & (wavelen <= old_context / low)
        return torch.where(medium, blended, scaled)
    return inv_freq


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in fp32 whatever the input's precision (as Llama's reference does)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class Attention(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        hd, nq, nkv = config.head_size, config.num_attention_heads, config.num_key_value_heads
        self.n_head, self.n_kv_head, self.head_dim = nq, nkv, hd
        self.q_proj = nn.Linear(config.hidden_size, nq * hd, bias=config.qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, nkv * hd, bias=config.qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, nkv * hd, bias=config.qkv_bias)
        self.o_proj = nn.Linear(nq * hd, config.hidden_size, bias=config.o_bias)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: list[torch.Tensor] | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        past = 0
        if cache is not None:  # [keys, values] of the tokens before these, grown in place
            if cache:
                past = cache[0].shape[2]
                k, v = torch.cat((cache[0], k), dim=2), torch.cat((cache[1], v), dim=2)
            cache[:] = [k, v]
        if past and T > 1:  # a chunk after cached tokens: each new token sees the past and its own prefix
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        else:  # no past: causal; one new token after a past: it may see everything
            y = F.scaled_dot_product_attention(q, k, v, is_causal=past == 0 and T > 1, enable_gqa=True)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, cache=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    """`model.*` of LlamaForCausalLM: embeddings, blocks, final norm."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class Llama(nn.Module):
    """Llama-family causal LM. `forward(idx, targets=None)` -> (logits, loss), like ``llmfs.model.GPT``."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.model = Decoder(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.register_buffer("inv_freq", rope_frequencies(config), persistent=False)
        self.apply(self._init_weights)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def _apply(self, fn, recurse=True):
        # `.to(bfloat16)` / `.half()` would round the rotation speeds (0.3% off on smollm2, radians of error at
        # position 2048): they are recomputed in fp32 on the new device after every move or cast.
        super()._apply(fn, recurse)
        self.inv_freq = rope_frequencies(self.config).to(self.inv_freq.device)
        return self

    def rotary(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for `positions`, (1, 1, T, head_size), computed in fp32 then cast (as transformers does)."""
        angles = positions.float()[:, None] * self.inv_freq.float()[None, :]
        emb = torch.cat((angles, angles), dim=-1)
        return emb.cos().to(dtype)[None, None], emb.sin().to(dtype)[None, None]

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                caches: list[list[torch.Tensor]] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab) and, with `targets`, the mean cross-entropy (targets of -100 ignored). `caches`
        (one list per block, empty at first) keeps the keys and values for generation."""
        past = caches[0][0].shape[2] if caches and caches[0] else 0
        if past + idx.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"sequence of {past + idx.shape[1]} tokens is longer than the model's context "
                             f"({self.config.max_position_embeddings})")
        x = self.model.embed_tokens(idx)
        positions = torch.arange(past, past + idx.shape[1], device=idx.device)
        cos, sin = self.rotary(positions, x.dtype)
        for i, block in enumerate(self.model.layers):
            x = block(x, cos, sin, caches[i] if caches is not None else None)
        logits = self.lm_head(self.model.norm(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, eos_token_id: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue `idx` (B, T) by up to `max_new_tokens` tokens with a KV cache: the prompt is read once, then
        each step feeds one token. Sampling as our GPT's (`llmfs.sampling`): temperature 0 is greedy; a row that
        produced `eos_token_id` is finished and padded with it; generation stops at the context length."""
        check_sampling(temperature, top_k, top_p)
        caches: list[list[torch.Tensor]] = [[] for _ in self.model.layers]
        logits, _ = self(idx, caches=caches)
        finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        out = idx
        for _ in range(max_new_tokens):
            nxt = next_token(logits[:, -1, :], temperature, top_k, top_p, generator)
            if eos_token_id is not None:
                nxt = nxt.masked_fill(finished[:, None], eos_token_id)
                finished |= nxt.squeeze(1) == eos_token_id
            out = torch.cat((out, nxt), dim=1)
            if eos_token_id is not None and bool(finished.all()):
                break
            if out.shape[1] >= self.config.max_position_embeddings:
                break
            logits, _ = self(nxt, caches=caches)
        return out


def load_llama(folder: str | Path, dtype: torch.dtype = torch.float32) -> Llama:
    """Our Llama with the weights of a Hugging Face folder (config.json + model.safetensors or its shards), loaded
    by name as they are: the state-dict keys are transformers' own.

    Raises:
        ValueError: not a Llama-family folder, or weights missing / left over (the message lists a few).
    """
    import json

    from safetensors.torch import load_file

    folder = Path(folder).expanduser()
    config = LlamaConfig.from_hf(json.loads((folder / "config.json").read_text()))
    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        raise ValueError(f"{folder} holds no model*.safetensors weights (only safetensors are read: pickled .bin "
                         "files can run code when loaded)")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    with torch.device("meta"):
        model = Llama(config)
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)   # some checkpoints store the tied copy too
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"{folder}: weights missing {missing[:5]} / not used {unexpected[:5]}")
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.inv_freq = rope_frequencies(config)   # a buffer, not in the checkpoint (built on 'meta' above)
    return model.to(dtype).eval()


def save_llama(model: Llama, folder: Path, tokenizer: Any = None) -> None:
    """Write `model` into `folder` as transformers writes a Llama / Qwen2 (config.json, model.safetensors, the
    tokenizer when given). A tied head is stored once (safetensors refuses shared tensors; transformers re-ties)."""
    import json

    from safetensors.torch import save_file

    config = {**model.config.to_hf_dict(), "torch_dtype": str(model.lm_head.weight.dtype).removeprefix("torch.")}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if model.lm_head.weight is model.model.embed_tokens.weight:
        state.pop("lm_head.weight")
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
