"""Models the whole server shares for generating (the Playground, L15): a base model loaded once per process, with
adapters attached to it when first asked for, and a bound on how many answers are written at once.

Switching adapters is a flag on the shared model, so attaching, switching and generating happen under the model's
lock. At most SLOTS answers are written at a time in the whole server (a semaphore): a page waiting for one says so
(`held`), and a click during the wait still reaches it (Streamlit stops a script at its next call).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from llmfs import adapters as lib

from . import adapter_view

SLOTS = max(1, int(os.environ.get("LLMFS_PLAYGROUND_SLOTS", "2")))   # answers written at once in this server
BASE = "base"            # the variant without an adapter; the others are adapter ids
NO_SLOT = (f"Waiting for a free slot: {SLOTS} answers are being written on this server right now, yours starts "
           "when one ends", "a free slot")
MODEL_BUSY = ("Waiting for another answer on this model to finish", "another answer on this model")


@dataclass
class Served:
    """A base model every session of this process shares, with the names of the adapters attached to it so far
    (`_name_on_model`). `lock`: held to attach, switch and generate; a set's membership is read without it."""
    adapted: object                      # llmfs.adapting.AdaptedModel
    lock: threading.Lock
    attached: set = field(default_factory=set)


@st.cache_resource(max_entries=3, show_spinner="Loading the model ...")
def _served(base: str, folder: str, stamp: float) -> Served:
    """Keyed by the folder and its config's time too: a model saved again under the same name loads afresh."""
    import torch

    from llmfs.adapting import attach
    return Served(attach(base, {}, device="cuda" if torch.cuda.is_available() else "cpu"), threading.Lock())


@st.cache_resource(show_spinner=False)
def slots() -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(SLOTS)


@dataclass
class Engine:
    """What one answer runs on: the model, its lock, and per variant what `activate` takes (None: the base)."""
    adapted: object
    lock: threading.Lock
    active: dict


@contextlib.contextmanager
def held(lock, box, waiting: str, what: str):
    """Hold `lock` (a lock or a semaphore), saying in `box` while we wait for it and afterwards how long we did;
    every half second a chance for Streamlit to stop the wait (a click reruns the script there)."""
    start = time.monotonic()
    waited = False
    while not lock.acquire(timeout=0.5):
        waited = True
        box.info(f"{waiting} ({time.monotonic() - start:.0f} s so far) ...", icon=":material/hourglass_top:")
    if waited:
        box.caption(f"Waited {time.monotonic() - start:.0f} s for {what}.")
    try:
        yield
    finally:
        lock.release()


def _stamp(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _weights_time(a: lib.AdapterInfo) -> float:
    """When the adapter's weights were written: a changed adapter is attached afresh."""
    return _stamp(a.path / lib.WEIGHTS_FILE)


def _name_on_model(a: lib.AdapterInfo) -> str:
    """The adapter's name on the shared model: from its id and weights' time (a module name holds no dot)."""
    return "a" + hashlib.sha1(f"{a.id}@{_weights_time(a)}".encode()).hexdigest()[:16]


def served(base: str, folder: Path) -> Served:
    """The shared model for `base`, whose files are in `folder` (`sources.resolve_model_dir`)."""
    return _served(base, str(folder), _stamp(folder / "config.json"))


def engine_for(served: Served, base: str, picked: list[lib.AdapterInfo], box) -> tuple[Engine, dict]:
    """The engine for the base and the picked adapters, attaching those not yet on the shared model; and
    {adapter id: why it could not be used}."""
    from llmfs.sources import SourceError
    if picked and hasattr(served.adapted.model, "hf"):   # a transformers model: PEFT attaches at load
        try:
            loaded = adapter_view.loaded(base, tuple((a.id, str(a.path), _weights_time(a)) for a in picked))
        except (SourceError, OSError, ValueError, RuntimeError) as e:
            return Engine(served.adapted, served.lock, {BASE: None}), {a.id: str(e) for a in picked}
        return Engine(loaded.adapted, loaded.lock, {BASE: None, **{a.id: a.id for a in picked}}), {}
    from llmfs.lora import load_adapter_into
    active, problems = {BASE: None}, {}
    for a in picked:
        name = _name_on_model(a)
        if name not in served.attached:
            with held(served.lock, box, *MODEL_BUSY):
                try:
                    if name not in served.attached:   # another session may have attached it while we waited
                        load_adapter_into(served.adapted.model, a.path, name=name, activate=False)
                        served.attached.add(name)
                except (SourceError, OSError, ValueError, RuntimeError, KeyError) as e:
                    problems[a.id] = str(e)
                    continue
        active[a.id] = name
    return Engine(served.adapted, served.lock, active), problems
