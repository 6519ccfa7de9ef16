"""L14 on our Llama: every benchmark scores the same as transformers' LlamaForCausalLM on the same folder.

The reference is transformers' model scored the way lm-eval's HFLM scores (one row per request, left-truncated to
the window + 1 tokens, the last token dropped as input). Our Llama runs a context shared by several choices once
(``_llama_shared_logits``); the numbers must be the same to float rounding, the scores exactly the same.
tests/eval/test_lm_eval_parity.py holds the same folders against lm-eval itself where it is installed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from llmfs.config import EvalConfig
from llmfs.eval.runner import evaluate
from llmfs.eval.scorer import (
    TokenRequest,
    choose,
    encode_requests,
    loglikelihoods,
    prefix_text,
    score_requests,
    tok_encode,
)
from llmfs.llama import Llama, LlamaConfig

SHARED_BENCHMARKS = Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks"
needs_samples = pytest.mark.skipif(not SHARED_BENCHMARKS.is_dir(), reason="shared benchmark samples not present")


def hflm_score(hf_model, request: TokenRequest, max_length: int) -> tuple[float, bool]:
    """One request alone, as lm-eval's ``HFLM._loglikelihood_tokens`` scores it."""
    inp = list(request.context + request.continuation)[-(max_length + 1):][:-1]
    with torch.no_grad():
        logits = hf_model(torch.tensor([inp])).logits[0].float()
    logprobs = F.log_softmax(logits[len(inp) - len(request.continuation):], dim=-1)
    target = torch.tensor(request.continuation)
    return float(logprobs.gather(1, target[:, None]).sum()), bool((logprobs.argmax(-1) == target).all())


def load_both(folder):
    from transformers import AutoTokenizer, LlamaForCausalLM

    from llmfs.weights import load_model
    ours, tok = load_model(str(folder))
    assert isinstance(ours, Llama)
    theirs = LlamaForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    return ours.eval(), theirs, AutoTokenizer.from_pretrained(folder)


# -- requests -----------------------------------------------------------------------------------------------------
def test_llama_logliks_equal_transformers_request_by_request(tiny_llama_folder):
    ours, theirs, tok = load_both(tiny_llama_folder)
    long_context = "The quick brown fox jumps over the lazy dog. " * 30  # beyond the 128-token window: truncated
    requests = [("The quick brown", " fox"), ("The quick brown", " fox jumps"), ("The quick brown", " dog"),
                ("def add(a, b):", "\n    return a + b"), ("Answer: ", "A"), ("", "Python is a language."),
                (long_context, " The end."), (long_context, " Lists")]
    encoded = encode_requests(tok, requests)
    assert len(tok.encode(long_context)) > ours.config.max_position_embeddings
    expected = [hflm_score(theirs, r, 128) for r in encoded]
    for share in (True, False):
        got = loglikelihoods(ours, tok, requests, batch_size=3, share_context=share)
        assert [g for _, g in got] == [g for _, g in expected]
        assert [ll for ll, _ in got] == pytest.approx([ll for ll, _ in expected], abs=1e-4)


@pytest.mark.parametrize("config", [
    dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True),
    dict(num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=False, qkv_bias=True,
         rope_theta=100000.0, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                            "high_freq_factor": 4.0, "original_max_position_embeddings": 8}),
    dict(num_attention_heads=2, num_key_value_heads=2, head_dim=24, tie_word_embeddings=False),
], ids=["gqa-tied", "mqa-bias-llama3-rope", "mha-head-dim"])
def test_shared_context_equals_each_request_alone(config):
    """The shared path (contexts of different lengths in one batch, continuations of different lengths, rows that
    would be truncated going row by row) gives what one forward pass per request gives."""
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                              max_position_embeddings=32, **config)).eval()
    for p in model.parameters():  # a wide initialisation: log-likelihoods far from uniform
        p.data.normal_(0, 0.3)
    rng = random.Random(1)
    requests = []
    for _ in range(10):
        ctx = tuple(rng.randrange(100) for _ in range(rng.randint(1, 26)))
        requests += [TokenRequest(ctx, tuple(rng.randrange(100) for _ in range(rng.randint(1, 9))))
                     for _ in range(rng.randint(1, 5))]
    requests += [TokenRequest((1, 2, 3), (t,)) for t in (4, 5, 6, 7)]  # MMLU's one-token answers
    alone = [score_requests(model, [r], share_context=False)[0] for r in requests]
    with torch.no_grad():
        by_hand = float(F.log_softmax(model(torch.tensor([[1, 2, 3]]))[0][0, -1], -1)[4])
    assert alone[-4][0] == pytest.approx(by_hand, abs=1e-5)
    for batch_size in (1, 5, 64):
        shared = score_requests(model, requests, batch_size=batch_size)
        assert [g for _, g in shared] == [g for _, g in alone]
        assert [ll for ll, _ in shared] == pytest.approx([ll for ll, _ in alone], abs=1e-4)


def test_sharing_runs_each_context_once(monkeypatch):
    """A HellaSwag-shaped group (one context, four endings) costs one context pass, not four."""
    import llmfs.eval.scorer as scorer
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                              num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)).eval()
    calls = []
    real = scorer._llama_shared_logits
    monkeypatch.setattr(scorer, "_llama_shared_logits", lambda m, ctx, *a: calls.append(ctx.shape) or real(m, ctx, *a))
    ctx = tuple(range(1, 21))
    score_requests(model, [TokenRequest(ctx, (30 + i, 40 + i, 45)) for i in range(4)], batch_size=16)
    assert calls == [(1, 20)]


# -- tokenizing as lm-eval does ----------------------------------------------------------------------------------
def test_tok_encode_keeps_the_tokenizers_own_bos_rule(tiny_llama_folder, tmp_path):
    """SmolLM2's tokenizer (and this one) adds no BOS; Llama-2/3's add one; a text that already starts with the BOS
    text gets no second one (lm-eval's ``HFLM.tok_encode`` with ``add_bos_token=None``)."""
    import shutil

    from tokenizers import Tokenizer, processors
    from transformers import AutoTokenizer
    plain = AutoTokenizer.from_pretrained(tiny_llama_folder)
    bos_folder = tmp_path / "bos"
    shutil.copytree(tiny_llama_folder, bos_folder)
    tk = Tokenizer.from_file(str(bos_folder / "tokenizer.json"))
    tk.post_processor = processors.Sequence([tk.post_processor, processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)])])
    tk.save(str(bos_folder / "tokenizer.json"))
    adds_bos = AutoTokenizer.from_pretrained(bos_folder)
    text = "The quick brown fox"
    body = plain.encode(text)
    assert body[0] != 0 and prefix_text(plain) == "<|endoftext|>"
    assert tok_encode(plain, text, prefix_text(plain)) == body
    assert tok_encode(adds_bos, text, prefix_text(adds_bos)) == [0] + body
    assert tok_encode(adds_bos, "<|endoftext|>" + text, prefix_text(adds_bos)) == [0] + body  # not [0, 0, ...]
    (r,) = encode_requests(adds_bos, [("The quick", " brown fox")])
    assert r.context[0] == 0 and list(r.context + r.continuation) == [0] + body


def test_tok_encode_equals_lm_evals(tiny_llama_folder):
    pytest.importorskip("lm_eval")
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer
    lm = HFLM(pretrained=str(tiny_llama_folder), device="cpu", batch_size=1)
    tok = AutoTokenizer.from_pretrained(tiny_llama_folder)
    for text in ("The quick brown fox", "<|endoftext|>The fox", " leading space", "def f():\n    pass"):
        assert tok_encode(tok, text, prefix_text(tok)) == lm.tok_encode(text)
    reqs = [("The quick", " brown fox"), ("Answer: ", "A"), ("", "Lists")]
    assert [(list(r.context), list(r.continuation)) for r in encode_requests(tok, reqs)] == \
        [tuple(map(list, lm._encode_pair(c, x))) if c else ([lm.prefix_token_id], lm.tok_encode(x))
         for c, x in reqs]


# -- every benchmark ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wide_llama_folder(tmp_path_factory, save_tiny_tokenizer):
    """A tiny Llama with a 1024-token window (the benchmarks' contexts fit, so they are shared) and a wide
    initialisation (the choices' scores are far apart, so float rounding cannot flip a prediction)."""
    from transformers import LlamaConfig as HFLlamaConfig
    from transformers import LlamaForCausalLM
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("llama-eval") / "tiny-llama"
    LlamaForCausalLM(HFLlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=300, max_position_embeddings=1024,
                                   initializer_range=0.2, tie_word_embeddings=False, bos_token_id=0,
                                   eos_token_id=0, pad_token_id=0)).save_pretrained(folder)
    save_tiny_tokenizer(folder, vocab_size=300)
    return folder


@pytest.fixture(scope="module")
def cloze_shards(tmp_path_factory):
    from llmfs.corpus import write_shards
    words = "the module reads a file and returns its lines as a list of strings with newlines kept".split()
    rng = random.Random(0)
    docs = [{"id": f"doc{d}", "source": "test", "text": f"Module m{d}\n=========\n\n" + "\n\n".join(
        " ".join(rng.choice(words) for _ in range(20)) for _ in range(3))} for d in range(4)]
    out = tmp_path_factory.mktemp("cloze")
    write_shards(docs, out)
    return out


def benchmark_configs(tmp: Path, cloze: Path) -> dict[str, EvalConfig]:
    rows = [json.loads(line) for line in (SHARED_BENCHMARKS / "mmlu_sample.jsonl").read_text().splitlines()]
    subject = rows[0]["subject"]
    mmlu = tmp / "mmlu.jsonl"
    mmlu.write_text("".join(json.dumps(r) + "\n" for r in rows if r["subject"] == subject))
    custom_mc, custom_ref = tmp / "mc.jsonl", tmp / "ref.jsonl"
    custom_mc.write_text(json.dumps({"question": "The quick brown", "choices": ["fox", "dog", "cat"], "answer": 0})
                         + "\n" + json.dumps({"question": "Lists, dicts and", "choices": ["sets", "tuples"],
                                              "answer": "sets"}) + "\n")
    custom_ref.write_text(json.dumps({"prompt": "def add(a, b):\n    return", "reference": " a + b"}) + "\n"
                          + json.dumps({"prompt": "Python is a", "reference": " programming language."}) + "\n")
    hs, tqa = str(SHARED_BENCHMARKS / "hellaswag_val_200.jsonl"), str(SHARED_BENCHMARKS / "truthfulqa_mc_100.jsonl")
    wiki = str(SHARED_BENCHMARKS / "wikitext2_test_sample.txt")
    return {
        "hellaswag": EvalConfig(task="hellaswag", data=hs, limit=4, batch_size=4),
        "mmlu": EvalConfig(task="mmlu", data=str(mmlu), limit=4, num_fewshot=2),
        "truthfulqa_mc1": EvalConfig(task="truthfulqa_mc1", data=tqa, limit=3),
        "truthfulqa_mc2": EvalConfig(task="truthfulqa_mc2", data=tqa, limit=3),
        "custom_mc": EvalConfig(task="custom", data=str(custom_mc)),
        "custom_reference": EvalConfig(task="custom", data=str(custom_ref)),
        "llmfs-cloze": EvalConfig(task="llmfs-cloze", data=str(cloze), limit=6),
        "perplexity": EvalConfig(task="perplexity", data=wiki, limit=2, max_length=256),
        "perplexity_stride": EvalConfig(task="perplexity", data=wiki, limit=1, max_length=256, stride=128),
    }


@needs_samples
@pytest.mark.slow
@pytest.mark.parametrize("name", ["hellaswag", "mmlu", "truthfulqa_mc1", "truthfulqa_mc2", "custom_mc",
                                  "custom_reference", "llmfs-cloze", "perplexity", "perplexity_stride"])
def test_every_benchmark_scores_our_llama_as_transformers(wide_llama_folder, cloze_shards, tmp_path, name):
    ours, theirs, tok = load_both(wide_llama_folder)
    cfg = benchmark_configs(tmp_path, cloze_shards)[name]
    got = evaluate(ours, tok, cfg)
    assert got["n_items"] > 0 and got["max_length"] == (cfg.max_length or 1024)
    if got["kind"] == "multiple_choice":  # each request alone through transformers' model
        for rec in got["items"]:
            requests = encode_requests(tok, [(rec["prompt"], rec["delimiter"] + c) for c in rec["choices"]])
            expected = [hflm_score(theirs, r, got["max_length"]) for r in requests]
            assert rec["logliks"] == pytest.approx([ll for ll, _ in expected], abs=1e-4)
            assert rec["is_greedy"] == [g for _, g in expected]
            assert (rec["predicted"], rec["predicted_norm"]) == choose([ll for ll, _ in expected], rec["choices"])
    reference = evaluate(theirs, tok, cfg)  # transformers' model through lm-eval's row-by-row layout
    key = "logliks" if got["kind"] == "multiple_choice" else "loglik"
    for a, b in zip(got["items"], reference["items"]):
        assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-4)
    for metric, value in reference["metrics"].items():
        assert got["metrics"][metric] == (None if value is None else pytest.approx(value, rel=1e-4)), metric
