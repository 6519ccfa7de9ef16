"""The Runs page's run bundles (AppTest, seeded run folders, no training): a finished run offers "Download this run
(.zip)"; a bundle uploaded under "Import a run" becomes a run, opened and marked imported (in a workshop, the
importer's); a refused bundle says why where it was uploaded and saves nothing."""

from __future__ import annotations

import shutil

import pytest
from apphelpers import open_page, texts
from test_workshop_ui import open_as, workshop_limits

from llmfs import bundles
from llmfs.runs import Run

pytestmark = pytest.mark.usefixtures("router_on_every_run")  # see tests/app/conftest.py

RUNS = "pages/runs.py"
DOWNLOAD = "Download this run (.zip)"


def downloads(at) -> list[str]:
    return [e.proto.label for e in at.get("download_button")]


def bundle_of(home, run_id: str, remove: bool = True) -> bytes:
    """The run's bundle as the download button makes it; `remove`: then its folder deleted (as if made elsewhere)."""
    data = bundles.export_bytes(home / "runs" / run_id)
    if remove:
        shutil.rmtree(home / "runs" / run_id)
    return data


def test_a_finished_run_offers_its_download_and_says_what_the_zip_holds(llmfs_home, seed):
    running = seed(state="running", done=3)
    finished = seed()
    at = open_page(RUNS)
    at.multiselect(key="runs.selected").set_value([finished]).run()
    assert DOWNLOAD in downloads(at)
    assert "A saved model is not in it, only its recipe" in texts(at.caption)
    at.multiselect(key="runs.selected").set_value([running]).run()
    assert DOWNLOAD not in downloads(at)
    assert "Once this run has finished, it can be downloaded" in texts(at.caption)


def test_an_uploaded_bundle_is_imported_opened_and_marked_imported(llmfs_home, seed):
    run_id = seed(owner="l12")
    Run(llmfs_home / "runs" / run_id).rename("ann's run")
    data = bundle_of(llmfs_home, run_id)
    at = open_page(RUNS)
    assert "No runs yet" in texts(at.info)         # the import is offered on an empty page too
    at.file_uploader(key="runs.import").set_value(("ann.zip", data, "application/zip")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Imported **ann.zip**" in texts(at.success) and "marked imported" in texts(at.success)
    assert at.multiselect(key="runs.selected").value == [run_id]          # opened
    assert any("imported" in option and run_id in option for option in at.multiselect(key="runs.selected").options)
    table = at.dataframe[0].value.set_index("run")
    assert table.loc[run_id, "started from"] == "imported · L12 Pretrained weights"
    status = Run(llmfs_home / "runs" / run_id).status()
    assert status["imported"]["original_run_id"] == run_id and status["user"] is None   # a single lab: the importer's
    assert DOWNLOAD in downloads(at)                                     # and it can go on elsewhere again
    # the same file again: said once, nothing duplicated
    at.file_uploader(key="runs.import").set_value(("ann-again.zip", data, "application/zip")).run()
    assert f"already imported as {run_id}" in texts(at.error)
    assert [p.name for p in (llmfs_home / "runs").iterdir()] == [run_id]


def test_a_refused_bundle_says_why_under_the_uploader_and_saves_nothing(llmfs_home, seed):
    keep = seed()
    at = open_page(RUNS)
    at.file_uploader(key="runs.import").set_value(("junk.zip", b"not a zip", "application/zip")).run()
    assert not at.exception
    assert "junk.zip** was not imported: junk.zip is not a zip file" in texts(at.error)
    running = seed(state="running", done=2)
    with pytest.raises(bundles.BundleError):
        bundles.export_bytes(llmfs_home / "runs" / running)
    assert sorted(p.name for p in (llmfs_home / "runs").iterdir()) == sorted([keep, running])
    assert at.dataframe and not at.success


def test_in_a_workshop_an_import_is_the_participants_and_downloads_are_the_owners(llmfs_home, seed):
    workshop_limits(llmfs_home)
    anns = seed(owner="l12")
    Run(llmfs_home / "runs" / anns).update_status(user="ann")
    data = bundle_of(llmfs_home, seed(owner="l15"))
    at = open_as("bea", RUNS)
    at.multiselect(key="runs.selected").set_value([anns]).run()
    assert DOWNLOAD not in downloads(at)                              # ann's run: hers to take home
    assert "Only the person who started this run" in texts(at.caption)
    at.file_uploader(key="runs.import").set_value(("mine.zip", data, "application/zip")).run()
    assert not at.exception, [e.value for e in at.exception]
    (imported,) = at.multiselect(key="runs.selected").value
    assert Run(llmfs_home / "runs" / imported).status()["user"] == "bea"
    assert DOWNLOAD in downloads(at)                      # hers now
    table = at.dataframe[0].value.set_index("run")
    assert table.loc[imported, "started from"] == "imported · L15 LoRA & QLoRA"
    assert table.loc[imported, "user"] == "bea (you)"
