"""Instruction / chat examples: formats, their errors, the chat templates, the trained-token masks, batches."""

from __future__ import annotations

import json

import pytest
import torch

from llmfs.data.example_batches import IGNORE, ExampleBatches, HeldOutExamples, PackedExamples, collate, pair
from llmfs.data.examples import (
    ExampleError,
    ExampleSet,
    detect,
    encode,
    first_sentence,
    prepare,
    python_qa,
    read_examples,
    split_heldout,
)
from llmfs.templates import PLAIN_TEMPLATE, assistant_spans, render, stop_token_ids

CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are helpful.<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.fixture(scope="module")
def plain_tok(tmp_path_factory, save_tiny_tokenizer):
    """A byte-level BPE tokenizer without a chat template (as llmfs-tiny's)."""
    from transformers import AutoTokenizer
    folder = tmp_path_factory.mktemp("tok")
    save_tiny_tokenizer(folder, vocab_size=300)
    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def chatml_tok(tmp_path_factory, save_tiny_tokenizer):
    """The same tokenizer with ChatML's special tokens and SmolLM2's kind of template."""
    from transformers import AutoTokenizer
    folder = tmp_path_factory.mktemp("tok-chatml")
    save_tiny_tokenizer(folder, vocab_size=300)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "eos_token": "<|im_end|>"})
    tok.chat_template = CHATML
    return tok


QA = [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "Paris."}]
TWO_TURNS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 2?"},
             {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3 + 3?"},
             {"role": "assistant", "content": "6, of course."}]


def trained_text(tok, e) -> str:
    return "".join(p for p, t in e.pieces(tok) if t)


def untrained_text(tok, e) -> str:
    return "".join(p for p, t in e.pieces(tok) if not t)


# -- templates and masks ------------------------------------------------------------------------------------------
def test_plain_template_trains_on_the_answer_and_its_end_token_only(plain_tok):
    e = encode(plain_tok, QA)
    assert render(plain_tok, QA) == "User: What is the capital of France?\nAssistant: Paris.<|endoftext|>\n"
    # the space before the answer is folded into its first token by the tokenizer, so it is learnt with it
    assert trained_text(plain_tok, e) == " Paris.<|endoftext|>"
    assert untrained_text(plain_tok, e) == "User: What is the capital of France?\nAssistant:\n"
    assert render(plain_tok, QA[:1], add_generation_prompt=True).endswith("\nAssistant:")


def test_chatml_template_marks_every_assistant_turn_exactly(chatml_tok):
    e = encode(chatml_tok, TWO_TURNS)
    assert trained_text(chatml_tok, e) == "4<|im_end|>6, of course.<|im_end|>"
    text, spans = assistant_spans(chatml_tok, TWO_TURNS)
    assert [text[a:b] for a, b in spans] == ["4<|im_end|>", "6, of course.<|im_end|>"]
    assert "".join(p for p, _ in e.pieces(chatml_tok)) == text  # nothing lost
    assert stop_token_ids(chatml_tok) == {chatml_tok.convert_tokens_to_ids("<|im_end|>")}


def test_the_template_adds_its_default_system_message_untrained(chatml_tok):
    e = encode(chatml_tok, QA)
    assert untrained_text(chatml_tok, e).startswith("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user")
    assert trained_text(chatml_tok, e) == "Paris.<|im_end|>"


def test_train_on_all_trains_every_token_but_the_first(plain_tok):
    e = encode(plain_tok, QA, train_on="all")
    assert e.trained[0] is False and all(e.trained[1:])


def test_targets_carry_labels_only_where_trained(chatml_tok):
    e = encode(chatml_tok, QA)
    x, y = pair(e)
    assert len(x) == len(y) == len(e.ids) - 1
    labelled = [t for t in y if t != IGNORE]
    assert chatml_tok.decode(labelled) == "Paris.<|im_end|>"
    assert x == list(e.ids[:-1])


def test_truncation_cuts_the_end_and_is_counted(plain_tok):
    long = [{"role": "user", "content": "Tell me."}, {"role": "assistant", "content": "word " * 100}]
    examples = ExampleSet([QA, long, QA, QA, QA, QA], "chat", "x.jsonl")
    assert len(encode(plain_tok, QA).ids) <= 49 < len(encode(plain_tok, long).ids)
    prepared = prepare(examples, plain_tok, seq_len=48)
    assert prepared.seq_len == 48
    assert all(len(e.ids) <= 49 for e in prepared.train + prepared.heldout)
    assert prepared.report()["truncated"] == 1
    # an answer cut off completely leaves nothing to learn: the example is dropped and counted
    question_only = [{"role": "user", "content": "q " * 60}, {"role": "assistant", "content": "a"}]
    prepared = prepare(ExampleSet([QA] * 5 + [question_only], "chat", "x.jsonl"), plain_tok, seq_len=48)
    assert prepared.dropped == 1 and prepared.examples + len(prepared.heldout) == 5


def test_sequence_length_follows_the_examples_when_not_set(plain_tok):
    prepared = prepare(ExampleSet([QA] * 6, "chat", "x.jsonl"), plain_tok, seq_len=None)
    assert prepared.seq_len == len(encode(plain_tok, QA).ids) - 1
    assert prepared.truncated == 0


def test_held_out_examples_are_drawn_per_example():
    train, held, note = split_heldout(30)
    assert held == [9, 19, 29] and note is None and len(train) == 27
    train, held, note = split_heldout(10)
    assert len(held) >= 1 and not set(train) & set(held) and note is None
    train, held, note = split_heldout(3)
    assert train == held == [0, 1, 2] and "too few" in note


# -- formats and their errors -------------------------------------------------------------------------------------
def write(path, lines):
    path.write_text("\n".join(json.dumps(x) if not isinstance(x, str) else x for x in lines) + "\n")
    return path


def test_each_format_is_detected_and_read_as_a_conversation(tmp_path):
    chat = write(tmp_path / "chat.jsonl", [{"messages": QA}])
    prompt = write(tmp_path / "p.jsonl", [{"prompt": "What is the capital of France?", "response": "Paris."}])
    completion = write(tmp_path / "c.jsonl", [{"prompt": "What is the capital of France?", "completion": "Paris."}])
    alpaca = write(tmp_path / "a.jsonl", [{"instruction": "Name the capital.", "input": "France", "output": "Paris."}])
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"prompt": "What is the capital of France?", "response": "Paris."}]))
    for path, fmt in ((chat, "chat"), (prompt, "prompt"), (completion, "prompt"), (alpaca, "alpaca"),
                      (listed, "prompt")):
        assert detect(str(path)) == fmt
        got = read_examples(str(path))
        assert got.format == fmt and len(got) == 1
    assert read_examples(str(prompt)).conversations == [QA]
    assert read_examples(str(alpaca)).conversations[0][0]["content"] == "Name the capital.\n\nFrance"
    text = write(tmp_path / "t.jsonl", [{"text": "Once upon a time"}])
    assert detect(str(text)) == "text" and detect(str(tmp_path / "notes.txt")) == "text"
    assert detect("llmfs-python-qa") == "chat"


def test_csv_with_a_header_or_two_plain_columns(tmp_path):
    headed = tmp_path / "h.csv"
    headed.write_text('question,answer\n"What is the capital of France?",Paris.\n"Say hi, please",Hi.\n')
    got = read_examples(str(headed))
    assert got.format == "prompt" and got.conversations[0] == QA and got.lines == [2, 3]
    assert got.conversations[1][0]["content"] == "Say hi, please"
    bare = tmp_path / "b.csv"
    bare.write_text("What is the capital of France?,Paris.\n")
    assert read_examples(str(bare)).conversations == [QA]
    alpaca = tmp_path / "a.csv"
    alpaca.write_text("instruction,input,output\nName the capital.,France,Paris.\n")
    assert read_examples(str(alpaca)).format == "alpaca"


@pytest.mark.parametrize("lines, where, words", [
    ([{"prompt": "a", "response": "b"}, "{not json"], "line 2", "not valid JSON"),
    ([{"prompt": "a", "response": "b"}, {"messages": QA}], "line 2", "in the chat ("),
    ([{"prompt": "a", "response": "b"}, 7], "line 2", "found a number instead of a record"),
    ([{"prompt": "a", "response": ""}], "line 1", '"response" must be non-empty text'),
    ([{"messages": [{"role": "user", "content": "hi"}]}], "line 1", "no assistant message"),
    ([{"messages": [{"role": "robot", "content": "hi"}]}], "line 1", "role 'robot'"),
    ([{"prompt": "a", "response": "b"}, {"question": "q"}], "line 2", "not an example"),
])
def test_a_bad_record_is_named_by_its_line_with_the_fix(tmp_path, lines, where, words):
    path = write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(ExampleError) as e:
        read_examples(str(path))
    assert f"bad.jsonl {where}" in str(e.value) and words in str(e.value)
    assert "Use one format per file" in str(e.value) or "JSON object" in str(e.value)


def test_csv_and_json_errors_name_the_place(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,response\nHello,Hi\nonly one column\n")
    with pytest.raises(ExampleError, match="bad.csv line 3: 1 columns"):
        read_examples(str(bad))
    broken = tmp_path / "broken.json"
    broken.write_text('[{"prompt": "a", "response": "b"},\n {"prompt": }]')
    with pytest.raises(ExampleError, match="broken.json line 2: not valid JSON"):
        read_examples(str(broken))
    listed = tmp_path / "l.json"
    listed.write_text(json.dumps([{"prompt": "a", "response": "b"}, {"prompt": "a"}]))
    with pytest.raises(ExampleError, match="l.json item 2"):
        read_examples(str(listed))
    with pytest.raises(ExampleError, match="No file at"):
        read_examples(str(tmp_path / "missing.jsonl"))


# -- the built-in set ---------------------------------------------------------------------------------------------
def test_the_built_in_set_answers_from_pythons_own_documentation():
    qa = python_qa()
    assert len(qa) > 100
    by_question = {c[0]["content"]: c[1]["content"] for c in qa}
    assert by_question["What does `str.split` do?"] == first_sentence(str.split.__doc__)
    assert by_question["What does `str.split` do?"].startswith("Return a list of the substrings")
    assert by_question["What does the built-in function `len()` do?"] == "Return the number of items in a container."
    assert all(a.endswith(".") and "->" not in a for a in by_question.values())
    assert read_examples("llmfs-python-qa").conversations == qa


# -- batches ------------------------------------------------------------------------------------------------------
def test_batches_pad_on_the_right_and_never_train_on_padding(plain_tok):
    short, long = encode(plain_tok, QA), encode(plain_tok, TWO_TURNS)
    x, y = collate([short, long], pad_id=0)
    assert x.shape == y.shape == (2, len(long.ids) - 1)
    n = len(short.ids) - 1
    assert (y[0, n:] == IGNORE).all() and (x[0, n:] == 0).all()
    assert y[0, :n].tolist() == pair(short)[1]


def test_example_batches_cover_every_example_each_epoch_and_repeat(plain_tok):
    encoded = [encode(plain_tok, [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}])
               for i in range(6)]
    batches = ExampleBatches(encoded, batch_size=2, pad_id=0, seed=3)
    seen = [tuple(row) for step in (1, 2, 3) for row in batches.batch(step)[0].tolist()]
    assert len({tuple(v for v in row if v != 0) for row in seen}) == 6  # one epoch: all six, once each
    again = ExampleBatches(encoded, batch_size=2, pad_id=0, seed=3)
    assert torch.equal(batches.batch(5)[0], again.batch(5)[0])
    held = HeldOutExamples(encoded[:5], batch_size=2, pad_id=0)
    assert held.batches == 3 and held.batch(0, 2)[0].shape[0] == 1


def test_packed_examples_keep_the_masks(plain_tok):
    encoded = [encode(plain_tok, QA)] * 8
    packed = PackedExamples(encoded, batch_size=3, seq_len=16, seed=0)
    x, y = packed.batch(1)
    assert x.shape == y.shape == (3, 16)
    trained = {i for e in encoded for i, t in zip(e.ids, e.trained) if t}
    assert set(y[y != IGNORE].tolist()) <= trained


# -- learning a task ----------------------------------------------------------------------------------------------
def test_lora_on_a_tiny_model_learns_to_answer_a_handful_of_questions(plain_tok):
    """A tiny random GPT with LoRA adapters, trained on five question / answer pairs (answers only), then asked the
    same questions greedily through the template: it answers each one."""
    from llmfs.config import TrainConfig
    from llmfs.generate import SampleConfig, generate_text
    from llmfs.lora import add_adapter, mark_trainable
    from llmfs.model import GPT, GPTConfig
    from llmfs.train import train

    pairs = [("Capital of France?", "Paris."), ("Capital of Italy?", "Rome."), ("Colour of the sky?", "Blue."),
             ("Two plus two?", "Four."), ("Opposite of hot?", "Cold.")]
    conversations = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in pairs]
    encoded = [encode(plain_tok, c) for c in conversations]
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=len(plain_tok), n_positions=64, n_layer=2, n_head=2, n_embd=32))
    add_adapter(model, rank=8, alpha=16, targets="all-linear,lm_head", seed=0)
    mark_trainable(model)
    cfg = TrainConfig(steps=80, lr=1e-2, warmup_steps=5, batch_size=5, eval_every=0, checkpoint_every=0,
                      device="cpu", lora_rank=8, weight_decay=0.0)
    result = train(model, ExampleBatches(encoded, 5, plain_tok.eos_token_id, seed=0), cfg)
    assert result.final_loss < 0.05
    greedy = SampleConfig(temperature=0.0, max_new_tokens=8)
    for (question, answer), conversation in zip(pairs, conversations):
        prompt = render(plain_tok, conversation[:1], add_generation_prompt=True)
        assert generate_text(model, plain_tok, prompt, greedy).strip() == answer


def test_a_dataset_through_hugging_face_datasets_is_read_the_same(tmp_path):
    """hf:NAME reads a hub dataset where a network exists; hf:json:FILES is the same path on local files."""
    path = write(tmp_path / "p.jsonl", [{"prompt": "What is the capital of France?", "response": "Paris."},
                                        {"prompt": "Two plus two?", "completion": "Four."}])
    spec = f"hf:json:{path}"
    assert detect(spec) == "prompt"
    got = read_examples(spec)
    assert got.conversations[0] == QA and got.conversations[1][1]["content"] == "Four." and got.lines == [1, 2]


# the same templates with transformers' {% generation %} markers around what the assistant writes
CHATML_GEN = CHATML.replace(
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}",
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}{% generation %}"
    "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endif %}")
PLAIN_GEN = PLAIN_TEMPLATE.replace("{% else %}Assistant: {{ m['content'] }}{{ eos_token }}\n",
                                   "{% else %}Assistant:{% generation %} {{ m['content'] }}{{ eos_token }}"
                                   "{% endgeneration %}{{ '\n' }}")  # a plain \n after a tag is trimmed


@pytest.mark.parametrize("which", ["chatml", "plain"])
def test_our_mask_equals_transformers_assistant_tokens_mask(which, request):
    """transformers' apply_chat_template(return_assistant_tokens_mask=True) marks the tokens a template wraps in
    {% generation %}: on the same conversations our masks (found without any marker) are the same, token for token."""
    import copy
    tok = copy.deepcopy(request.getfixturevalue("chatml_tok" if which == "chatml" else "plain_tok"))
    marked = CHATML_GEN if which == "chatml" else PLAIN_GEN
    assert marked != (CHATML if which == "chatml" else PLAIN_TEMPLATE)
    for conversation in (QA, TWO_TURNS):
        ours = encode(tok, conversation)   # chatml: the tokenizer's own template; plain: it has none
        theirs = tok.apply_chat_template(conversation, chat_template=marked, tokenize=True, return_dict=True,
                                         return_assistant_tokens_mask=True)
        assert list(theirs["input_ids"]) == list(ours.ids)
        assert [bool(m) for m in theirs["assistant_masks"]] == list(ours.trained)
