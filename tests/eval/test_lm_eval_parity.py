"""Held against lm-evaluation-harness itself (optional: skipped unless `pip install lm-eval` was done).

lm-eval runs its own task yamls, pointed at the shared samples, through its Hugging Face backend (HFLM) on a tiny
GPT-2 folder and on tiny Llama folders; we run ours (our GPT, our Llama) on the same folder. Prompts must be
identical strings, log-likelihoods equal to float rounding, scores equal.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")


from bench.eval_vs_lm_eval import (  # noqa: E402
    build_lm_eval_tasks,
    lm_eval_logliks,
    lm_eval_spec,
    mmlu_files,
    run_lm_eval,
    wikitext_file,
)
from llmfs.config import EvalConfig  # noqa: E402
from llmfs.eval.runner import evaluate  # noqa: E402

SHARED_BENCHMARKS = Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks"
LIMIT = 10
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not SHARED_BENCHMARKS.is_dir(), reason="shared benchmark samples not present")]


@pytest.fixture(scope="module", params=["gpt2", "llama", "llama-bos"])
def folder(request, tmp_path_factory):
    """A tiny model saved by transformers; a wide initialisation so the choices' scores are far apart.

    gpt2: our GPT. llama: our Llama (grouped-query attention) with a 2048-token window, so contexts are shared
    (``_llama_shared_logits``). llama-bos: the same Llama with a 256-token window (rows truncated) and a tokenizer
    that adds BOS to every encoding, as Llama-2's and Llama-3's do (SmolLM2's and GPT-2's add none).
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from llmfs.corpus import train_tokenizer
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("lm-eval-parity") / f"tiny-{request.param}"
    if request.param == "gpt2":
        GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=256, vocab_size=300,
                                   initializer_range=0.2)).save_pretrained(path)
    else:
        LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, vocab_size=300, initializer_range=0.2,
                                     max_position_embeddings=2048 if request.param == "llama" else 256,
                                     tie_word_embeddings=False, bos_token_id=0, eos_token_id=0,
                                     pad_token_id=0)).save_pretrained(path)
    train_tokenizer(["The quick brown fox jumps over the lazy dog. " * 20, "def add(a, b):\n    return a + b\n",
                     "Python is a programming language. Lists, dicts and sets are built in."] * 10, path,
                    vocab_size=300)
    if request.param == "llama-bos":
        add_bos_to_tokenizer(path)
    return path


def add_bos_to_tokenizer(path) -> None:
    """Make the folder's tokenizer put ``<|endoftext|>`` (its BOS) before every encoding by default."""
    from tokenizers import Tokenizer, processors
    tk = Tokenizer.from_file(str(path / "tokenizer.json"))
    bos = processors.TemplateProcessing(single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)])
    tk.post_processor = processors.Sequence([tk.post_processor, bos])
    tk.save(str(path / "tokenizer.json"))


def test_the_tokenizers_add_bos_as_intended(folder):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(folder)
    assert (tok.encode("The fox")[0] == tok.bos_token_id) == folder.name.endswith("-bos")


@pytest.fixture(scope="module")
def both(folder, tmp_path_factory):
    """lm-eval's results and ours for 10 items of hellaswag, 2-shot MMLU abstract algebra, TruthfulQA MC1 and MC2,
    and for 2 WikiText articles (one lm-eval run for all: its set-up costs seconds)."""
    from lm_eval.models.huggingface import HFLM

    from llmfs.weights import load_pretrained

    tmp = tmp_path_factory.mktemp("lm-eval-data")
    mmlu = mmlu_files(SHARED_BENCHMARKS / "mmlu_sample.jsonl", "abstract_algebra", tmp)
    merged = tmp / "mmlu.jsonl"
    merged.write_text("".join(json.dumps({**json.loads(line), "split": s}) + "\n" for s in ("test", "dev")
                              for line in open(mmlu[s])))
    wiki = wikitext_file(SHARED_BENCHMARKS / "wikitext2_test_sample.txt", tmp, n_docs=2)
    hs, tqa = str(SHARED_BENCHMARKS / "hellaswag_val_200.jsonl"), str(SHARED_BENCHMARKS / "truthfulqa_mc_100.jsonl")
    plan = {  # lm-eval task -> (its spec, our config)
        "hellaswag": (lm_eval_spec("hellaswag", {"validation": hs}),
                      EvalConfig(task="hellaswag", data=hs, limit=LIMIT)),
        "mmlu_abstract_algebra": (lm_eval_spec("mmlu_abstract_algebra", mmlu, num_fewshot=2),
                                  EvalConfig(task="mmlu", data=str(merged), limit=LIMIT, num_fewshot=2)),
        "truthfulqa_mc1": (lm_eval_spec("truthfulqa_mc1", {"validation": tqa}),
                           EvalConfig(task="truthfulqa_mc1", data=tqa, limit=LIMIT)),
        "truthfulqa_mc2": (lm_eval_spec("truthfulqa_mc2", {"validation": tqa}),
                           EvalConfig(task="truthfulqa_mc2", data=tqa, limit=LIMIT)),
        "wikitext": (lm_eval_spec("wikitext", {"test": wiki}), EvalConfig(task="perplexity", data=wiki)),
    }
    lm = HFLM(pretrained=str(folder), batch_size=8, device="cpu")
    theirs = run_lm_eval(lm, build_lm_eval_tasks([spec for spec, _ in plan.values()]), LIMIT)
    model, tok = load_pretrained(str(folder))
    assert type(model).__name__ == ("GPT" if folder.name == "tiny-gpt2" else "Llama")
    return {name: evaluate(model, tok, cfg) for name, (_, cfg) in plan.items()}, theirs


def flat(xs: list) -> list[float]:
    return [y for x in xs for y in (x if isinstance(x, list) else [x])]


TASKS = ["hellaswag", "mmlu_abstract_algebra", "truthfulqa_mc1", "truthfulqa_mc2"]


@pytest.mark.parametrize("name", TASKS)
def test_prompts_are_the_same_strings(both, name):
    ours, theirs = both
    samples = sorted(theirs["samples"][name], key=lambda s: s["doc_id"])
    assert len(samples) == len(ours[name]["items"])
    for s, rec in zip(samples, ours[name]["items"]):
        their_requests = [tuple(a) for a in s["arguments"]]
        our_requests = [(rec["prompt"], rec["delimiter"] + c) for c in rec["choices"]]
        assert our_requests == their_requests


@pytest.mark.parametrize("name", TASKS + ["wikitext"])
def test_logliks_and_scores_match(both, name):
    ours, theirs = both
    their_ll = flat(lm_eval_logliks(theirs, name))
    our_ll = flat([r["logliks"] if "logliks" in r else r["loglik"] for r in ours[name]["items"]])
    assert len(our_ll) == len(their_ll) > 0
    assert our_ll == pytest.approx(their_ll, rel=1e-5, abs=1e-3)
    results = theirs["results"][name]
    metrics = ("word_perplexity", "byte_perplexity", "bits_per_byte") if name == "wikitext" else \
        tuple(m for m in ("acc", "acc_norm") if f"{m},none" in results)
    for m in metrics:
        assert ours[name]["metrics"][m] == pytest.approx(results[f"{m},none"], rel=1e-5), m
        if f"{m}_stderr,none" in results and isinstance(results[f"{m}_stderr,none"], float):
            assert ours[name]["metrics"][f"{m}_stderr"] == pytest.approx(results[f"{m}_stderr,none"], rel=1e-5)
