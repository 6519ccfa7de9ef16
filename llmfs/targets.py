"""Which layers train, as data: the freezing strategies (L12) and what each leaves trainable, and the layers LoRA
(and QLoRA's 4-bit quantization) touch: the lesson's target names (qkv, attn_proj, mlp_in, mlp_out, lm_head) and each
architecture family's module names. No torch: the config's validation, the memory estimate, the pages, the freezing
code and the LoRA layers all read these tables from here."""

from __future__ import annotations

from collections.abc import Sequence

# -- freezing strategies (llmfs.freeze implements them) -----------------------------------------------------------
STRATEGIES: dict[str, str] = {
    "full": "Every parameter trains.",
    "linear_probe": "Only the output head trains (untied from the word embeddings first, so they stay put).",
    "freeze_embeddings": "The embeddings (words, and GPT-2's positions) are frozen (a head tied to them is frozen "
                         "too).",
    "freeze_bottom": "Embeddings and the bottom N blocks are frozen (a tied head too); the rest trains.",
    "train_top": "Only the top N blocks, the final norm and the head train (the head untied first).",
    "bitfit": "Only biases and norm weights (LayerNorm, RMSNorm) train (Ben Zaken et al. 2021); a Llama has no "
              "biases, so only its norms train.",
    "gradual": "Head, final norm and top block train first; one more block every K steps, top-down, embeddings last "
               "(ULMFiT).",
    "llrd": "Everything trains; block i at lr * decay^(n_layer - i), embeddings slowest, head at the full lr.",
}

# Strategies that train the head on its own (never, or not at the same time as, the word embeddings): a tied head
# would drag the input embeddings along, so it gets its own copy first.
UNTIE_HEAD = ("linear_probe", "train_top", "gradual")


# -- which layers ---------------------------------------------------------------------------------------------------
LESSON_TARGETS = ("qkv", "attn_proj", "mlp_in", "mlp_out", "lm_head")
# In words true of every family below (GPT-2 computes q, k and v in one matrix, a Llama in three; GPT-2's MLP
# widens with one matrix, a Llama's SwiGLU with two): the page shows the chosen model's own module names beside them.
TARGET_HELP = {
    "qkv": "attention's query, key and value projections (the LoRA paper's choice)",
    "attn_proj": "attention's output projection",
    "mlp_in": "the MLP's widening layers (into its wider hidden size)",
    "mlp_out": "the MLP's narrowing layer (back to the model's width)",
    "lm_head": "the output head that scores every token of the vocabulary",
}
ALL_LINEAR = ("qkv", "attn_proj", "mlp_in", "mlp_out")  # PEFT's "all-linear": every block linear, not the head

# Module-name suffixes per lesson target, per architecture family (config.json's model_type). A suffix matches a
# module whose name equals it or ends with "." + it, PEFT's rule for target_modules.
_GPT2 = {"qkv": ("attn.c_attn",), "attn_proj": ("attn.c_proj",), "mlp_in": ("mlp.c_fc",),
         "mlp_out": ("mlp.c_proj",), "lm_head": ("lm_head",)}
_LLAMA = {"qkv": ("q_proj", "k_proj", "v_proj"), "attn_proj": ("o_proj",), "mlp_in": ("gate_proj", "up_proj"),
          "mlp_out": ("down_proj",), "lm_head": ("lm_head",)}
_NEOX = {"qkv": ("query_key_value",), "attn_proj": ("attention.dense",), "mlp_in": ("dense_h_to_4h",),
         "mlp_out": ("dense_4h_to_h",), "lm_head": ("embed_out",)}
FAMILIES: dict[str, dict[str, tuple[str, ...]]] = {
    "gpt2": _GPT2, "gpt_neox": _NEOX,
    **{t: _LLAMA for t in ("llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen2_moe", "gemma", "gemma2",
                           "gemma3_text", "olmo", "olmo2", "granite", "smollm3", "cohere", "starcoder2")},
}
# starcoder2 names its MLP c_fc / c_proj: map it properly rather than pretend it is a Llama.
FAMILIES["starcoder2"] = {"qkv": ("q_proj", "k_proj", "v_proj"), "attn_proj": ("o_proj",), "mlp_in": ("c_fc",),
                          "mlp_out": ("mlp.c_proj",), "lm_head": ("lm_head",)}


def parse_targets(targets: str | Sequence[str]) -> tuple[str, ...]:
    """`"qkv,attn_proj"` or a list -> a tuple of names; `all-linear` expands to every block linear layer.

    Names outside `LESSON_TARGETS` are kept as they are: module-name suffixes for architectures the lesson's
    names do not cover (e.g. `Wqkv`).
    Raises:
        ValueError: nothing given.
    """
    items = [t.strip() for t in (targets.split(",") if isinstance(targets, str) else targets) if t and t.strip()]
    out: list[str] = []
    for t in items:
        for name in (ALL_LINEAR if t in ("all-linear", "all_linear") else (t,)):
            if name not in out:
                out.append(name)
    if not out:
        raise ValueError("No LoRA target layers given: choose some of " + ", ".join(LESSON_TARGETS)
                         + " (or all-linear).")
    return tuple(out)


def target_modules(targets: str | Sequence[str], model_type: str = "gpt2") -> list[str]:
    """Module-name suffixes (PEFT's `target_modules`) for the lesson's target names on a `model_type` model.

    Raises:
        ValueError: a lesson name on an architecture whose module names are not known here.
    """
    family = FAMILIES.get(model_type)
    out: list[str] = []
    for t in parse_targets(targets):
        if t in LESSON_TARGETS:
            if family is None:
                raise ValueError(f"The layer names {', '.join(LESSON_TARGETS)} are known for "
                                 f"{', '.join(sorted(FAMILIES))}; for model_type {model_type!r} type the module "
                                 "names themselves (e.g. q_proj,v_proj; they are in the model's printout).")
            out.extend(s for s in family[t] if s not in out)
        elif t not in out:
            out.append(t)
    return out


def matches(module_name: str, suffixes: Sequence[str]) -> bool:
    """PEFT's target_modules rule: the name equals a suffix or ends with "." + suffix."""
    return any(module_name == s or module_name.endswith("." + s) for s in suffixes)


QUANT_SKIP = ("lm_head", "embed_out")  # the output head stays in full precision (QLoRA does the same)
