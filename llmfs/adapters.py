"""The adapter library (L15): LoRA adapters on disk, in Hugging Face PEFT's format, listed, renamed, deleted,
exported as a zip and imported from one.

An adapter is a folder holding `adapter_config.json` and `adapter_model.safetensors` (what
`peft.PeftModel.save_pretrained` writes, often with a README.md). Adapters live in two places:

    <home>/adapters/<slug>/          uploaded, imported or copied ones          id "lib:<slug>"
    <home>/runs/<run_id>/adapter/    written by LoRA training runs              id "run:<run_id>"

The display name (renamable), the creation time, for an upload in a workshop who added it, and for an adapter a run
trained what it was trained on (`record_training`: base model, data, steps, rank, alpha, layers, 4-bit, losses, run
id; the base's local folder too) sit in `llmfs_adapter.json` inside the adapter folder, so a rename never moves a
folder and a run's adapter keeps its place in the run (its owner is the run's `user`). Until it is renamed, an
adapter a run trained is called by what it is ("rank 8 on qkv · my_notes.txt · 200 steps"), not by its run id.

`adapter_config.json` names its base portably (`portable_base`): `llmfs-tiny` (which llmfs resolves on any machine)
or the hub id, never a folder of this server, so a downloaded adapter loads elsewhere. The disk is the only truth:
nothing is cached, so the CLI, a second browser tab and a restarted server all see the same library.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import DEFAULT_DATA, DEFAULT_MODEL
from .defaults import default_assets
from .errors import AdapterError
from .fsutil import atomic_write_bytes, atomic_write_json, make_temp_dir, read_json
from .paths import llmfs_home, runs_dir
from .sources import looks_like_path
from .targets import FAMILIES

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
CONFIG_FILE, WEIGHTS_FILE = ADAPTER_FILES
README_FILE = "README.md"
META_FILE = "llmfs_adapter.json"
# What an adapter zip may hold: the adapter itself and PEFT's model card, nothing that could be executed or confuse
# a loader later (no pickles, no code, no nested folders).
ALLOWED_FILES = (*ADAPTER_FILES, README_FILE)
# Cap on both the uploaded bytes and the total uncompressed size: a LoRA adapter of a small model is megabytes, so
# this only stops mistakes (a whole model zipped) and zip bombs.
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
MAX_NAME_CHARS = 80

LIBRARY, RUN, FOLDER = "library", "run", "folder"
_LIB_PREFIX, _RUN_PREFIX = "lib:", "run:"
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class AdapterInfo:
    """One adapter as found on disk (read fresh each time; nothing here is cached).

    `origin` is "library" or "run"; an adapter folder elsewhere (read by path, e.g. before importing it) has origin
    "folder" and its resolved path as id. `rank`, `alpha` and `targets` are PEFT's `r`, `lora_alpha` and
    `target_modules`; `run_id`/`run_state` are set for run adapters only. `user`: whose it is (the run's
    participant, or who imported it); None when nobody was named (a single person's lab, the command line).
    """
    id: str
    name: str
    path: Path
    origin: str
    base_model: str
    rank: int
    alpha: float
    targets: tuple[str, ...]
    size_bytes: int
    created: float
    run_id: str | None = None
    run_state: str | None = None
    user: str | None = None
    training: dict | None = None
    """What a run trained it on (`record_training`'s fields: base, base_path, data, data_label, steps, rank, alpha,
    targets, quantize, precision, final_loss, eval_loss, run_id); None for an uploaded adapter nobody described."""
    renamed: bool = False
    """True once someone gave it a name; False while it carries its default (descriptive) name."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the path as a string, the targets as a list."""
        d = asdict(self)
        d["path"] = str(self.path)
        d["targets"] = list(self.targets)
        return d


# -- reading ------------------------------------------------------------------------------------------------------
def library_dir() -> Path:
    """`<home>/adapters` (not created here: only a write creates it)."""
    return llmfs_home() / "adapters"


def is_adapter_dir(path: str | os.PathLike) -> bool:
    """Does `path` look like a PEFT adapter folder (both files present)? Cheap: the contents are not checked."""
    folder = Path(path)
    return folder.is_dir() and all((folder / f).is_file() for f in ADAPTER_FILES)


def read_adapter(path: str | os.PathLike, id: str | None = None) -> AdapterInfo:
    """The adapter at `path`. Its id and origin follow from where it lives unless `id` is given.

    Raises:
        AdapterError: not an adapter folder, unreadable config, or not a LoRA adapter.
    """
    folder = Path(path).expanduser()
    if not is_adapter_dir(folder):
        raise AdapterError(f"{folder} is not an adapter folder: it needs {' and '.join(ADAPTER_FILES)} "
                           "(what PEFT's save_pretrained writes). Pick the folder that holds both files.")
    config = _read_config(folder / CONFIG_FILE)
    origin, found_id, run_id = _locate(folder)
    if id is not None:
        found_id = id
    meta = _read_meta(folder)
    run_state = None
    run_created = None
    user = meta.get("user") if origin == LIBRARY else None
    training = meta.get("training") if isinstance(meta.get("training"), dict) else None
    if origin == RUN:
        run_dir = folder.parent
        status = read_json(run_dir / "status.json", default={}) or {}
        run_state, user = status.get("state"), status.get("user")
        record = read_json(run_dir / "config.json", default={}) or {}
        run_created = record.get("created")
        # an adapter saved before runs recorded what they trained on: read it off the run itself
        training = training or _training_of_run(run_id, record.get("config"), status.get("result"))
    targets = _targets(config.get("target_modules"))
    if training is not None:
        default_name = describe(training)
    else:
        default_name = run_id if origin == RUN else folder.name
    created = _as_float(meta.get("created")) or _as_float(run_created) or _mtime(folder / CONFIG_FILE)
    return AdapterInfo(
        id=found_id, name=str(meta.get("name") or default_name), path=folder, origin=origin,
        base_model=portable_base(str(config.get("base_model_name_or_path") or "")), rank=int(config["r"]),
        alpha=float(config.get("lora_alpha") or config["r"]), targets=targets,
        size_bytes=_folder_size(folder), created=created, run_id=run_id, run_state=run_state,
        user=str(user) if user else None, training=training, renamed=bool(meta.get("name")))


def list_adapters() -> list[AdapterInfo]:
    """Every adapter in the library and in runs, newest first. A broken folder is skipped, never raised: one bad
    upload or a run that crashed while saving must not hide the rest."""
    found: list[AdapterInfo] = []
    for folder in _library_folders():
        info = _try_read(folder)
        if info is not None:
            found.append(info)
    root = runs_dir()
    if root.is_dir():
        for run in root.iterdir():
            if run.is_dir() and not run.name.startswith("."):
                info = _try_read(run / "adapter")
                if info is not None:
                    found.append(info)
    return sorted(found, key=lambda a: (a.created, a.id), reverse=True)


def get_adapter(id_or_path: str | os.PathLike | AdapterInfo) -> AdapterInfo:
    """The adapter with this id ("lib:<slug>", "run:<run_id>") or at this folder path.

    Raises:
        AdapterError: no such adapter (or the folder there is not a valid one).
    """
    if isinstance(id_or_path, AdapterInfo):
        id_or_path = id_or_path.id
    key = os.fspath(id_or_path)
    if key.startswith(_LIB_PREFIX):
        folder = library_dir() / _id_part(key, _LIB_PREFIX)
        if not is_adapter_dir(folder):
            raise AdapterError(f"No adapter {key!r} in the library; it may have been deleted. Refresh the list.")
        return read_adapter(folder, id=key)
    if key.startswith(_RUN_PREFIX):
        folder = runs_dir() / _id_part(key, _RUN_PREFIX) / "adapter"
        if not is_adapter_dir(folder):
            raise AdapterError(f"No adapter for run {key[len(_RUN_PREFIX):]!r}: the run does not exist, has not "
                               "saved its adapter yet, or its adapter was deleted.")
        return read_adapter(folder)
    folder = Path(key).expanduser()
    if not is_adapter_dir(folder):
        raise AdapterError(f"Unknown adapter {key!r}: give an id from the adapter list (lib:... or run:...) or the "
                           f"path of a folder holding {' and '.join(ADAPTER_FILES)}.")
    return read_adapter(folder)


# -- what an adapter was trained on ------------------------------------------------------------------------------
def portable_base(base: str) -> str:
    """The base model's name as another machine can resolve it: `llmfs-tiny` or `smollm2-135m` for a built-in
    model's folder on this machine (llmfs resolves the names anywhere, `llmfs.sources`), else `base` as it is (a
    hub id, or a folder that has no portable name)."""
    from .packaged import PACKAGED, folder_of
    base = base.strip()
    if not base or base == DEFAULT_MODEL or base in PACKAGED:
        return base
    try:
        where = Path(base).expanduser().resolve()
        if where == default_assets().model_dir.resolve():
            return DEFAULT_MODEL
        for name, spec in PACKAGED.items():
            if where == folder_of(spec).resolve():
                return name
    except (OSError, ValueError):
        pass
    return base


def fits_base(adapter_base: str, base: str) -> bool:
    """Was an adapter whose config names `adapter_base` trained on the model `base`? Both compared by their portable
    names (a built-in model's folder is its name), and two folders by where they resolve to."""
    ours, theirs = portable_base(base), portable_base(adapter_base)
    if ours == theirs:
        return True
    if looks_like_path(theirs) and looks_like_path(ours):
        try:
            return Path(theirs).expanduser().resolve() == Path(ours).expanduser().resolve()
        except (OSError, ValueError):
            return False
    return False


def data_label(data: str) -> str:
    """A short name for training data: llmfs-corpus, a hub dataset (hf:...), "shards of run 3f9a2c" for a run's
    output (an L13 pipeline's), else the file or folder's name."""
    data = str(data or "").strip()
    if not data or data == DEFAULT_DATA or data.startswith("hf:"):
        return data
    path = Path(data.rstrip("/"))
    try:
        if path.parent.parent.resolve() == runs_dir().resolve():   # a run's output, e.g. an L13 pipeline's shards
            return f"{path.name} of run {path.parent.name.rsplit('-', 1)[-1]}"
    except (OSError, ValueError):
        pass
    return path.name or data


def layer_words(targets: Any) -> str:
    """GPT-2's and Llama's module names as the lesson calls the layers ("qkv", "mlp_in"), comma-separated; other
    names as they are."""
    names = targets.split(",") if isinstance(targets, str) else list(targets or ())
    lesson = {suffix: name for family in ("gpt2", "llama") for name, suffixes in FAMILIES[family].items()
              for suffix in suffixes}
    return ", ".join(dict.fromkeys(lesson.get(n.strip(), n.strip()) for n in names if n.strip())) or "-"


def describe(training: dict) -> str:
    """A readable default name from what an adapter was trained on: "rank 8 on qkv · my_notes.txt · 200 steps"
    (", 4-bit" after the rank for QLoRA). At most MAX_NAME_CHARS characters."""
    rank, steps = training.get("rank"), training.get("steps")
    head = f"rank {rank} on {layer_words(training.get('targets') or '')}" if rank else "LoRA"
    if training.get("quantize") == "4bit":
        head += ", 4-bit"
    parts = [head, str(training.get("data_label") or data_label(training.get("data") or "")),
             f"{steps} step{'' if steps == 1 else 's'}" if isinstance(steps, int) else ""]
    name = _CONTROL_CHARS.sub(" ", " · ".join(p for p in parts if p))
    return name if len(name) <= MAX_NAME_CHARS else name[:MAX_NAME_CHARS - 1] + "…"


def record_training(folder: str | os.PathLike, *, base: str, data: str, steps: int, rank: int, alpha: float,
                    targets: str, quantize: str = "none", precision: str = "fp32", final_loss: float | None = None,
                    eval_loss: float | None = None, run_id: str | None = None, name: str = "") -> AdapterInfo:
    """Record what the adapter in `folder` was trained on (in `llmfs_adapter.json`), and name its base portably in
    `adapter_config.json` (`portable_base`; the local folder is kept in the record as `base_path`).

    Called by a training run when it saves its adapter. `base`: the name or folder the run loaded its base from.
    `name`: the run's name, if it was given one: the adapter is called by it (until renamed) instead of by its
    settings.
    """
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    config = _read_config(config_path)
    portable = portable_base(base)
    local = str(Path(base).expanduser().resolve()) if Path(base).expanduser().exists() else None
    if config.get("base_model_name_or_path") != portable:
        atomic_write_json(config_path, {**config, "base_model_name_or_path": portable or None})
    training = {"base": portable, "base_path": local, "data": data, "data_label": data_label(data),
                "steps": int(steps), "rank": int(rank), "alpha": float(alpha), "targets": targets,
                "quantize": quantize, "precision": precision,
                "final_loss": _as_float(final_loss), "eval_loss": _as_float(eval_loss), "run_id": run_id}
    meta = _read_meta(folder)
    meta.update(training=training, created=_as_float(meta.get("created")) or time.time())
    if name.strip() and not meta.get("name"):
        meta["name"] = name.strip()
    atomic_write_json(folder / META_FILE, meta)
    return read_adapter(folder)


def _training_of_run(run_id: str | None, config: Any, result: Any) -> dict | None:
    """`record_training`'s fields from a run's own config and result (adapters saved before runs recorded them)."""
    if not isinstance(config, dict) or not config.get("lora_rank"):
        return None
    result = result if isinstance(result, dict) else {}
    data = str(config.get("data") or "")
    return {"base": portable_base(str(config.get("model") or "")), "base_path": None, "data": data,
            "data_label": data_label(data), "steps": result.get("steps") if isinstance(result.get("steps"), int)
            else config.get("steps"), "rank": config.get("lora_rank"), "alpha": config.get("lora_alpha"),
            "targets": config.get("lora_targets") or "", "quantize": config.get("quantize") or "none",
            "precision": config.get("precision") or "fp32", "final_loss": _as_float(result.get("final_loss")),
            "eval_loss": _as_float(result.get("eval_loss")), "run_id": run_id}


# -- changing -----------------------------------------------------------------------------------------------------
def rename_adapter(id: str, new_name: str) -> AdapterInfo:
    """Give an adapter a new display name (the folder stays where it is, so ids and paths stay valid)."""
    name = clean_name(new_name)
    info = get_adapter(id)
    meta = _read_meta(info.path)
    meta.update(name=name, created=_as_float(meta.get("created")) or info.created)
    atomic_write_json(info.path / META_FILE, meta)
    return read_adapter(info.path, id=info.id)


def delete_adapter(id: str) -> None:
    """Delete a library adapter's folder, or a run's `adapter/` folder (the run and its other files stay).

    The folder is first renamed aside to a hidden temp name, so a half-deleted adapter is never listed.
    """
    info = get_adapter(id)
    if info.origin not in (LIBRARY, RUN):
        raise AdapterError(f"{info.path} is not in the adapter library or in a run; only those can be deleted here.")
    _remove_dir(info.path)


# -- export -------------------------------------------------------------------------------------------------------
def export_files(id_or_path: str | os.PathLike | AdapterInfo) -> dict[str, bytes]:
    """The files an export holds, by name: the adapter and PEFT's model card (not the library's own record), the
    config naming the base portably (`portable_base`), also for an adapter saved with this server's folder in it."""
    info = get_adapter(id_or_path)
    files = {}
    for fname in ALLOWED_FILES:
        if not (info.path / fname).is_file():
            continue
        data = (info.path / fname).read_bytes()
        if fname == CONFIG_FILE:
            config = _read_config(info.path / CONFIG_FILE)
            base = str(config.get("base_model_name_or_path") or "")
            if base and portable_base(base) != base:
                data = (json.dumps({**config, "base_model_name_or_path": portable_base(base)}, indent=2,
                                   sort_keys=True) + "\n").encode()
        files[fname] = data
    return files


def export_zip(id_or_path: str | os.PathLike | AdapterInfo) -> bytes:
    """The adapter as a zip (deflated) with its files (`export_files`) at the top level, ready for a download
    button."""
    info = get_adapter(id_or_path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for fname, data in export_files(info).items():
            # each file's own time, so exporting the same adapter twice gives the same bytes
            member = zipfile.ZipInfo(fname, date_time=time.localtime(_mtime(info.path / fname))[:6])
            member.compress_type, member.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            zf.writestr(member, data)
    return buf.getvalue()


def write_zip(id_or_path: str | os.PathLike | AdapterInfo, out_path: str | os.PathLike) -> Path:
    """Write `export_zip(...)` to `out_path` atomically; returns the path."""
    out = Path(out_path).expanduser()
    atomic_write_bytes(out, export_zip(id_or_path))
    return out


# -- import -------------------------------------------------------------------------------------------------------
def import_zip(data: bytes, name: str | None = None, max_bytes: int = MAX_UPLOAD_BYTES,
               user: str | None = None) -> AdapterInfo:
    """Add the adapter in a zip to the library and return it.

    The files may sit at the top level of the zip or inside exactly one folder (as zipping a folder gives). Only
    adapter_config.json, adapter_model.safetensors and README.md are accepted (macOS's `__MACOSX/` and `.DS_Store`
    are ignored). The name defaults to the zip's folder name. Nothing is left in the library if anything fails.
    `user`: the workshop participant who added it (recorded: only they and the instructor may use it), or None.
    Raises:
        AdapterError: not a zip, too big, unsafe or unexpected members, or an invalid adapter.
    """
    display = clean_name(name) if name is not None else None
    if len(data) > max_bytes:
        raise AdapterError(f"The upload is {_mib(len(data))}, over the {_mib(max_bytes)} limit. An adapter is "
                           "usually a few MiB: zip only adapter_config.json and adapter_model.safetensors.")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, NotImplementedError) as e:
        # NotImplementedError: a damaged "version needed" field names a zip version this reader does not know
        raise AdapterError(f"The upload is not a zip file ({e}). Upload a .zip of the adapter folder "
                           f"({' + '.join(ADAPTER_FILES)}).") from e
    with zf:
        members, top = _plan_members(zf, max_bytes)
        lib = library_dir()
        lib.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(".import-", lib)
        try:
            budget = max_bytes
            for fname, member in members.items():
                budget -= _extract(zf, member, tmp / fname, budget)
            return _finish_import(tmp, display or (clean_name(top) if top and top.strip() else None) or "adapter",
                                  user)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def import_folder(path: str | os.PathLike, name: str | None = None, user: str | None = None) -> AdapterInfo:
    """Copy the adapter folder at `path` into the library (same checks as an upload) and return the copy.

    Only the adapter files and README.md are copied. The name defaults to the source's display name; `user` as in
    `import_zip`.
    """
    source = read_adapter(path)
    display = clean_name(name) if name is not None else clean_name(source.name)
    lib = library_dir()
    lib.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(".import-", lib)
    try:
        for fname in ALLOWED_FILES:
            if (source.path / fname).is_file():
                shutil.copyfile(source.path / fname, tmp / fname)
        return _finish_import(tmp, display, user, training=source.training)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_to_library(src_dir: str | os.PathLike, name: str) -> AdapterInfo:
    """Keep a copy of the adapter at `src_dir` (e.g. a run's) in the library under `name`."""
    return import_folder(src_dir, name=name)


def clean_name(name: str) -> str:
    """A display name: stripped, 1..80 characters, no control characters (it lands in JSON, lists and zips)."""
    if not isinstance(name, str):
        raise AdapterError(f"An adapter name must be text, not {type(name).__name__}.")
    cleaned = name.strip()
    if not cleaned:
        raise AdapterError("An adapter name cannot be empty; type a name.")
    if len(cleaned) > MAX_NAME_CHARS:
        raise AdapterError(f"An adapter name is at most {MAX_NAME_CHARS} characters (this one has {len(cleaned)}); "
                           "shorten it.")
    if _CONTROL_CHARS.search(cleaned):
        raise AdapterError("An adapter name cannot contain control characters (newlines, tabs, ...); remove them.")
    return cleaned


def slugify(name: str) -> str:
    """A folder name from a display name: lowercase letters, digits and dashes, at most 48 characters."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48].strip("-")
    return slug or "adapter"


# -- helpers ------------------------------------------------------------------------------------------------------
def _read_config(path: Path) -> dict:
    """adapter_config.json, checked enough for the library to describe it: a LoRA config with a positive rank."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AdapterError(f"{path} cannot be read as JSON ({e}); re-save the adapter with PEFT's "
                           "save_pretrained.") from e
    if not isinstance(config, dict):
        raise AdapterError(f"{path} must hold a JSON object (PEFT's adapter config); re-save the adapter.")
    peft_type = config.get("peft_type")
    if not isinstance(peft_type, str) or peft_type.upper() != "LORA":
        raise AdapterError(f"{path} has peft_type {peft_type!r}; only LoRA adapters (peft_type \"LORA\") are "
                           "supported. Train the adapter with peft.LoraConfig.")
    r = config.get("r")
    if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        raise AdapterError(f"{path} has rank r={r!r}; it must be a positive integer. Re-save the adapter with PEFT.")
    alpha = config.get("lora_alpha")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0):
        raise AdapterError(f"{path} has lora_alpha={alpha!r}; it must be a positive number. Re-save the adapter "
                           "with PEFT.")
    targets = config.get("target_modules")
    if targets is not None and not isinstance(targets, str) and not (
            isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        raise AdapterError(f"{path} has target_modules={targets!r}; it must be a module name or a list of them. "
                           "Re-save the adapter with PEFT.")
    return config


def _check_weights(path: Path) -> None:
    """The safetensors file opens and holds LoRA matrices (lora_A / lora_B), so it is an adapter, not a model."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
    except Exception as e:  # safetensors raises its own error types (and OSError) for a corrupt header
        raise AdapterError(f"{WEIGHTS_FILE} is not a valid safetensors file ({type(e).__name__}: "
                           f"{str(e)[:200]}); re-save the adapter with PEFT's save_pretrained.") from e
    if not any("lora_A" in k or "lora_B" in k for k in keys):
        raise AdapterError(f"{WEIGHTS_FILE} holds no lora_A / lora_B tensors, so it is not a LoRA adapter "
                           f"(found {keys[:3]}). Save the adapter with PeftModel.save_pretrained.")


def _finish_import(tmp: Path, name: str, user: str | None = None, training: dict | None = None) -> AdapterInfo:
    """Validate the files written in `tmp`, record the name (who added it, what it was trained on), and rename the
    folder into the library."""
    missing = [f for f in ADAPTER_FILES if not (tmp / f).is_file()]
    if missing:
        raise AdapterError(f"The adapter is missing {' and '.join(missing)}; it needs {' and '.join(ADAPTER_FILES)} "
                           "(what PEFT's save_pretrained writes).")
    _read_config(tmp / CONFIG_FILE)
    _check_weights(tmp / WEIGHTS_FILE)
    atomic_write_json(tmp / META_FILE, {"name": name, "created": time.time(), **({"user": user} if user else {}),
                                        **({"training": training} if training else {})})
    lib = tmp.parent
    base = slugify(name)
    n = 1
    while True:
        slug = base if n == 1 else f"{base}-{n}"
        target = lib / slug
        if not target.exists():
            try:
                os.replace(tmp, target)
                return read_adapter(target, id=_LIB_PREFIX + slug)
            except OSError:
                # Another import took this slug between the check and the rename (a non-empty folder cannot be
                # replaced); try the next suffix.
                if not target.exists():
                    raise
        n += 1


def _plan_members(zf: zipfile.ZipFile, max_bytes: int) -> tuple[dict[str, zipfile.ZipInfo], str | None]:
    """Which zip members to extract, by file name, and the one top folder they sit in (None: top level).

    Refuses anything unsafe (absolute paths, `..`, symlinks) or unexpected, before a single byte is written.
    """
    allowed = ", ".join(ALLOWED_FILES)
    members: dict[str, zipfile.ZipInfo] = {}
    tops: set[str | None] = set()
    total = 0
    for info in zf.infolist():
        raw = info.filename
        # Zips made on Windows may use backslashes; treat them as separators so `..\\x` cannot slip through.
        norm = raw.replace("\\", "/")
        parts = [p for p in norm.split("/") if p not in ("", ".")]
        if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or ".." in parts:
            raise AdapterError(f"The zip member {raw!r} points outside the adapter folder (an absolute path or "
                               "'..'), so the zip was refused. Zip the adapter folder itself.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise AdapterError(f"The zip member {raw!r} is a symbolic link, which is refused (it could point "
                               "anywhere). Zip the real files.")
        if not parts or parts[0] == "__MACOSX" or parts[-1] == ".DS_Store":
            continue  # macOS metadata, or the root itself
        if info.is_dir():
            if len(parts) == 1:
                tops.add(parts[0])
                continue
            raise AdapterError(f"The zip holds a nested folder {raw!r}; only {allowed} are allowed, at the top "
                               "level or inside one folder.")
        if len(parts) > 2 or parts[-1] not in ALLOWED_FILES:
            raise AdapterError(f"The zip holds {raw!r}, which is not allowed; an adapter zip may hold only "
                               f"{allowed} (at the top level or inside one folder).")
        tops.add(parts[0] if len(parts) == 2 else None)
        fname = parts[-1]
        if fname in members:
            raise AdapterError(f"The zip holds {fname} twice; keep one copy.")
        members[fname] = info
        total += info.file_size
        if total > max_bytes:
            raise AdapterError(f"The zip unpacks to more than {_mib(max_bytes)}; an adapter is usually a few MiB. "
                               "Zip only the adapter files.")
    if len(tops) > 1:
        shown = ", ".join(sorted("(top level)" if t is None else t + "/" for t in tops))
        raise AdapterError(f"The zip's files are spread over several places ({shown}); put them at the top level "
                           "or inside exactly one folder.")
    missing = [f for f in ADAPTER_FILES if f not in members]
    if missing:
        raise AdapterError(f"The zip is missing {' and '.join(missing)}; an adapter zip needs "
                           f"{' and '.join(ADAPTER_FILES)} (what PEFT's save_pretrained writes).")
    return members, next(iter(tops))


def _extract(zf: zipfile.ZipFile, member: zipfile.ZipInfo, dest: Path, budget: int) -> int:
    """Copy one member to `dest`, counting the real bytes (a header can lie about sizes); returns bytes written."""
    written = 0
    try:
        with zf.open(member) as src, open(dest, "wb") as out:
            while chunk := src.read(_COPY_CHUNK):
                written += len(chunk)
                if written > budget:
                    raise AdapterError("The zip unpacks to more than the size limit; zip only the adapter files.")
                out.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError, zlib.error,
            ValueError) as e:
        # Bad CRC, truncated or corrupt deflate data, a damaged header offset ("negative seek value"), an unsupported
        # compression method or an encrypted member.
        raise AdapterError(f"{member.filename} could not be unpacked ({e}); re-create the zip without a password "
                           "using standard (deflate) compression.") from e
    return written


def _locate(folder: Path) -> tuple[str, str, str | None]:
    """(origin, id, run_id) for an adapter folder, from where it sits on disk."""
    resolved = folder.resolve()
    if resolved.parent == library_dir().resolve():
        return LIBRARY, _LIB_PREFIX + resolved.name, None
    if resolved.name == "adapter" and resolved.parent.parent == runs_dir().resolve():
        run_id = resolved.parent.name
        return RUN, _RUN_PREFIX + run_id, run_id
    return FOLDER, str(resolved), None


def _library_folders() -> list[Path]:
    lib = library_dir()
    if not lib.is_dir():
        return []
    # Hidden names are imports in progress and deletions under way: never list them.
    return [p for p in lib.iterdir() if p.is_dir() and not p.name.startswith(".")]


def _try_read(folder: Path) -> AdapterInfo | None:
    if not is_adapter_dir(folder):
        return None
    try:
        return read_adapter(folder)
    except (AdapterError, OSError, ValueError, KeyError, TypeError):
        return None  # one broken adapter must not break the whole list


def _id_part(key: str, prefix: str) -> str:
    """The slug or run id of an id, refused if it could reach outside its folder."""
    part = key[len(prefix):]
    if not part or part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
        raise AdapterError(f"{key!r} is not a valid adapter id; pick one from the adapter list.")
    return part


def _remove_dir(folder: Path) -> None:
    """Rename aside (atomic: the adapter disappears at once), then delete at leisure."""
    aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}.deleting-", dir=folder.parent))
    os.replace(folder, aside / folder.name)
    shutil.rmtree(aside, ignore_errors=True)


def _read_meta(folder: Path) -> dict:
    meta = read_json(folder / META_FILE, default={})
    return meta if isinstance(meta, dict) else {}


def _targets(value: Any) -> tuple[str, ...]:
    # PEFT allows a list of module names or one string (a regex, or a single name).
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple, set)):
        return tuple(sorted(str(v) for v in value)) if isinstance(value, set) else tuple(str(v) for v in value)
    return ()


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def _as_float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"
