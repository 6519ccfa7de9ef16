"""Text in, text out: sampling from a GPT with a tokenizer, seeded so "before" and "after" are comparable."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import check_fields, option

DEFAULT_PROMPTS = ("def read_config(path):\n", "The dictionary method get()", "To open a file in Python,")


@dataclass(frozen=True)
class SampleConfig:
    """How to sample continuations."""

    max_new_tokens: int = option(48, "How many tokens to add after the prompt.", min=1, max=1024,
                                 label="New tokens")
    temperature: float = option(0.8, "Randomness: 0 always picks the most likely token; higher is more varied.",
                                min=0.0, max=2.0, label="Temperature", step=0.05)
    top_k: int = option(40, "Sample only among the k most likely tokens (0 = no limit).", min=0, max=100_000,
                        label="Top-k")
    top_p: float = option(0.95, "Sample only among the most likely tokens whose probabilities add up to p "
                                "(1 = no limit).", min=0.01, max=1.0, label="Top-p", step=0.01)
    seed: int = option(0, "Random seed: the same seed gives the same text for the same model.", min=0,
                       max=2**31 - 1, label="Seed")

    def __post_init__(self) -> None:
        check_fields(self)


@torch.no_grad()
def generate_text(model, tokenizer, prompt: str, cfg: SampleConfig = SampleConfig()) -> str:
    """The continuation of `prompt` (without the prompt), stopping at the end-of-text token."""
    device = next(model.parameters()).device
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
    if ids.shape[1] == 0:
        ids = torch.tensor([[tokenizer.eos_token_id]], device=device)
    ids = ids[:, -model.config.n_positions + 1:]
    was_training = model.training
    model.eval()
    out = model.generate(ids, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k or None,
                         top_p=cfg.top_p if cfg.top_p < 1 else None, eos_token_id=tokenizer.eos_token_id,
                         generator=torch.Generator(device=device).manual_seed(cfg.seed))
    model.train(was_training)
    new = out[0, ids.shape[1]:].tolist()
    if tokenizer.eos_token_id in new:
        new = new[: new.index(tokenizer.eos_token_id)]
    return tokenizer.decode(new)


def sample_many(model, tokenizer, prompts, cfg: SampleConfig = SampleConfig()) -> list[dict]:
    return [{"prompt": p, "text": generate_text(model, tokenizer, p, cfg)} for p in prompts]
