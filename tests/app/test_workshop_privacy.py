"""Workshop privacy in the app (AppTest, seeded run folders, no training): everyone sees everyone's figures, but a
run's texts (samples, logs, dropped documents, scored questions) and downloads are its owner's and the instructor's
unless the limits file shares them (share_runs = "all"); participants never see server paths, the instructor does.
A single person's lab shows everything (the other lesson tests)."""

from __future__ import annotations

import json
from pathlib import Path

import apphelpers  # tests/app is on sys.path
import pytest
from apphelpers import texts
from streamlit.testing.v1 import AppTest
from test_l13 import seed_pipeline_run
from test_l14 import item, seed_eval
from test_workshop_ui import instructor, open_as, unlock, workshop_limits  # noqa: F401 (a fixture)

from app import identity
from llmfs import adapters as ad
from llmfs.runs import Run
from llmfs.uploads import person_folder

pytestmark = pytest.mark.usefixtures("router_on_every_run")  # see tests/app/conftest.py

RUNS, L12, L13, L14, L15 = ("pages/runs.py", "pages/l12_pretrained.py", "pages/l13_data.py", "pages/l14_eval.py",
                            "pages/l15_lora.py")
PIPELINE_SAMPLE = "Click here. Menu."  # a dropped document of test_l13's seeded pipeline run
SHARE_ALL = 'share_runs = "all"\n'


# -- seeding ----------------------------------------------------------------------------------------------------
def owned_by(home: Path, run_id: str, user: str) -> str:
    Run(home / "runs" / run_id).update_status(user=user)
    return run_id


def seed_training(home: Path, seed, user: str, **kw) -> str:
    """A finished L12 run of `user` on their own upload, with a log line and before / after samples that name them
    (and quote server paths, as real logs do)."""
    upload = home / "uploads" / person_folder(user) / "notes.jsonl"
    run_id = seed(owner="l12", data=str(upload), **kw)
    run = Run(home / "runs" / run_id)
    run.log(f"{user}'s log line: reading {upload}")
    result = {**(run.status().get("result") or {}),
              "samples": [{"prompt": f"{user}'s prompt", "before": f"{user}'s text before",
                           "after": f"{user}'s text after"}]}
    run.update_status(result=result)
    return owned_by(home, run_id, user)


def seed_failed(home: Path, seed, user: str) -> str:
    """A failed run whose error names a server path (the traceback comes from `seed`)."""
    run_id = seed(state="failed", done=3, owner="l12")
    Run(home / "runs" / run_id).update_status(error=f"No data at {home}/uploads/{person_folder(user)}/gone.jsonl")
    return owned_by(home, run_id, user)


def seed_questions(home: Path, user: str, model: str = "llmfs-tiny") -> str:
    """A finished evaluation of `user` whose questions name them (all answered wrong, so all are listed)."""
    items = [{**item(i, [-1.0, -5.0, -6.0, -9.0], 3), "prompt": f"{user}'s question {i}"} for i in range(2)]
    return owned_by(home, seed_eval(home, model, "llmfs-cloze", items), user)


def adapter_zip() -> bytes:
    """The smallest upload the library accepts: a LoRA config and a safetensors file holding one lora_A matrix."""
    import io
    import zipfile

    import torch
    from safetensors.torch import save

    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["c_attn"],
              "base_model_name_or_path": "llmfs-tiny"}
    weights = save({"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight": torch.zeros(4, 32)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("adapter_config.json", json.dumps(config))
        zf.writestr("adapter_model.safetensors", weights)
    return buf.getvalue()


def seed_adapters(home: Path, seed) -> tuple[ad.AdapterInfo, ad.AdapterInfo]:
    """Ana's uploaded adapter and the adapter Ben's LoRA run saved."""
    data = adapter_zip()
    anas = ad.import_zip(data, name="anas-adapter", user="ana")
    bens_run = owned_by(home, seed(owner="l15"), "ben")
    staged = ad.import_zip(data, name="staging")  # unpacked by the library, then moved into Ben's run
    staged.path.rename(home / "runs" / bens_run / "adapter")
    return anas, ad.get_adapter(f"run:{bens_run}")


# -- reading the page -------------------------------------------------------------------------------------------
def everything_shown(at: AppTest) -> str:
    """Every text a browser would receive from the page: messages, code, texts, labels, options and tables."""
    parts = [apphelpers.unescaped(texts(getattr(at, kind))) for kind in ("markdown", "caption", "error", "warning",
                                                                         "info", "success")]
    parts += [texts(getattr(at, kind)) for kind in ("code", "text", "text_area")] + [apphelpers.html_texts(at)]
    parts += [e.label for e in at.expander]
    parts += [d.value.to_csv() for d in at.dataframe]
    parts += [str(o) for widget in (*at.selectbox, *at.multiselect) for o in widget.options]
    return "\n".join(parts)


def open_run(at: AppTest, *run_ids: str) -> AppTest:
    at.multiselect(key="runs.selected").set_value(list(run_ids)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def as_instructor(page: str) -> AppTest:
    at = unlock(open_as("Ivy", "pages/instructor.py"))
    assert identity.UNLOCKED in at.session_state
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def downloads(at: AppTest) -> list[str]:
    """The download buttons that hand out a run's or an adapter's files (not settings: the page's form's, or those
    of the person's own latest run under 'Repeat this run')."""
    return [e.proto.label for e in at.get("download_button")
            if e.proto.label not in ("Save these settings", "Download these settings (.toml)")]


def withheld(at: AppTest) -> bool:
    return identity.WITHHELD in texts(at.caption)


# -- training runs: log and samples -----------------------------------------------------------------------------
def test_a_participant_reads_their_own_log_not_someone_elses(llmfs_home, seed):
    workshop_limits(llmfs_home)
    anas, bens = seed_training(llmfs_home, seed, "ana"), seed_training(llmfs_home, seed, "ben")
    at = open_as("ana", RUNS)
    assert at.multiselect(key="runs.selected").value == [anas]
    assert "ana's log line: reading notes.jsonl" in texts(at.code)  # her own log, its path turned into a name
    assert not withheld(at)
    open_run(at, bens)
    assert "ben's log line" not in everything_shown(at)
    assert withheld(at)
    assert len(at.get("plotly_chart")) == 3  # his curves stay visible: a class learns together
    assert "Training loss" in [m.label for m in at.metric]


def test_samples_are_shown_to_their_owner_only(llmfs_home, seed):
    workshop_limits(llmfs_home)
    seed_training(llmfs_home, seed, "ben")
    shown = everything_shown(open_as("ben", L12))
    assert "ben's prompt" in shown and "ben's text after" in shown
    anas = seed_training(llmfs_home, seed, "ana")
    for lesson in ("l12", "l15"):  # the lesson pages show only your own runs: their views check it again
        at = run_function(_samples, "ben", lesson, anas)
        assert "ana's" not in everything_shown(at) and withheld(at)
        assert "ana's text after" in everything_shown(run_function(_samples, "ana", lesson, anas))


def run_function(script, name: str, *args) -> AppTest:
    """`script(*args)` as a page of its own, in a session of the participant `name`."""
    at = AppTest.from_function(script, args=args, default_timeout=30)
    at.session_state[identity.NAME_KEY] = name
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _samples(lesson: str, run_id: str) -> None:
    from app import l12_view, lora_view, state
    if lesson == "l12":
        l12_view.samples(run_id)
    else:
        status = state.jobs().get(run_id).status()
        lora_view.samples(run_id, status["result"], status.get("user"))


def test_the_instructor_reads_everyones_texts_tracebacks_and_paths(instructor, seed):
    workshop_limits(instructor)
    bens, failed = seed_training(instructor, seed, "ben"), seed_failed(instructor, seed, "ben")
    at = as_instructor(RUNS)
    open_run(at, bens, failed)
    assert str(instructor) in everything_shown(at)  # the settings that differ: the uploads' folders
    open_run(at, bens)
    assert "ben's log line" in texts(at.code) and str(instructor) in texts(at.code)  # the instructor sees paths
    assert not withheld(at)
    open_run(at, failed)
    assert f"No data at {instructor}/uploads" in apphelpers.unescaped(texts(at.error))
    assert "Technical details (traceback)" in [e.label for e in at.expander]


def test_the_limits_table_shows_switches_lists_and_choices(instructor):
    workshop_limits(instructor, 'max_steps = 500\nallow_urls = true\nshared_paths = ["/data/class"]\n')
    at = unlock(open_as("Ivy", "pages/instructor.py"))
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "setting" in d.value.columns).set_index("setting")["value"]
    assert (table["max_steps"], table["max_params"], table["allow_urls"], table["allow_hub"]) == (
        "500", "no limit", "true", "true")
    assert table["shared_paths"] == "/data/class" and table["share_runs"] == "figures"


def test_errors_hide_paths_and_tracebacks_are_for_the_instructor(llmfs_home, seed):
    workshop_limits(llmfs_home)
    failed = seed_failed(llmfs_home, seed, "ben")
    for name in ("ben", "ana"):  # the owner too: a participant never sees the server's paths
        at = open_run(open_as(name, RUNS), failed)
        assert "No data at gone.jsonl" in texts(at.error)
        assert "Technical details (traceback)" not in [e.label for e in at.expander]
        assert "FloatingPointError" not in everything_shown(at)


def test_share_runs_all_shows_everyones_texts(llmfs_home, seed):
    workshop_limits(llmfs_home, SHARE_ALL)
    bens = seed_training(llmfs_home, seed, "ben")
    pipeline = owned_by(llmfs_home, seed_pipeline_run(llmfs_home), "ben")
    at = open_run(open_as("ana", RUNS), bens)
    assert "ben's log line" in texts(at.code) and not withheld(at)
    open_run(at, pipeline)
    assert PIPELINE_SAMPLE in texts(at.text)
    assert str(llmfs_home) not in everything_shown(at)  # shared texts, still no server paths


# -- pipelines: dropped documents, duplicates, unreadable records ---------------------------------------------
def test_dropped_documents_are_their_owners(llmfs_home, seed):
    workshop_limits(llmfs_home)
    run_id = owned_by(llmfs_home, seed_pipeline_run(llmfs_home), "ana")
    at = open_run(open_as("ana", RUNS), run_id)
    assert PIPELINE_SAMPLE in texts(at.text) and "The same story, again." in texts(at.text)
    assert "Use this data for training" in texts(at.markdown) and run_id in texts(at.markdown)
    assert str(llmfs_home) not in everything_shown(at)  # the shards' folder is named by its run, not its path

    at = open_run(open_as("ben", RUNS), run_id)
    shown = everything_shown(at)
    assert PIPELINE_SAMPLE not in shown and "The same story" not in shown and "not valid JSON" not in shown
    assert "Use this data for training" not in shown
    assert withheld(at)
    assert {m.label: m.value for m in at.metric}["Kept"] == "6"  # the counts and the funnel are for everyone
    assert len(at.get("plotly_chart")) >= 4


def test_pipeline_outputs_offered_for_training_are_the_persons_own(llmfs_home):
    workshop_limits(llmfs_home)
    run_id = owned_by(llmfs_home, seed_pipeline_run(llmfs_home), "ana")
    assert run_function(_outputs, "ana").session_state["outputs"] == [run_id]
    assert run_function(_outputs, "ben").session_state["outputs"] == []


def _outputs() -> None:
    import streamlit as st

    from app import pipeline_view
    st.session_state["outputs"] = [o["run_id"] for o in pipeline_view.pipeline_outputs()]


# -- evaluations: the questions a model got wrong ---------------------------------------------------------------
def test_scored_questions_are_their_owners(llmfs_home):
    workshop_limits(llmfs_home)
    bens = seed_questions(llmfs_home, "ben")
    anas = seed_questions(llmfs_home, "ana")  # the newest: the one the drill-down would open first
    at = open_as("ben", L14)
    assert set(at.dataframe[0].value["run"]) == {anas, bens}  # everyone's scores in the table
    assert len(at.selectbox(key="l14.drill").options) == 1 and at.selectbox(key="l14.drill").value == bens
    shown = everything_shown(at)
    assert "ana's question" not in shown and "ben's question 0" in shown
    assert "Other people's evaluations" in texts(at.caption)
    assert str(llmfs_home) not in shown

    at = open_as("ana", L14)
    assert at.selectbox(key="l14.drill").value == anas
    assert "ana's question 0" in everything_shown(at) and "Other people's" in texts(at.caption)


# -- adapters ---------------------------------------------------------------------------------------------------
def test_adapters_are_listed_for_all_but_used_by_their_owner(llmfs_home, seed):
    workshop_limits(llmfs_home)
    anas, bens = seed_adapters(llmfs_home, seed)
    at = open_as("ben", L15)
    table = next(d.value for d in at.dataframe if "name" in d.value.columns)
    assert set(table["name"]) == {"anas-adapter", bens.name} and set(table["by"]) == {"ana", "ben"}
    at.selectbox(key="l15.lib.pick").set_value(anas.id).run()
    assert not at.exception
    assert downloads(at) == []
    assert at.button(key="l15.lib.rename").disabled and at.button(key="l15.lib.delete").disabled
    assert "anas-adapter is ana's" in texts(at.caption)
    at.selectbox(key="l15.lib.pick").set_value(bens.id).run()
    assert downloads(at) == ["Download"] and not at.button(key="l15.lib.delete").disabled
    assert at.selectbox(key="l15.swap.a").options == [bens.name]  # swap and merge offer only his own
    assert [o for o in at.selectbox(key="l15.merge.pick").options if "anas-adapter" in o] == []
    assert str(llmfs_home) not in everything_shown(at)

    at = open_as("ben", L14)  # L14 offers his adapters by name, never a folder to type
    assert [o.split(" · ")[0] for o in at.multiselect(key="l14.adapter_pick").options] == [bens.name]
    assert at.text_input(key="l14.adapters").placeholder in (None, "")


def test_the_instructor_and_share_all_may_download_others_adapters(instructor, seed):
    workshop_limits(instructor)
    anas, _ = seed_adapters(instructor, seed)
    at = as_instructor(L15)
    at.selectbox(key="l15.lib.pick").set_value(anas.id).run()
    assert downloads(at) == ["Download"] and not at.button(key="l15.lib.delete").disabled
    assert str(anas.path) in texts(at.caption)

    workshop_limits(instructor, SHARE_ALL)
    at = open_as("ben", L15)
    at.selectbox(key="l15.lib.pick").set_value(anas.id).run()
    assert downloads(at) == ["Download"]
    assert at.button(key="l15.lib.delete").disabled  # shared to use, still hers to rename or delete
    assert "anas-adapter" in at.selectbox(key="l15.swap.a").options


def test_an_uploaded_adapter_is_recorded_under_the_participant(llmfs_home):
    workshop_limits(llmfs_home)
    at = open_as("ana", L15)
    at.file_uploader(key="l15.lib.upload").set_value(("mine.zip", adapter_zip(), "application/zip")).run()
    assert not at.exception and "Added **mine**" in texts(at.success)
    (info,) = ad.list_adapters()
    assert info.user == "ana"


def test_a_merged_model_goes_in_the_participants_folder(llmfs_home):
    workshop_limits(llmfs_home)
    at = run_function(_models_dir, "ana")
    assert at.session_state["folder"] == str(llmfs_home / "models" / person_folder("ana"))


def _models_dir() -> None:
    import streamlit as st

    from app import adapter_view
    st.session_state["folder"] = str(adapter_view.models_dir())


# -- no server path reaches a participant -----------------------------------------------------------------------
@pytest.mark.parametrize("page", [L12, L13, L14, L15, RUNS])
def test_no_page_shows_a_participant_the_servers_paths(llmfs_home, seed, page):
    workshop_limits(llmfs_home)
    saved = str(llmfs_home / "models" / person_folder("ana") / "mine")
    trained = seed_training(llmfs_home, seed, "ana", model=saved)
    failed = seed_failed(llmfs_home, seed, "ana")
    owned_by(llmfs_home, seed_pipeline_run(llmfs_home), "ana")
    seed_questions(llmfs_home, "ana", model=saved)
    seed_adapters(llmfs_home, seed)
    at = open_as("ana", page)
    assert str(llmfs_home) not in everything_shown(at)
    if page == RUNS:
        for selected in ([trained, failed], [trained], [failed]):  # the settings that differ; each run's panel
            assert str(llmfs_home) not in everything_shown(open_run(at, *selected))


def test_training_data_is_counted_only_where_the_person_may_read_it(llmfs_home):
    """The counts under the data picker read the file: in a workshop, someone else's upload is refused there
    (without saying whether it exists), never counted."""
    workshop_limits(llmfs_home)
    theirs = llmfs_home / "uploads" / person_folder("ana") / "diary.txt"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("Ana's private diary. " * 20)
    at = open_as("ben", L15)
    at.selectbox(key="l15.data.kind").set_value("path").run()
    at.text_input(key="l15.data.path").input(str(theirs)).run()
    assert "not yours to read in this workshop" in texts(at.error).replace("\\", "")
    assert "characters" not in texts(at.caption) and at.button(key="l15.start").disabled
