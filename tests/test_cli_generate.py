"""`python -m llmfs generate`: text streamed to stdout, or one JSON object with each token's probability and
alternatives; --chat FILE through the model's chat template; one adapter, refused when it belongs to another base.
In-process (`cli.main`) on tiny models, so each test takes a second or two; one subprocess run checks the real
entry point."""

from __future__ import annotations

import json

import pytest
import torch
from test_cli import last_json, run_cli

from llmfs import cli, templates

ARGS = ("--max-new-tokens", "8", "--temperature", "1", "--top-k", "0", "--top-p", "1", "--seed", "5")


def _main(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(["generate", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _json(capsys, *args) -> dict:
    code, out, err = _main(capsys, *args, "--json")
    assert code == cli.EXIT_OK, err
    return last_json(out)


def test_prompt_json_gives_text_tokens_and_probabilities(llmfs_home, tiny_hf_folder, capsys):
    from llmfs.generate import SampleConfig, prompt_ids, reply
    from llmfs.weights import load_pretrained

    out = _json(capsys, "--model", str(tiny_hf_folder), "--prompt", "The quick brown", *ARGS, "--top-n", "3")
    assert out["model"] == str(tiny_hf_folder) and out["adapter"] is None and out["seed"] == 5
    assert out["finish"] in ("end", "length", "stop_string") and len(out["tokens"]) <= 8
    assert out["text"] == "".join(t["text"] for t in out["tokens"])
    for t in out["tokens"]:
        assert set(t) == {"id", "text", "prob", "top"} and 0 < t["prob"] <= 1 and len(t["top"]) == 3
        assert [a["prob"] for a in t["top"]] == sorted((a["prob"] for a in t["top"]), reverse=True)
    # exactly what the library gives for the same model, prompt and seed
    model, tokenizer = load_pretrained(str(tiny_hf_folder))
    cfg = SampleConfig(max_new_tokens=8, temperature=1.0, top_k=0, top_p=1.0, seed=5)
    expected = reply(model, tokenizer, prompt="The quick brown", cfg=cfg, top_n=3)
    assert out["tokens"] == expected["tokens"]
    assert out["prompt_tokens"] == len(prompt_ids(tokenizer, prompt="The quick brown"))


def test_without_json_the_text_is_printed(llmfs_home, tiny_hf_folder, capsys):
    as_json = _json(capsys, "--model", str(tiny_hf_folder), "--prompt", "def add", *ARGS)
    code, out, err = _main(capsys, "--model", str(tiny_hf_folder), "--prompt", "def add", *ARGS)
    assert code == cli.EXIT_OK
    assert out == as_json["text"] + "\n" and "tokens, ended:" in err


def test_chat_file_goes_through_the_chat_template(llmfs_home, tiny_llama_folder, tmp_path, capsys):
    from transformers import AutoTokenizer
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a list?"}]
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(messages))
    out = _json(capsys, "--model", str(tiny_llama_folder), "--chat", str(chat), *ARGS)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_folder)
    rendered = templates.render(tokenizer, messages, add_generation_prompt=True)
    assert out["prompt_tokens"] == len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    # one example of chat training data ({"messages": [...]}) is read the same way
    chat.write_text(json.dumps({"messages": messages}))
    assert _json(capsys, "--model", str(tiny_llama_folder), "--chat", str(chat), *ARGS)["tokens"] == out["tokens"]
    # the same conversation as a plain prompt would be another prompt
    plain = _json(capsys, "--model", str(tiny_llama_folder), "--prompt", "What is a list?", *ARGS)
    assert plain["prompt_tokens"] < out["prompt_tokens"]


@pytest.mark.parametrize("content, problem", [
    ('[{"role": "user", "content": "hi"', "not valid JSON (line 1"),
    ('[{"role": "bot", "content": "hi"}]', "message 1 has role 'bot'"),
    ('{"prompt": "hi"}', "list of messages"),
    ('[]', "list of messages"),
])
def test_a_bad_chat_file_is_refused_naming_the_file_and_the_problem(llmfs_home, tmp_path, capsys, content, problem):
    chat = tmp_path / "chat.json"
    chat.write_text(content)
    code, out, err = _main(capsys, "--chat", str(chat), "--json")
    assert code == cli.EXIT_BAD_INPUT
    assert str(chat) in err and problem in err
    assert problem in last_json(out)["error"]


def test_a_missing_chat_file_and_bad_flags_are_refused(llmfs_home, tmp_path, capsys):
    code, _, err = _main(capsys, "--chat", str(tmp_path / "nope.json"))
    assert code == cli.EXIT_BAD_INPUT and "nope.json" in err and "no such file" in err
    code, out, err = _main(capsys, "--prompt", "x", "--temperature", "3", "--json")
    assert code == cli.EXIT_BAD_INPUT and "--temperature" in err and last_json(out)["field"] == "temperature"
    with pytest.raises(SystemExit):   # argparse: exactly one of --prompt / --chat
        cli.main(["generate", "--prompt", "x", "--chat", "y.json"])


def _make_adapter(base_folder, out_dir, base_model: str):
    """A LoRA adapter on our GPT with B drawn at random (as if trained), saved in PEFT's format."""
    from llmfs import lora
    from llmfs.weights import load_pretrained
    model, _ = load_pretrained(str(base_folder))
    lora.add_adapter(model, "x", rank=4, alpha=8, targets=("qkv",), seed=0)
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in lora.lora_layers(model).values():
            layer.lora_B["x"].weight.normal_(0.0, 0.5)
    return lora.save_adapter(model, out_dir, "x", alpha=8, base_model=base_model)


def test_an_adapter_changes_the_answer(llmfs_home, tiny_hf_folder, tmp_path, capsys):
    adapter = _make_adapter(tiny_hf_folder, tmp_path / "adapter", str(tiny_hf_folder))
    base = _json(capsys, "--model", str(tiny_hf_folder), "--prompt", "The quick brown", *ARGS)
    adapted = _json(capsys, "--model", str(tiny_hf_folder), "--adapter", str(adapter), "--prompt",
                    "The quick brown", *ARGS)
    assert adapted["adapter"] == str(adapter.resolve())
    assert [t["prob"] for t in adapted["tokens"]] != pytest.approx([t["prob"] for t in base["tokens"]], abs=1e-4)


def test_an_adapter_of_another_base_or_several_adapters_are_refused(llmfs_home, tiny_hf_folder, tiny_llama_folder,
                                                                    tmp_path, capsys):
    adapter = _make_adapter(tiny_hf_folder, tmp_path / "adapter", str(tiny_hf_folder))
    code, _, err = _main(capsys, "--model", str(tiny_llama_folder), "--adapter", str(adapter), "--prompt", "x")
    assert code == cli.EXIT_BAD_INPUT
    assert f"trained on {tiny_hf_folder}, not on {tiny_llama_folder}" in err
    code, _, err = _main(capsys, "--model", str(tiny_hf_folder), "--adapter", str(adapter), "--adapter",
                         str(adapter), "--prompt", "x")
    assert code == cli.EXIT_BAD_INPUT and "one adapter at a time" in err


@pytest.mark.slow
def test_the_entry_point_prints_one_json_line(llmfs_home, tiny_hf_folder):
    p = run_cli("generate", "--model", str(tiny_hf_folder), "--prompt", "def add", *ARGS, "--json", home=llmfs_home)
    assert p.returncode == 0, p.stderr
    out = last_json(p.stdout)
    assert len(p.stdout.strip().splitlines()) == 1 and out["text"] == "".join(t["text"] for t in out["tokens"])
