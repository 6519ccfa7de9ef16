"""Model sources: the built-in models (`llmfs-tiny`, the embedded default; `smollm2-135m`, unpacked from a Python
package), a local Hugging Face folder, or a hub id.

A hub id is tried only when its files are already in the local Hugging Face cache or the hub answers within a
few seconds; otherwise the user gets a message naming the cause at once, instead of a hang.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .config import DEFAULT_MODEL
from .defaults import require_default
from .errors import SourceError
from .hub import hub_unreachable_reason
from .packaged import PACKAGED, ensure_converted, folder_of, is_converted

# The names every model picker offers first: they work offline once `make install` has run.
BUILTIN_MODELS = (DEFAULT_MODEL, *PACKAGED)

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
HUB_FILES = ["config.json", "*.safetensors", "*.safetensors.index.json", "tokenizer*", "vocab.json", "merges.txt",
             "special_tokens_map.json", "generation_config.json"]


def is_default(source: str) -> bool:
    return source.strip() == DEFAULT_MODEL


def is_builtin(source: str) -> bool:
    return source.strip() in BUILTIN_MODELS


def builtin_folder(source: str) -> Path | None:
    """The folder of a built-in name when it is ready on this machine, without building or unpacking anything;
    None for other sources and for a built-in not ready yet."""
    source = source.strip()
    if is_default(source):
        from .defaults import default_assets
        assets = default_assets()
        return assets.model_dir if assets.ready() else None
    if source in PACKAGED:
        folder = folder_of(PACKAGED[source])
        return folder if is_converted(folder) else None
    return None


def resolve_model_dir(source: str) -> Path:
    """The local folder holding `source`'s config.json, weights and tokenizer (downloading a hub id's files; the
    built-in llmfs-tiny must be built already: `llmfs.bootstrap.ensure_default`, which entry points call; a
    packaged model is unpacked on its first use, about a minute, once).

    Raises:
        SourceError: no such folder, an invalid hub id, the hub out of reach, llmfs-tiny not built, a packaged
            model's package not installed.
    """
    source = source.strip()
    if is_default(source):
        return require_default().model_dir
    if source in PACKAGED:
        return ensure_converted(PACKAGED[source])
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
