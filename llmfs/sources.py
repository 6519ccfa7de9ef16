"""Model sources: `llmfs-tiny` (the embedded default), a local Hugging Face folder, or a hub id.

A hub id is tried only when its files are already in the local Hugging Face cache or the hub answers within a
few seconds; otherwise the user gets a message naming the cause at once, instead of a hang.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from .config import DEFAULT_MODEL

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
HUB_FILES = ["config.json", "*.safetensors", "*.safetensors.index.json", "tokenizer*", "vocab.json", "merges.txt",
             "special_tokens_map.json", "generation_config.json"]
Progress = Callable[[str, int, int], None]


class SourceError(ValueError):
    """A model or data source that cannot be used; the message says why and what to do instead."""


def is_default(source: str) -> bool:
    return source.strip() == DEFAULT_MODEL


def resolve_model_dir(source: str, progress: Progress | None = None) -> Path:
    """The local folder holding `source`'s config.json, weights and tokenizer (building or downloading it)."""
    source = source.strip()
    if is_default(source):
        from .bootstrap import ensure_default
        return ensure_default(progress=progress).model_dir
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").exists():
            raise SourceError(f"{source} is not a model folder: it needs a config.json beside the weights "
                              "(a folder written by save_pretrained, or a run's model/ folder).")
        return path
    if looks_like_path(source):
        raise SourceError(f"No model folder at {source}. Check the path, or use llmfs-tiny or a hub id like gpt2.")
    if not HUB_ID.match(source):
        raise SourceError(f"{source!r} is neither a folder nor a valid hub id (like gpt2 or openai-community/gpt2).")
    return download_from_hub(source)


def looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or os.sep in source and source.count("/") > 1


def download_from_hub(repo_id: str, timeout: float = 5.0) -> Path:
    """Files of `repo_id` from the local HF cache, else from the hub if it answers; never hangs offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:  # already downloaded once: no network needed
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        pass
    reason = hub_unreachable_reason(timeout)
    if reason:
        raise SourceError(f"Cannot fetch {repo_id!r} from the Hugging Face hub: {reason}. Use llmfs-tiny (built in, "
                          "works offline) or a local model folder; or download the model on a machine with a "
                          "network and point to its folder.")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES, etag_timeout=timeout))
    except Exception as e:  # RepositoryNotFoundError, GatedRepoError, HTTP errors ...
        raise SourceError(f"Could not download {repo_id!r} from the hub: {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]}. Check the id (e.g. gpt2, distilgpt2).") from e


def check_hub_source(repo_id: str) -> None:
    """Before queueing a job on a hub id: refuse at once when it is neither cached nor reachable."""
    from huggingface_hub import snapshot_download
    if not HUB_ID.match(repo_id):
        raise SourceError(f"{repo_id!r} is neither a folder on this machine nor a valid hub id (like gpt2).")
    try:
        snapshot_download(repo_id, allow_patterns=HUB_FILES, local_files_only=True)
        return
    except Exception:
        pass
    reason = hub_unreachable_reason()
    if reason:
        raise SourceError(f"Cannot fetch {repo_id!r} from the Hugging Face hub: {reason}. Use llmfs-tiny (built in, "
                          "works offline) or a local model folder.")


def hub_unreachable_reason(timeout: float = 5.0) -> str | None:
    """None if the hub's host accepts a TCP connection within `timeout`; else a short reason."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host, port = parsed.hostname or "huggingface.co", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror:
        return f"the host {host} does not resolve (no network?)"
    except OSError as e:
        return f"{host}:{port} did not answer ({type(e).__name__})"


def peek_model_config(source: str):
    """`source`'s GPTConfig from its config.json alone, without loading weights or building anything; None when
    that cannot be known cheaply (a hub id not downloaded yet, or not a GPT-2 folder)."""
    from .model import GPTConfig
    from .weights import read_hf_config
    if is_default(source):
        from .bootstrap import TINY_CONFIG
        return TINY_CONFIG
    path = Path(source).expanduser()
    if not (path / "config.json").is_file():
        return None
    try:
        return GPTConfig.from_hf(read_hf_config(path))
    except (ValueError, TypeError):
        return None


def load_model(source: str, init: str = "pretrained", seed: int = 0, progress: Progress | None = None):
    """(GPT, tokenizer) for `source`; `init="random"` keeps the architecture and tokenizer, re-draws the weights."""
    import torch

    from .model import GPT
    from .weights import load_pretrained

    model, tokenizer = load_pretrained(source, progress=progress)
    if init == "random":
        torch.manual_seed(seed)
        model = GPT(model.config)
    return model, tokenizer
