"""Issue 18's own code against the library that does the same, side by side:

1. Masks: `llmfs.data.examples.encode` (the assistant's tokens, found without any marker in the template) vs
   transformers' `apply_chat_template(return_assistant_tokens_mask=True)` on a twin of the template with
   `{% generation %}` markers: equal masks, and examples encoded per second.
2. Answers with a token view: `llmfs.generate.stream_tokens` (each token's probability and top-5 alternatives) on
   our Llama vs transformers' `generate(output_logits=True)` on LlamaForCausalLM, same weights, greedy: tokens/s and
   whether the tokens are the same.

    LLMFS_HOME=/tmp/llmfs-dev .venv/bin/python bench/chat_vs_transformers.py --tokens 64 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmfs.data.examples import encode, python_qa  # noqa: E402
from llmfs.generate import SampleConfig, prompt_ids, stream_tokens  # noqa: E402
from llmfs.sources import resolve_model_dir  # noqa: E402
from llmfs.weights import load_pretrained  # noqa: E402

# SmolLM2's ChatML template with transformers' markers around what the assistant writes
MARKED = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
          "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
          "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}{% generation %}"
          "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
          "{% else %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def masks(tokenizer, repeats: int) -> dict:
    conversations = python_qa()
    ours_t, theirs_t, equal = [], [], True
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours = [encode(tokenizer, c) for c in conversations]
        ours_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs = [tokenizer.apply_chat_template(c, chat_template=MARKED, tokenize=True, return_dict=True,
                                                return_assistant_tokens_mask=True) for c in conversations]
        theirs_t.append(time.perf_counter() - t0)
        equal = equal and all(list(t["input_ids"]) == list(o.ids) and [bool(m) for m in t["assistant_masks"]]
                              == list(o.trained) for o, t in zip(ours, theirs))
    n = len(conversations)
    return {"examples": n, "masks_equal": equal, "ours_examples_per_s": n / min(ours_t),
            "transformers_examples_per_s": n / min(theirs_t), "ratio": min(theirs_t) / min(ours_t)}


def answers(source: str, new_tokens: int, repeats: int) -> dict:
    from transformers import AutoModelForCausalLM
    model, tokenizer = load_pretrained(source)
    hf = AutoModelForCausalLM.from_pretrained(resolve_model_dir(source), dtype=torch.float32).eval()
    messages = [{"role": "user", "content": "Explain what a Python list is, in a few sentences."}]
    ids = prompt_ids(tokenizer, messages=messages)
    cfg = SampleConfig(temperature=0.0, max_new_tokens=new_tokens)
    ours_t, theirs_t = [], []
    for _ in range(repeats):   # interleaved, so a busy machine slows both alike
        t0 = time.perf_counter()
        steps = list(stream_tokens(model, tokenizer, ids, cfg, top_n=5))
        ours_t.append((time.perf_counter() - t0) / max(1, len(steps)))
        with torch.no_grad():
            t0 = time.perf_counter()
            out = hf.generate(torch.tensor([ids]), max_new_tokens=len(steps), min_new_tokens=len(steps),
                              do_sample=False, output_logits=True, return_dict_in_generate=True,
                              pad_token_id=tokenizer.eos_token_id)
            theirs_t.append((time.perf_counter() - t0) / len(steps))
    theirs_ids = out.sequences[0, len(ids):].tolist()
    top_probs = [float(torch.softmax(s[0].float(), -1).max()) for s in out.logits]   # raw logits, unprocessed
    same = [s.id for s in steps] == theirs_ids[: len(steps)]
    prob_gap = max(abs(s.prob - p) for s, p in zip(steps, top_probs))
    return {"model": source, "new_tokens": len(steps), "same_tokens": same, "max_prob_difference": prob_gap,
            "ours_tokens_per_s": 1 / statistics.median(ours_t),
            "transformers_tokens_per_s": 1 / statistics.median(theirs_t),
            "ratio": statistics.median(theirs_t) / statistics.median(ours_t)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.manual_seed(0)
    _, tokenizer = load_pretrained(args.model)
    tokenizer = copy.deepcopy(tokenizer)
    out = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
           "masks": masks(tokenizer, args.repeats), "answers": answers(args.model, args.tokens, args.repeats)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
