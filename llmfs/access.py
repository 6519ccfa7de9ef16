"""Who may read what: the sources a person may name (training data, benchmark questions, a model, an adapter), and
how server paths are shown to people who should not see them.

Two rules (README, "Workshop mode: what a participant can and cannot do"):

1. **Nothing a person types is ever executed**, in any mode. `llmfs.data.readers` opens files itself and URLs through
   fsspec, and refuses `pipe:` and every scheme outside `readers.SCHEMES`, on each location after braces and globs are
   expanded (`readers.check_location`). That holds for every entry point (pages, CLI, job payloads) because every
   reader goes through it.
2. **Workshop mode** (a limits file or an instructor password: many people, one server): a participant reads only the
   built-ins, their own uploads, their own runs' outputs (models, shards, adapters), the folders the instructor shares
   (`shared_paths`), hub ids and hub datasets (unless `allow_hub = false`), and URLs only with `allow_urls = true`,
   never on loopback, link-local or private addresses. Paths are resolved first (`~`, `..`, symlinks, braces, globs)
   and every file a source would read is checked, so a symlink planted in an upload folder leads nowhere. `Access`
   holds one participant's view; `llmfs.workshop` applies it to every job submitted from the app.

A single person's lab (no limits file, no password) keeps free paths: rule 1 only.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib.parse import urlparse

from .adapters import list_adapters
from .config import DEFAULT_DATA, PYTHON_QA
from .data.readers import (
    HELDOUT,
    HF_LOCAL_BUILDERS,
    HF_PREFIX,
    DataError,
    check_location,
    is_public_address,
    parse_hf,
    resolve_inputs,
    scheme_of,
)
from .errors import AccessError
from .paths import default_dir, llmfs_home, models_dir, runs_dir, uploads_dir
from .runs import list_runs
from .sources import BUILTIN_MODELS, HUB_ID, looks_like_path

# Benchmarks whose default questions come from the hub (the others are built in); `wikitext` is a hub dataset too.
HUB_BENCHMARKS = ("hellaswag", "mmlu", "truthfulqa_mc1", "truthfulqa_mc2")
_WILDCARDS = "*?[{"


@dataclass(frozen=True)
class Access:
    """What one participant may read. `roots`: resolved folders (everything under them is readable)."""

    user: str | None
    roots: tuple[Path, ...]
    allow_hub: bool = True
    allow_urls: bool = False

    # -- one kind of source each ---------------------------------------------------------------------------------
    def check_data(self, spec: str) -> None:
        """Training text or pipeline input: llmfs-corpus, hf:NAME, a file / folder / glob / shard pattern, a URL.

        Raises:
            AccessError: naming what is refused and what may be used instead.
            DataError: a location that would be executed or has an unknown scheme (rule 1).
        """
        spec = str(spec).strip()
        if spec in (DEFAULT_DATA, DEFAULT_DATA + HELDOUT, PYTHON_QA):
            return
        if spec.lower().startswith(HF_PREFIX):
            return self._check_hf(spec)
        locations = _expand(spec)
        for location in locations:
            check_location(location)
            if scheme_of(location):
                self.check_url(location)
        if all(scheme_of(loc) for loc in locations):
            return
        for location in locations:  # the pattern's own folder first: a refusal never says what exists outside
            self.check_path(_fixed_part(location))
        try:
            inputs = resolve_inputs(spec)
        except DataError:
            return  # nothing there: the reader says so in its own words, and nothing outside was named
        for inp in inputs:
            if not scheme_of(inp.location):
                self.check_path(inp.location)

    def check_model(self, source: str) -> None:
        """A model: the built-in, a hub id (unless the hub is off), or a folder this participant may read (each of
        its files too)."""
        source = str(source).strip()
        if source in BUILTIN_MODELS:
            return
        check_location(source)
        if scheme_of(source):
            raise AccessError(f"{source!r}: a model is a built-in one (llmfs-tiny, smollm2-135m), one of your runs' "
                              "models, or a hub id like gpt2; "
                              "not an address.")
        path = Path(source).expanduser()
        if path.exists() or looks_like_path(source) or not HUB_ID.match(source):
            self._check_folder(source)
            return
        self.check_hub(source)

    def check_adapter(self, path: str) -> None:
        """A LoRA adapter folder: one of this participant's (a run's adapter/, or one they uploaded)."""
        if str(path).strip():
            check_location(str(path).strip())
            self._check_folder(str(path).strip())

    def check_benchmark(self, task: str, data: str) -> None:
        """Benchmark questions: the built-in ones, the hub's (unless off), or a file this participant may read."""
        data = str(data).strip()
        if not data:
            if task in HUB_BENCHMARKS:
                self.check_hub(task)
            return
        if data == "wikitext":
            return self.check_hub("wikitext")
        check_location(data)
        if scheme_of(data):
            raise AccessError(f"{data!r}: give benchmark questions as an upload (or a file the instructor shared), "
                              "not an address.")
        self.check_path(data)

    # -- the pieces ---------------------------------------------------------------------------------------------
    def check_hub(self, name: str) -> None:
        if not self.allow_hub:
            raise AccessError(f"{name!r} would come from the Hugging Face hub, which this workshop has switched off "
                              "(allow_hub = false). Use llmfs-tiny, llmfs-corpus, your uploads or your runs.")

    def check_url(self, url: str) -> None:
        """An http(s) / s3 / gs address: only with `allow_urls`, and an http(s) host only on public addresses."""
        if not self.allow_urls:
            raise AccessError(f"Addresses ({_clip(url)}) are switched off in this workshop. Upload the file instead, "
                              "or ask the instructor to share the data in a folder.")
        if scheme_of(url) in ("http", "https"):
            public_host_or_raise(urlparse(url).hostname or "")

    def check_path(self, path: str | os.PathLike) -> Path:
        """`path` resolved (`~`, `..`, symlinks); refused unless under one of `roots`. Returns the resolved path."""
        resolved = _resolve(path)
        if not any(resolved == root or resolved.is_relative_to(root) for root in self.roots):
            raise AccessError(f"{_clip(str(path))} is not yours to read in this workshop. You can use the built-in "
                              "model and corpus, your own uploads, the outputs of your own runs"
                              + (", the folders the instructor shared" if self._shared else "")
                              + (", and models or datasets from the Hugging Face hub" if self.allow_hub else "")
                              + ".")
        return resolved

    def _check_folder(self, source: str) -> None:
        folder = self.check_path(source)
        if folder.is_dir():
            for entry in folder.iterdir():  # a symlink inside a readable folder must not lead out of it
                self.check_path(entry)

    def _check_hf(self, spec: str) -> None:
        name, config, _ = parse_hf(spec)
        if name in HF_LOCAL_BUILDERS and config:  # local files (or an address) read by `datasets`
            self.check_data(config)
            return
        self.check_hub(name or spec)

    @property
    def _shared(self) -> bool:
        home = _resolve(llmfs_home())
        return any(not root.is_relative_to(home) for root in self.roots)


def workshop_access(user: str | None, *, shared_paths: Iterable[str] = (), share_runs: str = "figures",
                    allow_hub: bool = True, allow_urls: bool = False) -> Access:
    """One participant's `Access`: the built-ins, their uploads, their runs, their adapters and models, the shared
    folders; with `share_runs="all"` everyone's runs, adapters and models as well (the class shares its work)."""
    everyone = share_runs == "all"
    roots = [default_dir()]
    if user:
        roots += [uploads_dir(user), models_dir(user)]
    if everyone:
        roots.append(llmfs_home() / "models")
    for run in list_runs(runs_dir()):
        if everyone or (user and run.status().get("user") == user):
            roots.append(run.path)
    for adapter in list_adapters():
        if everyone or (user and adapter.origin == "library" and getattr(adapter, "user", None) == user):
            roots.append(adapter.path)
    roots += [Path(p) for p in shared_paths]
    return Access(user, tuple(dict.fromkeys(_resolve(r) for r in roots)), allow_hub, allow_urls)


# -- addresses --------------------------------------------------------------------------------------------------
def public_host_or_raise(host: str) -> None:
    """Refuse a host that is, or resolves to, a loopback, private, link-local, reserved or multicast address (the
    server must not become a way into its own network)."""
    if not host:
        raise AccessError("That address names no host.")
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as e:
        raise AccessError(f"The host {host} does not resolve ({e}).") from e
    for info in infos:
        if not is_public_address(str(info[4][0])):
            raise AccessError(f"{host} is a local or private-network address ({info[4][0]}): this server does not "
                              "read from its own network. Upload the file instead.")


# -- showing paths ----------------------------------------------------------------------------------------------
_ABS_PATH = re.compile(r"(?<![\w.:/~-])(?:~|/)[\w.@+~-]*(?:/[\w.@+~-]+)*/?")


def hide_paths(text: str) -> str:
    """`text` with server paths replaced by what a participant may know: a file under an uploads or models folder by
    its name, a run's file as `run <id>/...`, the built-ins as `built-in/...`, any other absolute path by its last
    part (`.../name`). For errors and logs shown to workshop participants."""
    home = str(_resolve(llmfs_home()))
    raw_home = str(llmfs_home())

    def shown(match: re.Match) -> str:
        path = match.group(0)
        for base in dict.fromkeys((home, raw_home)):
            if path == base or path.startswith(base + "/"):
                rest = path[len(base):].lstrip("/").split("/")
                if rest[0] in ("uploads", "models") and len(rest) > 2:
                    return "/".join(rest[2:])
                if rest[0] == "runs" and len(rest) > 1:
                    return "run " + "/".join(rest[1:])
                if rest[0] == "default":
                    return "built-in/" + "/".join(rest[1:])
                return "/".join(rest) or "(lab folder)"
        name = path.rstrip("/").rsplit("/", 1)[-1]
        return f".../{name}" if name else path
    return _ABS_PATH.sub(shown, str(text))


# -- helpers ----------------------------------------------------------------------------------------------------
def _resolve(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _expand(spec: str) -> list[str]:
    """A spec's locations after brace expansion (globs stay patterns: `_fixed_part` checks their folder)."""
    if "{" in spec and "}" in spec:
        from braceexpand import braceexpand  # a webdataset dependency
        return list(braceexpand(spec))
    return [spec]


def _fixed_part(location: str) -> str:
    """The part of a path before its first wildcard (the folder a glob searches)."""
    if not any(c in location for c in _WILDCARDS):
        return location
    head = location[:min(location.index(c) for c in _WILDCARDS if c in location)]
    return head if head.endswith("/") else os.path.dirname(head) or "."


def _clip(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"
