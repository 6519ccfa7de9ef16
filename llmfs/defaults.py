"""Where the embedded default lives (corpus, tokenizer, llmfs-tiny under `$LLMFS_HOME/default/`) and whether it is
built. Finding it never builds it: the entry points (the CLI, the app, each job) call `llmfs.bootstrap.
ensure_default` first, so resolving the name `llmfs-tiny` or `llmfs-corpus` in a library function never starts a
pretraining."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import SourceError
from .fsutil import read_json
from .paths import default_dir

VERSION = 1


@dataclass(frozen=True)
class DefaultAssets:
    root: Path

    @property
    def corpus_train(self) -> Path:
        return self.root / "corpus"

    @property
    def corpus_heldout(self) -> Path:
        return self.root / "corpus" / "heldout"

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    @property
    def model_dir(self) -> Path:
        return self.root / "llmfs-tiny"

    def ready(self) -> bool:
        info = read_json(self.root / "READY.json")
        return bool(info) and info.get("version") == VERSION and (self.model_dir / "config.json").exists()

    def info(self) -> dict:
        return {**(read_json(self.root / "READY.json") or {}), "root": str(self.root),
                "model_dir": str(self.model_dir), "corpus_dir": str(self.corpus_train)}


def default_assets() -> DefaultAssets:
    return DefaultAssets(default_dir())


def require_default() -> DefaultAssets:
    """The built embedded default.

    Raises:
        SourceError: not built yet, with the command that builds it.
    """
    assets = default_assets()
    if not assets.ready():
        raise SourceError("The built-in llmfs-tiny and its corpus are not built on this machine yet: run "
                          "`python -m llmfs bootstrap` (about 3 minutes, once; `make run` does it too).")
    return assets
