"""Tests for llmfs/vocab.py: adding tokens, padding the vocabulary, swapping tokenizers. CPU, tiny models, offline."""

import copy
import dataclasses

import pytest
import torch
from torch.testing import assert_close

from llmfs.corpus import train_tokenizer
from llmfs.llama import Llama, LlamaConfig
from llmfs.model import GPT, GPTConfig
from llmfs.vocab import add_tokens, pad_vocab, padded_size, row_origins, swap_tokenizer, unpad_vocab
from llmfs.weights import load_hf_folder, save_hf_folder

TINY = GPTConfig(vocab_size=300, n_positions=32, n_embd=32, n_layer=2, n_head=2)
TEXTS = ["def add(a, b):\n    return a + b\n", "The quick brown fox jumps over the lazy dog. " * 20,
         "Python is a programming language. Lists, dicts and sets are built in."] * 10
OTHER_TEXTS = ["import os\nfor name in os.listdir('.'):\n    print(name.upper())\n",
               "A lazy cat sleeps in the sun while the quick dog runs. " * 20] * 10
PROMPT = "The quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    tok = train_tokenizer(TEXTS, tmp_path_factory.mktemp("tok"), vocab_size=300)
    assert len(tok) == TINY.vocab_size  # the corpus is big enough for all 300 ids
    return tok


@pytest.fixture(scope="module")
def other_tokenizer(tmp_path_factory):
    tok = train_tokenizer(OTHER_TEXTS, tmp_path_factory.mktemp("other"), vocab_size=320)
    assert len(tok) == 320
    return tok


def _model(tied: bool = True) -> GPT:
    torch.manual_seed(0)
    return GPT(dataclasses.replace(TINY, tie_word_embeddings=tied)).eval()


def _ids(tokenizer, text: str = PROMPT) -> torch.Tensor:
    return tokenizer(text, return_tensors="pt")["input_ids"]  # (1, T)


def _logits(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(idx)[0]


def _snapshot(model: GPT) -> dict:
    return {"config": model.config, "tied": model.lm_head.weight is model.transformer.wte.weight,
            "state": {k: v.clone() for k, v in model.state_dict().items()}}


def _assert_unchanged(model: GPT, snapshot: dict) -> None:
    assert _snapshot(model)["config"] == snapshot["config"]
    assert (model.lm_head.weight is model.transformer.wte.weight) == snapshot["tied"]
    state = model.state_dict()
    assert state.keys() == snapshot["state"].keys()
    for key, value in snapshot["state"].items():
        assert torch.equal(state[key], value), key


# --- add_tokens ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("init", ["mean", "subtoken_mean"])
def test_added_tokens_leave_old_logits_unchanged(tokenizer, tied, init):
    model = _model(tied)
    idx = _ids(tokenizer)
    before = _logits(model, idx)
    new_model, new_tok, report = add_tokens(model, tokenizer, [" foxes", "<|user|>"], init=init)
    after = _logits(new_model, idx)
    assert after.shape == (1, idx.size(1), 302)
    # The new tokens only add columns; the old ones match (matmuls of another width may differ in the last bit).
    assert_close(after[..., :300], before, atol=1e-6, rtol=0)
    assert new_model.config.vocab_size == 302 == len(new_tok)
    assert (new_model.lm_head.weight is new_model.transformer.wte.weight) == tied


def test_add_tokens_report_and_mean_init(tokenizer):
    model = _model(tied=True)
    snapshot = _snapshot(model)
    new_model, new_tok, report = add_tokens(model, tokenizer, [" foxes", "Ġlazy", "zzq", "zzq"])
    # "Ġlazy" is already a BPE token (the byte-level spelling of " lazy"); "zzq" is given twice.
    assert report.tokens == (" foxes", "zzq")
    assert report.ids == (300, 301) == tuple(new_tok.convert_tokens_to_ids([" foxes", "zzq"]))
    assert report.skipped == ("Ġlazy",)
    assert (report.old_vocab_size, report.new_vocab_size, report.init) == (300, 302, "mean")
    assert report.splits == {" foxes": (" fox", "e", "s"), "zzq": ("z", "z", "q")}  # from the trained BPE
    assert new_tok.encode(" foxes and zzq") == [300, *tokenizer.encode(" and "), 301]
    wte = new_model.transformer.wte.weight
    old = model.transformer.wte.weight
    assert torch.equal(wte[:300], old)
    assert torch.equal(wte[300], old.mean(0)) and torch.equal(wte[301], old.mean(0))
    assert new_model.lm_head.weight is wte  # still one Parameter
    _assert_unchanged(model, snapshot)
    assert len(tokenizer) == 300 and " foxes" not in tokenizer.get_vocab()  # the caller's tokenizer too


def test_subtoken_mean_init_untied_head_resized(tokenizer):
    model = _model(tied=False)
    snapshot = _snapshot(model)
    new_model, _, report = add_tokens(model, tokenizer, [" foxes"], init="subtoken_mean")
    pieces = tokenizer(" foxes", add_special_tokens=False)["input_ids"]
    assert len(pieces) == 3
    for new, old in [(new_model.transformer.wte.weight, model.transformer.wte.weight),
                     (new_model.lm_head.weight, model.lm_head.weight)]:
        assert new.shape == (301, TINY.n_embd)
        assert torch.equal(new[:300], old)
        assert torch.equal(new[300], old[pieces].mean(0))
    assert new_model.lm_head.weight is not new_model.transformer.wte.weight
    assert new_model.lm_head.out_features == new_model.transformer.wte.num_embeddings == 301
    _assert_unchanged(model, snapshot)


def test_special_tokens_are_registered_and_never_split(tokenizer):
    model = _model()
    _, new_tok, report = add_tokens(model, tokenizer, ["<|user|>", "<|assistant|>"], special=True)
    assert report.ids == (300, 301)
    assert {"<|endoftext|>", "<|user|>", "<|assistant|>"} <= set(new_tok.all_special_tokens)
    ids = new_tok.encode("<|user|>hi<|assistant|>")
    assert ids[0] == 300 and ids[-1] == 301
    assert new_tok.decode(ids, skip_special_tokens=True) == "hi"
    assert "<|user|>" not in tokenizer.all_special_tokens


def test_add_tokens_to_a_loaded_hf_checkpoint(tiny_hf_folder):
    from transformers import AutoTokenizer
    model, tok = load_hf_folder(tiny_hf_folder), AutoTokenizer.from_pretrained(tiny_hf_folder)
    idx = _ids(tok)
    new_model, new_tok, _ = add_tokens(model, tok, ["quick brown"], init="subtoken_mean")
    assert_close(_logits(new_model, idx)[..., : len(tok)], _logits(model, idx), atol=1e-6, rtol=0)
    assert len(tok) in new_tok.encode("the quick brown fox")  # the added token is matched whole


def test_add_tokens_refuses_bad_arguments(tokenizer):
    with pytest.raises(ValueError, match=r"init must be one of"):
        add_tokens(_model(), tokenizer, ["x"], init="zeros")
    small = GPT(dataclasses.replace(TINY, vocab_size=256))
    with pytest.raises(ValueError, match=r"tokenizer has 300 ids but the model only 256"):
        add_tokens(small, tokenizer, ["x"])


# --- pad_vocab -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [True, False])
def test_padding_keeps_logits_and_loss(tokenizer, tied):
    model = _model(tied)
    snapshot = _snapshot(model)
    padded, report = pad_vocab(model)
    assert (report.vocab_size, report.old_rows, report.new_rows, report.multiple) == (300, 300, 320, 64)
    assert padded.config.vocab_size == 300 and padded.config.padded_vocab_size == 320
    assert padded.transformer.wte.weight.shape == padded.lm_head.weight.shape == (320, TINY.n_embd)
    assert (padded.lm_head.weight is padded.transformer.wte.weight) == tied
    idx = _ids(tokenizer)
    with torch.no_grad():
        logits, loss = model(idx[:, :-1], idx[:, 1:])
        padded_logits, padded_loss = padded(idx[:, :-1], idx[:, 1:])
    assert padded_logits.shape == logits.shape  # padding columns are never predicted
    assert_close(padded_logits, logits, atol=1e-6, rtol=0)
    assert_close(padded_loss, loss, atol=1e-6, rtol=0)
    _assert_unchanged(model, snapshot)


def test_gpt2_vocab_pads_to_50304():
    model = GPT(GPTConfig(vocab_size=50257, n_positions=8, n_embd=8, n_layer=1, n_head=1))
    padded, report = pad_vocab(model)
    assert (report.old_rows, report.new_rows) == (50257, 50304)  # nanoGPT's number
    assert padded.config.vocab_rows == 50304 and padded.config.vocab_size == 50257
    again, report = pad_vocab(padded, multiple=128)  # re-padding starts from the real vocabulary
    assert (report.old_rows, report.new_rows, again.config.vocab_rows) == (50304, 50304, 50304)


def test_padded_model_trains_and_padding_gets_no_gradient(tokenizer):
    padded, _ = pad_vocab(_model())
    padded.train()
    idx = _ids(tokenizer)
    opt = torch.optim.AdamW(padded.parameters(), lr=1e-2)
    _, loss = padded(idx[:, :-1], idx[:, 1:])
    loss.backward()
    grad = padded.transformer.wte.weight.grad
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert grad[:300].abs().sum() > 0 and torch.equal(grad[300:], torch.zeros(20, TINY.n_embd))
    opt.step()
    _, after = padded(idx[:, :-1], idx[:, 1:])
    assert after.item() < loss.item()


def test_padded_model_exports_unpadded_with_same_logits(tokenizer, tmp_path):
    transformers = pytest.importorskip("transformers")
    padded, _ = pad_vocab(_model())
    # Saving a padded model drops the padding rows itself: transformers' config has no notion of them.
    direct = load_hf_folder(save_hf_folder(padded, tmp_path / "direct"))
    assert direct.config.padded_vocab_size is None and direct.transformer.wte.weight.shape[0] == 300
    folder = save_hf_folder(unpad_vocab(padded), tmp_path / "ckpt")
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    idx = _ids(tokenizer)
    with torch.no_grad():
        assert_close(hf(idx).logits, _logits(padded, idx), atol=1e-5, rtol=0)
    assert torch.equal(load_hf_folder(folder).transformer.wte.weight, padded.transformer.wte.weight[:300])


def test_add_tokens_to_a_padded_model_returns_it_unpadded(tokenizer):
    padded, _ = pad_vocab(_model())
    new_model, _, _ = add_tokens(padded, tokenizer, ["zzq"])
    assert new_model.config.padded_vocab_size is None
    assert new_model.transformer.wte.weight.shape == (301, TINY.n_embd)
    idx = _ids(tokenizer)
    assert_close(_logits(new_model, idx)[..., :300], _logits(padded, idx), atol=1e-6, rtol=0)


# --- swap_tokenizer ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [True, False])
def test_swap_tokenizer_copies_matched_rows(tokenizer, other_tokenizer, tied):
    model = _model(tied)
    snapshot = _snapshot(model)
    new_model, report = swap_tokenizer(model, tokenizer, other_tokenizer)
    assert (report.old_vocab_size, report.new_vocab_size) == (300, 320)
    assert report.matched + report.from_subtokens + report.from_mean == 320
    # Both share the 256 bytes and <|endoftext|>; byte-level text never splits to nothing, so from_mean is 0.
    assert report.matched >= 257 and report.from_subtokens > 0 and report.from_mean == 0
    old_vocab = tokenizer.get_vocab()
    tables = [(new_model.transformer.wte.weight, model.transformer.wte.weight)]
    if not tied:
        tables.append((new_model.lm_head.weight, model.lm_head.weight))
    matched = unmatched = 0
    for token, new_id in other_tokenizer.get_vocab().items():
        for new, old in tables:
            if token in old_vocab:
                assert torch.equal(new[new_id], old[old_vocab[token]]), token
                matched += 1
            else:
                pieces = tokenizer(other_tokenizer.decode([new_id]), add_special_tokens=False)["input_ids"]
                assert torch.equal(new[new_id], old[pieces].mean(0)), token
                unmatched += 1
    assert (matched, unmatched) == (report.matched * len(tables), report.from_subtokens * len(tables))
    assert (new_model.lm_head.weight is new_model.transformer.wte.weight) == tied
    assert _logits(new_model, _ids(other_tokenizer)).shape[-1] == 320
    _assert_unchanged(model, snapshot)


def test_swap_to_the_same_tokenizer_is_the_identity(tokenizer):
    model = _model()
    same, report = swap_tokenizer(model, tokenizer, copy.deepcopy(tokenizer))
    assert (report.matched, report.from_subtokens, report.from_mean) == (300, 0, 0)
    assert torch.equal(same.transformer.wte.weight, model.transformer.wte.weight)
    idx = _ids(tokenizer)
    assert torch.equal(_logits(same, idx), _logits(model, idx))


def test_row_origins_say_where_each_swapped_row_comes_from(tokenizer, other_tokenizer):
    origins = row_origins(tokenizer, other_tokenizer)
    _, report = swap_tokenizer(_model(), tokenizer, other_tokenizer)
    counts = {kind: sum(1 for o in origins if o.kind == kind) for kind in ("matched", "subtokens", "mean")}
    assert counts == {"matched": report.matched, "subtokens": report.from_subtokens, "mean": report.from_mean}
    old_vocab = tokenizer.get_vocab()
    for token, new_id in list(other_tokenizer.get_vocab().items())[:50]:
        (one,) = row_origins(tokenizer, other_tokenizer, [new_id])  # one id alone: the same answer
        assert one == origins[new_id]
        assert (one.kind == "matched") == (token in old_vocab)
        if one.kind == "matched":
            assert one.ids == (old_vocab[token],)


# --- our Llama -----------------------------------------------------------------------------------------------


def _llama(tied: bool = True) -> Llama:
    torch.manual_seed(0)
    return Llama(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                             tie_word_embeddings=tied)).eval()


@pytest.mark.parametrize("tied", [True, False])
def test_add_tokens_and_swap_on_our_llama(tokenizer, other_tokenizer, tied, tmp_path):
    model = _llama(tied)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    idx = _ids(tokenizer)
    bigger, new_tok, report = add_tokens(model, tokenizer, [" foxes", "<|user|>"], init="subtoken_mean")
    assert report.new_vocab_size == bigger.config.vocab_size == 302 == len(new_tok)
    assert bigger.model.embed_tokens.weight.shape == bigger.lm_head.weight.shape == (302, 32)
    assert (bigger.lm_head.weight is bigger.model.embed_tokens.weight) == tied
    assert_close(_logits(bigger, idx)[..., :300], _logits(model, idx), atol=1e-6, rtol=0)
    pieces = tokenizer(" foxes", add_special_tokens=False)["input_ids"]
    assert torch.equal(bigger.model.embed_tokens.weight[report.ids[0]], model.model.embed_tokens.weight[pieces].mean(0))
    # it saves as a Llama folder that loads back with the same logits
    from llmfs.weights import load_folder
    reloaded = load_folder(save_hf_folder(bigger, tmp_path / "bigger", tokenizer=new_tok))
    assert_close(_logits(reloaded, idx), _logits(bigger, idx), atol=1e-6, rtol=0)

    swapped, swap = swap_tokenizer(model, tokenizer, other_tokenizer)
    assert swapped.model.embed_tokens.weight.shape[0] == swapped.config.vocab_size == 320
    assert swap.matched + swap.from_subtokens + swap.from_mean == 320
    assert (swapped.lm_head.weight is swapped.model.embed_tokens.weight) == tied
    for token, new_id in other_tokenizer.get_vocab().items():
        if token in tokenizer.get_vocab():
            assert torch.equal(swapped.model.embed_tokens.weight[new_id],
                               model.model.embed_tokens.weight[tokenizer.get_vocab()[token]])
    # the blocks are copied, the input model untouched
    assert torch.equal(swapped.model.layers[0].mlp.up_proj.weight, model.model.layers[0].mlp.up_proj.weight)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert model.config.vocab_size == 300


def test_padding_arithmetic_and_llama_refused():
    assert padded_size(50257) == 50304 and padded_size(4096) == 4096 and padded_size(49152) == 49152
    assert padded_size(301, 128) == 384
    with pytest.raises(ValueError, match="positive integer"):
        padded_size(10, 0)
    with pytest.raises(ValueError, match="GPT only"):
        pad_vocab(_llama())
