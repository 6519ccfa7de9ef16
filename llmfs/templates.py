"""Chat templates: how a conversation becomes the one string a model reads, and which characters of it the model
should learn to write (the assistant's turns).

A model that ships a chat template (SmolLM2's ChatML: `<|im_start|>user ... <|im_end|>`) is rendered through its own
template, as transformers' `apply_chat_template` does, so training and chatting see exactly the text the model was
tuned on. A model without one (llmfs-tiny, GPT-2) gets PLAIN_TEMPLATE, a readable "User: / Assistant:" layout that
ends each assistant turn with the end-of-text token, so a trained model learns where an answer stops.

No torch and no tokenizer library here: a tokenizer is passed in, and only its `apply_chat_template`, special-token
attributes and `convert_tokens_to_ids` are used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ROLES = ("system", "user", "assistant")

# The template for models that have none. Shown on the page and in the README as it is: a system message first on
# its own, then "User: ..." / "Assistant: ..." lines; each assistant turn ends with the end-of-text token. The
# generation prompt is "Assistant:" without a trailing space, because GPT-2-style tokenizers fold the space into the
# next word (" Paris" is one token): the model writes the space itself, as it learnt to.
PLAIN_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n"
    "{% else %}Assistant: {{ m['content'] }}{{ eos_token }}\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
PLAIN_STOP_STRINGS = ("\nUser:",)   # a small model that goes on to write the next question itself stops there

# Special tokens that end a turn in the common templates (ChatML, Llama 3, Phi-3, Gemma).
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")


class TemplateError(ValueError):
    """A conversation this model's template cannot render (a role it does not know, turns out of order, ...)."""


def has_own_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def template_name(tokenizer: Any) -> str:
    """In words, which template a model's conversations go through."""
    if has_own_template(tokenizer):
        return "the model's own chat template"
    return "the plain User: / Assistant: template (this model has no chat template of its own)"


def check_messages(messages: Any) -> list[dict[str, str]]:
    """`messages` as a list of {"role", "content"} dicts with known roles and text content.

    Raises:
        TemplateError: not a list of messages, an unknown role, content that is not text, or no message at all.
    """
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
        raise TemplateError("a conversation is a non-empty list of messages, each {\"role\": ..., \"content\": ...}")
    out = []
    for i, m in enumerate(messages, 1):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise TemplateError(f"message {i} needs a \"role\" and a \"content\"")
        if m["role"] not in ROLES:
            raise TemplateError(f"message {i} has role {m['role']!r}: use one of {', '.join(ROLES)}")
        if not isinstance(m["content"], str):
            raise TemplateError(f"message {i}'s content must be text")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def render(tokenizer: Any, messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
    """The conversation as the text the model reads (its own template, else PLAIN_TEMPLATE).

    Raises:
        TemplateError: the template refuses the conversation (its own message says why).
    """
    messages = check_messages(messages)
    template = None if has_own_template(tokenizer) else PLAIN_TEMPLATE
    try:
        return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    except Exception as e:  # jinja2's TemplateError, or a template's raise_exception("...")
        raise TemplateError(f"the model's chat template refused this conversation: {e}") from e


def assistant_spans(tokenizer: Any, messages: Sequence[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns: what the model writes after the
    generation prompt (its words, and the space before them where the template puts one) and the end-of-turn token
    right after them (so a trained model learns to stop); never the role header before them.

    Each assistant turn is found at the end of the conversation rendered up to and including it, which is a prefix
    of the whole for every template that renders turns in order (ChatML, Llama's, the plain one).

    Raises:
        TemplateError: the template refuses the conversation, or re-renders earlier turns differently.
    """
    messages = check_messages(messages)
    text = render(tokenizer, messages)
    enders = end_of_turn_strings(tokenizer)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or not m["content"].strip():
            continue
        upto = render(tokenizer, messages[: i + 1])
        if not text.startswith(upto):
            raise TemplateError("this model's chat template renders earlier turns differently once later turns are "
                                "added, so the assistant's words cannot be located; train on everything instead")
        content = m["content"].strip()  # some templates strip the content
        found = upto.rfind(content)
        if found < 0:
            raise TemplateError(f"message {i + 1}'s words do not appear in the rendered conversation")
        start, end = _after_generation_prompt(tokenizer, messages[:i], text, found), found + len(content)
        rest = text[end:]
        for ender in enders:
            if rest.startswith(ender):
                end += len(ender)
                break
        spans.append((start, end))
    return text, spans


def _after_generation_prompt(tokenizer: Any, before: list[dict], text: str, start: int) -> int:
    """Where the model's own writing starts: right after the generation prompt ("Assistant:"), so the whitespace
    between it and the words is learnt too (a tokenizer that keeps " " apart from "Paris" must learn to write it)."""
    if not before:
        return start
    try:
        prompt = render(tokenizer, before, add_generation_prompt=True)
    except TemplateError:
        return start
    if text.startswith(prompt) and len(prompt) <= start and not text[len(prompt):start].strip():
        return len(prompt)
    return start


def end_of_turn_strings(tokenizer: Any) -> list[str]:
    """The special tokens that end an assistant's turn for this tokenizer: its end-of-text token and the common
    end-of-turn markers it has."""
    special = set(getattr(tokenizer, "all_special_tokens", ()) or ())
    out = [t for t in END_OF_TURN if t in special or _in_vocab(tokenizer, t)]
    eos = getattr(tokenizer, "eos_token", None)
    if eos and eos not in out:
        out.append(eos)
    return out


def stop_token_ids(tokenizer: Any) -> set[int]:
    """Token ids that end a generated answer: end-of-text and the end-of-turn markers this tokenizer has."""
    ids = set()
    for t in end_of_turn_strings(tokenizer):
        i = tokenizer.convert_tokens_to_ids(t)
        if isinstance(i, int) and i >= 0 and i != getattr(tokenizer, "unk_token_id", None):
            ids.add(i)
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def stop_strings(tokenizer: Any) -> tuple[str, ...]:
    """Text that ends an answer although no special token came: the plain template's next "User:" line."""
    return () if has_own_template(tokenizer) else PLAIN_STOP_STRINGS


def _in_vocab(tokenizer: Any, token: str) -> bool:
    """Whether `token` is one of the tokenizer's added tokens (where end-of-turn markers live); the added vocabulary
    is small, the whole one (`get_vocab`) takes ~0.1 s to build on a 49k vocabulary."""
    try:
        return token in tokenizer.get_added_vocab()
    except Exception:
        return False
