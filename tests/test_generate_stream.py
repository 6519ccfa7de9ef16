"""Answers token by token (`llmfs.generate.stream_tokens`): each token's probability is the model's softmax at that
step, seeded sampling repeats, greedy streams equal the models' own `generate`, and an answer ends where it should
(end-of-text / end-of-turn token, stop string, max_new_tokens, context, Stop)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from llmfs import templates
from llmfs.generate import SampleConfig, TokenStep, generate_text, prompt_ids, reply, stream_tokens
from llmfs.llama import Llama, LlamaConfig
from llmfs.model import GPT, GPTConfig

VOCAB = 300
CONTEXT = 32
GREEDY = SampleConfig(max_new_tokens=12, temperature=0.0)
SAMPLED = SampleConfig(max_new_tokens=12, temperature=1.0, top_k=0, top_p=1.0, seed=3)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, save_tiny_tokenizer):
    from transformers import AutoTokenizer
    folder = tmp_path_factory.mktemp("tok")
    save_tiny_tokenizer(folder, vocab_size=VOCAB)
    return AutoTokenizer.from_pretrained(folder)


def _peaked(model: nn.Module) -> nn.Module:
    """Random weights large enough that the next-token distribution is far from uniform (no near-ties for greedy
    to break differently between a KV cache and a recompute)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def gpt():
    return _peaked(GPT(GPTConfig(vocab_size=VOCAB, n_positions=CONTEXT, n_embd=32, n_layer=2, n_head=2)))


@pytest.fixture(scope="module")
def llama():
    return _peaked(Llama(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=CONTEXT)))


@pytest.fixture(params=["gpt", "llama"])
def model(request):
    return request.getfixturevalue(request.param)


def _full_forward_probs(model, ids: list[int]) -> torch.Tensor:
    """The next-token distribution after `ids`, from one plain forward over (the last CONTEXT of) them."""
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids[-model.config.n_positions:]]))
    return torch.softmax(logits[0, -1].float(), dim=-1)


def test_token_probabilities_are_the_models_softmax_at_each_step(model, tokenizer):
    ids = prompt_ids(tokenizer, prompt="The quick brown fox")
    steps = list(stream_tokens(model, tokenizer, ids, SAMPLED, top_n=5))
    assert steps and all(isinstance(s, TokenStep) for s in steps)
    prefix = list(ids)
    for step in steps:
        probs = _full_forward_probs(model, prefix)
        assert step.prob == pytest.approx(float(probs[step.id]), abs=1e-5)
        expected = torch.topk(probs, 5)
        assert [i for i, _, _ in step.top] == expected.indices.tolist()
        assert [p for _, _, p in step.top] == pytest.approx(expected.values.tolist(), abs=1e-5)
        assert [p for _, _, p in step.top] == sorted((p for _, _, p in step.top), reverse=True)
        assert step.top[0][2] >= step.prob   # the best alternative is at least as likely as the token drawn
        for i, text, _ in step.top:
            if i == step.id and step.text and "\ufffd" not in step.text:   # (a whole character)
                assert text == step.text
        prefix.append(step.id)
    # the pieces add up to the answer
    assert "".join(s.text for s in steps) == tokenizer.decode([s.id for s in steps])
    d = steps[0].to_dict()
    assert set(d) == {"id", "text", "prob", "top"} and set(d["top"][0]) == {"id", "text", "prob"}


def test_seeded_sampling_repeats_and_another_seed_differs(model, tokenizer):
    ids = prompt_ids(tokenizer, prompt="Lists, dicts")
    first = [s.id for s in stream_tokens(model, tokenizer, ids, SAMPLED)]
    again = [s.id for s in stream_tokens(model, tokenizer, ids, SAMPLED)]
    other = [s.id for s in stream_tokens(model, tokenizer, ids, SampleConfig(**{**SAMPLED.__dict__, "seed": 4}))]
    assert first == again
    assert first != other


def test_greedy_stream_equals_the_models_generate(model, tokenizer):
    ids = prompt_ids(tokenizer, prompt="def add(a, b):")
    streamed = [s.id for s in stream_tokens(model, tokenizer, ids, GREEDY)]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), GREEDY.max_new_tokens, temperature=0.0,
                             eos_token_id=tokenizer.eos_token_id)
    assert streamed == out[0, len(ids):].tolist()[: len(streamed)]
    assert len(streamed) == GREEDY.max_new_tokens or out[0, len(ids) + len(streamed)] == tokenizer.eos_token_id


def test_sampled_answer_equals_generate_text_with_the_same_seed(gpt, tokenizer):
    """The playground and the before / after comparisons agree: same prompt and seed, same text."""
    cfg = SampleConfig(max_new_tokens=16, temperature=0.9, top_k=20, top_p=0.9, seed=7)
    assert reply(gpt, tokenizer, prompt="To open a file", cfg=cfg)["text"] == \
        generate_text(gpt, tokenizer, "To open a file", cfg)


def test_context_length_llama_stops_gpt_slides(gpt, llama, tokenizer):
    ids = list(range(1, 21))   # 20 of the 32 positions
    cfg = SampleConfig(max_new_tokens=40, temperature=0.0)
    stream = stream_tokens(llama, tokenizer, ids, cfg)
    steps = list(stream)
    assert stream.finish == "context" and len(ids) + len(steps) == CONTEXT
    stream = stream_tokens(gpt, tokenizer, ids, cfg)
    steps = list(stream)
    # our GPT re-reads its last 32 tokens and goes on, as its generate does
    assert stream.finish == "length" and len(steps) == 40
    with torch.no_grad():
        out = gpt.generate(torch.tensor([ids]), 40, temperature=0.0)
    assert [s.id for s in steps] == out[0, len(ids):].tolist()


def test_transformers_model_with_its_kv_cache(tiny_mistral_folder):
    """hf_causal.CausalLM (past_key_values): the same probabilities as a full forward at every step."""
    from llmfs.hf_causal import CausalLM, load_causal_lm
    hf, tok = load_causal_lm(tiny_mistral_folder)
    model = CausalLM(hf).eval()
    ids = prompt_ids(tok, prompt="The quick brown fox")
    steps = list(stream_tokens(model, tok, ids, SAMPLED, top_n=3))
    assert len(steps) == SAMPLED.max_new_tokens
    prefix = list(ids)
    for step in steps:
        assert step.prob == pytest.approx(float(_full_forward_probs(model, prefix)[step.id]), abs=1e-5)
        prefix.append(step.id)


# -- where an answer ends: a model that writes a fixed script ------------------------------------------------------
class Scripted(nn.Module):
    """A 'model' whose next token is script[number of tokens generated so far] (a logit of 10 there, 0 elsewhere)."""

    def __init__(self, script: list[int], prompt_len: int, vocab: int, context: int = 256):
        super().__init__()
        self.script, self.prompt_len, self.vocab = script, prompt_len, vocab
        self.config = GPTConfig(vocab_size=vocab, n_positions=context, n_embd=8, n_layer=1, n_head=1)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, idx):
        logits = torch.zeros(1, idx.shape[1], self.vocab)
        n = idx.shape[1] - self.prompt_len
        logits[0, -1, self.script[n] if n < len(self.script) else 1] = 10.0
        return logits, None


def _run(tokenizer, script: list[int], cfg=GREEDY, should_stop=None, prompt="Q", vocab=None):
    ids = prompt_ids(tokenizer, prompt=prompt)
    model = Scripted(script, len(ids), vocab or len(tokenizer))
    stream = stream_tokens(model, tokenizer, ids, cfg, should_stop=should_stop)
    steps = list(stream)
    return steps, stream.finish


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_ends_at_the_end_of_text_token_without_yielding_it(tokenizer):
    steps, finish = _run(tokenizer, _ids(tokenizer, "Paris") + [tokenizer.eos_token_id] + _ids(tokenizer, "more"))
    assert finish == "end" and "".join(s.text for s in steps) == "Paris"


def test_ends_at_an_end_of_turn_token(tokenizer):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_end|>"]})
    end_of_turn = tok.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn in templates.stop_token_ids(tok) and end_of_turn != tok.eos_token_id
    steps, finish = _run(tok, _ids(tok, "Paris.") + [end_of_turn] + _ids(tok, "more"), vocab=len(tok))
    assert finish == "end" and "".join(s.text for s in steps) == "Paris."


def test_a_stop_string_ends_the_answer_and_none_of_it_is_yielded(tokenizer):
    assert templates.stop_strings(tokenizer) == ("\nUser:",)   # the plain template's next question
    steps, finish = _run(tokenizer, _ids(tokenizer, "Paris is big.\nUser: and Rome?"),
                         SampleConfig(max_new_tokens=40, temperature=0.0))
    assert finish == "stop_string" and "".join(s.text for s in steps) == "Paris is big."
    # a token straddling the stop string's start keeps only its part before it
    steps, finish = _run(tokenizer, _ids(tokenizer, "ok") + _ids(tokenizer, ".\nUs") + _ids(tokenizer, "er: x"),
                         SampleConfig(max_new_tokens=40, temperature=0.0))
    assert finish == "stop_string" and "".join(s.text for s in steps) == "ok."


def test_text_that_only_begins_like_a_stop_string_is_released(tokenizer):
    text = "a\nUs and them"
    steps, finish = _run(tokenizer, _ids(tokenizer, text) + [tokenizer.eos_token_id])
    assert finish == "end" and "".join(s.text for s in steps) == text


def test_max_new_tokens_and_should_stop(tokenizer):
    script = _ids(tokenizer, "The quick brown fox jumps over the lazy dog. " * 3)
    steps, finish = _run(tokenizer, script, SampleConfig(max_new_tokens=5, temperature=0.0))
    assert finish == "length" and [s.id for s in steps] == script[:5]
    asked = []

    def stop_after_three() -> bool:
        asked.append(1)
        return len(asked) > 3
    steps, finish = _run(tokenizer, script, SampleConfig(max_new_tokens=20, temperature=0.0), stop_after_three)
    assert finish == "stopped" and [s.id for s in steps] == script[:3]


def test_a_character_split_over_byte_tokens_comes_out_whole(tokenizer):
    script = _ids(tokenizer, "x é😀 y")
    assert len(script) > len("x é😀 y")     # the emoji and é are several byte-level tokens
    steps, _ = _run(tokenizer, script + [tokenizer.eos_token_id])
    assert "".join(s.text for s in steps) == "x é😀 y"
    assert "" in [s.text for s in steps] and not any("\ufffd" in s.text for s in steps)


def test_model_mode_and_grad_mode_are_left_as_they_were(gpt, tokenizer):
    gpt.train()
    try:
        stream = stream_tokens(gpt, tokenizer, prompt_ids(tokenizer, prompt="x"), SAMPLED)
        next(stream)
        assert torch.is_grad_enabled()          # no_grad does not leak out between tokens
        stream.close()
        assert gpt.training
        list(stream_tokens(gpt, tokenizer, prompt_ids(tokenizer, prompt="x"), SAMPLED))
        assert gpt.training
    finally:
        gpt.eval()


def test_prompt_ids(tokenizer):
    messages = [{"role": "user", "content": "What does str.split do?"}]
    rendered = templates.render(tokenizer, messages, add_generation_prompt=True)
    assert rendered.endswith("Assistant:")
    assert prompt_ids(tokenizer, messages=messages) == _ids(tokenizer, rendered)
    assert prompt_ids(tokenizer, prompt="") == [tokenizer.eos_token_id]
    with pytest.raises(ValueError, match="not both or neither"):
        prompt_ids(tokenizer, prompt="a", messages=messages)
    with pytest.raises(ValueError, match="not both or neither"):
        prompt_ids(tokenizer)
    with pytest.raises(templates.TemplateError, match="role"):
        prompt_ids(tokenizer, messages=[{"role": "bot", "content": "hi"}])


def test_reply_reports_text_tokens_finish_and_prompt_length(llama, tokenizer):
    messages = [{"role": "user", "content": "Hello"}]
    out = reply(llama, tokenizer, messages=messages, cfg=SampleConfig(max_new_tokens=6, temperature=0.0), top_n=2)
    assert out["prompt_tokens"] == len(prompt_ids(tokenizer, messages=messages)) and out["prompt_cut"] == 0
    assert out["finish"] in ("end", "length", "stop_string")
    assert out["text"] == "".join(t["text"] for t in out["tokens"]) and all(len(t["top"]) == 2 for t in out["tokens"])
    long = reply(llama, tokenizer, prompt="fox " * 60, cfg=SampleConfig(max_new_tokens=2, temperature=0.0))
    assert long["prompt_tokens"] == CONTEXT - 1 and long["prompt_cut"] > 0


def test_transformers_model_with_a_peft_adapter(tiny_mistral_folder, tmp_path):
    """A PEFT adapter through adapting.attach: the stream's probabilities are the adapted model's, which differ
    from the base's."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llmfs.adapting import attach
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)  # B not 0
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_mistral_folder), lora)
    peft_model.save_pretrained(tmp_path / "adapter")
    adapted = attach(str(tiny_mistral_folder), {"A": tmp_path / "adapter"})
    assert adapted.peft
    ids = prompt_ids(adapted.tokenizer, prompt="The quick brown fox")
    adapted.activate("A")
    steps = list(stream_tokens(adapted.model, adapted.tokenizer, ids, SAMPLED))
    prefix = list(ids)
    for step in steps:
        assert step.prob == pytest.approx(float(_full_forward_probs(adapted.model, prefix)[step.id]), abs=1e-5)
        prefix.append(step.id)
    adapted.activate(None)
    base = list(stream_tokens(adapted.model, adapted.tokenizer, ids, SAMPLED))
    assert [s.prob for s in base] != pytest.approx([s.prob for s in steps], abs=1e-4)
