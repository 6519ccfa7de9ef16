"""Where llmfs keeps its data: one directory, `$LLMFS_HOME` (default `~/.cache/llmfs`)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path


def llmfs_home() -> Path:
    """The data directory: `$LLMFS_HOME`, else `~/.cache/llmfs`; created if missing."""
    home = Path(os.path.expanduser(os.environ.get("LLMFS_HOME") or "~/.cache/llmfs"))
    home.mkdir(parents=True, exist_ok=True)
    return home


def default_dir() -> Path:
    """The embedded default (corpus, tokenizer, llmfs-tiny): `<home>/default`."""
    return llmfs_home() / "default"


def builtin_dir() -> Path:
    """Built-in models unpacked from Python packages (smollm2-135m) and GPT-2's tokenizer: `<home>/builtin`."""
    return llmfs_home() / "builtin"


def runs_dir() -> Path:
    """The run registry: `<home>/runs`."""
    return llmfs_home() / "runs"


def person_folder(person: str) -> str:
    """A folder name for a workshop participant: their name's letters, digits, `-` and `_` (spaces as `_`), then a
    short hash of the whole name, so that names differing only in other characters ("Ana M." / "Ana M") stay apart."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", person.strip()).strip("_")[:40] or "person"
    return f"{slug}-{hashlib.sha1(person.encode('utf-8', 'surrogatepass')).hexdigest()[:6]}"


def uploads_dir(person: str | None = None) -> Path:
    """`<home>/uploads`, or a participant's own folder under it (created by the first save): in a workshop two
    people uploading `notes.txt` must not overwrite each other's file."""
    root = llmfs_home() / "uploads"
    return root / person_folder(person) if person else root


def models_dir(person: str | None = None) -> Path:
    """Where saved models go: `<home>/models`, or in a workshop (`person` given) the participant's own folder under
    it, so two people saving "my-model" do not overwrite each other and each reads only their own."""
    root = llmfs_home() / "models"
    return root / person_folder(person) if person else root
