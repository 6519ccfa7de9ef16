"""Text in, text out: sampling from our GPT, our Llama or a transformers model with a tokenizer, seeded so "before"
and "after" are comparable. `stream_tokens` gives an answer token by token with the probability the model gave each
token and its likeliest alternatives (the playground's token view, `python -m llmfs generate --json`)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from . import templates
from .config import check_fields, option

if TYPE_CHECKING:
    import torch

# torch (and our models) are imported inside the functions that sample: the command line builds its `generate`
# flags from SampleConfig, and `python -m llmfs --help` or a refused flag should not wait for torch to load.

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


def generate_text(model, tokenizer, prompt: str, cfg: SampleConfig = SampleConfig()) -> str:
    """The continuation of `prompt` (without the prompt), stopping at the end-of-text token."""
    import torch
    device = next(model.parameters()).device
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
    if ids.shape[1] == 0:
        ids = torch.tensor([[tokenizer.eos_token_id]], device=device)
    ids = ids[:, -model.config.n_positions + 1:]
    was_training = model.training
    model.eval()
    with torch.no_grad():
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


# -- streaming with per-token probabilities (the playground's token view, `python -m llmfs generate`) ---------------
FINISH_REASONS = ("end", "length", "stop_string", "context", "stopped")
"""Why an answer ended: an end-of-text / end-of-turn token ("end"), max_new_tokens ("length"), a stop string such as
the plain template's next "User:" line ("stop_string"), the model's context length ("context"), or `should_stop`
("stopped")."""

_DECODE_CONTEXT = 4   # tokens before a new one decoded with it, so a leading space survives (SentencePiece drops it
# from a text's first token) and the new characters are the difference of two decodes
_MAX_HELD_BYTES = 4   # a UTF-8 character spans at most 4 byte-level tokens: hold an unfinished one back that long


@dataclass(frozen=True)
class TokenStep:
    """One generated token: what it adds to the answer, the probability the model gave it, and the alternatives.

    `prob` and `top` are the model's softmax at this step at temperature 1, before top-k / top-p filtering: what
    the model believes, whatever the sampler then did with it.
    """

    id: int
    text: str                                   # the characters this token adds to the answer ("" for the first
    # bytes of a character split over several tokens: the token that completes it carries the character)
    prob: float
    top: tuple[tuple[int, str, float], ...]     # the top_n most likely tokens: (id, text, prob), best first

    def to_dict(self) -> dict:
        return {"id": self.id, "text": self.text, "prob": self.prob,
                "top": [{"id": i, "text": t, "prob": p} for i, t, p in self.top]}


def prompt_ids(tokenizer, prompt: str | None = None, messages: list[dict] | None = None) -> list[int]:
    """The token ids a model continues: `prompt` as it is, or `messages` through the model's chat template with the
    assistant's header added (`templates.render`). No special tokens are added; an empty prompt becomes the
    end-of-text token, from which a model writes as at the start of a document.

    Raises:
        ValueError: neither or both of prompt / messages, or an empty prompt and no end-of-text token.
        templates.TemplateError (a ValueError): messages the template cannot render.
    """
    if (prompt is None) == (messages is None):
        raise ValueError("give either a prompt or a list of messages, not both or neither")
    text = prompt if messages is None else templates.render(tokenizer, messages, add_generation_prompt=True)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if not ids:
        if getattr(tokenizer, "eos_token_id", None) is None:
            raise ValueError("the prompt is empty and this tokenizer has no end-of-text token to start from")
        ids = [tokenizer.eos_token_id]
    return ids


class TokenStream:
    """The tokens of one answer, as an iterator of `TokenStep`; `finish` says why it ended (one of
    FINISH_REASONS; None while it runs). `close()` ends it early (the model's train / eval mode is restored)."""

    def __init__(self, steps: Generator[TokenStep, None, str]):
        self._steps = steps
        self.finish: str | None = None

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> TokenStep:
        try:
            return next(self._steps)
        except StopIteration as end:   # the generator's return value is the reason
            self.finish = end.value
            raise

    def close(self) -> None:
        self._steps.close()


def stream_tokens(model, tokenizer, ids: list[int], cfg: SampleConfig = SampleConfig(), top_n: int = 5,
                  should_stop: Callable[[], bool] | None = None) -> TokenStream:
    """Continue `ids` one token at a time, yielding a `TokenStep` per token as soon as it is known.

    A token that leaves a character unfinished (byte-level tokenizers split an emoji into several) is yielded with
    the token that completes it, carrying text ""; so the texts add up to `tokenizer.decode` of the new tokens.

    Ends, without yielding it, at a stop token (`templates.stop_token_ids`: end-of-text, end-of-turn); at a stop
    string (`templates.stop_strings`), whose characters are never yielded: tokens that could be the start of one are
    held back until the text shows they are not; after `cfg.max_new_tokens` tokens; at the context length (our GPT
    re-reads only the last n_positions tokens and goes on, as its `generate` does; a model with a KV cache stops);
    or when `should_stop()` returns True (asked before each token). `TokenStream.finish` then says which.

    The same ids, model and cfg give the same tokens: sampling (`llmfs.sampling.next_token`, temperature 0 =
    greedy) draws from a torch.Generator seeded with cfg.seed, exactly as `model.generate` does. Our Llama and
    transformers models read the prompt once and keep a KV cache; our GPT has none and re-reads its window.
    A prompt longer than the context keeps its last n_positions - 1 tokens.
    """
    from .sampling import check_sampling
    if top_n < 0:
        raise ValueError(f"top_n must be >= 0, got {top_n}")
    check_sampling(cfg.temperature, cfg.top_k or None, cfg.top_p if cfg.top_p < 1 else None)
    if not ids:
        raise ValueError("no prompt tokens: use prompt_ids(), which turns an empty prompt into the end-of-text token")
    return TokenStream(_steps(model, tokenizer, list(ids), cfg, top_n, should_stop))


def reply(model, tokenizer, *, prompt: str | None = None, messages: list[dict] | None = None,
          cfg: SampleConfig = SampleConfig(), top_n: int = 5, should_stop: Callable[[], bool] | None = None) -> dict:
    """The whole answer to a prompt or a conversation: {"text", "tokens": [TokenStep.to_dict()], "finish",
    "prompt_tokens", "prompt_cut"} (prompt_cut: tokens dropped from the front of a prompt longer than the
    context)."""
    ids = prompt_ids(tokenizer, prompt=prompt, messages=messages)
    stream = stream_tokens(model, tokenizer, ids, cfg, top_n=top_n, should_stop=should_stop)
    steps = list(stream)
    kept = min(len(ids), _context(model) - 1)
    return {"text": "".join(s.text for s in steps), "tokens": [s.to_dict() for s in steps], "finish": stream.finish,
            "prompt_tokens": kept, "prompt_cut": len(ids) - kept}


def _context(model) -> int:
    return int(model.config.n_positions)


def _steps(model, tokenizer, ids: list[int], cfg: SampleConfig, top_n: int,
           should_stop: Callable[[], bool] | None) -> Generator[TokenStep, None, str]:
    import torch

    from .sampling import next_token
    device = next(model.parameters()).device
    context = _context(model)
    ids = ids[-(context - 1):]
    stops = templates.stop_token_ids(tokenizer)
    stop_texts = tuple(s for s in templates.stop_strings(tokenizer) if s)
    top_k, top_p = cfg.top_k or None, (cfg.top_p if cfg.top_p < 1 else None)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    logits_of = _next_logits(model, device)
    decoder = _Decoder(tokenizer, ids)
    held: list[TokenStep] = []   # tokens that may be the start of a stop string
    was_training = model.training
    model.eval()
    try:
        logits = None
        for n in range(cfg.max_new_tokens):
            if should_stop is not None and should_stop():
                yield from _rest(held, decoder)
                return "stopped"
            with torch.no_grad():
                if logits is None:
                    logits = logits_of(ids)
                if logits is None:           # the KV cache is full
                    yield from _rest(held, decoder)
                    return "context"
                nxt = int(next_token(logits[None], cfg.temperature, top_k, top_p, generator)[0, 0])
                probs = torch.softmax(logits.float(), dim=-1)
                best = torch.topk(probs, min(top_n, probs.numel()))
            if nxt in stops:
                yield from _rest(held, decoder)
                return "end"
            top = tuple((int(i), decoder.alone(int(i)), float(p)) for p, i in zip(best.values, best.indices))
            ids.append(nxt)
            text = decoder.add(nxt)
            held.append(TokenStep(nxt, text or "", float(probs[nxt]), top))
            if text is not None:   # (None: the first bytes of a character; wait for the token that completes it)
                ready, hit = _release(held, stop_texts)
                yield from ready
                if hit:
                    return "stop_string"
            if n + 1 < cfg.max_new_tokens:
                with torch.no_grad():
                    logits = logits_of(ids)
        yield from _rest(held, decoder)
        return "length"
    finally:
        model.train(was_training)


def _rest(held: list[TokenStep], decoder: _Decoder) -> list[TokenStep]:
    """The tokens still held when an answer ends, the last one carrying the bytes of an unfinished character (as
    the replacement character, as `tokenizer.decode` shows them)."""
    rest = decoder.flush()
    if rest and held:
        held[-1] = replace(held[-1], text=held[-1].text + rest)
    return held


def _release(held: list[TokenStep], stop_texts: tuple[str, ...]) -> tuple[list[TokenStep], bool]:
    """Take from the front of `held` the tokens that cannot belong to a stop string; (those, whether a stop string
    is complete). At a complete stop string, the tokens before it are released (one straddling its start keeps
    only its part before it) and the rest dropped."""
    text = "".join(s.text for s in held)
    found = [i for i in (text.find(s) for s in stop_texts) if i >= 0]
    if found:
        cut, out, pos = min(found), [], 0
        for step in held:
            if pos >= cut:
                break
            part = step.text[: cut - pos]
            out.append(step if part == step.text else replace(step, text=part))
            pos += len(step.text)
        held.clear()
        return out, True
    out = []
    while held:
        first = len(held[0].text)
        if any(any(s.startswith(text[i:]) for s in stop_texts) for i in range(first)):
            break   # a stop string may begin in this token and go on in the next ones: wait and see
        out.append(held.pop(0))
        text = text[first:]
    return out, False


def _next_logits(model, device) -> Callable[[list[int]], torch.Tensor | None]:
    """A function from the ids so far to the logits (V,) of the next token; None when the model's KV cache has
    reached the context length. Our Llama and transformers models keep a KV cache (each call after the first feeds
    only the new token); our GPT re-reads its last n_positions tokens."""
    import torch

    from .llama import Llama
    context = _context(model)
    if isinstance(model, Llama):
        caches: list[list[torch.Tensor]] = [[] for _ in model.model.layers]
        seen = [0]

        def llama(ids: list[int]) -> torch.Tensor | None:
            if len(ids) >= context:   # as their generate: the sequence never outgrows the context
                return None
            new = torch.tensor([ids[seen[0]:]], device=device)
            seen[0] = len(ids)
            return model(new, caches=caches)[0][0, -1]
        return llama
    hf = getattr(model, "hf", None)
    if hf is not None:   # hf_causal.CausalLM: a transformers model, perhaps with PEFT adapters
        import inspect
        bare = hf.get_base_model() if hasattr(hf, "get_base_model") else hf
        # transformers 5 calls the KV cache `cache` (and warns at `past_key_values`); older versions only know the
        # old name
        key = "cache" if "cache" in inspect.signature(bare.forward).parameters else "past_key_values"
        state: dict = {"past": None, "seen": 0}

        def transformers(ids: list[int]) -> torch.Tensor | None:
            if len(ids) >= context:   # as their generate: the sequence never outgrows the context
                return None
            new = torch.tensor([ids[state["seen"]:]], device=device)
            out = hf(input_ids=new, use_cache=True, **{key: state["past"]})
            state["past"], state["seen"] = getattr(out, key), len(ids)
            return out.logits[0, -1]
        return transformers

    def window(ids: list[int]) -> torch.Tensor:
        return model(torch.tensor([ids[-context:]], device=device))[0][0, -1]
    return window


class _Decoder:
    """Turns each new token into the characters it adds: the difference between decoding the last few tokens with
    and without it, so byte-level pieces of one character and SentencePiece's leading spaces come out right."""

    def __init__(self, tokenizer, prompt: list[int]):
        self.tok = tokenizer
        self.ids = list(prompt[-_DECODE_CONTEXT:])
        self.pending: list[int] = []   # tokens whose bytes do not make a whole character yet

    def _decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _diff(self, before: list[int], new: list[int]) -> str:
        head = self._decode(before)
        whole = self._decode(before + new)
        return whole[len(head):] if whole.startswith(head) else self._decode(new)

    def add(self, token: int) -> str | None:
        """The characters `token` adds (with those of the tokens before it that began a character), or None when it
        leaves a character unfinished."""
        self.pending.append(token)
        text = self._diff(self.ids, self.pending)
        if text.endswith("\ufffd") and len(self.pending) < _MAX_HELD_BYTES:
            return None
        return self.flush(text)

    def flush(self, text: str | None = None) -> str:
        """The pending tokens' characters (unfinished ones as the replacement character); nothing pends after."""
        if not self.pending:
            return ""
        if text is None:
            text = self._diff(self.ids, self.pending)
        self.ids = (self.ids + self.pending)[-_DECODE_CONTEXT:]
        self.pending = []
        return text

    def alone(self, token: int) -> str:
        """What `token` would add here (for the alternatives; after the first bytes of a character, with them)."""
        return self._diff(self.ids, self.pending + [token])
