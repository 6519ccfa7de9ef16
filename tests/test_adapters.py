"""The adapter library: real PEFT adapters listed, renamed, deleted, zipped and unzipped, and bad uploads refused."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from llmfs import adapters as ad
from llmfs.runs import Run

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def peft_adapter(tmp_path_factory) -> Path:
    """A real LoRA adapter written by PEFT's save_pretrained on a tiny GPT-2 (built once, never downloaded)."""
    import peft
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=300))
    model.name_or_path = "tiny-gpt2"  # PEFT records it as base_model_name_or_path
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"],
                                                      fan_in_fan_out=True, task_type="CAUSAL_LM"))
    folder = tmp_path_factory.mktemp("peft") / "my-adapter"
    lora.save_pretrained(folder, save_embedding_layers=False)  # skips a Hub lookup of the base model name
    return folder


@pytest.fixture
def adapter_dir(peft_adapter, tmp_path) -> Path:
    """A private copy of the PEFT adapter, free to damage."""
    dest = tmp_path / "src-adapter"
    shutil.copytree(peft_adapter, dest)
    return dest


def make_run(run_id: str, adapter: Path, created: float = 1000.0) -> Path:
    """A LoRA training run that has saved its adapter."""
    run = Run.create(ad.runs_dir() / run_id, "lora", {"rank": 4})
    record = json.loads((run.path / "config.json").read_text())
    (run.path / "config.json").write_text(json.dumps({**record, "created": created}))
    shutil.copytree(adapter, run.path / "adapter")
    return run.path


def zip_bytes(files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # Unix, so the mode bits below mean what they say
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def adapter_files(folder: Path, prefix: str = "") -> dict[str, bytes]:
    return {prefix + f: (folder / f).read_bytes() for f in ad.ADAPTER_FILES}


def library_entries() -> list[str]:
    lib = ad.library_dir()
    return sorted(p.name for p in lib.iterdir()) if lib.exists() else []


# -- reading and listing -------------------------------------------------------------------------------------------
def test_read_adapter_reads_the_peft_config(llmfs_home, adapter_dir):
    assert ad.is_adapter_dir(adapter_dir) and not ad.is_adapter_dir(adapter_dir.parent)
    info = ad.read_adapter(adapter_dir)
    assert (info.rank, info.alpha, info.targets, info.base_model) == (4, 8.0, ("c_attn",), "tiny-gpt2")
    assert info.origin == "folder" and info.name == "src-adapter" and info.run_id is None
    assert info.size_bytes >= (adapter_dir / "adapter_model.safetensors").stat().st_size
    assert json.loads(json.dumps(info.to_dict()))["targets"] == ["c_attn"]


def test_list_finds_library_and_run_adapters_newest_first(llmfs_home, adapter_dir):
    assert ad.list_adapters() == []  # nothing yet, and no folders needed
    run_path = make_run("20240101-000000-lora-abc123", adapter_dir, created=1000.0)
    lib = ad.import_folder(adapter_dir, name="Support tone")
    # A broken folder, an import in progress and a run without an adapter are all skipped, never raised.
    broken = ad.library_dir() / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{not json")
    (broken / "adapter_model.safetensors").write_bytes(b"x")
    shutil.copytree(adapter_dir, ad.library_dir() / ".import-half")
    Run.create(ad.runs_dir() / "20240101-000001-sft-def456", "sft", {})

    found = ad.list_adapters()
    assert [a.id for a in found] == [lib.id, "run:20240101-000000-lora-abc123"]
    first, second = found
    assert (first.origin, first.name, first.id) == ("library", "Support tone", "lib:support-tone")
    assert (second.origin, second.name, second.run_id, second.run_state) == (
        "run", "20240101-000000-lora-abc123", "20240101-000000-lora-abc123", "pending")
    assert second.created == 1000.0 and second.path == run_path / "adapter"
    for a in found:
        assert (a.rank, a.alpha, a.targets, a.base_model) == (4, 8.0, ("c_attn",), "tiny-gpt2")


def test_read_adapter_refuses_non_lora_and_unreadable_configs(llmfs_home, adapter_dir):
    with pytest.raises(ad.AdapterError, match="not an adapter folder"):
        ad.read_adapter(adapter_dir.parent)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    (adapter_dir / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "PREFIX_TUNING"}))
    with pytest.raises(ad.AdapterError, match="only LoRA"):
        ad.read_adapter(adapter_dir)
    (adapter_dir / "adapter_config.json").write_text("{")
    with pytest.raises(ad.AdapterError, match="cannot be read as JSON"):
        ad.read_adapter(adapter_dir)


def test_get_adapter_by_id_or_path(llmfs_home, adapter_dir):
    lib = ad.import_folder(adapter_dir, name="A")
    make_run("r1", adapter_dir)
    assert ad.get_adapter(lib.id).path == lib.path
    assert ad.get_adapter(str(lib.path)).id == lib.id  # a path inside the library gets the library id
    assert ad.get_adapter(ad.runs_dir() / "r1" / "adapter").id == "run:r1"
    assert ad.get_adapter("run:r1").origin == "run"
    for bad in ("lib:nope", "run:nope", "lib:../..", "lib:", str(llmfs_home / "nothing")):
        with pytest.raises(ad.AdapterError):
            ad.get_adapter(bad)


def test_owner_is_the_runs_user_or_who_imported_it(llmfs_home, adapter_dir):
    """A workshop decides who may use an adapter from its owner: a run's participant, or whoever uploaded it."""
    run_path = make_run("r1", adapter_dir)
    Run(run_path).update_status(user="ana")
    uploaded = ad.import_zip(zip_bytes(adapter_files(adapter_dir)), name="Ben's", user="ben")
    anonymous = ad.import_folder(adapter_dir, name="Nobody's")
    assert json.loads((uploaded.path / ad.META_FILE).read_text())["user"] == "ben"
    assert "user" not in json.loads((anonymous.path / ad.META_FILE).read_text())
    owners = {a.id: a.user for a in ad.list_adapters()}
    assert owners == {"run:r1": "ana", uploaded.id: "ben", anonymous.id: None}
    assert ad.rename_adapter(uploaded.id, "Renamed").user == "ben"  # a rename keeps the owner
    assert ad.read_adapter(adapter_dir).user is None and ad.get_adapter(uploaded.id).to_dict()["user"] == "ben"


# -- rename and delete --------------------------------------------------------------------------------------------
def test_rename_persists_and_never_moves_the_folder(llmfs_home, adapter_dir):
    lib = ad.import_folder(adapter_dir, name="First")
    renamed = ad.rename_adapter(lib.id, "  Second name  ")
    assert (renamed.name, renamed.id, renamed.path, renamed.created) == ("Second name", lib.id, lib.path, lib.created)
    assert [a.name for a in ad.list_adapters()] == ["Second name"]
    make_run("r1", adapter_dir)
    assert ad.rename_adapter("run:r1", "From training").name == "From training"
    assert ad.get_adapter("run:r1").name == "From training"
    for bad, why in (("   ", "empty"), ("x" * 81, "at most 80"), ("two\nlines", "control characters")):
        with pytest.raises(ad.AdapterError, match=why):
            ad.rename_adapter(lib.id, bad)
    assert ad.get_adapter(lib.id).name == "Second name"


def test_delete_library_and_run_adapters(llmfs_home, adapter_dir):
    lib = ad.import_folder(adapter_dir, name="Gone soon")
    run_path = make_run("r1", adapter_dir)
    ad.delete_adapter(lib.id)
    assert not lib.path.exists() and library_entries() == []
    ad.delete_adapter("run:r1")
    assert not (run_path / "adapter").exists()
    # The run itself stays, with its record, and nothing hidden is left behind.
    assert sorted(p.name for p in run_path.iterdir()) == ["config.json", "log.txt", "metrics.jsonl", "status.json"]
    assert ad.list_adapters() == []
    with pytest.raises(ad.AdapterError, match="No adapter"):
        ad.delete_adapter(lib.id)
    with pytest.raises(ad.AdapterError, match="only those can be deleted"):
        ad.delete_adapter(str(adapter_dir))  # a folder outside the library is never deleted here
    assert adapter_dir.exists()


# -- zip export and import ----------------------------------------------------------------------------------------
def test_zip_round_trip_is_byte_identical(llmfs_home, adapter_dir, tmp_path):
    make_run("r1", adapter_dir)
    data = ad.export_zip("run:r1")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
    out = ad.write_zip("run:r1", tmp_path / "out" / "a.zip")
    assert out.read_bytes() == data

    info = ad.import_zip(data, name="Round trip")
    assert (info.origin, info.name, info.id) == ("library", "Round trip", "lib:round-trip")
    assert (info.path / "adapter_model.safetensors").read_bytes() == (
        adapter_dir / "adapter_model.safetensors").read_bytes()
    assert json.loads((info.path / "adapter_config.json").read_text()) == json.loads(
        (adapter_dir / "adapter_config.json").read_text())
    assert (info.path / "README.md").is_file()
    # Same name again: a new folder with a numbered slug, the first one untouched.
    again = ad.import_zip(data, name="Round trip")
    assert again.id == "lib:round-trip-2" and ad.get_adapter(info.id).path.exists()


def test_zip_nested_in_one_folder_is_accepted(llmfs_home, adapter_dir):
    files = adapter_files(adapter_dir, prefix="My Adapter/")
    files.update({"My Adapter/": b"", "__MACOSX/My Adapter/._adapter_config.json": b"junk",
                  "My Adapter/.DS_Store": b"junk"})
    info = ad.import_zip(zip_bytes(files))
    assert (info.name, info.id, info.rank) == ("My Adapter", "lib:my-adapter", 4)
    assert sorted(p.name for p in info.path.iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "llmfs_adapter.json"]


def test_import_folder_copies_only_adapter_files(llmfs_home, adapter_dir):
    (adapter_dir / "notes.pkl").write_bytes(b"not copied")
    info = ad.save_to_library(adapter_dir, "Copied")
    assert not (info.path / "notes.pkl").exists() and (info.path / "README.md").exists()
    assert (info.path / "adapter_model.safetensors").read_bytes() == (
        adapter_dir / "adapter_model.safetensors").read_bytes()
    with pytest.raises(ad.AdapterError, match="not an adapter folder"):
        ad.import_folder(adapter_dir.parent)
    (adapter_dir / "adapter_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ad.AdapterError, match="not a valid safetensors"):
        ad.import_folder(adapter_dir)
    assert library_entries() == [info.path.name]


def _bad_zips(adapter: Path) -> dict[str, tuple[bytes, dict, str]]:
    """name -> (zip bytes, import_zip kwargs, expected message fragment)."""
    good = adapter_files(adapter)
    config = json.loads(good["adapter_config.json"])
    zeros = b"\0" * (4 * 1024 * 1024)  # deflates to a few KiB: a miniature zip bomb
    bomb = zip_bytes({**good, "README.md": zeros})
    import torch
    from safetensors.torch import save as st_save
    return {
        "traversal": (zip_bytes({**good, "../evil/README.md": b"x"}), {}, "points outside"),
        "backslash traversal": (zip_bytes({**good, "..\\evil.txt": b"x"}), {}, "points outside"),
        "absolute": (zip_bytes({**good, "/tmp/README.md": b"x"}), {}, "points outside"),
        "symlink": (zip_bytes(good, symlinks={"README.md": "/etc/passwd"}), {}, "symbolic link"),
        "extra file": (zip_bytes({**good, "model.pkl": b"x"}), {}, "may hold only adapter_config.json"),
        "nested folder": (zip_bytes({**adapter_files(adapter, "a/b/")}), {}, "not allowed"),
        "two folders": (zip_bytes({"a/adapter_config.json": good["adapter_config.json"],
                                   "b/adapter_model.safetensors": good["adapter_model.safetensors"]}),
                        {}, "exactly one folder"),
        "upload too big": (zip_bytes(good), {"max_bytes": 100}, "over the"),
        "zip bomb": (bomb, {"max_bytes": len(bomb) + 1}, "unpacks to more than"),
        "corrupt safetensors": (zip_bytes({**good, "adapter_model.safetensors": b"\x08" + b"\0" * 7 + b"{oops"}),
                                {}, "not a valid safetensors"),
        "no lora tensors": (zip_bytes({**good, "adapter_model.safetensors": st_save({"w": torch.zeros(2)})}),
                            {}, "no lora_A / lora_B"),
        "missing config": (zip_bytes({"adapter_model.safetensors": good["adapter_model.safetensors"]}), {},
                           "missing adapter_config.json"),
        "config not json": (zip_bytes({**good, "adapter_config.json": b"{"}), {}, "cannot be read as JSON"),
        "not lora": (zip_bytes({**good, "adapter_config.json": json.dumps({**config, "peft_type": "IA3"}).encode()}),
                     {}, "only LoRA"),
        "bad rank": (zip_bytes({**good, "adapter_config.json": json.dumps({**config, "r": 0}).encode()}),
                     {}, "positive integer"),
        "not a zip": (b"PK\x03\x04 but not really a zip at all", {}, "is not a zip file"),
        "bad name": (zip_bytes(good), {"name": "\t"}, "cannot be empty"),
    }


def test_bad_zips_are_refused_and_leave_nothing_behind(llmfs_home, adapter_dir):
    for case, (data, kwargs, message) in _bad_zips(adapter_dir).items():
        with pytest.raises(ad.AdapterError, match=message):
            ad.import_zip(data, **kwargs)
        assert library_entries() == [], case
    assert ad.list_adapters() == []
    assert not (llmfs_home.parent / "evil").exists()


# -- what an adapter was trained on, and a base named portably ------------------------------------------------------
def test_a_trained_adapter_records_what_it_learned_from_and_is_named_by_it(llmfs_home, adapter_dir):
    """The library says what data, steps, rank and base each adapter was trained on, and calls it by that (not by
    its run id) until someone renames it; a copy into the library keeps the record."""
    from llmfs.defaults import default_assets
    run_path = make_run("20240101-000000-lora-abc123", adapter_dir)
    folder = run_path / "adapter"
    local_base = default_assets().model_dir
    local_base.mkdir(parents=True)
    info = ad.record_training(folder, base=str(local_base), data=str(llmfs_home / "uploads" / "my_notes.txt"),
                              steps=200, rank=8, alpha=16.0, targets="qkv", quantize="4bit", final_loss=2.5,
                              eval_loss=2.75, run_id=run_path.name)
    assert info.name == "rank 8 on qkv, 4-bit · my_notes.txt · 200 steps" and not info.renamed
    t = info.training
    assert (t["base"], t["base_path"], t["data_label"], t["steps"], t["rank"], t["alpha"], t["targets"]) == (
        "llmfs-tiny", str(local_base.resolve()), "my_notes.txt", 200, 8, 16.0, "qkv")
    assert (t["quantize"], t["final_loss"], t["eval_loss"], t["run_id"]) == ("4bit", 2.5, 2.75, run_path.name)
    # the exported config names a base another machine resolves; this server's folder stays in llmfs's record
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "llmfs-tiny" and info.base_model == "llmfs-tiny"
    assert json.loads((folder / ad.META_FILE).read_text())["training"]["base_path"] == str(local_base.resolve())
    renamed = ad.rename_adapter(info.id, "My support tone")
    assert renamed.name == "My support tone" and renamed.renamed and renamed.training == info.training
    copy = ad.import_folder(folder)
    assert copy.name == "My support tone" and copy.training == info.training


def test_an_adapter_from_a_named_run_takes_the_runs_name(llmfs_home, adapter_dir):
    folder = make_run("20240101-000000-lora-def456", adapter_dir) / "adapter"
    info = ad.record_training(folder, base="llmfs-tiny", data="llmfs-corpus", steps=30, rank=4, alpha=8.0,
                              targets="qkv", name="  my sonnets  ")
    assert info.name == "my sonnets" and info.renamed
    assert ad.record_training(folder, base="llmfs-tiny", data="llmfs-corpus", steps=30, rank=4, alpha=8.0,
                              targets="qkv", name="other").name == "my sonnets"   # a name once given stays


def test_old_run_adapters_are_named_from_their_run(llmfs_home, adapter_dir):
    """An adapter saved before runs recorded what they trained on is described from its run's own config."""
    run = Run.create(ad.runs_dir() / "r1", "train", {"lora_rank": 4, "lora_alpha": 8.0, "lora_targets": "qkv,mlp_in",
                                                     "data": "llmfs-corpus", "steps": 30, "model": "llmfs-tiny"})
    shutil.copytree(adapter_dir, run.path / "adapter")
    run.update_status(result={"steps": 12, "final_loss": 3.0})
    info = ad.get_adapter("run:r1")
    assert info.name == "rank 4 on qkv, mlp_in · llmfs-corpus · 12 steps"
    assert info.training["final_loss"] == 3.0 and info.training["base"] == "llmfs-tiny"


def test_export_names_the_base_portably_even_for_adapters_saved_with_a_server_path(llmfs_home, adapter_dir):
    from llmfs.defaults import default_assets
    config_path = adapter_dir / "adapter_config.json"
    server_path = str(default_assets().model_dir)
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "base_model_name_or_path": server_path}))
    info = ad.import_folder(adapter_dir, name="old")
    assert info.base_model == "llmfs-tiny"  # listed (and grouped) by the name, not the folder
    with zipfile.ZipFile(io.BytesIO(ad.export_zip(info.id))) as zf:
        assert json.loads(zf.read("adapter_config.json"))["base_model_name_or_path"] == "llmfs-tiny"
    # a hub id is left as it is
    assert ad.portable_base("openai-community/gpt2") == "openai-community/gpt2"
    assert ad.data_label(str(ad.runs_dir() / "20260101-000000-pipeline-3f9a2c" / "shards")) == "shards of run 3f9a2c"
    assert ad.data_label("hf:wikitext") == "hf:wikitext" and ad.data_label("/data/my_notes.txt") == "my_notes.txt"
    assert ad.portable_base(server_path + "/") == "llmfs-tiny"
