"""What a person can pick by name instead of typing a server path: models (the built-in one, the models of finished
training runs, the ones they saved) and training data (the shards of finished L13 pipeline runs); and how models and
sources are called in tables and charts. Read from disk afresh each time; in a workshop, only what this person may
use (`app.identity.may_see_texts`)."""

from __future__ import annotations

from pathlib import Path

from llmfs.config import DEFAULT_DATA, DEFAULT_MODEL, PYTHON_QA
from llmfs.data.readers import HF_PREFIX
from llmfs.paths import models_dir, runs_dir
from llmfs.runs import SUCCEEDED, Run
from llmfs.sources import BUILTIN_MODELS, looks_like_path

from . import identity, state


def model_choice(source: str) -> tuple[str, str]:
    """How a form's model picker holds `source`: (its choice: a built-in name, "hub" or "folder"; the text in the
    box under it). The picker draws a start value this way, and a loaded settings file is put into it this way."""
    source = str(source)
    if source in BUILTIN_MODELS:
        return source, ""
    return ("folder", source) if looks_like_path(source) else ("hub", source)


def data_choice(spec: str) -> tuple[str, str]:
    """How a form's data picker holds `spec`: (its choice: a built-in name, "hubdata" or "path"; the text in the
    box under it, a hub dataset without its hf: prefix)."""
    spec = str(spec)
    if spec in (DEFAULT_DATA, PYTHON_QA):
        return spec, ""
    if spec.startswith(HF_PREFIX):
        return "hubdata", spec.removeprefix(HF_PREFIX)
    return "path", spec


def trained_models() -> list[dict]:
    """The `model/` folders of succeeded training runs, newest first: [{"path", "run_id", "base", "user",
    "label"}]."""
    found = []
    for run in state.jobs().list_runs():
        if run.kind != "train" or run.state != SUCCEEDED or not (run.path / "model" / "config.json").is_file():
            continue
        base, status = run.config().get("model") or DEFAULT_MODEL, run.status()
        found.append({"path": str(run.path / "model"), "run_id": run.run_id, "base": base, "user": status.get("user"),
                      "label": f"fine-tuned {short_id(run.run_id)} (from {model_name(base)}, "
                               f"{state.owner_label(status.get('owner'))})"})
    return found


def saved_models() -> list[str]:
    """The model folders this person saved (L12's bigger vocabulary, L15's merged adapters), by name: in a workshop
    their own folder's, else `$LLMFS_HOME/models`'s."""
    root = models_dir(identity.workshop_user())
    try:
        return sorted(str(p) for p in root.iterdir() if (p / "config.json").is_file())
    except OSError:  # nothing saved yet
        return []


def short_id(run_id: str) -> str:
    return run_id.rsplit("-", 1)[-1]


def model_name(source: str) -> str:
    """How a model is called in tables and charts: a built-in name (llmfs-tiny, smollm2-135m), a hub id,
    `fine-tuned <id>` for a training run's model folder, else the folder's name."""
    if source == DEFAULT_MODEL or source in BUILTIN_MODELS:
        return source
    path = Path(source).expanduser()
    if path.name == "model" and path.parent.parent.resolve() == runs_dir().resolve():
        return f"fine-tuned {short_id(path.parent.name)}"
    if not (looks_like_path(source) or path.is_dir()):
        return source   # a hub id
    return path.name or source


# -- training data --------------------------------------------------------------------------------------------------
def source_label(spec: str) -> str:
    """A short name for a source in charts and captions: the file or folder name, or the hub dataset."""
    if spec == DEFAULT_DATA or spec.startswith(HF_PREFIX):
        return spec
    return Path(spec.rstrip("/")).name or spec


def shards_folder(run: Run, result: dict) -> Path:
    shards = result.get("shards") or []
    return Path(shards[0]).parent if shards else run.path / "shards"


def pipeline_outputs() -> list[dict]:
    """Shard folders of the succeeded pipeline runs that wrote some, newest first: [{"run_id", "path",
    "documents", "shards", "label"}], for a training data picker. In a workshop, only the runs whose data this
    person may use (their own, or everyone's with share_runs = "all")."""
    outputs = []
    for run in state.jobs().list_runs():
        if run.kind != "pipeline" or run.state != SUCCEEDED:
            continue
        status = run.status()
        if not identity.may_see_texts(status.get("user")):
            continue
        result = status.get("result") or {}
        folder = shards_folder(run, result)
        if result.get("shards_written") and folder.is_dir():
            sources = ", ".join(source_label(s) for s in run.config().get("inputs", []))
            outputs.append({"run_id": run.run_id, "path": str(folder), "documents": result.get("documents_out", 0),
                            "shards": result["shards_written"],
                            "label": f"{run.run_id} · {result.get('documents_out', 0):,} documents from {sources}"})
    return outputs
