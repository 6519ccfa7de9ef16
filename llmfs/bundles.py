"""Run bundles: one run as one .zip to take home, and a bundle imported on another machine as a run of its own.

A bundle holds what the Runs page shows of a run, and a manifest:

    manifest.json   the format and its version, llmfs's version, the run (id, kind, state, name, created), when and
                    on which host it was exported, every file below with its size and sha256, and what was left out
    config.json, status.json, name.json, metrics.jsonl, log.txt, results.json, items.jsonl   (those the run has)
    adapter/        a LoRA run's adapter, in PEFT's format
    tensorboard/    its TensorBoard event files

Left out, with a pointer in the manifest's `not_included`: a saved model (`model/`, often hundreds of MB: its size,
its base model, and config.json as its recipe), a pipeline's output shards (their folder and count) and
`checkpoints/` (only good for resuming the run where it ran).

An import is checked like every upload before the run appears: the zip's size, its number of entries and what it
unpacks to (zip bombs), every name (relative, no `..`, no drive letter or backslash, no symbolic link, only the names
above), the manifest (every file listed, none unlisted, sizes and sha256 equal), a known kind with readable settings
and a finished state. It is unpacked into a hidden folder under the runs folder and renamed into place, so a
refused or half-unpacked bundle never shows as a run. The imported run is marked (`imported` in status.json) and
loses its origin's process fields, so it is never taken for a live run; it belongs to whoever imported it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

from . import __version__
from .config import ConfigError, from_dict
from .fsutil import atomic_write_json, make_temp_dir, read_json
from .reproduce import KINDS, config_class
from .runs import FINAL_STATES, PENDING, RUNNING, Run
from .uploads import show_name, size_text, upload_limit_bytes

FORMAT, FORMAT_VERSION = "llmfs-run-bundle", 1
MANIFEST = "manifest.json"
RUN_FILES = ("config.json", "status.json", "name.json", "metrics.jsonl", "log.txt", "results.json", "items.jsonl")
RUN_FOLDERS = ("adapter", "tensorboard")
REQUIRED = ("config.json", "status.json")
MAX_ENTRIES = 10_000
MAX_MANIFEST_BYTES = 8 * 1024 * 1024
# What a bundle may unpack to, as a multiple of the upload limit: metrics and logs compress about tenfold; a zip
# bomb (a few kB unpacking to gigabytes) goes far past it.
UNPACKED_FACTOR = 10
LIVE_FIELDS = ("pid", "pid_started", "host")   # whose process ran it: meaningless (and misleading) elsewhere
# what a bundle holds, in words (the Runs page says it under the download button)
INCLUDED = ("The .zip holds its settings, status, metrics, log and results (a LoRA run's adapter and the TensorBoard "
            "files too) and a manifest with checksums. A saved model is not in it, only its recipe: the settings "
            "that made it.")
AGAIN = "Export the run again (the Runs page's download button, or python -m llmfs runs export) and import that."

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CHUNK = 1 << 20


class BundleError(ValueError):
    """A run that cannot be exported, or a bundle refused; the message names the cause and the fix."""


# -- export -------------------------------------------------------------------------------------------------------
def export_run(run_dir: str | os.PathLike, out_zip: str | os.PathLike) -> dict:
    """Write the run at `run_dir` as one .zip at `out_zip` (through a temp file, renamed into place; an existing
    file is never overwritten) and return its manifest.

    Raises:
        BundleError: no run there, a run still waiting or running, or `out_zip` exists already.
    """
    run = _exportable(run_dir)
    out = Path(out_zip).expanduser()
    if out.exists():
        raise BundleError(f"{out} already exists: give another file name, or delete that file first.")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            manifest = _write_bundle(run, f)
            f.flush()
            os.fsync(f.fileno())
        _publish(Path(tmp), out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return manifest


def export_bytes(run_dir: str | os.PathLike) -> bytes:
    """The bundle of the run at `run_dir` as bytes (a download button's data); checked as `export_run` checks."""
    buffer = io.BytesIO()
    _write_bundle(_exportable(run_dir), buffer)
    return buffer.getvalue()


def bundle_name(run_dir: str | os.PathLike) -> str:
    """The file name a run's bundle is offered under: `<run id>.zip`."""
    return f"{Path(run_dir).name}.zip"


def _exportable(run_dir: str | os.PathLike) -> Run:
    run = Run(Path(run_dir).expanduser())
    if not run.exists():
        raise BundleError(f"There is no run at {run.path} (no status.json): give a run id from `python -m llmfs runs`.")
    state = run.state
    if state in (PENDING, RUNNING):
        raise BundleError(f"Run {run.run_id} is {state}: wait for it to finish, or stop it, then export it.")
    return run


def _publish(tmp: Path, out: Path) -> None:
    """Put the finished file at `out` without ever replacing one that appeared meanwhile (a hard link fails on an
    existing name; a file system without links gets a last check and a rename)."""
    try:
        os.link(tmp, out)
    except FileExistsError as e:
        raise BundleError(f"{out} already exists: give another file name, or delete that file first.") from e
    except OSError:
        if out.exists():
            raise BundleError(f"{out} already exists: give another file name, or delete that file first.")
        os.replace(tmp, out)


def _write_bundle(run: Run, f: IO[bytes]) -> dict:
    status, record = run.status(), run.config_record()
    entries = []
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arcname, path in _bundle_files(run.path):
            size, digest = _add_file(zf, arcname, path)
            entries.append({"path": arcname, "size": size, "sha256": digest})
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "llmfs_version": __version__,
            "run_id": run.run_id, "kind": record.get("kind") or status.get("kind"), "state": status.get("state"),
            "name": run.name, "created": record.get("created", status.get("created")),
            "exported": time.time(), "host": socket.gethostname(),
            "files": entries, "not_included": _not_included(run, record, status),
        }
        info = zipfile.ZipInfo(MANIFEST, time.localtime()[:6])
        info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
        zf.writestr(info, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return manifest


def _bundle_files(root: Path) -> list[tuple[str, Path]]:
    """(name in the zip, file) for what a bundle holds: the run's own files, then its adapter and TensorBoard
    folders (plain files only: no symbolic links; hidden names are writes in progress)."""
    found = [(name, root / name) for name in RUN_FILES if _plain_file(root / name)]
    for folder in RUN_FOLDERS:
        top = root / folder
        if not top.is_dir() or top.is_symlink():
            continue
        for here, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(here, d)))
            for name in sorted(files):
                path = Path(here) / name
                arcname = path.relative_to(root).as_posix()
                if not name.startswith(".") and _plain_file(path) and _name_problem(arcname) is None:
                    found.append((arcname, path))
    return found


def _plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _add_file(zf: zipfile.ZipFile, arcname: str, path: Path) -> tuple[int, str]:
    """Copy one file into the zip, hashing the very bytes written; returns (size, sha256)."""
    info = zipfile.ZipInfo.from_file(path, arcname)
    info.compress_type = zipfile.ZIP_DEFLATED
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as src, zf.open(info, "w", force_zip64=info.file_size > 1 << 30) as dst:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            dst.write(chunk)
    return size, digest.hexdigest()


def _not_included(run: Run, record: dict, status: dict) -> list[dict]:
    """Pointers to what the bundle leaves out: where it is, how big, and how to get it again."""
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    result = status.get("result") if isinstance(status.get("result"), dict) else {}
    out: list[dict] = []
    shards = _shards_folder(run, record, result)
    taken = set(RUN_FILES) | set(RUN_FOLDERS) | {MANIFEST}
    for path in sorted(run.path.iterdir()):
        name = path.name
        if name in taken or name.startswith(".") or path.is_symlink():
            continue
        size, count = _size_of(path)
        entry: dict[str, Any] = {"path": name + "/" if path.is_dir() else name, "size_bytes": size, "files": count}
        if name == "model":
            entry.update(what="the saved model", base_model=config.get("model"), recipe="config.json",
                         why="A saved model is often hundreds of MB. config.json is its recipe: the same settings "
                             f"on the same base model ({config.get('model') or '?'}) and data train it again.")
        elif name == "checkpoints":
            entry.update(what="checkpoints", why="Left out: they only serve to resume the run where it ran.")
        elif shards is not None and path == shards:
            entry.update(what="the pipeline's output shards", count=_shard_count(result, path),
                         why="Left out: shards are the data a pipeline wrote; rerun the pipeline to make them again.")
            shards = None
        else:
            entry.update(what="other output", why="Not part of a run bundle.")
        out.append(entry)
    if shards is not None:  # shards written outside the run's folder
        out.append({"path": str(shards), "what": "the pipeline's output shards", "count": _shard_count(result, shards),
                    "why": "Left out: shards are the data a pipeline wrote, in a folder outside the run; rerun the "
                           "pipeline to make them again."})
    return out


def _shards_folder(run: Run, record: dict, result: dict) -> Path | None:
    if record.get("kind") != "pipeline":
        return None
    written = result.get("shards")
    if isinstance(written, list) and written:
        return Path(str(written[0])).parent
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    return Path(config["out_dir"]) if config.get("out_dir") else run.path / "shards"


def _shard_count(result: dict, folder: Path) -> int:
    count = result.get("shards_written")
    if isinstance(count, int):
        return count
    return len(list(folder.glob("shard-*.tar"))) if folder.is_dir() else 0


def _size_of(path: Path) -> tuple[int, int]:
    """(bytes, files) under `path` (a file: itself); unreadable parts count as nothing."""
    if path.is_file():
        return path.stat().st_size, 1
    size = count = 0
    for here, _, files in os.walk(path):
        for name in files:
            try:
                size += os.lstat(os.path.join(here, name)).st_size
                count += 1
            except OSError:
                continue
    return size, count


# -- import -------------------------------------------------------------------------------------------------------
def import_bundle(zip_path: str | os.PathLike | bytes, runs_root: str | os.PathLike, user: str | None = None, *,
                  max_bytes: int | None = None, max_unpacked: int | None = None,
                  shown_name: str | None = None) -> Path:
    """Check the bundle at `zip_path` (or its bytes: an upload) and add its run under `runs_root`; returns the new
    run's folder: `<runs_root>/<run id>`, or `<run id>-imported-xxxx` when that id is taken by another run.

    Args:
        user: who imported it (a workshop participant's name): the run is theirs. None: nobody's in particular (a
            single person's lab, the command line).
        max_bytes: the bundle's size limit (default: one upload's, `llmfs.uploads.upload_limit_bytes()`).
        max_unpacked: what it may unpack to (default: UNPACKED_FACTOR times `max_bytes`).
        shown_name: what messages call the bundle (default: its file name).
    Raises:
        BundleError: the bundle is refused (nothing is written) or was imported already.
    """
    data = bytes(zip_path) if isinstance(zip_path, (bytes, bytearray, memoryview)) else None
    path = None if data is not None else Path(zip_path).expanduser()
    shown = shown_name or (path.name if path is not None else "The bundle")
    if path is not None and not path.is_file():
        raise BundleError(f"There is no file at {path}: give the path of a run bundle (.zip).")
    limit = _upload_limit() if max_bytes is None else max_bytes
    size = len(data) if data is not None else path.stat().st_size
    if size > limit:
        raise BundleError(f"{shown} is {size_text(size)}: the limit for one upload is {size_text(limit)}. A run "
                          "bundle is usually a few MB; if this one is right, ask the instructor to raise "
                          "max_upload_mb.")
    unpacked_limit = limit * UNPACKED_FACTOR if max_unpacked is None else max_unpacked
    bundle_sha = hashlib.sha256(data).hexdigest() if data is not None else _file_sha256(path)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data) if data is not None else path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, NotImplementedError, OSError) as e:
        raise BundleError(f"{shown} is not a zip file (or a damaged one): a run bundle is the .zip that exporting "
                          f"a run writes. {AGAIN}") from e
    root = Path(runs_root).expanduser()
    with zf:
        members = _plan_members(zf, unpacked_limit)
        manifest = _read_manifest(zf, members.pop(MANIFEST, None))
        listed = _check_listing(manifest, members)
        earlier = _imported_as(root, manifest["run_id"], bundle_sha, user)
        if earlier:
            raise BundleError(f"This bundle is already imported as {earlier}: open that run on the Runs page (delete "
                              "it first to import the bundle again).")
        root.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(".import-", root)  # hidden: listing runs skips it; one level down: never a run
        try:
            dest = tmp / "run"
            dest.mkdir()
            budget = unpacked_limit
            for name, info in members.items():
                budget -= _extract(zf, info, dest, listed[name], budget)
            record, status = _check_run(dest, manifest)
            return _place(dest, root, manifest, record, status, bundle_sha, user)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def is_imported(status: dict) -> bool:
    """Was this run (its status.json) imported from a bundle?"""
    return isinstance(status.get("imported"), dict)


def _upload_limit() -> int:
    try:
        return upload_limit_bytes()
    except ValueError as e:  # a broken limits file closes uploads; say so as this module's error
        raise BundleError(str(e)) from e


def _plan_members(zf: zipfile.ZipFile, unpacked_limit: int) -> dict[str, zipfile.ZipInfo]:
    """The zip's files by name, every name and link checked and the total size capped before a byte is unpacked."""
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise BundleError(f"The bundle holds {len(infos):,} entries; a run bundle holds at most {MAX_ENTRIES:,}. "
                          f"{AGAIN}")
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        raw = info.filename
        problem = _name_problem(raw.rstrip("/") if info.is_dir() else raw)
        if problem:
            raise BundleError(f"The bundle holds {show_name(raw)}, {problem}, so it was refused and nothing was saved. "
                              f"{AGAIN}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise BundleError(f"The bundle holds {show_name(raw)} as a symbolic link, which is refused (it could point "
                              f"anywhere on this machine); nothing was saved. {AGAIN}")
        parts = raw.rstrip("/").split("/")
        if info.is_dir():
            if parts[0] not in RUN_FOLDERS:
                raise BundleError(f"The bundle holds a folder {show_name(raw)}; a run bundle's folders are "
                                  f"{' and '.join(f + '/' for f in RUN_FOLDERS)} only. {AGAIN}")
            continue
        if len(parts) == 1 and parts[0] not in (*RUN_FILES, MANIFEST) or len(parts) > 1 and parts[0] not in RUN_FOLDERS:
            raise BundleError(f"The bundle holds {show_name(raw)}, which a run bundle never holds (only "
                              f"{', '.join((MANIFEST, *RUN_FILES))}, {' and '.join(f + '/' for f in RUN_FOLDERS)}); "
                              f"nothing was saved. {AGAIN}")
        name = "/".join(parts)
        if name in members:
            raise BundleError(f"The bundle holds {show_name(name)} twice; nothing was saved. {AGAIN}")
        members[name] = info
        total += info.file_size
        if total > unpacked_limit:
            raise BundleError(f"The bundle unpacks to more than {size_text(unpacked_limit)} (the limit for a run "
                              f"bundle), so it was refused and nothing was saved. {AGAIN}")
    return members


def _name_problem(name: str) -> str | None:
    """Why a name in a bundle could leave its folder (None: it cannot)."""
    if name.startswith("/") or not name:
        return "an absolute path"
    if "\\" in name or _DRIVE.match(name):
        return "a path with a backslash or a drive letter"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "a path that leaves its folder ('..')"
    if _CONTROL.search(name):
        return "a name with control characters"
    return None


def _read_manifest(zf: zipfile.ZipFile, info: zipfile.ZipInfo | None) -> dict:
    if info is None:
        raise BundleError(f"The bundle has no {MANIFEST}, so it is not a run bundle from llmfs (or it was repacked). "
                          f"{AGAIN}")
    if info.file_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"The bundle's {MANIFEST} is {size_text(info.file_size)}, far more than a manifest needs. "
                          f"{AGAIN}")
    try:
        with zf.open(info) as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
        manifest = json.loads(raw.decode("utf-8"))
    except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError, zlib.error, ValueError) as e:
        raise BundleError(f"The bundle's {MANIFEST} cannot be read ({e}). {AGAIN}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"The bundle's {MANIFEST} is not a run bundle's (format {FORMAT!r} expected). {AGAIN}")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BundleError(f"The bundle's {MANIFEST} has no valid format_version. {AGAIN}")
    if version > FORMAT_VERSION:
        raise BundleError(f"The bundle was made by a newer llmfs ({manifest.get('llmfs_version', '?')}, bundle format "
                          f"{version}); this llmfs ({__version__}) reads format {FORMAT_VERSION}. Update llmfs here, "
                          "then import it.")
    run_id = manifest.get("run_id")
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise BundleError(f"The bundle's {MANIFEST} names no valid run id (got {show_name(run_id)}). {AGAIN}")
    files = manifest.get("files")
    if not isinstance(files, list) or not all(
            isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("size"), int)
            and not isinstance(e.get("size"), bool) and e["size"] >= 0 and isinstance(e.get("sha256"), str)
            and _SHA256.match(e["sha256"]) for e in files):
        raise BundleError(f"The bundle's {MANIFEST} does not list its files as a run bundle does (a path, a size and "
                          f"a sha256 each). {AGAIN}")
    return manifest


def _check_listing(manifest: dict, members: dict[str, zipfile.ZipInfo]) -> dict[str, dict]:
    """Every file in the zip listed in the manifest and every listed file in the zip, with the size it says."""
    listed: dict[str, dict] = {}
    for entry in manifest["files"]:
        if entry["path"] in listed:
            raise BundleError(f"The bundle's {MANIFEST} lists {show_name(entry['path'])} twice. {AGAIN}")
        listed[entry["path"]] = entry
    for name in members:
        if name not in listed:
            raise BundleError(f"The bundle holds {show_name(name)}, which its {MANIFEST} does not list: it was changed "
                              f"after it was exported, so it was refused. {AGAIN}")
    for name, entry in listed.items():
        if name not in members:
            raise BundleError(f"The bundle's {MANIFEST} lists {show_name(name)}, which the bundle does not hold: it "
                              f"was changed after it was exported, so it was refused. {AGAIN}")
        if members[name].file_size != entry["size"]:
            raise BundleError(f"{show_name(name)} in the bundle is {members[name].file_size:,} bytes, not the "
                              f"{entry['size']:,} its {MANIFEST} lists: it was changed after it was exported. "
                              f"{AGAIN}")
    for name in REQUIRED:
        if name not in members:
            raise BundleError(f"The bundle has no {name}: every run bundle holds {' and '.join(REQUIRED)}. {AGAIN}")
    return listed


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, entry: dict, budget: int) -> int:
    """Unpack one file, counting and hashing the real bytes (a zip header can lie); returns the bytes written."""
    target = dest.joinpath(*entry["path"].split("/"))
    if not target.resolve().is_relative_to(dest.resolve()):  # belt and braces: the names were checked
        raise BundleError(f"The bundle holds {show_name(entry['path'])}, a path that leaves its folder. {AGAIN}")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, written = hashlib.sha256(), 0
    try:
        with zf.open(info) as src, open(target, "xb") as out:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > budget:
                    raise BundleError(f"The bundle unpacks to more than its limit, so it was refused and nothing "
                                      f"was saved. {AGAIN}")
                if written > entry["size"]:
                    break
                digest.update(chunk)
                out.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError, zlib.error,
            ValueError) as e:
        if isinstance(e, BundleError):
            raise
        # a bad CRC (a changed byte), truncated or corrupt data, an encrypted member or an unknown compression
        raise BundleError(f"{show_name(info.filename)} in the bundle could not be unpacked ({e}): the bundle is "
                          f"damaged or was changed after it was exported. {AGAIN}") from e
    if written != entry["size"] or digest.hexdigest() != entry["sha256"]:
        raise BundleError(f"{show_name(entry['path'])} does not match its checksum in the bundle's {MANIFEST}: the "
                          f"bundle was changed or damaged after it was exported, so it was refused. {AGAIN}")
    return written


def _check_run(dest: Path, manifest: dict) -> tuple[dict, dict]:
    """The unpacked run's config (a known kind, settings this llmfs reads) and status (a finished run)."""
    record = read_json(dest / "config.json")
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise BundleError(f"The bundle's config.json is not a run's config (a JSON object with its kind and "
                          f"config). {AGAIN}")
    kind = record.get("kind")
    if kind not in KINDS:
        raise BundleError(f"The bundle's run is of kind {show_name(kind)}; this llmfs knows {', '.join(KINDS)}. Update "
                          "llmfs here if the bundle comes from a newer one.")
    if manifest.get("kind") not in (None, kind):
        raise BundleError(f"The bundle's {MANIFEST} says kind {show_name(manifest.get('kind'))} but its config.json "
                          f"says {kind}: it was changed after it was exported. {AGAIN}")
    try:
        from_dict(config_class(kind), record["config"])
    except (ConfigError, TypeError, ValueError) as e:
        raise BundleError(f"The bundle's settings (config.json) are refused by this llmfs: {e} If the bundle comes "
                          "from a newer llmfs, update llmfs here.") from e
    status = read_json(dest / "status.json")
    if not isinstance(status, dict):
        raise BundleError(f"The bundle's status.json is not a run's status (a JSON object). {AGAIN}")
    state = status.get("state")
    if state not in FINAL_STATES:
        raise BundleError(f"The bundle's run is {show_name(state)}: only a finished run (succeeded, failed, cancelled "
                          "or interrupted) can be imported. Export it once it has finished.")
    return record, status


def _imported_as(root: Path, run_id: str, bundle_sha: str, user: str | None) -> str | None:
    """The run this very bundle was imported as before by `user` (None: it was not). Another participant's import
    of it does not count: theirs is theirs (they may delete it), and this person gets a copy of their own."""
    if not root.is_dir():
        return None
    for folder in root.iterdir():
        if folder.name == run_id or folder.name.startswith(f"{run_id}-imported-"):
            status = read_json(folder / "status.json", default={})
            imported = status.get("imported") if isinstance(status, dict) else None
            if isinstance(imported, dict) and imported.get("bundle_sha256") == bundle_sha and \
                    (status.get("user") or None) == (user or None):
                return folder.name
    return None


def _place(dest: Path, root: Path, manifest: dict, record: dict, status: dict, bundle_sha: str,
           user: str | None) -> Path:
    """Mark the unpacked run imported (it belongs to `user`; its origin's process fields dropped) and rename it
    into the runs folder under its own id, or `<id>-imported-xxxx` when another run has that id."""
    run_id = manifest["run_id"]
    status = {k: v for k, v in status.items() if k not in LIVE_FIELDS}
    status["imported"] = {"original_run_id": run_id, "from_host": manifest.get("host"),
                          "exported": manifest.get("exported"), "imported": time.time(),
                          "bundle_sha256": bundle_sha, "original_user": status.get("user")}
    status["user"] = record["user"] = user
    atomic_write_json(dest / "config.json", record)
    result = status.get("result")
    for attempt in range(20):
        target = root / (run_id if attempt == 0 else f"{run_id}-imported-{secrets.token_hex(2)}")
        if target.exists():
            continue
        if isinstance(result, dict) and result.get("adapter_dir") and (dest / "adapter").is_dir():
            result["adapter_dir"] = str(target / "adapter")   # where the adapter is now, as a run here records it
        atomic_write_json(dest / "status.json", status)
        try:
            os.rename(dest, target)   # fails on a folder that appeared meanwhile (not empty), never merges
        except OSError:
            if target.exists():
                continue
            raise
        return target
    raise BundleError(f"Could not find a free folder name for run {run_id} under {root}; try again.")


# -- helpers ------------------------------------------------------------------------------------------------------
def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
