"""A from-scratch GPT-2 in the style of nanoGPT.

Parameter names equal Hugging Face ``GPT2LMHeadModel``'s state-dict keys, so converting a checkpoint is a
key table plus four transposes (see ``llmfs.weights``). The only layout difference: HF stores its projections
as ``Conv1D`` (weight ``(in, out)``) while we use ``nn.Linear`` (weight ``(out, in)``).

References:
- Radford et al. 2019, "Language Models are Unsupervised Multitask Learners" (GPT-2: pre-LN blocks, final LN,
  residual projections initialised with std 0.02 / sqrt(2 * n_layer)).
- karpathy/nanoGPT ``model.py``; transformers ``models/gpt2/modeling_gpt2.py``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

from .sampling import check_sampling, next_token


@dataclass(frozen=True)
class GPTConfig:
    """Shape and regularisation of a GPT-2. Field names follow ``transformers.GPT2Config``."""

    vocab_size: int = 50257
    """Number of token ids the embedding and the head cover."""
    n_positions: int = 1024
    """Context length: the longest sequence the model accepts (learned position embeddings)."""
    n_embd: int = 768
    """Width of the residual stream."""
    n_layer: int = 12
    """Number of transformer blocks."""
    n_head: int = 12
    """Attention heads per block; must divide n_embd."""
    dropout: float = 0.0
    """Dropout on embeddings, attention probabilities and residual branches (0.0 for inference and most fine-tuning)."""
    layer_norm_epsilon: float = 1e-5
    """Epsilon of every LayerNorm."""
    bias: bool = True
    """Biases in Linear and LayerNorm layers. GPT-2 has them; False is only for from-scratch experiments."""
    tie_word_embeddings: bool = True
    """Share one matrix between the token embedding and the output head (GPT-2 does)."""
    padded_vocab_size: int | None = None
    """Rows of the embedding and head tensors when larger than vocab_size (None: vocab_size). Padding to a multiple
    of 64 speeds up the head matmul (nanoGPT: 50257 -> 50304); the extra rows are never predicted."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd={self.n_embd} must be divisible by n_head={self.n_head} "
                f"(each head gets n_embd / n_head dimensions); pick e.g. n_head in {_divisors(self.n_embd)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.layer_norm_epsilon <= 0:
            raise ValueError(f"layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon}")
        if self.padded_vocab_size is not None and (
            not isinstance(self.padded_vocab_size, int) or self.padded_vocab_size < self.vocab_size
        ):
            raise ValueError(
                f"padded_vocab_size must be an integer >= vocab_size={self.vocab_size} (or None for no padding), "
                f"got {self.padded_vocab_size!r}"
            )

    @property
    def block_size(self) -> int:
        """nanoGPT's name for n_positions."""
        return self.n_positions

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def vocab_rows(self) -> int:
        """Rows of the embedding and head tensors: padded_vocab_size if set, else vocab_size."""
        return self.padded_vocab_size or self.vocab_size

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GPTConfig:
        """A named configuration from ``PRESETS``, optionally with some fields replaced.

        Raises:
            ValueError: unknown preset name.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)

    @classmethod
    def from_hf(cls, hf_config: Any, **overrides: Any) -> GPTConfig:
        """Build from a ``transformers.GPT2Config`` or its dict (``config.json``).

        HF's dropout probabilities are ignored (``dropout`` defaults to 0.0; pass ``dropout=...`` to train with it).

        Raises:
            ValueError: not a GPT-2 config, or a GPT-2 variant this model does not implement.
        """
        d = dict(hf_config) if isinstance(hf_config, Mapping) else hf_config.to_dict()
        model_type = d.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise ValueError(
                "only GPT-2-architecture checkpoints are supported (model_type 'gpt2'); "
                f"found model_type {model_type!r}"
            )
        unsupported = {
            "activation_function": (d.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh")),
            "n_inner": d.get("n_inner") not in (None, 4 * d.get("n_embd", 768)),
            "scale_attn_by_inverse_layer_idx": bool(d.get("scale_attn_by_inverse_layer_idx", False)),
            "scale_attn_weights": not d.get("scale_attn_weights", True),
            "add_cross_attention": bool(d.get("add_cross_attention", False)),
        }
        bad = [f"{k}={d.get(k)!r}" for k, is_bad in unsupported.items() if is_bad]
        if bad:
            raise ValueError(f"this GPT-2 variant is not supported: {', '.join(bad)} (we implement the original GPT-2)")
        kwargs = {f: d[f] for f in _HF_FIELDS if f in d}
        return cls(**{**kwargs, **overrides})

    def to_hf_dict(self) -> dict[str, Any]:
        """A dict for ``transformers.GPT2Config(**d)`` (and for ``config.json``).

        Raises:
            ValueError: ``bias=False`` or a padded vocabulary, which HF's GPT-2 cannot represent.
        """
        if not self.bias:
            raise ValueError(
                "bias=False has no equivalent in transformers' GPT-2; only bias=True models can be exported"
            )
        if self.vocab_rows != self.vocab_size:
            raise ValueError(
                f"a padded vocabulary ({self.vocab_size} tokens in {self.vocab_rows} rows) has no equivalent in "
                "transformers' GPT-2; export llmfs.vocab.unpad_vocab(model) instead"
            )
        # GPT-2's tokenizer puts <|endoftext|> at 50256; with a smaller vocabulary that id does not exist.
        eot = 50256 if self.vocab_size > 50256 else None
        return {
            "model_type": "gpt2",
            "architectures": ["GPT2LMHeadModel"],
            "vocab_size": self.vocab_size,
            "n_positions": self.n_positions,
            "n_embd": self.n_embd,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_inner": None,
            "activation_function": "gelu_new",
            "resid_pdrop": self.dropout,
            "embd_pdrop": self.dropout,
            "attn_pdrop": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initializer_range": 0.02,
            "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": eot,
            "eos_token_id": eot,
        }


# GPTConfig fields with the same name and meaning in transformers.GPT2Config.
_HF_FIELDS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "layer_norm_epsilon", "tie_word_embeddings")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, min(n, 64) + 1) if n % d == 0]


PRESETS: dict[str, GPTConfig] = {
    # OpenAI's four released sizes (vocab 50257, context 1024).
    "gpt2": GPTConfig(n_layer=12, n_head=12, n_embd=768),  # 124M
    "gpt2-medium": GPTConfig(n_layer=24, n_head=16, n_embd=1024),  # 350M
    "gpt2-large": GPTConfig(n_layer=36, n_head=20, n_embd=1280),  # 774M
    "gpt2-xl": GPTConfig(n_layer=48, n_head=25, n_embd=1600),  # 1558M
    # Small models for tests and CPU demos; "small" is the embedded default model.
    "tiny": GPTConfig(vocab_size=512, n_positions=128, n_embd=64, n_layer=2, n_head=2),
    "small": GPTConfig(vocab_size=2048, n_positions=256, n_embd=128, n_layer=4, n_head=4),
}


# llmfs-tiny's shape (~1.3M parameters): big enough to learn the embedded corpus's words and syntax in a couple of
# minutes on 2 CPU cores (`llmfs.bootstrap` pretrains it).
TINY_CONFIG = GPTConfig(vocab_size=4096, n_positions=256, n_embd=128, n_layer=4, n_head=4)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v for all heads at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        # Fused attention (flash / memory-efficient kernels where available); scale 1/sqrt(hs) as in GPT-2.
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # GPT-2's "gelu_new" is the tanh approximation of GELU (Hendrycks & Gimpel 2016, eq. 2).
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """GPT-2 language model; ``state_dict()`` keys equal ``GPT2LMHeadModel``'s."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_rows, config.n_embd),
                wpe=nn.Embedding(config.n_positions, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
                ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_rows, bias=False)
        self.apply(self._init_weights)
        if config.tie_word_embeddings:
            self.tie_weights()
        # GPT-2 paper, sec. 2.3: scale residual projections by 1/sqrt(N), N = 2 residual additions per block,
        # so the variance of the residual stream does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def tie_weights(self) -> None:
        """Make the output head use the token-embedding matrix (one Parameter, counted and updated once)."""
        self.lm_head.weight = self.transformer.wte.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, trainable_only: bool = False) -> int:
        """Number of parameters; a tied embedding/head matrix counts once (``parameters()`` deduplicates)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for every position, and the mean next-token loss when ``targets`` are given.

        Args:
            idx: token ids, (B, T) with T <= n_positions.
            targets: (B, T) ids to predict at each position (usually idx shifted left); -100 is ignored.

        Returns:
            logits (B, T, vocab_size) and the cross-entropy loss (a scalar) or None.

        Raises:
            ValueError: T exceeds the context length.
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must be a (batch, time) tensor of token ids, got shape {tuple(idx.shape)}")
        B, T = idx.size()
        if T > self.config.n_positions:
            raise ValueError(
                f"sequence length {T} exceeds the model's context n_positions={self.config.n_positions}; "
                "use a shorter --seq-len"
            )
        pos = torch.arange(T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)  # (B, T, vocab_rows)
        if self.config.vocab_rows != self.config.vocab_size:
            # Padding rows only make the matmul faster; dropping their columns keeps softmax and loss exact.
            logits = logits[..., : self.config.vocab_size]  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_token_id: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Append up to ``max_new_tokens`` sampled tokens to ``idx`` (B, T) and return (B, T + n).

        Call ``model.eval()`` first if the config has dropout. No KV cache: each step re-reads the last
        n_positions tokens, which is simple and fast enough for the small models this lab generates with.

        Args:
            temperature: divides the logits; 0 means greedy (argmax).
            top_k: sample only among the k most likely tokens.
            top_p: nucleus sampling, the smallest set of tokens whose probability reaches top_p
                (Holtzman et al. 2020).
            eos_token_id: a row that produced it is finished and gets padded with it; generation stops
                once every row is finished.
            generator: for reproducible sampling.
        """
        check_sampling(temperature, top_k, top_p)
        finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)  # (B,)
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.config.n_positions :])
            logits = logits[:, -1, :]  # (B, V): only the last position predicts the next token
            next_id = next_token(logits, temperature, top_k, top_p, generator)  # (B, 1)
            if eos_token_id is not None:
                next_id = next_id.masked_fill(finished[:, None], eos_token_id)
                finished |= next_id.squeeze(1) == eos_token_id
            idx = torch.cat((idx, next_id), dim=1)
            if eos_token_id is not None and bool(finished.all()):
                break
        return idx
