"""Run bundles (llmfs.bundles): a run exported as one .zip and imported into another LLMFS_HOME is the same run
(metrics, settings, results, adapter), marked imported; a tampered or unsafe bundle is refused with nothing written.
Runs are written folder by folder (no training)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import stat
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from llmfs import adapters, bundles
from llmfs.bundles import BundleError, export_run, import_bundle
from llmfs.config import EvalConfig, TrainConfig
from llmfs.paths import runs_dir
from llmfs.runs import Run, list_runs, new_run_id

REPO = Path(__file__).resolve().parents[1]


# -- runs made without training ---------------------------------------------------------------------------------
def make_run(root: Path, *, state: str = "succeeded", kind: str = "train", lora: bool = False,
             extras: bool = False) -> Run:
    """A finished (or running) run folder as a job leaves it: metrics, log, result, a name; `lora`: with a PEFT
    adapter folder; `extras`: with TensorBoard event files, a saved model and checkpoints."""
    config = dataclasses.asdict(TrainConfig(steps=6, lora_rank=4 if lora else 0) if kind == "train"
                                else EvalConfig(task="perplexity"))
    run = Run.create(root / new_run_id(kind), kind, config, owner="l15" if lora else "l12", user="ann")
    run.mark_running()
    for step in range(1, 7):
        run.append_metrics(step, kind="train", loss=6.0 - step * 0.25, lr=1e-3)
        if step % 3 == 0:
            run.append_metrics(step, kind="eval", eval_loss=6.2 - step * 0.2)
    run.log("Started train job.\nFinished.")
    run.rename("ann's first try")
    result = {"final_loss": 4.5, "steps": 6, "total_steps": 6}
    if lora:
        result["adapter_dir"] = str(write_adapter(run.path / "adapter"))
    if extras:
        (run.path / "tensorboard").mkdir()
        (run.path / "tensorboard" / "events.out.tfevents.1.vm").write_bytes(b"\x18\x00event bytes" * 10)
        (run.path / "model").mkdir()
        (run.path / "model" / "model.safetensors").write_bytes(b"\0" * 5000)
        (run.path / "checkpoints").mkdir()
        (run.path / "checkpoints" / "last.pt").write_bytes(b"\1" * 300)
    if kind == "eval":
        (run.path / "results.json").write_text(json.dumps({"task": "perplexity", "perplexity": 42.0}))
        (run.path / "items.jsonl").write_text('{"i": 0, "nll": 3.1}\n')
    if state != "running":
        run.mark_finished(state, result=result)
    return run


def write_adapter(folder: Path) -> Path:
    """A small LoRA adapter in PEFT's format (real safetensors with lora_A / lora_B)."""
    import torch
    from safetensors.torch import save_file
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["c_attn"],
        "base_model_name_or_path": "llmfs-tiny"}))
    save_file({"base_model.model.h.0.attn.c_attn.lora_A.weight": torch.ones(4, 8),
               "base_model.model.h.0.attn.c_attn.lora_B.weight": torch.zeros(24, 4)},
              str(folder / "adapter_model.safetensors"))
    return folder


def fresh_home(tmp_path: Path, monkeypatch, name: str = "other-machine") -> Path:
    home = tmp_path / name
    home.mkdir()
    monkeypatch.setenv("LLMFS_HOME", str(home))
    return home


def folders(root: Path) -> set[str]:
    """Everything in a runs folder, hidden names included (a refused import must leave nothing, not even a temp)."""
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


# -- tampering: a bundle rewritten member by member ----------------------------------------------------------------
def members(zip_path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(zip_path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def rezip(out: Path, files: dict[str, bytes], *, relist: bool = False, extra: list[tuple[zipfile.ZipInfo, bytes]] = (),
          method: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip of `files` (and raw `extra` entries); `relist`: the manifest rewritten to match the files, as a
    careful forger would."""
    files = dict(files)
    if relist:
        manifest = json.loads(files["manifest.json"])
        manifest["files"] = [{"path": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                             for n, b in files.items() if n != "manifest.json"]
        files["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(out, "w", compression=method) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for info, data in extra:
            zf.writestr(info, data)
    return out


@pytest.fixture
def bundle(llmfs_home, tmp_path):
    """(the exported run, its bundle): a LoRA run with TensorBoard files, a saved model and checkpoints."""
    run = make_run(runs_dir(), lora=True, extras=True)
    out = tmp_path / "bundle.zip"
    export_run(run.path, out)
    return run, out


# -- export and import --------------------------------------------------------------------------------------------
def test_a_bundle_imported_into_a_fresh_home_is_the_same_run(bundle, tmp_path, monkeypatch):
    run, out = bundle
    fresh_home(tmp_path, monkeypatch)
    folder = import_bundle(out, runs_dir(), user="bea")
    assert folder == runs_dir() / run.run_id   # its own id: nothing here had it
    copy = Run(folder)
    assert [r.run_id for r in list_runs(runs_dir())] == [run.run_id]
    assert copy.read_metrics() == run.read_metrics() and len(copy.read_metrics("train")) == 6
    assert copy.config() == run.config() and copy.kind == "train"
    assert copy.name == "ann's first try" and copy.log_tail() == run.log_tail()
    status, original = copy.status(), run.status()
    assert status["state"] == "succeeded" and status["result"]["final_loss"] == 4.5
    assert status["result"]["adapter_dir"] == str(folder / "adapter")   # where the adapter is now
    assert not {"pid", "pid_started", "host"} & set(status)            # never taken for a live run
    assert {"pid", "host"} <= set(original)
    imported = status["imported"]
    assert imported["original_run_id"] == run.run_id and imported["original_user"] == "ann"
    assert imported["from_host"] == original["host"] and imported["exported"] <= imported["imported"]
    assert imported["bundle_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert status["user"] == copy.config_record()["user"] == "bea"       # the importer's now
    for name in ("adapter/adapter_model.safetensors", "adapter/adapter_config.json",
                 "tensorboard/events.out.tfevents.1.vm"):
        assert (folder / name).read_bytes() == (run.path / name).read_bytes()
    assert not (folder / "model").exists() and not (folder / "checkpoints").exists()
    assert not (folder / "manifest.json").exists()
    # the adapter is listed like any run's, under the new run
    found = {a.id: a for a in adapters.list_adapters()}
    assert f"run:{run.run_id}" in found and found[f"run:{run.run_id}"].user == "bea"
    assert found[f"run:{run.run_id}"].rank == 4


def test_the_manifest_lists_every_file_with_its_checksum_and_points_to_what_is_left_out(bundle):
    run, out = bundle
    manifest = json.loads(members(out)["manifest.json"])
    assert manifest["format"] == bundles.FORMAT and manifest["format_version"] == bundles.FORMAT_VERSION
    assert manifest["run_id"] == run.run_id and manifest["kind"] == "train" and manifest["state"] == "succeeded"
    assert manifest["name"] == "ann's first try" and manifest["created"] == run.config_record()["created"]
    assert manifest["host"] and manifest["exported"] > manifest["created"] and manifest["llmfs_version"]
    listed = {e["path"]: e for e in manifest["files"]}
    assert set(listed) == set(members(out)) - {"manifest.json"}
    assert {"config.json", "status.json", "name.json", "metrics.jsonl", "log.txt", "adapter/adapter_config.json",
            "adapter/adapter_model.safetensors", "tensorboard/events.out.tfevents.1.vm"} <= set(listed)
    for name, entry in listed.items():
        data = (run.path / name).read_bytes()
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    left = {e["path"]: e for e in manifest["not_included"]}
    assert left["model/"]["size_bytes"] == 5000 and left["model/"]["base_model"] == "llmfs-tiny"
    assert left["model/"]["recipe"] == "config.json"
    assert left["checkpoints/"]["files"] == 1
    assert not any(n.startswith(("model/", "checkpoints/")) for n in members(out))


def test_an_eval_run_takes_its_results_and_a_pipeline_points_to_its_shards(llmfs_home, tmp_path):
    evaluation = make_run(runs_dir(), kind="eval")
    export_run(evaluation.path, tmp_path / "e.zip")
    assert {"results.json", "items.jsonl"} <= set(members(tmp_path / "e.zip"))
    pipeline = Run.create(runs_dir() / new_run_id("pipeline"), "pipeline", {"inputs": ["llmfs-corpus"]})
    (pipeline.path / "shards").mkdir()
    for i in range(3):
        (pipeline.path / "shards" / f"shard-00000{i}.tar").write_bytes(b"t" * 10)
    pipeline.mark_finished("succeeded", result={"shards": [str(pipeline.path / "shards" / "shard-000000.tar")],
                                                "shards_written": 3})
    manifest = export_run(pipeline.path, tmp_path / "p.zip")
    shards = next(e for e in manifest["not_included"] if e["path"] == "shards/")
    assert shards["count"] == 3 and shards["size_bytes"] == 30
    fresh = tmp_path / "elsewhere"
    assert Run(import_bundle(tmp_path / "p.zip", fresh)).kind == "pipeline"


def test_an_export_refuses_a_live_run_and_never_overwrites_a_file(llmfs_home, tmp_path):
    running = make_run(runs_dir(), state="running")
    with pytest.raises(BundleError, match="is running: wait for it to finish, or stop it"):
        export_run(running.path, tmp_path / "r.zip")
    assert not (tmp_path / "r.zip").exists()
    done = make_run(runs_dir())
    (tmp_path / "taken.zip").write_bytes(b"mine")
    with pytest.raises(BundleError, match="already exists"):
        export_run(done.path, tmp_path / "taken.zip")
    assert (tmp_path / "taken.zip").read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []   # no temp file left
    with pytest.raises(BundleError, match="no status.json"):
        export_run(tmp_path / "nothing", tmp_path / "n.zip")


def test_importing_the_same_bundle_twice_is_refused_and_a_taken_id_gets_a_new_one(bundle):
    run, out = bundle
    # into the home it came from: its id is taken by the original, so the copy gets a new one
    first = import_bundle(out, runs_dir())
    assert first.name.startswith(f"{run.run_id}-imported-") and len(first.name) == len(run.run_id) + 14
    with pytest.raises(BundleError, match=f"already imported as {first.name}"):
        import_bundle(out, runs_dir())
    assert len(list_runs(runs_dir())) == 2
    assert Run(first).read_metrics() == run.read_metrics()
    assert f"run:{first.name}" in {a.id for a in adapters.list_adapters()}


def test_in_a_workshop_each_participant_imports_a_copy_of_their_own(bundle):
    """Someone else's import of the same bundle is theirs (only they may delete it): another participant gets a
    copy of their own, once."""
    run, out = bundle
    ada = import_bundle(out, runs_dir(), user="Ada")
    ben = import_bundle(out, runs_dir(), user="Ben")
    assert ada != ben and Run(ada).status()["user"] == "Ada" and Run(ben).status()["user"] == "Ben"
    with pytest.raises(BundleError, match=f"already imported as {ben.name}"):
        import_bundle(out, runs_dir(), user="Ben")


def test_an_upload_as_bytes_is_imported_like_a_file(bundle, tmp_path):
    _, out = bundle
    folder = import_bundle(out.read_bytes(), tmp_path / "runs", shown_name="mine.zip")
    assert Run(folder).state == "succeeded"


# -- refusals -----------------------------------------------------------------------------------------------------
def refused(zip_path: Path, match: str, root: Path, **kw) -> None:
    """The bundle is refused with `match` in its message, and nothing at all is left under `root`."""
    before = folders(root)
    with pytest.raises(BundleError, match=match):
        import_bundle(zip_path, root, **kw)
    assert folders(root) == before


def test_a_changed_byte_fails_its_checksum(bundle, tmp_path):
    _, out = bundle
    files = members(out)
    metrics = bytearray(files["metrics.jsonl"])
    metrics[10] ^= 1                           # the same size, another byte: only the sha256 tells
    files["metrics.jsonl"] = bytes(metrics)
    refused(rezip(tmp_path / "t.zip", files), "metrics.jsonl' does not match its checksum", tmp_path / "runs")
    # a byte changed in the zip itself, inside metrics.jsonl's compressed data: the unpacking fails (bad CRC or
    # broken deflate data) before the checksum is reached
    with zipfile.ZipFile(out) as zf:
        info = zf.getinfo("metrics.jsonl")
    raw = bytearray(out.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    raw[info.header_offset + 30 + name_len + extra_len + info.compress_size // 2] ^= 0xFF
    (tmp_path / "raw.zip").write_bytes(bytes(raw))
    refused(tmp_path / "raw.zip", "could not be unpacked|checksum", tmp_path / "runs")


@pytest.mark.parametrize("name, problem", [
    ("../evil.txt", "leaves its folder"),
    ("adapter/../../evil.txt", "leaves its folder"),
    ("/etc/evil.txt", "an absolute path"),
    ("..\\evil.txt", "backslash"),
    ("C:/evil.txt", "drive letter"),
])
def test_a_name_leaving_the_run_folder_is_refused(bundle, tmp_path, name, problem):
    _, out = bundle
    files = {**members(out), name: b"evil"}
    refused(rezip(tmp_path / "t.zip", files, relist=True), problem, tmp_path / "runs")
    assert not (tmp_path / "evil.txt").exists()


def test_an_unlisted_or_unknown_file_is_refused(bundle, tmp_path):
    _, out = bundle
    refused(rezip(tmp_path / "t.zip", {**members(out), "adapter/extra.bin": b"x"}), "does not list",
            tmp_path / "runs")
    refused(rezip(tmp_path / "u.zip", {**members(out), "run.py": b"import os"}, relist=True),
            "which a run bundle never holds", tmp_path / "runs")
    missing = members(out)
    del missing["log.txt"]
    refused(rezip(tmp_path / "m.zip", missing), "lists 'log.txt', which the bundle does not hold", tmp_path / "runs")
    no_manifest = members(out)
    del no_manifest["manifest.json"]
    refused(rezip(tmp_path / "n.zip", no_manifest), "no manifest.json", tmp_path / "runs")


def test_a_symbolic_link_is_refused(bundle, tmp_path):
    _, out = bundle
    link = zipfile.ZipInfo("adapter/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    refused(rezip(tmp_path / "t.zip", members(out), extra=[(link, b"/etc/passwd")]), "symbolic link",
            tmp_path / "runs")


def test_an_oversized_bundle_and_a_zip_bomb_are_refused(bundle, tmp_path):
    _, out = bundle
    size = out.stat().st_size
    refused(out, "the limit for one upload is 1 kB", tmp_path / "runs", max_bytes=1000)
    assert Run(import_bundle(out, tmp_path / "ok", max_bytes=size)).exists()      # at the limit: fine
    bomb = rezip(tmp_path / "bomb.zip", {**members(out), "metrics.jsonl": b"\n" * 30_000_000}, relist=True)
    assert bomb.stat().st_size < 200_000
    refused(bomb, "unpacks to more than 2 MB", tmp_path / "runs", max_bytes=200_000)   # 10x the upload limit
    refused(out, "unpacks to more than", tmp_path / "runs", max_unpacked=1000)
    refused(rezip(tmp_path / "x.zip", {"manifest.json": b"{}"}, method=zipfile.ZIP_STORED), "not a run bundle",
            tmp_path / "runs")
    (tmp_path / "junk.zip").write_bytes(b"not a zip at all")
    refused(tmp_path / "junk.zip", "not a zip file", tmp_path / "runs")


def test_a_bundle_of_a_running_run_or_of_unknown_settings_is_refused(bundle, tmp_path):
    _, out = bundle
    files = members(out)
    status = json.loads(files["status.json"])
    refused(rezip(tmp_path / "r.zip", {**files, "status.json": json.dumps({**status, "state": "running"}).encode()},
                  relist=True), "only a finished run", tmp_path / "runs")
    record = json.loads(files["config.json"])
    refused(rezip(tmp_path / "k.zip", {**files, "config.json": json.dumps({**record, "kind": "mine"}).encode()},
                  relist=True), "kind 'mine'", tmp_path / "runs")
    bad = {**record, "config": {**record["config"], "steps": 0}}
    refused(rezip(tmp_path / "c.zip", {**files, "config.json": json.dumps(bad).encode()}, relist=True),
            "Training steps must be between", tmp_path / "runs")
    manifest = json.loads(files["manifest.json"])
    newer = {**files, "manifest.json": json.dumps({**manifest, "format_version": 99}).encode()}
    refused(rezip(tmp_path / "v.zip", newer), "made by a newer llmfs", tmp_path / "runs")


def test_a_bundle_error_is_a_value_error_naming_the_fix(bundle, tmp_path):
    _, out = bundle
    with pytest.raises(ValueError) as e:
        import_bundle(rezip(tmp_path / "t.zip", {**members(out), "../x": b""}, relist=True), tmp_path / "runs")
    assert "nothing was saved" in str(e.value) and "Export the run again" in str(e.value)


# -- the command line ---------------------------------------------------------------------------------------------
def cli(home: Path, *args: str) -> tuple[int, dict]:
    env = {**os.environ, "LLMFS_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "llmfs", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def test_cli_exports_and_imports_a_run_into_a_fresh_home(llmfs_home, tmp_path):
    run = make_run(runs_dir(), lora=True)
    out = tmp_path / "take-home.zip"
    code, exported = cli(llmfs_home, "runs", "export", run.run_id, "--out", str(out), "--json")
    assert code == 0 and exported["out"] == str(out) and exported["size_bytes"] == out.stat().st_size
    assert exported["manifest"]["run_id"] == run.run_id
    other = tmp_path / "laptop"
    code, imported = cli(other, "runs", "import", str(out), "--json")
    assert code == 0 and imported["run_id"] == run.run_id and imported["state"] == "succeeded"
    assert imported["imported"]["original_run_id"] == run.run_id
    assert Run(other / "runs" / run.run_id).read_metrics() == run.read_metrics()
    code, listed = cli(other, "runs", "--json")
    assert code == 0 and [(r["run_id"], r["imported"]) for r in listed["runs"]] == [(run.run_id, True)]
    code, listed = cli(llmfs_home, "runs", "list", "--limit", "5", "--json")
    assert code == 0 and [(r["run_id"], r["imported"]) for r in listed["runs"]] == [(run.run_id, False)]
    code, error = cli(other, "runs", "import", str(out), "--json")
    assert code == 2 and f"already imported as {run.run_id}" in error["error"]
    code, error = cli(llmfs_home, "runs", "export", "no-such-run", "--out", str(tmp_path / "x.zip"), "--json")
    assert code == 2 and "No run 'no-such-run'" in error["error"]


def test_zip_members_read_back_in_memory_match_the_export(bundle):
    """export_bytes (the download button's data) holds the same files as export_run's zip."""
    run, out = bundle
    data = bundles.export_bytes(run.path)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        memory = {n: zf.read(n) for n in zf.namelist() if n != "manifest.json"}
    assert memory == {n: b for n, b in members(out).items() if n != "manifest.json"}
