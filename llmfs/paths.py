"""Where llmfs keeps its data: one directory, `$LLMFS_HOME` (default `~/.cache/llmfs`)."""

from __future__ import annotations

import os
from pathlib import Path


def llmfs_home() -> Path:
    """The data directory: `$LLMFS_HOME`, else `~/.cache/llmfs`; created if missing."""
    home = Path(os.path.expanduser(os.environ.get("LLMFS_HOME") or "~/.cache/llmfs"))
    home.mkdir(parents=True, exist_ok=True)
    return home


def default_dir() -> Path:
    """The embedded default (corpus, tokenizer, llmfs-tiny): `<home>/default`."""
    return llmfs_home() / "default"


def runs_dir() -> Path:
    """The run registry: `<home>/runs`."""
    return llmfs_home() / "runs"
